"""``run(cfg)``: one fine-tuning run from a composed config to a run record. Tests call this directly.

Contract (relied on by ``adasam_glue.experiments`` and the report):

- The config is validated before anything heavy is imported or loaded (``validate_config``).
- The run dir is deterministic: ``cfg.run_dir`` or
  ``<results_dir>/runs/<experiment_name>/<task>/<optim>/<run_params_tag(cfg)>/seed<seed>``.
- Idempotent: a run dir whose ``record.json`` says ``completed`` or ``diverged`` is not trained again
  (the record is returned with ``skipped=True`` added in memory only); a run dir with a resume
  checkpoint resumes from it; completed records are never overwritten.
- ``cfg.dry_run``: print ``run: <overrides>`` and return without loading anything.
- Every outcome writes the record: ``completed``, ``diverged`` (NaN loss), ``preempted`` (signal or
  ``trainer.stop_after_updates``), ``failed`` (exception, re-raised after the record is written).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adasam_glue.config import ConfigError, validate_config
from adasam_glue.records import RECORD_NAME, read_record, write_record

log = logging.getLogger(__name__)

_TAG_KEYS = (  # optimizer keys that distinguish grid points, in tag order, with short names
    ("lr", "lr"),
    ("beta1", "b1"),
    ("beta2", "b2"),
    ("rho", "rho"),
    ("rho_min", "rhomin"),
    ("form", ""),
    ("eta", "eta"),
    ("alpha", "alpha"),
    ("theta", "theta"),
    ("sigma", "sigma"),
    ("beta", "beta"),
    ("gamma", "gamma"),
    ("weight_decay", "wd"),
)


def run_params_tag(cfg: DictConfig) -> str:
    """Folder name of a grid point: model, optimizer hyperparameters, batch and schedule.

    Every value that differs between two runs of an experiment grid appears, so run dirs never collide.
    """
    o = cfg.optim
    parts = [cfg.model.name]
    for key, short in _TAG_KEYS:
        value = o.get(key)
        if value is not None:
            parts.append(f"{short}{value:g}" if isinstance(value, float) else f"{short}{value}")
    parts.append(f"bs{cfg.task.batch_size}")
    t = cfg.trainer
    if t.batch_schedule:
        parts.append("bsched" + "-".join(str(b) for b in t.batch_schedule))
    if t.schedule != "linear":
        parts.append(f"sched-{t.schedule}")
    if t.max_updates:
        parts.append(f"upd{t.max_updates}")
    if o.get("sync_ascent"):
        parts.append("syncasc")
    return "_".join(parts)


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return (
        Path(cfg.results_dir)
        / "runs"
        / cfg.experiment_name
        / cfg.task.name
        / cfg.optim.name
        / run_params_tag(cfg)
        / f"seed{cfg.seed}"
    )


def total_updates(cfg: DictConfig) -> int:
    """The task's updates, capped by ``trainer.max_updates`` (quick runs)."""
    t = cfg.task.total_updates
    return min(t, cfg.trainer.max_updates) if cfg.trainer.max_updates else t


def warmup_updates(cfg: DictConfig, total: int) -> int:
    """The task's warmup, scaled with the cap so a shortened run keeps the recipe's warmup fraction."""
    return round(cfg.task.warmup_updates * total / cfg.task.total_updates)


