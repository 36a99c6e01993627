"""What one update costs per optimizer of the registry: the real ``Trainer.train_step`` on fixed batches.

One row per record of :data:`adasam_glue.optim.OPTIMIZERS` (a variant registered there gets its row with no
change here; ``forms``: also each non-default form). ``ratio_to_base`` = median update time / that of the
row's reference, the registry's :func:`~adasam_glue.optim.baseline_of` (AMSGrad for a two-pass optimizer
without one, LightSAM); 2.0 is the two-pass limit. On CPU the ratio is also taken on the main thread's CPU
time (``ratio_to_base_cpu``, one intra-op thread), which other processes do not inflate; the summary judges
that one. Optimizer time is taken around its public protocol calls, the base update by torch's step hooks
(``perturbation_time`` = the difference). Memory on CPU: the allocations of the optimizer's calls
(:class:`~adasam_glue.bench.measure.AllocTracker`; state = what survives the first update, transient = the
second's peak); on CUDA (the GPU check) the allocator's peak. On CPU every optimizer is alive at once,
rotated round-robin, so load spreads over all rows alike; the GPU check has one alive at a time (``blocks``).
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, build_setup, build_trainer, environment, error_text, write_json
from adasam_glue.bench.measure import MB, AllocTracker, iqr, median, stopwatch
from adasam_glue.optim import OPTIMIZERS, baseline_of

#: the reference of a two-pass row whose base has no row (module doc)
FALLBACK_REFERENCE = "amsgrad"
#: the ratio a SAM-family row may reach (the two-pass limit of 2.0 plus a margin for the perturbation)
RATIO_LIMIT = 2.15
#: per model, quick and full: timed rounds and warm-up updates (batches: 4 of 16 rows)
SIZES = {"tiny": ((31, 1), (61, 1)), "minilm": ((9, 1), (15, 1)), "roberta-large-random": ((5, 2), (5, 2))}


def variant_specs(names: Sequence[str] | None = None, forms: bool = False) -> list[tuple[str, str, dict]]:
    """``(row label, registry name, form)`` for every registry record (``names``: a subset); with ``forms``
    also each non-default form."""
    out = []
    for name, info in OPTIMIZERS.items():
        if names and name not in names:
            continue
        out.append((name, name, {}))
        for f in info.forms() if forms else ():
            if f and any(info.defaults.get(k) != v for k, v in f.items()):
                out.append((name + "[" + ",".join(f"{k}={v}" for k, v in f.items()) + "]", name, dict(f)))
    return out


class _Runner:
    """One optimizer on the setup's model, in the run's trainer, and what was measured for it.

    Its own calls are timed, and while ``tracker`` is set their allocations tracked, by wrappers shadowing
    the protocol methods of this one instance (the class is untouched); the base update is timed by the
    base optimizer's public step pre/post hooks.
    """

    SAM_CALLS = ("prepare_ascent", "first_step", "descent_loss", "second_step")

    def __init__(self, setup: Setup, label: str, name: str, form: dict[str, Any]) -> None:
        info = OPTIMIZERS[name]
        self.label, self.name, self.form, self.two_pass = label, name, form, info.two_pass
        self.base, self.device = info.base_of(form), setup.device
        self.baseline = baseline_of(name, self.base)
        self.optimizer, self.trainer = build_trainer(setup, name, form)
        self.tracker: AllocTracker | None = None
        self.timing, self.optim_s, self.base_s = False, 0.0, 0.0
        for call in self.SAM_CALLS if self.two_pass else ("zero_grad",):
            setattr(self.optimizer, call, self._wrap(getattr(self.optimizer, call)))
        base = self.optimizer.base_optimizer if self.two_pass else self.optimizer
        self.split = base is not None  #: False: the optimizer does its own descent (LightSAM)
        if self.split:
            base.register_step_pre_hook(self._pre)
            base.register_step_post_hook(self._post)
        #: per timed update; ``cpu``: the main thread's CPU time (CPU runs: immune to other processes)
        self.times, self.cpu_times, self.optim_times, self.pert_times = [], [], [], []
        self.state_bytes = self.transient_bytes = 0
        self.cuda_peak = 0.0

    @contextlib.contextmanager
    def _probe(self, base_step: bool) -> Iterator[None]:
        """Around one of the optimizer's own calls, or its base step (inside the two-pass ones' calls)."""
        if self.tracker is not None and not (base_step and self.two_pass):
            with self.tracker.active():
                yield
        elif self.timing:
            with stopwatch(self.device) as t:
                yield
            self.base_s += t[0] if base_step else 0.0
            self.optim_s += 0.0 if base_step and self.two_pass else t[0]
        else:
            yield

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            with self._probe(base_step=False):
                return fn(*args, **kwargs)

        return probed

    def _pre(self, *_: Any) -> None:
        self._open = self._probe(base_step=True)
        self._open.__enter__()

    def _post(self, *_: Any) -> None:
        self._open.__exit__(None, None, None)

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "lr_scheduler.step() before optimizer.step()" (SAM)
            self.trainer.train_step([batch])

    def prepare(self, setup: Setup, warmup: int) -> _Runner:
        """Two updates (tracked on CPU: the first allocates the state, what survives it; the second gives
        the transient peak), then ``warmup`` untimed ones."""
        b = setup.batches
        trackers = (AllocTracker(), AllocTracker()) if self.device.type == "cpu" else (None, None)
        for tracker, batch in zip(trackers, (b[0], b[1 % len(b)])):
            self.tracker = tracker
            self.update(batch)
        self.tracker, (first, second) = None, trackers
        if first is not None:
            self.state_bytes, self.transient_bytes = first.current, max(second.peak - second.current, 0)
        for i in range(warmup):
            self.update(b[(2 + i) % len(b)])
        return self

    def timed_update(self, batch: dict[str, torch.Tensor]) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.timing, self.optim_s, self.base_s = True, 0.0, 0.0
        with stopwatch(self.device) as t:
            self.update(batch)
        self.timing = False
        self.times.append(t[0])
        self.cpu_times.append(t[1])
        self.optim_times.append(self.optim_s)
        self.pert_times.append(self.optim_s - self.base_s if self.split else float("nan"))
        if cuda:
            self.cuda_peak = max(self.cuda_peak, torch.cuda.max_memory_allocated(self.device) / MB)

    def release(self) -> None:
        """Free the optimizer's state before the next block (GPU memory)."""
        self.optimizer.state.clear()
        self.optimizer = self.trainer = None  # type: ignore[assignment]
        gc.collect()  # the wrappers and hooks form reference cycles with the optimizer
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def bench_optimizers(
    setup: Setup,
    names: Sequence[str] | None = None,
    rounds: int = 5,
    warmup: int = 1,
    forms: bool = False,
    blocks: bool = False,
) -> list[dict[str, Any]]:
    """One row per optimizer (module doc): ``rounds`` timed updates each after the two prepared and
    ``warmup`` untimed ones. ``blocks`` (the GPU check): one optimizer alive at a time, and one that fails
    (a precision the trainer refuses) gives a row with ``error`` instead of ending the section."""
    specs, batches = variant_specs(names, forms), setup.batches
    batch = lambda i: batches[(warmup + 2 + i) % len(batches)]
    runners, errors = [], []
    setup.reset()
    if not blocks:
        runners = [_Runner(setup, *spec).prepare(setup, warmup) for spec in specs]
        for i in range(rounds):
            k = i % len(runners)
            for r in runners[k:] + runners[:k]:
                r.timed_update(batch(i))
    for spec in specs if blocks else ():
        setup.reset()
        try:
            r = _Runner(setup, *spec).prepare(setup, warmup)
            for i in range(rounds):
                r.timed_update(batch(i))
        except Exception as e:
            errors.append({"model": setup.name, "optimizer": spec[0], "error": error_text(e)})
            continue
        r.release()
        runners.append(r)
    setup.reset()
    return _rows(setup, runners) + errors


