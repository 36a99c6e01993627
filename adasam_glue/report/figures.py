"""Figures (matplotlib object API, no pyplot): ``speedup`` (paper Fig. 1, docs/algorithms.md §4.6),
``curves_<task>_beta<b>`` (Figs. 2-5, each optimizer at its table's rho), ``sharpness_<task>``.

Like with like (docs/algorithms.md §4.4): a figure never mixes settings (another setting of a task and
beta1 gets its own ``..._<setting hash>`` figure) and every title states the setting. Fixed metadata:
a rerun on the same records gives the same bytes.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.lines
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adasam_glue.identity import identity_hash
from adasam_glue.report.collect import dedupe, normalize_metrics, to_float, without
from adasam_glue.report.grouping import setting_of
from adasam_glue.report.palette import color, linestyle, method_name, metric_label, optimizer_rank, task_name
from adasam_glue.report.setting import setting_text
from adasam_glue.tasks import TASK_ORDER, TASKS

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,
}
SPEEDUP_TASKS = ("mrpc", "rte", "cola")
TARGET_MARGIN = 1.05  #: target loss = 1.05 × the highest of the per-batch minima of the smoothed loss
BATCH_COLORS = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#3f007d", "#54278f")
#: identity keys the runs of one speedup curve set may differ in (the lr is scaled with the batch)
SPEEDUP_FREE = ("config.seed", "config.task.batch_size", "config.optim.lr")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` with fixed metadata; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    with matplotlib.rc_context(RC):
        fig.savefig(paths[0], metadata={"Software": None})
        fig.savefig(paths[1], metadata=dict.fromkeys(("CreationDate", "ModDate", "Producer", "Creator")))
    return paths


def smooth(y: Sequence[float]) -> np.ndarray:
    """Trailing moving average over ``max(1, n // 20)`` points (NaNs ignored inside a window)."""
    y = np.asarray(y, dtype=np.float64)
    n, w = len(y), max(1, len(y) // 20)
    if w == 1 or n == 0:
        return y.copy()
    ok = np.isfinite(y)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    lo, hi = np.maximum(np.arange(n) + 1 - w, 0), np.arange(n) + 1
    cnt = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (cs[hi] - cs[lo]) / np.maximum(cnt, 1), np.nan)


def train_curve(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(updates, loss) of a record's training curve; non-finite losses are NaN."""
    pts = [
        (p.get("update"), to_float(p.get("loss")))
        for p in record.get("train_curve") or []
        if isinstance(p, dict)
    ]
    pts = [(int(u), math.nan if v is None else v) for u, v in pts if isinstance(u, (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    u, v = zip(*sorted(pts))
    return np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)


def mean_curve(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Smoothed training loss averaged over seeds on the updates they share: (updates, mean, min, max)."""
    curves = [(u, smooth(v)) for u, v in map(train_curve, runs.record) if len(u)]
    if not curves:
        return None
    n = min(len(u) for u, _ in curves)
    ys = np.stack([v[:n] for _, v in curves])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN, which is right
        return curves[0][0][:n], np.nanmean(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)


# --------------------------------------------------------------------------------------------- speedup
@dataclass
class SpeedupResult:
    """Updates to reach the target loss per (task, batch size), from the chosen runs."""

    source: str  #: how the runs were chosen (stated in the figure caption and the README)
    optimizer: str = "adasam"
    runs: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)  #: task -> batch -> runs
    target: dict[str, float] = field(default_factory=dict)  #: task -> target loss
    updates: dict[str, dict[int, float | None]] = field(default_factory=dict)  #: None: never reached

    @property
    def all_runs(self) -> list[pd.DataFrame]:
        return [rs for by_b in self.runs.values() for rs in by_b.values()]

    def ratio(self, task: str, big: int = 32, small: int = 16) -> float | None:
        u = self.updates.get(task, {})
        return u[big] / u[small] if u.get(big) and u.get(small) else None

    def statement(self) -> str:
        """The Figure 1 claim with the measured numbers (one sentence per task)."""
        if not self.runs:
            return "No run to measure the speedup from (no speedup experiment and no AdaSAM run)."
        parts = []
        for t, by_b in self.runs.items():
            bs, r = sorted(by_b), self.ratio(t)
            if len(bs) < 2:
                text = f"only batch size {bs[0]} was run, so the linear-speedup claim cannot be tested."
            elif r is not None:
                text = f"batch 32 needs {r:.2f}× the updates of batch 16 to reach loss {self.target[t]:.4g} "
                text += "(paper: about 0.5×, ideal linear speedup 0.5×)."
            else:
                have = ", ".join(str(b) for b in bs)
                text = f"batch sizes {have} were run; the 32-vs-16 ratio needs both to reach the target loss."
            parts.append(f"{task_name(t)}: {text}")
        return " ".join(parts)


def _speedup_candidates(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs Figure 1 reads: the speedup experiment's (else AdaSAM's), without duplicates."""
    done = frame[frame.status.eq("completed") & frame.batch_size.map(bool).astype(bool)]
    done = without(done, dedupe(done, prefer="speedup"))
    sp = done[done.experiment.eq("speedup")]
    if len(sp):
        opt = "adasam" if sp.optimizer.eq("adasam").any() else sorted(set(sp.optimizer))[0]
        return sp[sp.optimizer.eq(opt)], f"runs of the speedup experiment ({method_name(opt)})"
    plain = ~done.config.map(lambda c: bool((c.get("trainer") or {}).get("batch_schedule")))
    ada = done[done.optimizer.eq("adasam") & plain]
    return ada, "no speedup experiment: completed AdaSAM runs grouped by (task, batch size)"


def compute_speedup(frame: pd.DataFrame) -> SpeedupResult:
    """Pick the runs for Figure 1 and measure updates-to-target-loss per (task, batch size).

    Within a task, runs are grouped by identity without seed, batch size and lr (docs/algorithms.md
    §4.6); the group covering the most batch sizes (then most runs, then the smallest hash) is used.
    """
    cands, source = _speedup_candidates(frame)
    res = SpeedupResult(source, cands.optimizer.iloc[0] if len(cands) else "adasam")
    present = set(cands.task)
    for t in [t for t in SPEEDUP_TASKS if t in present] or [t for t in TASK_ORDER if t in present]:
        rs = cands[cands.task.eq(t)]
        key = rs.identity.map(lambda i: identity_hash(i, exclude=SPEEDUP_FREE))
        best = max(sorted(set(key)), key=lambda k: (rs.batch_size[key == k].nunique(), int((key == k).sum())))
        group = rs[key == best].sort_values("rel")
        by_b = {b: group[group.batch_size.eq(b)] for b in sorted(set(group.batch_size))}
        curves = {b: mean_curve(g) for b, g in by_b.items()}
        curves = {b: c for b, c in curves.items() if c is not None and np.isfinite(c[1]).any()}
        if not curves:
            continue
        res.runs[t] = by_b
        target = res.target[t] = TARGET_MARGIN * max(float(np.nanmin(c[1])) for c in curves.values())
        hits = {b: np.nonzero(c[1] <= target)[0] for b, c in curves.items()}
        res.updates[t] = {
            b: float(curves[b][0][hits[b][0]]) if b in hits and len(hits[b]) else None for b in by_b
        }
    return res


def _centered(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def plot_speedup(res: SpeedupResult, out_dir: Path) -> list[Path]:
    """``speedup.png``/``.pdf``: loss curves per batch size (top), updates to target vs batch (bottom)."""
    with matplotlib.rc_context(RC):
        tasks = list(res.runs) or ["(none)"]
        fig = Figure(figsize=(4.0 * len(tasks), 7.0), layout="constrained")
        axes = fig.subplots(2, len(tasks), squeeze=False)
        for j, t in enumerate(tasks):
            top, bot = axes[0][j], axes[1][j]
            if t not in res.runs:
                for ax in (top, bot):
                    _centered(ax, "no runs")
                    ax.set_axis_off()
                continue
            for i, (b, rs) in enumerate(res.runs[t].items()):
                c = mean_curve(rs)
                if c is None:
                    continue
                col = BATCH_COLORS[i % len(BATCH_COLORS)]
                top.plot(c[0], c[1], color=col, lw=1.2, label=f"batch {b} (n={len(rs)})")
                if len(rs) > 1:
                    top.fill_between(c[0], c[2], c[3], color=col, alpha=0.15, lw=0)
            top.axhline(res.target[t], color="0.4", ls=":", lw=1, label=f"target loss {res.target[t]:.3g}")
            top.set(title=f"{task_name(t)}: training loss (smoothed)", xlabel="optimizer updates")
            top.set_ylabel("training loss (cross-entropy / MSE, nats)")
            top.legend(loc="upper right")
            pts = [(b, u) for b, u in res.updates[t].items() if u]
            if pts:
                bs, us = zip(*pts)
                bot.plot(
                    bs, us, "o-", color=color(res.optimizer), label=f"measured ({method_name(res.optimizer)})"
                )
                b0, u0 = pts[0]
                grid = np.asarray(sorted({*bs, *res.runs[t]}), dtype=float)
                bot.plot(grid, u0 * b0 / grid, "--", color="0.3", label="ideal linear speedup (∝ 1/batch)")
                bot.set_xscale("log", base=2)
                bot.set_yscale("log")
                bot.set_xticks(grid, [f"{int(b)}" for b in grid])
            else:
                _centered(bot, "target loss not reached")
            r = res.ratio(t)
            note = (
                f"U(32)/U(16) = {r:.2f} (ideal 0.50)" if r is not None
                else "one batch size only: claim not testable" if len(res.runs[t]) < 2
                else "U(32)/U(16): n/a"
            )  # fmt: skip
            bot.set_title(f"{task_name(t)}: updates to reach loss {res.target[t]:.3g}\n{note}")
            bot.set(
                xlabel="batch size (samples per update, log2)", ylabel="optimizer updates to target (log)"
            )
            bot.legend(loc="upper right")
        title = "Speedup with batch size (paper Fig. 1). Runs: " + res.source
        title += ". Setting: " + setting_text(pd.concat(res.all_runs)) if res.all_runs else ""
        fig.suptitle(textwrap.fill(title, width=42 * len(tasks)))
        return save_figure(fig, out_dir, "speedup")


# ---------------------------------------------------------------------------------------------- curves
def eval_curve(runs: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean over seeds of ``metric`` (×100) at each eval update that has a value."""
    acc: dict[int, list[float]] = {}
    for rec in runs.record:
        for p in rec.get("eval_curve") or []:
            if not isinstance(p, dict) or not isinstance(p.get("metrics"), dict):
                continue
            v = to_float(normalize_metrics(p["metrics"]).get(metric))
            if v is not None and math.isfinite(v) and isinstance(p.get("update"), (int, float)):
                acc.setdefault(int(p["update"]), []).append(v * 100)
    if not acc:
        return None
    us = sorted(acc)
    return np.asarray(us, dtype=float), np.asarray([np.mean(acc[u]) for u in us])


def curve_groups(results: Sequence) -> dict[tuple[str, float, str], list]:
    """(task, beta1, setting hash) -> the present ``(row, cell)`` of that setting over all tables of that
    beta1: one figure holds only cells whose runs differ in optimizer keys alone."""
    out: dict[tuple[str, float, str], list] = {}
    for res in results:
        for (row, t), cell in res.cells.items():
            if cell.present:
                key = (t, res.spec.beta1, setting_of(cell.chosen.completed.iloc[:1]).iloc[0])
                out.setdefault(key, []).append((row, cell))
    return out


def plot_curves(results: Sequence, out_dir: Path) -> list[Path]:
    """``curves_<task>_beta<b>`` for the setting with the most runs of that (task, beta1), then
    ``..._<setting hash>`` for the others."""
    written, order = [], ("sgd", "sam", "amsgrad", "adasam")
    groups = curve_groups(results)
    stems = {}
    for t, beta1 in dict.fromkeys(k[:2] for k in groups):
        keys = sorted(
            (k for k in groups if k[:2] == (t, beta1)), key=lambda k: (-sum(c.n for _, c in groups[k]), k[2])
        )
        stems |= {
            k: f"curves_{t}_beta{beta1:g}" + ("" if i == 0 else f"_{k[2][:6]}") for i, k in enumerate(keys)
        }
    for key in sorted(groups, key=lambda k: (TASK_ORDER.index(k[0]), -k[1], stems[k])):
        t, beta1, _ = key
        metric = TASKS[t].selection_metric
        rank = lambda rc: (order.index(rc[0].method) if rc[0].method in order else len(order), rc[0].label)  # noqa: E731
        items = sorted(dict(groups[key]).items(), key=rank)
        setting = setting_text(pd.concat([c.chosen.completed for _, c in items]))
        with matplotlib.rc_context(RC):
            fig = Figure(figsize=(10.0, 4.3), layout="constrained")
            ax_l, ax_m = fig.subplots(1, 2)
            for row, cell in items:
                m, rs = row.method, cell.chosen.completed
                label = row.label + ("" if cell.rho is None else f" (ρ={cell.rho:g})") + f", n={len(rs)}"
                c = mean_curve(rs)
                if c is not None:
                    ax_l.plot(c[0], c[1], color=color(m), ls=linestyle(m), lw=1.4, label=label)
                    if len(rs) > 1:
                        ax_l.fill_between(c[0], c[2], c[3], color=color(m), alpha=0.15, lw=0)
                e = eval_curve(rs, metric)
                if e is not None:
                    ax_m.plot(
                        e[0], e[1], marker="o", ms=3, color=color(m), ls=linestyle(m), lw=1.4, label=label
                    )
            fig.suptitle(textwrap.fill("Setting: " + setting, width=120))
            ax_l.set_title(f"{task_name(t)}, β1 = {beta1:g}: training loss (smoothed; band = seed range)")
            ax_l.set(xlabel="optimizer updates", ylabel="training loss (nats)")
            ax_m.set_title(f"{task_name(t)}, β1 = {beta1:g}: dev {metric_label(metric)} (mean over seeds)")
            ax_m.set(xlabel="optimizer updates", ylabel=f"dev {metric_label(metric)} (×100)")
            for ax in (ax_l, ax_m):
                if ax.get_lines():
                    ax.legend(loc="best")
                else:
                    _centered(ax, "no curve recorded")
            written += save_figure(fig, out_dir, stems[key])
    return written


# ------------------------------------------------------------------------------------------- sharpness
def plot_sharpness(rep, out_dir: Path) -> list[Path]:
    """``sharpness_<task>``: each measure (x) vs the dev metric (y), one point per run; colour = optimizer,
    marker = schedule (:class:`adasam_glue.report.sharpness_table.SharpnessReport`)."""
    written = []
    pts = list(rep.frame.itertuples())
    schedules = sorted({p.schedule for p in pts})
    marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(schedules)}
    for t in TASK_ORDER:
        tp = [p for p in pts if p.task == t]
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
                    if m in p.values and pd.notna(p.dev):
                        ax.scatter(
                            p.values[m], p.dev * 100, color=color(p.optimizer), marker=marker[p.schedule],
                            s=28, edgecolors="black", linewidths=0.4,
                        )  # fmt: skip
                xs = [p.values[m] for p in tp if m in p.values]
                if xs and min(xs) > 0 and max(xs) / min(xs) > 100:
                    ax.set_xscale("log")
                unit = "(loss increase, nats)" if "worst" in m else "(loss curvature, nats / unit²)"
                ax.set(xlabel=f"{m} {unit}", ylabel=f"dev {metric_label(metric)} (×100)", title=m)
            for ax in axes[len(measures) :]:
                ax.set_axis_off()
            handle = lambda mk, c, label: matplotlib.lines.Line2D(
                [], [], ls="", marker=mk, color=c, markeredgecolor="black", label=label
            )  # noqa: E731, E501
            opts = sorted({p.optimizer for p in tp}, key=optimizer_rank)
            handles = [handle("o", color(o), method_name(o)) for o in opts]
            shown = [s for s in schedules if any(p.schedule == s for p in tp)]
            handles += [handle(marker[s], "0.6", f"schedule: {s}") for s in shown]
            fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)))
            title = f"{task_name(t)}: sharpness vs dev {metric_label(metric)}, one point per run. Setting: "
            title += setting_text(rep.frame[rep.frame.task.eq(t)])
            fig.suptitle(textwrap.fill(title, width=max(45, 30 * ncol)))
            written += save_figure(fig, out_dir, f"sharpness_{t}")
    return written
