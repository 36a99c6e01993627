"""Sharpness in the report: a table per configuration, a figure per task, the claims checked.

Reads the optional ``sharpness`` block of run records (see :mod:`adasam_glue.sharpness`); any missing
key is simply a missing value. Measures shown: top Hessian eigenvalue (``eigenvalue``, or the first of
a top-k list), Hutchinson trace, and worst-case sharpness in the rho-ball, plain and adaptive, per rho.

The dev metric a measurement is compared with is the selection metric at the checkpoint that was
measured: ``best`` when the block says ``"checkpoint": "best"`` (post-hoc CLI on a best model), else the
final evaluation (measured at the end of training), falling back to ``best`` when there is no final.

A configuration is one identity without its seed (the group hash: docs/algorithms.md §4.4), shown as
(task, optimizer, beta1, rho, schedule) plus its identity and setting; cells are mean ± sample std
(ddof=1) over its seeds (completed and diverged runs with a block; non-finite values skipped).

Like with like: "SAM-family vs base" pairs configurations whose runs differ only in optimizer keys;
"schedule vs constant" pairs configurations that differ only in the schedule keys
(:data:`SCHEDULE_KEYS`); the rank correlation is taken per task over runs of one setting (identity
without seed, optimizer and schedule keys). The table and every figure title state the setting.
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.lines
import numpy as np
from matplotlib.figure import Figure

from adasam_glue.report.collect import Run, to_float
from adasam_glue.report.figures import RC, save_figure
from adasam_glue.report.grouping import OPTIM, SEED, differs_outside, setting_hash, under
from adasam_glue.report.palette import METHOD_NAMES, color, method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, setting_text
from adasam_glue.report.stats import Summary, summarize
from adasam_glue.schedules import DECAYING
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = [
    "SAM_BASE",
    "SharpnessReport",
    "SharpPoint",
    "build_sharpness",
    "plot_sharpness",
    "render_sharpness_csv",
    "render_sharpness_md",
    "sharpness_points",
]


class _BaselineView(Mapping[str, str]):
    """SAM-family optimizer -> the one-pass optimizer of its default base, read from the registry
    (``adasam_glue.optim.baseline_of``); optimizers without one (LightSAM, the bases) are absent."""

    def _items(self) -> dict[str, str]:
        from adasam_glue.optim.registry import OPTIMIZERS, baseline_of

        return {n: b for n in OPTIMIZERS if (b := baseline_of(n)) is not None}

    def __getitem__(self, key: str) -> str:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


#: SAM-family optimizer -> the base optimizer it perturbs by default (for "SAM-family < base"); a run on
#: another base (``optim.base``) is paired with that base's runs (:func:`_baseline`).
SAM_BASE: Mapping[str, str] = _BaselineView()
#: the identity keys a schedule point of the schedules experiment sets (conf/schedule/*.yaml)
SCHEDULE_KEYS = ("config.trainer.schedule", "config.trainer.batch_schedule", "config.trainer.min_lr_ratio")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class SharpPoint:
    """One run's sharpness measurement."""

    run: Run
    values: dict[str, float]  #: measure label -> value ("top eigenvalue", "trace", "worst-case ρ=0.01", ...)
    dev: float | None  #: selection metric (fraction) at the measured checkpoint
    seconds: float | None
    hvps: float | None

    @property
    def key(self) -> tuple:
        r = self.run
        return (r.task, r.optimizer, r.beta1, r.rho, r.schedule, r.group_hash)


def _rho_sorted(d: dict) -> list[tuple[str, float | None]]:
    items = [(str(k), to_float(v)) for k, v in d.items()]
    return sorted(items, key=lambda kv: -(to_float(kv[0]) or 0.0))


