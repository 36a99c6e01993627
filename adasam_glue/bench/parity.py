"""Parity with Hugging Face ``transformers.Trainer``: the same recipe (:class:`Recipe`), trained both ways,
on real GLUE, each seed on both sides interleaved (the seeds alternate which goes first), each run in its
own spawned process. Both sides start from what the run's setup steps build from one composed config (the
same seed before the model, tokenization, training subset and dev sets); then ours trains with
:func:`adasam_glue.run.run`, HF's with ``transformers.Trainer`` given the same AdamW(amsgrad) values
(weight decay through ``TrainingArguments``: HF's own no-decay groups, compared with ours by
:func:`no_decay_check`), its samplers and ``DataCollatorWithPadding`` (dynamic, or run_glue's default
``padding="max_length"``). Both sides are timed by the same :class:`~adasam_glue.bench.measure.TrainClock`.

Reported: ``parity`` (dev metrics per seed, mean ± std per side; parity = the means differ by less than the
larger std), ``throughput.equal_padding`` (samples/s of the same runs; target ours / HF >= 1.0) and
``throughput.grouping`` (one epoch with ``data.group_by_length=true`` vs HF's ``group_by_length`` and vs
HF padding to max_length over ``padmax_steps`` updates, over ``rounds``; target ours / HF pad-to-max >= 2.9).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasam_glue.bench.harness import BENCH_OVERRIDES, compose, environment, error_text, write_json
from adasam_glue.bench.measure import TrainClock, median
from adasam_glue.tasks import get_task

TARGET_EQUAL_PADDING, TARGET_VS_PAD_TO_MAX = 1.0, 2.9
RUN_KEYS, SIDES = ("framework", "variant", "task", "seed"), ("ours", "hf")
#: HF Trainer logs, saves and evaluates nothing during training (neither does ours)
QUIET = {"logging_strategy": "no", "save_strategy": "no", "eval_strategy": "no", "report_to": "none"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What both sides train with (module doc); the model from ``conf/model``."""

    model: str = "minilm"
    train_rows: int = 1000
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128
    lr: float = 5e-5
    warmup_ratio: float = 0.06


#: ``--quick``: the tiny model, a handful of updates (the test of this command; not a parity result)
QUICK = Recipe(model="tiny", train_rows=64, epochs=1, batch_size=16, max_length=64, lr=1e-3)


def recipe_overrides(
    r: Recipe, task: str, seed: int, data_dir: str, work: Path, variant: str, epochs: int, tag: str = ""
) -> list[str]:
    """The composed config of one run: the recipe on ``task``'s real TSVs (both sides read it); dev metrics
    once, after training; a fresh run dir, so a run is never skipped."""
    total = epochs * math.ceil(min(r.train_rows, get_task(task).train_size) / r.batch_size)
    return [
        *BENCH_OVERRIDES,
        *f"model={r.model} task={task} optim=amsgrad task.lr={r.lr} task.batch_size={r.batch_size}".split(),
        *f"task.max_length={r.max_length} task.epochs={epochs} task.total_updates={total}".split(),
        f"task.warmup_updates={round(r.warmup_ratio * total)}",
        "data.source=tsv",
        f"data.data_dir={data_dir}",
        f"data.max_train_samples={r.train_rows}",
        f"data.group_by_length={str(variant == 'grouped').lower()}",
        *"trainer.cpu=true trainer.eval_every=0 trainer.save_model=none trainer.max_grad_norm=null".split(),
        f"seed={seed}",
        f"results_dir={work}",
        f"run_dir={work / 'ours' / variant / task / f'seed{seed}{tag}'}",
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
    """Every run in execution order: parity pairs (alternating who goes first), then throughput rounds.
    One data cache per run, so runs at once (``jobs``) never write the same files."""
    specs: list[dict[str, Any]] = []
    for task in tasks:
        for i, seed in enumerate(seeds):
            ov = recipe_overrides(recipe, task, seed, data_dir, work, "dynamic", recipe.epochs)
            pair = []
            for fw in SIDES:
                cache = f"data.cache_dir={work / 'cache' / fw / task / f'seed{seed}'}"
                spec = {"framework": fw, "variant": "dynamic", "task": task, "seed": seed}
                pair.append(spec | {"overrides": [*ov, cache]})
            specs += pair if i % 2 == 0 else pair[::-1]
    trio = [("ours", "grouped", None), ("hf", "grouped", None), ("hf", "pad_to_max", padmax_steps)]
    for r in range(rounds):
        for task in tasks:
            for fw, variant, steps in trio[r % 3 :] + trio[: r % 3]:
                ov = recipe_overrides(recipe, task, seeds[0], data_dir, work, variant, 1, tag=f"-round{r}")
                ov.append(f"data.cache_dir={work / 'cache' / f'{fw}-{variant}' / task / f'round{r}'}")
                spec = {"framework": fw, "variant": variant, **({"max_steps": steps} if steps else {})}
                specs.append(spec | {"task": task, "seed": seeds[0], "overrides": ov, "round": r})
    return specs


def execute(specs: list[dict], jobs: int, on_result: Callable[[list], None]) -> list[dict[str, Any]]:
    """Each run in a fresh spawned process (no Accelerate or HF state shared between runs); a failed run is
    reported, the others still count; ``on_result`` gets the runs done so far after each."""
    results: list[dict[str, Any] | None] = [None] * len(specs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_in_worker, s): i for i, s in enumerate(specs)}
        for fut in as_completed(futures):
            i, s = futures[fut], specs[futures[fut]]
            try:
                results[i] = {**fut.result(), "round": s.get("round")}
            except Exception as e:
                results[i] = {k: s.get(k) for k in (*RUN_KEYS, "round")} | {"error": error_text(e)}
            on_result([r for r in results if r is not None])
    return [r for r in results if r is not None]