def _overrides(given: list[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not under @hydra.main (tests, notebooks)
        return []


def _git_commit() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if commit.returncode != 0:
        return None, None
    return commit.stdout.strip(), bool(dirty.stdout.strip())


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("adasam_glue", "torch", "transformers", "datasets", "accelerate", "hydra-core", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _hardware(accelerator: Any) -> dict[str, Any]:
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) one run; return its record."""
    validate_config(cfg)
    overrides = _overrides(overrides)
    run_dir = resolve_run_dir(cfg)
    record_path = run_dir / RECORD_NAME
    if cfg.dry_run:
        print("run: " + " ".join(overrides), flush=True)
        return {"dry_run": True, "run_dir": str(run_dir), "overrides": overrides}
    if record_path.exists():
        previous = read_record(record_path)
        if previous.get("status") in ("completed", "diverged"):
            log.info("skipping %s: record says %s", run_dir, previous["status"])
            return previous | {"skipped": True}

    from adasam_glue.optim import get_optim_info

    if cfg.trainer.mixed_precision == "fp16" and get_optim_info(cfg.optim.name).two_pass:
        raise ConfigError(
            "trainer.mixed_precision=fp16 is refused for two-pass (SAM-family) optimizers: one GradScaler "
            "step cannot cover the ascent and descent passes. Use trainer.mixed_precision=bf16 (no scaler "
            "needed) or no."
        )
    return _train(cfg, overrides, run_dir)


def _train(cfg: DictConfig, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    from adasam_glue.data import build_dataloaders, load_glue
    from adasam_glue.modeling import build_model, build_tokenizer, param_groups
    from adasam_glue.optim import build_optimizer, get_optim_info
    from adasam_glue.schedules import build_batch_plan, build_scheduler
    from adasam_glue.tasks import get_task
    from adasam_glue.trainer import Trainer

    started_at, t0 = _now(), time.perf_counter()
    task = get_task(cfg.task.name)
    info = get_optim_info(cfg.optim.name)
    tc = cfg.trainer
    # Accelerate keeps one process-wide state; several runs in one process (a notebook, the demo, the
    # tests) may differ in precision, so forget the previous run's settings (the process group stays).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(cpu=tc.cpu, mixed_precision=tc.mixed_precision)
    set_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    commit, dirty = _git_commit()
    base: dict[str, Any] = {
        "run_id": f"{cfg.experiment_name}/{task.name}/{cfg.optim.name}/{run_params_tag(cfg)}/seed{cfg.seed}",
        "experiment": cfg.experiment_name,
        "task": task.name,
        "optimizer": cfg.optim.name,
        "seed": cfg.seed,
        "params": run_params_tag(cfg),
        "config": resolved,
        "overrides": overrides,
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": _versions(),
        "hardware": _hardware(accelerator),
        "selection_metric": cfg.task.metric,
        "started_at": started_at,
    }

    def write(state: Any, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        record = base | {
            "status": status,
            "optimizer_updates": state.updates,
            "forward_backward_passes": state.forward_backward_passes,
            "micro_batch_passes": state.micro_batch_passes,
            "samples_seen": state.samples_seen,
            "train_curve": state.train_curve,
            "eval_curve": state.eval_curve,
            "best": state.best,
            "final": state.final,
            "wall_time_s": state.wall_time_s,
            "finished_at": _now(),
        }
        if state.sharpness is not None:
            record["sharpness"] = state.sharpness
        if state.sharpness_curve:
            record["sharpness_curve"] = state.sharpness_curve
        record |= extra or {}
        if accelerator.is_main_process:
            write_record(run_dir / RECORD_NAME, record)
        return record

    from adasam_glue.trainer import TrainState

    trainer = None
    try:
        # Model and data. The tiny test model builds its tokenizer from the training texts.
        init_from = cfg.task.init_from
        texts = None
        if cfg.model.source == "tiny" and not init_from:
            raw = load_glue(
                task.name,
                source=cfg.data.source,
                data_dir=cfg.data.data_dir,
                hub_name=cfg.data.hub_name,
                cache_dir=cfg.data.cache_dir,
                synthetic_train_size=cfg.data.synthetic_train_size,
                synthetic_eval_size=cfg.data.synthetic_eval_size,
                synthetic_seed=cfg.data.synthetic_seed,
            )
            texts = [t for key in task.text_keys for t in raw["train"][key][:2000]]
        tokenizer = build_tokenizer(cfg.model, texts=texts, init_from=init_from)
        model = build_model(cfg.model, task, tokenizer, init_from=init_from)

        total = total_updates(cfg)
        plan = build_batch_plan(
            cfg.task.batch_size, total, list(tc.batch_schedule) if tc.batch_schedule else None
        )
        micro = _micro_batch_size(cfg, accelerator.num_processes, min(plan.sizes))
        # Tokenized once per node: build_dataloaders runs the map under main_process_first().
        loaders = build_dataloaders(
            cfg.data,
            task.name,
            tokenizer,
            cfg.task.max_length,
            micro,
            tc.eval_batch_size,
            cfg.seed,
            accelerator=accelerator,
            mixed_precision=tc.mixed_precision,
        )

        optimizer = build_optimizer(
            cfg.optim.name, param_groups(model, cfg.optim.weight_decay), **_optim_kwargs(cfg)
        )
        scheduler = build_scheduler(
            optimizer,
            tc.schedule,
            plan.total_updates,
            warmup_updates(cfg, plan.total_updates),
            tc.min_lr_ratio,
        )
        # Only the model and loaders go through prepare(): the optimizer's first_step/second_step and
        # the update-counting scheduler stay ours (AcceleratedOptimizer does not forward them).
        model, train_loader = accelerator.prepare(model, loaders.train)
        eval_loaders = {split: accelerator.prepare(dl) for split, dl in loaders.evals.items()}

        wandb_run = _init_wandb(cfg, accelerator, resolved, run_dir)

        def log_metrics(metrics: dict[str, float], step: int) -> None:
            if wandb_run is not None:
                wandb_run.log(metrics, step=step)

        trainer = Trainer(
            cfg,
            accelerator,
            model,
            optimizer,
            info,
            scheduler,
            train_loader,
            eval_loaders,
            task,
            run_dir,
            plan,
            micro,
            tokenizer=tokenizer,
            on_progress=lambda st: write(st, st.status if st.status != "completed" else "running"),
            log_metrics=log_metrics,
            sharpness_fn=_sharpness_fn(cfg, loaders, task, accelerator) if cfg.sharpness.enabled else None,
        )
        resumed = trainer.load_checkpoint()
        state = trainer.fit()
        extra = {"resumed": resumed, "padding": _padding_stats(loaders)}
        record = write(state, state.status, extra)
        if wandb_run is not None:
            wandb_run.finish()
        log.info(
            "run %s: %s after %d updates (%.1fs)",
            run_dir,
            state.status,
            state.updates,
            time.perf_counter() - t0,
        )
        return record | {"objective": (state.best or {}).get("metrics", {}).get(cfg.task.metric)}
    except Exception as e:
        state = trainer.state if trainer is not None else TrainState()
        write(state, "failed", {"error": f"{type(e).__name__}: {e}"})
        raise


def _micro_batch_size(cfg: DictConfig, num_processes: int, smallest_batch: int) -> int:
    """Per-device micro-batch: global batch / (processes x accumulation), which must divide exactly."""
    div = num_processes * cfg.trainer.grad_accum
    if smallest_batch % div:
        raise ConfigError(
            f"invalid task.batch_size={smallest_batch}: must be divisible by num_processes x trainer.grad_accum "
            f"= {num_processes} x {cfg.trainer.grad_accum}"
        )
    return smallest_batch // div


def _optim_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The optimizer's own keys: everything set in ``optim`` except its name and the trainer's sync flag."""
    o = OmegaConf.to_container(cfg.optim, resolve=True)
    return {k: v for k, v in o.items() if v is not None and k not in ("name", "sync_ascent")}


def _padding_stats(loaders: Any) -> Any:
    stats = getattr(loaders, "padding_stats", None)
    try:
        return stats() if callable(stats) else stats
    except Exception:  # statistics are informative only
        return None


def _init_wandb(cfg: DictConfig, accelerator: Any, resolved: dict[str, Any], run_dir: Path) -> Any:
    if cfg.logging.wandb_mode == "disabled" or not accelerator.is_main_process:
        return None
    import wandb

    return wandb.init(
        project=cfg.logging.wandb_project,
        entity=cfg.logging.wandb_entity,
        mode=cfg.logging.wandb_mode,
        config=resolved,
        dir=str(run_dir),
        name=run_params_tag(cfg),
        group=f"{cfg.experiment_name}/{cfg.task.name}",
        resume="allow",
        id=None,
    )


def _sharpness_fn(cfg: DictConfig, loaders: Any, task: Any, accelerator: Any) -> Any:
    from adasam_glue.sharpness import sharpness_for_training

    return sharpness_for_training(cfg.sharpness, loaders, task, accelerator.device)
