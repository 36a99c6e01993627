"""What ``reproduce-all --dry-run`` prints about a plan: the run lines, counts, GPU-hours, where each lr
comes from (tuned, pending, placeholder), disk for saved models, and precision.

The plan itself (``PlannedRun``, ``Block``) is built in :mod:`adasam_glue.experiments.plan`; this module only
turns it into lines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adasam_glue.experiments import tuned_lr as tl

if TYPE_CHECKING:
    from adasam_glue.experiments.plan import Block, PlannedRun

__all__ = [
    "PAPER_PRECISION",
    "SECONDS_PER_SAMPLE_PASS",
    "disk_lines",
    "lr_lines",
    "precision_lines",
    "print_plan",
    "summary_lines",
]

#: The paper's precision (fairseq, fp16), stated next to each experiment's ``trainer.mixed_precision``.
PAPER_PRECISION = "fp16"

#: GPU-hours model: seconds per training sample per forward+backward pass, RoBERTa-large (355M) on one
#: A100 80GB in fp16/bf16 with dynamic padding (cost ~ the padded length of the task's batches). Assumed,
#: not measured here (no GPU): about 5 ms per 128-token sample, scaled by each task's typical padded
#: length (CoLA ~25 tokens ... RTE ~150). A run costs updates x batch x passes x this (two passes per
#: update for the SAM family), evaluation and checkpointing not counted.
SECONDS_PER_SAMPLE_PASS = {
    "mnli": 0.0030,
    "qnli": 0.0040,
    "qqp": 0.0025,
    "rte": 0.0060,
    "sst2": 0.0020,
    "mrpc": 0.0035,
    "cola": 0.0015,
    "stsb": 0.0025,
}


# ------------------------------------------------------------------------------------------- reporting
def summary_lines(blocks: Sequence[Block]) -> list[str]:
    runs = [r for b in blocks for r in b.runs]
    per_exp: dict[str, list[PlannedRun]] = {}
    for r in runs:
        per_exp.setdefault(r.experiment, []).append(r)

    def stats(rs: list[PlannedRun]) -> str:
        done = sum(r.done for r in rs)
        diverged = sum(r.status == "diverged" for r in rs)
        todo = [r for r in rs if r.to_do]
        resume = sum(r.status in ("preempted", "running", "failed") for r in todo)
        return (
            f"{len(rs)} runs, {done} done, {diverged} diverged, {len(todo)} to do ({resume} with a record), "
            f"{sum(r.gpu_hours for r in todo):.1f} of {sum(r.gpu_hours for r in rs):.1f} GPU-hours to do"
        )

    def role(name: str) -> str:
        users = sorted({r.experiment for r in runs if r.tuned_by == name})
        return (
            f" (lr-tuning stage of {', '.join(users)})"
            if users
            else " (lr-tuning stage)"
            if tl.is_tuning_experiment(name)
            else ""
        )

    lines = [f"summary: {stats(runs)}"]
    lines += [f"  {name}{role(name)}: {stats(rs)}" for name, rs in per_exp.items()]
    lines += lr_lines(runs)
    lines += disk_lines(runs)
    lines += precision_lines(runs)
    lines.append(
        "  GPU-hours assume RoBERTa-large on one A100 (fp16/bf16): updates x batch x passes x seconds per sample "
        "pass ("
        + ", ".join(f"{t} {s * 1000:g} ms" for t, s in SECONDS_PER_SAMPLE_PASS.items())
        + "); 2 passes per update for the SAM family; eval not counted"
    )
    lines.append(
        "  done = <run dir>/record.json with status completed; diverged runs are skipped on rerun too; "
        "run dir = <results_dir>/runs/<experiment>/<task>/<optim>/<params>/seed<k>"
    )
    return lines


def lr_lines(runs: Sequence[PlannedRun]) -> list[str]:
    """Where the lrs come from: the tuning stage (selected / pending), its grids, and any placeholder."""
    lines = []
    tuned = [r for r in runs if r.tuned_by]
    if tuned:
        pending = [r for r in tuned if r.pending_lr]
        stages = ", ".join(dict.fromkeys(r.tuned_by for r in tuned))
        users = ", ".join(dict.fromkeys(r.experiment for r in tuned))
        lines.append(
            f"  lr: {len(tuned)} runs ({users}) take optim.lr from the lr-tuning stage ({stages}): "
            f"{len(tuned) - len(pending)} selected, {len(pending)} wait for the selection"
        )
    edge = {
        (r.tuned_lr_file, r.lr)
        for r in tuned
        if r.lr is not None and r.tuned_lr_file is not None and _selection(r.tuned_lr_file).get("at_edge")
    }
    for path, lr in sorted(edge, key=str):
        sel = _selection(path)
        lines.append(
            f"  warning: tuned lr at the {sel.get('edge')} edge of its grid: {sel.get('task')}/{sel.get('optimizer')} "
            f"lr={lr:g} of {sel.get('grid')} ({path}); extend the grid there and rerun the tuning stage"
        )
    placeholder = [r for r in runs if r.lr_source == "placeholder"]
    if placeholder:
        where = sorted(
            {f"{r.experiment} {r.task}/{r.optim} (conf/untuned_lr/{r.optim}.yaml)" for r in placeholder}
        )
        lines.append(
            f"  warning: {len(placeholder)} runs use a placeholder lr (no recipe lr, not tuned): "
            + "; ".join(where[:8])
            + (f"; +{len(where) - 8} more" if len(where) > 8 else "")
            + ". Give them optim.lr: ${tuned_lr:<tuning experiment>} (conf/experiment/*_tune.yaml) or optim.lr=..."
        )
    elif runs:
        lines.append("  lr: no placeholder lr in this plan (every lr is the recipe's, tuned, swept or given)")
    return lines


def _selection(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:,.1f} MB"


def _count(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n / 1e3:,.0f}k"


def disk_lines(runs: Sequence[PlannedRun]) -> list[str]:
    """Disk for ``trainer.save_model`` (one fp32 model per run: parameters x 4 bytes)."""
    saving = [r for r in runs if r.save_model in ("best", "final")]
    if not runs:
        return []
    known = [r for r in saving if r.model_params is not None]
    total = sum(r.model_params * 4 for r in known)
    todo = sum(r.model_params * 4 for r in known if r.to_do)
    per_model: dict[str, list[PlannedRun]] = {}
    for r in known:
        per_model.setdefault(r.model_name, []).append(r)
    parts = [
        f"{name} {_count(rs[0].model_params)} params = {_gb(rs[0].model_params * 4)} x {len(rs)} runs"
        for name, rs in per_model.items()
    ]
    unknown = sorted({r.model_name for r in saving if r.model_params is None})
    line = (
        f"  disk: save_model=best/final keeps one fp32 model per run for {len(saving)} of {len(runs)} runs: "
        + ("; ".join(parts) if parts else "none")
        + f" -> {_gb(total)} in all ({_gb(todo)} for the runs to do)"
        + (f"; size unknown for {', '.join(unknown)}" if unknown else "")
        + ". A resume checkpoint (model + optimizer state, up to ~4x the model) exists only while a run is "
        "unfinished (removed when it completes unless trainer.keep_checkpoint=true)"
    )
    return [line]


def precision_lines(runs: Sequence[PlannedRun]) -> list[str]:
    by_prec: dict[str, list[str]] = {}
    for r in runs:
        names = by_prec.setdefault(r.mixed_precision, [])
        if r.experiment not in names:
            names.append(r.experiment)
    if not by_prec:
        return []
    shown = "; ".join(
        f"trainer.mixed_precision={p} ({'fp32' if p == 'no' else p}) for {', '.join(n)}"
        for p, n in by_prec.items()
    )
    note = ""
    if "no" in by_prec:
        note = "; fp32 runs take longer than the GPU-hours below, which assume fp16/bf16 (trainer.mixed_precision=bf16 or fp16 to match)"
    return [f"  precision: {shown}; the paper trained in {PAPER_PRECISION} (fairseq){note}"]


def _annotation(r: PlannedRun) -> str:
    if not r.tuned_by:
        return ""
    name = r.tuned_lr_file.parents[2].name if r.tuned_lr_file is not None else r.tuned_by  # own-MNLI variant
    if r.lr is None:
        return f"  # optim.lr: tuned by {name} (not selected yet)"
    return f"  # optim.lr={r.lr:g} tuned by {name}"


def _select_line(b: Block) -> str:
    pairs = sorted({(r.experiment_name, r.task, r.optim) for r in b.runs})
    if not pairs:
        return f"select: {b.experiment}: no runs"
    root = b.runs[0].results_dir or Path("results")
    names = sorted({p[0] for p in pairs})
    present = sum(tl.selection_path(root, n, t, o).exists() for n, t, o in pairs)
    seeds = sorted({r.seed for r in b.runs})
    return (
        f"select: {b.experiment} -> {root}/runs/{'|'.join(names)}/<task>/<optim>/{tl.FILE_NAME} for "
        f"{len(pairs)} task x optimizer pairs ({present} written): per pair the lr with the best dev metric "
        f"(seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}; a diverged run never wins)"
    )


def print_plan(blocks: Sequence[Block], launcher: str, file: Any = None) -> None:
    file = file or sys.stdout
    for b in blocks:
        for r in b.runs:
            print("run: " + " ".join(r.line) + _annotation(r), file=file)
        if b.tuning:
            print(_select_line(b), file=file)
    for line in summary_lines(blocks):
        print(line, file=file)
    print("multiruns, in order:", file=file)
    for b in blocks:
        print("  " + " ".join(b.command(launcher, python="python")), file=file)
        if b.tuning:
            print("  " + " ".join(b.select_command(python="python")), file=file)