def summarize(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """``parity`` and ``throughput`` from the runs (module doc)."""
    ok = [r for r in runs if "error" not in r]
    parity, equal, grouping = {}, {}, {}
    for task in tasks:
        names = list(get_task(task).paper_metrics)
        mine = [r for r in ok if r["task"] == task]
        dyn = {fw: [r for r in mine if r["variant"] == "dynamic" and r["framework"] == fw] for fw in SIDES}
        sides = {}
        for fw, rs in dyn.items():
            values = {m: np.array([r["metrics"][m] for r in rs if m in r["metrics"]], float) for m in names}
            sides[fw] = {
                "per_seed": {str(r["seed"]): {m: r["metrics"].get(m) for m in names} for r in rs},
                "mean": {m: float(v.mean()) for m, v in values.items()},
                "std": {m: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()},
            }
        per_metric, enough = {}, min(len(dyn["ours"]), len(dyn["hf"])) > 1
        for m in names:
            d = abs(sides["ours"]["mean"][m] - sides["hf"]["mean"][m])
            std = max(sides["ours"]["std"][m], sides["hf"]["std"][m])
            per_metric[m] = {"mean_difference": d, "larger_std": std, "parity": d < std if enough else None}
        verdict = all(v["parity"] for v in per_metric.values()) if per_metric else None
        parity[task] = {"metrics": names, **sides, "per_metric": per_metric, "parity": verdict}
        equal[task] = _equal_padding(dyn)
        grouping[task] = _grouping([r for r in mine if r["variant"] != "dynamic"])
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
    target = TARGET_EQUAL_PADDING
    return out | {"ratio_ours_to_hf": ratio, "target": target, "met": ratio >= target}


def _grouping(rs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("ours_grouped", "hf_grouped", "hf_pad_to_max"):
        v = [r for r in rs if f"{r['framework']}_{r['variant']}" == k]
        tokens = _tp(v, "padded_tokens_per_sample")
        out[k] = {"samples_per_s": _tp(v), "padded_tokens_per_sample": tokens, "rounds": len(v)}
    ours = out["ours_grouped"]["samples_per_s"]
    vs_max = ours / out["hf_pad_to_max"]["samples_per_s"]
    out["ratio_vs_hf_grouped"] = ours / out["hf_grouped"]["samples_per_s"]
    out["ratio_vs_hf_pad_to_max"] = vs_max
    return out | {"target_vs_pad_to_max": TARGET_VS_PAD_TO_MAX, "met": vs_max >= TARGET_VS_PAD_TO_MAX}


def bench_parity(
    data_dir: str,
    out: str | Path = "results/bench",
    recipe: Recipe | None = None,
    tasks: Sequence[str] = ("mrpc", "rte"),
    seeds: Sequence[int] = (1, 2, 3),
    rounds: int = 1,
    padmax_steps: int = 10,
    jobs: int = 1,
) -> dict[str, Any]:
    """Plan, run, summarise; ``out/hf_parity.json`` is rewritten (partial) after every run."""
    recipe, t0 = recipe or Recipe(), time.perf_counter()
    path = Path(out) / "hf_parity.json"
    res = {"env": environment("cpu"), "recipe": dataclasses.asdict(recipe), "tasks": list(tasks)}
    res |= {"seeds": list(seeds), "rounds": rounds, "padmax_steps": padmax_steps, "jobs": jobs}
    res["data_dir"] = str(data_dir)
    with tempfile.TemporaryDirectory(prefix="adasam_parity_") as scratch:  # both sides' runs and caches
        work = Path(scratch)
        specs = plan(recipe, tasks, seeds, data_dir, work, rounds, padmax_steps)
        runs = execute(specs, jobs, lambda done: write_json(path, {**res, "runs": done}, partial=True))
    res |= summarize(runs, tasks)
    checks = [r["no_decay_check"] for r in runs if "no_decay_check" in r]
    res["no_decay_rule_equal"] = all(c["equal"] for c in checks) if checks else None
    res |= {"runs": runs, "wall_s": round(time.perf_counter() - t0, 1)}
    write_json(path, res)
    return res


# ---------------------------------------------------------------------------------- one run (worker)
def run_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a worker process: one thread, quiet libraries, then the run ``spec`` names."""
    torch.set_num_threads(int(spec.get("threads", 1)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    t0, cfg = time.perf_counter(), compose(spec["overrides"])
    out = ours_run(cfg, spec) if spec["framework"] == "ours" else hf_run(cfg, spec)
    keep = {k: spec.get(k) for k in (*RUN_KEYS, "max_steps")}
    return {**keep, **out, "process_wall_s": time.perf_counter() - t0}


def ours_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``run(cfg)`` under the clock; the final dev metrics from the record."""
    from adasam_glue.run import run

    with TrainClock() as clock:
        record = run(cfg, overrides=spec["overrides"])
    metrics = (record.get("final") or {}).get("metrics", {})
    out = {"status": record.get("status"), "updates": record.get("optimizer_updates"), "metrics": metrics}
    return out | {"throughput": clock.throughput()}


def hf_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``transformers.Trainer`` on what the run's setup steps build (module doc)."""
    from transformers import DataCollatorWithPadding, TrainingArguments
    from transformers import Trainer as HFTrainer
    from transformers.trainer_callback import PrinterCallback

    from adasam_glue import run as run_mod
    from adasam_glue.metrics import compute_metrics

    task, o, steps = get_task(cfg.task.name), cfg.optim, spec.get("max_steps")
    acc = run_mod.setup_accelerator(cfg)  # seeds exactly as run() does before the model is built
    tokenizer, model = run_mod.setup_model_and_tokenizer(cfg, task)
    plan_, _, loaders = run_mod.setup_data(cfg, task, tokenizer, acc)
    optimizer = run_mod.setup_optimizer_and_schedule(cfg, model, plan_)[0]
    g = optimizer.param_groups[0]  # read: lr, betas, eps, fused
    adamw = {"lr": g.get("initial_lr", g["lr"]), "betas": tuple(g["betas"]), "eps": g["eps"], "amsgrad": True}
    adamw["fused"] = g.get("fused")
    pad = {"padding": "max_length", "max_length": int(cfg.task.max_length)}  # run_glue's default
    collator = DataCollatorWithPadding(tokenizer, **(pad if spec["variant"] == "pad_to_max" else {}))
    with tempfile.TemporaryDirectory(prefix="adasam_hf_") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
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
            warmup_steps=run_mod.warmup_updates(cfg, run_mod.total_updates(cfg)),
            max_grad_norm=0.0,  # no clipping, as trainer.max_grad_norm=null
            train_sampling_strategy="group_by_length" if spec["variant"] == "grouped" else "random",
            **QUIET,
            disable_tqdm=True,
            use_cpu=bool(cfg.trainer.cpu),
            dataloader_pin_memory=False,
            seed=int(cfg.seed),
        )
        data = {
            "train_dataset": loaders.train_dataset,
            "data_collator": collator,
            "processing_class": tokenizer,
        }
        trainer = HFTrainer(model, args, **data, optimizer_cls_and_kwargs=(torch.optim.AdamW, adamw))
        trainer.remove_callback(PrinterCallback)  # its per-log prints; logging is off on our side too
        with TrainClock() as clock:
            out = trainer.train()
        metrics: dict[str, float] = {}
        for split, ds in loaders.eval_datasets.items() if not steps else ():
            pred = trainer.predict(ds)
            metrics |= compute_metrics(task.name, pred.predictions, pred.label_ids, split=split)
        check = no_decay_check(trainer, model, float(o.weight_decay))
    return {
        "status": "completed",
        "updates": int(out.global_step),
        "metrics": metrics,
        "throughput": clock.throughput(),
        "hf_train_samples_per_second": out.metrics.get("train_samples_per_second"),
        "no_decay_check": check,
    }


def no_decay_check(trainer: Any, model: torch.nn.Module, weight_decay: float) -> dict[str, Any]:
    """HF's no-decay rule (``Trainer.get_decay_parameter_names``) vs ours (``modeling.param_groups``)."""
    from adasam_glue.modeling import param_groups

    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    groups = param_groups(model, weight_decay)
    ours = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    hf = set(names.values()) - set(trainer.get_decay_parameter_names(model))
    out = {"equal": ours == hf, "no_decay_params": len(ours)}
    return out | {"only_ours": sorted(ours - hf)[:20], "only_hf": sorted(hf - ours)[:20]}
