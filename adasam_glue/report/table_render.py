"""Tables 1-4 as text: Markdown (with the protocol, captions, notes and the per-cell details), LaTeX
and CSV, from a :class:`adasam_glue.report.tables.TableResult` (built there; the protocol is that
module's docstring). Nothing here chooses or pools runs: it only shows what the table holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report.collect import EXCLUDED, code_text, code_versions
from adasam_glue.report.grouping import format_diff, label_suffix
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, setting_text
from adasam_glue.report.tables import (
    DECIMALS,
    EXCLUDED_EXPERIMENTS,
    MISSING,
    PROBE_SUFFIX,
    Row,
    TableResult,
    TableSpec,
    rhos_label,
)
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = [
    "caption_lines",
    "protocol_text",
    "render_csv",
    "render_markdown",
    "render_paired_csv",
    "render_tex",
]


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
    grid = rhos_label(spec.rho_grid)
    return (
        f"Protocol: runs with optim.beta1 = {spec.beta1:g} (any experiment except "
        f"{', '.join(EXCLUDED_EXPERIMENTS)}, the lr-tuning ones, *{TUNING_SUFFIX}, and the recipe probes, "
        f"*{PROBE_SUFFIX}). Runs that differ in anything but seed, rho and the "
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
    flagged = sorted({r.rel: r for r in res.runs if r.flags}.values(), key=lambda r: r.rel)
    if flagged:  # collect.judge: re-judged diverged, or rows lost to malformed TSV lines
        lines.append(
            "Flagged by the report: " + "; ".join(f"{r.describe()} [{r.status_text}]" for r in flagged) + "."
        )
    if res.unused:
        excluded = any(r.status == EXCLUDED for r in res.unused)
        lines.append(
            ("Not used (not completed, or excluded): " if excluded else "Not used (not completed): ")
            + "; ".join(f"{r.describe()} [{r.status_text}]" for r in res.unused)
            + "."
        )
    if res.duplicates:
        lines.append(
            "Duplicate runs dropped (same identity and seed as a kept run): "
            + "; ".join(
                f"{d.rel} [{d.status_text}] (kept {k.rel} [{k.status_text}])" for d, k in res.duplicates
            )
            + "."
        )
    mixed = mixed_code_cells(res)
    if mixed:
        lines.append(
            "Code versions: the runs of these cells come from more than one git commit, or from uncommitted "
            "changes, so their seeds may not have run the same code (rerun_on_new_commit=true trains such "
            "runs again): " + "; ".join(mixed) + "."
        )
    derived = sorted({r.rel for r in res.runs if r.identity_derived})
    if derived:
        lines.append(
            f"Identities of {len(derived)} run(s) derived from their stored config (schema-1 records, "
            "fingerprints of the data and weights as found now)."
        )
    return lines


def mixed_code_cells(res: TableResult) -> list[str]:
    """``"<row> / <task> [rho r]: <commits>"`` for every identity of the table whose runs mix commits
    (a run resumed under another commit counts too) or ran from uncommitted changes."""
    out = []
    for row in res.rows:
        for t in TASK_ORDER:
            for cand in res.row_cell(row, t).candidates:
                runs = [*cand.completed, *cand.diverged]
                commits, dirty = code_versions(runs)
                if len(commits) > 1 or dirty:
                    rho = "" if cand.rho is None else f" rho {cand.rho:g}"
                    out.append(f"{row.label} / {task_name(t)}{rho}: {code_text(runs).rstrip(' ⚠')}")
    return out


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
    out += _matched_markdown(res)
    # identities behind every cell
    out += [
        "",
        "## Identities",
        "",
        "Each cell pools the seeds of one identity (the group hash: the run identity without its seed). "
        "The identity says what ran, not which code: `code` names the git commit(s) of the runs' attempts "
        "(⚠: more than one, or uncommitted changes; see the notes).",
        "",
        "| Row | Task | rho | identity | completed seeds | diverged seeds | code |",
        "|---|---|---:|---|---|---|---|",
    ]
    n_ident = 0
    for row in res.rows:
        for t in TASK_ORDER:
            for cand in res.row_cell(row, t).candidates:
                n_ident += 1
                seeds = ", ".join(str(r.seed) for r in cand.completed) or MISSING
                dseeds = ", ".join(str(r.seed) for r in cand.diverged) or MISSING
                code = code_text([*cand.completed, *cand.diverged])
                out.append(
                    f"| {row.label} | {task_name(t)} | {_r(cand.rho)} | {cand.group_hash} | {seeds} | {dseeds} "
                    f"| {code} |"
                )
    if not n_ident:
        out.append(f"| {MISSING} | no runs | | | | | |")
    return "\n".join(out) + "\n"


def _score(x) -> str:
    """A task-score summary (fraction) as ``mean ± std (n)`` ×100."""
    sd = f" ± {_fmt(x.std)}" if x.std is not None else ""
    return f"{_fmt(x.mean)}{sd} ({x.n})"


def _matched_markdown(res: TableResult) -> list[str]:
    """The compute-matched section (protocol item 7 of :mod:`adasam_glue.report.tables`); nothing
    when no base row is compute-matched."""
    if not res.matched:
        return []
    spec = res.spec
    sam, base = method_name(spec.sam), method_name(spec.base)
    out = [
        "",
        f"## Compute-matched comparison: {res.matched_name} (task score ×100)",
        "",
        f"What each comparison supports: {sam} against the unmarked {base} row is a comparison at equal "
        f"optimizer updates ({sam} spends two forward/backward passes per update, so twice the compute); "
        f"{sam} against the compute-matched {base} row is a comparison at equal compute (the same "
        f"forward/backward passes per run, {base} taking twice the updates over the same recipe). "
        f"A compute-matched {base} run differs from the {sam} run of its seed (the chosen rho) only in the "
        "optimizer keys and in task.total_updates, task.warmup_updates, task.epochs, and its record has "
        "the same forward_backward_passes; the paired difference pairs those seeds, with the bootstrap of "
        "the paired comparisons above.",
        "",
        f"| Task | {sam} (ρ) | {base} compute-matched | passes per run | {base} updates | mean difference "
        "| 95% bootstrap CI | seeds paired | CI excludes 0 | identities |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for m in res.matched:
        p = m.paired
        ci = MISSING if p.ci is None else f"[{p.ci[0]:+.{DECIMALS}f}, {p.ci[1]:+.{DECIMALS}f}]"
        excl = "n < 2" if p.ci is None else ("yes" if p.ci[0] > 0 or p.ci[1] < 0 else "no")
        out.append(
            f"| {task_name(m.task)} | {_score(m.sam)} (ρ={_r(m.rho)}) | {_score(m.matched)} [{m.base.suffix}] "
            f"| {', '.join(map(str, m.passes))} | {', '.join(map(str, m.updates)) or MISSING} "
            f"| {p.mean:+.{DECIMALS}f} | {ci} | {p.n} | {excl} | {p.sam_identity} vs {p.base_identity} |"
        )
    won = [task_name(m.task) for m in res.matched if m.outcome == "win"]
    lost = [task_name(m.task) for m in res.matched if m.outcome == "loss"]
    tied = [task_name(m.task) for m in res.matched if m.outcome == "tie"]
    out += ["", matched_line(res, won, lost, tied)]
    return out


def matched_line(res: TableResult, won: list[str], lost: list[str], tied: list[str]) -> str:
    """One sentence: the SAM method's wins, losses and ties against the compute-matched base."""
    sam, base = method_name(res.spec.sam), method_name(res.spec.base)
    n = len(won) + len(lost) + len(tied)
    names = lambda xs: ", ".join(xs) or "none"  # noqa: E731
    return (
        f"At equal compute, {sam} beats the compute-matched {base} on {len(won)} of {n} comparison(s) "
        f"({names(won)}); loses on {names(lost)}; ties on {names(tied)}."
    )


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
        for m in res.matched:
            p = m.paired
            base_runs = res.row_cell(m.base, m.task).runs
            sam_runs = res.row_cell(Row(res.spec.sam), m.task).runs
            w.writerow(
                [
                    res.spec.name,
                    res.matched_name,
                    res.spec.sam,
                    res.spec.base,
                    p.task,
                    f"{p.mean:.4f}",
                    "" if p.ci is None else f"{p.ci[0]:.4f}",
                    "" if p.ci is None else f"{p.ci[1]:.4f}",
                    p.n,
                    p.sam_identity,
                    p.base_identity,
                    setting_text([*sam_runs, *base_runs]),
                ]
            )
    return buf.getvalue()
