"""What a group of runs was trained on, in words: every caption and figure title states it.

A number means little without its setting (a 40-update MiniLM run on generated data and a full-recipe
RoBERTa-large run on GLUE give numbers of the same shape), so each caption names the model, the data
(synthetic in capitals), the updates against the task's recipe, the lr and its schedule, the batch and
max_length, and the precision and device (docs/algorithms.md §4.4). Functions take the run frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from adasam_glue.report.palette import task_name
from adasam_glue.run_dir import model_label
from adasam_glue.tasks import TASK_ORDER

SYNTHETIC_BANNER = (
    "SYNTHETIC DATA: these runs trained and were evaluated on generated data (data.source=synthetic), "
    "not GLUE. They show that the pipeline works; they are no evidence for or against the paper."
)


def _section(run: Any, name: str) -> dict[str, Any]:
    v = run.config.get(name)
    return v if isinstance(v, dict) else {}


def synthetic(df: pd.DataFrame) -> pd.Series:
    """Per run: trained on generated data (``data.source=synthetic``)."""
    return df.config.map(lambda c: isinstance(c.get("data"), dict) and c["data"].get("source") == "synthetic")


def any_synthetic(df: pd.DataFrame) -> bool:
    return bool(len(df)) and bool(synthetic(df).any())


def verdict_on(verdict: str, runs: pd.DataFrame) -> str:
    """Generated data cannot test a claim about GLUE: say so, keep the pipeline's answer visible."""
    if verdict == "not testable" or not any_synthetic(runs):
        return verdict
    return f"not testable on synthetic data (the numbers alone would say: {verdict})"


def heading(title: str, runs: pd.DataFrame | bool, banner: str = SYNTHETIC_BANNER) -> list[str]:
    """``# title``, marked SYNTHETIC DATA with the banner under it when generated data went in."""
    synth = runs if isinstance(runs, bool) else any_synthetic(runs)
    out = [f"# {title}" + (" — SYNTHETIC DATA" if synth else ""), ""]
    return out + ([f"> **{banner}**", ""] if synth else [])


def model_text(run: Any) -> str:
    """The record's model label (schema 2), else the one the harness would give its config."""
    label = run.record.get("model")
    if isinstance(label, str) and label:
        return label
    model = _section(run, "model")
    if not (model.get("name") or model.get("path")):
        return "model not recorded"
    return model_label(OmegaConf.create({"name": model.get("name"), "path": model.get("path")}))


def data_text(run: Any) -> str:
    data = _section(run, "data")
    source = data.get("source")
    text = {
        "synthetic": f"SYNTHETIC data (generated: {data.get('synthetic_train_size', '?')} train / "
        f"{data.get('synthetic_eval_size', '?')} dev rows; not GLUE)",
        "tsv": "GLUE TSV files (data.source=tsv)",
        "hub": f"Hub dataset {data.get('hub_name') or '?'} (data.source=hub)",
        "disk": "saved dataset (data.source=disk)",
    }.get(source, f"data.source={source}" if source else "data source not recorded")
    if data.get("max_train_samples"):
        text += f", {data['max_train_samples']} training rows (a subset drawn per seed)"
    if data.get("max_eval_samples"):
        text += f", first {data['max_eval_samples']} dev rows"
    elif source != "synthetic":
        text += ", full dev sets"
    return text


def shape_text(run: Any) -> str:
    """``batch 32, max_length 128``: the global batch per update and the truncation length."""
    task = _section(run, "task")
    return f"batch {task.get('batch_size', '?')}, max_length {task.get('max_length', '?')}"


def precision_text(run: Any) -> str:
    mp = _section(run, "trainer").get("mixed_precision")
    text = "fp32" if mp in (None, "no", False) else f"{mp} mixed precision"
    hw = run.record.get("hardware") if isinstance(run.record.get("hardware"), dict) else {}
    device = str(hw.get("device") or "")
    if device == "cpu":
        text += " on CPU"
    elif device.startswith("cuda"):
        text += f" on {(hw.get('gpus') or ['GPU'])[0]}"
    world = run.identity.get("world_size", 1)
    return text + (f", {world} processes" if isinstance(world, int) and world > 1 else "")


def _updates(run: Any) -> tuple[int | None, int | None]:
    """(updates the run was set to make, the task recipe's total updates)."""
    trainer, task = _section(run, "trainer"), _section(run, "task")
    recipe = task.get("total_updates") if isinstance(task.get("total_updates"), int) else None
    planned = (trainer.get("max_updates") if isinstance(trainer.get("max_updates"), int) else None) or recipe
    if planned is None and isinstance(run.record.get("optimizer_updates"), int):
        planned = run.record["optimizer_updates"]
    return planned, recipe


def updates_text(df: pd.DataFrame) -> str:
    """``40 updates per run (1.7% of the 2296-update recipe)``, or per task when they differ."""
    per_task: dict[str, set[tuple[int | None, int | None]]] = {}
    for r in df.itertuples():
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
        text = "/".join(
            "?" if p is None else (f"{p}" if rec in (None, p) else f"{p} of {rec}") for p, rec in vals
        )
        items.append(f"{task_name(t)} {text}")
    return "updates per task: " + ", ".join(items)


def warmup_ran(run: Any) -> int | None:
    """The warmup the run trained with: the recipe's, scaled with ``trainer.max_updates`` as the trainer
    scales it (:func:`adasam_glue.schedules.warmup_updates`)."""
    task = _section(run, "task")
    if not isinstance(task.get("warmup_updates"), int):
        return None
    if not isinstance(task.get("total_updates"), int):
        return task["warmup_updates"]  # no length recorded: no cap to scale by
    from adasam_glue.schedules import total_updates, warmup_updates

    return warmup_updates(run.config, total_updates(run.config))


def lr_text(df: pd.DataFrame) -> str:
    """``lr 0.0001, linear schedule, 6 warmup updates``; an lr tuned per task and optimizer (Table 2's)
    is given as its range."""
    runs = list(df.itertuples())
    lrs = sorted({float(v) for r in runs if isinstance(v := _section(r, "optim").get("lr"), (int, float))})
    lr = "lr not recorded" if not lrs else f"lr {lrs[0]:g}" if len(lrs) == 1 else f"lr {lrs[0]:g}–{lrs[-1]:g} (per task and optimizer)"  # fmt: skip
    schedule = _distinct([str(_section(r, "trainer").get("schedule") or "?") for r in runs])
    warmups = sorted({w for r in runs if (w := warmup_ran(r)) is not None})
    warmup = "/".join(map(str, warmups)) if 0 < len(warmups) <= 3 else "per-task" if warmups else "?"
    return f"{lr}, {schedule} schedule, {warmup} warmup updates"


def _distinct(values: list[str]) -> str:
    return " | ".join(sorted(set(values))) or "?"


def setting_tags(settings: Iterable[str]) -> dict[str, str]:
    """A short tag per distinct setting (a, b, ..., then numbers), in order of first appearance."""
    return {s: chr(ord("a") + i) if i < 26 else str(i) for i, s in enumerate(dict.fromkeys(settings))}


def setting_text(df: pd.DataFrame) -> str:
    """``model minilm; SYNTHETIC data (...); 40 updates per run (...); lr ...; batch ...; fp32``."""
    if df.empty:
        return "no runs"
    runs = list(df.itertuples())
    texts = [_distinct([f(r) for r in runs]) for f in (model_text, data_text, shape_text, precision_text)]
    return "; ".join(["model " + texts[0], texts[1], updates_text(df), lr_text(df), *texts[2:]])
