"""Figures of the report (matplotlib, object API with the Agg canvas: no pyplot, no global backend).

- ``speedup``: the paper's Figure 1 (training loss vs updates for batch 4/8/16/32 on MRPC, RTE, CoLA,
  and the updates needed to reach a target loss vs batch size on log-log axes with the ideal
  linear-speedup line; the measured batch-32 / batch-16 ratio is stated).
- ``curves_<task>_beta<b>``: training loss and dev metric vs updates for SGD, SAM, AMSGrad, AdaSAM at
  one beta1 (the paper's Figures 2-5), each optimizer at the rho its table selected.

Like with like (docs/algorithms.md §4.4): a figure never mixes settings. The speedup runs of a task are
runs identical but for seed, batch size and the lr scaled with it; the curves of one figure are table
cells whose runs differ only in optimizer keys (a second setting of the same task and beta1 gets its own
figure, ``curves_<task>_beta<b>_<setting hash>``). Every title states the setting (model, data, updates,
precision; synthetic data in capitals).

Every figure is written as PNG and PDF with fixed metadata (no dates, no software version), so a rerun
on the same records gives the same bytes. Colours come from :mod:`adasam_glue.report.palette`.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from adasam_glue.identity import identity_hash
from adasam_glue.report.collect import Run, normalize_metrics, to_float
from adasam_glue.report.grouping import non_optim_part, setting_hash
from adasam_glue.report.palette import color, linestyle, method_name, metric_label, task_name
from adasam_glue.report.setting import setting_text
from adasam_glue.report.tables import Cell, Row, TableResult
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = [
    "SPEEDUP_TASKS",
    "SpeedupResult",
    "compute_speedup",
    "plot_curves",
    "plot_speedup",
    "save_figure",
    "smooth",
]

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
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
PNG_METADATA = {"Software": None}
SPEEDUP_TASKS = ("mrpc", "rte", "cola")
TARGET_MARGIN = 1.05  #: target loss = 1.05 × the highest of the per-batch minima of the smoothed loss
BATCH_COLORS = ("#9ecae1", "#4292c6", "#08519c", "#08306b", "#3f007d", "#54278f")
#: identity keys the runs of one speedup curve set may differ in (besides nothing else)
SPEEDUP_FREE = ("config.seed", "config.task.batch_size", "config.optim.lr")


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` with fixed metadata; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    with matplotlib.rc_context(RC):
        fig.savefig(paths[0], metadata=PNG_METADATA)
        fig.savefig(paths[1], metadata=PDF_METADATA)
    return paths


def smooth(y: Sequence[float]) -> np.ndarray:
    """Trailing moving average over ``max(1, n // 20)`` points (NaNs ignored inside a window)."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    w = max(1, n // 20)
    if w == 1 or n == 0:
        return y.copy()
    ok = np.isfinite(y)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    lo = np.maximum(np.arange(n) + 1 - w, 0)
    hi = np.arange(n) + 1
    cnt = cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (cs[hi] - cs[lo]) / np.maximum(cnt, 1), np.nan)


