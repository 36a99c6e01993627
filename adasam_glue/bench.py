"""Benchmarks: what a SAM update costs, against the two-pass limit and against the tools users would pick.

``python -m adasam_glue.bench --render JSON [--md OUT]`` renders the Markdown report (``docs/bench.md``)
of a written JSON without benchmarking.

``python -m adasam_glue.bench [--quick] [--out DIR] [--model tiny|minilm|roberta-large|roberta-large-random]
[--device cpu|cuda] [--glue-dir DIR] [--sections ...]`` writes ``DIR/bench_quick.json`` (``--quick``) or
``DIR/bench_full.json`` (atomically). ``make bench-quick`` / ``make bench`` run it (``BENCH_OUT=dir``).

Not timed unit tests: every figure is a median over repeats, and every ratio is measured within one run
with the compared variants interleaved round-robin (round r runs a block of every variant before round
r + 1 starts), so load from other processes on a shared machine spreads over all variants alike.

Sections (JSON keys):

``rows`` (``optimizers``)
    One row per registry entry (:data:`adasam_glue.optim.OPTIMIZERS`) and model: the real
    :meth:`adasam_glue.trainer.Trainer.train_step` on the same fixed batches. ``ratio_to_base`` =
    median step time / median step time of the row's base (SAM -> sgd; every AMSGrad-based variant ->
    amsgrad; LightSAM -> amsgrad, the nearest single-pass adaptive optimizer: LightSAM has no base
    optimizer of its own). 2.0 is the two-pass limit; the excess is optimizer overhead. Each block
    rebuilds the optimizer, restores the initial weights and runs untimed warm-up updates first (state
    allocation). ``optim_time_median_s`` is the time spent inside the optimizer's own calls
    (``prepare_ascent`` + ``first_step`` + ``second_step``, or ``step`` + ``zero_grad``) during the timed
    updates, ``perturbation_time_median_s`` the part of it that is not the base update.
    Memory: ``state_mb`` = bytes of every tensor the optimizer keeps between updates (``optimizer.state``,
    the base optimizer's state, the SAM weight copy and other buffers, ``global_state``);
    ``excess_state_over_base_mb`` its excess over the base row, also in parameter sizes
    (``excess_state_in_params``, limit 1). ``optim_transient_peak_mb`` is the peak of tensors the
    optimizer allocates and frees inside one update (measured with a ``TorchDispatchMode`` that
    tracks fresh storages). ``peak_mem_mb``: on CUDA ``torch.cuda.max_memory_allocated`` over the timed
    updates (activations included); on CPU the accounted peak at the optimizer step, parameters +
    gradients + ``state_mb`` + ``optim_transient_peak_mb`` (activations, equal for all rows, excluded:
    there is no CPU allocator high-water mark and tracemalloc does not see torch's allocations).
``hf_trainer``
    This harness's step vs ``transformers.Trainer`` (AdamW, AMSGrad via ``optimizer_cls_and_kwargs``, and
    HF's default ``adamw_torch_fused`` for information): same model and initial weights, same batches
    (``train_sampling_strategy="sequential"`` over the rows in our batch order, our collator), same
    precision, no clipping, linear schedule. HF's step is timed by a callback from ``on_step_begin`` to
    ``on_step_end`` (forward, backward, optimizer, scheduler, zero_grad; batch fetching, set-up and
    logging excluded, as our timing excludes the loader). ``samples_per_s_ratio`` = ours / HF's.
``optimizer_math``
    The SAM math alone (AdaSAM: perturbation ``first_step`` + restore/update ``second_step``) on the
    model's real gradients: the package's ``_foreach`` implementation vs a per-tensor Python-loop
    reference of the same equations, and the base AMSGrad update with torch's ``foreach=False`` (its CPU
    default), ``foreach=True`` and ``fused=True``.
``padding``
    Tokens processed per epoch with dynamic padding, with length grouping, and padding to max_length
    (:func:`adasam_glue.data.pad_stats`) on GLUE-like length distributions: the synthetic tasks'
    tokenized lengths, log-normal stand-ins for the real GLUE tasks (``glue_like``, approximate
    statistics, documented in :data:`GLUE_LIKE`), and the real TSVs under ``--glue-dir`` when given.
``ddp``
    All-reduces per update in a 2-process CPU gloo run (``torch.multiprocessing`` spawn, Accelerate's
    DDP, the real ``train_step``), counted by a DDP communication hook (``register_comm_hook``: one call
    per gradient bucket all-reduce, bytes of the bucket) plus a wrapper around
    ``torch.distributed.all_reduce`` for any explicit all-reduce. Base, SAM/AdaSAM per-device ascent
    (target: one gradient all-reduce), global ascent (``optim.sync_ascent``: two), and accumulation.
``gpu``
    ``--device cuda`` only: tokens/s, model FLOPs utilisation ``6 N tokens x passes / time / peak``
    (peak bf16 dense FLOP/s by device name: A100 312e12, H100/H200 989e12) and peak memory for AMSGrad
    and AdaSAM at batch 16/32 x sequence 128/256, bf16. ``--model roberta-large-random`` builds
    RoBERTa-large's architecture with random weights (no Hub needed): FLOPs and throughput do not
    depend on the weights' values.
``sharpness``
    Cost (seconds, Hessian-vector products) of :func:`adasam_glue.sharpness.bench_sharpness`.
``env``
    Versions, CPU count, threads, device, git commit, date, total wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SCHEMA_VERSION = 1
MB = 2**20

#: peak dense bf16 FLOP/s by device-name substring (first match wins)
PEAK_BF16_FLOPS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12))

#: base optimizer of each registry entry for ``ratio_to_base`` (None: a base itself)
BASE_OF = {"sgd": None, "amsgrad": None, "sam": "sgd"}  # every other entry: amsgrad

#: log-normal stand-ins for GLUE token lengths (RoBERTa BPE, pairs joined): (mean, p95, max, train
#: size). Approximate public statistics of the GLUE train splits, for the padding section only.
GLUE_LIKE = {
    "cola": (11, 20, 47, 8551),
    "sst2": (13, 32, 66, 67349),
    "mrpc": (53, 76, 103, 3668),
    "stsb": (31, 56, 125, 5749),
    "qqp": (30, 60, 330, 363846),
    "mnli": (40, 74, 444, 392702),
    "qnli": (51, 97, 512, 104743),
    "rte": (70, 155, 289, 2490),
}
#: the recipe's batch size per task (spec §4)
TASK_BATCH = {"cola": 16, "sst2": 32, "mrpc": 16, "stsb": 16, "qqp": 32, "mnli": 32, "qnli": 32, "rte": 16}


# ================================================================================== small helpers
def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _iqr(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    q = np.percentile(np.asarray(xs, dtype=float), [25, 75])
    return float(q[1] - q[0])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of distinct storages among ``tensors``."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.device.type == "meta":
            continue
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def _tensors_in(obj: Any, out: list[torch.Tensor], depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensors_in(v, out, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensors_in(v, out, depth + 1)


def optimizer_buffers(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor ``opt`` keeps between updates: its state, a base optimizer's state, and tensor
    dicts held as attributes (the SAM weight copy ``_w_copy``, GSAM's ``_g_copy``, ``global_state``).
    Parameters themselves are excluded (they are keys, not values)."""
    out: list[torch.Tensor] = []
    stack, seen = [opt], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        _tensors_in(list(o.state.values()), out)
        for name, value in vars(o).items():
            if name in ("state", "param_groups", "defaults"):
                continue
            if isinstance(value, torch.optim.Optimizer):
                stack.append(value)
            elif (
                isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values())
            ):
                out.extend(value.values())
    params = {p.untyped_storage().data_ptr() for g in opt.param_groups for p in g["params"]}
    return [t for t in out if t.untyped_storage().data_ptr() not in params]


