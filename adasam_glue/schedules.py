"""Learning-rate and batch-size schedules, counted in optimizer updates (never in passes).

Spec §3: the paper's linear warmup + linear decay to 0 (fairseq ``polynomial_decay``, power 1);
cosine η_t = η_min + (η_max − η_min)(1 + cos(πt/T))/2 with η_min = ``min_lr_ratio``·η_max (Harada &
Iiduka use 0.01); constant (after warmup); Khanh et al.'s diminishing η₀/(k+1) (``inverse``) and
η₀/(k+1)^0.5001 (``inverse_sqrt``); and the increasing-batch schedule: batch sizes used for equal
shares of the training samples, at constant lr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if (
    TYPE_CHECKING
):  # torch is imported where a scheduler is built: config checks and the report read names only
    import torch
    from torch.optim.lr_scheduler import LambdaLR


#: Every ``trainer.schedule`` (config validation and the report read this).
SCHEDULES = ("linear", "constant", "cosine", "inverse", "inverse_sqrt")
#: The schedules whose lr decays after warmup (the report's "decaying lr" group).
DECAYING = tuple(s for s in SCHEDULES if s != "constant")


def lr_factor(schedule: str, step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr before update ``step`` (0-based), for ``total`` updates."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup  # fairseq: update k (1-based) uses k/warmup of the peak
    t, span = step - warmup, max(1, total - warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - t / span)
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    if schedule == "inverse":
        return 1.0 / (t + 1)
    if schedule == "inverse_sqrt":
        return 1.0 / (t + 1) ** 0.5001
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total: int, warmup: int, min_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` on the (wrapper) optimizer; its param_groups are the base optimizer's."""
    from torch.optim.lr_scheduler import LambdaLR

    lr_factor(schedule, 0, total, warmup, min_ratio)  # validate the name now, not at step 1
    return LambdaLR(optimizer, lambda step: lr_factor(schedule, step, total, warmup, min_ratio))


@dataclass(frozen=True)
class BatchPlan:
    """Batch size per update: constant, or stages of increasing size (Harada & Iiduka, spec §3)."""

    sizes: tuple[int, ...]  #: batch size of each stage
    updates: tuple[int, ...]  #: updates in each stage

    @property
    def total_updates(self) -> int:
        return sum(self.updates)

    def batch_size(self, update: int) -> int:
        """Global batch size of (0-based) update ``update``."""
        for size, n in zip(self.sizes, self.updates):
            if update < n:
                return size
            update -= n
        return self.sizes[-1]


def build_batch_plan(batch_size: int, total_updates: int, batch_schedule: list[int] | None) -> BatchPlan:
    """Constant ``batch_size`` for ``total_updates``; or each size of ``batch_schedule`` for an equal
    share of the samples a constant-batch run would see (so later, larger batches get fewer updates)."""
    if not batch_schedule:
        return BatchPlan((batch_size,), (total_updates,))
    samples = total_updates * batch_size / len(batch_schedule)
    return BatchPlan(tuple(batch_schedule), tuple(max(1, math.ceil(samples / b)) for b in batch_schedule))


def total_updates(cfg: Mapping[str, Any]) -> int:
    """The task's updates, capped by ``trainer.max_updates`` (quick runs). ``cfg``: the composed config
    (a DictConfig) or a record's resolved ``config`` dict: the report states what ran from the same rule."""
    t = cfg["task"]["total_updates"]
    cap = (cfg.get("trainer") or {}).get("max_updates")
    return min(t, cap) if cap else t


def warmup_updates(cfg: Mapping[str, Any], total: int) -> int:
    """The task's warmup, scaled with the cap so a shortened run keeps the recipe's warmup fraction."""
    return round(cfg["task"]["warmup_updates"] * total / cfg["task"]["total_updates"])