def _rows(setup: Setup, runners: list[_Runner]) -> list[dict[str, Any]]:
    """The JSON rows; ratios and excesses against each row's reference (module doc)."""
    by = {r.label: r for r in runners}
    pmb, cuda = setup.info["param_mb"], setup.device.type == "cuda"
    kind = "cuda_max_memory_allocated" if cuda else "accounted_params_grads_state_transient"

    def peak(r: _Runner) -> float:  # on CPU: params + grads + state + transient (activations excluded)
        return r.cuda_peak if cuda else 2 * pmb + (r.state_bytes + r.transient_bytes) / MB

    rows = []
    for r in runners:
        ref = r.baseline if r.baseline in by and r.baseline != r.label else None
        if ref is None and r.two_pass and FALLBACK_REFERENCE in by:
            ref = FALLBACK_REFERENCE
        t, o, p = median(r.times), median(r.optim_times), median(r.pert_times) if r.split else None
        rt = by[ref].times if ref else None
        cpu_ratio = median(r.cpu_times) / median(by[ref].cpu_times) if ref and not cuda else None
        row: dict[str, Any] = {
            "model": setup.name,
            "optimizer": r.label,
            "registry_name": r.name,
            "form": r.form,
            "two_pass": r.two_pass,
            "base": r.base,
            "ratio_reference": ref,
            "ratio_to_base": t / median(rt) if ref else None,
            "ratio_paired_median": median([a / b for a, b in zip(r.times, rt)]) if ref else None,
            "step_time_median_s": t,
            "step_time_iqr_s": iqr(r.times),
            "step_cpu_time_median_s": None if cuda else median(r.cpu_times),  # kernels run elsewhere on CUDA
            "ratio_to_base_cpu": cpu_ratio,
            "n_timed": len(r.times),
            "optim_time_median_s": o,
            "optim_fraction": o / t,
            "perturbation_time_median_s": p if r.two_pass else 0.0,
            "perturbation_fraction": (p / t if p is not None else None) if r.two_pass else 0.0,
            "peak_mem_mb": peak(r),
            "peak_mem_kind": kind,
            "state_mb": None if cuda else r.state_bytes / MB,
            "optim_transient_peak_mb": None if cuda else r.transient_bytes / MB,
            "param_mb": pmb,
            "updates_per_s": 1.0 / t,
            "samples_per_s": setup.info["batch_size"] / t,
            "excess_state_over_base_mb": None,
            "excess_state_in_params": None,
        }
        if ref and not cuda:
            excess, excess_peak = (r.state_bytes - by[ref].state_bytes) / MB, peak(r) - peak(by[ref])
            row["excess_state_over_base_mb"], row["excess_state_in_params"] = excess, excess / pmb
            row["excess_peak_over_base_mb"], row["excess_peak_in_params"] = excess_peak, excess_peak / pmb
        rows.append(row)
    return rows


