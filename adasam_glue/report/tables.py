"""Tables 1-4 of the paper rebuilt from the run frame: rows, cells, comparisons (rendered in
:mod:`adasam_glue.report.table_text`; the protocol printed under every table is
:attr:`TableSpec.protocol`, docs/algorithms.md §4.4).

A table takes runs by optimizer and ``config.optim.beta1`` (not by experiment: the speedup and schedules
experiments, the lr-tuning stages, the recipe probes and batch-schedule runs excepted), dedupes them,
splits them into rows of one setting (:func:`adasam_glue.report.grouping.assign_rows`), selects rho per
cell and pools the seeds of the chosen identity (:mod:`adasam_glue.report.stats`). A comparison is a
base row and a SAM row of one setting; the unmarked pair is the headline. The compute-matched comparison
(issue 21 §2.2) sets the unmarked SAM cell against a base row whose runs differ only in optimizer and
schedule-length keys (:data:`MATCHED_KEYS`) and ran as many forward/backward passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import pandas as pd

from adasam_glue.experiments.conf import rho_grid
from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report.collect import dedupe, without
from adasam_glue.report.grouping import OPTIM, Diff, assign_rows, label_suffix, setting_hash
from adasam_glue.report.palette import method_name, task_name
from adasam_glue.report.setting import any_synthetic
from adasam_glue.report.stats import (
    BOOTSTRAP_SEED,
    Candidate,
    Paired,
    Summary,
    choose_rho,
    metric,
    pair,
    rho_candidates,
    rho_edge,
    summarize,
    task_score,
    tied_rhos,
)
from adasam_glue.tasks import TASK_ORDER, TASKS

DECIMALS = 2  #: shown precision of every table number (×100)
MISSING = "—"
EXCLUDED_EXPERIMENTS = ("speedup", "schedules")  #: vary batch size / schedule on purpose
#: recipe probes (``cpu_scale_probe``): single runs that vary one setting to find a recipe, never a result
PROBE_SUFFIX = "_probe"
#: the schedule-length keys a compute-matched base run may differ in (more updates, same recipe otherwise)
MATCHED_KEYS = ("config.task.total_updates", "config.task.warmup_updates", "config.task.epochs")


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables: a base optimizer against its SAM counterpart at one beta1."""

    name: str
    title: str
    beta1: float
    base: str
    sam: str
    paper_wins: int  #: "sam beats base on k of 8 tasks" in the paper
    paper_losses: tuple[str, ...]  #: the tasks where the paper's SAM method does not win
    paper_average: float | None  #: the paper's average gain (points), when it states one

    @property
    def methods(self) -> tuple[str, str]:
        return (self.base, self.sam)

    @property
    def rho_grid(self) -> tuple[float, ...]:
        """The paper's grid for the SAM method: what ``conf/experiment/<name>.yaml`` sweeps."""
        return rho_grid(self.name, self.sam)

    @property
    def protocol(self) -> str:
        """The protocol printed under the table (docs/algorithms.md §4.4)."""
        return (
            f"Protocol: runs with optim.beta1 = {self.beta1:g} (any experiment except "
            f"{', '.join(EXCLUDED_EXPERIMENTS)}, the lr-tuning ones, *{TUNING_SUFFIX}, and the recipe probes, "
            f"*{PROBE_SUFFIX}). Runs that differ in anything but seed, rho and the "
            "optimizer keys (model, data, lr, batch, updates, max_length, precision, schedule, ...) are in "
            "different rows; a row label names how it differs from the unmarked rows. For each row and task, "
            "rho is chosen on the dev set among runs identical but for rho, by the mean over seeds of the "
            "task's selection metric (CoLA MCC, STS-B Pearson, MNLI matched acc, else acc) at each run's best "
            f"checkpoint; paper grid for {method_name(self.sam)}: {rhos_label(self.rho_grid)}. "
            "Each cell is mean ± sample std (ddof=1) over the completed seeds of one identity (the chosen "
            "rho), ×100, with the number of seeds in parentheses (one seed: mean only). Diverged runs are "
            "excluded from the means, counted per identity (†) and listed. A task's score is the mean of its "
            "metrics; Avg. is the mean task score over the tasks where both rows of the comparison have "
            "results. Bold: best shown value per column among the rows of one setting. "
            "Paired comparison: per-seed task-score difference over the seeds both rows share, pairing only "
            "runs that differ in optimizer keys alone; 95% percentile bootstrap CI over seeds (10 000 "
            "resamples, fixed seed)."
        )


