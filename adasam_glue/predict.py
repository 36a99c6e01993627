"""Test-set predictions in the GLUE server's submission format (``trainer.predict_test=true``).

One TSV per test split, named as the GLUE server expects inside the submission zip (``CoLA.tsv``,
``SST-2.tsv``, ``MRPC.tsv``, ``STS-B.tsv``, ``QQP.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``QNLI.tsv``,
``RTE.tsv``), with the header ``index<TAB>prediction``: the row's ``idx`` and its prediction — a label
name for the NLI tasks (``entailment`` ...), the class id for the others, a score for STS-B — as HF's
``run_glue.py --do_predict`` writes them. Written from the best model (``trainer.save_model=best``,
the dev-selected checkpoint) or, when no best model was kept, from the final one; the record says which.

``predict_test`` is not part of the run identity (it changes no number of the run), so it is never
silently dropped either:

- the test files are checked before any training (:func:`check_test_files`): a missing ``test.tsv``
  fails at once, naming the file, instead of after hours of training;
- a fresh run writes the predictions as the last step of its final phase (under the trainer's signal
  handlers: a preemption there checkpoints and the requeued run writes them);
- a run that is already ``completed`` when asked for predictions writes them from its saved model
  (:func:`predict_completed`), or says why it cannot (no saved model).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from adasam_glue.data.sources import DataError
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


def check_test_files(cfg: DictConfig, task: TaskInfo) -> None:
    """Raise :class:`~adasam_glue.data.sources.DataError` naming the missing test file(s) (or splits) when
    ``trainer.predict_test=true`` cannot be honoured, before anything is trained or written: found only
    after training, the run would end ``failed`` with its hours lost.

    TSV folders are checked by file (``test.tsv``, MNLI's ``test_matched.tsv`` and
    ``test_mismatched.tsv``); the other sources by loading their splits (what training does next).
    """
    from adasam_glue.data.glue_tsv import SPLIT_FILES

    splits = test_splits(task)
    fix = "add them (the original GLUE distribution has them) or set trainer.predict_test=false"
    if cfg.data.source == "tsv":
        if not cfg.data.data_dir:
            return  # the loader says that data.source=tsv needs data.data_dir
        from adasam_glue.data.sources import find_task_dir

        task_dir = find_task_dir(cfg.data.data_dir, task)
        missing = [
            str(task_dir / SPLIT_FILES[s]) for s in splits if not (task_dir / SPLIT_FILES[s]).is_file()
        ]
        if missing:
            raise DataError(
                f"trainer.predict_test=true needs the GLUE {task.glue_dir} test file(s), missing: "
                f"{', '.join(missing)}; {fix}. Checked before training: nothing was trained or written."
            )
        return
    from adasam_glue.data import load_glue_config

    raw, _ = load_glue_config(cfg.data, task.name)
    missing = [s for s in splits if s not in raw]
    if missing:
        files = ", ".join(SPLIT_FILES[s] for s in missing)
        raise DataError(
            f"trainer.predict_test=true needs the {', '.join(missing)} split(s) of {task.name}, which "
            f"data.source={cfg.data.source} (data.data_dir={cfg.data.data_dir}) does not have (GLUE's "
            f"{files}); {fix}. Checked before training: nothing was trained or written."
        )


@torch.no_grad()
def predict_test(
    cfg: DictConfig,
    task: TaskInfo,
    model: torch.nn.Module,
    tokenizer: Any,
    collator: Any,
    accelerator: Any,
    run_dir: Path,
    which: str | None = None,
) -> dict[str, Any]:
    """Write the submission TSVs under ``run_dir/predictions``; return the record's ``predictions`` block.

    ``which``: the label of the weights ``model`` already holds (``predict_completed``); ``None``: the
    model is the trained one, replaced by the saved best weights when ``trainer.save_model=best``.
    """
    from datasets import DatasetDict
    from torch.utils.data import DataLoader, SequentialSampler

    from adasam_glue.data import load_glue_config
    from adasam_glue.data.loaders import tokenize_glue

    raw, _ = load_glue_config(cfg.data, task.name)
    missing = [s for s in test_splits(task) if s not in raw]
    if missing:  # check_test_files ran before training; the files went away since
        raise DataError(
            f"trainer.predict_test=true: no {', '.join(missing)} split for {task.name} in data.source="
            f"{cfg.data.source} (data_dir={cfg.data.data_dir}); the GLUE test files (test.tsv) are needed"
        )
    if which is None:
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


def saved_predictions_complete(record: dict[str, Any], run_dir: Path) -> bool:
    """Whether the record names test predictions and every file it names is still there."""
    block = record.get("predictions")
    if not isinstance(block, dict) or not isinstance(block.get("files"), dict) or not block["files"]:
        return False
    return all(
        (run_dir / str(f.get("file"))).is_file() for f in block["files"].values() if isinstance(f, dict)
    )


def predict_completed(
    cfg: DictConfig, task: TaskInfo, run_dir: Path, record: dict[str, Any]
) -> dict[str, Any]:
    """Test predictions of a run that is already ``completed``, from the model it saved under
    ``run_dir/model`` (its best one with ``trainer.save_model=best``, its final one with ``final``);
    the record's ``predictions`` block. Raises ``PredictionError`` saying why when there is no saved
    model: retraining is the only way then, and a run is never retrained behind the user's back.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adasam_glue.data.loaders import make_collator
    from adasam_glue.records import RECORD_NAME

    model_dir = run_dir / "model"
    stored = ((record.get("config") or {}).get("trainer") or {}).get("save_model")
    if not (model_dir / "config.json").is_file():
        raise PredictionError(
            f"{run_dir / RECORD_NAME} is completed, and trainer.predict_test=true asks for its test "
            f"predictions, but it saved no model ({model_dir} is missing; the run had "
            f"trainer.save_model={stored!r}), so they cannot be written without training again. To train "
            f"it again: move {run_dir / RECORD_NAME} (and {run_dir / 'checkpoint'}, if present) away and "
            "launch with trainer.save_model=best trainer.predict_test=true."
        )
    from adasam_glue.run import setup_accelerator, setup_model_and_tokenizer

    accelerator = setup_accelerator(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError):  # saved without its tokenizer: the run's own, rebuilt
        tokenizer, _ = setup_model_and_tokenizer(cfg, task)
    model = accelerator.prepare(AutoModelForSequenceClassification.from_pretrained(str(model_dir)))
    collator = make_collator(cfg.data, tokenizer, cfg.trainer.mixed_precision)
    which = stored if stored in ("best", "final") else "saved"
    return predict_test(cfg, task, model, tokenizer, collator, accelerator, run_dir, which=which)


class PredictionError(RuntimeError):
    """Test predictions that cannot be written; the message names the run and what to do."""
