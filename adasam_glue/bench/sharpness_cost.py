"""What measuring sharpness costs: seconds and Hessian-vector products of the trainer's measurement.

The measurement is :func:`adasam_glue.sharpness.measure_sharpness`, exactly as the trainer calls it
(:func:`~adasam_glue.sharpness.sharpness_for_training`: the fixed training subset of
:func:`~adasam_glue.sharpness.subset_batches`, the training loss), with the settings of
``conf/sharpness/default.yaml`` overridden by the benchmark's sizes. The row is its ``cost`` block
plus seconds per HVP (from the trace measure: one HVP per probe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import OmegaConf

from adasam_glue.bench.harness import Setup, compose


def sharpness_cost(
    model: torch.nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], loss_fn: Any, cfg: Any
) -> dict[str, Any]:
    """One row: the cost (seconds, HVPs, gradients, loss evaluations) of one measurement on ``model``."""
    from adasam_glue.sharpness import measure_sharpness

    block = measure_sharpness(model, batches, loss_fn, cfg)
    cost, settings = block["cost"], block["settings"]
    trace_s = cost["seconds_by_measure"].get("trace")
    return {
        **{k: cost[k] for k in ("seconds", "hvp_count", "grad_count", "loss_count", "num_batches")},
        "num_samples": settings["num_samples_used"],
        "num_params": settings["num_params"],
        "seconds_per_hvp": None if trace_s is None else trace_s / settings["trace_probes"],
        "seconds_by_measure": cost["seconds_by_measure"],
    }


def bench_sharpness_cost(
    setup: Setup,
    num_samples: int = 32,
    power_iters: int = 5,
    trace_probes: int = 2,
    rhos: Sequence[float] = (0.01,),
    ascent_steps: int = 1,
) -> dict[str, Any]:
    """The measurement on ``setup``'s model and training split (text models only)."""
    from adasam_glue.sharpness import build_loss_fn, subset_batches

    if setup.loaders is None:
        return {"skipped": "needs the tokenized training split (text models only)"}
    cfg = compose(
        [
            *setup.overrides,
            f"sharpness.num_samples={num_samples}",
            f"sharpness.batch_size={setup.batch_size}",
            f"sharpness.power_iters={power_iters}",
            f"sharpness.trace_probes={trace_probes}",
            f"sharpness.rhos=[{','.join(str(r) for r in rhos)}]",
            f"sharpness.ascent_steps={ascent_steps}",
        ]
    ).sharpness
    setup.reset()
    n = min(num_samples, len(setup.loaders.train_dataset))
    batches = subset_batches(
        setup.loaders.train_dataset, setup.loaders.collator, n, cfg.batch_size, cfg.subset_seed
    )
    batches = [{k: v.to(setup.device) for k, v in b.items()} for b in batches]
    row = sharpness_cost(setup.raw_model, batches, build_loss_fn(setup.task.num_labels), cfg)
    return {"model": setup.name, "settings": OmegaConf.to_container(cfg, resolve=True), **row}
