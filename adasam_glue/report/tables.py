"""Tables 1-4 of the paper rebuilt from run records (Markdown, LaTeX, CSV).

Protocol (printed under every table; docs/algorithms.md §4.4 and the tuning playbook):

1. Runs enter a table by optimizer name and ``config.optim.beta1`` (not by experiment name), except the
   experiments that vary batch size or schedule by design (``speedup``, ``schedules``), the lr-tuning
   experiments (``*_tune``, :mod:`adasam_glue.experiments.tuned_lr`) and runs with a ``trainer.batch_schedule``.
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
7. Compute-matched comparison (issue 21 §2.2): a SAM-family update costs two forward/backward passes,
   so the unmarked SAM row against the unmarked base row compares equal *updates*. For each task, a
   base row whose runs differ from the unmarked SAM cell's runs (its chosen rho) only in the optimizer
   keys and in the schedule length (:data:`MATCHED_KEYS`), seed by seed, and whose records have the
   same ``forward_backward_passes``, is the *compute-matched* base: the SAM cell against it compares
   equal *compute*. Its paired difference pairs those seeds, with the same bootstrap as item 5.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from adasam_glue.experiments.conf import rho_grid
from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report.collect import Run
from adasam_glue.report.grouping import (
    OPTIM,
    Diff,
    diff_from,
    differs_outside,
    global_part,
    label_suffix,
    mode,
    optim_part,
    setting_hash,
    task_part,
)
from adasam_glue.report.palette import method_name, task_name
from adasam_glue.report.setting import any_synthetic
from adasam_glue.report.stats import BOOTSTRAP_SEED, Summary, bootstrap_mean_ci, summarize
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = [
    "EXCLUDED_EXPERIMENTS",
    "PROBE_SUFFIX",
    "TABLES",
    "Cell",
    "Comparison",
    "MATCHED_KEYS",
    "Matched",
    "Paired",
    "Row",
    "TableResult",
    "TableSpec",
    "build_table",
    "rhos_label",
    "seeds_label",
]

DECIMALS = 2  #: shown precision of every table number (×100)
MISSING = "—"
EXCLUDED_EXPERIMENTS = ("speedup", "schedules")  #: vary batch size / schedule on purpose
#: recipe probes (``cpu_scale_probe``): single runs that vary one setting to find a recipe, never a result
PROBE_SUFFIX = "_probe"


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


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "table1",
        "Table 1: AMSGrad vs AdaSAM, β1 = 0.9",
        0.9,
        "amsgrad",
        "adasam",
        6,
        ("qnli", "qqp"),
        0.28,
    ),
    TableSpec("table2", "Table 2: SGD vs SAM, β1 = 0.9", 0.9, "sgd", "sam", 7, ("rte",), None),
    TableSpec(
        "table3",
        "Table 3: AMSGrad vs AdaSAM, β1 = 0",
        0.0,
        "amsgrad",
        "adasam",
        6,
        ("sst2", "rte"),
        0.74,
    ),
    TableSpec("table4", "Table 4: SGD vs SAM, β1 = 0", 0.0, "sgd", "sam", 8, (), None),
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

    def _tested(self) -> list[float]:
        return sorted(c.rho for c in self.candidates if c.rho is not None and c.selection is not None)

    def _tied(self) -> list[float]:
        """The tested rhos whose selection mean equals the chosen one's (the chosen included)."""
        if self.chosen is None or self.chosen.selection is None:
            return []
        best = self.chosen.selection.mean
        return sorted(
            c.rho
            for c in self.candidates
            if c.rho is not None and c.selection is not None and math.isclose(c.selection.mean, best)
        )

    def edge_note(self, grid: Sequence[float]) -> str | None:
        """Text when the chosen rho is on the edge of the tested grid (or when no grid was searched). A
        tie with an interior rho is not an edge; a tie over every rho says the metric did not move."""
        tested = self._tested()
        if self.rho is None or not tested:
            return None
        untested = [g for g in grid if not any(math.isclose(g, t) for t in tested)]
        extra = f"; paper grid values not run: {rhos_label(untested)}" if untested else ""
        if len(tested) == 1:
            return f"only rho {self.rho:g} was run (no search){extra}"
        tied = self._tied()
        if len(tied) == len(tested):
            return (
                f"every rho tested ties on the selection metric ({rhos_label(tested)}): rho made no "
                f"difference here; the smallest is shown (ties go to the smaller rho){extra}"
            )
        if self.is_edge():
            side = "largest" if math.isclose(self.rho, tested[-1]) else "smallest"
            where = "above" if side == "largest" else "below"
            return f"best rho {self.rho:g} is the {side} tested of {rhos_label(tested)}: the optimum may lie {where}{extra}"
        return f"interior{extra}" if extra else None

    def is_edge(self) -> bool:
        """The chosen rho is the smallest or largest tested, and no rho it ties with is interior."""
        tested = self._tested()
        if self.rho is None or len(tested) < 2:
            return False
        edges = (tested[0], tested[-1])
        return all(any(math.isclose(t, e) for e in edges) for t in self._tied() or [self.rho])


