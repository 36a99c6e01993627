"""Sharpness in the report: a table per configuration and the flatter-minima claims (figure:
:func:`adasam_glue.report.figures.plot_sharpness`).

Reads the optional ``sharpness`` block of run records (:mod:`adasam_glue.sharpness.measure`): top Hessian
eigenvalue, Hutchinson trace, and worst-case sharpness in the rho-ball, plain and adaptive, per rho. The
dev metric beside it is the selection metric at the measured checkpoint (``best`` when the block says so,
else the final evaluation, else ``best``).

A configuration is one identity without its seed (docs/algorithms.md §4.4). Like with like
(:func:`~adasam_glue.report.grouping.counterparts`): "SAM-family vs base" pairs configurations whose runs
differ only in optimizer keys, with the base from the registry, as the variants table does; "schedule vs
constant" pairs ones that differ only in :data:`SCHEDULE_KEYS`; the rank correlation is taken per task
over runs of one setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adasam_glue.metrics import no_learning
from adasam_glue.report.collect import to_float
from adasam_glue.report.grouping import OPTIM, baselines, counterparts, setting_of
from adasam_glue.report.palette import (
    RegistryView,
    g_or,
    method_name,
    metric_label,
    optimizer_rank,
    task_name,
)
from adasam_glue.report.setting import heading, setting_tags, setting_text, verdict_on
from adasam_glue.report.stats import Summary, bootstrap_mean_ci, recorded_constant, summarize
from adasam_glue.report.tables import NO_LEARNING_MARK, _csv, md_table
from adasam_glue.schedules import DECAYING
from adasam_glue.sharpness.block import lanczos_cap_bound, largest_eigenvalue, smallest_eigenvalue
from adasam_glue.tasks import TASK_ORDER, TASKS


def _default_bases(recs: Mapping[str, Any]) -> dict[str, str]:
    from adasam_glue.optim.registry import baseline_of  # imported on first use: torch loads only then

    return {n: b for n in recs if (b := baseline_of(n)) is not None}


#: SAM-family optimizer -> its default base's one-pass optimizer; a run on another base (``optim.base``)
#: is compared with that base's runs (:func:`adasam_glue.report.grouping.baseline`).
SAM_BASE: Mapping[str, str] = RegistryView(_default_bases)
#: the identity keys a schedule point of the schedules experiment sets (conf/schedule/*.yaml)
SCHEDULE_KEYS = ("config.trainer.schedule", "config.trainer.batch_schedule", "config.trainer.min_lr_ratio")
HEAD = ("top eigenvalue", "smallest eigenvalue", "trace")
#: the eigenvalues of a row with a run whose Lanczos iteration stopped at its cap before its tolerance
CAP_MARK = "†"
FAMILY_CLAIM = (
    "SAM-family optimizers find flatter minima than their base optimizer (same task, β1, and runs that "
    "differ only in optimizer keys)"
)
SCHEDULE_CLAIM = (
    "Increasing batch / decaying lr find flatter minima than a constant schedule (same task, and runs "
    "that differ only in the schedule keys)"
)


def measures(block: Mapping[str, Any]) -> dict[str, float]:
    """Measure label -> value (``top eigenvalue``, ``smallest eigenvalue``, ``trace``, ``worst-case
    ρ=0.01``, ...) of a record's ``sharpness`` block, finite only. The top eigenvalue is ``lambda_max``
    (:func:`adasam_glue.sharpness.block.largest_eigenvalue`), the smallest ``lambda_min``, each only where
    the block's method version gives a sound value."""
    values = block.get("values") if isinstance(block.get("values"), dict) else {}
    out = {
        "top eigenvalue": largest_eigenvalue(block),
        "smallest eigenvalue": smallest_eigenvalue(block),
        "trace": to_float(values.get("trace")),
    }
    for name, key in (("worst-case", "worst_case"), ("adaptive worst-case", "worst_case_adaptive")):
        if isinstance(values.get(key), dict):
            items = sorted(
                ((str(k), to_float(v)) for k, v in values[key].items()),
                key=lambda kv: -(to_float(kv[0]) or 0.0),
            )
            out |= {f"{name} ρ={rho}": v for rho, v in items}
    return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