class AllocTracker:
    """Peak bytes of fresh tensor storages created (and still alive) while active.

    A ``TorchDispatchMode``: an op output whose storage is not one of the op's inputs' storages is a
    fresh allocation; it is counted until the last tracked tensor on that storage is garbage collected.
    In-place and view ops alias their inputs and are not counted. Adds overhead: never use while timing.
    """

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  # storage ptr -> [nbytes, refs]
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[ptr]

    def _track(self, t: torch.Tensor, inputs: set[int]) -> None:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr == 0 or ptr in inputs:
            return
        entry = self.live.get(ptr)
        if entry is None:
            entry = self.live[ptr] = [s.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    @contextlib.contextmanager
    def active(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                ins = {
                    x.untyped_storage().data_ptr()
                    for x in tree_leaves((args, kwargs))
                    if isinstance(x, torch.Tensor)
                }
                out = func(*args, **kwargs)
                for x in tree_leaves(out):
                    if isinstance(x, torch.Tensor):
                        tracker._track(x, ins)
                return out

        with _Mode():
            yield self


# ================================================================================== set-up
@dataclass
class Setup:
    """A model, the fixed batches every variant trains on, and what is needed to rebuild optimizers."""

    model_name: str
    model: torch.nn.Module  # as prepared by Accelerate (what the Trainer trains)
    raw_model: torch.nn.Module  # unwrapped
    task: Any
    accelerator: Any
    batches: list[dict[str, torch.Tensor]]
    rows: list[dict[str, Any]]  # tokenized rows in batch order (HF Trainer comparison); [] if synthetic ids
    collator: Any
    batch_size: int
    mixed_precision: str
    initial_state: dict[str, torch.Tensor]
    num_params: int
    num_nonembedding_params: int
    param_bytes: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def reset(self) -> None:
        """Initial weights, no gradients, train mode (dropout on, as in training)."""
        with torch.no_grad():
            self.raw_model.load_state_dict(self.initial_state)
        self.raw_model.zero_grad(set_to_none=True)
        self.raw_model.train()


_ACCELERATOR: Any = None


def get_accelerator(device: str, mixed_precision: str) -> Any:
    """One Accelerator per process (Accelerate's state is a singleton)."""
    global _ACCELERATOR
    from accelerate import Accelerator

    if _ACCELERATOR is None:
        _ACCELERATOR = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    elif str(_ACCELERATOR.mixed_precision) != mixed_precision:
        raise RuntimeError(
            f"this process already benchmarks with mixed_precision={_ACCELERATOR.mixed_precision}; "
            f"run --device/--model combinations needing {mixed_precision} in another process"
        )
    return _ACCELERATOR


def _model_cfg(model: str) -> Any:
    from omegaconf import OmegaConf

    from adasam_glue.config import CONF_DIR

    name = {"roberta-large-random": "roberta-large"}.get(model, model)
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        raise ValueError(
            f"unknown --model {model!r}: expected tiny, minilm, roberta-large or roberta-large-random"
        )
    from adasam_glue.config import ModelConfig

    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))


def _synthetic_rows(task: str, n: int, cache_dir: str | None) -> Any:
    from adasam_glue.data import load_glue

    return load_glue(
        task,
        source="synthetic",
        cache_dir=cache_dir,
        synthetic_train_size=n,
        synthetic_eval_size=8,
        synthetic_seed=0,
    )["train"]


