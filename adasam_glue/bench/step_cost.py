"""What one update costs per optimizer: the real ``Trainer.train_step`` on the same fixed batches.

One row per registry entry (and per non-default form in full mode). Time: median wall time of the
whole update; ``ratio_to_base`` = that / the median of the row's base (read from the built optimizer:
SAM's base is SGD, AdaSAM's AMSGrad; LightSAM, which replaces the descent step and has no base, is
compared with AMSGrad, the nearest single-pass adaptive optimizer, and says so in
``ratio_reference``). 2.0 is the two-pass limit; the excess is optimizer work. On CPU the same ratio is
also taken on the main thread's CPU time (``ratio_to_base_cpu``; one intra-op thread), which load from
other processes does not inflate; the summary judges that one on CPU.

The optimizer's own time is measured around its public protocol calls (``prepare_ascent``,
``first_step``, ``descent_loss``, ``second_step``; ``step`` and ``zero_grad`` for one-pass
optimizers) and the base update with torch's public step hooks on ``base_optimizer``, so
``perturbation_time`` = optimizer time minus the base update. Memory: the optimizer's calls of the
first update run under :class:`~adasam_glue.bench.memory.AllocTracker`; what they allocated and is
still alive afterwards is the state the optimizer keeps (moments, the SAM weight copy, any buffer),
found without reading its attributes; the next update gives the transient peak.

Two schedules: ``interleaved`` (CPU; every optimizer alive for the whole section, round r times one
update of each in a rotated order, so load from other processes spreads over all rows alike) and
``blocks`` (GPU; one optimizer alive at a time, so RoBERTa-large's eleven optimizer states need not fit
together; GPU timings are steady enough for consecutive blocks). Keys: ``docs/bench_schema.md``.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, base_name, build_trainer, optimizer_overrides
from adasam_glue.bench.memory import MB, AllocTracker
from adasam_glue.bench.timing import iqr, median, sync

#: the row every base-less or not-benchmarked base is compared with (module doc)
FALLBACK_REFERENCE = "amsgrad"


class OptimizerProbe:
    """Times the optimizer's own calls inside ``train_step``, and optionally tracks their allocations.

    The public protocol methods of this one instance are shadowed by timing wrappers (instance
    attributes; the class and its private methods are untouched); the base update is timed with the
    base optimizer's public ``register_step_pre_hook``/``register_step_post_hook``.
    """

    SAM_CALLS = ("prepare_ascent", "first_step", "descent_loss", "second_step")

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        from adasam_glue.optim import SAMBase

        self.device = device
        self.timing = False
        self.tracker: AllocTracker | None = None
        self.total = self.base = 0.0
        self._t0 = 0.0
        self._mode: Any = None
        two_pass = isinstance(optimizer, SAMBase)
        for name in self.SAM_CALLS if two_pass else ("zero_grad",):
            setattr(optimizer, name, self._wrap(getattr(optimizer, name)))
        #: ``None``: the optimizer does its own descent (LightSAM), no base time to subtract
        self.base_optimizer = optimizer.base_optimizer if two_pass else optimizer
        self.split = self.base_optimizer is not None
        if self.base_optimizer is not None:
            self.base_optimizer.register_step_pre_hook(self._pre)
            self.base_optimizer.register_step_post_hook(self._post)
        self.one_pass = not two_pass

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            if self.tracker is not None:
                with self.tracker.active():
                    return fn(*args, **kwargs)
            if not self.timing:
                return fn(*args, **kwargs)
            sync(self.device)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.device)
                self.total += time.perf_counter() - t0

        return probed

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.tracker is not None and self.one_pass:
            self._mode = self.tracker.active()
            self._mode.__enter__()
        elif self.timing:
            sync(self.device)
            self._t0 = time.perf_counter()

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        elif self.timing:
            sync(self.device)
            dt = time.perf_counter() - self._t0
            self.base += dt
            if self.one_pass:  # step() is the one-pass optimizer's own call (wrapped calls add the rest)
                self.total += dt

    def take(self) -> tuple[float, float]:
        """``(optimizer time, base-update time)`` since the last call."""
        out = (self.total, self.base)
        self.total = self.base = 0.0
        return out


def variant_specs(
    names: Sequence[str] | None = None, forms: bool = False
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(row label, registry name, form)`` for every registry entry (``names``: a subset); with
    ``forms`` also each non-default form (``adasam[form=paper]``, ``lightsam[form=adagrad]`` ...)."""
    from adasam_glue.optim import OPTIMIZERS

    out = []
    for name, info in OPTIMIZERS.items():
        if names and name not in names:
            continue
        out.append((name, name, {}))
        if forms:
            for f in info.forms():
                if f and any(info.defaults.get(k) != v for k, v in f.items()):
                    out.append((name + "[" + ",".join(f"{k}={v}" for k, v in f.items()) + "]", name, dict(f)))
    return out


