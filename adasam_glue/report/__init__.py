"""The report: Tables 1-4, claims, speedup/curve/sharpness figures, rebuilt from run records only.

    python -m adasam_glue.report RUNS_DIR OUT_DIR        # or: make report

:func:`build_report` reads every ``record.json`` under ``RUNS_DIR`` (never trains, never touches a
checkpoint) and writes into ``OUT_DIR``:

- ``table1`` ... ``table4`` as ``.md``, ``.tex``, ``.csv`` (see :mod:`adasam_glue.report.tables` for the
  protocol) and ``paired.csv`` (bootstrap comparison per task);
- ``claims.md`` (:mod:`adasam_glue.report.claims`);
- ``speedup.png/.pdf``, ``curves_<task>_beta<b>.png/.pdf`` (:mod:`adasam_glue.report.figures`);
- ``sharpness.md``, ``sharpness.csv`` and ``sharpness_<task>.png/.pdf`` (:mod:`adasam_glue.report.sharpness`);
- ``README.md``: what was produced, the settings the runs were trained on, and every record skipped,
  dropped as a duplicate or not used, with the reason.

Like with like (docs/algorithms.md §4.4): every table, figure and claim reads the runs without
duplicates (one record per identity and seed) and pools, selects and pairs them only through their
identities (:mod:`adasam_glue.report.grouping`); every caption states the setting
(:mod:`adasam_glue.report.setting`) and says SYNTHETIC DATA where generated data went in.

Output is deterministic: no timestamps or absolute paths in text files, fixed figure metadata, a fixed
bootstrap seed; a rerun on the same records gives byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from adasam_glue.records import RecordError, atomic_write_text
from adasam_glue.report.collect import Collection, NoRecordsError, load_runs

__all__ = ["NoRecordsError", "RecordError", "ReportSummary", "build_report"]


@dataclass
class ReportSummary:
    out_dir: Path
    files: list[str] = field(default_factory=list)  #: written files, relative to ``out_dir``, sorted
    collection: Collection | None = None
    lines: list[str] = field(default_factory=list)  #: short console summary


def build_report(
    runs_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    skip_unknown_schema: bool = False,
    figures: bool = True,
) -> ReportSummary:
    """Read the records under ``runs_dir`` and write the report into ``out_dir``.

    Raises :class:`NoRecordsError` for a folder without records and :class:`RecordError` (naming the
    file) for a record of another schema version (unless ``skip_unknown_schema``).
    """
    from adasam_glue.report.claims import check_claims, render_claims
    from adasam_glue.report.sharpness import (
        build_sharpness,
        plot_sharpness,
        render_sharpness_csv,
        render_sharpness_md,
    )
    from adasam_glue.report.table_render import render_csv, render_markdown, render_paired_csv, render_tex
    from adasam_glue.report.tables import TABLES, build_table

    col = load_runs(runs_dir, skip_unknown_schema=skip_unknown_schema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = ReportSummary(out, collection=col)
    written: list[Path] = []

    def text(name: str, content: str) -> None:
        atomic_write_text(out / name, content)
        written.append(out / name)

    runs = col.unique
    tables = [build_table(spec, col.runs) for spec in TABLES]  # each dedupes its own eligible runs
    for res in tables:
        text(f"{res.spec.name}.md", render_markdown(res))
        text(f"{res.spec.name}.tex", render_tex(res))
        text(f"{res.spec.name}.csv", render_csv(res))
        summary.lines.append(f"{res.spec.name}: {res.win_line()}")
    text("paired.csv", render_paired_csv(tables))

    from adasam_glue.report.figures import compute_speedup

    speedup = compute_speedup(col.runs)  # dedupes the speedup runs it selects
    sharp = build_sharpness(runs)
    text("sharpness.md", render_sharpness_md(sharp))
    text("sharpness.csv", render_sharpness_csv(sharp))
    text("claims.md", render_claims(check_claims(tables, speedup), tables, sharp))
    from adasam_glue.report.lr_tuning import render_lr_tuning

    text("lr_tuning.md", render_lr_tuning(runs_dir))
    if figures:
        from adasam_glue.report.figures import plot_curves, plot_speedup

        written += plot_speedup(speedup, out)
        written += plot_curves(tables, out)
        written += plot_sharpness(sharp, out)
    summary.lines.append(f"speedup: {speedup.statement()}")
    text("README.md", _index(col, tables, speedup, sharp, sorted(p.name for p in written)))
    summary.files = sorted(p.name for p in written)
    return summary


def _code_section(runs, tables) -> list[str]:
    """The git commits the records were trained by, and the table cells that mix them (issue 24 C: the
    identity says what ran, not which code; after a fix, old-code seeds must not pool silently)."""
    from adasam_glue.report.collect import UNKNOWN_COMMIT, code_versions
    from adasam_glue.report.table_render import mixed_code_cells

    counts: dict[str, int] = {}
    for r in runs:
        for c in code_versions([r])[0]:
            counts[c] = counts.get(c, 0) + 1
    dirty = sum(r.dirty for r in runs)
    out = [
        "",
        "## Code versions",
        "",
        "Git commits the runs were trained by (a run resumed under two counts for both):",
        "",
    ]
    out += [
        f"- {c if c != UNKNOWN_COMMIT else 'unknown (no commit in the record)'} ({n} run{'s' if n != 1 else ''})"
        for c, n in sorted(counts.items(), key=lambda kv: (kv[0] == UNKNOWN_COMMIT, kv[0]))
    ] or ["- none"]
    if dirty:
        out.append(f"- {dirty} run(s) trained from a tree with uncommitted changes")
    mixed = [f"{res.spec.name}: {cell}" for res in tables for cell in mixed_code_cells(res)]
    out += [
        "",
        "Table cells whose runs mix commits or uncommitted changes (listed in each table's notes):",
        "",
    ]
    out += [f"- {m}" for m in mixed] or ["- none"]
    return out


def _index(col, tables, speedup, sharp, files: list[str]) -> str:
    from adasam_glue.report.palette import method_name
    from adasam_glue.report.setting import SYNTHETIC_BANNER, is_synthetic, setting_text
    from adasam_glue.report.tables import eligible

    runs = col.unique
    by_status: dict[str, int] = {}
    for r in col.runs:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    n_synth = sum(is_synthetic(r) for r in runs)
    out = ["# Report index" + (" — SYNTHETIC DATA" if n_synth else ""), ""]
    if n_synth:
        out += [f"> **{SYNTHETIC_BANNER}** ({n_synth} of {len(runs)} runs.)", ""]
    out += [
        "Rebuilt by `python -m adasam_glue.report RUNS_DIR OUT_DIR` (`make report`) from run records only. "
        "Table numbers are ×100 (points); see each table for the protocol. Runs are pooled, selected and "
        "paired only within one identity or setting; unlike runs go to separate, labelled rows.",
        "",
        f"Records read: {len(col.runs)} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()))
        + f"); skipped: {len(col.skipped)}; duplicates dropped: {len(col.duplicates)}.",
        "",
        "## Settings",
        "",
        "What the runs were trained on (model; data; updates; precision), with the number of runs:",
        "",
    ]
    settings: dict[str, int] = {}
    for r in runs:
        key = setting_text([r])
        settings[key] = settings.get(key, 0) + 1
    out += [f"- {k} ({v} run{'s' if v != 1 else ''})" for k, v in sorted(settings.items())] or ["- none"]
    out += _code_section(runs, tables)
    out += ["", "## Files", ""]
    desc = {
        "claims.md": "the paper's claims (spec §4) checked against these results",
        "lr_tuning.md": "the lr-tuning stages: grid, dev metric per lr, the selected lr, edge flags",
        "paired.csv": "paired per-task comparison with bootstrap CI, all tables (long form)",
        "sharpness.md": "sharpness per configuration, with the flatter-minima claims",
        "sharpness.csv": "sharpness per configuration (machine-readable)",
        "speedup.png": "Figure 1: loss vs updates per batch size, updates-to-target vs batch (log-log)",
        "README.md": "this index",
    }
    for res in tables:
        desc[f"{res.spec.name}.md"] = f"{res.spec.title} — {res.win_line()}" + (
            " (SYNTHETIC DATA)" if res.synthetic else ""
        )
    for f in [*files, "README.md"]:
        d = desc.get(f)
        if d is None and f.startswith("curves_") and f.endswith(".png"):
            d = "loss and dev metric vs updates, four optimizers, one setting (paper Figs. 2-5)"
        if d is None and f.startswith("sharpness_") and f.endswith(".png"):
            d = "sharpness vs dev metric, one point per run"
        out.append(f"- `{f}`" + (f": {d}" if d else ""))
    out += ["", "## Speedup", "", f"Runs: {speedup.source}. {speedup.statement()}", ""]
    out += ["## Records skipped", ""]
    out += [f"- `{rel}`: {why}" for rel, why in col.skipped] or ["- none"]
    out += ["", "## Duplicate runs dropped", ""]
    out += [
        f"- `{d.rel}` [{d.status_text}]: same identity and seed as `{k.rel}` [{k.status_text}] (kept)"
        for d, k in col.duplicates
    ] or ["- none"]
    if col.flagged:  # only when there is one: reports of clean records stay as they were
        out += [
            "",
            "## Runs flagged by the report",
            "",
            "A completed record that breaks the divergence rule counts as diverged; a run resumed under a "
            "changed config is excluded; rows lost to malformed TSV lines are flagged (the metric is over "
            "the rows kept). Status as the report uses it, then the record's:",
            "",
        ]
        out += [f"- `{r.rel}`: {r.status_text}" for r in col.flagged]
    out += ["", "## Runs not used in any table", ""]
    incomplete = [r for r in runs if r.status not in ("completed", "diverged")]
    out += [f"- `{r.rel}`: status {r.status_text}" for r in incomplete]
    outside = [
        r
        for r in runs
        if r.status in ("completed", "diverged") and not any(eligible(res.spec, r) for res in tables)
    ]
    out += [
        f"- `{r.rel}`: {method_name(r.optimizer)}, experiment {r.experiment or '?'}, "
        f"beta1={'?' if r.beta1 is None else f'{r.beta1:g}'} (not a table's method/beta1, or a "
        "speedup/schedules/lr-tuning run)"
        for r in outside
    ]
    if not incomplete and not outside:
        out.append("- none")
    derived = [r for r in runs if r.identity_derived]
    if derived:
        out += [
            "",
            "## Identities derived from old records",
            "",
            f"{len(derived)} record(s) of schema version 1 store no identity; it was derived from their "
            "config (data and weights fingerprinted as found now).",
        ]
        out += [f"- `{r.rel}`: {r.identity_note}" for r in derived if r.identity_note]
    return "\n".join(out) + "\n"