def _measures(values: dict) -> dict[str, float]:
    out: dict[str, float | None] = {}
    eig = values.get("eigenvalue")
    if isinstance(eig, list):
        eig = eig[0] if eig else None
    if eig is None and isinstance(values.get("eigenvalues"), list) and values["eigenvalues"]:
        eig = values["eigenvalues"][0]
    out["top eigenvalue"] = to_float(eig)
    out["trace"] = to_float(values.get("trace"))
    for name, key in (("worst-case", "worst_case"), ("adaptive worst-case", "worst_case_adaptive")):
        if isinstance(values.get(key), dict):
            for rho, v in _rho_sorted(values[key]):
                out[f"{name} ρ={rho}"] = v
    return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


def sharpness_points(runs: Sequence[Run]) -> list[SharpPoint]:
    """Every run (completed or diverged) whose record has a usable ``sharpness.values`` block."""
    pts = []
    for r in runs:
        block = r.record.get("sharpness")
        if not isinstance(block, dict) or not isinstance(block.get("values"), dict):
            continue
        if r.status not in ("completed", "diverged"):
            continue
        vals = _measures(block["values"])
        if not vals:
            continue
        metric = TASKS[r.task].selection_metric
        metrics = r.best if block.get("checkpoint") == "best" or not r.final else r.final
        cost = block.get("cost") if isinstance(block.get("cost"), dict) else {}
        pts.append(
            SharpPoint(
                r, vals, metrics.get(metric), to_float(cost.get("seconds")), to_float(cost.get("hvp_count"))
            )
        )
    return pts


@dataclass
class ConfigRow:
    task: str
    optimizer: str
    beta1: float | None
    rho: float | None
    schedule: str
    group_hash: str  #: the identity without the seed: one configuration
    points: list[SharpPoint]
    values: dict[str, Summary | None] = field(default_factory=dict)
    dev: Summary | None = None
    seconds: Summary | None = None
    hvps: Summary | None = None

    @property
    def label(self) -> str:
        rho = "" if self.rho is None else f", ρ={self.rho:g}"
        return f"{method_name(self.optimizer)} (β1={_g(self.beta1)}{rho}, {self.schedule})"

    @property
    def flat(self) -> dict:
        """The flattened identity of the configuration (its first seed's)."""
        return self.points[0].run.flat

    @property
    def setting(self) -> str:
        return setting_text([p.run for p in self.points])


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


@dataclass
class SharpnessReport:
    points: list[SharpPoint]
    rows: list[ConfigRow]
    measures: list[str]  #: column order
    claims: list[str]  #: one line per claim, with the measured numbers


def _opt_order(k: str) -> int:
    keys = list(METHOD_NAMES)
    return keys.index(k) if k in keys else len(keys)


def _row_sort(key: tuple) -> tuple:
    t, o, b, rho, s, g = key
    return (
        TASK_ORDER.index(t),
        _opt_order(o),
        o,
        -(b if b is not None else -1),
        -(rho if rho is not None else -1),
        s,
        g,
    )


def _measure_sort(m: str) -> tuple:
    head = ("top eigenvalue", "trace")
    if m in head:
        return (head.index(m), 0.0, m)
    name, _, rho = m.partition(" ρ=")
    return (2 if name == "worst-case" else 3, -(to_float(rho) or 0.0), m)


def build_sharpness(runs: Sequence[Run]) -> SharpnessReport:
    pts = sharpness_points(runs)
    groups: dict[tuple, list[SharpPoint]] = defaultdict(list)
    for p in pts:
        groups[p.key].append(p)
    measures = sorted({m for p in pts for m in p.values}, key=_measure_sort)
    rows = []
    for key in sorted(groups, key=_row_sort):
        ps = sorted(groups[key], key=lambda p: (p.run.seed, p.run.rel))
        row = ConfigRow(*key, points=ps)
        row.values = {m: summarize([p.values[m] for p in ps if m in p.values]) for m in measures}
        row.dev = summarize([p.dev for p in ps if p.dev is not None])
        row.seconds = summarize([p.seconds for p in ps if p.seconds is not None])
        row.hvps = summarize([p.hvps for p in ps if p.hvps is not None])
        rows.append(row)
    return SharpnessReport(pts, rows, measures, _claims(rows, pts, measures))


