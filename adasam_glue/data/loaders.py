"""Tokenization (cached), dynamic-padding collator, seeded (length-grouped) train sampler, and
``build_dataloaders`` (the trainer's entry point).

Epochs and Accelerate: the train sampler's order is a pure function of ``(seed, epoch)``. Call
``loaders.train.set_epoch(epoch)`` before each epoch. ``accelerator.prepare(loader)`` returns a
``DataLoaderShard`` whose ``set_epoch`` forwards to ``batch_sampler.sampler.set_epoch`` (and, when
sharded over processes, ``batch_sampler.batch_sampler.sampler``), i.e. to ``GlueTrainSampler``; it also
calls ``set_epoch(iteration)`` itself at the start of every pass (``iteration`` counts completed passes),
so an explicit ``set_epoch`` keeps the two in step, including after resuming. Each process sees every
``num_processes``-th batch of the same global order.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, Value
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from adasam_glue.data.sources import load_glue_config
from adasam_glue.tasks import get_task

_TOKENIZE_VERSION = "1"  # bump when tokenize_glue's output changes (invalidates the map cache)
MEGABATCH_MULT = 50  #: length grouping sorts within windows of MEGABATCH_MULT batches
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


# ---------------------------------------------------------------------------------------- tokenize
def tokenizer_fingerprint(tokenizer) -> str:
    """A stable hash of everything that decides the token ids: class, name, the full backend
    (normalizer, pre-tokenizer, vocab, post-processor) when fast, else the vocab and special tokens."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # truncation/padding are call-time settings the tokenizer leaves behind after a call: not identity
        state.pop("truncation", None), state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr(getattr(tokenizer, "all_special_tokens", "")).encode())
    h.update(
        repr(
            (getattr(tokenizer, "truncation_side", "right"), getattr(tokenizer, "do_lower_case", None))
        ).encode()
    )
    return h.hexdigest()[:16]


class _Tokenize:
    """The map function (a class so ``datasets`` need not hash a closure)."""

    def __init__(
        self,
        tokenizer,
        text_keys: Sequence[str],
        max_length: int,
        float_labels: bool,
        target_scale: float | None = None,
    ):
        self.tokenizer, self.text_keys, self.max_length, self.float_labels = (
            tokenizer,
            tuple(text_keys),
            max_length,
            float_labels,
        )
        self.target_scale = target_scale

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[k] for k in self.text_keys]
        enc = self.tokenizer(*texts, truncation=True, max_length=self.max_length, padding=False)
        out = {k: enc[k] for k in MODEL_KEYS if k in enc}
        if not self.float_labels:
            out["labels"] = list(batch["label"])
        elif self.target_scale is None:
            out["labels"] = [float(x) for x in batch["label"]]
        else:  # unlabelled rows (-1, test splits) stay -1: they are never scored
            s = self.target_scale
            out["labels"] = [float(x) / s if x >= 0 else float(x) for x in batch["label"]]
        return out


