"""Test-set predictions in the GLUE server's submission format (``trainer.predict_test=true``).

One TSV per test split, named as the GLUE server expects inside the submission zip (``CoLA.tsv``,
``SST-2.tsv``, ``MRPC.tsv``, ``STS-B.tsv``, ``QQP.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``QNLI.tsv``,
``RTE.tsv``), with the header ``index<TAB>prediction``: the row's ``idx`` and its prediction — a label
name for the NLI tasks (``entailment`` ...), the class id for the others, a score for STS-B — as HF's
``run_glue.py --do_predict`` writes them. Written from the best model (``trainer.save_model=best``,
the dev-selected checkpoint) or, when no best model was kept, from the final one; the record says which.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from adasam_glue.records import atomic_write_text
from adasam_glue.tasks import TaskInfo

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
#: tasks whose GLUE submission spells labels by name (the others take the class id)
_NAMED_LABELS = ("mnli", "qnli", "rte")
#: test split -> suffix of the GLUE file name (MNLI's two test sets)
_SPLIT_SUFFIX = {"test": "", "test_matched": "-m", "test_mismatched": "-mm"}


def submission_name(task: TaskInfo, split: str) -> str:
    """``MNLI-m.tsv`` for MNLI's matched test split, ``RTE.tsv`` for RTE's, ..."""
    return f"{task.glue_dir}{_SPLIT_SUFFIX[split]}.tsv"


def test_splits(task: TaskInfo) -> tuple[str, ...]:
    return tuple(s.replace("validation", "test") for s in task.eval_splits)


def format_prediction(task: TaskInfo, value: float | int) -> str:
    if task.is_regression:
        return f"{float(value):.3f}"
    return task.label_names[int(value)] if task.name in _NAMED_LABELS else str(int(value))


@torch.no_grad()
def predict_test(
    cfg: DictConfig,
    task: TaskInfo,
    model: torch.nn.Module,
    tokenizer: Any,
    collator: Any,
    accelerator: Any,
    run_dir: Path,
) -> dict[str, Any]:
    """Write the submission TSVs under ``run_dir/predictions``; return the record's ``predictions`` block."""
    from datasets import DatasetDict
    from torch.utils.data import DataLoader, SequentialSampler

    from adasam_glue.data import load_glue_config
    from adasam_glue.data.loaders import tokenize_glue

    raw, _ = load_glue_config(cfg.data, task.name)
    missing = [s for s in test_splits(task) if s not in raw]
    if missing:
        raise FileNotFoundError(
            f"trainer.predict_test=true: no {', '.join(missing)} split for {task.name} in data.source="
            f"{cfg.data.source} (data_dir={cfg.data.data_dir}); the GLUE test files (test.tsv) are needed"
        )
    which = _load_best(model, run_dir, accelerator) if cfg.trainer.save_model == "best" else "final"
    tokenized = tokenize_glue(
        DatasetDict({s: raw[s] for s in test_splits(task)}), task.name, tokenizer, cfg.task.max_length
    )
    # a model trained on label / task.target_scale predicts on that scale: the server wants raw scores
    scale = float(cfg.task.get("target_scale") or 1.0)
    model.eval()
    out: dict[str, Any] = {"model": which, "files": {}}
    for split in test_splits(task):
        loader = accelerator.prepare(
            DataLoader(
                tokenized[split],
                batch_size=cfg.trainer.eval_batch_size,
                sampler=SequentialSampler(tokenized[split]),
                collate_fn=collator,
            )
        )
        preds, idx = [], []
        for batch in loader:
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
            logits = model(**inputs).logits.float()
            logits, ids = accelerator.gather_for_metrics((logits, batch["idx"]))
            preds.append(logits.squeeze(-1) * scale if task.is_regression else logits.argmax(-1))
            idx.append(ids)
        values, ids = torch.cat(preds).cpu().tolist(), torch.cat(idx).cpu().tolist()
        path = run_dir / PREDICTIONS_DIR / submission_name(task, split)
        rows = [f"{i}\t{format_prediction(task, v)}" for i, v in zip(ids, values)]
        if accelerator.is_main_process:
            atomic_write_text(path, "index\tprediction\n" + "\n".join(rows) + "\n")
        out["files"][split] = {"file": str(path.relative_to(run_dir)), "rows": len(rows)}
        log.info("test predictions: %s (%d rows, %s model)", path, len(rows), which)
    model.train()
    return out


def _load_best(model: torch.nn.Module, run_dir: Path, accelerator: Any) -> str:
    """Load the dev-selected weights saved under ``run_dir/model`` if there are any; else keep the final."""
    from safetensors.torch import load_file

    weights = run_dir / "model" / "model.safetensors"
    if not weights.exists():
        return "final"
    accelerator.unwrap_model(model).load_state_dict(load_file(str(weights)), strict=False)
    return "best"
