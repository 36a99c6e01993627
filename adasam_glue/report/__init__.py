"""The report: Tables 1-4, every optimizer against its base, claims, figures, rebuilt from run records only
(``python -m adasam_glue.report RUNS_DIR OUT_DIR``, ``make report``); ``README.md`` indexes the files and
lists the settings, the code, and every record skipped, dropped as a duplicate, flagged or not used.

Like with like (docs/algorithms.md §4.4): runs are pooled, selected and paired only through their
identities (:mod:`~adasam_glue.report.grouping`); every caption states the setting and says SYNTHETIC DATA
where generated data went in. Output is deterministic (no timestamps or absolute paths, fixed seeds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from adasam_glue.records import RecordError, atomic_write_text
from adasam_glue.report.collect import UNKNOWN_COMMIT, Collection, NoRecordsError, load_runs

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
    from adasam_glue.report import figures as fig
    from adasam_glue.report import tables as tt
    from adasam_glue.report.claims import check_claims, render_claims
    from adasam_glue.report.lr_tuning import render_lr_tuning
    from adasam_glue.report.sharpness_table import build_sharpness, render_sharpness_csv, render_sharpness_md
    from adasam_glue.report.variants import render_variants_csv, render_variants_md, variant_pairs

    col = load_runs(runs_dir, skip_unknown_schema=skip_unknown_schema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = [tt.build_table(spec, col.frame) for spec in tt.TABLES]  # each dedupes its own eligible runs
    variants = variant_pairs(col.unique)
    speedup = fig.compute_speedup(col.frame)  # dedupes the speedup runs it selects
    sharp = build_sharpness(col.unique)
    renders = (("md", tt.render_markdown), ("tex", tt.render_tex), ("csv", tt.render_csv))
    texts = {f"{res.spec.name}.{ext}": render(res) for res in tables for ext, render in renders}
    texts["paired.csv"] = tt.render_paired_csv(tables)
    if variants:
        texts |= {"variants.md": render_variants_md(variants), "variants.csv": render_variants_csv(variants)}
    texts |= {"sharpness.md": render_sharpness_md(sharp), "sharpness.csv": render_sharpness_csv(sharp)}
    texts["claims.md"] = render_claims(check_claims(tables, speedup), tables, sharp)
    texts["lr_tuning.md"] = render_lr_tuning(runs_dir)
    for name, content in texts.items():
        atomic_write_text(out / name, content)
    written = [out / name for name in texts]
    if figures:
        written += (
            fig.plot_speedup(speedup, out) + fig.plot_curves(tables, out) + fig.plot_sharpness(sharp, out)
        )
    files = sorted(p.name for p in written)
    used = {r for p in variants for r in p.runs.rel}
    atomic_write_text(out / "README.md", _index(col, tables, speedup, used, files))
    lines = [f"{res.spec.name}: {res.main.win_line()}" for res in tables]
    lines.append(f"speedup: {speedup.statement()}")
    return ReportSummary(out, sorted([*files, "README.md"]), col, lines)


def _count(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _section(title: str, items: list[str], *intro: str) -> list[str]:
    return ["", f"## {title}", "", *intro, *(items or ["- none"])]


def _code_section(runs: pd.DataFrame, tables: list) -> list[str]:
    """The git commits the records were trained by, and the table cells that mix them (issue 24 C: the
    identity says what ran, not which code; after a fix, old-code seeds must not pool silently)."""
    from adasam_glue.report.tables import mixed_code_cells

    counts = pd.Series([c for cs in runs.commits for c in sorted({c[:10] for c in cs}) or [UNKNOWN_COMMIT]])
    items = [
        f"- {c if c != UNKNOWN_COMMIT else 'unknown (no commit in the record)'} ({_count(n)})"
        for c, n in sorted(counts.value_counts().items(), key=lambda kv: (kv[0] == UNKNOWN_COMMIT, kv[0]))
    ]
    dirty = int(runs.dirty.sum())
    items += [f"- {dirty} run(s) trained from a tree with uncommitted changes"] if dirty else []
    intro = "Git commits the runs were trained by (a run resumed under two counts for both):"
    mixed = [f"- {res.spec.name}: {cell}" for res in tables for cell in mixed_code_cells(res)]
    cells = "Table cells whose runs mix commits or uncommitted changes (listed in each table's notes):"
    return _section("Code versions", items, intro, "") + ["", cells, "", *(mixed or ["- none"])]


FILES = {
    "claims.md": "the paper's claims (spec §4) checked against these results",
    "lr_tuning.md": "the lr-tuning stages: grid, dev metric per lr, the selected lr, edge flags",
    "paired.csv": "paired per-task comparison with bootstrap CI, all tables (long form)",
    "sharpness.md": "sharpness per configuration, with the flatter-minima claims",
    "sharpness.csv": "sharpness per configuration (machine-readable)",
    "speedup.png": "Figure 1: loss vs updates per batch size, updates-to-target vs batch (log-log)",
    "variants.md": "every two-pass optimizer against its base optimizer, per setting, with paired differences",
    "variants.csv": "every two-pass optimizer against its base optimizer (machine-readable)",
    "curves_": "loss and dev metric vs updates, four optimizers, one setting (paper Figs. 2-5)",
    "sharpness_": "sharpness vs dev metric, one point per run",
}


def _describe(f: str) -> str | None:
    """The index line of a file: figures by their stem's prefix (``curves_``, ``sharpness_``)."""
    return FILES.get(f) or (FILES.get(f.split("_")[0] + "_") if f.endswith(".png") else None)


