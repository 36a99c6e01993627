"""The two sides of the parity benchmark: one fine-tuning run through this harness and one through
``transformers.Trainer``, each in its own process (:func:`run_in_worker`), timed by the same
:class:`~adasam_glue.bench.timing.TrainClock`.

Both sides start from the same place, built by the run's own setup steps from the same composed config:
the same seed before the model is built (so the same classification-head initialisation), the same
tokenizer and tokenization, the same training subset (``data.max_train_samples``, seeded by the run's
seed) and the same dev sets. Then each trains its own way:

- ours: :func:`adasam_glue.run.run` (``optim=amsgrad``: ``torch.optim.AdamW(amsgrad=True)`` with
  ``conf/optim/amsgrad.yaml``'s betas, eps and weight decay; the run's sampler and collator);
- HF: ``transformers.Trainer`` with ``optimizer_cls_and_kwargs=(torch.optim.AdamW, {amsgrad: True,
  the same lr/betas/eps, the same fused setting})``, ``weight_decay`` through ``TrainingArguments`` (HF
  builds its own decay / no-decay groups: :func:`no_decay_check` compares them with ours), linear
  warmup/decay over the same number of updates, ``max_grad_norm=0`` (no clipping), HF's own samplers
  (``random``, ``group_by_length``) and ``DataCollatorWithPadding`` (dynamic, or ``padding="max_length"``
  for run_glue's default).

Dev metrics are computed by :func:`adasam_glue.metrics.compute_metrics` on both sides (HF's metric
names: ``accuracy``, ``f1``, ``matthews_correlation``, ``pearson``, ``spearmanr``): the comparison is of
training, not of metric code.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import torch


def run_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a worker process: one thread, quiet libraries, then the run ``spec`` names."""
    torch.set_num_threads(int(spec.get("threads", 1)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    from adasam_glue.bench.harness import compose

    t0 = time.perf_counter()
    cfg = compose(spec["overrides"])
    out = ours_run(cfg, spec) if spec["framework"] == "ours" else hf_run(cfg, spec)
    keep = ("framework", "variant", "task", "seed", "max_steps")
    return {**{k: spec.get(k) for k in keep}, **out, "process_wall_s": time.perf_counter() - t0}


def ours_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``run(cfg)`` under the clock; the final dev metrics from the record."""
    from adasam_glue.bench.timing import TrainClock
    from adasam_glue.run import run

    with TrainClock() as clock:
        record = run(cfg, overrides=spec["overrides"])
    return {
        "status": record.get("status"),
        "updates": record.get("optimizer_updates"),
        "metrics": (record.get("final") or {}).get("metrics", {}),
        "throughput": clock.throughput(),
    }


def _hf_args(cfg: Any, spec: dict[str, Any], out_dir: str, warmup: int) -> Any:
    from transformers import TrainingArguments

    o = cfg.optim
    steps = spec.get("max_steps")
    return TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=int(cfg.task.batch_size),
        per_device_eval_batch_size=int(cfg.trainer.eval_batch_size),
        num_train_epochs=float(cfg.task.epochs),
        max_steps=int(steps) if steps else -1,
        learning_rate=float(o.lr),
        weight_decay=float(o.weight_decay),
        adam_beta1=float(o.beta1),
        adam_beta2=float(o.beta2),
        adam_epsilon=float(o.eps),
        lr_scheduler_type="linear",
        warmup_steps=warmup,
        max_grad_norm=0.0,  # no clipping, as trainer.max_grad_norm=null
        train_sampling_strategy="group_by_length" if spec["variant"] == "grouped" else "random",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=bool(cfg.trainer.cpu),
        dataloader_pin_memory=False,
        seed=int(cfg.seed),
    )


def hf_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``transformers.Trainer`` on what the run's setup steps build (module doc)."""
    from transformers import DataCollatorWithPadding
    from transformers import Trainer as HFTrainer
    from transformers.trainer_callback import PrinterCallback

    from adasam_glue import run as run_mod
    from adasam_glue.bench.timing import TrainClock
    from adasam_glue.metrics import compute_metrics
    from adasam_glue.tasks import get_task

    task = get_task(cfg.task.name)
    acc = run_mod.setup_accelerator(cfg)  # seeds exactly as run() does before the model is built
    tokenizer, model = run_mod.setup_model_and_tokenizer(cfg, task)
    plan, _, loaders = run_mod.setup_data(cfg, task, tokenizer, acc)
    ours_opt, _ = run_mod.setup_optimizer_and_schedule(cfg, model, plan)  # only read: lr, betas, eps, fused
    g = ours_opt.param_groups[0]
    kwargs = {
        "lr": g.get("initial_lr", g["lr"]),
        "betas": tuple(g["betas"]),
        "eps": g["eps"],
        "amsgrad": True,
        "fused": g.get("fused"),
    }
    del ours_opt
    if spec["variant"] == "pad_to_max":  # run_glue's default: every row padded to max_seq_length
        collator = DataCollatorWithPadding(
            tokenizer, padding="max_length", max_length=int(cfg.task.max_length)
        )
    else:
        collator = DataCollatorWithPadding(tokenizer)
    total = run_mod.total_updates(cfg)
    with tempfile.TemporaryDirectory(prefix="adasam_hf_") as tmp:
        trainer = HFTrainer(
            model=model,
            args=_hf_args(cfg, spec, tmp, run_mod.warmup_updates(cfg, total)),
            train_dataset=loaders.train_dataset,
            data_collator=collator,
            processing_class=tokenizer,
            optimizer_cls_and_kwargs=(torch.optim.AdamW, kwargs),
        )
        trainer.remove_callback(PrinterCallback)  # its per-log prints; logging is off on our side too
        with TrainClock() as clock:
            out = trainer.train()
        metrics: dict[str, float] = {}
        if not spec.get("max_steps"):
            for split, ds in loaders.eval_datasets.items():
                pred = trainer.predict(ds)
                metrics |= compute_metrics(task.name, pred.predictions, pred.label_ids, split=split)
        check = no_decay_check(trainer, model, float(cfg.optim.weight_decay))
    return {
        "status": "completed",
        "updates": int(out.global_step),
        "metrics": metrics,
        "throughput": clock.throughput(),
        "hf_train_samples_per_second": out.metrics.get("train_samples_per_second"),
        "no_decay_check": check,
    }


def no_decay_check(trainer: Any, model: torch.nn.Module, weight_decay: float) -> dict[str, Any]:
    """HF's decay rule (``Trainer.get_decay_parameter_names``) vs :func:`adasam_glue.modeling.param_groups`."""
    from adasam_glue.modeling import param_groups

    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    ours = {
        names[id(p)] for g in param_groups(model, weight_decay) if g["weight_decay"] == 0 for p in g["params"]
    }
    hf = set(names.values()) - set(trainer.get_decay_parameter_names(model))
    return {
        "equal": ours == hf,
        "no_decay_params": len(ours),
        "only_ours": sorted(ours - hf)[:20],
        "only_hf": sorted(hf - ours)[:20],
    }


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0
