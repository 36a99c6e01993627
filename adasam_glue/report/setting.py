"""What a group of runs was trained on, in words: every table caption and figure title states it.

A number means little without its setting: a 40-update MiniLM run on generated data and a full-recipe
RoBERTa-large run on GLUE give numbers of the same shape. So each caption names the model, the data
source (``synthetic`` / ``tsv`` / ``hub`` / ``disk``, plus the number of training rows when
``data.max_train_samples`` caps it, and whether the dev sets are whole), the number of updates against
the task's recipe, the peak lr and its schedule, the batch and max_length, and the precision and
device; synthetic data is written in capitals (docs/algorithms.md §4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from adasam_glue.report.collect import Run
from adasam_glue.report.palette import task_name
from adasam_glue.run_dir import model_label
from adasam_glue.tasks import TASK_ORDER

__all__ = [
    "SYNTHETIC_BANNER",
    "any_synthetic",
    "data_text",
    "is_synthetic",
    "lr_text",
    "model_text",
    "precision_text",
    "setting_text",
    "shape_text",
    "updates_text",
]

SYNTHETIC_BANNER = (
    "SYNTHETIC DATA: these runs trained and were evaluated on generated data (data.source=synthetic), "
    "not GLUE. They show that the pipeline works; they are no evidence for or against the paper."
)


def _section(run: Run, name: str) -> dict[str, Any]:
    v = run.config.get(name)
    return v if isinstance(v, dict) else {}


def is_synthetic(run: Run) -> bool:
    return _section(run, "data").get("source") == "synthetic"


def any_synthetic(runs: Sequence[Run]) -> bool:
    return any(is_synthetic(r) for r in runs)


def model_text(run: Run) -> str:
    """The record's model label (schema 2), else the one the harness would give its config."""
    label = run.record.get("model")
    if isinstance(label, str) and label:
        return label
    model = _section(run, "model")
    if not (model.get("name") or model.get("path")):
        return "model not recorded"
    return model_label(OmegaConf.create({"name": model.get("name"), "path": model.get("path")}))


def data_text(run: Run) -> str:
    data = _section(run, "data")
    source = data.get("source")
    if source == "synthetic":
        text = (
            f"SYNTHETIC data (generated: {data.get('synthetic_train_size', '?')} train / "
            f"{data.get('synthetic_eval_size', '?')} dev rows; not GLUE)"
        )
    elif source == "tsv":
        text = "GLUE TSV files (data.source=tsv)"
    elif source == "hub":
        text = f"Hub dataset {data.get('hub_name') or '?'} (data.source=hub)"
    elif source == "disk":
        text = "saved dataset (data.source=disk)"
    elif source:
        text = f"data.source={source}"
    else:
        text = "data source not recorded"
    if data.get("max_train_samples"):
        text += f", {data['max_train_samples']} training rows (a subset drawn per seed)"
    if data.get("max_eval_samples"):
        text += f", first {data['max_eval_samples']} dev rows"
    elif source != "synthetic":
        text += ", full dev sets"
    return text


def shape_text(run: Run) -> str:
    """``batch 32, max_length 128``: the global batch per update and the truncation length."""
    task = _section(run, "task")
    return f"batch {task.get('batch_size', '?')}, max_length {task.get('max_length', '?')}"


def precision_text(run: Run) -> str:
    mp = _section(run, "trainer").get("mixed_precision")
    text = "fp32" if mp in (None, "no", False) else f"{mp} mixed precision"
    hw = run.record.get("hardware") if isinstance(run.record.get("hardware"), dict) else {}
    device = str(hw.get("device") or "")
    if device == "cpu":
        text += " on CPU"
    elif device.startswith("cuda"):
        text += f" on {(hw.get('gpus') or ['GPU'])[0]}"
    world = run.identity.get("world_size", 1)
    if isinstance(world, int) and world > 1:
        text += f", {world} processes"
    return text


