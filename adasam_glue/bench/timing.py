"""Clocks for the benchmarks: robust statistics, device synchronisation, and a training clock that
times any training loop (this harness's or ``transformers.Trainer``'s) the same way from outside.

:class:`TrainClock` uses only torch's public, global hooks (module forward pre/post hooks and the
optimizer step post-hook): it needs no access to the loop it times, so one instrument measures both
sides of a comparison and a change inside the loop (a per-update file write, a progress bar) shows up
in what it measures instead of being skipped by it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def median(xs: Sequence[float]) -> float:
    """Median, NaN for no data (a section that timed nothing says so instead of raising)."""
    return float(statistics.median(xs)) if len(xs) else float("nan")


def iqr(xs: Sequence[float]) -> float:
    """Interquartile range: the spread figure printed beside every median."""
    if len(xs) < 2:
        return 0.0
    q = np.percentile(np.asarray(xs, dtype=float), [25, 75])
    return float(q[1] - q[0])


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a wall-clock interval covers the kernels it launched."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TrainClock:
    """Timestamps of the training forward passes and optimizer steps of whatever trains in the process.

    Use as a context manager around a training call. The *root* module is the one whose forward runs
    while no other module's forward is running (the model itself, whatever wraps it). Recorded:

    - ``train_starts``: start of every root forward in training mode, with its batch ``rows`` and
      ``padded_tokens`` (``input_ids`` numel, from the forward's keyword arguments);
    - ``eval_spans``: (start, end) of every root forward in eval mode (dev evaluation);
    - ``step_ends``: end of every ``Optimizer.step`` (a SAM-family update's base step included);
    - ``train_starts_cpu`` / ``step_ends_cpu``: the same instants in the thread's CPU time
      (``time.thread_time``), which a shared machine's other processes do not inflate.

    The hooks cost a few microseconds per forward and per step, the same for every loop timed.
    """

    train_starts: list[float] = field(default_factory=list)
    train_starts_cpu: list[float] = field(default_factory=list)
    step_ends_cpu: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    padded_tokens: list[int] = field(default_factory=list)
    eval_spans: list[tuple[float, float]] = field(default_factory=list)
    step_ends: list[float] = field(default_factory=list)
    _depth: int = 0
    _eval_start: float | None = None
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> TrainClock:
        from torch.nn.modules.module import (
            register_module_forward_hook,
            register_module_forward_pre_hook,
        )
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
        self._handles = []

    # the global forward hooks see positional inputs only: the batch shape comes from the first
    # Embedding call inside the root forward (word embeddings take input_ids positionally)
    def _pre(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._depth += 1
        if self._depth == 1:
            now = time.perf_counter()
            if module.training:
                self.train_starts.append(now)
                self.train_starts_cpu.append(time.thread_time())
                self.rows.append(0)
                self.padded_tokens.append(0)
            else:
                self._eval_start = now
        elif (
            isinstance(module, torch.nn.Embedding)
            and module.training
            and self.rows
            and self.rows[-1] == 0
            and args
            and isinstance(args[0], torch.Tensor)
            and args[0].dim() == 2
        ):
            self.rows[-1], self.padded_tokens[-1] = int(args[0].shape[0]), int(args[0].numel())

    def _post(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._eval_start is not None and not module.training:
            self.eval_spans.append((self._eval_start, time.perf_counter()))
            self._eval_start = None

    def _step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.step_ends.append(time.perf_counter())
        self.step_ends_cpu.append(time.thread_time())

    # ------------------------------------------------------------------ derived figures
    def updates(self, cpu: bool = False) -> list[tuple[float, float, int, int]]:
        """``(start, end, rows, padded_tokens)`` per optimizer update: from the first training forward
        after the previous step to the update's last step (two forwards per SAM-family update).
        ``cpu``: start and end in thread CPU time instead of wall time."""
        out, i, n = [], 0, len(self.train_starts)
        for j, end in enumerate(self.step_ends):
            if i >= n or self.train_starts[i] > end:
                continue  # a step without a forward (an optimizer built and stepped outside training)
            k = i
            while i < n and self.train_starts[i] <= end:
                i += 1
            if cpu:
                out.append(
                    (self.train_starts_cpu[k], self.step_ends_cpu[j], self.rows[k], self.padded_tokens[k])
                )
            else:
                out.append((self.train_starts[k], end, self.rows[k], self.padded_tokens[k]))
        return out

    def throughput(self, skip: int = 1) -> dict[str, float]:
        """Training samples/s from the start of update ``skip + 1`` to the end of the last update.

        The first ``skip`` updates are left out (optimizer state allocation, first-call overheads), the
        same for every loop timed. Evaluations inside the span are subtracted.
        """
        ups = self.updates()[skip:]
        if len(ups) < 1:
            return {"updates": 0, "samples": 0, "seconds": float("nan"), "samples_per_s": float("nan")}
        t0, t1 = ups[0][0], ups[-1][1]
        evals = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in self.eval_spans)
        seconds = t1 - t0 - evals
        samples = sum(u[2] for u in ups)
        tokens = sum(u[3] for u in ups)
        return {
            "updates": len(ups),
            "samples": samples,
            "padded_tokens": tokens,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
            "padded_tokens_per_sample": tokens / samples if samples else float("nan"),
        }