def judged_ratio(row: dict[str, Any]) -> float | None:
    """The ratio the limit is judged on: CPU time where measured (CPU runs), else wall time."""
    cpu = row.get("ratio_to_base_cpu")
    return cpu if cpu is not None else row.get("ratio_to_base")


def summarize(rows: list[dict[str, Any]], limit: float = RATIO_LIMIT) -> dict[str, Any]:
    """The figures a reader looks for first: SAM-family rows over the limit, the largest ratio."""
    sam = [(r, judged_ratio(r)) for r in rows if r.get("two_pass") and judged_ratio(r) is not None]
    over = [
        {"model": r["model"], "optimizer": r["optimizer"], "ratio_to_base": x} for r, x in sam if x > limit
    ]
    return {
        "ratio_limit": limit,
        "sam_rows": len(sam),
        "sam_rows_over_limit": over,
        "max_ratio_to_base": max((x for _, x in sam), default=None),
        "ratio_basis": "cpu_time" if any(r.get("ratio_to_base_cpu") is not None for r, _ in sam) else "wall",
        "optim_fraction_adasam": {
            r["model"]: r["optim_fraction"] for r in rows if r.get("optimizer") == "adasam"
        },
    }


def run_step_cost(
    quick: bool = True,
    out: str | Path = "results/bench",
    models: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    rounds: int | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Rows for every model (default: tiny and MiniLM), every form in full mode; ``out/bench_{quick,full}.json``
    is rewritten after each model. The GPU's figures are the GPU check's (:mod:`~.gpu_check`)."""
    t_start, mode = time.perf_counter(), "quick" if quick else "full"
    path = Path(out) / f"bench_{mode}.json"
    res: dict[str, Any] = {"mode": mode, "rows": [], "env": environment("cpu"), "setups": {}}
    res["section_seconds"] = {}
    with tempfile.TemporaryDirectory(prefix="adasam_bench_") as cache:  # the tokenized data, then gone
        for model in models or ["tiny", "minilm"]:
            n_rounds, warmup = SIZES.get(model, SIZES["tiny"])[0 if quick else 1]
            t0, section = time.perf_counter(), f"optimizers[{model}]"
            print(f"[bench] {model} ...", flush=True)
            try:
                setup = build_setup(model, "cpu", 16, 4, cache_dir=cache, overrides=overrides)
                res["setups"][model] = dict(setup.info)
                res["rows"] += bench_optimizers(setup, names, rounds or n_rounds, warmup, forms=not quick)
            except Exception as e:  # one failing model must not lose the others
                res.setdefault("errors", {})[section] = {"error": error_text(e)}
                print(f"[bench] {model} FAILED: {error_text(e)}", flush=True)
            res["section_seconds"][section] = round(time.perf_counter() - t0, 2)
            write_json(path, res, partial=True)
    res["summary"] = summarize(res["rows"])
    res["env"]["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    write_json(path, res)
    print(f"[bench] wrote {path} ({res['env']['wall_time_s']:.0f}s)", flush=True)
    return res
