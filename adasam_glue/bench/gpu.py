"""GPU figures: step time, tokens/s, model FLOPs utilisation and peak memory per optimizer and precision,
and whether a mixed-precision update agrees with the fp32 one.

FLOPs per update = passes x tokens x (6 N + 12 L H S): ``N`` the non-embedding parameters (embedding
lookups are not matmuls), ``L`` layers, ``H`` hidden size, ``S`` the padded sequence length (attention
scores and their use, forward + backward, as in PaLM's appendix B); ``passes`` 2 for the SAM family.
MFU = FLOPs / step time / the device's peak dense FLOP/s for the precision (:data:`PEAK_FLOPS`).

Agreement (:func:`update_agreement`): one update of each optimizer from the same weights and batch,
dropout off, through the trainer's real ``train_step``, in fp32 and in the mixed precision; compared
on the weight change dw of the fp32 master weights: ``norm_ratio`` = ||dw_mixed|| / ||dw_fp32||
(a loss scale left in the update shows as 65536) and ``cosine``. An update the trainer skips (fp16
overflow) is retried on the same batch, up to three times, as a run would continue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, build_setup, build_trainer, optimizer_overrides
from adasam_glue.bench.step_cost import bench_optimizers

#: peak dense tensor-core FLOP/s (bf16 = fp16) by device-name substring, first match wins
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
)
#: agreement thresholds per precision: (|norm_ratio - 1| at most, cosine at least)
AGREEMENT_TOL = {"fp16": (0.05, 0.99), "bf16": (0.1, 0.97)}
AGREEMENT_OPTIMIZERS = ("sgd", "amsgrad", "sam", "adasam")


def peak_flops(device_name: str, precision: str = "bf16") -> float | None:
    """The device's peak dense FLOP/s in ``precision`` (``None`` if unknown or fp32)."""
    if precision not in ("bf16", "fp16"):
        return None
    for key, flops in PEAK_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def flops_per_update(setup: Setup, batch: dict[str, torch.Tensor], two_pass: bool) -> float:
    """Model FLOPs of one update on ``batch`` (module doc)."""
    c = setup.raw_model.config
    b, s = batch["input_ids"].shape
    n = setup.info["num_nonembedding_params"]
    per_token = 6 * n + 12 * c.num_hidden_layers * c.hidden_size * s
    return (2 if two_pass else 1) * b * s * per_token


def gpu_rows(setup: Setup, names: Sequence[str] | None, rounds: int, warmup: int) -> list[dict[str, Any]]:
    """:func:`~adasam_glue.bench.step_cost.bench_optimizers` (one optimizer alive at a time) with
    tokens/s, MFU and the device added to each row."""
    device_name = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "cpu"
    precision = str(setup.cfg.trainer.mixed_precision)
    peak = peak_flops(device_name, precision)
    rows = bench_optimizers(
        setup, names=names, rounds=rounds, warmup=warmup, schedule="blocks", record_errors=True
    )
    batch = setup.batches[0]
    tokens = batch["input_ids"].numel()
    for r in rows:
        r |= {
            "device_name": device_name,
            "precision": precision,
            "batch_size": setup.batch_size,
            "seq_len": int(batch["input_ids"].shape[1]),
        }
        if "error" in r:
            continue
        t = r["step_time_median_s"]
        flops = flops_per_update(setup, batch, r["two_pass"])
        r |= {
            "tokens_per_s": tokens / t,
            "passes_per_update": 2 if r["two_pass"] else 1,
            "model_flops_per_update": flops,
            "peak_flops": peak,
            "mfu": flops / t / peak if peak else None,
        }
    return rows


def bench_gpu(
    model: str = "roberta-large-random",
    batch_sizes: Sequence[int] = (16, 32),
    seq_lens: Sequence[int] = (512,),
    precisions: Sequence[str] = ("bf16",),
    names: Sequence[str] | None = None,
    rounds: int = 3,
    warmup: int = 1,
    device: str = "cuda",
    cache_dir: str | None = None,
    budget_s: float | None = None,
) -> dict[str, Any]:
    """Rows for every (precision, batch, length); a precision that cannot be set up gives an
    ``unsupported`` entry instead of ending the check, and configurations left when ``budget_s`` is
    spent are listed under ``not_run``."""
    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    rows: list[dict[str, Any]] = []
    unsupported: list[dict[str, Any]] = []
    not_run: list[dict[str, Any]] = []
    deadline = time.perf_counter() + budget_s if budget_s else math.inf
    for precision in precisions:
        for bs in batch_sizes:
            for sl in seq_lens:
                if time.perf_counter() > deadline:
                    not_run.append({"precision": precision, "batch_size": bs, "seq_len": sl})
                    continue
                try:
                    setup = build_setup(
                        model,
                        device,
                        batch_size=bs,
                        num_batches=3,
                        seq_len=sl,
                        mixed_precision=precision,
                        cache_dir=cache_dir,
                    )
                except Exception as e:  # e.g. a precision this device or Accelerate refuses
                    unsupported.append(
                        {
                            "precision": precision,
                            "batch_size": bs,
                            "seq_len": sl,
                            "error": f"{type(e).__name__}: {e}",
                        }
                    )
                    continue
                rows += gpu_rows(setup, names, rounds, warmup)
                del setup
                if device == "cuda":
                    torch.cuda.empty_cache()
    return {"model": model, "rows": rows, "unsupported": unsupported, "not_run": not_run}