def seeds_label(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def rhos_label(values: Iterable[float]) -> str:
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
                f"{task_name(t)}: {self.base.label} {b.chosen.group_hash} ({seeds_label(b.n)}), "
                f"{self.sam.label} {a.chosen.group_hash} ("
                + ("" if a.rho is None else f"ρ={a.rho:g}, ")
                + f"{seeds_label(a.n)})"
            )
        return out


#: the schedule-length keys a compute-matched base run may differ in (more updates, same recipe otherwise)
MATCHED_KEYS = ("config.task.total_updates", "config.task.warmup_updates", "config.task.epochs")


def passes(run: Run) -> int | None:
    """The record's ``forward_backward_passes`` (None when absent or not an integer)."""
    v = run.record.get("forward_backward_passes")
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
    cells: dict[tuple[Row, str], Cell]  #: (row, task) -> cell
    duplicates: list[tuple[Run, Run]]  #: (dropped, kept) among this table's runs
    unused: list[Run]  #: matching runs that are neither completed nor diverged
    comparisons: list[Comparison]  #: the unmarked pair first
    matched: list[Matched] = field(default_factory=list)  #: compute-matched comparisons (protocol 7)

    @property
    def matched_name(self) -> str:
        return f"{method_name(self.spec.sam)} − {method_name(self.spec.base)} (compute-matched)"

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
        and not run.experiment.endswith(PROBE_SUFFIX)
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


def _compute_matched(
    spec: TableSpec, rows: Sequence[Row], cells: dict[tuple[Row, str], Cell]
) -> list[Matched]:
    """Protocol item 7: the unmarked SAM cell of each task against every base row whose runs, seed by
    seed, differ from the SAM runs only in optimizer and :data:`MATCHED_KEYS` keys and ran as many
    forward/backward passes."""
    out = []
    for i, t in enumerate(TASK_ORDER):
        sam = cells[(Row(spec.sam), t)]
        if not sam.seed_runs:
            continue
        for row in rows:
            if row.method != spec.base or row.main:
                continue
            base = cells[(row, t)]
            seeds = [
                s
                for s in sorted(set(sam.seed_runs) & set(base.seed_runs))
                if not differs_outside(sam.seed_runs[s].flat, base.seed_runs[s].flat, (OPTIM, *MATCHED_KEYS))
                and passes(sam.seed_runs[s]) is not None
                and passes(sam.seed_runs[s]) == passes(base.seed_runs[s])
            ]
            if not seeds:
                continue
            diffs = [(sam.seed_scores[s] - base.seed_scores[s]) * 100 for s in seeds]
            paired = Paired(
                t,
                len(diffs),
                sum(diffs) / len(diffs),
                bootstrap_mean_ci(diffs, seed=BOOTSTRAP_SEED + i),
                sam.chosen.group_hash,
                base.chosen.group_hash,
            )
            runs = [base.seed_runs[s] for s in seeds]
            out.append(
                Matched(
                    t,
                    row,
                    sam.rho,
                    summarize(list(sam.seed_scores.values())),
                    summarize([base.seed_scores[s] for s in seeds]),
                    tuple(sorted({passes(r) for r in runs})),
                    tuple(
                        sorted({u for r in runs if isinstance(u := r.record.get("optimizer_updates"), int)})
                    ),
                    paired,
                )
            )
    return out


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
    return TableResult(
        spec,
        rows,
        cells,
        duplicates,
        sorted(unused, key=lambda r: r.rel),
        comparisons,
        _compute_matched(spec, rows, cells),
    )
