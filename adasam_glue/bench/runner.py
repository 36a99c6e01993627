"""``run_bench``: the sections of ``python -m adasam_glue.bench`` in order, into one JSON file.

Sections (JSON keys; schema in ``docs/bench_schema.md``): ``rows`` (per optimizer, per model),
``optimizer_math``, ``hf_trainer``, ``sharpness`` (per model), then ``padding``, ``ddp``, ``gpu`` and
``overhead``. One failing section records ``{"error": ...}`` and the others still run; the file is
rewritten after each model, marked ``partial``, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.env import environment
from adasam_glue.bench.jsonio import write_json, write_partial

SECTIONS = ("optimizers", "hf_trainer", "optimizer_math", "padding", "ddp", "gpu", "sharpness", "overhead")
#: per model, quick and full: batch, batches, timed rounds, HF rounds, HF steps per round, warm-up updates
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((16, 4, 31, 3, 3, 1), (16, 4, 61, 5, 5, 1)),
    "minilm": ((16, 4, 9, 3, 2, 1), (16, 4, 15, 5, 4, 1)),
    "roberta-large-random": ((16, 4, 5, 3, 3, 2), (16, 4, 5, 3, 3, 2)),
}
#: the ratio a SAM-family row may reach (the two-pass limit of 2.0 plus a margin for the perturbation)
RATIO_LIMIT = 2.15


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
    mp = "bf16" if device == "cuda" else "no"
    models = list(models or (["roberta-large-random"] if device == "cuda" else ["tiny", "minilm"]))
    res: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "rows": [],
        "env": environment(device),
        "setups": {},
        "section_seconds": {},
    }
    cache = tempfile.mkdtemp(prefix="adasam_bench_")
    path = Path(out) / f"bench_{'quick' if quick else 'full'}.json"

    def section(key: str, fn: Callable[[], Any]) -> Any:
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

    tiny_setup = None
    for model in models:
        setup = _bench_model(res, model, quick, device, mp, cache, sections, section)
        if model == "tiny":
            tiny_setup = setup
        write_partial(path, res)
    if "padding" in sections:
        from adasam_glue.bench.padding import GLUE_LIKE, bench_padding

        if tiny_setup is None:
            tiny_setup = section("setup[tiny]", lambda: _setup("tiny", quick, "cpu", "no", cache))
        res["padding"] = section(
            "padding",
            lambda: bench_padding(
                tiny_setup,
                tasks=("mrpc", "rte", "sst2", "qnli") if quick else tuple(GLUE_LIKE),
                glue_dir=glue_dir,
                cache_dir=cache,
                glue_like_n=20000 if quick else 400000,
            ),
        )
    if "ddp" in sections:
        from adasam_glue.bench.ddp import bench_ddp

        res["ddp"] = section("ddp", lambda: bench_ddp(steps=3))
    if "gpu" in sections:
        from adasam_glue.bench.gpu import bench_gpu

        res["gpu"] = section(
            "gpu",
            lambda: bench_gpu(rounds=2 if quick else 3) if device == "cuda" else {"skipped": "--device cpu"},
        )
    if "overhead" in sections:
        from adasam_glue.bench.overhead import PAPER_POINTS, bench_overhead

        points, window = ((500, 1000, 2000), 400) if quick else (PAPER_POINTS, 1000)
        res["overhead"] = section("overhead", lambda: bench_overhead(points, window))
    res["summary"] = summarize(res)
    res["env"]["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    write_json(path, res)
    log(f"[bench] wrote {path} ({res['env']['wall_time_s']:.0f}s)")
    return res


def _setup(model: str, quick: bool, device: str, mp: str, cache: str) -> Any:
    from adasam_glue.bench.harness import build_setup

    bs, nb, *_ = SIZES[model][0 if quick else 1]
    seq = 128 if model == "roberta-large-random" else None
    return build_setup(
        model, device, batch_size=bs, num_batches=nb, mixed_precision=mp, cache_dir=cache, seq_len=seq
    )


def _bench_model(
    res: dict[str, Any],
    model: str,
    quick: bool,
    device: str,
    mp: str,
    cache: str,
    sections: Sequence[str],
    section: Callable[[str, Callable[[], Any]], Any],
) -> Any:
    """The per-model sections: rows, optimizer math, HF comparison, sharpness cost. Returns the setup."""
    from adasam_glue.bench.hf_compare import bench_hf_trainer
    from adasam_glue.bench.optimizer_math import bench_optimizer_math
    from adasam_glue.bench.sharpness_cost import bench_sharpness_cost
    from adasam_glue.bench.step_cost import bench_optimizers

    _, _, rounds, hf_rounds, hf_steps, warmup = SIZES[model][0 if quick else 1]
    setup = section(f"setup[{model}]", lambda: _setup(model, quick, device, mp, cache))
    if isinstance(setup, dict):
        res["setups"][model] = setup
        return None
    res["setups"][model] = dict(setup.info)
    if "optimizers" in sections:
        rows = section(
            f"optimizers[{model}]",
            lambda: bench_optimizers(setup, rounds=rounds, warmup=warmup, forms=not quick),
        )
        if isinstance(rows, list):
            res["rows"].extend(rows)
        else:
            res.setdefault("errors", {})[f"optimizers[{model}]"] = rows
    if "optimizer_math" in sections:
        res.setdefault("optimizer_math", []).append(
            section(
                f"optimizer_math[{model}]", lambda: bench_optimizer_math(setup, repeats=5 if quick else 10)
            )
        )
    if "hf_trainer" in sections and (model == "tiny" or (model == "minilm" and not quick)):
        res.setdefault("hf_trainer", []).append(
            section(
                f"hf_trainer[{model}]",
                lambda: bench_hf_trainer(setup, rounds=hf_rounds, steps=hf_steps, warmup=warmup),
            )
        )
    if "sharpness" in sections and setup.loaders is not None:
        small = model == "tiny"
        res.setdefault("sharpness", []).append(
            section(
                f"sharpness[{model}]",
                lambda: bench_sharpness_cost(
                    setup,
                    num_samples=(32 if small else 16) if quick else 64,
                    power_iters=(3 if small else 2) if quick else 20,
                    trace_probes=2 if quick else 10,
                ),
            )
        )
    return setup


def judged_ratio(row: dict[str, Any]) -> float | None:
    """The ratio the limit is judged on: CPU time where measured (CPU runs), else wall time."""
    cpu = row.get("ratio_to_base_cpu")
    return cpu if cpu is not None else row.get("ratio_to_base")


def summarize(res: dict[str, Any], limit: float = RATIO_LIMIT) -> dict[str, Any]:
    """The figures a reader looks for first: SAM-family rows over the limit, HF ratios, all-reduces."""
    rows = [r for r in res.get("rows", []) if r.get("two_pass") and judged_ratio(r) is not None]
    over = [
        {"model": r["model"], "optimizer": r["optimizer"], "ratio_to_base": judged_ratio(r)}
        for r in rows
        if judged_ratio(r) > limit
    ]
    hf = [h for h in res.get("hf_trainer") or [] if isinstance(h, dict) and "samples_per_s_ratio" in h]
    ddp = (res.get("ddp") or {}).get("variants", {})
    overhead = res.get("overhead") or {}
    return {
        "ratio_limit": limit,
        "sam_rows": len(rows),
        "sam_rows_over_limit": over,
        "max_ratio_to_base": max((judged_ratio(r) for r in rows), default=None),
        "ratio_basis": "cpu_time" if any(r.get("ratio_to_base_cpu") is not None for r in rows) else "wall",
        "hf_samples_per_s_ratio": {h["model"]: h["samples_per_s_ratio"] for h in hf},
        "optim_fraction_adasam": {
            r["model"]: r["optim_fraction"] for r in res.get("rows", []) if r.get("optimizer") == "adasam"
        },
        "ddp_allreduces_per_update": {k: v["allreduces_per_update"] for k, v in ddp.items()},
        "overhead_verdict": overhead.get("verdict"),
    }
