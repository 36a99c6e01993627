"""Statistics over run frames (docs/algorithms.md §4.4; the tuning playbook: rho is a nuisance parameter
chosen on the dev set, the optimizer is the variable): a configuration's runs (:class:`Config`) summarised
as mean ± sample std (ddof=1) over seeds; rho chosen among runs identical but for rho by the mean
selection metric over completed seeds, ties to the smaller rho; seed-paired differences (:func:`pair`, for
the tables and the variants table alike) with a percentile bootstrap CI over seeds from a fixed seed per
task (byte-identical reports).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from adasam_glue.metrics import no_learning
from adasam_glue.report.grouping import OPTIM, differs_outside
from adasam_glue.tasks import TASK_ORDER, TASKS

BOOTSTRAP_SEED = 20230301  #: fixed seed: the report never depends on the clock or on global RNG state
N_BOOT = 10_000


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  #: sample std (ddof=1); None when n == 1
    n: int


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Mean and sample std (ddof=1) of the finite values; ``None`` for none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    arr = np.asarray(xs, dtype=np.float64)
    return Summary(float(arr.mean()), float(arr.std(ddof=1)) if len(xs) > 1 else None, len(xs))


def bootstrap_mean_ci(
    diffs: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of ``diffs``; ``None`` with fewer than two values."""
    x = np.asarray([float(d) for d in diffs], dtype=np.float64)
    if x.size < 2:
        return None
    means = x[np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0])
    return float(lo), float(hi)


def metric(df: pd.DataFrame, name: str, at: str = "best") -> pd.Series:
    """Per run, ``name`` at the best checkpoint (or ``final``); missing: ``None``."""
    return df[at].map(lambda m: m.get(name))


def recorded_constant(entry: object) -> bool | None:
    """An eval entry's ``constant_prediction`` (every dev prediction the same), ``None`` where the record
    predates it or the entry is missing."""
    value = entry.get("constant_prediction") if isinstance(entry, dict) else None
    return value if isinstance(value, bool) else None


def without_learning(runs: pd.DataFrame, task: str) -> int:
    """How many of ``runs`` have a best checkpoint of a predictor that learned nothing: its dev metrics
    or its recorded constant prediction (:func:`adasam_glue.metrics.no_learning`; docs/algorithms.md §4.4
    item 5)."""
    if not len(runs):
        return 0
    return sum(
        bool(no_learning(task, b, recorded_constant(r.get("best")))) for b, r in zip(runs.best, runs.record)
    )


def learns(runs: pd.DataFrame, task: str) -> bool:
    """False when every one of ``runs`` (one identity's completed seeds) learned nothing."""
    return not (len(runs) and without_learning(runs, task) == len(runs))


def task_score(df: pd.DataFrame, task: str) -> pd.Series:
    """Per run, the task score: the mean of the task's paper metrics at the best checkpoint (``None``
    unless the run has all of them)."""
    pm = TASKS[task].paper_metrics
    return df.best.map(lambda b: sum(b[m] for m in pm) / len(pm) if all(m in b for m in pm) else None)


@dataclass
class Config:
    """The runs of one configuration (an identity but for the seed; in a table cell: one rho), by seed
    and path."""

    rho: float | None
    selection: Summary | None  #: selection metric over the completed seeds (fraction)
    completed: pd.DataFrame
    diverged: pd.DataFrame

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([self.completed, self.diverged])

    @property
    def group_hash(self) -> str:
        runs = self.completed if len(self.completed) else self.diverged
        return runs.group_hash.iloc[0] if len(runs) else ""


def config(runs: pd.DataFrame, task: str, rho: float | None = None) -> Config:
    """The :class:`Config` of ``runs`` (one identity but for the seed), with its selection metric."""
    rs = runs.sort_values(["seed", "rel"])
    done = rs[rs.status.eq("completed")]
    selection = summarize(metric(done, TASKS[task].selection_metric))
    return Config(rho, selection, done, rs[rs.status.eq("diverged")])


