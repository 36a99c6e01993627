"""Every two-pass optimizer against its base, per like-with-like setting (``variants.md``/``.csv``).

The baseline comes from the registry (:func:`~adasam_glue.report.grouping.baselines`), so a newly
registered variant with records appears with no edit. A variant identity is set against every baseline
identity differing only in optimizer keys (docs/algorithms.md §4.4) at the same ``optim.beta1``
(:func:`~adasam_glue.report.grouping.counterparts`, as the sharpness claims pair them).
lr-tuning stages and recipe probes are left out (nuisance-parameter searches, not results).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from adasam_glue.experiments.tuned_lr import TUNING_SUFFIX
from adasam_glue.report.grouping import OPTIM, baselines, counterparts, setting_of
from adasam_glue.report.palette import g_or, method_name, metric_label, optimizer_rank, task_name
from adasam_glue.report.setting import heading, setting_tags, setting_text
from adasam_glue.report.stats import Config, Paired, config, learns, metric, pair, with_score
from adasam_glue.report.tables import (
    MISSING,
    NO_LEARNING_MARK,
    PROBE_SUFFIX,
    _csv,
    diff_cells,
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
    variant: Config  #: the variant's runs, with the selection metric over the completed ones
    baseline: Config
    paired: Paired  #: on the selection metric

    @property
    def runs(self) -> pd.DataFrame:
        return pd.concat([self.variant.runs, self.baseline.runs])


def variant_pairs(frame: pd.DataFrame) -> list[VariantPair]:
    """Every (variant identity, baseline identity) pair of one setting and beta1 among ``frame``'s
    completed or diverged runs (``frame`` without duplicates)."""
    results = frame.status.isin(("completed", "diverged"))
    df = frame[results & ~frame.experiment.str.endswith((TUNING_SUFFIX, PROBE_SUFFIX))]
    if df.empty:
        return []
    df = df.assign(setting=setting_of(df))
    runs = {h: rs for h, rs in df.groupby("group_hash")}
    out = []
    for v, bases in counterparts(df, "optimizer", baselines(df), same=("task", "beta1")).items():
        task, setting = runs[v].task.iloc[0], runs[v].setting.iloc[0]
        sel, var = TASKS[task].selection_metric, config(runs[v], task)
        for b in bases:
            base = config(runs[b], task)
            seeds = [with_score(c.completed, metric(c.completed, sel)) for c in (var, base)]
            out.append(VariantPair(task, setting, var, base, pair(task, *seeds, (v, b))))

    def order(p: VariantPair) -> tuple:
        r, ids = _first(p.variant), (p.paired.sam_identity, p.paired.base_identity)
        beta = -1.0 if r.beta1 is None else r.beta1
        return (TASK_ORDER.index(p.task), p.setting, optimizer_rank(r.optimizer), -beta, r.rho or 0.0, ids)

    return sorted(out, key=order)


def _first(c: Config) -> pd.Series:
    """A run of the configuration (its optimizer, beta1, rho and flat identity are the configuration's)."""
    return c.runs.iloc[0]


def _label(c: Config) -> str:
    r = _first(c)
    return method_name(r.optimizer, r.flat.get(f"{OPTIM}.base"))


def own_keys(p: VariantPair) -> str:
    """The variant's optimizer keys that its baseline lacks or sets otherwise, beyond ρ and β1
    (``eta=0.01``, ``kappa=2``): what a reader needs to know which variant ran."""
    v, b = (_first(c).flat for c in (p.variant, p.baseline))
    skip = {f"{OPTIM}.{k}" for k in ("name", "base", "rho", "beta1", "sync_ascent")}
    keys = [
        k for k in v if k.startswith(f"{OPTIM}.") and k not in skip and v[k] is not None and b.get(k) != v[k]
    ]
    return ", ".join(
        f"{k.rsplit('.', 1)[1]}={v[k]:g}" if isinstance(v[k], float) else f"{k.rsplit('.', 1)[1]}={v[k]}"
        for k in keys
    )


def _dev(c: Config, task: str) -> str:
    """The dev summary of one side of a pair (†: it has diverged runs, excluded; ‡: no seed learned)."""
    text = (MISSING if c.selection is None else summary_text(c.selection)) + "†" * bool(len(c.diverged))
    return text + ("" if learns(c.completed, task) else NO_LEARNING_MARK)


def _not_learning(p: VariantPair) -> str:
    """``optimizer``, ``baseline``, ``both`` or ``""``: which side's seeds all learned nothing."""
    dead = [not learns(c.completed, p.task) for c in (p.variant, p.baseline)]
    return "both" if all(dead) else "optimizer" if dead[0] else "baseline" if dead[1] else ""


def _dev_cells(c: Config) -> list:
    """Mean, std (×100), seeds and diverged runs of one side of a pair, for the CSV."""
    s = c.selection
    return [num(s and s.mean), num(s and s.std), s.n if s else 0, len(c.diverged)]


def render_variants_md(pairs: list[VariantPair]) -> str:
    out = heading("Every optimizer against its base", pd.concat([p.runs for p in pairs]))
    tags = setting_tags(p.setting for p in pairs)
    for s, tag in tags.items():
        out.append(f"Setting {tag}: {setting_text(pd.concat([p.runs for p in pairs if p.setting == s]))}.")
    out += [
        "",
        "Each two-pass optimizer with records against the one-pass optimizer of its base (the registry's "
        "baseline_of), per identity: runs that differ only in optimizer keys, at the same β1. Other keys: "
        "the optimizer's keys that its base lacks or sets otherwise, beyond ρ and β1. Dev metric: "
        "the task's selection metric at the best checkpoint, mean ± sample std (ddof=1) over the completed "
        "seeds ×100 (seeds in parentheses; † diverged runs, excluded; ‡ every seed learned nothing, "
        "docs/algorithms.md §4.4 item 5, so its difference is not evidence). Difference: per-seed optimizer minus "
        "base over the seeds both have, 95% percentile bootstrap CI (10 000 resamples, fixed seed).",
        "",
    ]
    head = "Task|Setting|Optimizer|β1|ρ|other keys|dev metric|Optimizer ×100|Base|Base ×100|mean difference"
    head += "|95% bootstrap CI|seeds paired|CI excludes 0|identities"
    body = []
    for p in pairs:
        r, q = _first(p.variant), p.paired
        line = [task_name(p.task), tags[p.setting], _label(p.variant), g_or(r.beta1, "n/a")]
        line += [g_or(r.rho, "n/a"), own_keys(p) or "—", metric_label(TASKS[p.task].selection_metric)]
        line += [_dev(p.variant, p.task), _label(p.baseline), _dev(p.baseline, p.task)]
        dead = (
            f"; {NO_LEARNING_MARK} not evidence: {_not_learning(p)} learned nothing"
            if _not_learning(p)
            else ""
        )
        body.append(line + [*diff_cells(q), q.identities + dead])
    return "\n".join(out + md_table(head.split("|"), body, "lllrrllrlrrlrll")) + "\n"


def render_variants_csv(pairs: list[VariantPair]) -> str:
    head = "task setting optimizer base beta1 rho other_keys metric optimizer_mean optimizer_std optimizer_n optimizer_diverged"
    head += " baseline baseline_mean baseline_std baseline_n baseline_diverged mean_difference ci_low ci_high"
    head += " seeds_paired optimizer_identity baseline_identity setting_text no_learning"
    rows = []
    for p in pairs:
        r = _first(p.variant)
        line = [p.task, p.setting, r.optimizer, r.flat.get(f"{OPTIM}.base") or "", g_or(r.beta1, "n/a")]
        line += [g_or(r.rho, ""), own_keys(p), TASKS[p.task].selection_metric]
        line += [
            *_dev_cells(p.variant),
            _first(p.baseline).optimizer,
            *_dev_cells(p.baseline),
            *paired_cells(p.paired),
        ]
        rows.append([*line, setting_text(p.runs), _not_learning(p)])
    return _csv(head.split(), rows)
