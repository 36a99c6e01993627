"""The paper-scale GPU check, under five minutes on one GPU: RoBERTa-large with random weights (nothing
downloaded) at the paper's batch sizes (16, 32) and length 512, in bf16 and fp16.

- Rows: every registry optimizer (one alive at a time): step time, ratio to its base, peak memory, tokens/s
  and MFU. FLOPs per update = passes x tokens x (6 N + 12 L H S) (PaLM, appendix B: ``N`` non-embedding
  parameters, ``L`` layers, ``H`` hidden size, ``S`` padded length; 2 passes for the SAM family).
- Agreement: one update of SGD, AMSGrad, SAM and AdaSAM from the same weights and batch, dropout off,
  through the trainer's real ``train_step`` in fp32 and in the mixed precision, compared on the change of
  the fp32 master weights (``norm_ratio`` = ||dw_mixed|| / ||dw_fp32||: a loss scale left in the update
  shows as 65536; ``cosine``). An update the trainer skips (fp16 overflow) is retried on the same batch.
  A precision the trainer refuses or whose update disagrees is ``supported: false`` with the reason.

``dry``: the same code on CPU with the tiny model in seconds (the test of this command), written to
``gpu_check_dry.json`` so that it never replaces GPU figures.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.harness import Setup, build_setup, build_trainer, environment, error_text, write_json
from adasam_glue.bench.step_cost import bench_optimizers

#: peak dense tensor-core FLOP/s (bf16 = fp16) by device-name substring, first match wins
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))
#: agreement thresholds per precision: (|norm_ratio - 1| at most, cosine at least)
AGREEMENT_TOL = {"fp16": (0.05, 0.99), "bf16": (0.1, 0.97)}
AGREEMENT_OPTIMIZERS = ("sgd", "amsgrad", "sam", "adasam")
PRECISIONS = ("bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class Mode:
    """The check on a GPU or the CPU dry run (written as the JSON's ``settings``)."""

    model: str
    device: str
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    rounds: int
    agreement: tuple[int, int]  #: batch size and length of the agreement update
    budget_s: float | None  #: for the rows; those past it are listed as ``not_run``


MODES = {
    "gpu": Mode("roberta-large-random", "cuda", (16, 32), (512,), 3, (16, 128), 200),
    "dry": Mode("tiny", "cpu", (4,), (32,), 1, (4, 32), None),
}


def peak_flops(device_name: str, precision: str = "bf16") -> float | None:
    """The device's peak dense FLOP/s in ``precision`` (``None`` if unknown or fp32)."""
    if precision in ("bf16", "fp16"):
        return next((flops for key, flops in PEAK_FLOPS if key.lower() in device_name.lower()), None)
    return None


def gpu_rows(setup: Setup, names: Sequence[str] | None, rounds: int, warmup: int = 1) -> list[dict[str, Any]]:
    """The step-cost rows (one optimizer alive at a time) with tokens/s, FLOPs and MFU added (module doc)."""
    device_name = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "cpu"
    precision = str(setup.cfg.trainer.mixed_precision)
    peak = peak_flops(device_name, precision)
    rows = bench_optimizers(setup, names, rounds, warmup, blocks=True)
    b, s = setup.batches[0]["input_ids"].shape
    c = setup.raw_model.config
    per_token = 6 * setup.info["num_nonembedding_params"] + 12 * c.num_hidden_layers * c.hidden_size * s
    for r in rows:
        r.update(device_name=device_name, precision=precision, batch_size=int(b), seq_len=int(s))
        if "error" not in r:
            t, passes = r["step_time_median_s"], 2 if r["two_pass"] else 1
            flops = passes * b * s * per_token
            r |= {"tokens_per_s": b * s / t, "passes_per_update": passes, "model_flops_per_update": flops}
            r |= {"peak_flops": peak, "mfu": flops / t / peak if peak else None}
    return rows


def _weight_change(setup: Setup, name: str, tries: int = 4) -> tuple[torch.Tensor, int]:
    """The fp32 weight change (flat) of one ``train_step`` of ``name`` from the initial weights,
    dropout off (both precisions see the same function); retried on the same batch while the trainer skips
    the update."""
    setup.reset()
    setup.raw_model.eval()
    _, trainer = build_trainer(setup, name)
    flat = lambda: torch.cat([p.detach().float().flatten() for p in setup.params])
    w0 = flat()
    for attempt in range(1, tries + 1):
        trainer.train_step([setup.batches[0]])
        dw = flat() - w0
        if bool(dw.abs().max() > 0):
            return dw, attempt
    return dw, tries


def _compare(dw: torch.Tensor, attempts: int, ref: torch.Tensor, max_dev: float, min_cos: float) -> dict:
    """Norm ratio, cosine and relative error of ``dw`` against ``ref``, summed in float64 over chunks of
    16M entries (a float64 copy of RoBERTa-large's whole update would be 2.8 GB per vector)."""
    aa = bb = ab = diff = 0.0
    for a, b in zip(dw.split(1 << 24), ref.split(1 << 24)):
        a, b = a.double(), b.double()
        aa, bb, ab = aa + float(a @ a), bb + float(b @ b), ab + float(a @ b)
        diff += float((a - b).square().sum())
    na, nb, nan = math.sqrt(aa), math.sqrt(bb), float("nan")
    ratio = na / nb if nb > 0 else nan
    cos = ab / (na * nb) if na > 0 and nb > 0 else nan
    agrees = math.isfinite(ratio) and math.isfinite(cos) and abs(ratio - 1) <= max_dev and cos >= min_cos
    rel = math.sqrt(diff) / nb if nb > 0 else nan
    return {"norm_ratio": ratio, "cosine": cos, "relative_error": rel, "attempts": attempts, "agrees": agrees}


def update_agreement(
    model: str, device: str, precisions: Sequence[str], batch_size: int, seq_len: int, cache_dir: str
) -> dict[str, Any]:
    """Mixed precision vs fp32 for one update of each of :data:`AGREEMENT_OPTIMIZERS` (module doc); setups
    are built one after the other (Accelerate holds one precision per process)."""
    setup = functools.partial(build_setup, model, device, batch_size, 1, seq_len=seq_len, cache_dir=cache_dir)
    ref_setup = setup()
    ref = {n: _weight_change(ref_setup, n)[0] for n in AGREEMENT_OPTIMIZERS}
    del ref_setup
    out: dict[str, Any] = {"model": model, "batch_size": batch_size, "seq_len": seq_len, "precisions": {}}
    for precision in precisions:
        max_dev, min_cos = AGREEMENT_TOL[precision]
        tolerance = {"max_norm_ratio_deviation": max_dev, "min_cosine": min_cos}
        entry = out["precisions"][precision] = {"tolerance": tolerance}
        try:
            mixed = setup(mixed_precision=precision)
            per = {n: _compare(*_weight_change(mixed, n), ref[n], max_dev, min_cos) for n in ref}
            del mixed
        except Exception as e:  # the trainer or Accelerate refuses this precision: say so, do not crash
            entry |= {"supported": False, "reason": error_text(e)}
            continue
        bad = [n for n, v in per.items() if not v["agrees"]]
        entry |= {"optimizers": per, "supported": not bad}
        if bad:
            entry["reason"] = "the trainer's update disagrees with fp32 for " + ", ".join(
                f"{n} (norm ratio {per[n]['norm_ratio']:.4g}, cosine {per[n]['cosine']:.4f})" for n in bad
            )
    return out


def gpu_check(
    out: str | Path, dry: bool = False, precisions: Sequence[str] = PRECISIONS, names: list[str] | None = None
) -> dict[str, Any]:
    """Run the check (module doc); write ``out/gpu_check.json`` (``gpu_check_dry.json``); return it."""
    name = "dry" if dry else "gpu"
    mode = MODES[name]
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu-check needs a CUDA device (use --dry for the CPU dry run)")
    t0 = time.perf_counter()
    path = Path(out) / f"gpu_check{'_dry' if dry else ''}.json"
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(mode).items()}
    res: dict[str, Any] = {"mode": name, "env": environment(mode.device), "settings": settings}
    with tempfile.TemporaryDirectory(prefix="adasam_gpu_check_") as cache:  # the tokenized data, then gone
        res["agreement"] = update_agreement(mode.model, mode.device, precisions, *mode.agreement, cache)
        write_json(path, res, partial=True)
        rows, unsupported, not_run = [], [], []
        deadline = time.perf_counter() + mode.budget_s if mode.budget_s else math.inf
        for precision, bs, sl in itertools.product(precisions, mode.batch_sizes, mode.seq_lens):
            where = {"precision": precision, "batch_size": bs, "seq_len": sl}
            if time.perf_counter() > deadline:
                not_run.append(where)
                continue
            try:
                setup = build_setup(
                    mode.model, mode.device, bs, 3, seq_len=sl, mixed_precision=precision, cache_dir=cache
                )
            except Exception as e:  # e.g. a precision this device or Accelerate refuses
                unsupported.append({**where, "error": error_text(e)})
                continue
            rows += gpu_rows(setup, names, mode.rounds)
            del setup
            if mode.device == "cuda":
                torch.cuda.empty_cache()
    res |= {"model": mode.model, "rows": rows, "unsupported": unsupported, "not_run": not_run}
    res["summary"] = summarize(res)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(path, res)
    return res


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Per precision: supported or not (and why), the largest two-pass ratio, the best MFU."""
    out: dict[str, Any] = {}
    for precision, entry in (res.get("agreement") or {}).get("precisions", {}).items():
        mine = [r for r in res.get("rows", []) if r.get("precision") == precision]
        rows = [r for r in mine if "error" not in r]
        out[precision] = {
            "supported": entry.get("supported"),
            "reason": entry.get("reason"),
            "rows": len(rows),
            "failed_rows": [r["optimizer"] for r in mine if "error" in r],
            "max_ratio_to_base": max(
                (r["ratio_to_base"] for r in rows if r.get("ratio_to_base")), default=None
            ),
            "max_mfu": max((r["mfu"] for r in rows if r.get("mfu")), default=None),
        }
    return out