def _cmp_line(title: str, pairs: list[tuple[ConfigRow, ConfigRow]], measure: str) -> str:
    """ "<title>: k of m comparisons lower (...)" on ``measure`` (first is expected lower); each pair
    names its two identities, and on synthetic data the verdict is "not testable"."""
    items, lower, runs = [], 0, []
    for a, b in pairs:
        va, vb = a.values.get(measure), b.values.get(measure)
        if va is None or vb is None:
            continue
        lower += va.mean < vb.mean
        runs += [p.run for p in (*a.points, *b.points)]
        items.append(
            f"{task_name(a.task)} {a.label} [{a.group_hash}] {va.mean:.4g} vs {b.label} [{b.group_hash}] "
            f"{vb.mean:.4g}"
        )
    if not items:
        return f"{title}: cannot be tested (no pair of configurations with {measure} measured)."
    verdict = "holds" if lower == len(items) else "does not hold" if lower == 0 else "holds partly"
    if any_synthetic(runs):
        verdict = f"not testable on synthetic data (the numbers alone would say: {verdict})"
    return (
        f"{title} ({measure}): {verdict}, lower in {lower} of {len(items)} comparisons — "
        + "; ".join(items)
        + "."
    )


def _baseline(r: ConfigRow) -> str | None:
    """The optimizer ``r``'s runs are compared with: the one-pass record of the base they ran on."""
    from adasam_glue.optim.registry import baseline_of

    return baseline_of(r.optimizer, r.flat.get(f"{OPTIM}.base"))


def _only_differ(a: ConfigRow, b: ConfigRow, allowed: tuple[str, ...]) -> bool:
    return not differs_outside(a.flat, b.flat, (SEED, *allowed))


def _claims(rows: list[ConfigRow], pts: list[SharpPoint], measures: list[str]) -> list[str]:
    if not rows:
        return [
            "No run record has a sharpness block (train with sharpness.enabled=true or run "
            "`python -m adasam_glue.sharpness RUN_DIR`), so the flatter-minima claims cannot be tested."
        ]
    measure = "top eigenvalue" if "top eigenvalue" in measures else measures[0]
    fam = []
    for r in rows:
        base = _baseline(r)
        b = next(
            (
                x
                for x in rows
                if x.task == r.task
                and x.optimizer == base
                and x.beta1 == r.beta1
                and _only_differ(r, x, (OPTIM,))
            ),
            None,
        )
        if b is not None:
            fam.append((r, b))
    sched = []
    for r in rows:
        if r.schedule == "constant" or not (r.schedule.startswith("batch") or r.schedule in DECAYING):
            continue
        c = next(
            (
                x
                for x in rows
                if x.task == r.task and x.schedule == "constant" and _only_differ(r, x, SCHEDULE_KEYS)
            ),
            None,
        )
        if c is not None:
            sched.append((r, c))
    lines = [
        _cmp_line(
            "SAM-family optimizers find flatter minima than their base optimizer (same task, β1, and "
            "runs that differ only in optimizer keys)",
            fam,
            measure,
        ),
        _cmp_line(
            "Increasing batch / decaying lr find flatter minima than a constant schedule (same task, and "
            "runs that differ only in the schedule keys)",
            sched,
            measure,
        ),
    ]
    corr = []
    for t in TASK_ORDER:
        tp = [p for p in pts if p.run.task == t and p.dev is not None and measure in p.values]
        groups: dict[str, list[SharpPoint]] = defaultdict(list)
        for p in tp:
            part = {k: v for k, v in p.run.flat.items() if k != SEED and not under(k, OPTIM)}
            part = {k: v for k, v in part.items() if not any(under(k, s) for s in SCHEDULE_KEYS)}
            groups[setting_hash(part)].append(p)
        for g in sorted(groups):
            gp = groups[g]
            name = task_name(t) + (
                f" [setting {g[:6]}: {setting_text([p.run for p in gp])}]" if len(groups) > 1 else ""
            )
            if len(gp) < 3:
                corr.append(f"{name}: {len(gp)} runs, too few for a rank correlation")
                continue
            rho_s = _spearman([p.values[measure] for p in gp], [p.dev for p in gp])
            if rho_s is None:
                corr.append(f"{name}: constant values, no rank correlation")
                continue
            word = (
                "lower sharpness went with a better dev metric"
                if rho_s < 0
                else ("lower sharpness went with a worse dev metric" if rho_s > 0 else "no monotone relation")
            )
            corr.append(f"{name}: Spearman r = {rho_s:+.2f} over {len(gp)} runs ({word})")
    lines.append(
        f"Sharpness vs dev metric ({measure} vs the selection metric, across the runs of one setting): "
        + ("; ".join(corr) if corr else "no task has a run with both measured")
        + "."
    )
    return lines


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


