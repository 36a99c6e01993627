"""Tables 1-4 as text: Markdown (protocol, captions, notes, per-cell details), LaTeX and CSV, from a
:class:`adasam_glue.report.tables.TableResult`. Nothing here chooses or pools runs."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence

import pandas as pd

from adasam_glue.report.collect import EXCLUDED, code_text
from adasam_glue.report.grouping import format_diff, label_suffix
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, heading, setting_text
from adasam_glue.report.stats import Summary
from adasam_glue.report.tables import DECIMALS, MISSING, Row, TableResult
from adasam_glue.tasks import TASK_ORDER, TASKS

COLUMNS = [(t, m) for t in TASK_ORDER for m in TASKS[t].paper_metrics]


def fmt(x: float) -> str:
    return f"{x * 100:.{DECIMALS}f}"


def rho_text(rho: float | None) -> str:
    return "n/a" if rho is None else f"{rho:g}"


def ci_text(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{ci[0]:+.{DECIMALS}f}, {ci[1]:+.{DECIMALS}f}]"


def summary_text(s: Summary, bold: bool = False) -> str:
    """``mean ± std (n)`` ×100 (one seed: no std)."""
    v = f"**{fmt(s.mean)}**" if bold else fmt(s.mean)
    return f"{v}{f' ± {fmt(s.std)}' if s.std is not None else ''} ({s.n})"


def _bold(res: TableResult) -> set[tuple[Row, object]]:
    """(row, column) to bold: the best shown value among one setting's rows, when two or more have one."""
    out: set[tuple[Row, object]] = set()
    for setting in res.settings:
        rows = [r for r in res.rows if r.setting == setting]
        cols = {col: lambda row, col=col: res.cells[(row, col[0])].metrics.get(col[1]) for col in COLUMNS}
        for col, get in [*cols.items(), ("avg", res.row_average)]:
            shown = {row: fmt(v if col == "avg" else v.mean) for row in rows if (v := get(row)) is not None}
            if len(shown) >= 2:
                top = max(float(v) for v in shown.values())
                out |= {(r, col) for r, v in shown.items() if float(v) == top}
    return out