def _updates(run: Run) -> tuple[int | None, int | None]:
    """(updates the run was set to make, the task recipe's total updates)."""
    trainer, task = _section(run, "trainer"), _section(run, "task")
    recipe = task.get("total_updates") if isinstance(task.get("total_updates"), int) else None
    cap = trainer.get("max_updates") if isinstance(trainer.get("max_updates"), int) else None
    planned = cap or recipe
    if planned is None and isinstance(run.record.get("optimizer_updates"), int):
        planned = run.record["optimizer_updates"]
    return planned, recipe


def updates_text(runs: Sequence[Run]) -> str:
    """``40 updates per run (1.7% of the 2296-update recipe)``, or per task when they differ."""
    per_task: dict[str, set[tuple[int | None, int | None]]] = {}
    for r in runs:
        per_task.setdefault(r.task, set()).add(_updates(r))
    pairs = {p for v in per_task.values() for p in v}
    planned = {p for p, _ in pairs}
    if not pairs or planned == {None}:
        return "updates not recorded"
    if len(planned) == 1:
        (n,) = planned
        recipes = sorted({rec for _, rec in pairs if rec})
        if not recipes:
            return f"{n} updates per run"
        if recipes == [n]:
            return f"{n} updates per run (the full schedule of its task config)"
        if len(recipes) == 1:
            return f"{n} updates per run ({100 * n / recipes[0]:.2g}% of the {recipes[0]}-update recipe)"
        return f"{n} updates per run (capped; recipes {recipes[0]}–{recipes[-1]})"
    items = []
    for t in sorted(per_task, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER)):
        vals = sorted(per_task[t], key=lambda p: (p[0] or 0, p[1] or 0))
        items.append(
            f"{task_name(t)} "
            + "/".join(
                "?" if p is None else (f"{p}" if rec in (None, p) else f"{p} of {rec}") for p, rec in vals
            )
        )
    return "updates per task: " + ", ".join(items)


def lr_text(runs: Sequence[Run]) -> str:
    """``lr 0.0001, linear schedule, 6 warmup updates``: the peak lr and its schedule. An lr that differs
    across the runs (Table 2's, tuned per task and optimizer) is given as its range."""
    lrs = sorted({float(v) for r in runs if isinstance(v := _section(r, "optim").get("lr"), (int, float))})
    if not lrs:
        lr = "lr not recorded"
    elif len(lrs) == 1:
        lr = f"lr {lrs[0]:g}"
    else:
        lr = f"lr {lrs[0]:g}–{lrs[-1]:g} (per task and optimizer)"
    schedule = _distinct([str(_section(r, "trainer").get("schedule") or "?") for r in runs])
    warmups = sorted({w for r in runs if (w := warmup_ran(r)) is not None})
    warmup = "/".join(map(str, warmups)) if 0 < len(warmups) <= 3 else "per-task" if warmups else "?"
    return f"{lr}, {schedule} schedule, {warmup} warmup updates"


def warmup_ran(run: Run) -> int | None:
    """The warmup the run trained with: the recipe's, scaled with ``trainer.max_updates`` as the trainer
    scales it (:func:`adasam_glue.schedules.warmup_updates`), not the recipe's number."""
    task = _section(run, "task")
    if not isinstance(task.get("warmup_updates"), int):
        return None
    if not isinstance(task.get("total_updates"), int):
        return task["warmup_updates"]  # no length recorded: no cap to scale by
    from adasam_glue.schedules import total_updates, warmup_updates

    return warmup_updates(run.config, total_updates(run.config))


def _distinct(values: Sequence[str]) -> str:
    return " | ".join(sorted(set(values))) or "?"


def setting_text(runs: Sequence[Run]) -> str:
    """``model minilm; SYNTHETIC data (...); 40 updates per run (...); lr ...; batch ...; fp32`` (distinct
    values joined)."""
    if not runs:
        return "no runs"
    return "; ".join(
        [
            "model " + _distinct([model_text(r) for r in runs]),
            _distinct([data_text(r) for r in runs]),
            updates_text(runs),
            lr_text(runs),
            _distinct([shape_text(r) for r in runs]),
            _distinct([precision_text(r) for r in runs]),
        ]
    )
