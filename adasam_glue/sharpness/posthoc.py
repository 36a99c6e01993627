"""Sharpness of a finished run, after the fact: ``python -m adasam_glue.sharpness RUN_DIR [key=value ...]``.

Loads ``RUN_DIR/model`` (saved with ``trainer.save_model=best|final``), rebuilds the run's training rows
from its record (the same load, subsample and tokenization as training), measures the sharpness
(:func:`adasam_glue.sharpness.measure.measure_sharpness`, with the run's own ``sharpness`` settings unless
overridden) and adds the block to ``RUN_DIR/record.json`` under ``"sharpness"``, changing nothing else.
The block also gets ``"checkpoint"`` (``best``/``final``), ``"update"`` and ``"measured_at"``.

It holds the run dir's lock (:func:`adasam_glue.run_dir.run_dir_lock`) from reading the record to
writing it, so a training launch of the same run dir cannot write in between (nor start meanwhile),
and it measures only a finished run (``completed``/``diverged``): a running, preempted or failed run
is refused, since its resume would rewrite the record without the block and replace the model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict
from omegaconf import DictConfig, OmegaConf

from adasam_glue.checkpoint import MODEL_DIR
from adasam_glue.config import CONF_DIR
from adasam_glue.records import FINAL_STATUSES, RECORD_NAME, RecordError, read_record, write_record
from adasam_glue.run_dir import run_dir_lock
from adasam_glue.sharpness.measure import build_loss_fn, measure_sharpness, subset_batches

__all__ = ["RunNotFinished", "main", "measure_run", "sharpness_settings"]


class RunNotFinished(ValueError):
    """The run dir's record is not final (running, preempted, failed): nothing to measure yet."""


def sharpness_settings(record_cfg: Mapping[str, Any] | None, overrides: Sequence[str]) -> DictConfig:
    """The run's own sharpness settings (its record's resolved ``sharpness`` node, else
    ``conf/sharpness/default.yaml``: the one place the defaults live) with ``key=value`` overrides."""
    base = OmegaConf.load(CONF_DIR / "sharpness" / "default.yaml")
    known = set(base.keys())
    if record_cfg:
        base = OmegaConf.merge(base, {k: v for k, v in record_cfg.items() if k in known})
    dotlist = [o.removeprefix("sharpness.") for o in overrides]
    for o in dotlist:
        if "=" not in o or o.split("=", 1)[0] not in known:
            raise ValueError(
                f"bad override {o!r}: expected key=value with key one of "
                f"sharpness.{{{', '.join(sorted(known))}}}"
            )
    return OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist))


def measure_run(
    run_dir: str | Path, overrides: Sequence[str] = (), device: str | None = None
) -> dict[str, Any]:
    """Measure ``RUN_DIR/model`` on the run's sharpness subset; add the block to its record; return it."""
    run_dir = Path(run_dir)
    record_path = run_dir / RECORD_NAME
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path}: no run record (is {run_dir} a run dir?)")
    with run_dir_lock(run_dir):  # raises RunDirLocked (naming host and pid) while a launch holds it
        return _measure_locked(run_dir, record_path, overrides, device)


def _measure_locked(
    run_dir: Path, record_path: Path, overrides: Sequence[str], device: str | None
) -> dict[str, Any]:
    record = read_record(record_path)
    status = record.get("status")
    if status not in FINAL_STATUSES:
        raise RunNotFinished(
            f"{record_path}: the run is {status!r}, not one of {', '.join(FINAL_STATUSES)}: measure it once "
            "it has finished (a resumed run rewrites its record and model, and the block would be lost)"
        )
    config = record.get("config")
    if not isinstance(config, dict) or "task" not in config or "data" not in config:
        raise RecordError(f"{record_path}: the record has no resolved 'config' with task and data")
    model_dir = run_dir / MODEL_DIR
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir}: no saved model (HF save_pretrained folder with config.json) in this run dir; "
            "train with trainer.save_model=best or trainer.save_model=final to produce it"
        )
    cfg = sharpness_settings(config.get("sharpness"), overrides)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adasam_glue.data import GlueCollator, load_glue_config, subsample, tokenize_glue
    from adasam_glue.tasks import get_task

    task, data = config["task"], config["data"]
    info = get_task(task["name"])
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).to(dev)
    # the rows the run trained on, loaded and subsampled as the data module does (data/loaders.py)
    raw, _ = load_glue_config(data, task["name"])
    seed = record.get("seed", config.get("seed"))
    rows = subsample(raw["train"], data["max_train_samples"], seed)
    train = tokenize_glue(
        DatasetDict({"train": rows}), task["name"], tokenizer, task["max_length"], task.get("target_scale")
    )["train"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    collate = GlueCollator(pad_token_id=pad_id, padding_side=getattr(tokenizer, "padding_side", "right"))
    batches = subset_batches(train, collate, cfg.num_samples, cfg.batch_size, cfg.subset_seed)
    block = measure_sharpness(model, batches, build_loss_fn(info.num_labels), cfg, device=dev)
    block["checkpoint"] = (config.get("trainer") or {}).get("save_model")
    block["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    best = record.get("best") if block["checkpoint"] == "best" else record.get("final")
    block["update"] = best.get("update") if isinstance(best, dict) else None

    record = read_record(record_path)  # re-read: add the block to the latest record, nothing else
    record["sharpness"] = block
    write_record(record_path, record)
    return block


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adasam_glue.sharpness",
        description="Measure the sharpness of a finished run's saved model and add the 'sharpness' "
        "block to RUN_DIR/record.json (nothing else in the record changes).",
    )
    parser.add_argument("run_dir", help="run dir with record.json and model/ (trainer.save_model=best|final)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="sharpness settings, e.g. num_samples=256 top_k=3 "
        "'rhos=[0.01]' (the 'sharpness.' prefix is optional)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    try:
        block = measure_run(args.run_dir, args.overrides, args.device)
    except (FileNotFoundError, RecordError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    v, c = block["values"], block["cost"]
    print(
        f"sharpness of {args.run_dir}: loss={v['loss']:.6g} eigenvalue={v['eigenvalue']} "
        f"trace={v['trace']} (+/- {v['trace_stderr']}) worst_case={v['worst_case']} "
        f"worst_case_adaptive={v['worst_case_adaptive']}; {c['seconds']:.1f}s, {c['hvp_count']} HVPs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
