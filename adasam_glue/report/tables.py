"""Tables 1-4 of the paper rebuilt from run records (Markdown, LaTeX, CSV).

Protocol (printed under every table; docs/algorithms.md §4.4 and the tuning playbook):

1. Runs enter a table by optimizer name and ``config.optim.beta1`` (not by experiment name), except the
   experiments that vary batch size or schedule by design (``speedup``, ``schedules``), the lr-tuning
   experiments (``*_tune``, :mod:`adasam_glue.tuned_lr`) and runs with a ``trainer.batch_schedule``.
   Two records of one identity and seed are one run
   (:func:`adasam_glue.report.collect.dedupe`); the dropped copy is listed.
2. Like with like (:mod:`adasam_glue.report.grouping`): runs that differ in anything but the seed,
   rho and the optimizer keys (model, data, lr, batch, updates, max_length, precision, schedule, ...)
   go to different rows; a row label names the keys in which it differs from the unmarked rows, and
   the caption states each row setting's model, data, updates and precision.
3. For each (row, task), rho is chosen among runs identical but for rho, by the mean over seeds of the
   task's selection metric (``TaskInfo.selection_metric``) at each run's best checkpoint, over
   ``completed`` runs only; ties go to the smaller rho.
4. The cell is mean ± sample std (ddof=1) over the completed seeds of the chosen identity, ×100, with
   the number of seeds in parentheses; one seed shows the mean alone. ``diverged`` runs never enter a
   mean: they are counted per identity (†) and listed. A cell without a completed run is "—".
5. A comparison is a base row and a SAM row of the same setting (their runs differ only in the
   optimizer keys); the unmarked pair is the table's headline. A task's score is the mean of its paper
   metrics; Avg. is the mean task score over the tasks where both rows of the comparison have one.
   The paired difference pairs, per seed, runs whose identities differ only in the optimizer keys.
6. Bold marks the best value per column among the rows of one setting, when two or more have one.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from adasam_glue.report.collect import Run
from adasam_glue.report.grouping import (
    OPTIM,
    Diff,
    diff_from,
    differs_outside,
    format_diff,
    global_part,
    label_suffix,
    mode,
    optim_part,
    setting_hash,
    task_part,
)
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, setting_text
from adasam_glue.report.stats import BOOTSTRAP_SEED, Summary, bootstrap_mean_ci, summarize
from adasam_glue.tasks import TASK_ORDER, TASKS
from adasam_glue.tuned_lr import TUNING_SUFFIX

__all__ = [
    "EXCLUDED_EXPERIMENTS",
    "TABLES",
    "Cell",
    "Comparison",
    "Paired",
    "Row",
    "TableResult",
    "TableSpec",
    "build_table",
    "render_csv",
    "render_markdown",
    "render_tex",
]

DECIMALS = 2  #: shown precision of every table number (×100)
MISSING = "—"
EXCLUDED_EXPERIMENTS = ("speedup", "schedules")  #: vary batch size / schedule on purpose


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables: a base optimizer against its SAM counterpart at one beta1."""

    name: str
    title: str
    beta1: float
    base: str
    sam: str
    rho_grid: tuple[float, ...]  #: the paper's grid for the SAM method
    paper_wins: int  #: "sam beats base on k of 8 tasks" in the paper
    paper_losses: tuple[str, ...]  #: the tasks where the paper's SAM method does not win
    paper_average: float | None  #: the paper's average gain (points), when it states one

    @property
    def methods(self) -> tuple[str, str]:
        return (self.base, self.sam)


ADASAM_GRID = (0.01, 0.005, 0.001)
SAM_GRID = (0.01, 0.005)
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "table1",
        "Table 1: AMSGrad vs AdaSAM, β1 = 0.9",
        0.9,
        "amsgrad",
        "adasam",
        ADASAM_GRID,
        6,
        ("qnli", "qqp"),
        0.28,
    ),
    TableSpec("table2", "Table 2: SGD vs SAM, β1 = 0.9", 0.9, "sgd", "sam", SAM_GRID, 7, ("rte",), None),
    TableSpec(
        "table3",
        "Table 3: AMSGrad vs AdaSAM, β1 = 0",
        0.0,
        "amsgrad",
        "adasam",
        ADASAM_GRID,
        6,
        ("sst2", "rte"),
        0.74,
    ),
    TableSpec("table4", "Table 4: SGD vs SAM, β1 = 0", 0.0, "sgd", "sam", SAM_GRID, 8, (), None),
)


