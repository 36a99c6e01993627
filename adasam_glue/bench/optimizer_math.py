"""The SAM math alone, on the model's real gradients: is the package's perturbation as cheap as it can be?

Timed, each a median over repeats on the same gradients and weights (restored between repeats):

- ``package_first_step``: AdaSAM's ``first_step`` (global norm, weight copy, ``w += e``);
- ``package_second_step``: its ``second_step`` (exact restore from the copy + the AMSGrad update);
- ``base_step``: the same AMSGrad update alone (the optimizer ``conf/optim/amsgrad.yaml`` builds, with
  the state one update old), so ``package_restore = second_step - base_step`` without touching the
  optimizer's internals;
- ``reference_first_step`` / ``reference_restore``: a per-tensor Python loop of the same equations;
- ``amsgrad_step_{foreach_false,foreach_true,fused}``: ``torch.optim.AdamW(amsgrad=True)`` with each of
  torch's implementations (``foreach=False`` is torch's CPU default).

``foreach_speedup`` = reference (first step + restore) / package (first step + restore).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, build_trainer, optimizer_overrides
from adasam_glue.bench.timing import median, sync


def _reference_first_step(params: list[torch.Tensor], rho: float, copy: list[torch.Tensor]) -> None:
    """SAM's e = rho g / ||g|| applied tensor by tensor (one op per tensor, Python loop)."""
    sq = torch.zeros((), dtype=torch.float32, device=params[0].device)
    for p in params:
        sq += p.grad.float().norm() ** 2
    norm = sq.sqrt()
    scale = torch.where(norm > 0, rho / norm, torch.zeros_like(norm))
    for p, c in zip(params, copy):
        c.copy_(p)
        p.add_(p.grad * scale)


def _reference_restore(params: list[torch.Tensor], copy: list[torch.Tensor]) -> None:
    for p, c in zip(params, copy):
        p.copy_(c)


def _amsgrad_impls(setup: Setup, hp: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """``torch.optim.AdamW(amsgrad=True)`` per implementation, with the YAML's hyperparameters."""
    from adasam_glue.modeling import param_groups

    out: dict[str, torch.optim.Optimizer] = {}
    impls = {"foreach_false": {"foreach": False}, "foreach_true": {"foreach": True}, "fused": {"fused": True}}
    for key, impl in impls.items():
        try:
            out[key] = torch.optim.AdamW(
                param_groups(setup.raw_model, hp["weight_decay"]),
                lr=hp["lr"],
                betas=hp["betas"],
                eps=hp["eps"],
                amsgrad=True,
                **impl,
            )
        except (RuntimeError, ValueError, TypeError):  # fused is unavailable on some devices/dtypes
            pass
    return out


def bench_optimizer_math(setup: Setup, repeats: int = 5) -> dict[str, Any]:
    """Medians of the timings in the module doc (the first repetition is a dropped warm-up)."""
    from adasam_glue.modeling import per_sample_loss

    dev = setup.device
    setup.reset()
    adasam, _, _ = build_trainer(setup, optimizer_overrides("adasam"))
    base, _, _ = build_trainer(setup, optimizer_overrides("amsgrad"))
    rho = float(adasam.param_groups[0]["rho"])
    g = base.param_groups[0]  # the decayed group: the YAML's lr (before the schedule), betas, eps, decay
    hp = {
        "lr": g.get("initial_lr", g["lr"]),
        "betas": g["betas"],
        "eps": g["eps"],
        "weight_decay": g["weight_decay"],
    }
    amsgrad = _amsgrad_impls(setup, hp)
    batch = setup.batches[0]
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
    per_sample_loss(setup.model(**inputs).logits, batch["labels"], setup.task.num_labels).mean().backward()
    params = [p for p in setup.raw_model.parameters() if p.grad is not None]
    grads0 = [p.grad.detach().clone() for p in params]
    saved = [p.detach().clone() for p in params]
    copy = [torch.empty_like(p) for p in params]

    def restore_grads() -> None:
        for p, g in zip(params, grads0):
            p.grad = g.clone()

    def timed(fn: Callable[[], Any]) -> float:
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        return time.perf_counter() - t0

    keys = (
        "package_first_step",
        "package_second_step",
        "base_step",
        "reference_first_step",
        "reference_restore",
    )
    results: dict[str, list[float]] = {k: [] for k in keys} | {f"amsgrad_step_{k}": [] for k in amsgrad}
    with torch.no_grad():
        for rep in range(repeats + 1):  # repetition 0 allocates state: dropped
            restore_grads()
            t = {"package_first_step": timed(lambda: adasam.first_step(zero_grad=False))}
            t["package_second_step"] = timed(lambda: adasam.second_step(zero_grad=False))
            for p, s in zip(params, saved):
                p.copy_(s)
            t["base_step"] = timed(base.step)
            restore_grads()
            t["reference_first_step"] = timed(lambda: _reference_first_step(params, rho, copy))
            t["reference_restore"] = timed(lambda: _reference_restore(params, copy))
            for k, o in amsgrad.items():
                t[f"amsgrad_step_{k}"] = timed(o.step)
            for p, s in zip(params, saved):
                p.copy_(s)
            if rep:
                for k, v in t.items():
                    results[k].append(v)
    setup.raw_model.zero_grad(set_to_none=True)
    setup.reset()
    med = {k: median(v) for k, v in results.items()}
    restore = max(med["package_second_step"] - med["base_step"], 0.0)
    pkg = med["package_first_step"] + restore
    ref = med["reference_first_step"] + med["reference_restore"]
    return {
        "model": setup.name,
        "num_tensors": len(params),
        "num_params": sum(p.numel() for p in params),
        "rho": rho,
        "median_s": med | {"package_restore": restore},
        "perturbation_foreach_s": pkg,
        "perturbation_per_tensor_s": ref,
        "foreach_speedup": ref / pkg if pkg > 0 else None,
    }
