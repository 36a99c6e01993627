"""Every two-pass optimizer against its base, per like-with-like setting (``variants.md``/``.csv``).

The baseline comes from the registry (``baseline_of`` of the optimizer and ``optim.base``), so a newly
registered variant with records appears with no edit. A variant identity is set against every baseline
identity differing only in optimizer keys (docs/algorithms.md §4.4) at the same ``optim.beta1``.
lr-tuning stages and recipe probes are left out (nuisance-parameter searches, not results).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report.grouping import OPTIM, setting_of
from adasam_glue.report.palette import g_or, method_name, metric_label, optimizer_rank, task_name
from adasam_glue.report.setting import heading, setting_text
from adasam_glue.report.sharpness_table import _baseline
from adasam_glue.report.stats import BOOTSTRAP_SEED, Paired, Summary, metric, pair, summarize
from adasam_glue.report.tables import (
    MISSING,
    PROBE_SUFFIX,
    _csv,
    ci_text,
    md_table,
    num,
    paired_cells,
    summary_text,
)
from adasam_glue.tasks import TASK_ORDER, TASKS


@dataclass
class VariantPair:
    """One variant identity against one baseline identity of the same setting."""

    task: str
    setting: str  #: hash of the identity without seed and optimizer keys
    variant: pd.DataFrame  #: the variant's runs (completed and diverged), by seed
    baseline: pd.DataFrame
    paired: Paired

    def dev(self, side: str) -> Summary | None:
        runs = getattr(self, side)
        return summarize(metric(runs[runs.status.eq("completed")], TASKS[self.task].selection_metric))

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([self.variant, self.baseline])


def baselines(df: pd.DataFrame) -> pd.Series:
    """Per run, the one-pass optimizer it is compared with (``None``: one-pass itself, or no base)."""
    return pd.Series([_baseline(r) for r in df.itertuples()], index=df.index, dtype=object)


def variant_pairs(frame: pd.DataFrame) -> list[VariantPair]:
    """Every (variant identity, baseline identity) pair of one setting and beta1 among ``frame``'s
    completed or diverged runs (``frame`` without duplicates)."""
    results = frame.status.isin(("completed", "diverged"))
    df = frame[results & ~frame.experiment.str.endswith((TUNING_SUFFIX, PROBE_SUFFIX))]
    if df.empty:
        return []
    beta1 = df.beta1.map(lambda b: -1.0 if b is None else b)
    df = df.assign(setting=setting_of(df), baseline=baselines(df), beta=beta1)
    out = []
    groups = df[df.baseline.notna()].groupby(["task", "setting", "beta", "group_hash"])
    for (task, setting, beta, ghash), var in groups:
        base = df[(df.setting == setting) & (df.beta == beta) & (df.optimizer == var.baseline.iloc[0])]
        for bhash, bruns in base.groupby("group_hash"):
            sides = [x.sort_values(["seed", "rel"]) for x in (var, bruns)]
            done = [x[x.status.eq("completed")] for x in sides]
            done = [x.assign(score=metric(x, TASKS[task].selection_metric)) for x in done]
            done = [x[x.score.notna()] for x in done]
            seed = BOOTSTRAP_SEED + TASK_ORDER.index(task)
            out.append(VariantPair(task, setting, *sides, pair(task, *done, seed, (ghash, bhash))))

    def order(p: VariantPair) -> tuple:
        r, ids = p.variant.iloc[0], (p.paired.sam_identity, p.paired.base_identity)
        return (TASK_ORDER.index(p.task), p.setting, optimizer_rank(r.optimizer), -r.beta, r.rho or 0.0, ids)

    return sorted(out, key=order)


def _label(runs: pd.DataFrame) -> str:
    r = runs.iloc[0]
    return method_name(r.optimizer, r.flat.get(f"{OPTIM}.base"))


def own_keys(p: VariantPair) -> str:
    """The variant's optimizer keys that its baseline lacks or sets otherwise, beyond ρ and β1
    (``eta=0.01``, ``kappa=2``): what a reader needs to know which variant ran."""
    v, b = (getattr(p, side).iloc[0].flat for side in ("variant", "baseline"))
    skip = {f"{OPTIM}.{k}" for k in ("name", "base", "rho", "beta1", "sync_ascent")}
    keys = [
        k for k in v if k.startswith(f"{OPTIM}.") and k not in skip and v[k] is not None and b.get(k) != v[k]
    ]
    return ", ".join(
        f"{k.rsplit('.', 1)[1]}={v[k]:g}" if isinstance(v[k], float) else f"{k.rsplit('.', 1)[1]}={v[k]}"
        for k in keys
    )


def _side(p: VariantPair, side: str) -> tuple[Summary | None, int]:
    """The dev summary and the number of diverged runs of one side of a pair."""
    return p.dev(side), int(getattr(p, side).status.eq("diverged").sum())


def render_variants_md(pairs: list[VariantPair]) -> str:
    out = heading("Every optimizer against its base", pd.concat([p.runs for p in pairs]))
    settings = dict.fromkeys(p.setting for p in pairs)
    tags = {s: chr(ord("a") + i) if i < 26 else str(i) for i, s in enumerate(settings)}
    for s, tag in tags.items():
        out.append(f"Setting {tag}: {setting_text(pd.concat([p.runs for p in pairs if p.setting == s]))}.")
    out += [
        "",
        "Each two-pass optimizer with records against the one-pass optimizer of its base (the registry's "
        "baseline_of), per identity: runs that differ only in optimizer keys, at the same β1. Other keys: "
        "the optimizer's keys that its base lacks or sets otherwise, beyond ρ and β1. Dev metric: "
        "the task's selection metric at the best checkpoint, mean ± sample std (ddof=1) over the completed "
        "seeds ×100 (seeds in parentheses; † diverged runs, excluded). Difference: per-seed optimizer minus "
        "base over the seeds both have, 95% percentile bootstrap CI (10 000 resamples, fixed seed).",
        "",
    ]
    head = "Task|Setting|Optimizer|β1|ρ|other keys|dev metric|Optimizer ×100|Base|Base ×100|mean difference"
    head += "|95% bootstrap CI|seeds paired|CI excludes 0|identities"
    cell = lambda s, d: (MISSING if s is None else summary_text(s)) + "†" * bool(d)  # noqa: E731
    body = []
    for p in pairs:
        r, q = p.variant.iloc[0], p.paired
        line = [task_name(p.task), tags[p.setting], _label(p.variant), g_or(r.beta1, "n/a")]
        line += [g_or(r.rho, "n/a"), own_keys(p) or "—", metric_label(TASKS[p.task].selection_metric)]
        line += [cell(*_side(p, "variant")), _label(p.baseline), cell(*_side(p, "baseline"))]
        line += [MISSING if q.mean is None else f"{q.mean:+.2f}", ci_text(q.ci), q.n]
        body.append(line + [q.excludes_zero if q.n else "", f"{q.sam_identity} vs {q.base_identity}"])
    return "\n".join(out + md_table(head.split("|"), body, "lllrrllrlrrlrll")) + "\n"


def render_variants_csv(pairs: list[VariantPair]) -> str:
    head = "task setting optimizer base beta1 rho other_keys metric optimizer_mean optimizer_std optimizer_n optimizer_diverged"
    head += " baseline baseline_mean baseline_std baseline_n baseline_diverged mean_difference ci_low ci_high"
    head += " seeds_paired optimizer_identity baseline_identity setting_text"
    rows = []
    for p in pairs:
        r, (sv, dv), (sb, db) = p.variant.iloc[0], _side(p, "variant"), _side(p, "baseline")
        stats = lambda s, d: [num(s and s.mean), num(s and s.std), s.n if s else 0, d]  # noqa: E731
        line = [p.task, p.setting, r.optimizer, r.flat.get(f"{OPTIM}.base") or "", g_or(r.beta1, "n/a")]
        line += [g_or(r.rho, ""), own_keys(p), TASKS[p.task].selection_metric]
        line += [*stats(sv, dv), p.baseline.optimizer.iloc[0], *stats(sb, db), *paired_cells(p.paired)]
        rows.append([*line, setting_text(p.runs)])
    return _csv(head.split(), rows)