def with_score(runs: pd.DataFrame, score: pd.Series) -> pd.DataFrame:
    """``runs`` with a ``score`` column, those without one left out: the seeds a pairing can use."""
    runs = runs.assign(score=score)
    return runs[runs.score.notna()]


def rho_candidates(df: pd.DataFrame, task: str) -> list[Config]:
    """One :class:`Config` per rho (``None`` first, then ascending)."""
    rhos = sorted(set(df.rho), key=lambda x: (x is not None, x or 0.0))
    return [config(df[df.rho.map(lambda r, rho=rho: r == rho).astype(bool)], task, rho) for rho in rhos]


def choose_rho(cands: list[Config]) -> Config | None:
    """The candidate of the largest mean selection metric; ties go to the smaller rho (the first)."""
    scored = [c for c in cands if c.selection is not None]
    return max(scored, key=lambda c: c.selection.mean) if scored else None


def tied_rhos(cands: list[Config], chosen: Config | None) -> list[float]:
    """The tested rhos whose selection mean equals the chosen one's (the chosen included)."""
    if chosen is None or chosen.selection is None:
        return []
    best = chosen.selection.mean
    return sorted(
        c.rho for c in cands if c.rho is not None and c.selection and math.isclose(c.selection.mean, best)
    )


def rho_edge(cands: list[Config], rho: float | None) -> bool:
    """The chosen rho is the smallest or largest tested, and no rho it ties with is interior."""
    tested = sorted(c.rho for c in cands if c.rho is not None and c.selection is not None)
    chosen = next((c for c in cands if c.rho == rho), None)
    if rho is None or len(tested) < 2:
        return False
    return all(
        any(math.isclose(t, e) for e in (tested[0], tested[-1])) for t in tied_rhos(cands, chosen) or [rho]
    )


@dataclass
class Paired:
    """Seed-paired difference ``a - b`` of two cells' task scores (points ×100)."""

    task: str
    n: int
    mean: float | None
    ci: tuple[float, float] | None
    sam_identity: str = ""  #: group hash of the first cell's chosen identity
    base_identity: str = ""
    refused: list[str] = field(default_factory=list)  #: keys that kept a seed's runs from being paired
    seeds: list[int] = field(default_factory=list)  #: the seeds paired

    @property
    def identities(self) -> str:
        return f"{self.sam_identity} vs {self.base_identity}"

    @property
    def excludes_zero(self) -> str:
        return "n < 2" if self.ci is None else ("yes" if self.ci[0] > 0 or self.ci[1] < 0 else "no")


def pair(
    task: str,
    a: pd.DataFrame,
    b: pd.DataFrame,
    ids: tuple[str, str] = ("", ""),
    allowed: tuple[str, ...] = (OPTIM,),
) -> Paired:
    """Pair the runs of ``a`` and ``b`` (one per seed, a ``score`` column: :func:`with_score`) by seed; a
    seed pairs only runs whose identities differ in ``allowed`` keys alone (the others are named in
    ``refused``). ``ids``: the group hashes the two sides are listed under. The bootstrap seed is fixed per
    task (:data:`BOOTSTRAP_SEED` plus its column in TASK_ORDER)."""
    diffs, refused, seeds = [], [], []
    ra, rb = a.set_index("seed"), b.set_index("seed")
    for s in sorted(set(ra.index) & set(rb.index)):
        unlike = differs_outside(ra.flat[s], rb.flat[s], allowed)
        if unlike:
            refused += unlike
            continue
        diffs.append((ra.score[s] - rb.score[s]) * 100)
        seeds.append(s)
    mean = sum(diffs) / len(diffs) if diffs else None
    ci = bootstrap_mean_ci(diffs, seed=BOOTSTRAP_SEED + TASK_ORDER.index(task))
    return Paired(task, len(diffs), mean, ci, *ids, sorted(set(refused)), seeds)
