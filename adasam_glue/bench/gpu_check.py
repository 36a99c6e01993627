"""``make gpu-check``: the paper-scale GPU check, ready to run on one GPU in under five minutes.

``python -m adasam_glue.bench.gpu_check [--out results/bench] [--dry]`` writes ``gpu_check.json``
(``gpu_check_dry.json`` with ``--dry``)
(schema: ``docs/bench_schema.md``) and prints a summary:

- RoBERTa-large with random weights (``conf/model/roberta-large-random.yaml``, nothing downloaded) at
  the paper's batch sizes (16 and 32) and max length 512, in bf16 and fp16: step time of every
  optimizer of the registry (SGD, AMSGrad, SAM, AdaSAM and the variants), ratio to its base,
  tokens/s, MFU and peak memory, each optimizer alone on the GPU (:func:`~adasam_glue.bench.gpu.bench_gpu`);
- fp16 (and bf16) vs fp32 agreement of one update of SGD, AMSGrad, SAM and AdaSAM through the
  trainer's real ``train_step`` (:func:`~adasam_glue.bench.gpu.update_agreement`), so whatever mixed
  precision support the trainer has is what is checked. A precision the trainer refuses, or whose
  update disagrees with fp32, is recorded as ``supported: false`` with the reason; nothing crashes.

``--dry`` runs the same code on CPU with the tiny model in seconds (the test of this script).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.env import environment
from adasam_glue.bench.gpu import bench_gpu, update_agreement
from adasam_glue.bench.jsonio import write_json, write_partial

#: full check on a GPU vs the CPU dry run: model, device, batch sizes, length, timed rounds, agreement batch
MODES: dict[str, dict[str, Any]] = {
    "gpu": {
        "model": "roberta-large-random",
        "device": "cuda",
        "batch_sizes": (16, 32),
        "seq_lens": (512,),
        "rounds": 3,
        "agreement": (16, 128),
        "budget_s": 200,
    },
    "dry": {
        "model": "tiny",
        "device": "cpu",
        "batch_sizes": (4,),
        "seq_lens": (32,),
        "rounds": 1,
        "agreement": (4, 32),
        "budget_s": None,
    },
}
PRECISIONS = ("bf16", "fp16")


def gpu_check(
    out: str | Path,
    dry: bool = False,
    precisions: Sequence[str] = PRECISIONS,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the check (module doc); write ``out/gpu_check.json``; return its content."""
    mode = MODES["dry" if dry else "gpu"]
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu-check needs a CUDA device (use --dry for the CPU dry run)")
    t0 = time.perf_counter()
    path = Path(out) / (
        "gpu_check_dry.json" if dry else "gpu_check.json"
    )  # a dry run never replaces GPU figures
    res: dict[str, Any] = {
        "mode": "dry" if dry else "gpu",
        "env": environment(mode["device"], "adasam_glue.bench.gpu_check"),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in mode.items()},
    }
    cache = tempfile.mkdtemp(prefix="adasam_gpu_check_")
    res["agreement"] = update_agreement(
        mode["model"],
        mode["device"],
        precisions,
        batch_size=mode["agreement"][0],
        seq_len=mode["agreement"][1],
        cache_dir=cache,
    )
    write_partial(path, res)
    res |= bench_gpu(
        mode["model"],
        mode["batch_sizes"],
        mode["seq_lens"],
        precisions,
        names,
        rounds=mode["rounds"],
        warmup=1,
        device=mode["device"],
        cache_dir=cache,
        budget_s=mode["budget_s"],
    )
    res["summary"] = summarize(res)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(path, res)
    return res


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Per precision: supported or not (and why), the largest two-pass ratio, the best MFU."""
    out: dict[str, Any] = {}
    for precision, entry in (res.get("agreement") or {}).get("precisions", {}).items():
        rows = [r for r in res.get("rows", []) if r.get("precision") == precision and "error" not in r]
        ratios = [r["ratio_to_base"] for r in rows if r.get("ratio_to_base")]
        mfus = [r["mfu"] for r in rows if r.get("mfu")]
        out[precision] = {
            "supported": entry.get("supported"),
            "reason": entry.get("reason"),
            "rows": len(rows),
            "failed_rows": [
                r["optimizer"]
                for r in res.get("rows", [])
                if r.get("precision") == precision and "error" in r
            ],
            "max_ratio_to_base": max(ratios, default=None),
            "max_mfu": max(mfus, default=None),
        }
    return out


def _print_summary(res: dict[str, Any]) -> None:
    print(f"gpu-check ({res['mode']}, {res['wall_s']}s):")
    for precision, s in res["summary"].items():
        print(
            f"  {precision}: supported={s['supported']} rows={s['rows']} max ratio={s['max_ratio_to_base']} "
            f"max MFU={s['max_mfu']}" + (f"\n    reason: {s['reason']}" if s["reason"] else "")
        )
    for r in res.get("rows", []):
        if "error" in r:
            print(f"  {r['precision']} {r['optimizer']}: error {r['error'][:200]}")


def main(argv: Sequence[str] | None = None) -> int:
    """``make gpu-check`` (module doc); 0 on success."""
    p = argparse.ArgumentParser(
        prog="python -m adasam_glue.bench.gpu_check", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="results/bench", help="folder of gpu_check.json")
    p.add_argument("--dry", action="store_true", help="CPU, tiny model: the same code in seconds")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--optimizers", nargs="+", default=None, help="registry names (default: all)")
    a = p.parse_args(argv)
    if a.dry:
        torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _print_summary(gpu_check(a.out, a.dry, a.precisions, a.optimizers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
