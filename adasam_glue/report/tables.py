"""Tables 1-4 of the paper rebuilt from run records (Markdown, LaTeX, CSV).

Protocol (printed under every table, spec §4 and the tuning playbook):

1. Runs enter a table by optimizer name and ``config.optim.beta1`` (not by experiment name), except the
   experiments that vary batch size or schedule by design (``speedup``, ``schedules``) and runs with a
   ``trainer.batch_schedule``. A (task, optimizer, rho, seed) seen twice keeps the record whose
   experiment is the table's own (``table1`` ...), else the first by path; the others are listed.
2. For each (task, optimizer), rho is chosen by the mean over seeds of the task's selection metric
   (``TaskInfo.selection_metric``) at each run's best checkpoint, over ``completed`` runs only; ties go
   to the smaller rho.
3. The cell is mean ± sample std (ddof=1) over the completed seeds at that rho, ×100, with the number of
   seeds in parentheses; one seed shows the mean alone. ``diverged`` runs never enter a mean: they are
   counted per cell (†) and listed. A cell without a completed run is "—" and listed.
4. A task's score is the mean of its paper metrics (MRPC: acc and F1, ...); the average column is the
   mean of task scores over the tasks where every method of the table has a result (GLUE style).
5. Bold marks the best value per column at the shown precision (ties all bold), when two or more
   methods have a value.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from adasam_glue.report.collect import Run
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.stats import BOOTSTRAP_SEED, Summary, bootstrap_mean_ci, summarize
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = [
    "EXCLUDED_EXPERIMENTS",
    "TABLES",
    "Cell",
    "Paired",
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


@dataclass
class RhoCandidate:
    rho: float | None
    selection: Summary | None  #: selection metric over completed seeds (fraction)
    completed: list[Run]
    diverged: list[Run]


@dataclass
class Cell:
    """One (task, optimizer) of a table."""

    task: str
    optimizer: str
    candidates: list[RhoCandidate] = field(default_factory=list)
    rho: float | None = None  #: the chosen rho (None: non-SAM optimizer, or nothing to choose from)
    chosen: RhoCandidate | None = None
    metrics: dict[str, Summary | None] = field(default_factory=dict)  #: paper metric -> summary (×1)
    diverged: list[Run] = field(default_factory=list)  #: over all rhos
    seed_scores: dict[int, float] = field(default_factory=dict)  #: seed -> task score at chosen rho

    @property
    def present(self) -> bool:
        return self.chosen is not None

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


def _rhos(values: Iterable[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in sorted(values)) + "}"


@dataclass
class Paired:
    """SAM method minus base on one task, paired by seed (points ×100)."""

    task: str
    n: int
    mean: float | None
    ci: tuple[float, float] | None


@dataclass
class TableResult:
    spec: TableSpec
    cells: dict[tuple[str, str], Cell]  #: (task, optimizer) -> cell
    duplicates: list[tuple[Run, Run]]  #: (dropped, kept)
    unused: list[Run]  #: matching runs that are neither completed nor diverged
    paired: list[Paired]

    def cell(self, task: str, optimizer: str) -> Cell:
        return self.cells[(task, optimizer)]

    @property
    def common_tasks(self) -> list[str]:
        return [t for t in TASK_ORDER if all(self.cell(t, m).score is not None for m in self.spec.methods)]

    def average(self, optimizer: str) -> float | None:
        tasks = self.common_tasks
        if not tasks:
            return None
        return sum(self.cell(t, optimizer).score for t in tasks) / len(tasks)

    def wins(self) -> tuple[list[str], list[str], list[str]]:
        """(tasks the SAM method wins, loses, ties) among the common tasks, on the task score."""
        won, lost, tied = [], [], []
        for t in self.common_tasks:
            a, b = self.cell(t, self.spec.sam).score, self.cell(t, self.spec.base).score
            (won if a > b else lost if a < b else tied).append(t)
        return won, lost, tied

    @property
    def n_diverged(self) -> int:
        return sum(len(c.diverged) for c in self.cells.values())

    def win_line(self) -> str:
        s, b = method_name(self.spec.sam), method_name(self.spec.base)
        won, lost, tied = self.wins()
        m = len(self.common_tasks)
        if m == 0:
            return f"{s} vs {b}: no task has results for both methods, so no comparison."
        avg = (self.average(self.spec.sam) - self.average(self.spec.base)) * 100
        ties = f" ({len(tied)} tied)" if tied else ""
        if m == len(TASK_ORDER):
            return f"{s} beats {b} on {len(won)} of {m} tasks{ties}, average {avg:+.{DECIMALS}f}."
        return (
            f"{s} beats {b} on {len(won)} of {m} tasks{ties}, average {avg:+.{DECIMALS}f} "
            f"(only the {m} of {len(TASK_ORDER)} tasks where both methods have results are compared)."
        )


# ------------------------------------------------------------------------------------------ building
def eligible(spec: TableSpec, run: Run) -> bool:
    return (
        run.optimizer in spec.methods
        and run.beta1 is not None
        and math.isclose(run.beta1, spec.beta1)
        and run.experiment not in EXCLUDED_EXPERIMENTS
        and not (run.config.get("trainer") or {}).get("batch_schedule")
    )


def _dedupe(spec: TableSpec, runs: list[Run]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.task, r.optimizer, None if r.rho is None else round(r.rho, 12), r.seed)].append(r)
    kept, dropped = [], []
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: (r.experiment != spec.name, r.rel))
        kept.append(rs[0])
        dropped += [(d, rs[0]) for d in rs[1:]]
    return sorted(kept, key=lambda r: r.rel), sorted(dropped, key=lambda p: p[0].rel)


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
    return cell


def build_table(spec: TableSpec, runs: Sequence[Run]) -> TableResult:
    """Select rho, aggregate seeds and compare the two methods of ``spec`` over ``runs``."""
    matching = [r for r in runs if eligible(spec, r)]
    unused = [r for r in matching if r.status not in ("completed", "diverged")]
    kept, duplicates = _dedupe(spec, [r for r in matching if r.status in ("completed", "diverged")])
    cells = {}
    for t in TASK_ORDER:
        for m in spec.methods:
            cells[(t, m)] = _build_cell(t, m, [r for r in kept if r.task == t and r.optimizer == m])
    paired = []
    for i, t in enumerate(TASK_ORDER):
        a, b = cells[(t, spec.sam)], cells[(t, spec.base)]
        seeds = sorted(set(a.seed_scores) & set(b.seed_scores))
        diffs = [(a.seed_scores[s] - b.seed_scores[s]) * 100 for s in seeds]
        paired.append(
            Paired(
                t,
                len(seeds),
                sum(diffs) / len(diffs) if diffs else None,
                bootstrap_mean_ci(diffs, seed=BOOTSTRAP_SEED + i),
            )
        )
    return TableResult(spec, cells, duplicates, sorted(unused, key=lambda r: r.rel), paired)


# ----------------------------------------------------------------------------------------- rendering
def _columns() -> list[tuple[str, str]]:
    return [(t, m) for t in TASK_ORDER for m in TASKS[t].paper_metrics]


def _fmt(x: float) -> str:
    return f"{x * 100:.{DECIMALS}f}"


def _bold_sets(res: TableResult) -> dict[object, set[str]]:
    """Column key -> optimizers to bold (best shown value; only with >= 2 values in the column)."""
    out: dict[object, set[str]] = {}
    for col in _columns():
        shown = {
            m: _fmt(s.mean)
            for m in res.spec.methods
            if (s := res.cell(col[0], m).metrics.get(col[1])) is not None
        }
        if len(shown) >= 2:
            top = max(float(v) for v in shown.values())
            out[col] = {m for m, v in shown.items() if float(v) == top}
    avgs = {m: _fmt(a) for m in res.spec.methods if (a := res.average(m)) is not None}
    if len(avgs) >= 2:
        top = max(float(v) for v in avgs.values())
        out["avg"] = {m for m, v in avgs.items() if float(v) == top}
    return out


def protocol_text(spec: TableSpec) -> str:
    grid = _rhos(spec.rho_grid)
    return (
        f"Protocol: runs with optim.beta1 = {spec.beta1:g} (any experiment except "
        f"{', '.join(EXCLUDED_EXPERIMENTS)}). For each (task, optimizer) rho is chosen on the dev set by the "
        "mean over seeds of the task's selection metric (CoLA MCC, STS-B Pearson, MNLI matched acc, "
        f"else acc) at each run's best checkpoint; paper grid for {method_name(spec.sam)}: {grid}. "
        "Each cell is mean ± sample std (ddof=1) over the completed seeds at that rho, ×100, "
        "with the number of seeds in parentheses (one seed: mean only). Diverged runs are excluded from "
        "the means, counted (†) and listed. A task's score is the mean of its metrics; Avg. is the mean "
        "task score over the tasks where both methods have results. Bold: best shown value per column when both methods have one. "
        "Paired comparison: per-seed task-score difference over the seeds both methods share, 95% "
        "percentile bootstrap CI over seeds (10 000 resamples, fixed seed)."
    )


def _notes(res: TableResult) -> list[str]:
    """Bulleted notes shared by the Markdown and LaTeX forms (plain text)."""
    spec = res.spec
    lines = []
    missing = [
        f"{method_name(m)} / {task_name(t)}" + (f" ({len(c.diverged)} diverged)" if c.diverged else "")
        for t in TASK_ORDER
        for m in spec.methods
        if not (c := res.cell(t, m)).present
    ]
    lines.append(
        f"Missing ({len(missing)} of {2 * len(TASK_ORDER)} cells): "
        + ("; ".join(missing) if missing else "none")
        + "."
    )
    partial = [
        f"{method_name(m)} / {task_name(t)}: {', '.join(metric_label(k) for k, s in c.metrics.items() if s is None)}"
        for t in TASK_ORDER
        for m in spec.methods
        if (c := res.cell(t, m)).present and any(s is None for s in c.metrics.values())
    ]
    if partial:
        lines.append("Metrics missing from present cells: " + "; ".join(partial) + ".")
    div = [r for t in TASK_ORDER for m in spec.methods for r in res.cell(t, m).diverged]
    lines.append(
        f"Diverged runs: {len(div)}" + (" — " + "; ".join(r.describe() for r in div) if div else "") + "."
    )
    common = res.common_tasks
    if 0 < len(common) < len(TASK_ORDER):
        lines.append(
            f"Avg. is over the {len(common)} tasks present for both methods: "
            f"{', '.join(task_name(t) for t in common)}."
        )
    edges = [
        f"{method_name(spec.sam)} / {task_name(t)}: {note}"
        for t in TASK_ORDER
        if (note := res.cell(t, spec.sam).edge_note(spec.rho_grid))
    ]
    if edges:
        lines.append("Rho grid: " + "; ".join(edges) + ".")
    if res.unused:
        lines.append(
            "Not used (not completed): " + "; ".join(f"{r.describe()} [{r.status}]" for r in res.unused) + "."
        )
    if res.duplicates:
        lines.append(
            "Duplicate runs dropped: " + "; ".join(f"{d.rel} (kept {k.rel})" for d, k in res.duplicates) + "."
        )
    return lines


def _md_cell(res: TableResult, task: str, m: str, metric: str, bold: bool) -> str:
    c = res.cell(task, m)
    dag = "†" if c.diverged else ""
    s = c.metrics.get(metric)
    if s is None:
        return MISSING + dag
    v = f"**{_fmt(s.mean)}**" if bold else _fmt(s.mean)
    sd = f" ± {_fmt(s.std)}" if s.std is not None else ""
    return f"{v}{sd} ({s.n}){dag}"


def render_markdown(res: TableResult) -> str:
    spec = res.spec
    bold = _bold_sets(res)
    cols = _columns()
    out = [f"# {spec.title}", ""]
    header = ["Method"] + [f"{task_name(t)} {metric_label(k)}" for t, k in cols] + ["Avg."]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for m in spec.methods:
        row = [method_name(m)]
        row += [_md_cell(res, t, m, k, m in bold.get((t, k), ())) for t, k in cols]
        a = res.average(m)
        row.append(MISSING if a is None else (f"**{_fmt(a)}**" if m in bold.get("avg", ()) else _fmt(a)))
        out.append("| " + " | ".join(row) + " |")
    out += ["", res.win_line(), "", protocol_text(spec), ""]
    out += [f"- {line}" for line in _notes(res)]
    # rho selection
    out += [
        "",
        f"## rho selection ({method_name(spec.sam)})",
        "",
        "| Task | chosen rho | mean selection metric ×100 (seeds) per rho | diverged | edge of grid |",
        "|---|---:|---|---:|---|",
    ]
    for t in TASK_ORDER:
        c = res.cell(t, spec.sam)
        if not c.candidates:
            out.append(f"| {task_name(t)} | {MISSING} | no runs | 0 | |")
            continue
        per = ", ".join(
            f"{_r(cand.rho)}: "
            + (f"{_fmt(cand.selection.mean)} ({cand.selection.n})" if cand.selection else MISSING)
            for cand in c.candidates
        )
        chosen = MISSING if c.chosen is None else _r(c.rho)
        out.append(
            f"| {task_name(t)} | {chosen} | {per} | {len(c.diverged)} | {'yes' if c.is_edge() else 'no'} |"
        )
    # paired comparison
    out += [
        "",
        f"## Paired comparison: {method_name(spec.sam)} − {method_name(spec.base)} (task score ×100)",
        "",
        "| Task | mean difference | 95% bootstrap CI | seeds paired | CI excludes 0 |",
        "|---|---:|---|---:|---|",
    ]
    for p in res.paired:
        if p.mean is None:
            out.append(f"| {task_name(p.task)} | {MISSING} | {MISSING} | 0 | |")
            continue
        ci = MISSING if p.ci is None else f"[{p.ci[0]:+.{DECIMALS}f}, {p.ci[1]:+.{DECIMALS}f}]"
        excl = "" if p.ci is None else ("yes" if p.ci[0] > 0 or p.ci[1] < 0 else "no")
        if p.ci is None:
            excl = "n < 2"
        out.append(f"| {task_name(p.task)} | {p.mean:+.{DECIMALS}f} | {ci} | {p.n} | {excl} |")
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
    "ρ": r"$\rho$",
    "β1": r"$\beta_1$",
    "β": r"$\beta$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "→": r"$\to$",
    "×": r"$\times$",
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
    out = [
        "% Generated by `python -m adasam_glue.report` from run records; do not edit by hand.",
        "% Needs \\usepackage{booktabs,graphicx}.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(spec.title)}. {tex_escape(res.win_line())}}}",
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
    for m in spec.methods:
        row = [tex_escape(method_name(m))]
        for t, k in cols:
            c = res.cell(t, m)
            dag = r"$^\dagger$" if c.diverged else ""
            s = c.metrics.get(k)
            if s is None:
                row.append("--" + dag)
                continue
            v = rf"\textbf{{{_fmt(s.mean)}}}" if m in bold.get((t, k), ()) else _fmt(s.mean)
            sd = rf"$\pm${_fmt(s.std)}" if s.std is not None else ""
            row.append(rf"{v}{sd}\,{{\scriptsize({s.n})}}{dag}")
        a = res.average(m)
        row.append("--" if a is None else (rf"\textbf{{{_fmt(a)}}}" if m in bold.get("avg", ()) else _fmt(a)))
        out.append(" & ".join(row) + r" \\")
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
    """One row per method; per task: one column per metric (mean ×100), its std, n, rho, diverged."""
    spec = res.spec
    header = ["method", "optimizer", "beta1"]
    for t in TASK_ORDER:
        for k in TASKS[t].paper_metrics:
            header += [f"{t}_{k}", f"{t}_{k}_std"]
        header += [f"{t}_n", f"{t}_rho", f"{t}_diverged"]
    header += ["average", "average_tasks"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for m in spec.methods:
        row = [method_name(m), m, f"{spec.beta1:g}"]
        for t in TASK_ORDER:
            c = res.cell(t, m)
            for k in TASKS[t].paper_metrics:
                s = c.metrics.get(k)
                row += [_num(s.mean if s else None), _num(s.std if s else None)]
            row += [str(c.n), "" if c.rho is None else f"{c.rho:g}", str(len(c.diverged))]
        row += [_num(res.average(m)), str(len(res.common_tasks))]
        w.writerow(row)
    return buf.getvalue()


def render_paired_csv(results: Sequence[TableResult]) -> str:
    """Long form of every table's paired comparison (points ×100)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["table", "method", "baseline", "task", "mean_difference", "ci_low", "ci_high", "seeds_paired"]
    )
    for res in results:
        for p in res.paired:
            w.writerow(
                [
                    res.spec.name,
                    res.spec.sam,
                    res.spec.base,
                    p.task,
                    "" if p.mean is None else f"{p.mean:.4f}",
                    "" if p.ci is None else f"{p.ci[0]:.4f}",
                    "" if p.ci is None else f"{p.ci[1]:.4f}",
                    p.n,
                ]
            )
    return buf.getvalue()