@dataclass(frozen=True)
class Row:
    """One row of a table: an optimizer in one setting.

    ``setting`` is how the row's runs differ from the table's reference setting outside the optimizer
    keys (global keys against the table's reference, task keys against the task's); ``optim`` how they
    differ in the optimizer keys but rho from the reference of their (task, optimizer). Both empty:
    the unmarked row.
    """

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
class RhoCandidate:
    """The runs of one identity but for the seed: one rho of a cell."""

    rho: float | None
    selection: Summary | None  #: selection metric over completed seeds (fraction)
    completed: list[Run]
    diverged: list[Run]

    @property
    def group_hash(self) -> str:
        runs = self.completed or self.diverged
        return runs[0].group_hash if runs else ""


@dataclass
class Cell:
    """One (row, task) of a table."""

    task: str
    optimizer: str
    candidates: list[RhoCandidate] = field(default_factory=list)
    rho: float | None = None  #: the chosen rho (None: non-SAM optimizer, or nothing to choose from)
    chosen: RhoCandidate | None = None
    metrics: dict[str, Summary | None] = field(default_factory=dict)  #: paper metric -> summary (×1)
    diverged: list[Run] = field(default_factory=list)  #: over all rhos
    seed_scores: dict[int, float] = field(default_factory=dict)  #: seed -> task score at chosen rho
    seed_runs: dict[int, Run] = field(default_factory=dict)  #: seed -> run at chosen rho

    @property
    def present(self) -> bool:
        return self.chosen is not None

    @property
    def runs(self) -> list[Run]:
        return [r for c in self.candidates for r in (*c.completed, *c.diverged)]

    @property
    def score(self) -> float | None:
        """Task score: mean of the paper metrics' means (fraction); None unless all are present."""
        vals = [s.mean for s in self.metrics.values() if s is not None]
        if not self.present or len(vals) != len(TASKS[self.task].paper_metrics):
            return None
        return sum(vals) / len(vals)

    @property
    def n(self) -> int:
        return len(self.chosen.completed) if self.chosen else 0

    def edge_note(self, grid: Sequence[float]) -> str | None:
        """Text when the chosen rho is on the edge of the tested grid (or when no grid was searched)."""
        tested = sorted(c.rho for c in self.candidates if c.rho is not None and c.selection is not None)
        if self.rho is None or not tested:
            return None
        untested = [g for g in grid if not any(math.isclose(g, t) for t in tested)]
        extra = f"; paper grid values not run: {_rhos(untested)}" if untested else ""
        if len(tested) == 1:
            return f"only rho {self.rho:g} was run (no search){extra}"
        if math.isclose(self.rho, tested[-1]):
            return f"best rho {self.rho:g} is the largest tested of {_rhos(tested)}: the optimum may lie above{extra}"
        if math.isclose(self.rho, tested[0]):
            return f"best rho {self.rho:g} is the smallest tested of {_rhos(tested)}: the optimum may lie below{extra}"
        return f"interior{extra}" if extra else None

    def is_edge(self) -> bool:
        tested = sorted(c.rho for c in self.candidates if c.rho is not None and c.selection is not None)
        return (
            self.rho is not None
            and len(tested) >= 2
            and (math.isclose(self.rho, tested[0]) or math.isclose(self.rho, tested[-1]))
        )


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _rhos(values: Iterable[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in sorted(values)) + "}"


@dataclass
class Paired:
    """SAM row minus base row on one task, paired by seed (points ×100)."""

    task: str
    n: int
    mean: float | None
    ci: tuple[float, float] | None
    sam_identity: str = ""  #: group hash of the SAM cell's chosen identity
    base_identity: str = ""
    refused: list[str] = field(default_factory=list)  #: keys that kept a seed's runs from being paired


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
        return [
            t
            for t in TASK_ORDER
            if self.base_cells[t].score is not None and self.sam_cells[t].score is not None
        ]

    def average(self, optimizer: str) -> float | None:
        tasks = self.common_tasks
        if not tasks:
            return None
        return sum(self.cell(t, optimizer).score for t in tasks) / len(tasks)

    def wins(self) -> tuple[list[str], list[str], list[str]]:
        """(tasks the SAM row wins, loses, ties) among the common tasks, on the task score."""
        won, lost, tied = [], [], []
        for t in self.common_tasks:
            a, b = self.sam_cells[t].score, self.base_cells[t].score
            (won if a > b else lost if a < b else tied).append(t)
        return won, lost, tied

    @property
    def runs(self) -> list[Run]:
        return [r for cells in (self.base_cells, self.sam_cells) for c in cells.values() for r in c.runs]

    @property
    def synthetic(self) -> bool:
        return any_synthetic(self.runs)

    def win_line(self) -> str:
        s, b = self.sam.label, self.base.label
        won, lost, tied = self.wins()
        m = len(self.common_tasks)
        if m == 0:
            return f"{s} vs {b}: no task has results for both methods, so no comparison."
        avg = (self.average(self.sam.method) - self.average(self.base.method)) * 100
        ties = f" ({len(tied)} tied)" if tied else ""
        if m == len(TASK_ORDER):
            return f"{s} beats {b} on {len(won)} of {m} tasks{ties}, average {avg:+.{DECIMALS}f}."
        return (
            f"{s} beats {b} on {len(won)} of {m} tasks{ties}, average {avg:+.{DECIMALS}f} "
            f"(only the {m} of {len(TASK_ORDER)} tasks where both methods have results are compared)."
        )

    def identities(self) -> list[str]:
        """Per common task: the identities (group hashes) each side's cell pools."""
        out = []
        for t in self.common_tasks:
            a, b = self.sam_cells[t], self.base_cells[t]
            out.append(
                f"{task_name(t)}: {self.base.label} {b.chosen.group_hash} ({_seeds(b.n)}), "
                f"{self.sam.label} {a.chosen.group_hash} ("
                + ("" if a.rho is None else f"ρ={a.rho:g}, ")
                + f"{_seeds(a.n)})"
            )
        return out


@dataclass
class TableResult:
    spec: TableSpec
    rows: list[Row]  #: display order: the unmarked pair first, then each other setting
    cells: dict[tuple[Row, str], Cell]  #: (row, task) -> cell
    duplicates: list[tuple[Run, Run]]  #: (dropped, kept) among this table's runs
    unused: list[Run]  #: matching runs that are neither completed nor diverged
    comparisons: list[Comparison]  #: the unmarked pair first

    def row_cell(self, row: Row, task: str) -> Cell:
        return self.cells[(row, task)]

    def cell(self, task: str, optimizer: str) -> Cell:
        """The unmarked row's cell of ``optimizer`` (the headline comparison's)."""
        return self.cells[(Row(optimizer), task)]

    @property
    def main(self) -> Comparison:
        return self.comparisons[0]

    @property
    def paired(self) -> list[Paired]:
        return self.main.paired

    @property
    def common_tasks(self) -> list[str]:
        return self.main.common_tasks

    def average(self, optimizer: str) -> float | None:
        return self.main.average(optimizer)

    def wins(self) -> tuple[list[str], list[str], list[str]]:
        return self.main.wins()

    def win_line(self) -> str:
        return self.main.win_line()

    @property
    def runs(self) -> list[Run]:
        return [r for c in self.cells.values() for r in c.runs]

    @property
    def synthetic(self) -> bool:
        return any_synthetic(self.runs)

    def setting_rows(self, setting: Diff) -> list[Row]:
        return [r for r in self.rows if r.setting == setting]

    @property
    def settings(self) -> list[Diff]:
        """The distinct row settings, the reference first."""
        return list(dict.fromkeys(r.setting for r in self.rows))

    def setting_runs(self, setting: Diff) -> list[Run]:
        return [
            r for row in self.setting_rows(setting) for t in TASK_ORDER for r in self.row_cell(row, t).runs
        ]

    def row_average(self, row: Row) -> float | None:
        """Avg. of a row: over the common tasks of the first comparison it takes part in."""
        for comp in self.comparisons:
            if row in (comp.base, comp.sam):
                return comp.average(row.method)
        return None

    @property
    def n_diverged(self) -> int:
        return sum(len(c.diverged) for c in self.cells.values())


# ------------------------------------------------------------------------------------------ building
def eligible(spec: TableSpec, run: Run) -> bool:
    return (
        run.optimizer in spec.methods
        and run.beta1 is not None
        and math.isclose(run.beta1, spec.beta1)
        and run.experiment not in EXCLUDED_EXPERIMENTS
        and not run.experiment.endswith(TUNING_SUFFIX)
        and not (run.config.get("trainer") or {}).get("batch_schedule")
    )


def assign_rows(runs: Sequence[Run], methods: Sequence[str]) -> dict[str, Row]:
    """run.rel -> its row (:mod:`adasam_glue.report.grouping` for the rule)."""
    done = [r.completed for r in runs]
    g_ref = mode([global_part(r.flat) for r in runs], done)
    by_task: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_task[r.task].append(r)
    out: dict[str, Row] = {}
    for _, rs in sorted(by_task.items()):
        in_ref = [r for r in rs if global_part(r.flat) == g_ref] or rs
        t_ref = mode([task_part(r.flat) for r in in_ref], [r.completed for r in in_ref])
        for m in methods:
            rm = [r for r in rs if r.optimizer == m]
            if not rm:
                continue
            pool = [r for r in rm if global_part(r.flat) == g_ref] or rm
            pool = [r for r in pool if task_part(r.flat) == t_ref] or pool
            o_ref = mode([optim_part(r.flat) for r in pool], [r.completed for r in pool])
            for r in rm:
                setting = tuple(
                    sorted(diff_from(g_ref, global_part(r.flat)) + diff_from(t_ref, task_part(r.flat)))
                )
                out[r.rel] = Row(m, setting, diff_from(o_ref, optim_part(r.flat)))
    return out


def _row_order(methods: Sequence[str]):
    return lambda row: (row.setting != (), row.setting, row.optim != (), methods.index(row.method), row.optim)


def _build_cell(task: str, optimizer: str, runs: list[Run]) -> Cell:
    info = TASKS[task]
    cell = Cell(task, optimizer)
    by_rho: dict[float | None, list[Run]] = defaultdict(list)
    for r in runs:
        by_rho[r.rho].append(r)
    for rho in sorted(by_rho, key=lambda x: (x is not None, x or 0.0)):
        rs = sorted(by_rho[rho], key=lambda r: (r.seed, r.rel))
        done = [r for r in rs if r.completed]
        cell.candidates.append(
            RhoCandidate(
                rho,
                summarize(
                    [r.best.get(info.selection_metric) for r in done if info.selection_metric in r.best]
                ),
                done,
                [r for r in rs if r.diverged],
            )
        )
        cell.diverged += [r for r in rs if r.diverged]
    scored = [c for c in cell.candidates if c.selection is not None]
    if scored:
        # max mean; ties -> smaller rho (candidates are sorted by rho, max() keeps the first maximum)
        best = max(scored, key=lambda c: c.selection.mean)
        cell.chosen, cell.rho = best, best.rho
        for m in info.paper_metrics:
            cell.metrics[m] = summarize([r.best[m] for r in best.completed if m in r.best])
        for r in best.completed:
            if all(m in r.best for m in info.paper_metrics):
                cell.seed_scores[r.seed] = sum(r.best[m] for m in info.paper_metrics) / len(
                    info.paper_metrics
                )
                cell.seed_runs[r.seed] = r
    return cell


def _pair(task: str, sam: Cell, base: Cell, boot_seed: int) -> Paired:
    """Seed-paired difference of two cells; a seed pairs only runs differing in optimizer keys alone."""
    diffs, refused = [], []
    for s in sorted(set(sam.seed_scores) & set(base.seed_scores)):
        unlike = differs_outside(sam.seed_runs[s].flat, base.seed_runs[s].flat, (OPTIM,))
        if unlike:
            refused += unlike
            continue
        diffs.append((sam.seed_scores[s] - base.seed_scores[s]) * 100)
    return Paired(
        task,
        len(diffs),
        sum(diffs) / len(diffs) if diffs else None,
        bootstrap_mean_ci(diffs, seed=boot_seed),
        sam.chosen.group_hash if sam.chosen else "",
        base.chosen.group_hash if base.chosen else "",
        sorted(set(refused)),
    )


def build_table(spec: TableSpec, runs: Sequence[Run]) -> TableResult:
    """Split ``runs`` into rows of one setting, select rho, aggregate seeds, compare like with like.

    ``runs`` are all the records (``Collection.runs``): the table dedupes its eligible runs itself
    (:func:`adasam_glue.report.collect.dedupe`, preferring records of its own experiment) and lists
    the dropped copies.
    """
    from adasam_glue.report.collect import dedupe

    matching = sorted((r for r in runs if eligible(spec, r)), key=lambda r: r.rel)
    unused = [r for r in matching if r.status not in ("completed", "diverged")]
    final = [r for r in matching if r.status in ("completed", "diverged")]
    duplicates = dedupe(final, prefer=spec.name)
    dropped = {d.rel for d, _ in duplicates}
    kept = [r for r in final if r.rel not in dropped]
    row_of = assign_rows(kept, spec.methods)
    rows = sorted({Row(m) for m in spec.methods} | set(row_of.values()), key=_row_order(spec.methods))
    labels = [r.label for r in rows]
    rows = [
        replace(r, tag=setting_hash(dict(r.setting + r.optim))[:6]) if labels.count(r.label) > 1 else r
        for r in rows
    ]
    cells = {}
    for row in rows:
        for t in TASK_ORDER:
            cells[(row, t)] = _build_cell(
                t, row.method, [r for r in kept if r.task == t and row_of[r.rel] == row]
            )
    comparisons = []
    for sam in (r for r in rows if r.method == spec.sam):
        for base in (r for r in rows if r.method == spec.base and r.setting == sam.setting):
            comp = Comparison(
                base, sam, {t: cells[(base, t)] for t in TASK_ORDER}, {t: cells[(sam, t)] for t in TASK_ORDER}
            )
            comp.paired = [
                _pair(t, comp.sam_cells[t], comp.base_cells[t], BOOTSTRAP_SEED + i)
                for i, t in enumerate(TASK_ORDER)
            ]
            comparisons.append(comp)
    comparisons.sort(key=lambda c: (not c.main, c.sam.setting, c.base.optim, c.sam.optim))
    return TableResult(spec, rows, cells, duplicates, sorted(unused, key=lambda r: r.rel), comparisons)


# ----------------------------------------------------------------------------------------- rendering
def _columns() -> list[tuple[str, str]]:
    return [(t, m) for t in TASK_ORDER for m in TASKS[t].paper_metrics]


def _fmt(x: float) -> str:
    return f"{x * 100:.{DECIMALS}f}"


def _bold_sets(res: TableResult) -> dict[object, set[Row]]:
    """(setting, column key) -> rows to bold: best shown value among one setting's rows (>= 2 values)."""
    out: dict[object, set[Row]] = {}
    for setting in res.settings:
        rows = res.setting_rows(setting)
        for col in _columns():
            shown = {
                row: _fmt(s.mean)
                for row in rows
                if (s := res.row_cell(row, col[0]).metrics.get(col[1])) is not None
            }
            if len(shown) >= 2:
                top = max(float(v) for v in shown.values())
                out[(setting, col)] = {r for r, v in shown.items() if float(v) == top}
        avgs = {row: _fmt(a) for row in rows if (a := res.row_average(row)) is not None}
        if len(avgs) >= 2:
            top = max(float(v) for v in avgs.values())
            out[(setting, "avg")] = {r for r, v in avgs.items() if float(v) == top}
    return out


def _is_bold(bold: dict[object, set[Row]], row: Row, col: object) -> bool:
    return row in bold.get((row.setting, col), ())


def protocol_text(spec: TableSpec) -> str:
    grid = _rhos(spec.rho_grid)
    return (
        f"Protocol: runs with optim.beta1 = {spec.beta1:g} (any experiment except "
        f"{', '.join(EXCLUDED_EXPERIMENTS)} and the lr-tuning ones, *{TUNING_SUFFIX}). Runs that differ in anything but seed, rho and the "
        "optimizer keys (model, data, lr, batch, updates, max_length, precision, schedule, ...) are in "
        "different rows; a row label names how it differs from the unmarked rows. For each row and task, "
        "rho is chosen on the dev set among runs identical but for rho, by the mean over seeds of the "
        "task's selection metric (CoLA MCC, STS-B Pearson, MNLI matched acc, else acc) at each run's best "
        f"checkpoint; paper grid for {method_name(spec.sam)}: {grid}. "
        "Each cell is mean ± sample std (ddof=1) over the completed seeds of one identity (the chosen "
        "rho), ×100, with the number of seeds in parentheses (one seed: mean only). Diverged runs are "
        "excluded from the means, counted per identity (†) and listed. A task's score is the mean of its "
        "metrics; Avg. is the mean task score over the tasks where both rows of the comparison have "
        "results. Bold: best shown value per column among the rows of one setting. "
        "Paired comparison: per-seed task-score difference over the seeds both rows share, pairing only "
        "runs that differ in optimizer keys alone; 95% percentile bootstrap CI over seeds (10 000 "
        "resamples, fixed seed)."
    )


def caption_lines(res: TableResult) -> list[str]:
    """What the runs of each row setting were trained on (model, data, updates, precision)."""
    lines = []
    for setting in res.settings:
        runs = res.setting_runs(setting)
        if not runs and setting:
            continue
        who = "unmarked rows" if not setting else "rows marked [" + label_suffix(setting) + "]"
        lines.append(f"Setting of the {who}: {setting_text(runs)}.")
    return lines


def _notes(res: TableResult) -> list[str]:
    """Bulleted notes shared by the Markdown and LaTeX forms (plain text)."""
    spec = res.spec
    lines = []
    main_rows = [Row(m) for m in spec.methods]
    missing = [
        f"{method_name(row.method)} / {task_name(t)}"
        + (f" ({len(c.diverged)} diverged)" if c.diverged else "")
        for t in TASK_ORDER
        for row in main_rows
        if not (c := res.row_cell(row, t)).present
    ]
    lines.append(
        f"Missing ({len(missing)} of {2 * len(TASK_ORDER)} cells"
        + (" of the unmarked rows" if len(res.rows) > 2 else "")
        + "): "
        + ("; ".join(missing) if missing else "none")
        + "."
    )
    partial = [
        f"{row.label} / {task_name(t)}: {', '.join(metric_label(k) for k, s in c.metrics.items() if s is None)}"
        for t in TASK_ORDER
        for row in res.rows
        if (c := res.row_cell(row, t)).present and any(s is None for s in c.metrics.values())
    ]
    if partial:
        lines.append("Metrics missing from present cells: " + "; ".join(partial) + ".")
    div = [r for row in res.rows for t in TASK_ORDER for r in res.row_cell(row, t).diverged]
    n_ident = len({r.group_hash for r in div})
    lines.append(
        f"Diverged runs: {len(div)}"
        + (
            f" in {n_ident} identit{'y' if n_ident == 1 else 'ies'} — " + "; ".join(r.describe() for r in div)
            if div
            else ""
        )
        + "."
    )
    for row in res.rows:
        if row.main:
            continue
        tasks = [task_name(t) for t in TASK_ORDER if res.row_cell(row, t).runs]
        lines.append(
            f"Row {row.label}: its runs differ from the unmarked {method_name(row.method)} row of the same "
            f"task in {format_diff(tuple(sorted(row.setting + row.optim)))} (tasks: {', '.join(tasks) or 'none'})."
        )
    common = res.common_tasks
    if 0 < len(common) < len(TASK_ORDER):
        lines.append(
            f"Avg. is over the {len(common)} tasks present for both methods: "
            f"{', '.join(task_name(t) for t in common)}."
        )
    for comp in res.comparisons[1:]:
        lines.append(f"Comparison {comp.name}: {comp.win_line()}")
    edges = [
        f"{row.label} / {task_name(t)}: {note}"
        for row in res.rows
        if row.method == spec.sam
        for t in TASK_ORDER
        if (note := res.row_cell(row, t).edge_note(spec.rho_grid))
    ]
    if edges:
        lines.append("Rho grid: " + "; ".join(edges) + ".")
    if res.unused:
        lines.append(
            "Not used (not completed): " + "; ".join(f"{r.describe()} [{r.status}]" for r in res.unused) + "."
        )
    if res.duplicates:
        lines.append(
            "Duplicate runs dropped (same identity and seed as a kept run): "
            + "; ".join(f"{d.rel} [{d.status}] (kept {k.rel} [{k.status}])" for d, k in res.duplicates)
            + "."
        )
    derived = sorted({r.rel for r in res.runs if r.identity_derived})
    if derived:
        lines.append(
            f"Identities of {len(derived)} run(s) derived from their stored config (schema-1 records, "
            "fingerprints of the data and weights as found now)."
        )
    return lines


def _md_cell(res: TableResult, row: Row, task: str, metric: str, bold: bool) -> str:
    c = res.row_cell(row, task)
    dag = "†" if c.diverged else ""
    s = c.metrics.get(metric)
    if s is None:
        return MISSING + dag
    v = f"**{_fmt(s.mean)}**" if bold else _fmt(s.mean)
    sd = f" ± {_fmt(s.std)}" if s.std is not None else ""
    return f"{v}{sd} ({s.n}){dag}"


def title(res: TableResult) -> str:
    return res.spec.title + (" — SYNTHETIC DATA" if res.synthetic else "")


def synthetic_banner(res: TableResult) -> str:
    """The warning over a table with synthetic data: for all of it, or naming the rows it is in."""
    synth = [st for st in res.settings if any_synthetic(res.setting_runs(st))]
    if len(synth) == len([st for st in res.settings if res.setting_runs(st)]):
        return SYNTHETIC_BANNER
    where = ", ".join("unmarked rows" if not st else f"rows marked [{label_suffix(st)}]" for st in synth)
    return (
        f"SYNTHETIC DATA in the {where}: those runs trained and were evaluated on generated data "
        "(data.source=synthetic), not GLUE. They show that the pipeline works; they are no evidence for "
        "or against the paper."
    )


def render_markdown(res: TableResult) -> str:
    spec = res.spec
    bold = _bold_sets(res)
    cols = _columns()
    out = [f"# {title(res)}", ""]
    if res.synthetic:
        out += [f"> **{synthetic_banner(res)}**", ""]
    out += caption_lines(res) + [""]
    header = ["Method"] + [f"{task_name(t)} {metric_label(k)}" for t, k in cols] + ["Avg."]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in res.rows:
        cells = [row.label]
        cells += [_md_cell(res, row, t, k, _is_bold(bold, row, (t, k))) for t, k in cols]
        a = res.row_average(row)
        cells.append(MISSING if a is None else (f"**{_fmt(a)}**" if _is_bold(bold, row, "avg") else _fmt(a)))
        out.append("| " + " | ".join(cells) + " |")
    out += ["", res.win_line(), "", protocol_text(spec), ""]
    out += [f"- {line}" for line in _notes(res)]
    # rho selection, one section per row of the SAM method that has runs (the unmarked row always)
    for row in res.rows:
        if row.method != spec.sam or (
            not row.main and not any(res.row_cell(row, t).runs for t in TASK_ORDER)
        ):
            continue
        out += [
            "",
            f"## rho selection ({row.label})",
            "",
            "| Task | chosen rho | mean selection metric ×100 (seeds) per rho | diverged | edge of grid |",
            "|---|---:|---|---:|---|",
        ]
        for t in TASK_ORDER:
            c = res.row_cell(row, t)
            if not c.candidates:
                if row.main:
                    out.append(f"| {task_name(t)} | {MISSING} | no runs | 0 | |")
                continue
            per = ", ".join(
                f"{_r(cand.rho)}: "
                + (f"{_fmt(cand.selection.mean)} ({cand.selection.n})" if cand.selection else MISSING)
                + (f" ({len(cand.diverged)} diverged)" if cand.diverged else "")
                for cand in c.candidates
            )
            chosen = MISSING if c.chosen is None else _r(c.rho)
            out.append(
                f"| {task_name(t)} | {chosen} | {per} | {len(c.diverged)} | {'yes' if c.is_edge() else 'no'} |"
            )
    # paired comparison, one section per comparison
    for comp in res.comparisons:
        if not comp.main and not any(p.n or p.refused for p in comp.paired):
            continue
        out += [
            "",
            f"## Paired comparison: {comp.name} (task score ×100)",
            "",
            "| Task | mean difference | 95% bootstrap CI | seeds paired | CI excludes 0 | identities |",
            "|---|---:|---|---:|---|---|",
        ]
        for p in comp.paired:
            refused = f"; not paired, differ in {', '.join(p.refused)}" if p.refused else ""
            if p.mean is None:
                out.append(f"| {task_name(p.task)} | {MISSING} | {MISSING} | 0 | | {refused.lstrip('; ')} |")
                continue
            ci = MISSING if p.ci is None else f"[{p.ci[0]:+.{DECIMALS}f}, {p.ci[1]:+.{DECIMALS}f}]"
            excl = "n < 2" if p.ci is None else ("yes" if p.ci[0] > 0 or p.ci[1] < 0 else "no")
            out.append(
                f"| {task_name(p.task)} | {p.mean:+.{DECIMALS}f} | {ci} | {p.n} | {excl} | "
                f"{p.sam_identity} vs {p.base_identity}{refused} |"
            )
    # identities behind every cell
    out += [
        "",
        "## Identities",
        "",
        "Each cell pools the seeds of one identity (the group hash: the run identity without its seed).",
        "",
        "| Row | Task | rho | identity | completed seeds | diverged seeds |",
        "|---|---|---:|---|---|---|",
    ]
    n_ident = 0
    for row in res.rows:
        for t in TASK_ORDER:
            for cand in res.row_cell(row, t).candidates:
                n_ident += 1
                seeds = ", ".join(str(r.seed) for r in cand.completed) or MISSING
                dseeds = ", ".join(str(r.seed) for r in cand.diverged) or MISSING
                out.append(
                    f"| {row.label} | {task_name(t)} | {_r(cand.rho)} | {cand.group_hash} | {seeds} | {dseeds} |"
                )
    if not n_ident:
        out.append(f"| {MISSING} | no runs | | | | |")
    return "\n".join(out) + "\n"


def _r(rho: float | None) -> str:
    return "n/a" if rho is None else f"{rho:g}"


_TEX_ESC = {
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "—": "---",
    "−": "-",
    "–": "--",
    "…": r"\ldots{}",
    "ρ": r"$\rho$",
    "β1": r"$\beta_1$",
    "β": r"$\beta$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "→": r"$\to$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "~": r"\textasciitilde{}",
}


def tex_escape(s: str) -> str:
    out, i = [], 0
    keys = sorted(_TEX_ESC, key=len, reverse=True)
    while i < len(s):
        for k in keys:
            if s.startswith(k, i):
                out.append(_TEX_ESC[k])
                i += len(k)
                break
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def render_tex(res: TableResult) -> str:
    """A ``table`` environment (needs ``booktabs`` and ``graphicx``)."""
    spec = res.spec
    bold = _bold_sets(res)
    cols = _columns()
    caption = " ".join([title(res) + "."] + caption_lines(res) + [res.win_line()])
    if res.synthetic:
        caption = synthetic_banner(res) + " " + caption
    out = [
        "% Generated by `python -m adasam_glue.report` from run records; do not edit by hand.",
        "% Needs \\usepackage{booktabs,graphicx}.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(caption)}}}",
        rf"\label{{tab:{spec.name}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "r" * (len(cols) + 1) + "}",
        r"\toprule",
    ]
    top = ["Method"]
    for t in TASK_ORDER:
        k = len(TASKS[t].paper_metrics)
        top.append(
            rf"\multicolumn{{{k}}}{{c}}{{{tex_escape(task_name(t))}}}" if k > 1 else tex_escape(task_name(t))
        )
    top.append("Avg.")
    out.append(" & ".join(top) + r" \\")
    out.append(" & ".join([""] + [tex_escape(metric_label(k)) for _, k in cols] + [""]) + r" \\")
    out.append(r"\midrule")
    for row in res.rows:
        line = [tex_escape(row.label)]
        for t, k in cols:
            c = res.row_cell(row, t)
            dag = r"$^\dagger$" if c.diverged else ""
            s = c.metrics.get(k)
            if s is None:
                line.append("--" + dag)
                continue
            v = rf"\textbf{{{_fmt(s.mean)}}}" if _is_bold(bold, row, (t, k)) else _fmt(s.mean)
            sd = rf"$\pm${_fmt(s.std)}" if s.std is not None else ""
            line.append(rf"{v}{sd}\,{{\scriptsize({s.n})}}{dag}")
        a = res.row_average(row)
        line.append(
            "--" if a is None else (rf"\textbf{{{_fmt(a)}}}" if _is_bold(bold, row, "avg") else _fmt(a))
        )
        out.append(" & ".join(line) + r" \\")
    out += [
        r"\bottomrule",
        r"\end{tabular}}",
        r"\par\smallskip",
        r"\begin{minipage}{\textwidth}\footnotesize",
        tex_escape(protocol_text(spec)) + r"\par",
    ]
    out += [tex_escape(line) + r"\par" for line in _notes(res)]
    out += [r"\end{minipage}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _num(x: float | None, scale: float = 100.0) -> str:
    return "" if x is None else f"{x * scale:.4f}"


def render_csv(res: TableResult) -> str:
    """One row per table row; per task: one column per metric (mean ×100), its std, n, rho, diverged,
    identity; the row's setting in words (``synthetic`` in it when the data was generated)."""
    spec = res.spec
    header = ["method", "optimizer", "beta1", "row", "setting"]
    for t in TASK_ORDER:
        for k in TASKS[t].paper_metrics:
            header += [f"{t}_{k}", f"{t}_{k}_std"]
        header += [f"{t}_n", f"{t}_rho", f"{t}_diverged", f"{t}_identity"]
    header += ["average", "average_tasks"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in res.rows:
        runs = [r for t in TASK_ORDER for r in res.row_cell(row, t).runs]
        line = [method_name(row.method), row.method, f"{spec.beta1:g}", row.suffix, setting_text(runs)]
        for t in TASK_ORDER:
            c = res.row_cell(row, t)
            for k in TASKS[t].paper_metrics:
                s = c.metrics.get(k)
                line += [_num(s.mean if s else None), _num(s.std if s else None)]
            line += [
                str(c.n),
                "" if c.rho is None else f"{c.rho:g}",
                str(len(c.diverged)),
                c.chosen.group_hash if c.chosen else "",
            ]
        comp = next((c for c in res.comparisons if row in (c.base, c.sam)), None)
        line += [_num(res.row_average(row)), str(len(comp.common_tasks)) if comp else "0"]
        w.writerow(line)
    return buf.getvalue()


def render_paired_csv(results: Sequence[TableResult]) -> str:
    """Long form of every table's paired comparisons (points ×100), with the identities paired."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "table",
            "comparison",
            "method",
            "baseline",
            "task",
            "mean_difference",
            "ci_low",
            "ci_high",
            "seeds_paired",
            "method_identity",
            "baseline_identity",
            "setting",
        ]
    )
    for res in results:
        for comp in res.comparisons:
            setting = setting_text(comp.runs)
            for p in comp.paired:
                if not comp.main and not p.n:
                    continue
                w.writerow(
                    [
                        res.spec.name,
                        comp.name,
                        res.spec.sam,
                        res.spec.base,
                        p.task,
                        "" if p.mean is None else f"{p.mean:.4f}",
                        "" if p.ci is None else f"{p.ci[0]:.4f}",
                        "" if p.ci is None else f"{p.ci[1]:.4f}",
                        p.n,
                        p.sam_identity,
                        p.base_identity,
                        setting,
                    ]
                )
    return buf.getvalue()