class _Runner:
    """One optimizer of the section: optimizer, probe, trainer, and what was measured for it."""

    def __init__(self, setup: Setup, label: str, name: str, form: dict[str, Any]) -> None:
        self.label, self.name, self.form = label, name, form
        self.optimizer, _, self.trainer = build_trainer(setup, optimizer_overrides(name, form))
        self.probe = OptimizerProbe(self.optimizer, setup.device)
        self.base = base_name(self.optimizer)
        self.split = self.probe.split
        self.two_pass = bool(self.trainer.info.two_pass)
        self.times: list[float] = []
        self.cpu_times: list[float] = []  #: the main thread's CPU time (CPU runs: immune to other processes)
        self.optim_times: list[float] = []
        self.pert_times: list[float] = []
        self.state_bytes = self.transient_bytes = 0
        self.cuda_peak = 0.0

    def measure_memory(self, batches: list[dict[str, torch.Tensor]]) -> None:
        """Two tracked updates: the first allocates the state (what survives it), the second gives the
        transient peak (allocated and freed inside the update)."""
        first, second = AllocTracker(), AllocTracker()
        for tracker, batch in ((first, batches[0]), (second, batches[1 % len(batches)])):
            self.probe.tracker = tracker
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.trainer.train_step([batch])
            finally:
                self.probe.tracker = None
        self.state_bytes = first.current
        self.transient_bytes = max(second.peak - second.current, 0)

    def timed_update(self, batch: dict[str, torch.Tensor], device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.probe.timing = True
        sync(device)
        t0, c0 = time.perf_counter(), time.thread_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "lr_scheduler.step() before optimizer.step()" (SAM)
            self.trainer.train_step([batch])
        sync(device)
        self.times.append(time.perf_counter() - t0)
        self.cpu_times.append(time.thread_time() - c0)
        self.probe.timing = False
        total, base = self.probe.take()
        self.optim_times.append(total)
        self.pert_times.append(total - base if self.probe.split else float("nan"))
        if device.type == "cuda":
            self.cuda_peak = max(self.cuda_peak, torch.cuda.max_memory_allocated(device) / MB)

    def untimed_update(self, batch: dict[str, torch.Tensor]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer.train_step([batch])


def bench_optimizers(
    setup: Setup,
    names: Sequence[str] | None = None,
    rounds: int = 5,
    warmup: int = 1,
    forms: bool = False,
    schedule: str = "interleaved",
    record_errors: bool = False,
) -> list[dict[str, Any]]:
    """One row per optimizer (module doc). ``rounds`` timed updates each; ``warmup`` untimed updates
    after the two tracked ones (state allocation, first-call costs). ``record_errors`` (``blocks``
    only): an optimizer that fails (e.g. a precision the trainer refuses) gives a row with ``error``
    instead of ending the section."""
    specs = variant_specs(names, forms)
    nb, dev = len(setup.batches), setup.device
    runners: list[_Runner] = []
    errors: list[dict[str, Any]] = []
    setup.reset()
    if schedule == "interleaved":
        runners = [_Runner(setup, *spec) for spec in specs]
        for r in runners:
            _prepare(r, setup, warmup)
        for i in range(rounds):
            batch = setup.batches[(warmup + 2 + i) % nb]
            k = i % len(runners)
            for r in runners[k:] + runners[:k]:
                r.timed_update(batch, dev)
    elif schedule == "blocks":
        for spec in specs:
            setup.reset()
            try:
                r = _Runner(setup, *spec)
                _prepare(r, setup, warmup)
                for i in range(rounds):
                    r.timed_update(setup.batches[(warmup + 2 + i) % nb], dev)
            except Exception as e:
                if not record_errors:
                    raise
                errors.append(
                    {"model": setup.name, "optimizer": spec[0], "error": f"{type(e).__name__}: {e}"}
                )
                continue
            _release(r, dev)
            runners.append(r)
    else:
        raise ValueError(f"schedule must be 'interleaved' or 'blocks', got {schedule!r}")
    setup.reset()
    return _rows(setup, runners) + errors


def _prepare(r: _Runner, setup: Setup, warmup: int) -> None:
    if setup.device.type == "cpu":
        r.measure_memory(setup.batches)  # no allocator statistics on CPU: account tensors instead
    else:
        r.untimed_update(setup.batches[0])
        r.untimed_update(setup.batches[1 % len(setup.batches)])
    for i in range(warmup):
        r.untimed_update(setup.batches[(2 + i) % len(setup.batches)])


def _release(r: _Runner, device: torch.device) -> None:
    """Free the optimizer's state before the next block (GPU memory)."""
    r.optimizer.state.clear()
    r.optimizer = r.trainer = r.probe = None  # type: ignore[assignment]
    gc.collect()  # the probe's wrappers and hooks form reference cycles with the optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _rows(setup: Setup, runners: list[_Runner]) -> list[dict[str, Any]]:
    """The JSON rows; ratios and excesses against each row's reference (module doc)."""
    by = {r.label: r for r in runners}
    med = {r.label: median(r.times) for r in runners}
    pmb = setup.param_bytes / MB
    cuda = setup.device.type == "cuda"

    def peak(r: _Runner) -> float:  # on CPU: params + grads + state + transient (activations excluded)
        return r.cuda_peak if cuda else 2 * pmb + (r.state_bytes + r.transient_bytes) / MB

    rows = []
    for r in runners:
        ref = r.base if r.base in by and r.base != r.label else None
        if ref is None and r.two_pass and FALLBACK_REFERENCE in by:
            ref = FALLBACK_REFERENCE
        t = med[r.label]
        o = median(r.optim_times)
        p = median(r.pert_times) if r.two_pass and r.split else None
        row: dict[str, Any] = {
            "model": setup.name,
            "optimizer": r.label,
            "registry_name": r.name,
            "form": r.form,
            "two_pass": r.two_pass,
            "base": r.base,
            "ratio_reference": ref,
            "ratio_to_base": t / med[ref] if ref else None,
            "ratio_paired_median": median([a / b for a, b in zip(r.times, by[ref].times)]) if ref else None,
            "step_time_median_s": t,
            "step_time_iqr_s": iqr(r.times),
            # one intra-op thread on CPU: the update's work is the main thread's CPU time, which other
            # processes on a shared machine do not inflate (on CUDA the kernels run elsewhere: None)
            "step_cpu_time_median_s": None if cuda else median(r.cpu_times),
            "ratio_to_base_cpu": None if cuda or not ref else median(r.cpu_times) / median(by[ref].cpu_times),
            "n_timed": len(r.times),
            "optim_time_median_s": o,
            "optim_fraction": o / t,
            "perturbation_time_median_s": p if r.two_pass else 0.0,
            "perturbation_fraction": (p / t if p is not None else None) if r.two_pass else 0.0,
            "peak_mem_mb": peak(r),
            "peak_mem_kind": "cuda_max_memory_allocated"
            if cuda
            else "accounted_params_grads_state_transient",
            "state_mb": r.state_bytes / MB if not cuda else None,
            "optim_transient_peak_mb": r.transient_bytes / MB if not cuda else None,
            "param_mb": pmb,
            "updates_per_s": 1.0 / t,
            "samples_per_s": setup.batch_size / t,
        }
        if ref and not cuda:
            excess = (r.state_bytes - by[ref].state_bytes) / MB
            row |= {
                "excess_state_over_base_mb": excess,
                "excess_state_in_params": excess / pmb,
                "excess_peak_over_base_mb": peak(r) - peak(by[ref]),
                "excess_peak_in_params": (peak(r) - peak(by[ref])) / pmb,
            }
        else:
            row |= {"excess_state_over_base_mb": None, "excess_state_in_params": None}
        rows.append(row)
    return rows