TABLES: tuple[TableSpec, ...] = (
    TableSpec("table1", "Table 1: AMSGrad vs AdaSAM, β1 = 0.9", 0.9, "amsgrad", "adasam", 6, ("qnli", "qqp"), 0.28),
    TableSpec("table2", "Table 2: SGD vs SAM, β1 = 0.9", 0.9, "sgd", "sam", 7, ("rte",), None),
    TableSpec("table3", "Table 3: AMSGrad vs AdaSAM, β1 = 0", 0.0, "amsgrad", "adasam", 6, ("sst2", "rte"), 0.74),
    TableSpec("table4", "Table 4: SGD vs SAM, β1 = 0", 0.0, "sgd", "sam", 8, (), None),
)  # fmt: skip


def seeds_label(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def rhos_label(values: Iterable[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in sorted(values)) + "}"


@dataclass(frozen=True)
class Row:
    """An optimizer in one setting: ``setting`` is how its runs differ outside the optimizer keys from the
    table's reference, ``optim`` how they differ in optimizer keys but rho; both empty: the unmarked row."""

    method: str
    setting: Diff = ()
    optim: Diff = ()
    tag: str = field(default="", compare=False)  #: set when two rows' shortened labels would coincide

    @property
    def main(self) -> bool:
        return not self.setting and not self.optim

    @property
    def suffix(self) -> str:
        text = label_suffix(tuple(sorted(self.setting + self.optim)))
        return f"{text}, #{self.tag}" if self.tag else text

    @property
    def label(self) -> str:
        return method_name(self.method) + (f" [{self.suffix}]" if self.suffix else "")


@dataclass
class Cell:
    """One (row, task) of a table: its rho candidates, the chosen one, its metrics over seeds."""

    task: str
    optimizer: str
    candidates: list[Candidate]
    empty: pd.DataFrame  #: a frame without rows (the shape of an empty cell's runs)
    chosen: Candidate | None = None
    metrics: dict[str, Summary | None] = field(default_factory=dict)  #: paper metric -> summary (×1)
    seeds: pd.DataFrame | None = None  #: the chosen completed runs with every paper metric (``score``)

    @property
    def present(self) -> bool:
        return self.chosen is not None

    @property
    def rho(self) -> float | None:
        return self.chosen.rho if self.chosen else None

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([c.runs for c in self.candidates]) if self.candidates else self.empty

    @property
    def diverged(self) -> pd.DataFrame:
        return pd.concat([c.diverged for c in self.candidates]) if self.candidates else self.empty

    @property
    def n(self) -> int:
        return len(self.chosen.completed) if self.chosen else 0

    @property
    def score(self) -> float | None:
        """Task score: mean of the paper metrics' means (fraction); None unless all are present."""
        vals = [s.mean for s in self.metrics.values() if s is not None]
        complete = self.present and len(vals) == len(TASKS[self.task].paper_metrics)
        return sum(vals) / len(vals) if complete else None

    def is_edge(self) -> bool:
        return rho_edge(self.candidates, self.rho)

    def edge_note(self, grid: Iterable[float]) -> str | None:
        """Text when the chosen rho is on the edge of the tested grid (or no grid was searched). A tie
        with an interior rho is not an edge; a tie over every rho says the metric did not move."""
        tested = sorted(c.rho for c in self.candidates if c.rho is not None and c.selection is not None)
        if self.rho is None or not tested:
            return None
        untested = [g for g in grid if not any(math.isclose(g, t) for t in tested)]
        extra = f"; paper grid values not run: {rhos_label(untested)}" if untested else ""
        if len(tested) == 1:
            return f"only rho {self.rho:g} was run (no search){extra}"
        if len(tied_rhos(self.candidates, self.chosen)) == len(tested):
            return (
                f"every rho tested ties on the selection metric ({rhos_label(tested)}): rho made no "
                f"difference here; the smallest is shown (ties go to the smaller rho){extra}"
            )
        if self.is_edge():
            largest = math.isclose(self.rho, tested[-1])
            side, where = ("largest", "above") if largest else ("smallest", "below")
            return f"best rho {self.rho:g} is the {side} tested of {rhos_label(tested)}: the optimum may lie {where}{extra}"
        return f"interior{extra}" if extra else None


def build_cell(task: str, optimizer: str, runs: pd.DataFrame) -> Cell:
    """Select rho among the runs of one (row, task) and pool the seeds of the chosen identity."""
    cands = rho_candidates(runs, task)
    cell = Cell(task, optimizer, cands, runs.iloc[:0], choose_rho(cands))
    if cell.chosen is not None:
        done = cell.chosen.completed
        cell.metrics = {m: summarize(metric(done, m)) for m in TASKS[task].paper_metrics}
        scored = done.assign(score=task_score(done, task))
        cell.seeds = scored[scored.score.notna()]
    return cell


@dataclass
class Comparison:
    """A base row against a SAM row of the same setting (their runs differ only in optimizer keys)."""

    base: Row
    sam: Row
    base_cells: dict[str, Cell]
    sam_cells: dict[str, Cell]
    paired: list[Paired] = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.base.main and self.sam.main

    @property
    def name(self) -> str:
        return f"{self.sam.label} − {self.base.label}"

    def cell(self, task: str, optimizer: str) -> Cell:
        return (self.sam_cells if optimizer == self.sam.method else self.base_cells)[task]

    @property
    def common_tasks(self) -> list[str]:
        both = lambda t: self.base_cells[t].score is not None and self.sam_cells[t].score is not None  # noqa: E731
        return [t for t in TASK_ORDER if both(t)]

    def average(self, optimizer: str) -> float | None:
        tasks = self.common_tasks
        return sum(self.cell(t, optimizer).score for t in tasks) / len(tasks) if tasks else None

    def wins(self) -> tuple[list[str], list[str], list[str]]:
        """(tasks the SAM row wins, loses, ties) among the common tasks, on the task score."""
        won, lost, tied = [], [], []
        for t in self.common_tasks:
            a, b = self.sam_cells[t].score, self.base_cells[t].score
            (won if a > b else lost if a < b else tied).append(t)
        return won, lost, tied

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([c.runs for cells in (self.base_cells, self.sam_cells) for c in cells.values()])

    def win_line(self) -> str:
        s, b, (won, _, tied), m = self.sam.label, self.base.label, self.wins(), len(self.common_tasks)
        if m == 0:
            return f"{s} vs {b}: no task has results for both methods, so no comparison."
        avg = (self.average(self.sam.method) - self.average(self.base.method)) * 100
        text = f"{s} beats {b} on {len(won)} of {m} tasks{f' ({len(tied)} tied)' if tied else ''}, average {avg:+.{DECIMALS}f}"
        if m == len(TASK_ORDER):
            return text + "."
        return (
            text + f" (only the {m} of {len(TASK_ORDER)} tasks where both methods have results are compared)."
        )

    def identities(self) -> list[str]:
        """Per common task: the identities (group hashes) each side's cell pools."""
        out = []
        for t in self.common_tasks:
            a, b = self.sam_cells[t], self.base_cells[t]
            rho = "" if a.rho is None else f"ρ={a.rho:g}, "
            out.append(
                f"{task_name(t)}: {self.base.label} {b.chosen.group_hash} ({seeds_label(b.n)}), "
                f"{self.sam.label} {a.chosen.group_hash} ({rho}{seeds_label(a.n)})"
            )
        return out


def passes(record: dict) -> int | None:
    """The record's ``forward_backward_passes`` (None when absent or not an integer)."""
    v = record.get("forward_backward_passes")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass
class Matched:
    """The unmarked SAM cell of one task against a compute-matched base row (task score ×100)."""

    task: str
    base: Row  #: the base row whose runs have the SAM runs' forward/backward passes
    rho: float | None  #: the SAM cell's chosen rho
    sam: Summary  #: SAM task score over the cell's seeds (fraction)
    matched: Summary  #: base task score over the matched seeds (fraction)
    passes: tuple[int, ...]  #: the forward/backward passes of the matched runs (distinct)
    updates: tuple[int, ...]  #: the matched base runs' optimizer updates (distinct)
    paired: Paired

    @property
    def outcome(self) -> str:
        """win | loss | tie of the SAM cell on the mean task score."""
        a, b = self.sam.mean, self.matched.mean
        return "win" if a > b else "loss" if a < b else "tie"


@dataclass
class TableResult:
    spec: TableSpec
    rows: list[Row]  #: display order: the unmarked pair first, then each other setting
    cells: dict[tuple[Row, str], Cell]  #: (row, task) -> cell, rows by rows then TASK_ORDER
    duplicates: pd.DataFrame  #: :func:`adasam_glue.report.collect.dedupe` of this table's runs
    unused: pd.DataFrame  #: matching runs that are neither completed nor diverged
    comparisons: list[Comparison]  #: the unmarked pair first
    matched: list[Matched] = field(default_factory=list)  #: compute-matched comparisons

    @property
    def matched_name(self) -> str:
        return f"{method_name(self.spec.sam)} − {method_name(self.spec.base)} (compute-matched)"

    def cell(self, task: str, optimizer: str) -> Cell:
        """The unmarked row's cell of ``optimizer`` (the headline comparison's)."""
        return self.cells[(Row(optimizer), task)]

    @property
    def main(self) -> Comparison:
        """The headline comparison (its ``paired``, ``common_tasks``, ``average``, ``win_line``)."""
        return self.comparisons[0]

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([c.runs for c in self.cells.values()])

    @property
    def synthetic(self) -> bool:
        return any_synthetic(self.runs)

    @property
    def settings(self) -> list[Diff]:
        """The distinct row settings, the reference first."""
        return list(dict.fromkeys(r.setting for r in self.rows))

    def setting_runs(self, setting: Diff) -> pd.DataFrame:
        return pd.concat([c.runs for (row, _), c in self.cells.items() if row.setting == setting])

    def row_average(self, row: Row) -> float | None:
        """Avg. of a row: over the common tasks of the first comparison it takes part in."""
        comp = self.comparison_of(row)
        return comp.average(row.method) if comp else None

    def comparison_of(self, row: Row) -> Comparison | None:
        return next((c for c in self.comparisons if row in (c.base, c.sam)), None)


def eligible(spec: TableSpec, df: pd.DataFrame) -> pd.Series:
    """Per run: taken by the table (its optimizers and beta1, not an excluded experiment)."""
    return (
        df.optimizer.isin(spec.methods)
        & df.beta1.map(lambda b: b is not None and math.isclose(b, spec.beta1))
        & ~df.experiment.isin(EXCLUDED_EXPERIMENTS)
        & ~df.experiment.str.endswith((TUNING_SUFFIX, PROBE_SUFFIX))
        & ~df.config.map(lambda c: bool((c.get("trainer") or {}).get("batch_schedule")))
    ).astype(bool)


def _compute_matched(spec: TableSpec, rows: list[Row], cells: dict[tuple[Row, str], Cell]) -> list[Matched]:
    """The unmarked SAM cell of each task against every base row whose runs, seed by seed, differ from
    the SAM runs only in optimizer and :data:`MATCHED_KEYS` keys and ran as many forward/backward passes."""
    out = []
    for i, t in enumerate(TASK_ORDER):
        sam = cells[(Row(spec.sam), t)]
        for row in (r for r in rows if r.method == spec.base and not r.main):
            base = cells[(row, t)]
            if sam.seeds is None or sam.seeds.empty or base.seeds is None:
                continue
            sam_passes = dict(zip(sam.seeds.seed, sam.seeds.record.map(passes)))
            bp = base.seeds.record.map(passes)
            same = bp.notna() & (base.seeds.seed.map(sam_passes) == bp)
            ids = (sam.chosen.group_hash, base.chosen.group_hash)
            p = pair(t, sam.seeds, base.seeds[same], BOOTSTRAP_SEED + i, ids, (OPTIM, *MATCHED_KEYS))
            b = base.seeds.set_index("seed").loc[p.seeds]
            updates = tuple(sorted({u for r in b.record if isinstance(u := r.get("optimizer_updates"), int)}))
            ps = tuple(sorted(set(b.record.map(passes))))
            scores = summarize(sam.seeds.score), summarize(b.score)
            out += [Matched(t, row, sam.rho, *scores, ps, updates, p)] if p.n else []
    return out


def build_table(spec: TableSpec, frame: pd.DataFrame) -> TableResult:
    """Split the table's runs into rows of one setting, select rho, pool seeds, compare like with like.

    ``frame`` holds all the records: the table dedupes its eligible runs itself (preferring records of
    its own experiment) and lists the dropped copies.
    """
    matching = frame[eligible(spec, frame)].sort_values("rel")
    final = matching[matching.status.isin(("completed", "diverged"))]
    duplicates = dedupe(final, prefer=spec.name)
    kept = without(final, duplicates)
    row_of = assign_rows(kept, spec.methods).map(lambda r: Row(*r)) if len(kept) else pd.Series(dtype=object)
    order = lambda r: (r.setting != (), r.setting, r.optim != (), spec.methods.index(r.method), r.optim)  # noqa: E731
    rows = sorted({Row(m) for m in spec.methods} | set(row_of), key=order)
    labels = [r.label for r in rows]
    rows = [
        replace(r, tag=setting_hash(dict(r.setting + r.optim))[:6]) if labels.count(r.label) > 1 else r
        for r in rows
    ]
    cells = {
        (row, t): build_cell(t, row.method, kept[(kept.task == t) & (row_of == row)] if len(kept) else kept)
        for row in rows
        for t in TASK_ORDER
    }
    comparisons = []
    for sam in (r for r in rows if r.method == spec.sam):
        for base in (r for r in rows if r.method == spec.base and r.setting == sam.setting):
            comp = Comparison(base, sam, *({t: cells[(x, t)] for t in TASK_ORDER} for x in (base, sam)))
            comp.paired = [
                _pair(t, cells[(sam, t)], cells[(base, t)], BOOTSTRAP_SEED + i)
                for i, t in enumerate(TASK_ORDER)
            ]
            comparisons.append(comp)
    comparisons.sort(key=lambda c: (not c.main, c.sam.setting, c.base.optim, c.sam.optim))
    unused = matching[~matching.status.isin(("completed", "diverged"))]
    matched = _compute_matched(spec, rows, cells)
    return TableResult(spec, rows, cells, duplicates, unused, comparisons, matched)


def _pair(task: str, sam: Cell, base: Cell, boot_seed: int) -> Paired:
    """Seed-paired difference of two cells; a seed pairs only runs differing in optimizer keys alone."""
    ids = (sam.chosen.group_hash if sam.chosen else "", base.chosen.group_hash if base.chosen else "")
    empty = sam.empty.assign(score=[])
    return pair(task, *(c.seeds if c.seeds is not None else empty for c in (sam, base)), boot_seed, ids)
