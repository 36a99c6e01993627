"""Tables 1-4 of the paper rebuilt from the run frame (rows, cells, comparisons) and written as Markdown,
LaTeX and CSV; the protocol printed under every table is :attr:`TableSpec.protocol` (docs/algorithms.md
§4.4).

A table takes runs by optimizer and ``config.optim.beta1`` (not by experiment: the speedup and schedules
experiments, the lr-tuning stages, the recipe probes and batch-schedule runs excepted), dedupes them,
splits them into rows of one setting (:func:`adasam_glue.report.grouping.assign_rows`), selects rho per
cell and pools the seeds of the chosen identity (:mod:`adasam_glue.report.stats`). A comparison is a
base row and a SAM row of one setting; the unmarked pair is the headline. The compute-matched comparison
(issue 21 §2.2) sets the unmarked SAM cell against a base row whose runs differ only in optimizer and
schedule-length keys (:data:`MATCHED_KEYS`) and ran as many forward/backward passes. The text forms
choose and pool nothing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from adasam_glue.experiments.conf import rho_grid
from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report import stats
from adasam_glue.report.collect import EXCLUDED, code_text, dedupe, without
from adasam_glue.report.grouping import OPTIM, Diff, assign_rows, format_diff, label_suffix, setting_hash
from adasam_glue.report.palette import g_or, method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, heading, setting_text
from adasam_glue.tasks import TASK_ORDER, TASKS

DECIMALS = 2  #: shown precision of every table number (×100)
MISSING = "—"
NO_LEARNING_MARK = "‡"  #: a cell that does not learn (docs/algorithms.md §4.4 item 5)
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
            "results and learn (‡: every seed learned nothing, docs/algorithms.md §4.4 item 5). Bold: best shown value per column among the rows of one setting. "
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
    candidates: list[stats.Config]
    empty: pd.DataFrame  #: a frame without rows (the shape of an empty cell's runs)
    chosen: stats.Config | None
    metrics: dict[str, stats.Summary | None]  #: paper metric -> summary (×1); all None without a choice
    seeds: pd.DataFrame  #: the chosen completed runs with every paper metric (``score``: the task score)

    @property
    def present(self) -> bool:
        return self.chosen is not None

    @property
    def rho(self) -> float | None:
        return self.chosen.rho if self.chosen else None

    @property
    def group_hash(self) -> str:
        return self.chosen.group_hash if self.chosen else ""

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

    @property
    def seeds_without_learning(self) -> int:
        """Chosen seeds whose best-checkpoint dev metrics are a predictor's that learned nothing
        (:func:`adasam_glue.metrics.no_learning`)."""
        return stats.without_learning(self.seeds, self.task)

    @property
    def learns(self) -> bool:
        """False when every chosen seed shows no learning: the cell stays out of every comparison
        (docs/algorithms.md §4.4 item 5)."""
        return stats.learns(self.seeds, self.task)

    def is_edge(self) -> bool:
        return stats.rho_edge(self.candidates, self.rho)

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
        if len(stats.tied_rhos(self.candidates, self.chosen)) == len(tested):
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
    cands = stats.rho_candidates(runs, task)
    chosen = stats.choose_rho(cands)
    done = chosen.completed if chosen else runs.iloc[:0]
    metrics = {m: stats.summarize(stats.metric(done, m)) for m in TASKS[task].paper_metrics}
    seeds = stats.with_score(done, stats.task_score(done, task))
    return Cell(task, optimizer, cands, runs.iloc[:0], chosen, metrics, seeds)


def pair_cells(sam: Cell, base: Cell) -> stats.Paired:
    """Seed-paired difference of two cells' task scores; a seed pairs only runs differing in optimizer
    keys alone."""
    return stats.pair(sam.task, sam.seeds, base.seeds, (sam.group_hash, base.group_hash))


@dataclass
class Comparison:
    """A base row against a SAM row of the same setting (their runs differ only in optimizer keys)."""

    base: Row
    sam: Row
    base_cells: dict[str, Cell]
    sam_cells: dict[str, Cell]
    paired: list[stats.Paired] = field(default_factory=list)

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
        """Tasks where both cells have a score and both learn (docs/algorithms.md §4.4 items 4-5)."""
        return [t for t in self.scored_tasks if self.base_cells[t].learns and self.sam_cells[t].learns]

    @property
    def scored_tasks(self) -> list[str]:
        return [t for t in TASK_ORDER if None not in (self.base_cells[t].score, self.sam_cells[t].score)]

    def not_learning(self) -> str:
        """``"CoLA (SAM does not learn)"``, ...: the tasks with both scores left out, and why; or ``""``."""
        out = []
        for t in (t for t in self.scored_tasks if t not in self.common_tasks):
            who = [
                r.label
                for r, c in ((self.base, self.base_cells[t]), (self.sam, self.sam_cells[t]))
                if not c.learns
            ]
            out.append(f"{task_name(t)} ({' and '.join(who)} {'does' if len(who) == 1 else 'do'} not learn)")
        return ", ".join(out)

    def average(self, optimizer: str) -> float | None:
        tasks = self.common_tasks
        return sum(self.cell(t, optimizer).score for t in tasks) / len(tasks) if tasks else None

    def wins(self) -> tuple[list[str], list[str], list[str]]:
        """(tasks the SAM row wins, loses, ties) among the common tasks, on the task score."""
        d = {t: self.sam_cells[t].score - self.base_cells[t].score for t in self.common_tasks}
        return [t for t in d if d[t] > 0], [t for t in d if d[t] < 0], [t for t in d if d[t] == 0]

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([c.runs for cells in (self.base_cells, self.sam_cells) for c in cells.values()])

    def win_line(self) -> str:
        s, b, (won, _, tied), m = self.sam.label, self.base.label, self.wins(), len(self.common_tasks)
        left = f" Left out: {left}." if (left := self.not_learning()) else ""
        if m == 0:
            return f"{s} vs {b}: no task has results for both methods, so no comparison.{left}"
        avg = (self.average(self.sam.method) - self.average(self.base.method)) * 100
        text = f"{s} beats {b} on {len(won)} of {m} tasks{f' ({len(tied)} tied)' if tied else ''}, average {avg:+.{DECIMALS}f}"
        only = f" (only the {m} of {len(TASK_ORDER)} tasks where both methods have results and learn are compared)"
        return text + ("" if m == len(TASK_ORDER) else only) + "." + left

    def identities(self) -> list[str]:
        """Per common task: the identities (group hashes) each side's cell pools."""
        out = []
        for t in self.common_tasks:
            a, b = self.sam_cells[t], self.base_cells[t]
            rho = "" if a.rho is None else f"ρ={a.rho:g}, "
            out.append(
                f"{task_name(t)}: {self.base.label} {b.group_hash} ({seeds_label(b.n)}), "
                f"{self.sam.label} {a.group_hash} ({rho}{seeds_label(a.n)})"
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
    sam: stats.Summary  #: SAM task score over the cell's seeds (fraction)
    matched: stats.Summary  #: base task score over the matched seeds (fraction)
    passes: tuple[int, ...]  #: the forward/backward passes of the matched runs (distinct)
    updates: tuple[int, ...]  #: the matched base runs' optimizer updates (distinct)
    paired: stats.Paired
    not_learning: str = ""  #: which side does not learn ("" when both do): left out of the verdict

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
    for t in TASK_ORDER:
        sam = cells[(Row(spec.sam), t)]
        for row in (r for r in rows if r.method == spec.base and not r.main):
            base = cells[(row, t)]
            if sam.seeds.empty or base.seeds.empty:
                continue
            sam_passes = dict(zip(sam.seeds.seed, sam.seeds.record.map(passes)))
            bp = base.seeds.record.map(passes)
            same = bp.notna() & (base.seeds.seed.map(sam_passes) == bp)
            ids = (sam.group_hash, base.group_hash)
            p = stats.pair(t, sam.seeds, base.seeds[same], ids, (OPTIM, *MATCHED_KEYS))
            b = base.seeds.set_index("seed").loc[p.seeds]
            updates = tuple(sorted({u for r in b.record if isinstance(u := r.get("optimizer_updates"), int)}))
            ps = tuple(sorted(set(b.record.map(passes))))
            scores = stats.summarize(sam.seeds.score), stats.summarize(b.score)
            who = " and ".join(method_name(c.optimizer) for c in (sam, base) if not c.learns)
            out += [Matched(t, row, sam.rho, *scores, ps, updates, p, who)] if p.n else []
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
            comp.paired = [pair_cells(cells[(sam, t)], cells[(base, t)]) for t in TASK_ORDER]
            comparisons.append(comp)
    comparisons.sort(key=lambda c: (not c.main, c.sam.setting, c.base.optim, c.sam.optim))
    unused = matching[~matching.status.isin(("completed", "diverged"))]
    matched = _compute_matched(spec, rows, cells)
    return TableResult(spec, rows, cells, duplicates, unused, comparisons, matched)


# ----------------------------------------------------------------------------------------- text forms
COLUMNS = [(t, m) for t in TASK_ORDER for m in TASKS[t].paper_metrics]


def fmt(x: float) -> str:
    return f"{x * 100:.{DECIMALS}f}"


def ci_text(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{ci[0]:+.{DECIMALS}f}, {ci[1]:+.{DECIMALS}f}]"


def summary_text(s: stats.Summary, bold: bool = False) -> str:
    """``mean ± std (n)`` ×100 (one seed: no std)."""
    v = f"**{fmt(s.mean)}**" if bold else fmt(s.mean)
    return f"{v}{f' ± {fmt(s.std)}' if s.std is not None else ''} ({s.n})"


def _bold(res: TableResult) -> set[tuple[Row, object]]:
    """(row, column) to bold: the best shown value among one setting's rows, when two or more have one."""
    out: set[tuple[Row, object]] = set()
    for setting in res.settings:
        rows = [r for r in res.rows if r.setting == setting]

        def get_cell(row: Row, col: tuple[str, str]) -> stats.Summary | None:  # a ‡ cell is never the best
            c = res.cells[(row, col[0])]
            return c.metrics.get(col[1]) if c.learns else None

        cols = {col: lambda row, col=col: get_cell(row, col) for col in COLUMNS}
        for col, get in [*cols.items(), ("avg", res.row_average)]:
            shown = {row: fmt(v if col == "avg" else v.mean) for row in rows if (v := get(row)) is not None}
            if len(shown) >= 2:
                top = max(float(v) for v in shown.values())
                out |= {(r, col) for r, v in shown.items() if float(v) == top}
    return out


def _body(res: TableResult, cell: Callable, avg: Callable) -> list[list[str]]:
    """The main table, shared by the Markdown and LaTeX forms: per row its label, ``cell(summary, bold,
    diverged, learns)`` per metric column and ``avg(average, bold)``."""
    bold = _bold(res)
    return [
        [row.label]
        + [
            cell(
                (c := res.cells[(row, t)]).metrics.get(k),
                (row, (t, k)) in bold,
                len(c.diverged) > 0,
                c.learns,
            )
            for t, k in COLUMNS
        ]
        + [avg(res.row_average(row), (row, "avg") in bold)]
        for row in res.rows
    ]


def _who(setting) -> str:
    return "unmarked rows" if not setting else f"rows marked [{label_suffix(setting)}]"


def caption_lines(res: TableResult) -> list[str]:
    """What the runs of each row setting were trained on (model, data, updates, precision)."""
    return [
        f"Setting of the {_who(st)}: {setting_text(runs)}."
        for st in res.settings
        if len(runs := res.setting_runs(st)) or not st
    ]


def _listing(df: pd.DataFrame) -> str:
    return "; ".join(f"{r.description} [{r.status_text}]" for r in df.itertuples())


def notes(res: TableResult) -> list[str]:
    """Bulleted notes shared by the Markdown and LaTeX forms (plain text)."""
    spec, runs, comp, cells = res.spec, res.runs, res.main, res.cells.items()
    missing = [
        f"{method_name(m)} / {task_name(t)}" + (f" ({len(c.diverged)} diverged)" if len(c.diverged) else "")
        for t in TASK_ORDER
        for m in spec.methods
        if not (c := res.cells[(Row(m), t)]).present
    ]
    some = " of the unmarked rows" if len(res.rows) > 2 else ""
    lines = [
        f"Missing ({len(missing)} of {2 * len(TASK_ORDER)} cells{some}): {'; '.join(missing) or 'none'}."
    ]
    partial = [
        f"{row.label} / {task_name(t)}: {', '.join(metric_label(k) for k, s in c.metrics.items() if s is None)}"
        for t in TASK_ORDER
        for row in res.rows
        if (c := res.cells[(row, t)]).present and any(s is None for s in c.metrics.values())
    ]
    lines += ["Metrics missing from present cells: " + "; ".join(partial) + "."] if partial else []
    div = pd.concat([c.diverged for _, c in cells])
    n = div.group_hash.nunique()
    which = f" in {n} identit{'y' if n == 1 else 'ies'} — " + "; ".join(div.description) if len(div) else ""
    lines.append(f"Diverged runs: {len(div)}{which}.")
    for row in (r for r in res.rows if not r.main):
        tasks = ", ".join(task_name(t) for t in TASK_ORDER if len(res.cells[(row, t)].runs)) or "none"
        diff = format_diff(tuple(sorted(row.setting + row.optim)))
        lines.append(
            f"Row {row.label}: its runs differ from the unmarked {method_name(row.method)} row of the same "
            f"task in {diff} (tasks: {tasks})."
        )
    if 0 < (m := len(comp.common_tasks)) < len(TASK_ORDER):
        names = ", ".join(task_name(t) for t in comp.common_tasks)
        lines.append(f"Avg. is over the {m} tasks present for both methods where both learn: {names}.")
    dead = [f"{row.label} / {task_name(t)} ({c.n} of {c.n} seeds)" for (row, t), c in cells if not c.learns]
    some = [
        f"{row.label} / {task_name(t)} ({k} of {c.n} seeds)"
        for (row, t), c in cells
        if c.learns and (k := c.seeds_without_learning)
    ]
    if dead or some:
        lines.append(
            f"{NO_LEARNING_MARK} does not learn: every seed's best dev metrics are a predictor's that learned "
            "nothing (CoLA MCC exactly 0; STS-B Pearson and Spearman exactly 0; MRPC F1 = 0 or no negative "
            "found; on any task, every dev prediction the same where the record says so; docs/algorithms.md "
            "§4.4 item 5): "
            + ("; ".join(dead) or "none")
            + ". Such a cell is left out of the comparisons, averages and verdicts."
            + (f" Kept, with some seeds that learned nothing: {'; '.join(some)}." if some else "")
        )
    lines += [f"Comparison {c.name}: {c.win_line()}" for c in res.comparisons[1:]]
    edges = [
        f"{row.label} / {task_name(t)}: {note}"
        for (row, t), c in cells
        if row.method == spec.sam and (note := c.edge_note(spec.rho_grid))
    ]
    lines += ["Rho grid: " + "; ".join(edges) + "."] if edges else []
    flagged = runs[runs.flagged.map(bool).astype(bool)].drop_duplicates("rel").sort_values("rel")
    lines += ["Flagged by the report: " + _listing(flagged) + "."] if len(flagged) else []
    if len(res.unused):
        excluded = ", or excluded" if res.unused.status.eq(EXCLUDED).any() else ""
        lines.append(f"Not used (not completed{excluded}): " + _listing(res.unused) + ".")
    dup = "{0.rel} [{0.status_text}] (kept {0.kept_rel} [{0.kept_status_text}])"
    if dups := [dup.format(d) for d in res.duplicates.itertuples()]:
        lines.append(f"Duplicate runs dropped (same identity and seed as a kept run): {'; '.join(dups)}.")
    if mixed := mixed_code_cells(res):
        lines.append(
            "Code versions: the runs of these cells come from more than one git commit, or from uncommitted "
            "changes, so their seeds may not have run the same code (rerun_on_new_commit=true trains such "
            "runs again): " + "; ".join(mixed) + "."
        )
    if derived := runs[runs.identity_derived.astype(bool)].rel.nunique():
        lines.append(
            f"Identities of {derived} run(s) derived from their stored config (schema-1 records, "
            "fingerprints of the data and weights as found now)."
        )
    return lines


def mixed_code_cells(res: TableResult) -> list[str]:
    """``"<row> / <task> [rho r]: <commits>"`` for every identity of the table whose runs mix commits
    (a run resumed under another commit counts too) or ran from uncommitted changes."""
    return [
        f"{row.label} / {task_name(t)}{'' if c.rho is None else f' rho {c.rho:g}'}: {code[:-2]}"
        for (row, t), cell in res.cells.items()
        for c in cell.candidates
        if (code := code_text(c.runs)).endswith(" ⚠")
    ]


def synthetic_banner(res: TableResult) -> str:
    """The warning over a table with synthetic data: for all of it, or naming the rows it is in."""
    synth = [st for st in res.settings if any_synthetic(res.setting_runs(st))]
    if len(synth) == len([st for st in res.settings if len(res.setting_runs(st))]):
        return SYNTHETIC_BANNER
    where = f"SYNTHETIC DATA in the {', '.join(_who(st) for st in synth)}: those"
    return SYNTHETIC_BANNER.replace("SYNTHETIC DATA: these", where)


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> list[str]:
    """A Markdown table; ``align``: one character per column, ``r`` right-aligned (``---:``); a ``None``
    cell is written ``| |``."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header), "l")) + "|"
    lines = ["| " + " | ".join("\0" if c is None else str(c) for c in r) + " |" for r in rows]
    return ["| " + " | ".join(header) + " |", rule] + [ln.replace(" \0 ", " ") for ln in lines]


def _section(heading: str, head: list[str], body: list, align: str, *intro: str) -> list[str]:
    return ["", heading, "", *intro, *md_table(head, body, align)]


def render_markdown(res: TableResult) -> str:
    spec = res.spec
    out = heading(res.spec.title, res.synthetic, synthetic_banner(res))
    header = ["Method"] + [f"{task_name(t)} {metric_label(k)}" for t, k in COLUMNS] + ["Avg."]
    cell = lambda s, b, d, learns: (  # noqa: E731
        (MISSING if s is None else summary_text(s, b)) + "†" * d + ("" if learns else NO_LEARNING_MARK)
    )
    body = _body(res, cell, lambda a, b: MISSING if a is None else f"**{fmt(a)}**" if b else fmt(a))
    out += caption_lines(res) + ["", *md_table(header, body, "l" + "r" * (len(header) - 1))]
    out += ["", res.main.win_line(), "", spec.protocol, ""] + [f"- {line}" for line in notes(res)]
    for row in res.rows:  # rho selection, one section per row of the SAM method that has runs
        cells = [(t, res.cells[(row, t)]) for t in TASK_ORDER]
        if row.method != spec.sam or (not row.main and not any(len(c.runs) for _, c in cells)):
            continue
        body = []
        for t, c in cells:
            if not c.candidates:
                body += [[task_name(t), MISSING, "no runs", 0, None]] if row.main else []
                continue
            per = ", ".join(
                f"{g_or(cand.rho, 'n/a')}: "
                + (f"{fmt(cand.selection.mean)} ({cand.selection.n})" if cand.selection else MISSING)
                + (f" ({len(cand.diverged)} diverged)" if len(cand.diverged) else "")
                for cand in c.candidates
            )
            chosen = MISSING if c.chosen is None else g_or(c.rho, "n/a")
            body.append([task_name(t), chosen, per, len(c.diverged), "yes" if c.is_edge() else "no"])
        head = ["Task", "chosen rho", "mean selection metric ×100 (seeds) per rho", "diverged"]
        head += ["edge of grid"]
        out += _section(f"## rho selection ({row.label})", head, body, "lrlr")
    for comp in res.comparisons:  # paired comparison, one section per comparison
        if not comp.main and not any(p.n or p.refused for p in comp.paired):
            continue
        body = []
        for p in comp.paired:
            refused = f"; not paired, differ in {', '.join(p.refused)}" if p.refused else ""
            if p.mean is None:
                body.append([task_name(p.task), MISSING, MISSING, 0, None, refused.lstrip("; ")])
            else:
                dead = p.task in comp.scored_tasks and p.task not in comp.common_tasks
                left = f"; {NO_LEARNING_MARK} left out of the verdicts (does not learn)" if dead else ""
                body.append([task_name(p.task), *diff_cells(p), p.identities + refused + left])
        head = ["Task", "mean difference", "95% bootstrap CI", "seeds paired", "CI excludes 0", "identities"]
        out += _section(f"## Paired comparison: {comp.name} (task score ×100)", head, body, "lrlr")
    out += _matched_markdown(res)
    body = [
        [row.label, task_name(t), g_or(cand.rho, "n/a"), cand.group_hash]
        + [", ".join(str(s) for s in cand.completed.seed) or MISSING]
        + [", ".join(str(s) for s in cand.diverged.seed) or MISSING, code_text(cand.runs)]
        for (row, t), c in res.cells.items()
        for cand in c.candidates
    ]
    head = ["Row", "Task", "rho", "identity", "completed seeds", "diverged seeds", "code"]
    intro = (
        "Each cell pools the seeds of one identity (the group hash: the run identity without its seed). "
        "The identity says what ran, not which code: `code` names the git commit(s) of the runs' attempts "
        "(⚠: more than one, or uncommitted changes; see the notes)."
    )
    out += _section("## Identities", head, body, "llr", intro, "")
    out += [] if body else [f"| {MISSING} | no runs | | | | | |"]
    return "\n".join(out) + "\n"


def diff_cells(p: stats.Paired) -> list:
    """Mean difference, CI, seeds paired, whether the CI excludes 0 (blank: no seed paired)."""
    mean = MISSING if p.mean is None else f"{p.mean:+.{DECIMALS}f}"
    return [mean, ci_text(p.ci), p.n, p.excludes_zero if p.n else ""]


def _matched_markdown(res: TableResult) -> list[str]:
    """The compute-matched section; nothing when no base row is compute-matched."""
    if not res.matched:
        return []
    sam, base = method_name(res.spec.sam), method_name(res.spec.base)
    head = ["Task", f"{sam} (ρ)", f"{base} compute-matched", "passes per run", f"{base} updates"]
    head += ["mean difference", "95% bootstrap CI", "seeds paired", "CI excludes 0", "identities"]
    body = [
        [task_name(m.task), f"{summary_text(m.sam)} (ρ={g_or(m.rho, 'n/a')})"]
        + [f"{summary_text(m.matched)} [{m.base.suffix}]", ", ".join(map(str, m.passes))]
        + [", ".join(map(str, m.updates)) or MISSING, *diff_cells(m.paired)]
        + [
            m.paired.identities
            + (f"; {NO_LEARNING_MARK} {m.not_learning} does not learn: left out" if m.not_learning else "")
        ]
        for m in res.matched
    ]
    intro = (
        f"What each comparison supports: {sam} against the unmarked {base} row is a comparison at equal "
        f"optimizer updates ({sam} spends two forward/backward passes per update, so twice the compute); "
        f"{sam} against the compute-matched {base} row is a comparison at equal compute (the same "
        f"forward/backward passes per run, {base} taking twice the updates over the same recipe). "
        f"A compute-matched {base} run differs from the {sam} run of its seed (the chosen rho) only in the "
        "optimizer keys and in task.total_updates, task.warmup_updates, task.epochs, and its record has "
        "the same forward_backward_passes; the paired difference pairs those seeds, with the bootstrap of "
        "the paired comparisons above."
    )
    heading = f"## Compute-matched comparison: {res.matched_name} (task score ×100)"
    counted = [m for m in res.matched if not m.not_learning]
    by = {o: [task_name(m.task) for m in counted if m.outcome == o] for o in ("win", "loss", "tie")}
    names = {o: ", ".join(v) or "none" for o, v in by.items()}
    line = (
        f"At equal compute, {sam} beats the compute-matched {base} on {len(by['win'])} of {len(counted)} "
        f"comparison(s) ({names['win']}); loses on {names['loss']}; ties on {names['tie']}."
    )
    return _section(heading, head, body, "lrrrrrlrll", intro, "") + ["", line]


_TEX = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "{": r"\{", "}": r"\}", "$": r"\$", "—": "---", "−": "-",
        "–": "--", "…": r"\ldots{}", "ρ": r"$\rho$", "β1": r"$\beta_1$", "β": r"$\beta$", "±": r"$\pm$",
        "†": r"$^\dagger$", "‡": r"$^\ddagger$", "→": r"$\to$", "×": r"$\times$", "≥": r"$\geq$", "~": r"\textasciitilde{}"}  # fmt: skip
_TEX_RE = re.compile("|".join(map(re.escape, sorted(_TEX, key=len, reverse=True))))


def tex_escape(s: str) -> str:
    return _TEX_RE.sub(lambda m: _TEX[m.group()], s)


def _tex_cell(s: stats.Summary | None, bold: bool, dagger: bool, learns: bool = True) -> str:
    v = "" if s is None else rf"\textbf{{{fmt(s.mean)}}}" if bold else fmt(s.mean)
    sd = "" if s is None or s.std is None else rf"$\pm${fmt(s.std)}"
    marks = r"$^\dagger$" * dagger + ("" if learns else r"$^\ddagger$")
    return ("--" if s is None else rf"{v}{sd}\,{{\scriptsize({s.n})}}") + marks


def render_tex(res: TableResult) -> str:
    """A ``table`` environment (needs ``booktabs`` and ``graphicx``)."""
    caption = " ".join(
        [res.spec.title + (" — SYNTHETIC DATA" if res.synthetic else "") + "."]
        + caption_lines(res)
        + [res.main.win_line()]
    )
    caption = (synthetic_banner(res) + " " if res.synthetic else "") + caption
    top = [
        rf"\multicolumn{{{k}}}{{c}}{{{tex_escape(task_name(t))}}}" if k > 1 else tex_escape(task_name(t))
        for t, k in ((t, len(TASKS[t].paper_metrics)) for t in TASK_ORDER)
    ]
    body = _body(res, _tex_cell, lambda a, b: "--" if a is None else rf"\textbf{{{fmt(a)}}}" if b else fmt(a))
    out = [
        "% Generated by `python -m adasam_glue.report` from run records; do not edit by hand.",
        "% Needs \\usepackage{booktabs,graphicx}.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(caption)}}}",
        rf"\label{{tab:{res.spec.name}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "r" * (len(COLUMNS) + 1) + "}",
        r"\toprule",
        " & ".join(["Method", *top, "Avg."]) + r" \\",
        " & ".join([""] + [tex_escape(metric_label(k)) for _, k in COLUMNS] + [""]) + r" \\",
        r"\midrule",
        *[" & ".join([tex_escape(label), *cells]) + r" \\" for label, *cells in body],
        r"\bottomrule",
        r"\end{tabular}}",
        r"\par\smallskip",
        r"\begin{minipage}{\textwidth}\footnotesize",
    ]
    out += [tex_escape(line) + r"\par" for line in [res.spec.protocol, *notes(res)]]
    return "\n".join([*out, r"\end{minipage}", r"\end{table}"]) + "\n"


def num(x: float | None, scale: float = 100.0) -> str:
    return "" if x is None else f"{x * scale:.4f}"


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    return buf.getvalue()


def render_csv(res: TableResult) -> str:
    """One row per table row; per task: each metric (mean ×100) and its std, n, rho, diverged, the seeds
    that learned nothing (:func:`adasam_glue.metrics.no_learning`; all n: the cell does not learn), identity;
    the row's setting in words (``synthetic`` in it when the data was generated)."""
    header = ["method", "optimizer", "beta1", "row", "setting"]
    for t in TASK_ORDER:
        header += [f"{t}_{k}{s}" for k in TASKS[t].paper_metrics for s in ("", "_std")]
        header += [f"{t}_n", f"{t}_rho", f"{t}_diverged", f"{t}_no_learning", f"{t}_identity"]
    rows = []
    for row in res.rows:
        cells = [(t, res.cells[(row, t)]) for t in TASK_ORDER]
        setting = setting_text(pd.concat([c.runs for _, c in cells]))
        line = [method_name(row.method), row.method, f"{res.spec.beta1:g}", row.suffix, setting]
        for t, c in cells:
            ss = [c.metrics.get(k) for k in TASKS[t].paper_metrics]
            line += [num(x) for s in ss for x in ((s.mean, s.std) if s else (None, None))]
            line += [
                str(c.n),
                g_or(c.rho, ""),
                str(len(c.diverged)),
                str(c.seeds_without_learning),
                c.group_hash,
            ]
        comp = res.comparison_of(row)
        rows.append(line + [num(res.row_average(row)), str(len(comp.common_tasks)) if comp else "0"])
    return _csv([*header, "average", "average_tasks"], rows)


PAIRED_HEADER = (
    "table comparison method baseline task mean_difference ci_low ci_high seeds_paired method_identity "
    "baseline_identity setting left_out"
).split()


def paired_cells(p) -> list[object]:
    """Mean difference, CI bounds (4 decimals), seeds paired and the two identities, for a CSV."""
    ci = ["", ""] if p.ci is None else [f"{p.ci[0]:.4f}", f"{p.ci[1]:.4f}"]
    return ["" if p.mean is None else f"{p.mean:.4f}", *ci, p.n, p.sam_identity, p.base_identity]


def _left_out(comp: Comparison, task: str) -> str:
    """Why a task's paired difference is left out of the verdicts (a side does not learn), or ``""``."""
    if task not in comp.scored_tasks or task in comp.common_tasks:
        return ""
    who = [c.optimizer for c in (comp.base_cells[task], comp.sam_cells[task]) if not c.learns]
    return f"{' and '.join(method_name(o) for o in who)} {'does' if len(who) == 1 else 'do'} not learn"


def render_paired_csv(results: Sequence[TableResult]) -> str:
    """Long form of every table's paired comparisons (points ×100), with the identities paired."""
    rows = []
    for res in results:
        spec = res.spec
        for comp in res.comparisons:
            setting = setting_text(comp.runs)
            line = [spec.name, comp.name, spec.sam, spec.base]
            rows += [
                [*line, p.task, *paired_cells(p), setting, _left_out(comp, p.task)]
                for p in comp.paired
                if comp.main or p.n
            ]
        for m in res.matched:
            runs = pd.concat([res.cells[(Row(spec.sam), m.task)].runs, res.cells[(m.base, m.task)].runs])
            line = [spec.name, res.matched_name, spec.sam, spec.base, m.task]
            left = f"{m.not_learning} does not learn" if m.not_learning else ""
            rows.append([*line, *paired_cells(m.paired), setting_text(runs), left])
    return _csv(PAIRED_HEADER, rows)
