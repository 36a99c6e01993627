"""The lr-tuning stages (``lr_tuning.md``): per (tuning experiment, task, optimizer) the grid, each point's
dev metric, the selected lr and whether it sits at the edge of its grid (the best lr may lie outside).
Read from the ``tuned_lr.json`` files of :mod:`adasam_glue.experiments.tuned_lr`; paths relative to the
runs tree, so a rebuild elsewhere is byte-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adasam_glue.experiments.tuned_lr import read_selections
from adasam_glue.report.palette import g_or, method_name, metric_label, task_name
from adasam_glue.report.tables import md_table

__all__ = ["render_lr_tuning"]


def _pct(x: Any) -> str:
    return "—" if x is None else f"{float(x) * 100:.2f}"


def _edge(sel: dict[str, Any]) -> str:
    edge = sel.get("edge")
    if sel.get("flat"):
        return "no: **every lr ties** (the grid shows no effect of lr; the tie rule took the smallest)"
    if not sel.get("at_edge"):
        tied = sel.get("tied") or []
        return "no" + (f" (ties {', '.join(f'{x:g}' for x in tied)})" if tied else "")
    what = {"low": "lowest", "high": "highest", "both": "only"}.get(str(edge), str(edge))
    return f"**yes: the {what} lr of the grid**"


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return Path(path).name


def render_lr_tuning(runs_dir: str | Path) -> str:
    """The ``lr_tuning.md`` page (deterministic: no times, no absolute paths)."""
    root = Path(runs_dir)
    sels = read_selections(root)
    out = [
        "# lr tuning",
        "",
        "SGD and SAM have no recipe lr: a tuning stage (`conf/experiment/*_tune.yaml`) trains a grid of lrs "
        "on one seed, and `python -m adasam_glue.experiments select-lr <stage>` picks per task and optimizer "
        "the lr with the best dev value of the task's selection metric at the best checkpoint (a diverged "
        "point never wins; ties go to the smaller lr). Tables 2/4 train with that lr. An lr at the edge "
        "of its grid is flagged: the best lr may lie outside the grid, so extend it there and rerun the stage. "
        "The smallest lr tying a larger one is no edge (the best values reach into the grid); a grid on "
        "which every lr ties is marked: it shows no effect of lr on the dev metric (e.g. every run predicts "
        "the majority class), so its selection is the tie rule's, not a tuned value.",
        "",
    ]
    if not sels:
        return "\n".join([*out, "No tuning stage has been selected in this runs tree.", ""])
    rows = [
        [str(s.get("tuning_experiment")), task_name(s.get("task", "")), method_name(s.get("optimizer", ""))]
        + [", ".join(f"{g:g}" for g in s.get("grid", [])), g_or(s.get("lr"), "—")]
        + [f"{metric_label(s.get('selection_metric', ''))} {_pct(s.get('metric'))}", _edge(s)]
        for s in sels
    ]
    out += md_table("stage|task|optimizer|grid|selected lr|dev metric (×100)|at the edge".split("|"), rows)
    for s in sels:
        tuned_at = ", ".join(f"{k} {v}" for k, v in (s.get("tuned_at") or {}).items() if v is not None)
        seeds = ", ".join(str(x) for x in s.get("seeds", []))
        out += [
            "",
            f"## {s.get('tuning_experiment')}: {task_name(s.get('task', ''))} / "
            f"{method_name(s.get('optimizer', ''))}",
            "",
            f"Selection metric {metric_label(s.get('selection_metric', ''))} on the dev set, seed(s) {seeds}; "
            f"tuned at {tuned_at or 'the recipe'}; file `{_rel(s['path'], root)}`.",
            "",
        ]
        rows = []
        for p in s.get("points", []):
            per_seed = "; ".join(
                f"seed {q.get('seed')}: {q.get('status')} {_pct(q.get('metric'))} (best at update {q.get('best_update')})"
                for q in p.get("seeds", [])
            )
            chosen = "✓" if s.get("lr") is not None and p.get("lr") == s.get("lr") else ""
            rows.append([f"{p.get('lr'):g}", _pct(p.get("metric")), str(p.get("status")), per_seed, chosen])
        out += md_table("lr|dev metric (×100)|status|seeds|selected".split("|"), rows)
    return "\n".join(out) + "\n"