def _weight_change(setup: Setup, name: str, tries: int = 4) -> tuple[list[torch.Tensor], int]:
    """The fp32 weight change of one real ``train_step`` of ``name`` from the initial weights, dropout
    off; retried on the same batch while the trainer skips the update (weights unchanged)."""
    setup.reset()
    setup.raw_model.eval()  # no dropout: both precisions see the same function
    _, _, trainer = build_trainer(setup, optimizer_overrides(name))
    w0 = [p.detach().float().clone() for p in setup.params]
    for attempt in range(1, tries + 1):
        trainer.train_step([setup.batches[0]])
        dw = [p.detach().float() - w for p, w in zip(setup.params, w0)]
        if any(bool(d.abs().max() > 0) for d in dw):
            return dw, attempt
    return dw, tries


def update_agreement(
    model: str,
    device: str,
    precisions: Sequence[str],
    names: Sequence[str] = AGREEMENT_OPTIMIZERS,
    batch_size: int = 16,
    seq_len: int = 128,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Mixed precision vs fp32 for one update of each optimizer (module doc). Setups are built one after
    the other (Accelerate holds one precision per process)."""
    ref_setup = build_setup(model, device, batch_size, 1, seq_len=seq_len, cache_dir=cache_dir)
    ref = {n: _weight_change(ref_setup, n)[0] for n in names}
    del ref_setup
    out: dict[str, Any] = {"model": model, "batch_size": batch_size, "seq_len": seq_len, "precisions": {}}
    for precision in precisions:
        max_dev, min_cos = AGREEMENT_TOL[precision]
        entry: dict[str, Any] = {"tolerance": {"max_norm_ratio_deviation": max_dev, "min_cosine": min_cos}}
        try:
            setup = build_setup(
                model, device, batch_size, 1, seq_len=seq_len, mixed_precision=precision, cache_dir=cache_dir
            )
            per = {}
            for n in names:
                dw, attempts = _weight_change(setup, n)
                per[n] = _compare(dw, ref[n], attempts, max_dev, min_cos)
            del setup
        except Exception as e:  # the trainer or Accelerate refuses this precision: say so, do not crash
            entry |= {"supported": False, "reason": f"{type(e).__name__}: {e}"}
            out["precisions"][precision] = entry
            continue
        bad = [n for n, v in per.items() if not v["agrees"]]
        entry |= {"optimizers": per, "supported": not bad}
        if bad:
            entry["reason"] = "the trainer's update disagrees with fp32 for " + ", ".join(
                f"{n} (norm ratio {per[n]['norm_ratio']:.4g}, cosine {per[n]['cosine']:.4f})" for n in bad
            )
        out["precisions"][precision] = entry
    return out


def _compare(
    dw: list[torch.Tensor], ref: list[torch.Tensor], attempts: int, max_dev: float, min_cos: float
) -> dict[str, Any]:
    num = sum(float((a.double() * b.double()).sum()) for a, b in zip(dw, ref))
    na = math.sqrt(sum(float(a.double().square().sum()) for a in dw))
    nb = math.sqrt(sum(float(b.double().square().sum()) for b in ref))
    diff = math.sqrt(sum(float((a.double() - b.double()).square().sum()) for a, b in zip(dw, ref)))
    ratio = na / nb if nb > 0 else float("nan")
    cos = num / (na * nb) if na > 0 and nb > 0 else float("nan")
    finite = math.isfinite(ratio) and math.isfinite(cos)
    return {
        "norm_ratio": ratio,
        "cosine": cos,
        "relative_error": diff / nb if nb > 0 else float("nan"),
        "attempts": attempts,
        "agrees": finite and abs(ratio - 1) <= max_dev and cos >= min_cos,
    }