def tokenize_glue(
    ds: DatasetDict, task: str, tokenizer, max_length: int, target_scale: float | None = None
) -> DatasetDict:
    """Tokenize every split (pairs as pairs, truncation to ``max_length``, no padding).

    Columns: ``input_ids``, ``attention_mask``, ``token_type_ids`` (if the tokenizer returns them),
    ``labels`` (int64; float32 for STS-B) and ``idx``. Cached: ``map`` gets a fingerprint built from the
    split's fingerprint, the task, the tokenizer's hash and ``max_length``, so a second run with the
    same data and tokenizer loads the cache files instead of re-tokenizing (disk-backed datasets only,
    which every ``load_glue`` source returns).

    ``target_scale`` (``task.target_scale``, regression only): labels are divided by it, so every
    consumer of the batches (the loss, eval loss, sharpness) sees the training target; fairseq trains
    STS-B on scores / 5 (docs/algorithms.md, "Settings"). Pearson/Spearman are scale-free; predictions
    written for the GLUE server are multiplied back (:mod:`adasam_glue.predict`).
    """
    info = get_task(task)
    if target_scale is not None and not info.is_regression:
        raise ValueError(f"target_scale={target_scale!r} is for regression tasks only, not {task}")
    fn = _Tokenize(tokenizer, info.text_keys, max_length, info.is_regression, target_scale)
    tok_hash = tokenizer_fingerprint(tokenizer)
    scale_key = "" if target_scale is None else f"|scale={float(target_scale)!r}"
    out = {}
    for split, d in ds.items():
        fp = hashlib.sha256(
            f"{_TOKENIZE_VERSION}|{d._fingerprint}|{info.name}|{tok_hash}|{max_length}{scale_key}".encode()
        ).hexdigest()[:16]
        d = d.map(
            fn,
            batched=True,
            batch_size=1000,
            remove_columns=[*info.text_keys, "label"],
            new_fingerprint=fp,
            desc=f"tokenize {info.name}/{split}",
        )
        labels_type = Value("float32" if info.is_regression else "int64")
        if d.features["labels"] != labels_type:
            d = d.cast_column("labels", labels_type)  # small: fingerprint derives from fp (cached too)
        out[split] = d
    return DatasetDict(out)


def sequence_lengths(ds: Dataset) -> np.ndarray:
    """Token counts per row, read from Arrow without materialising the ids as Python lists."""
    table = ds.select_columns(["input_ids"]).with_format("arrow")[:]
    return pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)


