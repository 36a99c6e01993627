"""``python -m adasam_glue.bench <command>``: the one entry point of the benchmarks.

Each measuring command writes its JSON under ``--out`` (default ``results/bench``) and with ``--md`` its
page; ``render`` turns any of those files into its page without measuring. The make targets (bench-quick,
bench, bench-overhead, bench-parity, gpu-check, bench-docs) are one command each.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from adasam_glue.bench.gpu_check import gpu_check
from adasam_glue.bench.overhead import bench_overhead
from adasam_glue.bench.parity import QUICK, Recipe, bench_parity
from adasam_glue.bench.render import render
from adasam_glue.bench.step_cost import run_step_cost
from adasam_glue.records import atomic_write_text

RECIPE_KEYS = ("model", "train_rows", "epochs", "batch_size", "max_length", "lr")  #: of parity.Recipe


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adasam_glue.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if name != "render":
            c.add_argument("--out", default="results/bench", help="folder of the JSON (results/bench)")
            c.add_argument("--md", default=None, help="also render the page to this Markdown file")
        return c

    names = dict(nargs="+", help="registry names (default: every record)")
    c = command("step-cost", "per-optimizer step cost, ratio to its base, memory (bench_{quick,full}.json)")
    c.add_argument(
        "--quick", action="store_true", help="< 5 min on 2 CPU cores (else more rounds, every form)"
    )
    c.add_argument("--model", action="append", help="conf/model name, repeatable (default: tiny and minilm)")
    c.add_argument("--optimizers", **names)
    c.add_argument("--rounds", type=int, help="timed updates per optimizer (default: per model)")
    c.add_argument("overrides", nargs="*", help="Hydra overrides of every set-up (hydra.searchpath=...)")
    c = command("overhead", "harness overhead per update at paper-scale update counts (overhead.json)")
    c.add_argument("--points", type=int, nargs="+", default=[1000, 10000, 123873])
    c.add_argument("--window", type=int, default=1000, help="updates per point")
    c.add_argument("--optim", default="adasam")
    c.add_argument("--task", default="mnli")
    c.add_argument("--no-progress-bar", action="store_true")
    c.add_argument("--budget-s", type=float, default=1500, help="stop the run (SIGUSR1) after this long")
    c = command("parity", "dev metrics and samples/s vs transformers.Trainer on real GLUE (hf_parity.json)")
    c.add_argument("--data-dir", required=True, help="GLUE TSV root (glue_data/<Task>/{train,dev}.tsv)")
    c.add_argument("--tasks", nargs="+", default=["mrpc", "rte"])
    c.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    for key in RECIPE_KEYS:
        c.add_argument(f"--{key.replace('_', '-')}", type=type(getattr(Recipe, key)), help="the recipe's")
    c.add_argument("--rounds", type=int, default=1, help="throughput rounds of the grouping comparison")
    c.add_argument("--padmax-steps", type=int, default=10)
    c.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each)")
    c.add_argument("--quick", action="store_true", help="tiny model, a few updates: a smoke test")
    c = command("gpu-check", "RoBERTa-large (random weights) on one GPU: every optimizer, bf16/fp16 vs fp32")
    c.add_argument("--dry", action="store_true", help="CPU, tiny model: the same code in seconds")
    c.add_argument("--precisions", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    c.add_argument("--optimizers", **names)
    c = command("render", "render a benchmark JSON as its Markdown page (no measuring)")
    c.add_argument("json")
    c.add_argument("--md", default=None, help="write the Markdown here (else stdout)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module doc); 0 on success."""
    a = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if a.command in ("step-cost", "overhead", "parity") or getattr(a, "dry", False):
        torch.set_num_threads(1)  # one on CPU (parity: one per run; the environment block records it)
    path = a.json if a.command == "render" else _run(a, Path(a.out))
    if a.md:
        atomic_write_text(Path(a.md), render(path))
    elif a.command == "render":
        sys.stdout.write(render(path))
    return 0


def _run(a: argparse.Namespace, out: Path) -> Path:
    """Run the measuring command ``a.command``; print where its JSON went and its verdicts; that path."""
    if a.command == "step-cost":
        res = run_step_cost(a.quick, out, a.model, a.optimizers, a.rounds, a.overrides)
        path, brief = out / f"bench_{res['mode']}.json", res["summary"]
    elif a.command == "overhead":
        res = bench_overhead(a.points, a.window, a.optim, a.task, not a.no_progress_bar, a.budget_s, out=out)
        path, brief = out / "overhead.json", res["verdict"]
    elif a.command == "parity":
        given = {k: getattr(a, k) for k in RECIPE_KEYS if getattr(a, k) is not None}
        recipe = QUICK if a.quick else Recipe(**given)
        seeds, padmax = (a.seeds[:1], 2) if a.quick else (a.seeds, a.padmax_steps)
        res = bench_parity(a.data_dir, out, recipe, a.tasks, seeds, a.rounds, padmax, a.jobs)
        path, brief = out / "hf_parity.json", {t: v["parity"] for t, v in res["parity"].items()}
        equal = res["throughput"]["equal_padding"]
        brief["ours / HF samples/s"] = {t: v["ratio_ours_to_hf"] for t, v in equal.items()}
    else:
        res = gpu_check(out, a.dry, a.precisions, a.optimizers)
        path, brief = out / f"gpu_check{'_dry' if a.dry else ''}.json", res["summary"]
    print(f"wrote {path}: {brief}")
    return path