def sharpness_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The completed or diverged runs with a usable ``sharpness.values`` block, with their ``values``
    (:func:`measures`), ``dev`` (selection metric at the measured checkpoint), ``seconds``, ``hvps``, and
    ``cap_bound`` (:func:`~adasam_glue.sharpness.block.lanczos_cap_bound`: ``None`` unless capped)."""
    block = df.record.map(lambda r: r.get("sharpness") if isinstance(r.get("sharpness"), dict) else {})
    vals = block.map(measures)
    pts = df.assign(values=vals, block=block)[
        df.status.isin(("completed", "diverged")) & vals.map(bool).astype(bool)
    ]
    cost = pts.block.map(lambda b: b.get("cost") if isinstance(b.get("cost"), dict) else {})
    which = [
        "best" if b.get("checkpoint") == "best" or not r.final else "final"
        for r, b in zip(pts.itertuples(), pts.block)
    ]
    at = [getattr(r, w) for r, w in zip(pts.itertuples(), which)]
    constant = [recorded_constant(r.get(w)) for r, w in zip(pts.record, which)]
    return pts.assign(
        dev=[m.get(TASKS[t].selection_metric) for m, t in zip(at, pts.task)],
        learned=[
            not no_learning(t, m, c) for m, t, c in zip(at, pts.task, constant)
        ],  # at the measured checkpoint
        seconds=cost.map(lambda c: to_float(c.get("seconds"))),
        hvps=cost.map(lambda c: to_float(c.get("hvp_count"))),
        cap_bound=pd.Series([lanczos_cap_bound(b) for b in pts.block], index=pts.index, dtype=object),
    )


@dataclass
class ConfigRow:
    """One configuration (identity without seed) with its measures over seeds."""

    task: str
    optimizer: str
    beta1: float | None
    rho: float | None
    schedule: str
    group_hash: str
    points: pd.DataFrame  #: its runs (rows of :func:`sharpness_frame`), by seed
    values: dict[str, Summary | None] = field(default_factory=dict)

    def summary(self, column: str) -> Summary | None:
        return summarize(self.points[column])

    @property
    def learns(self) -> bool:
        """False when no run of it learned (docs/algorithms.md §4.4 item 5): out of the verdicts."""
        return bool(self.points.learned.any())

    @property
    def live(self) -> pd.DataFrame:
        """The runs its means are over: those that learned, or all when none did."""
        return self.points[self.points.learned.astype(bool)] if self.learns else self.points

    @property
    def cap_bounds(self) -> list[float]:
        """The relative error bounds of the eigenvalues of its :attr:`live` runs whose Lanczos iteration
        stopped at the cap before its tolerance (docs/algorithms.md §3.5); empty when all converged."""
        return [b for b in self.live.cap_bound if b is not None]

    @property
    def label(self) -> str:
        rho = "" if self.rho is None else f", ρ={self.rho:g}"
        return f"{method_name(self.optimizer)} (β1={g_or(self.beta1)}{rho}, {self.schedule})"

    @property
    def setting(self) -> str:
        return setting_text(self.points)


@dataclass
class SharpnessReport:
    frame: pd.DataFrame  #: :func:`sharpness_frame` of the runs
    rows: list[ConfigRow]
    measures: list[str]  #: column order
    claims: list[str]  #: one line per claim, with the measured numbers


def _measure_order(m: str) -> tuple:
    if m in HEAD:
        return (HEAD.index(m), 0.0, m)
    name, _, rho = m.partition(" ρ=")
    return (len(HEAD) + (name != "worst-case"), -(to_float(rho) or 0.0), m)


def build_sharpness(df: pd.DataFrame) -> SharpnessReport:
    pts = sharpness_frame(df)
    names = sorted({m for v in pts["values"] for m in v}, key=_measure_order)
    groups: dict[tuple, list] = {}
    for i, r in zip(pts.index, pts.itertuples()):
        groups.setdefault((r.task, r.optimizer, r.beta1, r.rho, r.schedule, r.group_hash), []).append(i)
    neg = lambda x: -(x if x is not None else -1)  # noqa: E731
    order = lambda k: (TASK_ORDER.index(k[0]), *optimizer_rank(k[1]), neg(k[2]), neg(k[3]), *k[4:])  # noqa: E731
    rows = []
    for key in sorted(groups, key=order):
        row = ConfigRow(*key, pts.loc[groups[key]].sort_values(["seed", "rel"]))
        live = row.live["values"]  # a run that learned nothing: not in a mean
        row.values = {m: summarize(v[m] for v in live if m in v) for m in names}
        rows.append(row)
    return SharpnessReport(pts, rows, names, _claims(rows, pts, names))


def _cmp_line(title: str, pairs: list[tuple[ConfigRow, ConfigRow]], measure: str) -> str:
    """``<title>: k of m comparisons lower (...)`` on ``measure`` (the first of a pair expected lower); a
    pair with a side that does not learn is left out, named."""
    items, lower, runs = [], 0, []
    dead = [
        f"{task_name(a.task)} {a.label} vs {b.label} ("
        + " and ".join(x.label for x in (a, b) if not x.learns)
        + (" does not learn)" if a.learns or b.learns else " do not learn)")
        for a, b in pairs
        if not (a.learns and b.learns)
    ]
    left = f" Left out: {'; '.join(dead)}." if dead else ""
    ci_lower = ci_higher = with_ci = 0
    for a, b in ((a, b) for a, b in pairs if a.learns and b.learns):
        va, vb = a.values.get(measure), b.values.get(measure)
        if va is None or vb is None:
            continue
        lower += va.mean < vb.mean
        runs += [a.points, b.points]
        diffs = _seed_paired(a, b, measure)
        ci = bootstrap_mean_ci(diffs)
        if ci is not None:
            with_ci += 1
            ci_lower, ci_higher = ci_lower + (ci[1] < 0), ci_higher + (ci[0] > 0)
        items.append(
            f"{task_name(a.task)} {a.label} [{a.group_hash}] {va.mean:.4g} vs {b.label} [{b.group_hash}] "
            f"{vb.mean:.4g} ({_paired_text(diffs, ci)})"
        )
    if not items:
        return f"{title}: cannot be tested (no pair of configurations with {measure} measured where both learn).{left}"
    verdict = "holds" if lower == len(items) else "does not hold" if lower == 0 else "holds partly"
    verdict = verdict_on(verdict, pd.concat(runs))
    paired = (
        f"the seed-paired 95% bootstrap CI excludes 0 in {ci_lower + ci_higher} of the {with_ci} with ≥ 2 "
        f"paired seeds (lower: {ci_lower}, higher: {ci_higher})"
        if with_ci
        else "no comparison has 2 seeds measured on both sides, so none has a CI"
    )
    return (
        f"{title} ({measure}): {verdict}, lower in {lower} of {len(items)} comparisons; {paired} — "
        + "; ".join(items)
        + "."
        + left
    )


def _seed_paired(a: ConfigRow, b: ConfigRow, measure: str) -> list[float]:
    """``a − b`` on ``measure`` per seed that both configurations measured on a run that learned: the
    noise between seeds is what a difference of means over 3 seeds cannot show (docs/algorithms.md §4.4)."""

    def by_seed(row: ConfigRow) -> dict[int, float]:
        p = row.points
        return {
            int(s): v[measure]
            for s, v, ok in zip(p.seed, p["values"], p.learned)
            if ok and measure in v and s is not None
        }

    va, vb = by_seed(a), by_seed(b)
    return [va[s] - vb[s] for s in sorted(va.keys() & vb.keys())]


def _paired_text(diffs: list[float], ci: tuple[float, float] | None) -> str:
    if not diffs:
        return "no seed measured on both"
    mean = sum(diffs) / len(diffs)
    if ci is None:
        return f"1 seed paired: {mean:+.4g}"
    return f"seed-paired {mean:+.4g} [{ci[0]:+.4g}, {ci[1]:+.4g}] over {len(diffs)} seeds"


def _with_partner(rows: list[ConfigRow], partners: dict[str, list[str]]) -> list[tuple[ConfigRow, ConfigRow]]:
    """Each configuration with the first of its :func:`counterparts` among ``rows`` (none: left out)."""
    out = []
    for r in rows:
        if x := next((x for x in rows if x.group_hash in partners.get(r.group_hash, ())), None):
            out.append((r, x))
    return out


def _claims(rows: list[ConfigRow], pts: pd.DataFrame, names: list[str]) -> list[str]:
    if not rows:
        return [
            "No run record has a sharpness block (train with sharpness.enabled=true or run "
            "`python -m adasam_glue.sharpness RUN_DIR`), so the flatter-minima claims cannot be tested."
        ]
    measure = "top eigenvalue" if "top eigenvalue" in names else names[0]
    fam = counterparts(pts, "optimizer", baselines(pts), same=("task", "beta1"))
    decaying = pts.schedule.map(lambda s: s != "constant" and (s.startswith("batch") or s in DECAYING))
    sched = counterparts(pts, "schedule", decaying.map({True: "constant", False: None}), SCHEDULE_KEYS)
    lines = [
        _cmp_line(FAMILY_CLAIM, _with_partner(rows, fam), measure),
        _cmp_line(SCHEDULE_CLAIM, _with_partner(rows, sched), measure),
    ]
    corr = []
    for t in TASK_ORDER:
        tp = pts[pts.task.eq(t) & pts.dev.notna() & pts["values"].map(lambda v: measure in v).astype(bool)]
        if dead := int((~tp.learned.astype(bool)).sum()):  # a run that learned nothing is not a point here
            corr.append(f"{task_name(t)}: {dead} run(s) that learned nothing left out")
        tp = tp[tp.learned.astype(bool)]
        settings = setting_of(tp, (OPTIM, *SCHEDULE_KEYS)) if len(tp) else pd.Series(dtype=object)
        for g in sorted(set(settings)):
            gp = tp[settings == g]
            name = task_name(t) + (
                f" [setting {g[:6]}: {setting_text(gp)}]" if settings.nunique() > 1 else ""
            )
            rho_s = _spearman([v[measure] for v in gp["values"]], list(gp.dev)) if len(gp) >= 3 else None
            if len(gp) < 3:
                corr.append(f"{name}: {len(gp)} runs, too few for a rank correlation")
            elif rho_s is None:
                corr.append(f"{name}: constant values, no rank correlation")
            else:
                word = "better" if rho_s < 0 else "worse" if rho_s > 0 else ""
                word = f"lower sharpness went with a {word} dev metric" if word else "no monotone relation"
                corr.append(f"{name}: Spearman r = {rho_s:+.2f} over {len(gp)} runs ({word})")
    corr_text = "; ".join(corr) if corr else "no task has a run with both measured"
    return lines + [
        f"Sharpness vs dev metric ({measure} vs the selection metric, across the runs of one setting): {corr_text}."
    ]


def _spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(set(x)) >= 2 and len(set(y)) >= 2 else None


# ------------------------------------------------------------------------------------------- rendering
def _fmt(s: Summary | None) -> str:
    return "—" if s is None else f"{s.mean:.4g}" + (f" ± {s.std:.2g}" if s.std is not None else "")


def render_sharpness_md(rep: SharpnessReport) -> str:
    out = heading("Sharpness at the end of training", rep.frame)
    if not rep.rows:
        return "\n".join([*out, rep.claims[0], ""])
    tags = setting_tags(r.setting for r in rep.rows)
    out += [f"Setting {tag}: {text}." for text, tag in tags.items()] + [""]
    header = ["Task", "Optimizer", "β1", "ρ", "Schedule", "n", *rep.measures]
    header += ["dev metric ×100", "cost s", "HVPs"]
    body = []
    for r in rep.rows:
        dev = r.summary("dev")
        scaled = dev and Summary(dev.mean * 100, None if dev.std is None else dev.std * 100, dev.n)
        dev = f"{metric_label(TASKS[r.task].selection_metric)} {_fmt(scaled)}" if dev else "—"
        dev += "" if r.learns else f" {NO_LEARNING_MARK}"
        names = [task_name(r.task), method_name(r.optimizer), g_or(r.beta1), g_or(r.rho, "—"), r.schedule]
        cap = CAP_MARK if r.cap_bounds else ""
        body.append(
            [*names, str(len(r.points))]
            + [_fmt(r.values.get(m)) + (f" {cap}" if cap and m in HEAD[:2] else "") for m in rep.measures]
            + [dev, _fmt(r.summary("seconds")), _fmt(r.summary("hvps")), tags[r.setting], r.group_hash]
        )
    out += md_table([*header, "setting", "identity"], body, "lllll" + "r" * (len(header) - 5))
    out += [
        "",
        "Cells: mean ± sample std (ddof=1) over the seeds of the configuration (one seed: mean only), "
        "4 significant digits. Top (largest) and smallest Hessian eigenvalue by the Lanczos method (a negative "
        "smallest one: not a minimum; a block of an older method version is shown only where it gave a "
        "sound value, docs/algorithms.md §3.5), trace by Hutchinson, worst-case "
        "sharpness max over ‖δ‖ ≤ ρ of L(w+δ) − L(w) (adaptive: ASAM geometry), all on the task's fixed "
        "training subset. Dev metric: the selection metric at the measured checkpoint"
        + (
            f"; {NO_LEARNING_MARK}: no run of the configuration learned (its dev metrics at the measured "
            "checkpoint are a predictor's that learned nothing, docs/algorithms.md §4.4 item 5), so it "
            "stays out of the verdicts below; in a configuration where some runs learned, the measures are "
            "means over those runs (n counts all)."
            if any(not r.learns for r in rep.rows)
            else "."
        )
        + _cap_caption(rep.rows),
        "",
        "## Claims",
        "",
    ]
    return "\n".join(out + [f"- {c}" for c in rep.claims]) + "\n"


def _cap_caption(rows: list[ConfigRow]) -> str:
    """The caption's sentence on :data:`CAP_MARK` (empty when every Lanczos iteration converged)."""
    bounds = [b for r in rows for b in r.cap_bounds]
    if not bounds:
        return ""
    worst = max(bounds)
    worst = "unknown (a block without its residual)" if math.isinf(worst) else f"{100 * worst:.2g}%"
    return (
        f" {CAP_MARK}: in {len(bounds)} run(s) the Lanczos iteration for the eigenvalues stopped at its cap of "
        "`power_iters` Hessian-vector products before meeting its relative tolerance `power_tol`; each "
        "value still lies within the run's recorded residual bound (`eigen_residual`) of an eigenvalue of "
        f"the Hessian, at most {worst} of the largest |Ritz value| here (docs/algorithms.md §3.5)."
    )


def render_sharpness_csv(rep: SharpnessReport) -> str:
    def g6(*ss: Summary | None) -> list[str]:
        pairs = [(None, None) if s is None else (s.mean, s.std) for s in ss]
        return ["" if x is None else f"{x:.6g}" for p in pairs for x in p]

    measures = [c for m in rep.measures for c in (m, f"{m} std")]
    header = ["task", "optimizer", "beta1", "rho", "schedule", "n", *measures, "dev", "dev_std"]
    body = [
        [r.task, r.optimizer, g_or(r.beta1, ""), g_or(r.rho, ""), r.schedule, len(r.points)]
        + g6(*[r.values.get(m) for m in rep.measures], r.summary("dev"))
        + g6(r.summary("seconds"), r.summary("hvps"))[::2]
        + [f"{max(r.cap_bounds):.6g}" if r.cap_bounds else "", r.group_hash, r.setting]
        for r in rep.rows
    ]
    # eigen_cap_bound: the largest relative error bound of a capped Lanczos run (blank: all converged)
    return _csv([*header, "cost_seconds", "hvp_count", "eigen_cap_bound", "identity", "setting"], body)