# ------------------------------------------------------------------------------------------- rendering
def _fmt(s: Summary | None) -> str:
    if s is None:
        return "—"
    return f"{s.mean:.4g}" + (f" ± {s.std:.2g}" if s.std is not None else "")


def _setting_tags(rep: SharpnessReport) -> dict[str, str]:
    """Setting text -> a short tag (a, b, ...) in order of first appearance."""
    tags: dict[str, str] = {}
    for r in rep.rows:
        tags.setdefault(r.setting, chr(ord("a") + len(tags)) if len(tags) < 26 else str(len(tags)))
    return tags


def render_sharpness_md(rep: SharpnessReport) -> str:
    synthetic = any_synthetic([p.run for p in rep.points])
    out = ["# Sharpness at the end of training" + (" — SYNTHETIC DATA" if synthetic else ""), ""]
    if synthetic:
        out += [f"> **{SYNTHETIC_BANNER}**", ""]
    if not rep.rows:
        out += [rep.claims[0], ""]
        return "\n".join(out)
    tags = _setting_tags(rep)
    out += [f"Setting {tag}: {text}." for text, tag in tags.items()] + [""]
    header = (
        ["Task", "Optimizer", "β1", "ρ", "Schedule", "n"]
        + rep.measures
        + ["dev metric ×100", "cost s", "HVPs", "setting", "identity"]
    )
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] * 5 + ["---:"] * (len(header) - 7) + ["---"] * 2) + "|")
    for r in rep.rows:
        dev = (
            f"{metric_label(TASKS[r.task].selection_metric)} "
            + _fmt(Summary(r.dev.mean * 100, None if r.dev.std is None else r.dev.std * 100, r.dev.n))
            if r.dev
            else "—"
        )
        out.append(
            "| "
            + " | ".join(
                [
                    task_name(r.task),
                    method_name(r.optimizer),
                    _g(r.beta1),
                    "—" if r.rho is None else f"{r.rho:g}",
                    r.schedule,
                    str(len(r.points)),
                ]
                + [_fmt(r.values.get(m)) for m in rep.measures]
                + [dev, _fmt(r.seconds), _fmt(r.hvps), tags[r.setting], r.group_hash]
            )
            + " |"
        )
    out += [
        "",
        "Cells: mean ± sample std (ddof=1) over the seeds of the configuration (one seed: mean only), "
        "4 significant digits. Top eigenvalue by power iteration, trace by Hutchinson, worst-case "
        "sharpness max over ‖δ‖ ≤ ρ of L(w+δ) − L(w) (adaptive: ASAM geometry), all on the task's fixed "
        "training subset. Dev metric: the selection metric at the measured checkpoint.",
        "",
        "## Claims",
        "",
    ]
    out += [f"- {c}" for c in rep.claims]
    return "\n".join(out) + "\n"


