"""The instruments: robust statistics, device synchronisation, a clock that times any training loop from
outside (:class:`TrainClock`) and allocation tracking on any device (:class:`AllocTracker`)."""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

MB = 2**20


def median(xs: Sequence[float]) -> float:
    """Median, NaN for no data (a section that timed nothing says so instead of raising)."""
    return float(statistics.median(xs)) if len(xs) else float("nan")


def iqr(xs: Sequence[float]) -> float:
    return float(np.subtract(*np.percentile(xs, [75, 25]))) if len(xs) > 1 else 0.0


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a wall-clock interval covers the kernels it launched."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def stopwatch(device: torch.device) -> Iterator[list[float]]:
    """``[wall, thread CPU]`` seconds of the block, the kernels it queued on CUDA included."""
    sync(device)
    t = [time.perf_counter(), time.thread_time()]
    yield t
    sync(device)
    t[:] = [time.perf_counter() - t[0], time.thread_time() - t[1]]


@dataclass
class TrainClock:
    """Timestamps of the training forwards and optimizer steps of whatever trains in the process, from
    torch's public global hooks only: one instrument times this harness's loop and ``transformers.Trainer``'s
    alike, and a per-update cost inside a loop (a file write, a progress bar) is inside what it measures.

    The *root* forward is one that runs while no other module's forward does. Recorded: ``train_starts``
    (each root forward in training mode, with the batch's ``rows`` and ``padded_tokens`` from its first
    2-D ``Embedding`` input), ``eval_spans`` (root forwards in eval mode), ``step_ends`` (each
    ``Optimizer.step``, a SAM update's base step included), and ``*_cpu``: the same instants in the
    thread's CPU time, which other processes do not inflate.
    """

    train_starts: list[float] = field(default_factory=list)
    train_starts_cpu: list[float] = field(default_factory=list)
    step_ends: list[float] = field(default_factory=list)
    step_ends_cpu: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    padded_tokens: list[int] = field(default_factory=list)
    eval_spans: list[tuple[float, float]] = field(default_factory=list)
    _depth: int = 0
    _eval_start: float | None = None
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> TrainClock:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post, always_call=True),
            register_optimizer_step_post_hook(self._step),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()

    def _pre(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._depth += 1
        if self._depth == 1 and module.training:
            self.train_starts.append(time.perf_counter())
            self.train_starts_cpu.append(time.thread_time())
            self.rows.append(0)
            self.padded_tokens.append(0)
        elif self._depth == 1:
            self._eval_start = time.perf_counter()
        elif isinstance(module, torch.nn.Embedding) and module.training and self.rows and not self.rows[-1]:
            x = args[0] if args else None
            if isinstance(x, torch.Tensor) and x.dim() == 2:  # word embeddings take input_ids positionally
                self.rows[-1], self.padded_tokens[-1] = int(x.shape[0]), int(x.numel())

    def _post(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._eval_start is not None and not module.training:
            self.eval_spans.append((self._eval_start, time.perf_counter()))
            self._eval_start = None

    def _step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.step_ends.append(time.perf_counter())
        self.step_ends_cpu.append(time.thread_time())

    def updates(self, cpu: bool = False) -> list[tuple[float, float, int, int]]:
        """``(start, end, rows, padded_tokens)`` per update: from the first training forward after the
        previous step to the update's last step. ``cpu``: start and end in thread CPU time."""
        starts, ends = (
            (self.train_starts_cpu, self.step_ends_cpu) if cpu else (self.train_starts, self.step_ends)
        )
        out, i, n = [], 0, len(self.train_starts)
        for j, end in enumerate(self.step_ends):
            if i >= n or self.train_starts[i] > end:
                continue  # a step without a forward (an optimizer stepped outside training)
            k = i
            while i < n and self.train_starts[i] <= end:
                i += 1
            out.append((starts[k], ends[j], self.rows[k], self.padded_tokens[k]))
        return out

    def throughput(self, skip: int = 1) -> dict[str, float]:
        """Training samples/s from update ``skip + 1`` to the last update, evaluations inside excluded
        (the first ``skip`` updates allocate state: left out for every loop alike)."""
        ups = self.updates()[skip:]
        if not ups:
            return {"updates": 0, "samples": 0, "seconds": float("nan"), "samples_per_s": float("nan")}
        t0, t1 = ups[0][0], ups[-1][1]
        seconds = t1 - t0 - sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in self.eval_spans)
        samples, tokens = sum(u[2] for u in ups), sum(u[3] for u in ups)
        return {
            "updates": len(ups),
            "samples": samples,
            "padded_tokens": tokens,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
            "padded_tokens_per_sample": tokens / samples if samples else float("nan"),
        }


class AllocTracker:
    """Current and peak bytes of the tensor storages created while :meth:`active`, until they die.

    An op output whose storage none of its inputs has is a fresh allocation; it stays alive while any
    tensor object on it lives (views made while active count as references, so ``clone().detach()`` is
    not released with the temporary). In-place ops and views of untracked storages allocate nothing. CPU has
    no allocator high-water mark that torch exposes; tracking adds overhead, so it is never on while timing.
    """

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  #: storage pointer -> [nbytes, live tensor objects]
        self.current = self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                self.current -= entry[0]
                del self.live[ptr]

    def _track(self, t: torch.Tensor, inputs: set[int]) -> None:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr == 0 or (ptr not in self.live and ptr in inputs):
            return  # in place, or a view of memory allocated outside the tracked block
        if ptr not in self.live:
            self.live[ptr] = [s.nbytes(), 0]
            self.current += s.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[ptr][1] += 1
        weakref.finalize(t, self._release, ptr)

    @contextlib.contextmanager
    def active(self) -> Iterator[AllocTracker]:
        """Track allocations made inside the ``with`` block (nested blocks add up)."""
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                ins = {
                    x.untyped_storage().data_ptr() for x in tree_leaves((args, kwargs)) if torch.is_tensor(x)
                }
                out = func(*args, **kwargs)
                for x in filter(torch.is_tensor, tree_leaves(out)):
                    tracker._track(x, ins)
                return out

        with _Mode():
            yield self
