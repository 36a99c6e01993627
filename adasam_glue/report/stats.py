"""Statistics of the report: mean ± sample std over seeds and a seeded bootstrap CI for paired deltas.

Conventions (stated under every table):

- ``std`` is the sample standard deviation (``ddof=1``); with one seed it is undefined and the cell
  shows the mean alone with ``(1)`` seeds;
- the bootstrap resamples seeds with replacement (``n_boot`` = 10 000, percentile interval) from a
  generator seeded with a fixed integer, so the report is byte-identical from run to run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BOOTSTRAP_SEED", "N_BOOT", "Summary", "bootstrap_mean_ci", "summarize"]

BOOTSTRAP_SEED = 20230301  #: fixed seed: the report never depends on the clock or on global RNG state
N_BOOT = 10_000


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  #: sample std (ddof=1); None when n == 1
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean and sample std (ddof=1) of finite values; ``None`` for no values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    arr = np.asarray(xs, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(xs) > 1 else None
    return Summary(float(arr.mean()), std, len(xs))


def bootstrap_mean_ci(
    diffs: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of ``diffs`` (resampling its entries with replacement).

    ``None`` with fewer than two values (no spread to resample). Deterministic for a given ``seed``.
    """
    x = np.asarray([float(d) for d in diffs], dtype=np.float64)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