def train_curve(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(updates, loss) of a run's training curve; non-finite losses are NaN."""
    pts = [
        (p.get("update"), to_float(p.get("loss")))
        for p in run.record.get("train_curve") or []
        if isinstance(p, dict)
    ]
    pts = [(int(u), math.nan if v is None else v) for u, v in pts if isinstance(u, (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0)
    u, v = zip(*sorted(pts))
    return np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)


def mean_curve(runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Smoothed training loss averaged over seeds on the updates they share: (updates, mean, min, max)."""
    curves = [train_curve(r) for r in runs]
    curves = [(u, smooth(v)) for u, v in curves if len(u)]
    if not curves:
        return None
    n = min(len(u) for u, _ in curves)
    u = curves[0][0][:n]
    ys = np.stack([v[:n] for _, v in curves])
    with np.errstate(all="ignore"), _quiet():
        return u, np.nanmean(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)


class _quiet:
    """Silence numpy's all-NaN-slice RuntimeWarnings (an all-NaN column stays NaN, which is right)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


# --------------------------------------------------------------------------------------------- speedup
@dataclass
class SpeedupResult:
    """Updates to reach the target loss per (task, batch size), from the chosen runs."""

    source: str  #: how the runs were chosen (stated in the figure caption and the README)
    optimizer: str = "adasam"
    runs: dict[str, dict[int, list[Run]]] = field(default_factory=dict)  #: task -> batch -> runs
    target: dict[str, float] = field(default_factory=dict)  #: task -> target loss
    updates: dict[str, dict[int, float | None]] = field(default_factory=dict)  #: None: never reached

    def ratio(self, task: str, big: int = 32, small: int = 16) -> float | None:
        u = self.updates.get(task, {})
        if u.get(big) and u.get(small):
            return u[big] / u[small]
        return None

    def statement(self) -> str:
        """The Figure 1 claim with the measured numbers (one sentence per task)."""
        if not self.runs:
            return "No run to measure the speedup from (no speedup experiment and no AdaSAM run)."
        parts = []
        for t, by_b in self.runs.items():
            bs = sorted(by_b)
            r = self.ratio(t)
            if len(bs) < 2:
                parts.append(
                    f"{task_name(t)}: only batch size {bs[0]} was run, so the linear-speedup claim "
                    "cannot be tested."
                )
            elif r is not None:
                parts.append(
                    f"{task_name(t)}: batch 32 needs {r:.2f}× the updates of batch 16 to reach loss "
                    f"{self.target[t]:.4g} (paper: about 0.5×, ideal linear speedup 0.5×)."
                )
            else:
                have = ", ".join(str(b) for b in bs)
                parts.append(
                    f"{task_name(t)}: batch sizes {have} were run; the 32-vs-16 ratio needs both "
                    "to reach the target loss."
                )
        return " ".join(parts)


def _speedup_candidates(runs: Sequence[Run]) -> tuple[list[Run], str]:
    """The runs Figure 1 reads: the speedup experiment's (else AdaSAM's), without duplicates."""
    from adasam_glue.report.collect import dedupe

    done = [r for r in runs if r.completed and r.batch_size]
    dropped = {d.rel for d, _ in dedupe(done, prefer="speedup")}
    done = [r for r in done if r.rel not in dropped]
    sp = [r for r in done if r.experiment == "speedup"]
    if sp:
        if any(r.optimizer == "adasam" for r in sp):
            return [r for r in sp if r.optimizer == "adasam"], "runs of the speedup experiment (AdaSAM)"
        opt = sorted({r.optimizer for r in sp})[0]
        return [r for r in sp if r.optimizer == opt], f"runs of the speedup experiment ({method_name(opt)})"
    ada = [
        r
        for r in done
        if r.optimizer == "adasam" and not (r.config.get("trainer") or {}).get("batch_schedule")
    ]
    return ada, "no speedup experiment: completed AdaSAM runs grouped by (task, batch size)"


def compute_speedup(runs: Sequence[Run]) -> SpeedupResult:
    """Pick the runs for Figure 1 and measure updates-to-target-loss per (task, batch size).

    Within a task, runs are grouped by identity without seed, batch size and lr (the speedup study
    scales the lr with the batch, docs/algorithms.md §4.6); the group covering the most batch sizes
    (then most runs, then the smallest hash) is used, so batch size is the only variable.
    """
    cands, source = _speedup_candidates(runs)
    res = SpeedupResult(source, cands[0].optimizer if cands else "adasam")
    by_task: dict[str, list[Run]] = defaultdict(list)
    for r in cands:
        by_task[r.task].append(r)
    tasks = [t for t in SPEEDUP_TASKS if t in by_task] or [t for t in TASK_ORDER if t in by_task]
    for t in tasks:
        groups: dict[str, list[Run]] = defaultdict(list)
        for r in by_task[t]:
            groups[identity_hash(r.identity, exclude=SPEEDUP_FREE)].append(r)
        key = max(sorted(groups), key=lambda k: (len({r.batch_size for r in groups[k]}), len(groups[k])))
        by_b: dict[int, list[Run]] = defaultdict(list)
        for r in sorted(groups[key], key=lambda r: r.rel):
            by_b[r.batch_size].append(r)
        curves = {b: mean_curve(rs) for b, rs in sorted(by_b.items())}
        curves = {b: c for b, c in curves.items() if c is not None and np.isfinite(c[1]).any()}
        if not curves:
            continue
        res.runs[t] = dict(sorted(by_b.items()))
        target = TARGET_MARGIN * max(float(np.nanmin(c[1])) for c in curves.values())
        res.target[t] = target
        res.updates[t] = {}
        for b in sorted(by_b):
            c = curves.get(b)
            hit = None if c is None else np.nonzero(c[1] <= target)[0]
            res.updates[t][b] = float(c[0][hit[0]]) if hit is not None and len(hit) else None
    return res


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
                    ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
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
            top.set_title(f"{task_name(t)}: training loss (smoothed)")
            top.set_xlabel("optimizer updates")
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
                bot.text(
                    0.5, 0.5, "target loss not reached", ha="center", va="center", transform=bot.transAxes
                )
            r = res.ratio(t)
            note = (
                f"U(32)/U(16) = {r:.2f} (ideal 0.50)"
                if r is not None
                else "one batch size only: claim not testable"
                if len(res.runs[t]) < 2
                else "U(32)/U(16): n/a"
            )
            bot.set_title(f"{task_name(t)}: updates to reach loss {res.target[t]:.3g}\n{note}")
            bot.set_xlabel("batch size (samples per update, log2)")
            bot.set_ylabel("optimizer updates to target (log)")
            bot.legend(loc="upper right")
        runs = [r for by_b in res.runs.values() for rs in by_b.values() for r in rs]
        title = "Speedup with batch size (paper Fig. 1). Runs: " + res.source
        title += ". Setting: " + setting_text(runs) if runs else ""
        fig.suptitle(textwrap.fill(title, width=42 * len(tasks)))
        return save_figure(fig, out_dir, "speedup")


# ---------------------------------------------------------------------------------------------- curves
def eval_curve(runs: Sequence[Run], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean over seeds of ``metric`` (×100) at each eval update that has a value."""
    acc: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        for p in r.record.get("eval_curve") or []:
            if not isinstance(p, dict) or not isinstance(p.get("metrics"), dict):
                continue
            v = to_float(normalize_metrics(p["metrics"]).get(metric))
            if v is not None and math.isfinite(v) and isinstance(p.get("update"), (int, float)):
                acc[int(p["update"])].append(v * 100)
    if not acc:
        return None
    us = sorted(acc)
    return np.asarray(us, dtype=float), np.asarray([np.mean(acc[u]) for u in us])


def curve_groups(results: Sequence[TableResult]) -> dict[tuple[str, float, str], list[tuple[Row, Cell]]]:
    """(task, beta1, setting hash) -> the present cells of that setting, over all tables of that beta1.

    The setting hash is that of the cell's identity without seed and optimizer keys, so one figure holds
    only cells whose runs differ in optimizer keys alone (Table 1's and Table 2's unmarked rows share a
    figure when their settings are equal, and get one figure each when they are not).
    """
    out: dict[tuple[str, float, str], list[tuple[Row, Cell]]] = defaultdict(list)
    for res in results:
        for row in res.rows:
            for t in TASK_ORDER:
                cell = res.row_cell(row, t)
                if cell.present:
                    key = setting_hash(non_optim_part(cell.chosen.completed[0].flat))
                    out[(t, res.spec.beta1, key)].append((row, cell))
    return dict(out)


def curve_stems(groups: dict[tuple[str, float, str], list[tuple[Row, Cell]]]) -> dict[tuple, str]:
    """File stem per group: ``curves_<task>_beta<b>`` for the setting with the most runs of that (task,
    beta1), then ``..._<setting hash>`` for the others."""
    by_tb: dict[tuple[str, float], list[tuple[str, float, str]]] = defaultdict(list)
    for key in groups:
        by_tb[key[:2]].append(key)
    stems = {}
    for (t, beta1), keys in by_tb.items():
        keys.sort(key=lambda k: (-sum(c.n for _, c in groups[k]), k[2]))
        for i, k in enumerate(keys):
            stems[k] = f"curves_{t}_{beta_tag(beta1)}" + ("" if i == 0 else f"_{k[2][:6]}")
    return stems


def beta_tag(beta1: float) -> str:
    return f"beta{beta1:g}"


def plot_curves(results: Sequence[TableResult], out_dir: Path) -> list[Path]:
    """``curves_<task>_beta<b>[_<setting>]`` for every (task, beta1, setting) with a present cell."""
    written = []
    order = ("sgd", "sam", "amsgrad", "adasam")
    groups = curve_groups(results)
    stems = curve_stems(groups)
    for key in sorted(groups, key=lambda k: (TASK_ORDER.index(k[0]), -k[1], stems[k])):
        t, beta1, _ = key
        metric = TASKS[t].selection_metric
        items = sorted(
            dict(groups[key]).items(),
            key=lambda rc: (order.index(rc[0].method) if rc[0].method in order else len(order), rc[0].label),
        )
        setting = setting_text([r for _, c in items for r in c.chosen.completed])
        with matplotlib.rc_context(RC):
            fig = Figure(figsize=(10.0, 4.3), layout="constrained")
            ax_l, ax_m = fig.subplots(1, 2)
            for row, cell in items:
                m = row.method
                rs = cell.chosen.completed
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
            ax_l.set_xlabel("optimizer updates")
            ax_l.set_ylabel("training loss (nats)")
            ax_m.set_title(f"{task_name(t)}, β1 = {beta1:g}: dev {metric_label(metric)} (mean over seeds)")
            ax_m.set_xlabel("optimizer updates")
            ax_m.set_ylabel(f"dev {metric_label(metric)} (×100)")
            for ax in (ax_l, ax_m):
                if ax.get_lines():
                    ax.legend(loc="best")
                else:
                    ax.text(0.5, 0.5, "no curve recorded", ha="center", va="center", transform=ax.transAxes)
            written += save_figure(fig, out_dir, stems[key])
    return written