def _body(res: TableResult, cell: Callable, avg: Callable) -> list[list[str]]:
    """The main table, shared by the Markdown and LaTeX forms: per row its label, ``cell(summary, bold,
    diverged)`` per metric column and ``avg(average, bold)``."""
    bold = _bold(res)
    return [
        [row.label]
        + [
            cell((c := res.cells[(row, t)]).metrics.get(k), (row, (t, k)) in bold, len(c.diverged) > 0)
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
        lines.append(f"Avg. is over the {m} tasks present for both methods: {names}.")
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


def title(res: TableResult) -> str:
    return res.spec.title + (" — SYNTHETIC DATA" if res.synthetic else "")


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
    cell = lambda s, b, d: (MISSING if s is None else summary_text(s, b)) + "†" * d  # noqa: E731
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
                f"{rho_text(cand.rho)}: "
                + (f"{fmt(cand.selection.mean)} ({cand.selection.n})" if cand.selection else MISSING)
                + (f" ({len(cand.diverged)} diverged)" if len(cand.diverged) else "")
                for cand in c.candidates
            )
            chosen = MISSING if c.chosen is None else rho_text(c.rho)
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
                ids = f"{p.sam_identity} vs {p.base_identity}{refused}"
                body.append([task_name(p.task), *_diff_cells(p), ids])
        head = ["Task", "mean difference", "95% bootstrap CI", "seeds paired", "CI excludes 0", "identities"]
        out += _section(f"## Paired comparison: {comp.name} (task score ×100)", head, body, "lrlr")
    out += _matched_markdown(res)
    body = [
        [row.label, task_name(t), rho_text(cand.rho), cand.group_hash]
        + [", ".join(str(s) for s in cand.completed.seed) or MISSING]
        + [", ".join(str(s) for s in cand.diverged.seed) or MISSING, code_text(cand.runs)]
        for (row, t), c in res.cells.items()
        for cand in c.candidates
    ]
    head = ["Row", "Task", "rho", "identity", "completed seeds", "diverged seeds", "code"]
    out += _section(
        "## Identities",
        head,
        body,
        "llr",
        "Each cell pools the seeds of one identity (the group hash: the run identity without its seed). "
        "The identity says what ran, not which code: `code` names the git commit(s) of the runs' attempts "
        "(⚠: more than one, or uncommitted changes; see the notes).",
        "",
    )
    out += [] if body else [f"| {MISSING} | no runs | | | | | |"]
    return "\n".join(out) + "\n"


def _diff_cells(p) -> list:
    """Mean difference, CI, seeds paired, whether the CI excludes 0 of a :class:`Paired`."""
    return [f"{p.mean:+.{DECIMALS}f}", ci_text(p.ci), p.n, p.excludes_zero]


def _matched_markdown(res: TableResult) -> list[str]:
    """The compute-matched section; nothing when no base row is compute-matched."""
    if not res.matched:
        return []
    sam, base = method_name(res.spec.sam), method_name(res.spec.base)
    head = ["Task", f"{sam} (ρ)", f"{base} compute-matched", "passes per run", f"{base} updates"]
    head += ["mean difference", "95% bootstrap CI", "seeds paired", "CI excludes 0", "identities"]
    body = [
        [task_name(m.task), f"{summary_text(m.sam)} (ρ={rho_text(m.rho)})"]
        + [f"{summary_text(m.matched)} [{m.base.suffix}]", ", ".join(map(str, m.passes))]
        + [", ".join(map(str, m.updates)) or MISSING, *_diff_cells(m.paired)]
        + [f"{m.paired.sam_identity} vs {m.paired.base_identity}"]
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
    return _section(heading, head, body, "lrrrrrlrll", intro, "") + ["", matched_line(res)]


def matched_line(res: TableResult) -> str:
    """One sentence: the SAM method's wins, losses and ties against the compute-matched base."""
    by = {o: [task_name(m.task) for m in res.matched if m.outcome == o] for o in ("win", "loss", "tie")}
    names = {o: ", ".join(v) or "none" for o, v in by.items()}
    return (
        f"At equal compute, {method_name(res.spec.sam)} beats the compute-matched {method_name(res.spec.base)} "
        f"on {len(by['win'])} of {len(res.matched)} comparison(s) ({names['win']}); loses on {names['loss']}; "
        f"ties on {names['tie']}."
    )


_TEX = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "{": r"\{", "}": r"\}", "$": r"\$", "—": "---", "−": "-",
        "–": "--", "…": r"\ldots{}", "ρ": r"$\rho$", "β1": r"$\beta_1$", "β": r"$\beta$", "±": r"$\pm$",
        "†": r"$^\dagger$", "→": r"$\to$", "×": r"$\times$", "≥": r"$\geq$", "~": r"\textasciitilde{}"}  # fmt: skip
_TEX_RE = re.compile("|".join(map(re.escape, sorted(_TEX, key=len, reverse=True))))


def tex_escape(s: str) -> str:
    return _TEX_RE.sub(lambda m: _TEX[m.group()], s)


def _tex_cell(s: Summary | None, bold: bool, dagger: bool) -> str:
    v = "" if s is None else rf"\textbf{{{fmt(s.mean)}}}" if bold else fmt(s.mean)
    sd = "" if s is None or s.std is None else rf"$\pm${fmt(s.std)}"
    return ("--" if s is None else rf"{v}{sd}\,{{\scriptsize({s.n})}}") + r"$^\dagger$" * dagger


def render_tex(res: TableResult) -> str:
    """A ``table`` environment (needs ``booktabs`` and ``graphicx``)."""
    caption = " ".join([title(res) + "."] + caption_lines(res) + [res.main.win_line()])
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
    """One row per table row; per task: each metric (mean ×100) and its std, n, rho, diverged, identity;
    the row's setting in words (``synthetic`` in it when the data was generated)."""
    header = ["method", "optimizer", "beta1", "row", "setting"]
    for t in TASK_ORDER:
        header += [f"{t}_{k}{s}" for k in TASKS[t].paper_metrics for s in ("", "_std")]
        header += [f"{t}_n", f"{t}_rho", f"{t}_diverged", f"{t}_identity"]
    rows = []
    for row in res.rows:
        cells = [(t, res.cells[(row, t)]) for t in TASK_ORDER]
        setting = setting_text(pd.concat([c.runs for _, c in cells]))
        line = [method_name(row.method), row.method, f"{res.spec.beta1:g}", row.suffix, setting]
        for t, c in cells:
            ss = [c.metrics.get(k) for k in TASKS[t].paper_metrics]
            line += [num(x) for s in ss for x in ((s.mean, s.std) if s else (None, None))]
            rho = "" if c.rho is None else f"{c.rho:g}"
            line += [str(c.n), rho, str(len(c.diverged)), c.chosen.group_hash if c.chosen else ""]
        comp = res.comparison_of(row)
        rows.append(line + [num(res.row_average(row)), str(len(comp.common_tasks)) if comp else "0"])
    return _csv([*header, "average", "average_tasks"], rows)


PAIRED_HEADER = (
    "table comparison method baseline task mean_difference ci_low ci_high seeds_paired method_identity "
    "baseline_identity setting"
).split()


def paired_cells(p) -> list[object]:
    """Mean difference, CI bounds (4 decimals), seeds paired and the two identities, for a CSV."""
    ci = ["", ""] if p.ci is None else [f"{p.ci[0]:.4f}", f"{p.ci[1]:.4f}"]
    return ["" if p.mean is None else f"{p.mean:.4f}", *ci, p.n, p.sam_identity, p.base_identity]


def render_paired_csv(results: Sequence[TableResult]) -> str:
    """Long form of every table's paired comparisons (points ×100), with the identities paired."""
    rows = []
    for res in results:
        spec = res.spec
        for comp in res.comparisons:
            setting = setting_text(comp.runs)
            line = [spec.name, comp.name, spec.sam, spec.base]
            rows += [[*line, p.task, *paired_cells(p), setting] for p in comp.paired if comp.main or p.n]
        for m in res.matched:
            runs = pd.concat([res.cells[(Row(spec.sam), m.task)].runs, res.cells[(m.base, m.task)].runs])
            line = [spec.name, res.matched_name, spec.sam, spec.base, m.task]
            rows.append([*line, *paired_cells(m.paired), setting_text(runs)])
    return _csv(PAIRED_HEADER, rows)
