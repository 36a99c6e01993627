"""One update of this harness vs one step of ``transformers.Trainer``, on identical batches.

The quick, step-level comparison (seconds; the end-to-end training comparison with dev metrics is
:mod:`adasam_glue.bench.hf_parity`). Same model and initial weights, same rows in the same order
(HF: ``train_sampling_strategy="sequential"`` over the rows in our batch order, our collator), same
precision, no clipping, linear schedule, and the same optimizer: ``torch.optim.AdamW(amsgrad=True)``
with the hyperparameters and implementation (fused or not) that ``conf/optim/amsgrad.yaml`` builds,
given to HF through ``optimizer_cls_and_kwargs``. HF's default ``adamw_torch_fused`` (no AMSGrad) is
timed for information. HF's step is timed by a callback from ``on_step_begin`` to ``on_step_end``
(forward, backward, optimizer, scheduler, zero_grad); ours is ``Trainer.train_step``. Batch fetching,
set-up and logging are outside both. ``samples_per_s_ratio`` = ours / HF.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, build_trainer, optimizer_overrides
from adasam_glue.bench.timing import iqr, median, sync


def bench_hf_trainer(
    setup: Setup,
    rounds: int = 3,
    steps: int = 2,
    warmup: int = 1,
    out_dir: str | None = None,
    include_default: bool = True,
) -> dict[str, Any]:
    """Timings of ``ours_amsgrad``, ``hf_amsgrad`` (and ``hf_default_adamw_torch_fused``), round-robin."""
    if not setup.rows:
        return {"skipped": "needs tokenized rows (text models only)"}
    n = warmup + steps
    rows = (setup.rows * (1 + n * setup.batch_size // len(setup.rows)))[: n * setup.batch_size]
    ours_opt, _, _ = build_trainer(setup, optimizer_overrides("amsgrad"))
    g = ours_opt.param_groups[0]
    hp = {
        "lr": g.get("initial_lr", g["lr"]),
        "betas": tuple(g["betas"]),
        "eps": g["eps"],
        "weight_decay": g["weight_decay"],
        "fused": bool(g.get("fused")),
    }
    our_batches = [
        {k: v.to(setup.device) for k, v in setup.collator(rows[i : i + setup.batch_size]).items()}
        for i in range(0, len(rows), setup.batch_size)
    ]
    amsgrad = (
        torch.optim.AdamW,
        {
            "lr": hp["lr"],
            "betas": hp["betas"],
            "eps": hp["eps"],
            "amsgrad": True,
            "fused": hp["fused"] or None,
        },
    )
    variants: dict[str, Callable[[], list[float]]] = {
        "ours_amsgrad": lambda: _ours_block(setup, our_batches, warmup),
        "hf_amsgrad": lambda: _hf_block(setup, rows, n, warmup, hp, "adamw_torch", amsgrad, out_dir),
    }
    if include_default:
        variants["hf_default_adamw_torch_fused"] = lambda: _hf_block(
            setup, rows, n, warmup, hp, "adamw_torch_fused", None, out_dir
        )
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            times[k].extend(fn())
    setup.reset()
    return _result(setup, hp, times, include_default)


def _ours_block(setup: Setup, batches: list[dict[str, torch.Tensor]], warmup: int) -> list[float]:
    """``Trainer.train_step`` over ``batches`` from the initial weights; the times after ``warmup``."""
    setup.reset()
    _, _, trainer = build_trainer(setup, optimizer_overrides("amsgrad"))
    out = []
    for i, b in enumerate(batches):
        sync(setup.device)
        t0 = time.perf_counter()
        trainer.train_step([b])
        sync(setup.device)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def _result(
    setup: Setup, hp: dict[str, Any], times: dict[str, list[float]], include_default: bool
) -> dict[str, Any]:
    med = {k: median(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "model": setup.name,
        "batch_size": setup.batch_size,
        "precision": str(setup.cfg.trainer.mixed_precision),
        "optimizer": {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()},
        "variants": {
            k: {
                "step_time_median_s": med[k],
                "step_time_iqr_s": iqr(times[k]),
                "n_timed": len(times[k]),
                "samples_per_s": setup.batch_size / med[k],
            }
            for k in times
        },
        "samples_per_s_ratio": {"amsgrad": med["hf_amsgrad"] / med["ours_amsgrad"]},
        "timing": "ours: Trainer.train_step; HF: callback on_step_begin..on_step_end",
    }
    if include_default:
        out["samples_per_s_ratio"]["vs_hf_default_adamw_torch_fused"] = (
            med["hf_default_adamw_torch_fused"] / med["ours_amsgrad"]
        )
    return out


def _hf_block(
    setup: Setup,
    rows: list[dict[str, Any]],
    n: int,
    warmup: int,
    hp: dict[str, Any],
    optim: str,
    cls_kwargs: Any,
    out_dir: str | None,
) -> list[float]:
    """``n`` HF Trainer steps over ``rows`` in order; the per-step times after ``warmup``."""
    import datasets
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(setup.device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(setup.device)
            self.times.append(time.perf_counter() - self.t0)

    setup.reset()
    timer = StepTimer()
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=setup.batch_size,
            max_steps=n,
            learning_rate=hp["lr"],
            weight_decay=hp["weight_decay"],
            adam_beta1=hp["betas"][0],
            adam_beta2=hp["betas"][1],
            adam_epsilon=hp["eps"],
            lr_scheduler_type="linear",
            warmup_steps=0,
            max_grad_norm=0.0,
            optim=optim,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=setup.device.type == "cpu",
            bf16=str(setup.cfg.trainer.mixed_precision) == "bf16",
            train_sampling_strategy="sequential",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            seed=0,
        )
        trainer = HFTrainer(
            model=setup.raw_model,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            data_collator=setup.collator,
            callbacks=[timer],
            optimizer_cls_and_kwargs=cls_kwargs,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return timer.times[warmup:]