def _index(col: Collection, tables: list, speedup, used: set[str], files: list[str]) -> str:
    from adasam_glue.report.palette import g_or, method_name
    from adasam_glue.report.setting import SYNTHETIC_BANNER, setting_text, synthetic
    from adasam_glue.report.tables import eligible

    runs, frame = col.unique, col.frame
    n_synth = int(synthetic(runs).sum())
    out = ["# Report index" + (" — SYNTHETIC DATA" if n_synth else ""), ""]
    out += [f"> **{SYNTHETIC_BANNER}** ({n_synth} of {len(runs)} runs.)", ""] if n_synth else []
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(frame.status.value_counts().items()))
    out += [
        "Rebuilt by `python -m adasam_glue.report RUNS_DIR OUT_DIR` (`make report`) from run records only. "
        "Table numbers are ×100 (points); see each table for the protocol. Runs are pooled, selected and "
        "paired only within one identity or setting; unlike runs go to separate, labelled rows.",
        "",
        f"Records read: {len(frame)} ({statuses}); skipped: {len(col.skipped)}; duplicates dropped: {len(col.duplicates)}.",
    ]
    settings = pd.Series([setting_text(runs.loc[[i]]) for i in runs.index], dtype=object).value_counts()
    intro = "What the runs were trained on (model; data; updates; precision), with the number of runs:"
    out += _section("Settings", [f"- {k} ({_count(v)})" for k, v in sorted(settings.items())], intro, "")
    out += _code_section(runs, tables)
    synth = " (SYNTHETIC DATA)"
    desc = {f"{r.spec.name}.md": f"{r.spec.title} — {r.main.win_line()}{synth * r.synthetic}" for r in tables}
    listing = [f"- `{f}`" + (f": {d}" if (d := desc.get(f) or _describe(f)) else "") for f in files]
    out += _section("Files", listing + ["- `README.md`: this index"])
    out += _section("Speedup", [f"Runs: {speedup.source}. {speedup.statement()}"])
    out += _section("Records skipped", [f"- `{rel}`: {why}" for rel, why in col.skipped])
    dups = "- `{0.rel}` [{0.status_text}]: same identity and seed as `{0.kept_rel}` [{0.kept_status_text}] (kept)"
    out += _section("Duplicate runs dropped", [dups.format(d) for d in col.duplicates.itertuples()])
    flagged = [
        f"- `{r.rel}`: {r.status_text}" for r in frame[frame.flagged.map(bool).astype(bool)].itertuples()
    ]
    why = (
        "A completed record that breaks the divergence rule counts as diverged; a run resumed under a "
        "changed config is excluded; rows lost to malformed TSV lines are flagged (the metric is over "
        "the rows kept). Status as the report uses it, then the record's:"
    )  # the section only when a run is flagged: reports of clean records stay as they were
    out += _section("Runs flagged by the report", flagged, why, "") if flagged else []
    final = runs.status.isin(("completed", "diverged"))
    in_table = pd.concat([eligible(res.spec, runs) for res in tables], axis=1).any(axis=1)
    outside = runs[final & ~in_table & ~runs.rel.isin(used)]
    unused = [f"- `{r.rel}`: status {r.status_text}" for r in runs[~final].itertuples()]
    unused += [
        f"- `{r.rel}`: {method_name(r.optimizer)}, experiment {r.experiment or '?'}, "
        f"beta1={g_or(r.beta1)} (not a table's method/beta1, or a "
        "speedup/schedules/lr-tuning run)"
        for r in outside.itertuples()
    ]
    out += _section("Runs not used in any table", unused)
    derived = runs[runs.identity_derived.astype(bool)]
    if len(derived):
        out += ["", "## Identities derived from old records", ""]
        out += [
            f"{len(derived)} record(s) of schema version 1 store no identity; it was derived from their "
            "config (data and weights fingerprinted as found now).",
            *[f"- `{r.rel}`: {r.identity_note}" for r in derived.itertuples() if r.identity_note],
        ]
    return "\n".join(out) + "\n"