def render_sharpness_csv(rep: SharpnessReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = []
    for m in rep.measures:
        cols += [m, f"{m} std"]
    w.writerow(
        [
            "task",
            "optimizer",
            "beta1",
            "rho",
            "schedule",
            "n",
            *cols,
            "dev",
            "dev_std",
            "cost_seconds",
            "hvp_count",
            "identity",
            "setting",
        ]
    )
    for r in rep.rows:
        row = [
            r.task,
            r.optimizer,
            "" if r.beta1 is None else f"{r.beta1:g}",
            "" if r.rho is None else f"{r.rho:g}",
            r.schedule,
            len(r.points),
        ]
        for m in rep.measures:
            s = r.values.get(m)
            row += [
                "" if s is None else f"{s.mean:.6g}",
                "" if s is None or s.std is None else f"{s.std:.6g}",
            ]
        row += [
            "" if r.dev is None else f"{r.dev.mean:.6g}",
            "" if r.dev is None or r.dev.std is None else f"{r.dev.std:.6g}",
            "" if r.seconds is None else f"{r.seconds.mean:.6g}",
            "" if r.hvps is None else f"{r.hvps.mean:.6g}",
            r.group_hash,
            r.setting,
        ]
        w.writerow(row)
    return buf.getvalue()


def plot_sharpness(rep: SharpnessReport, out_dir: Path) -> list[Path]:
    """``sharpness_<task>``: each measure (x) vs the dev metric (y), one point per run; colour =
    optimizer, marker = schedule."""
    written = []
    schedules = sorted({p.run.schedule for p in rep.points})
    marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(schedules)}
    for t in TASK_ORDER:
        tp = [p for p in rep.points if p.run.task == t]
        if not tp:
            continue
        measures = [m for m in rep.measures if any(m in p.values for p in tp)]
        ncol = min(4, len(measures))
        nrow = math.ceil(len(measures) / ncol)
        metric = TASKS[t].selection_metric
        with matplotlib.rc_context(RC):
            fig = Figure(figsize=(3.3 * ncol, 2.9 * nrow + 0.8), layout="constrained")
            axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
            for ax, m in zip(axes, measures):
                for p in tp:
                    if m in p.values and p.dev is not None:
                        ax.scatter(
                            p.values[m],
                            p.dev * 100,
                            color=color(p.run.optimizer),
                            marker=marker[p.run.schedule],
                            s=28,
                            edgecolors="black",
                            linewidths=0.4,
                        )
                xs = [p.values[m] for p in tp if m in p.values]
                if xs and min(xs) > 0 and max(xs) / min(xs) > 100:
                    ax.set_xscale("log")
                unit = "(loss increase, nats)" if "worst" in m else "(loss curvature, nats / unit²)"
                ax.set_xlabel(f"{m} {unit}")
                ax.set_ylabel(f"dev {metric_label(metric)} (×100)")
                ax.set_title(m)
            for ax in axes[len(measures) :]:
                ax.set_axis_off()
            opts = sorted({p.run.optimizer for p in tp}, key=lambda k: (_opt_order(k), k))
            handles = [
                matplotlib.lines.Line2D(
                    [], [], ls="", marker="o", color=color(o), markeredgecolor="black", label=method_name(o)
                )
                for o in opts
            ]
            handles += [
                matplotlib.lines.Line2D(
                    [],
                    [],
                    ls="",
                    marker=marker[s],
                    color="0.6",
                    markeredgecolor="black",
                    label=f"schedule: {s}",
                )
                for s in schedules
                if any(p.run.schedule == s for p in tp)
            ]
            fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)))
            fig.suptitle(
                textwrap.fill(
                    f"{task_name(t)}: sharpness vs dev {metric_label(metric)}, one point per run. Setting: "
                    + setting_text([p.run for p in tp]),
                    width=max(45, 30 * ncol),
                )
            )
            written += save_figure(fig, out_dir, f"sharpness_{t}")
    return written