def build_setup(
    model: str = "tiny",
    device: str = "cpu",
    batch_size: int = 16,
    num_batches: int = 4,
    task: str = "mrpc",
    max_length: int = 128,
    seq_len: int | None = None,
    mixed_precision: str = "no",
    cache_dir: str | None = None,
    seed: int = 0,
) -> Setup:
    """Model + fixed batches. Text models tokenize the synthetic task (dynamic padding, our collator);
    ``roberta-large-random`` (or any model with ``seq_len``) gets random ids of exactly ``seq_len``."""
    from adasam_glue.data import GlueCollator, default_pad_multiple, train_order
    from adasam_glue.modeling import build_model, build_tokenizer
    from adasam_glue.tasks import get_task

    torch.manual_seed(seed)
    info = get_task(task)
    acc = get_accelerator(device, mixed_precision)
    pad_multiple = default_pad_multiple(None, mixed_precision)
    rows: list[dict[str, Any]] = []
    if model == "roberta-large-random":
        from transformers import RobertaConfig, RobertaForSequenceClassification

        cfg = RobertaConfig(  # roberta-large's architecture (config.json of the Hub model)
            vocab_size=50265,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            max_position_embeddings=514,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            num_labels=info.num_labels,
        )
        net = RobertaForSequenceClassification(cfg)
        pad_id, vocab = 1, cfg.vocab_size
        collator = GlueCollator(pad_token_id=pad_id, pad_to_multiple_of=pad_multiple)
        seq_len = seq_len or max_length
    else:
        mcfg = _model_cfg(model)
        ds = _synthetic_rows(task, max(batch_size * num_batches, 64), cache_dir)
        texts = [t for key in info.text_keys for t in list(ds[key])]
        tok = build_tokenizer(mcfg, texts=texts)
        net = build_model(mcfg, info, tok)
        pad_id, vocab = tok.pad_token_id or 0, len(tok)
        collator = GlueCollator(pad_token_id=pad_id, pad_to_multiple_of=pad_multiple)
        if seq_len is None:
            enc = tok(
                *[list(ds[k]) for k in info.text_keys], truncation=True, max_length=max_length, padding=False
            )
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            labels = list(ds["label"])
            all_rows = [
                {
                    **{k: enc[k][i] for k in keys},
                    "labels": float(labels[i]) if info.is_regression else int(labels[i]),
                }
                for i in range(len(labels))
            ]
            order = train_order([len(r["input_ids"]) for r in all_rows], batch_size, seed, 0)
            rows = [all_rows[i] for i in order[: batch_size * num_batches]]
    if rows:
        batches = [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    else:
        g = torch.Generator().manual_seed(seed)
        batches = []
        for _ in range(num_batches):
            ids = torch.randint(5, vocab, (batch_size, seq_len), generator=g)
            b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if info.is_regression:
                b["labels"] = torch.rand(batch_size, generator=g)
            else:
                b["labels"] = torch.randint(0, info.num_labels, (batch_size,), generator=g)
            batches.append(b)
    batches = [{k: v.to(acc.device) for k, v in b.items()} for b in batches]
    net.to(acc.device)
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
    prepared = acc.prepare(net)
    params = [p for p in net.parameters() if p.requires_grad]
    emb = sum(p.numel() for n, p in net.named_parameters() if p.requires_grad and "embeddings" in n)
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    padded = [b["input_ids"].numel() for b in batches]
    return Setup(
        model_name=model,
        model=prepared,
        raw_model=net,
        task=info,
        accelerator=acc,
        batches=batches,
        rows=rows,
        collator=collator,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        initial_state=initial,
        num_params=sum(p.numel() for p in params),
        num_nonembedding_params=sum(p.numel() for p in params) - emb,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        info={
            "task": task,
            "batch_size": batch_size,
            "num_batches": len(batches),
            "mean_padded_len": float(np.mean([b["input_ids"].shape[1] for b in batches])),
            "real_tokens_per_batch": float(np.mean(tokens)),
            "padded_tokens_per_batch": float(np.mean(padded)),
            "pad_to_multiple_of": pad_multiple,
            "mixed_precision": mixed_precision,
        },
    )


def _trainer_for(
    setup: Setup, optimizer: Any, name: str, sync_ascent: bool = False, run_dir: str | None = None
):
    """The real Trainer around ``optimizer`` (only ``train_step`` is used)."""
    from omegaconf import OmegaConf

    from adasam_glue.optim import get_optim_info
    from adasam_glue.schedules import build_batch_plan, build_scheduler
    from adasam_glue.trainer import Trainer

    info = get_optim_info(name)
    cfg = OmegaConf.create(
        {"optim": {"name": name, "sync_ascent": sync_ascent}, "trainer": {"max_grad_norm": None}}
    )
    scheduler = build_scheduler(optimizer, "linear", 100_000, 0)
    plan = build_batch_plan(setup.batch_size * setup.accelerator.num_processes, 100_000, None)
    return Trainer(
        cfg,
        setup.accelerator,
        setup.model,
        optimizer,
        info,
        scheduler,
        None,
        {},
        setup.task,
        Path(run_dir or tempfile.gettempdir()),
        plan,
        setup.batch_size,
    )


def _build(setup: Setup, name: str, **kw: Any) -> torch.optim.Optimizer:
    from adasam_glue.modeling import param_groups
    from adasam_glue.optim import build_optimizer, get_optim_info

    wd = kw.get("weight_decay", get_optim_info(name).defaults["weight_decay"])
    return build_optimizer(name, param_groups(setup.raw_model, wd), **kw)


class _OptTimer:
    """Wraps the optimizer's own calls (instance attributes shadow the methods) to time them."""

    def __init__(self, opt: torch.optim.Optimizer, device: torch.device) -> None:
        self.opt, self.device = opt, device
        self.total = 0.0
        self.base = 0.0
        self.active = False
        from adasam_glue.optim import SAMBase

        names = (
            ("prepare_ascent", "first_step", "second_step")
            if isinstance(opt, SAMBase)
            else ("step", "zero_grad")
        )
        for n in names:
            setattr(opt, n, self._wrap(getattr(opt, n), "total"))
        if isinstance(opt, SAMBase):
            opt._base_step = self._wrap(opt._base_step, "base")
        else:
            self.base_is_total = True

    def _wrap(self, fn: Callable, slot: str) -> Callable:
        # a method bound to the optimizer, so torch's LR scheduler can patch it (it reads ``step.__func__``)
        def timed(_opt, *a, **k):
            if not self.active:
                return fn(*a, **k)
            _sync(self.device)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _sync(self.device)
                setattr(self, slot, getattr(self, slot) + time.perf_counter() - t0)

        return types.MethodType(timed, self.opt)

    def take(self) -> tuple[float, float]:
        total, base = self.total, self.base
        if getattr(self, "base_is_total", False):
            base = total
        self.total = self.base = 0.0
        return total, base


def _variant_specs(names: Sequence[str] | None, forms: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, registry name, kwargs). ``forms``: also every non-default form (AdaSAM paper, LightSAM)."""
    from adasam_glue.optim import OPTIMIZERS

    out = []
    for name, info in OPTIMIZERS.items():
        if names and name not in names:
            continue
        out.append((name, name, {}))
        if forms:
            for f in info.forms():
                if f and any(info.defaults.get(k) != v for k, v in f.items()):
                    out.append((name + "[" + ",".join(f"{k}={v}" for k, v in f.items()) + "]", name, dict(f)))
    return out


def bench_optimizers(
    setup: Setup,
    names: Sequence[str] | None = None,
    rounds: int = 5,
    warmup: int = 1,
    forms: bool = False,
) -> list[dict[str, Any]]:
    """One row per optimizer: the real ``Trainer.train_step`` timed on ``setup``'s batches (module doc).

    Every optimizer (and its Trainer) lives for the whole benchmark on the one shared model; round r
    times one update of each, in an order rotated every round, on batch ``r mod n`` for all of them.
    ``ratio_to_base`` = median update time / the base's median update time; ``ratio_paired_median``, the
    median over rounds of the ratio within a round, is also given (robust to slow drift, not to spikes).
    """
    from adasam_glue.optim import SAMBase, get_optim_info

    specs = _variant_specs(names, forms)
    labels = [label for label, *_ in specs]
    times: dict[str, list[float]] = {k: [] for k in labels}
    opt_t: dict[str, list[float]] = {k: [] for k in labels}
    pert_t: dict[str, list[float]] = {k: [] for k in labels}
    mem: dict[str, dict[str, float]] = {}
    cuda_peak: dict[str, float] = {}
    dev, nb = setup.device, len(setup.batches)
    setup.reset()
    runners = {}
    for label, name, kw in specs:
        opt = _build(setup, name, **kw)
        timer = _OptTimer(opt, dev)  # before the scheduler wraps step()
        runners[label] = (opt, timer, _trainer_for(setup, opt, name))
    # warm-up (state allocation), then one untimed update with the allocation tracker
    for label, (opt, _timer, trainer) in runners.items():
        for i in range(warmup):
            trainer.train_step([setup.batches[i % nb]])
        tracker = AllocTracker()
        fns = ("prepare_ascent", "first_step", "second_step") if isinstance(opt, SAMBase) else ("step",)
        saved = {f: getattr(opt, f) for f in fns}

        def tracked(fn, _tr=tracker):
            def inner(*a, **k):
                with _tr.active():
                    return fn(*a, **k)

            return inner

        for f in fns:
            setattr(opt, f, tracked(saved[f]))
        before = _tensor_bytes(optimizer_buffers(opt))
        try:
            with warnings.catch_warnings():  # the LR scheduler warns that step() was replaced
                warnings.simplefilter("ignore")
                trainer.train_step([setup.batches[warmup % nb]])
        finally:
            for f in fns:
                setattr(opt, f, saved[f])
        state = _tensor_bytes(optimizer_buffers(opt))
        # with warmup=0, state allocated during this update stays alive: it is state, not transient (this
        # under-counts a transient that peaks before the state exists: use warmup >= 1 for exact figures)
        mem[label] = {"state_bytes": state, "transient_bytes": max(tracker.peak - (state - before), 0)}
    for r in range(rounds):
        b = setup.batches[(warmup + 1 + r) % nb]
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            opt, timer, trainer = runners[label]
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            timer.active = True
            _sync(dev)
            t0 = time.perf_counter()
            trainer.train_step([b])
            _sync(dev)
            times[label].append(time.perf_counter() - t0)
            timer.active = False
            total, base = timer.take()
            opt_t[label].append(total)
            pert_t[label].append(total - base)
            if dev.type == "cuda":
                cuda_peak[label] = max(cuda_peak.get(label, 0.0), torch.cuda.max_memory_allocated(dev) / MB)
    del runners
    setup.reset()
    rows = []
    med = {k: _median(ts) for k, ts in times.items()}
    pmb = setup.param_bytes / MB

    def accounted_peak(k: str) -> float:
        if dev.type == "cuda":
            return cuda_peak[k]
        return 2 * pmb + (mem[k]["state_bytes"] + mem[k]["transient_bytes"]) / MB  # params + grads + ...

    for label, name, kw in specs:
        info = get_optim_info(name)
        base = BASE_OF.get(name, "amsgrad")
        has_base = base in med and base != label
        t = med[label]
        state_mb = mem[label]["state_bytes"] / MB
        row = {
            "model": setup.model_name,
            "optimizer": label,
            "registry_name": name,
            "kwargs": kw,
            "two_pass": info.two_pass,
            "base": base,
            "ratio_to_base": t / med[base] if has_base else None,
            "ratio_paired_median": _median([x / y for x, y in zip(times[label], times[base])])
            if has_base
            else None,
            "step_time_median_s": t,
            "step_time_iqr_s": _iqr(times[label]),
            "n_timed": len(times[label]),
            "optim_time_median_s": _median(opt_t[label]),
            "optim_fraction": _median(opt_t[label]) / t,
            "perturbation_time_median_s": _median(pert_t[label]) if info.two_pass else 0.0,
            "perturbation_fraction": _median(pert_t[label]) / t if info.two_pass else 0.0,
            "peak_mem_mb": accounted_peak(label),
            "peak_mem_kind": "cuda_max_memory_allocated"
            if dev.type == "cuda"
            else "accounted_params_grads_state_transient",
            "state_mb": state_mb,
            "excess_state_over_base_mb": state_mb - mem[base]["state_bytes"] / MB if has_base else None,
            "excess_state_in_params": (state_mb - mem[base]["state_bytes"] / MB) / pmb if has_base else None,
            "optim_transient_peak_mb": mem[label]["transient_bytes"] / MB,
            "param_mb": pmb,
            "updates_per_s": 1.0 / t,
            "samples_per_s": setup.batch_size / t,
        }
        if has_base:
            row["excess_peak_over_base_mb"] = accounted_peak(label) - accounted_peak(base)
            row["excess_peak_in_params"] = row["excess_peak_over_base_mb"] / pmb
        rows.append(row)
    return rows


# ================================================================================== HF Trainer
def bench_hf_trainer(
    setup: Setup,
    rounds: int = 3,
    steps: int = 2,
    warmup: int = 1,
    out_dir: str | None = None,
    include_default: bool = True,
) -> dict[str, Any]:
    """This harness's step vs ``transformers.Trainer`` on the same model, batches and precision."""
    import datasets
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    if not setup.rows:
        return {"skipped": "needs tokenized rows (text models only)"}
    from adasam_glue.optim import get_optim_info

    d = get_optim_info("amsgrad").defaults
    lr, b1, b2, eps, wd = d["lr"], d["beta1"], d["beta2"], d["eps"], d["weight_decay"]
    n = warmup + steps
    rows = setup.rows[: n * setup.batch_size]
    while len(rows) < n * setup.batch_size:
        rows = rows + setup.rows[: n * setup.batch_size - len(rows)]
    our_batches = [
        {k: v.to(setup.device) for k, v in setup.collator(rows[i : i + setup.batch_size]).items()}
        for i in range(0, len(rows), setup.batch_size)
    ]
    hf_ds = datasets.Dataset.from_list(rows)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            _sync(setup.device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync(setup.device)
            self.times.append(time.perf_counter() - self.t0)

    def hf_block(optim: str, cls_kwargs: Any) -> list[float]:
        setup.reset()
        timer = StepTimer()
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            args = TrainingArguments(
                output_dir=tmp,
                per_device_train_batch_size=setup.batch_size,
                max_steps=n,
                learning_rate=lr,
                weight_decay=wd,
                adam_beta1=b1,
                adam_beta2=b2,
                adam_epsilon=eps,
                lr_scheduler_type="linear",
                warmup_steps=0,
                max_grad_norm=0.0,
                optim=optim,
                logging_strategy="no",
                save_strategy="no",
                eval_strategy="no",
                report_to=[],
                disable_tqdm=True,
                use_cpu=setup.device.type == "cpu",
                bf16=setup.mixed_precision == "bf16",
                train_sampling_strategy="sequential",
                dataloader_num_workers=0,
                dataloader_pin_memory=False,
                seed=0,
            )
            tr = HFTrainer(
                model=setup.raw_model,
                args=args,
                train_dataset=hf_ds,
                data_collator=setup.collator,
                callbacks=[timer],
                optimizer_cls_and_kwargs=cls_kwargs,
            )
            tr.remove_callback(PrinterCallback)
            tr.train()
        return timer.times[warmup:]

    def ours_block(kind: str) -> list[float]:
        setup.reset()
        if kind == "adamw":
            from adasam_glue.modeling import param_groups

            opt = torch.optim.AdamW(
                param_groups(setup.raw_model, wd), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd
            )
            name = "amsgrad"  # single-pass record: the trainer only reads two_pass
        else:
            opt, name = _build(setup, "amsgrad"), "amsgrad"
        trainer = _trainer_for(setup, opt, name)
        ts = []
        for i, b in enumerate(our_batches):
            _sync(setup.device)
            t0 = time.perf_counter()
            trainer.train_step([b])
            _sync(setup.device)
            if i >= warmup:
                ts.append(time.perf_counter() - t0)
        return ts

    amsgrad_cls = (torch.optim.AdamW, {"lr": lr, "betas": (b1, b2), "eps": eps, "amsgrad": True})
    variants: dict[str, Callable[[], list[float]]] = {
        "ours_adamw": lambda: ours_block("adamw"),
        "hf_adamw_torch": lambda: hf_block("adamw_torch", None),
        "ours_amsgrad": lambda: ours_block("amsgrad"),
        "hf_amsgrad": lambda: hf_block("adamw_torch", amsgrad_cls),
    }
    if include_default:
        variants["hf_default_adamw_torch_fused"] = lambda: hf_block("adamw_torch_fused", None)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            times[k].extend(fn())
    med = {k: _median(v) for k, v in times.items()}
    out = {
        "model": setup.model_name,
        "batch_size": setup.batch_size,
        "precision": setup.mixed_precision,
        "variants": {
            k: {
                "step_time_median_s": med[k],
                "step_time_iqr_s": _iqr(times[k]),
                "n_timed": len(times[k]),
                "samples_per_s": setup.batch_size / med[k],
            }
            for k in variants
        },
        "samples_per_s_ratio": {
            "adamw": med["hf_adamw_torch"] / med["ours_adamw"],
            "amsgrad": med["hf_amsgrad"] / med["ours_amsgrad"],
        },
        "timing": "ours: Trainer.train_step; HF: callback on_step_begin..on_step_end; set-up, batch fetch, logging excluded",
    }
    if include_default:
        out["samples_per_s_ratio"]["amsgrad_vs_hf_default_fused_adamw"] = (
            med["hf_default_adamw_torch_fused"] / med["ours_amsgrad"]
        )
    return out


# ================================================================================== optimizer math
def _reference_sam_first(params: list[torch.Tensor], rho: float, copy: list[torch.Tensor]) -> None:
    """Per-tensor reference of SAMBase.first_step for SAM's e = rho g/||g|| (Python loop, one op per tensor)."""
    sq = torch.zeros((), dtype=torch.float32, device=params[0].device)
    for p in params:
        sq += p.grad.float().norm() ** 2
    norm = sq.sqrt()
    scale = torch.where(norm > 0, rho / norm, torch.zeros_like(norm))
    for p, c in zip(params, copy):
        c.copy_(p)
        p.add_(p.grad * scale)


def _reference_sam_restore(params: list[torch.Tensor], copy: list[torch.Tensor]) -> None:
    for p, c in zip(params, copy):
        p.copy_(c)


def bench_optimizer_math(setup: Setup, repeats: int = 5) -> dict[str, Any]:
    """The SAM math alone on real gradients: foreach (the package) vs a per-tensor loop reference, and the
    base AMSGrad step with foreach off/on and fused."""
    from adasam_glue.modeling import param_groups
    from adasam_glue.optim import get_optim_info

    d = get_optim_info("adasam").defaults
    dev = setup.device
    setup.reset()
    b = setup.batches[0]
    losses = _trainer_for(setup, _build(setup, "amsgrad"), "amsgrad")._losses(b)
    losses.mean().backward()
    params = [p for p in setup.raw_model.parameters() if p.grad is not None]
    grads0 = [p.grad.detach().clone() for p in params]

    def restore_grads():
        for p, g in zip(params, grads0):
            p.grad = g.clone()

    adasam = _build(setup, "adasam")
    copy = [torch.empty_like(p) for p in params]
    amsgrad = {
        "foreach_false": torch.optim.AdamW(
            param_groups(setup.raw_model, d["weight_decay"]),
            lr=d["lr"],
            betas=(d["beta1"], d["beta2"]),
            eps=d["eps"],
            amsgrad=True,
            foreach=False,
        ),
        "foreach_true": torch.optim.AdamW(
            param_groups(setup.raw_model, d["weight_decay"]),
            lr=d["lr"],
            betas=(d["beta1"], d["beta2"]),
            eps=d["eps"],
            amsgrad=True,
            foreach=True,
        ),
    }
    try:
        amsgrad["fused"] = torch.optim.AdamW(
            param_groups(setup.raw_model, d["weight_decay"]),
            lr=d["lr"],
            betas=(d["beta1"], d["beta2"]),
            eps=d["eps"],
            amsgrad=True,
            fused=True,
        )
    except (RuntimeError, ValueError, TypeError):
        pass

    def timed(fn: Callable[[], None]) -> float:
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        return time.perf_counter() - t0

    results: dict[str, list[float]] = {
        k: []
        for k in (
            "package_first_step",
            "package_second_step_restore",
            "reference_first_step",
            "reference_restore",
        )
    }
    results |= {f"amsgrad_step_{k}": [] for k in amsgrad}
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for rep in range(repeats + 1):  # first repetition: warm-up (state allocation), dropped
            # package: first_step (norm, copy, w += e) then second_step (restore + base update)
            restore_grads()
            t1 = timed(lambda: adasam.first_step(zero_grad=False))
            adasam._base_step = lambda: None  # time the restore alone (instance attribute shadows the method)
            t2 = timed(lambda: adasam.second_step(zero_grad=False))
            del adasam._base_step
            # reference per-tensor loop of the perturbation + restore
            restore_grads()
            t3 = timed(lambda: _reference_sam_first(params, d["rho"], copy))
            t4 = timed(lambda: _reference_sam_restore(params, copy))
            ams = {k: timed(lambda o=o: o.step()) for k, o in amsgrad.items()}
            for p, s in zip(params, saved):
                p.copy_(s)
            if rep == 0:
                continue
            results["package_first_step"].append(t1)
            results["package_second_step_restore"].append(t2)
            results["reference_first_step"].append(t3)
            results["reference_restore"].append(t4)
            for k, v in ams.items():
                results[f"amsgrad_step_{k}"].append(v)
    setup.raw_model.zero_grad(set_to_none=True)
    med = {k: _median(v) for k, v in results.items()}
    pkg = med["package_first_step"] + med["package_second_step_restore"]
    ref = med["reference_first_step"] + med["reference_restore"]
    return {
        "model": setup.model_name,
        "num_tensors": len(params),
        "num_params": setup.num_params,
        "median_s": med,
        "perturbation_foreach_s": pkg,
        "perturbation_per_tensor_s": ref,
        "foreach_speedup": ref / pkg if pkg > 0 else None,
        "note": "perturbation = norm + weight copy + w += e (first_step) and the exact restore (second_step with "
        "the base update stubbed out); AMSGrad rows: one torch.optim.AdamW(amsgrad=True) step",
    }


# ================================================================================== padding
def _glue_like_lengths(task: str, n: int, max_length: int, seed: int = 0) -> np.ndarray:
    mean, p95, mx, _ = GLUE_LIKE[task]
    # log-normal with the given mean and 95th percentile: mu + 1.645 s = ln p95, mu + s^2/2 = ln mean
    a, c = 0.5, 1.645
    lp, lm = math.log(p95), math.log(mean)
    disc = c * c - 4 * a * (lp - lm)
    s = (c - math.sqrt(max(disc, 0.0))) / (2 * a) if disc >= 0 else 0.5
    mu = lm - s * s / 2
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(mu, s, n))
    return np.clip(np.round(x), 4, min(mx, max_length)).astype(np.int64)


def bench_padding(
    tokenizer_model: str = "tiny",
    tasks: Sequence[str] = ("mrpc", "rte", "sst2", "qnli"),
    max_lengths: Sequence[int] = (128, 512),
    glue_dir: str | None = None,
    cache_dir: str | None = None,
    glue_like_n: int = 20000,
    synthetic_n: int = 512,
) -> list[dict[str, Any]]:
    """Tokens processed per epoch: dynamic padding, + length grouping, vs padding to max_length."""
    from adasam_glue.data import pad_stats
    from adasam_glue.modeling import build_tokenizer
    from adasam_glue.tasks import get_task

    rows: list[dict[str, Any]] = []

    def add(source: str, task: str, lengths: np.ndarray, bs: int) -> None:
        for ml in max_lengths:
            ls = np.minimum(lengths, ml)
            plain = pad_stats(ls, bs, ml, group_by_length=False)
            grouped = pad_stats(ls, bs, ml, group_by_length=True)
            rows.append(
                {
                    "source": source,
                    "task": task,
                    "n": int(len(ls)),
                    "batch_size": bs,
                    "max_length": ml,
                    "mean_len": float(ls.mean()),
                    "real_tokens": plain["real_tokens"],
                    "max_length_tokens": plain["max_length_tokens"],
                    "dynamic_tokens": plain["dynamic_tokens"],
                    "grouped_tokens": grouped["dynamic_tokens"],
                    "dynamic_vs_max": plain["dynamic_tokens"] / plain["max_length_tokens"],
                    "grouped_vs_max": grouped["dynamic_tokens"] / plain["max_length_tokens"],
                    "grouped_vs_dynamic": grouped["dynamic_tokens"] / plain["dynamic_tokens"],
                    "pad_fraction_dynamic": plain["pad_fraction"],
                    "pad_fraction_grouped": grouped["pad_fraction"],
                }
            )

    for task in tasks:
        add(
            "glue_like",
            task,
            _glue_like_lengths(task, min(glue_like_n, GLUE_LIKE[task][3]), max(max_lengths)),
            TASK_BATCH[task],
        )
    tok = None
    for task in tasks:
        info = get_task(task)
        try:
            ds = _synthetic_rows(task, synthetic_n, cache_dir)
            if tok is None:
                texts = [t for key in info.text_keys for t in list(ds[key])]
                tok = build_tokenizer(_model_cfg(tokenizer_model), texts=texts)
            enc = tok(*[list(ds[k]) for k in info.text_keys], truncation=True, max_length=max(max_lengths))
            add(
                f"synthetic[{tokenizer_model}]",
                task,
                np.array([len(x) for x in enc["input_ids"]]),
                TASK_BATCH[task],
            )
        except Exception as e:  # informative only
            rows.append({"source": "synthetic", "task": task, "error": f"{type(e).__name__}: {e}"})
        if glue_dir:
            try:
                from adasam_glue.data import load_glue

                ds = load_glue(task, source="tsv", data_dir=glue_dir, cache_dir=cache_dir)["train"]
                if tok is None:
                    raise RuntimeError("no tokenizer")
                enc = tok(
                    *[list(ds[k]) for k in info.text_keys], truncation=True, max_length=max(max_lengths)
                )
                add(
                    f"glue_tsv[{tokenizer_model}]",
                    task,
                    np.array([len(x) for x in enc["input_ids"]]),
                    TASK_BATCH[task],
                )
            except Exception as e:
                rows.append({"source": "glue_tsv", "task": task, "error": f"{type(e).__name__}: {e}"})
    return rows


# ================================================================================== data parallel
DDP_VARIANTS = (  # (label, optimizer, sync_ascent, micro-batches per update)
    ("sgd", "sgd", False, 1),
    ("amsgrad", "amsgrad", False, 1),
    ("sam", "sam", False, 1),
    ("adasam", "adasam", False, 1),
    ("adasam_sync_ascent", "adasam", True, 1),
    ("adasam_accum2", "adasam", False, 2),
    ("adasam_sync_ascent_accum2", "adasam", True, 2),
)


def _ddp_worker(rank: int, world: int, port: int, out_path: str, steps: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    import torch.distributed as dist
    from accelerate import Accelerator
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from transformers import BertConfig, BertForSequenceClassification

    from adasam_glue.modeling import param_groups
    from adasam_glue.optim import build_optimizer
    from adasam_glue.tasks import get_task

    acc = Accelerator(cpu=True)
    assert acc.num_processes == world, f"expected {world} processes, got {acc.num_processes}"
    explicit: list[int] = []
    real_all_reduce = dist.all_reduce

    in_hook = [False]

    def counting_all_reduce(tensor, *a, **k):
        if not in_hook[0]:  # the comm hook's own all-reduce is counted by the hook
            explicit.append(tensor.numel() * tensor.element_size())
        return real_all_reduce(tensor, *a, **k)

    dist.all_reduce = counting_all_reduce
    task = get_task("mrpc")
    results = {}
    for label, name, sync_ascent, accum in DDP_VARIANTS:
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            num_labels=2,
        )
        net = BertForSequenceClassification(cfg)
        opt = build_optimizer(name, param_groups(net, 0.0))
        model = acc.prepare(net)
        buckets: list[int] = []

        def hook(state, bucket, _b=buckets):
            buf = bucket.buffer()
            _b.append(buf.numel() * buf.element_size())
            in_hook[0] = True
            try:
                return default_hooks.allreduce_hook(None, bucket)
            finally:
                in_hook[0] = False

        model.register_comm_hook(state=None, hook=hook)
        setup = Setup(
            model_name="tiny-ddp",
            model=model,
            raw_model=net,
            task=task,
            accelerator=acc,
            batches=[],
            rows=[],
            collator=None,
            batch_size=4,
            mixed_precision="no",
            initial_state={},
            num_params=0,
            num_nonembedding_params=0,
            param_bytes=sum(p.numel() * 4 for p in net.parameters()),
        )
        trainer = _trainer_for(setup, opt, name, sync_ascent=sync_ascent)
        g = torch.Generator().manual_seed(100 + rank)
        per_update = []
        for step in range(steps + 1):
            mbs = []
            for _ in range(accum):
                ids = torch.randint(5, 1000, (4, 16), generator=g)
                mbs.append(
                    {
                        "input_ids": ids,
                        "attention_mask": torch.ones_like(ids),
                        "labels": torch.randint(0, 2, (4,), generator=g),
                    }
                )
            buckets.clear()
            explicit.clear()
            trainer.train_step(mbs)
            if step > 0:  # the first update rebuilds DDP's buckets
                per_update.append(
                    {
                        "bucket_allreduces": len(buckets),
                        "bucket_bytes": sum(buckets),
                        "explicit_allreduces": len(explicit),
                        "explicit_bytes": sum(explicit),
                    }
                )
        results[label] = {
            "optimizer": name,
            "sync_ascent": sync_ascent,
            "micro_batches": accum,
            "param_bytes": setup.param_bytes,
            "allreduces_per_update": _median(
                [u["bucket_allreduces"] + u["explicit_allreduces"] for u in per_update]
            ),
            "bucket_allreduces_per_update": _median([u["bucket_allreduces"] for u in per_update]),
            "allreduce_bytes_per_update": _median(
                [u["bucket_bytes"] + u["explicit_bytes"] for u in per_update]
            ),
            "explicit_allreduces_per_update": _median([u["explicit_allreduces"] for u in per_update]),
            "grad_syncs_per_update": _median([u["bucket_bytes"] for u in per_update]) / setup.param_bytes,
            "per_update": per_update,
        }
        acc.free_memory(model)
        del model, trainer, opt
    if rank == 0:
        Path(out_path).write_text(json.dumps(results))
    dist.barrier()


def bench_ddp(steps: int = 3, timeout_s: float = 300) -> dict[str, Any]:
    """2-process CPU gloo run; all-reduces per update by optimizer (module doc)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        ctx = mp.start_processes(
            _ddp_worker, args=(2, port, str(out), steps), nprocs=2, join=False, start_method="spawn"
        )
        deadline = time.time() + timeout_s
        while not ctx.join(timeout=5):
            if time.time() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(f"DDP benchmark did not finish in {timeout_s}s")
        results = json.loads(out.read_text())
    return {
        "world_size": 2,
        "backend": "gloo",
        "launcher": "torch.multiprocessing spawn + accelerate.Accelerator(cpu=True)",
        "model": "BERT 2x64 (tiny)",
        "counting": "DDP comm hook (register_comm_hook: one call per gradient bucket all-reduce) + wrapper around "
        "torch.distributed.all_reduce (explicit all-reduces)",
        "wall_s": time.perf_counter() - t0,
        "variants": results,
    }


# ================================================================================== GPU
def peak_bf16_flops(device_name: str) -> float | None:
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def bench_gpu(
    model: str = "roberta-large-random",
    batch_sizes: Sequence[int] = (16, 32),
    seq_lens: Sequence[int] = (128, 256),
    names: Sequence[str] = ("amsgrad", "adasam"),
    rounds: int = 3,
    steps: int = 3,
    warmup: int = 2,
    mixed_precision: str = "bf16",
) -> dict[str, Any]:
    """Tokens/s, MFU and peak memory on CUDA (module doc). Returns ``{"skipped": why}`` without a GPU."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    name = torch.cuda.get_device_name(0)
    peak = peak_bf16_flops(name)
    rows = []
    for bs in batch_sizes:
        for sl in seq_lens:
            setup = build_setup(
                model, "cuda", batch_size=bs, num_batches=4, seq_len=sl, mixed_precision=mixed_precision
            )
            res = bench_optimizers(setup, names=list(names), rounds=rounds * steps, warmup=warmup)
            for r in res:
                passes = 2 if r["two_pass"] else 1
                tokens = bs * sl
                flops = 6 * setup.num_params * tokens * passes
                t = r["step_time_median_s"]
                rows.append(
                    {
                        "model": model,
                        "device_name": name,
                        "optimizer": r["optimizer"],
                        "batch_size": bs,
                        "seq_len": sl,
                        "precision": mixed_precision,
                        "step_time_median_s": t,
                        "step_time_iqr_s": r["step_time_iqr_s"],
                        "tokens_per_s": tokens / t,
                        "samples_per_s": bs / t,
                        "passes_per_update": passes,
                        "model_flops_per_update": flops,
                        "num_params": setup.num_params,
                        "mfu": flops / t / peak if peak else None,
                        "mfu_nonembedding": 6 * setup.num_nonembedding_params * tokens * passes / t / peak
                        if peak
                        else None,
                        "peak_mem_mb": r["peak_mem_mb"],
                        "ratio_to_base": r["ratio_to_base"],
                        "optim_fraction": r["optim_fraction"],
                    }
                )
            del setup
            torch.cuda.empty_cache()
    return {
        "device_name": name,
        "peak_bf16_flops": peak,
        "rows": rows,
        "flops": "6 N tokens per forward+backward pass (attention score FLOPs ignored), x2 for SAM-family",
    }


# ================================================================================== sharpness cost
def bench_sharpness_cost(
    setup: Setup,
    num_samples: int = 32,
    power_iters: int = 5,
    trace_probes: int = 2,
    rhos: Sequence[float] = (0.01,),
    ascent_steps: int = 1,
) -> dict[str, Any]:
    try:
        from adasam_glue.sharpness import bench_sharpness, build_loss_fn
    except ImportError as e:
        return {"skipped": f"adasam_glue.sharpness.bench_sharpness unavailable: {e}"}
    setup.reset()
    rows = [r for b in setup.batches for r in _split(b)][:num_samples]
    bs = setup.batch_size
    batches = [_stack(rows[i : i + bs]) for i in range(0, len(rows), bs)]
    cfg = {
        "num_samples": len(rows),
        "batch_size": bs,
        "power_iters": power_iters,
        "power_tol": 1e-3,
        "top_k": 1,
        "trace_probes": trace_probes,
        "rhos": list(rhos),
        "ascent_steps": ascent_steps,
        "measures": ["eigenvalue", "trace", "worst_case"],
    }
    setup.raw_model.eval()
    try:
        out = bench_sharpness(setup.raw_model, batches, build_loss_fn(setup.task.num_labels), cfg)
    finally:
        setup.raw_model.train()
    return {"model": setup.model_name, "settings": cfg, **out}


def _split(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    n = len(batch["labels"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def _stack(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


# ================================================================================== env and main
def _git_commit() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        c = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        d = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (c.stdout.strip() or None, bool(d.stdout.strip())) if c.returncode == 0 else (None, None)


def environment(device: str) -> dict[str, Any]:
    import accelerate
    import transformers

    commit, dirty = _git_commit()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_avg_at_start": load,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "adasam_glue.bench", *sys.argv[1:]]),
    }


SECTIONS = ("optimizers", "hf_trainer", "optimizer_math", "padding", "ddp", "gpu", "sharpness")


def run_bench(
    quick: bool = True,
    out: str | Path = "results/bench",
    models: Sequence[str] | None = None,
    device: str = "cpu",
    glue_dir: str | None = None,
    sections: Sequence[str] = SECTIONS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the selected sections; write ``out/bench_{quick,full}.json``; return the result."""
    t_start = time.perf_counter()
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    env = environment(device)
    mp = "bf16" if device == "cuda" else "no"
    if models is None:
        models = ["roberta-large-random"] if device == "cuda" else ["tiny", "minilm"]
    res: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "mode": "quick" if quick else "full",
        "rows": [],
        "env": env,
        "setups": {},
        "section_seconds": {},
    }
    cache = tempfile.mkdtemp(prefix="adasam_bench_")
    path = Path(out) / f"bench_{'quick' if quick else 'full'}.json"

    def timed_section(key: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        log(f"[bench] {key} ...")
        try:
            value = fn()
        except Exception as e:  # one broken section must not lose the others
            value = {"error": f"{type(e).__name__}: {e}"}
            log(f"[bench] {key} FAILED: {value['error']}")
        res["section_seconds"][key] = round(time.perf_counter() - t0, 2)
        log(f"[bench] {key} done in {res['section_seconds'][key]:.1f}s")
        return value

    # sizes: batch, batches, optimizer rounds, HF-comparison rounds and timed steps per block, warm-up
    sizes = {
        "tiny": (16, 4, 31 if quick else 61, 3 if quick else 5, 3 if quick else 5, 1),
        "minilm": (16, 4, 9 if quick else 15, 3 if quick else 5, 2 if quick else 4, 1),
        "roberta-large": (16, 4, 5, 3, 3, 2),
        "roberta-large-random": (16, 4, 5, 3, 3, 2),
    }
    for model in models:
        _bench_model(res, model, sizes[model], quick, device, mp, cache, sections, timed_section)
        atomic_partial(path, res)
    if "padding" in sections:
        res["padding"] = timed_section(
            "padding",
            lambda: bench_padding(
                "tiny",
                tasks=("mrpc", "rte", "sst2", "qnli") if quick else tuple(GLUE_LIKE),
                glue_dir=glue_dir,
                cache_dir=cache,
                glue_like_n=20000 if quick else 400000,
            ),
        )
    if "ddp" in sections:
        res["ddp"] = timed_section("ddp", lambda: bench_ddp(steps=3))
    if "gpu" in sections:
        res["gpu"] = timed_section(
            "gpu",
            lambda: (
                bench_gpu("roberta-large-random", rounds=2 if quick else 3)
                if device == "cuda"
                else {"skipped": "--device cpu"}
            ),
        )
    res["summary"] = summarize(res)
    res["env"]["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    write_json(path, res)
    log(f"[bench] wrote {path} ({res['env']['wall_time_s']:.0f}s)")
    return res


def _bench_model(res, model, size, quick, device, mp, cache, sections, timed_section) -> None:
    """The per-model sections of :func:`run_bench` (rows, optimizer math, HF Trainer, sharpness cost)."""
    bs, nb, rounds, hf_rounds, hf_steps, warmup = size
    setup = timed_section(
        f"setup[{model}]",
        lambda: build_setup(
            model,
            device,
            batch_size=bs,
            num_batches=nb,
            mixed_precision=mp,
            cache_dir=cache,
            seq_len=128 if model == "roberta-large-random" else None,
        ),
    )
    if isinstance(setup, dict):
        res["setups"][model] = setup
        return
    res["setups"][model] = {"num_params": setup.num_params, "param_mb": setup.param_bytes / MB, **setup.info}
    if "optimizers" in sections:
        rows = timed_section(
            f"optimizers[{model}]",
            lambda: bench_optimizers(setup, rounds=rounds, warmup=warmup, forms=not quick),
        )
        if isinstance(rows, list):
            res["rows"].extend(rows)
        else:
            res.setdefault("errors", {})[f"optimizers[{model}]"] = rows
    if "optimizer_math" in sections:
        res.setdefault("optimizer_math", []).append(
            timed_section(
                f"optimizer_math[{model}]", lambda: bench_optimizer_math(setup, repeats=5 if quick else 10)
            )
        )
    if "hf_trainer" in sections and (model == "tiny" or (model == "minilm" and not quick)):
        res.setdefault("hf_trainer", []).append(
            timed_section(
                f"hf_trainer[{model}]",
                lambda: bench_hf_trainer(
                    setup, rounds=hf_rounds, steps=hf_steps, warmup=warmup, include_default=True
                ),
            )
        )
    if "sharpness" in sections and model in ("tiny", "minilm"):
        res.setdefault("sharpness", []).append(
            timed_section(
                f"sharpness[{model}]",
                lambda: bench_sharpness_cost(
                    setup,
                    num_samples=(32 if model == "tiny" else 16) if quick else 64,
                    power_iters=(3 if model == "tiny" else 2) if quick else 20,
                    trace_probes=2 if quick else 10,
                ),
            )
        )


def summarize(res: dict[str, Any], limit: float = 2.15) -> dict[str, Any]:
    rows = [r for r in res.get("rows", []) if r.get("two_pass")]
    over = [
        {"model": r["model"], "optimizer": r["optimizer"], "ratio_to_base": r["ratio_to_base"]}
        for r in rows
        if r.get("ratio_to_base") is not None and r["ratio_to_base"] > limit
    ]
    out: dict[str, Any] = {
        "ratio_limit": limit,
        "sam_rows": len(rows),
        "sam_rows_over_limit": over,
        "max_ratio_to_base": max((r["ratio_to_base"] for r in rows if r.get("ratio_to_base")), default=None),
    }
    hf = res.get("hf_trainer") or []
    out["hf_samples_per_s_ratio"] = {
        h["model"]: h["samples_per_s_ratio"] for h in hf if "samples_per_s_ratio" in h
    }
    out["optim_fraction_adasam"] = {
        r["model"]: r["optim_fraction"] for r in res.get("rows", []) if r["optimizer"] == "adasam"
    }
    ddp = (res.get("ddp") or {}).get("variants", {})
    out["ddp_allreduces_per_update"] = {k: v["allreduces_per_update"] for k, v in ddp.items()}
    return out


def write_json(path: Path, obj: dict[str, Any]) -> None:
    from adasam_glue.records import atomic_write_text

    def default(o: Any) -> Any:
        if hasattr(o, "item"):
            return o.item()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return str(o)
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    atomic_write_text(path, json.dumps(clean(obj), indent=1, default=default) + "\n")


def atomic_partial(path: Path, res: dict[str, Any]) -> None:
    """Write what is measured so far (``"partial": true``), so an interrupted run keeps its figures."""
    write_json(path, {**res, "partial": True})


# ================================================================================== Markdown
#: Why a row can stay over the limit on a CPU, and what removes it: rendered under "Why" for every row over
#: the limit, with that row's measured figures (so the explanation sits next to the numbers it explains).
OVER_LIMIT_CAUSES: dict[str, tuple[str, str]] = {
    "rsam": (
        "drawing N(0, 1) noise for all parameters each update (one `torch.randn` of the parameter count, "
        "mt19937 + Box-Muller on one core: about 100 ms for MiniLM's 22.7M parameters) is compute, not "
        "memory traffic, and no rewrite of the same draws makes it cheaper",
        "on a GPU the same draw (Philox) takes well under 1 ms and the update is memory bound (~1% of the "
        "step); on CPU, more intra-op threads for the draw (`--threads`), or a cheaper noise law (a change "
        "of method, not done)",
    ),
    "asam": (
        "T = |w| + eta enters twice (||T g|| before, T^2 g after the global norm), so the weight and "
        "gradient cross memory about twice more than SAM's (w, g and T^2 g streamed on one core at "
        "~14 GB/s)",
        "a single fused kernel per pass (CUDA/Triton, or torch.compile on the perturbation) or GPU "
        "memory bandwidth (~4.8 TB/s on an H200) makes the extra passes ~1% of the step",
    ),
    "gsam": (
        "the descent projection needs two global reductions (<g, g_p>, ||g_p||^2) before the combination "
        "(1 + alpha c) g_p - alpha g can be written: two more memory passes over two parameter-sized "
        "tensors than SAM",
        "fuse the combination into the base optimizer's kernel (a custom fused AdamW reading g and g_p), "
        "or GPU memory bandwidth, where the extra passes are ~1% of the step",
    ),
    "esam": (
        "the same memory passes as SAM plus the top-gamma sample selection; within the timing noise of "
        "this shared machine",
        "none needed beyond SAM's; on a GPU ~1%",
    ),
    "lightsam": (
        "its own moment updates for ascent and descent (both fused kernels); within timing noise",
        "none needed beyond SAM's; on a GPU ~1%",
    ),
}
_GENERIC_CAUSE = (
    "optimizer work beyond SAM's (memory passes over parameter-sized tensors on one CPU core)",
    "fused kernels or GPU memory bandwidth, where the optimizer is ~1% of the step",
)


def _f(x: Any, fmt: str = "{:.2f}", none: str = "—") -> str:
    if x is None or isinstance(x, str) or (isinstance(x, float) and not math.isfinite(x)):
        return none if not isinstance(x, str) else x
    return fmt.format(x)


def _pct(x: Any) -> str:
    return _f(x, "{:.0%}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _implied_ratio(row: dict[str, Any], base: dict[str, Any] | None) -> float | None:
    """The ratio the row's optimizer time implies: ``2 + (t_opt - 2 t_opt_base) / t_base``, i.e. two of the
    base's steps without its optimizer plus this row's optimizer time (robust to a noisy forward/backward)."""
    try:
        t_b, o_b, o = base["step_time_median_s"], base["optim_time_median_s"], row["optim_time_median_s"]
    except (KeyError, TypeError):
        return None
    return 2 + (o - 2 * o_b) / t_b if t_b else None


def render_markdown(res: dict[str, Any], source: str = "results/bench/bench_quick.json") -> str:
    """The Markdown report of a bench JSON (``docs/bench.md``): every figure comes from ``res``."""
    env = res.get("env", {})
    summary = res.get("summary") or summarize(res)
    limit = summary.get("ratio_limit", 2.15)
    cmd = env.get("command", "python -m adasam_glue.bench --quick --out results/bench")
    commit = env.get("git_commit") or "unknown"
    load = env.get("load_avg_at_start")
    L = ["# Benchmarks: what a SAM update costs", ""]
    L += [
        f"Generated by `python -m adasam_glue.bench --render {source}` from the JSON written by `{cmd}` "
        "(do not edit by hand: rerun the benchmark and render again).",
        "",
        "```",
        "make bench-quick            # = HF_HUB_OFFLINE=1 python -m adasam_glue.bench --quick --out results/bench",
        "make bench                  # full mode (more rounds, all forms, HF comparison on MiniLM too)",
        "python -m adasam_glue.bench --device cuda --model roberta-large-random   # GPU: tokens/s, MFU, memory",
        f"python -m adasam_glue.bench --render {source} --md docs/bench.md   # this page",
        "```",
        "",
        f"Environment: torch {env.get('torch')}, transformers {env.get('transformers')}, accelerate "
        f"{env.get('accelerate')}, Python {env.get('python')}, {env.get('cpu_count')} CPUs"
        + (f" (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start)" if load else "")
        + f", {env.get('torch_threads')} intra-op thread(s), device {env.get('device')}"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f", git {str(commit)[:7]}{' (dirty working tree)' if env.get('git_dirty') else ''}, "
        f"{str(env.get('date', ''))[:10]}, {_f(env.get('wall_time_s'), '{:.0f}')} s wall. Timings are "
        "medians; the compared variants run round-robin in one process, so ratios are measured under the "
        "same load.",
        "",
    ]
    # ---------------------------------------------------------------- per optimizer
    rows = res.get("rows") or []
    setups = res.get("setups") or {}
    L += ["## Per optimizer: the real `Trainer.train_step`", ""]
    desc = []
    for m, st in setups.items():
        if isinstance(st, dict) and "num_params" in st:
            n = sum(1 for r in rows if r["model"] == m and r.get("n_timed"))
            timed = next((r["n_timed"] for r in rows if r["model"] == m), None)
            desc.append(
                f"{m}: {st['num_params'] / 1e6:.2f}M parameters, batch {st.get('batch_size')}, mean padded "
                f"length {_f(st.get('mean_padded_len'), '{:.0f}')} tokens, {timed} timed rounds, {n} rows"
            )
    if desc:
        L += ["; ".join(desc) + ".", ""]
    L += [
        f"`ratio_to_base` = median step / median step of the base (SAM vs SGD, every other two-pass row vs "
        f"AMSGrad); 2.0 is the two-pass limit, the acceptance limit is {limit}. Paired ratio = median of the "
        "per-round ratios; implied = 2 + (optimizer time - 2 x the base's optimizer time) / the base's step "
        "(two base steps without their optimizer plus this row's optimizer: robust to forward/backward "
        "noise). Optimizer time = time in "
        "`prepare_ascent`/`first_step`/`second_step` (or `step`/`zero_grad`); perturbation = that minus the "
        "base update. State = tensors kept between updates; excess in parameter sizes over the base. "
        "Transient = peak of tensors allocated and freed inside one update. Peak (CPU) = params + grads + "
        "state + transient.",
        "",
    ]
    by_row = {(r["model"], r["optimizer"]): r for r in rows}
    body = []
    for r in rows:
        over = r.get("ratio_to_base") is not None and r["ratio_to_base"] > limit
        body.append(
            [
                r["model"],
                r["optimizer"],
                r.get("base") if r.get("ratio_to_base") is not None else "—",
                ("**" + _f(r.get("ratio_to_base")) + "**") if over else _f(r.get("ratio_to_base")),
                _f(r.get("ratio_paired_median")),
                _f(
                    _implied_ratio(r, by_row.get((r["model"], r.get("base"))))
                    if r.get("ratio_to_base")
                    else None
                ),
                _f(r["step_time_median_s"] * 1e3, "{:.1f}"),
                _f(r.get("step_time_iqr_s", 0) * 1e3, "{:.1f}"),
                _f(r.get("optim_time_median_s", 0) * 1e3, "{:.1f}"),
                _pct(r.get("optim_fraction")),
                _pct(r.get("perturbation_fraction")),
                _f(r.get("state_mb")),
                _f(r.get("excess_state_in_params"), "{:.1f}"),
                _f(r.get("optim_transient_peak_mb")),
                _f(r.get("peak_mem_mb"), "{:.1f}"),
                _f(r.get("samples_per_s"), "{:.1f}"),
            ]
        )
    L += _table(
        [
            "model",
            "optimizer",
            "base",
            "ratio_to_base",
            "paired ratio",
            "implied by optimizer time",
            "step (ms)",
            "IQR (ms)",
            "optimizer (ms)",
            "optimizer / step",
            "perturbation / step",
            "state (MB)",
            "excess state (× params)",
            "transient (MB)",
            "peak, accounted (MB)",
            "samples/s",
        ],
        body,
    )
    over = summary.get("sam_rows_over_limit") or []
    L.append("")
    if over:
        L.append(
            f"**Summary: {len(over)} of {summary.get('sam_rows')} SAM-family rows over {limit}**: "
            + ", ".join(f"{o['model']} {o['optimizer']} {o['ratio_to_base']:.2f}" for o in over)
            + f" (max {_f(summary.get('max_ratio_to_base'))}; see [Why](#why-rows-over-the-limit))."
        )
    else:
        L.append(
            f"**Summary: every SAM-family row ({summary.get('sam_rows')}) is at or below {limit}** "
            f"(max {_f(summary.get('max_ratio_to_base'))})."
        )
    L.append("")
    # ---------------------------------------------------------------- why
    if over:
        by = {(r["model"], r["optimizer"]): r for r in rows}
        L += ["## Why rows over the limit", ""]
        for o in over:
            r = by.get((o["model"], o["optimizer"]), {})
            ref = by.get((o["model"], "adasam" if r.get("base") == "amsgrad" else "sam"), {})
            cause, fix = OVER_LIMIT_CAUSES.get(r.get("registry_name", o["optimizer"]), _GENERIC_CAUSE)
            extra, implied = "", _implied_ratio(r, by.get((o["model"], r.get("base"))))
            if implied is not None and implied <= limit:
                cause = (
                    f"timing noise: its optimizer time implies {implied:.2f} (two passes of the base's "
                    f"forward/backward + {r['optim_time_median_s'] * 1e3:.0f} ms), at or below {limit}; a "
                    f"model's rows share {r.get('n_timed')} timed rounds and the base's median moved"
                )
                fix = "more rounds (`make bench`) or a quiet machine"
            elif implied is not None:
                extra = f" Implied by its optimizer time alone: {implied:.2f}."
            if ref is not r and None not in (r.get("optim_time_median_s"), ref.get("optim_time_median_s")):
                extra += (
                    f" Optimizer time {r['optim_time_median_s'] * 1e3:.0f} ms per update vs "
                    f"{ref['optim_time_median_s'] * 1e3:.0f} ms for {ref['optimizer']}."
                )
            L.append(
                f"- **{o['model']} {o['optimizer']} ({o['ratio_to_base']:.2f})**: cause: {cause}.{extra} "
                f"Fix: {fix}."
            )
        L.append("")
    # ---------------------------------------------------------------- optimizer math
    om = [x for x in res.get("optimizer_math") or [] if isinstance(x, dict) and "median_s" in x]
    if om:
        L += ["## Optimizer math alone (ms, median, on the model's real gradients)", ""]
        body = []
        for x in om:
            md = x["median_s"]
            body.append(
                [
                    x["model"],
                    str(x.get("num_tensors")),
                    f"{md['package_first_step'] * 1e3:.2f} / {md['package_second_step_restore'] * 1e3:.2f}",
                    f"{md['reference_first_step'] * 1e3:.2f} / {md['reference_restore'] * 1e3:.2f}",
                    _f(x.get("foreach_speedup")),
                    _f(md.get("amsgrad_step_foreach_false", float("nan")) * 1e3),
                    _f(md.get("amsgrad_step_foreach_true", float("nan")) * 1e3),
                    _f(md.get("amsgrad_step_fused", float("nan")) * 1e3),
                ]
            )
        L += _table(
            [
                "model",
                "tensors",
                "package first_step / restore",
                "per-tensor loop first_step / restore",
                "package speed-up",
                "AMSGrad foreach=False",
                "foreach=True",
                "fused=True",
            ],
            body,
        )
        L += ["", str(om[0].get("note", "")), ""]
    # ---------------------------------------------------------------- HF trainer
    hf = [h for h in res.get("hf_trainer") or [] if isinstance(h, dict) and "variants" in h]
    if hf:
        L += ["## Harness vs Hugging Face `transformers.Trainer`", ""]
        body = []
        for h in hf:
            for k, v in h["variants"].items():
                body.append(
                    [
                        h["model"],
                        str(h.get("batch_size")),
                        str(h.get("precision")),
                        k,
                        f"{v['step_time_median_s'] * 1e3:.2f} (n={v.get('n_timed')})",
                        f"{v['samples_per_s']:.0f}",
                    ]
                )
        L += _table(["model", "batch", "precision", "variant", "step (ms, median)", "samples/s"], body)
        L.append("")
        for h in hf:
            ratio = h.get("samples_per_s_ratio", {})
            L.append(
                f"{h['model']}: samples/s ratio ours / HF: **"
                + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
                + "** (target >= 1.0). "
                + str(h.get("timing", ""))
                + "."
            )
        L.append("")
    # ---------------------------------------------------------------- padding
    pad = [r for r in res.get("padding") or [] if isinstance(r, dict) and "dynamic_vs_max" in r]
    if pad:
        L += ["## Padding: tokens per epoch relative to padding every row to max_length", ""]
        body = [
            [
                r["source"],
                r["task"],
                str(r["batch_size"]),
                str(r["max_length"]),
                f"{r['mean_len']:.1f}",
                f"{r['dynamic_vs_max']:.3f}",
                f"{r['grouped_vs_max']:.3f}",
                f"{r['grouped_vs_dynamic']:.2f}",
                f"{r['pad_fraction_dynamic']:.2f} / {r['pad_fraction_grouped']:.2f}",
            ]
            for r in pad
        ]
        L += _table(
            [
                "source",
                "task",
                "batch",
                "max_length",
                "mean length",
                "dynamic / max",
                "grouped / max",
                "grouped / dynamic",
                "pad share dynamic / grouped",
            ],
            body,
        )
        L += ["", "`glue_like`: log-normal lengths matching approximate GLUE statistics (`GLUE_LIKE`).", ""]
    # ---------------------------------------------------------------- DDP
    ddp = res.get("ddp") or {}
    if isinstance(ddp, dict) and ddp.get("variants"):
        L += [
            f"## Data parallel: all-reduces per update ({ddp.get('world_size')} processes, "
            f"{ddp.get('backend')}, {ddp.get('model')})",
            "",
        ]
        body = [
            [
                k,
                _f(v.get("allreduces_per_update"), "{:g}"),
                _f(v.get("allreduce_bytes_per_update", 0) / 1e3, "{:.0f} kB"),
                _f(v.get("explicit_allreduces_per_update"), "{:g}"),
                _f(v.get("grad_syncs_per_update"), "{:g}"),
            ]
            for k, v in ddp["variants"].items()
        ]
        L += _table(
            [
                "variant",
                "gradient all-reduces / update",
                "bytes / update",
                "explicit all-reduces",
                "gradient syncs",
            ],
            body,
        )
        L += ["", f"Counting: {ddp.get('counting')}.", ""]
    # ---------------------------------------------------------------- sharpness
    sh = [x for x in res.get("sharpness") or [] if isinstance(x, dict) and "seconds" in x]
    if sh:
        L += ["## Sharpness measurement cost (`adasam_glue.sharpness.bench_sharpness`)", ""]
        body = [
            [
                x["model"],
                str(x.get("num_samples")),
                str(x.get("hvp_count")),
                f"{x['seconds']:.2f}",
                _f(x.get("seconds_per_hvp"), "{:.3f}"),
            ]
            for x in sh
        ]
        L += _table(["model", "samples", "HVPs", "seconds", "seconds / HVP"], body)
        L.append("")
    # ---------------------------------------------------------------- GPU
    gpu = res.get("gpu") or {}
    L += ["## GPU", ""]
    if isinstance(gpu, dict) and gpu.get("rows"):
        body = [
            [
                r["optimizer"],
                str(r["batch_size"]),
                str(r["seq_len"]),
                f"{r['tokens_per_s']:.0f}",
                _pct(r.get("mfu")),
                _f(r.get("ratio_to_base")),
                f"{r['peak_mem_mb']:.0f}",
            ]
            for r in gpu["rows"]
        ]
        L += [f"{gpu.get('device_name')}, {gpu['rows'][0].get('precision')}.", ""]
        L += _table(
            ["optimizer", "batch", "seq", "tokens/s", "MFU", "ratio_to_base", "peak memory (MB)"], body
        )
    else:
        why = gpu.get("skipped") or gpu.get("error") or "section not run"
        L.append(f"Not measured in this run ({why}): `--device cuda` reports tokens/s, MFU and peak memory.")
    L.append("")
    return "\n".join(L)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adasam_glue.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="< 5 minutes on 2 CPU cores")
    p.add_argument(
        "--out", default="results/bench", help="output folder (bench_quick.json / bench_full.json)"
    )
    p.add_argument(
        "--model",
        action="append",
        choices=["tiny", "minilm", "roberta-large", "roberta-large-random"],
        help="model(s) for the per-optimizer rows (default: tiny and minilm on CPU, "
        "roberta-large-random on CUDA); repeatable",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--glue-dir", default=None, help="GLUE TSV root (glue_data) for the padding section")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument(
        "--render",
        metavar="JSON",
        default=None,
        help="do not benchmark: render the Markdown report of a bench JSON (stdout, or --md)",
    )
    p.add_argument("--md", metavar="OUT", default=None, help="with --render: write the Markdown here")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: 1 on CPU, torch's own on CUDA). On a shared machine, 2 "
        "OpenMP threads on 2 cores stall at every barrier when another process holds a core "
        "(measured: 4-10x slower steps, IQR larger than the median); 1 thread gives stable ratios",
    )
    a = p.parse_args(argv)
    if a.render:
        text = render_markdown(json.loads(Path(a.render).read_text()), source=a.render)
        if a.md:
            from adasam_glue.records import atomic_write_text

            atomic_write_text(Path(a.md), text)
        else:
            sys.stdout.write(text)
        return 0
    threads = a.threads or (1 if a.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    run_bench(a.quick, a.out, a.model, a.device, a.glue_dir, a.sections, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