# ---------------------------------------------------------------------------------------- collator
@dataclass
class GlueCollator:
    """Pads each batch to its longest row (rounded up to ``pad_to_multiple_of``).

    Returns tensors ``input_ids``, ``attention_mask``, (``token_type_ids``), ``labels`` and ``idx``
    (not a model input: the trainer pops it).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"

    def padded_length(self, longest: int) -> int:
        m = self.pad_to_multiple_of
        return longest if not m else int(math.ceil(longest / m) * m)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # One vectorised fill per key, not one tensor per row: the collator runs once per micro-batch,
        # and per-row tensors made it most of the harness's own cost per update (docs/bench_overhead.md).
        lengths = np.fromiter((len(r["input_ids"]) for r in rows), dtype=np.int64, count=len(rows))
        length = self.padded_length(int(lengths.max()))
        cols = np.arange(length)
        if self.padding_side == "left":
            mask = cols >= (length - lengths)[:, None]
        else:
            mask = cols < lengths[:, None]
        total = int(lengths.sum())
        batch: dict[str, torch.Tensor] = {}
        for key, pad in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if key not in rows[0]:
                continue
            t = np.full((len(rows), length), pad, dtype=np.int64)
            # row-major order of the mask's True cells = the rows' tokens concatenated
            t[mask] = _concatenated(rows, key, total)
            batch[key] = torch.from_numpy(t)
        labels = [r["labels"] for r in rows]
        is_float = isinstance(labels[0], float) or (
            torch.is_tensor(labels[0]) and labels[0].is_floating_point()
        )
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if is_float else torch.long)
        if "idx" in rows[0]:
            batch["idx"] = torch.tensor([r["idx"] for r in rows], dtype=torch.long)
        return batch


def _concatenated(rows: list[dict[str, Any]], key: str, total: int) -> np.ndarray:
    """The rows' ``key`` values end to end as int64: lists (the Arrow rows) in one C pass, tensors and
    arrays (a formatted dataset) through numpy."""
    if isinstance(rows[0][key], (list, tuple)):
        return np.fromiter(itertools.chain.from_iterable(r[key] for r in rows), np.int64, total)
    return np.concatenate([np.asarray(r[key], dtype=np.int64).reshape(-1) for r in rows])


def default_pad_multiple(pad_to_multiple_of: int | None, mixed_precision: str = "no") -> int | None:
    """Explicit value wins; otherwise 8 under bf16/fp16 (tensor cores), else no rounding."""
    if pad_to_multiple_of:
        return int(pad_to_multiple_of)
    return 8 if mixed_precision in ("bf16", "fp16") else None


# ----------------------------------------------------------------------------------------- sampler
def train_order(
    lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool = False
) -> np.ndarray:
    """The train order of one epoch, a pure function of (seed, epoch).

    Plain: a seeded permutation. Length-grouped: permute, cut into megabatches of
    ``MEGABATCH_MULT * batch_size``, sort each by length (longest first), cut into batches, then
    shuffle the batches (the batch holding the longest row goes first, to surface OOM early).
    """
    n = len(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)])
    perm = rng.permutation(n)
    if not group_by_length or n <= batch_size:
        return perm
    lengths = np.asarray(lengths)
    mega = MEGABATCH_MULT * batch_size
    batches = []
    for start in range(0, n, mega):
        chunk = perm[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    # Only the final batch may be short: keep it last so every other batch is full.
    full, last = (batches[:-1], batches[-1:]) if len(batches[-1]) < batch_size else (batches, [])
    order = rng.permutation(len(full))
    longest = int(np.argmax([lengths[b].max() for b in full]))
    order = [longest, *[i for i in order if i != longest]]
    return np.concatenate([full[i] for i in order] + last)


class GlueTrainSampler(Sampler[int]):
    """Deterministic shuffle by (seed, epoch); optional length grouping (see ``train_order``)."""

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        group_by_length: bool = False,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group_by_length = batch_size, seed, group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        order = train_order(self.lengths, self.batch_size, self.seed, self.epoch, self.group_by_length)
        return iter(order.tolist())

    def __len__(self) -> int:
        return len(self.lengths)


class GlueDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches its sampler (Accelerate's prepared loaders have their own)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


# ------------------------------------------------------------------------------------ padding stats
def pad_stats(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    max_length: int,
    group_by_length: bool = False,
    pad_to_multiple_of: int | None = None,
    seed: int = 0,
    epoch: int = 0,
) -> dict[str, float]:
    """Tokens processed under dynamic padding (one epoch's batches) vs padding every row to ``max_length``.

    Returns ``real_tokens``, ``dynamic_tokens``, ``max_length_tokens``, ``saved_fraction`` (1 - dynamic /
    max_length tokens: the share of pad-to-max work avoided) and ``pad_fraction`` (padding share left).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = train_order(lengths, batch_size, seed, epoch, group_by_length)
    m = pad_to_multiple_of or 1
    dynamic = 0
    for i in range(0, len(order), batch_size):
        b = lengths[order[i : i + batch_size]]
        dynamic += len(b) * int(math.ceil(b.max() / m) * m)
    real, full = int(lengths.sum()), len(lengths) * int(max_length)
    return {
        "real_tokens": float(real),
        "dynamic_tokens": float(dynamic),
        "max_length_tokens": float(full),
        "saved_fraction": 1.0 - dynamic / full if full else 0.0,
        "pad_fraction": 1.0 - real / dynamic if dynamic else 0.0,
    }


# --------------------------------------------------------------------------------------- dataloaders
@dataclass
class GlueLoaders:
    """Everything ``build_dataloaders`` makes. ``evals`` is keyed by Hub split name.

    ``data_quality``: per split of the loaded files (before subsampling), JSON-serialisable, the same
    on a cached load as on the first parse, so every run can record what its data lacked:
    ``{split: {"file", "rows" (kept), "skipped", "reasons": {reason: count}, "first_lines": [line
    numbers of the first 10 skipped rows], "expected"}}`` (``load_glue_with_quality``).
    """

    train: DataLoader
    evals: dict[str, DataLoader]
    train_dataset: Dataset
    eval_datasets: dict[str, Dataset]
    collator: GlueCollator
    padding_stats: dict[str, float] = field(default_factory=dict)
    data_quality: dict[str, dict] = field(default_factory=dict)


def _cfg(data_cfg: Any, key: str) -> Any:
    """A key of the ``data`` config node (DictConfig, dataclass or dict). No default: every key lives in
    ``conf/data/default.yaml``, so a missing one is an error naming it, not a silent second default."""
    if isinstance(data_cfg, dict):
        if key not in data_cfg:
            raise KeyError(f"data config lacks {key!r} (see conf/data/default.yaml)")
        return data_cfg[key]
    return getattr(data_cfg, key)


def subsample(ds: Dataset, n: int | None, seed: int | None) -> Dataset:
    """The first ``n`` rows (``seed`` None) or the first ``n`` of a seeded shuffle (kept in file order)."""
    if n is None or n >= len(ds):
        return ds
    if seed is None:
        return ds.select(range(n))
    keep = np.sort(np.random.default_rng(int(seed)).permutation(len(ds))[:n])
    return ds.select(keep.tolist())


def build_train_loader(
    train_dataset: Dataset,
    collator: GlueCollator,
    batch_size: int,
    seed: int,
    group_by_length: bool = False,
    num_workers: int = 0,
    lengths: np.ndarray | None = None,
) -> GlueDataLoader:
    """The train loader alone (e.g. to rebuild it for another micro-batch size)."""
    lengths = sequence_lengths(train_dataset) if lengths is None else lengths
    sampler = GlueTrainSampler(lengths, batch_size, seed=seed, group_by_length=group_by_length)
    return GlueDataLoader(
        train_dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        drop_last=False,
        persistent_workers=num_workers > 0,
    )


def make_collator(data_cfg: Any, tokenizer: Any, mixed_precision: str = "no") -> GlueCollator:
    """The run's collator (padding value, multiple and side): one definition for training and for the
    test predictions of a completed run, which need it without building the training loaders."""
    return GlueCollator(
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        pad_to_multiple_of=default_pad_multiple(_cfg(data_cfg, "pad_to_multiple_of"), mixed_precision),
        padding_side=getattr(tokenizer, "padding_side", "right") or "right",
    )


def build_dataloaders(
    data_cfg: Any,
    task: str,
    tokenizer,
    max_length: int,
    micro_batch_size: int,
    eval_batch_size: int,
    seed: int,
    accelerator: Any = None,
    mixed_precision: str = "no",
    target_scale: float | None = None,
) -> GlueLoaders:
    """Load, subsample, tokenize (once per node: under ``accelerator.main_process_first()``) and wrap
    the task in DataLoaders. ``data_cfg`` is the ``data`` config group (DataConfig / DictConfig / dict).

    ``max_train_samples``: first N of a shuffle seeded by ``seed``; ``max_eval_samples``: first N rows.
    """
    info = get_task(task)
    first = accelerator.main_process_first() if accelerator is not None else contextlib.nullcontext()
    with first:
        raw, quality = load_glue_config(data_cfg, task)
        splits = DatasetDict({"train": subsample(raw["train"], _cfg(data_cfg, "max_train_samples"), seed)})
        for split in info.eval_splits:
            splits[split] = subsample(raw[split], _cfg(data_cfg, "max_eval_samples"), None)
        tokenized = tokenize_glue(splits, task, tokenizer, max_length, target_scale)
    collator = make_collator(data_cfg, tokenizer, mixed_precision)
    pad_multiple = collator.pad_to_multiple_of
    group = bool(_cfg(data_cfg, "group_by_length"))
    workers = int(_cfg(data_cfg, "num_workers") or 0)
    train_ds = tokenized["train"]
    lengths = sequence_lengths(train_ds)
    train = build_train_loader(train_ds, collator, micro_batch_size, seed, group, workers, lengths)
    evals = {
        split: DataLoader(
            tokenized[split],
            batch_size=eval_batch_size,
            sampler=SequentialSampler(tokenized[split]),
            collate_fn=collator,
            num_workers=workers,
        )
        for split in info.eval_splits
    }
    stats = pad_stats(lengths, micro_batch_size, max_length, group, pad_multiple, seed)
    return GlueLoaders(
        train=train,
        evals=evals,
        train_dataset=train_ds,
        eval_datasets={s: tokenized[s] for s in info.eval_splits},
        collator=collator,
        padding_stats=stats,
        data_quality=quality,
    )
