"""``run(cfg)``: one fine-tuning run from a composed config to a run record. Tests call this directly.

Contract (relied on by ``adasam_glue.experiments.plan`` and the report):

- The config is validated before anything heavy is imported or loaded (``validate_config``).
- The run's identity (``adasam_glue.identity``) is what can change its result; the run dir is
  ``cfg.run_dir`` or ``<results_dir>/runs/<experiment>/<task>/<optim>/<tag>-<group hash>/seed<k>``, so
  a config that differs in any result-changing key gets a new dir.
- One process per run dir: a lock held for the run's life; a second launch fails and changes nothing.
- A run dir whose record is ``completed``/``diverged`` *with the same identity* is not trained again
  (the record is returned with ``skipped=True`` in memory only); a checkpoint of the same identity is
  resumed. A different identity in the same dir is refused with the keys that differ (or reused on
  ``reuse_run_dir=true``, which records the change).
- A record of the same identity written by another git commit: a warning and the usual skip/resume,
  or (``rerun_on_new_commit=true``) a new run from update 0 with the old record and files set aside
  (``_code_version_policy``).
- ``trainer.predict_test=true``: the test files are checked before anything is trained; a completed run
  without its predictions writes them from its saved model (or says why it cannot); the skip message
  warns when the record ran on another device (``trainer.cpu`` is not in the identity).
- ``cfg.dry_run``: print ``run: <overrides>`` and return without loading anything.
- Every outcome writes the record: ``completed``, ``diverged`` (NaN loss on an applied update, or the
  fp16 skip rule: ``adasam_glue.trainer``, with ``diverged_reason``), ``preempted`` (signal or
  ``trainer.stop_after_updates``; a signal in the final phase checkpoints at the last update and the
  record names the steps left, ``final_phase_pending``), ``failed`` (exception or Ctrl-C, re-raised after the record is
  written, keeping what earlier attempts recorded). The completed record is written before the resume
  checkpoint is removed, so a kill in between leaves a completed (or resumable) run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adasam_glue.config import ConfigError, validate_config
from adasam_glue.identity import describe_diff, group_hash, identity_diff, identity_hash, run_identity
from adasam_glue.records import (
    FINAL_STATUSES,
    RECORD_NAME,
    RecordError,
    RunRecorder,
    now,
    read_record,
    write_record,
)
from adasam_glue.run_dir import model_label, resolve_run_dir, run_dir_lock, run_params_tag
from adasam_glue.schedules import total_updates, warmup_updates  # noqa: F401  (run_mod.* users)

log = logging.getLogger(__name__)

__all__ = [
    "USER_ERRORS",
    "padding_summary",
    "record_provenance",
    "resolve_run_dir",
    "run",
    "run_params_tag",
    "setup_accelerator",
    "setup_data",
    "setup_model_and_tokenizer",
    "setup_optimizer_and_schedule",
    "setup_trainer",
    "setup_training",
    "total_updates",
    "warmup_updates",
]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the input is wrong" (their messages say what and how to fix): the CLI prints
    them as one line instead of a traceback."""
    from adasam_glue.checkpoint import CheckpointError
    from adasam_glue.data.sources import DataError
    from adasam_glue.modeling import ModelError
    from adasam_glue.predict import PredictionError

    return (ConfigError, RecordError, DataError, ModelError, CheckpointError, PredictionError)


USER_ERRORS = _user_errors()


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) one run; return its record."""
    validate_config(cfg)
    overrides = _overrides(overrides)
    identity = run_identity(cfg)
    run_dir = resolve_run_dir(cfg, group_hash(identity))
    if cfg.dry_run:
        print("run: " + " ".join(overrides), flush=True)
        return {"dry_run": True, "run_dir": str(run_dir), "overrides": overrides}
    if cfg.trainer.predict_test:  # before any training: a missing test.tsv must not cost the run
        from adasam_glue.predict import check_test_files
        from adasam_glue.tasks import get_task

        check_test_files(cfg, get_task(cfg.task.name))
    with run_dir_lock(run_dir, enabled=_is_main_rank()):
        previous = _previous_record(run_dir, identity, cfg)
        superseded = None
        if previous is not None:
            previous, superseded = _code_version_policy(cfg, run_dir, previous)
        if previous is not None and previous.get("status") in FINAL_STATUSES:
            return _finished(cfg, run_dir, previous)
        with _job_files_in(run_dir):
            return _train(cfg, overrides, run_dir, identity, previous, superseded)


#: what a run dir holds of one run's result; set aside together when the run is trained again
_RESULT_FILES = (RECORD_NAME, "checkpoint", "model", "predictions")


def _code_version_policy(
    cfg: DictConfig, run_dir: Path, previous: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """The stated policy for a record (same identity) that another git commit wrote: the identity says
    *what* ran, not *which code* ran it, so after a bug fix the old result would otherwise be skipped
    (or resumed) without a word and pooled with new seeds.

    - commits equal, or either unknown (not a git checkout): nothing to say;
    - ``rerun_on_new_commit=false`` (default): a warning (log and stdout) naming both commits, then the
      usual skip (a final record) or resume (its ``attempts`` keep each attempt's commit); the report
      names the commits behind each cell and flags the cells that mix them;
    - ``rerun_on_new_commit=true``: the run is trained again from update 0. Nothing written is lost:
      ``record.json``, ``checkpoint/``, ``model/`` and ``predictions/`` are renamed with the old commit
      (``record.<commit>.json``, which the report does not read, ``model.<commit>/`` ...) and the new
      record names the old one under ``supersedes``.

    A tree with uncommitted changes (``git_dirty``) on either side is named in the warning; the commit
    alone decides a rerun. Returns ``(previous record or None to start over, the set-aside record's name)``.
    """
    from adasam_glue.provenance import git_commit
    from adasam_glue.records import record_commits

    commit, dirty = git_commit()
    stored, stored_dirty = record_commits(previous)
    other = [c for c in stored if c != commit]
    if commit is None or not other:
        return previous, None
    status = previous.get("status")
    what = (
        f"{run_dir / RECORD_NAME} ({status}) was written by commit {', '.join(c[:12] for c in other)}"
        + (" (from a tree with uncommitted changes)" if stored_dirty else "")
        + f"; this code is commit {commit[:12]}"
        + (" with uncommitted changes" if dirty else "")
    )
    if not cfg.rerun_on_new_commit:
        action = (
            "skipped: its result is reused as it is"
            if status in FINAL_STATUSES
            else "resumed: each attempt's commit stays in its attempts"
        )
        message = (
            f"warning: code changed: {what}. The run is {action}. Set rerun_on_new_commit=true to train it "
            f"again with this code (the old record is kept as record.<commit>.json)."
        )
        log.warning(message)
        print(message, flush=True)
        return previous, None
    tag = (previous.get("git_commit") or other[-1])[:12] + ("-dirty" if stored_dirty else "")
    moved = _set_aside(run_dir, tag)
    message = (
        f"rerun_on_new_commit=true: {what}. Set aside as {', '.join(moved)}; training again from update 0."
    )
    log.warning(message)
    print(message, flush=True)
    return None, moved[0]


def _set_aside(run_dir: Path, tag: str) -> list[str]:
    """Rename the run's result files with ``tag`` (a free suffix: ``record.<tag>.2.json`` if taken);
    the record first, so the returned list starts with its new name."""
    suffix, k = tag, 1
    while any((run_dir / _aside_name(name, suffix)).exists() for name in _RESULT_FILES):
        k += 1
        suffix = f"{tag}.{k}"
    moved = []
    for name in _RESULT_FILES:
        if (run_dir / name).exists() and _is_main_rank():
            (run_dir / name).rename(run_dir / _aside_name(name, suffix))
            moved.append(_aside_name(name, suffix))
    return moved


def _aside_name(name: str, tag: str) -> str:
    """``record.json`` -> ``record.<tag>.json``; a folder ``model`` -> ``model.<tag>``."""
    stem, dot, ext = name.partition(".")
    return f"{stem}.{tag}.{ext}" if dot else f"{name}.{tag}"


def _finished(cfg: DictConfig, run_dir: Path, previous: dict[str, Any]) -> dict[str, Any]:
    """A run dir whose record is final (same identity): not trained again; said so in one line, with
    what this launch asked for that the record cannot give silently:

    - ``trainer.predict_test=true`` on a completed run without its predictions: they are written now
      from the run's saved model (``PredictionError`` when it saved none);
    - a record from another device (``trainer.cpu`` is not part of the identity, see
      ``adasam_glue.identity``): a warning, the record is reused.
    """
    status, path = previous["status"], run_dir / RECORD_NAME
    notes = []
    device_note = _other_device(cfg, previous)
    if device_note:
        log.warning("%s: %s", path, device_note)
        notes.append(device_note)
    out = previous | {"skipped": True}
    if cfg.trainer.predict_test:
        from adasam_glue.predict import predict_completed, saved_predictions_complete
        from adasam_glue.tasks import get_task

        if status != "completed":
            notes.append(f"a {status} run has no test predictions (trainer.predict_test=true ignored)")
        elif saved_predictions_complete(previous, run_dir):
            notes.append(f"its test predictions are in {run_dir / 'predictions'}")
        else:
            block = predict_completed(cfg, get_task(cfg.task.name), run_dir, previous)
            block["written_at"] = now()
            if _is_main_rank():
                write_record(path, previous | {"predictions": block})
            out = out | {"predictions": block}
            notes.append(
                f"test predictions written now from its {block['model']} model: {run_dir / 'predictions'}"
            )
    log.info("skipping %s: record says %s (same identity)", run_dir, status)
    print(f"skipped (already {status}): {path}" + "".join(f"\n  {n}" for n in notes), flush=True)
    return out


def _device_type(cfg: DictConfig) -> str:
    """The device type this launch would train on (Accelerate's choice: ``trainer.cpu``, else CUDA, MPS)."""
    import torch

    if cfg.trainer.cpu:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def _other_device(cfg: DictConfig, record: dict[str, Any]) -> str | None:
    """A warning when the record was trained on another device type than this launch would use."""
    stored = (record.get("hardware") or {}).get("device")
    if not stored:
        return None
    stored_type, now_type = str(stored).split(":")[0], _device_type(cfg)
    if stored_type == now_type:
        return None
    return (
        f"warning: this record was trained on {stored} and this launch would run on {now_type}; the device "
        "is not part of the run identity (it changes numbers only by float rounding), so the record is "
        f"reused. To train again on {now_type}, move {RECORD_NAME} (and checkpoint/, if present) away or pick "
        "another results_dir."
    )


def _previous_record(run_dir: Path, identity: dict[str, Any], cfg: DictConfig) -> dict[str, Any] | None:
    """The record already in ``run_dir`` if it describes the same run; refuse (naming the keys) if not."""
    path = run_dir / RECORD_NAME
    if not path.exists():
        return None
    try:
        previous = read_record(path)
    except RecordError as e:
        raise RecordError(
            f"{e}. Move the file away to start this run over (its checkpoint, if any, is kept), "
            "or pick another run_dir."
        ) from e
    stored = previous.get("identity") or run_identity(previous.get("config", {}))
    diff = identity_diff(stored, identity)
    if diff:
        if cfg.reuse_run_dir and previous.get("status") not in FINAL_STATUSES:
            log.warning(
                "reuse_run_dir=true: resuming %s under a changed config:\n%s", run_dir, describe_diff(diff)
            )
            return previous | {"identity_changes": [list(d) for d in diff]}
        raise ConfigError(
            f"{path} holds a {previous.get('status')} run of a different config:\n{describe_diff(diff)}\n"
            "Leave run_dir unset to get a new run dir for this config (the default), pick another run_dir"
            + (
                ""
                if previous.get("status") in FINAL_STATUSES
                else ", or set reuse_run_dir=true to resume it anyway"
            )
            + "."
        )
    return previous


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(
    cfg: DictConfig,
    overrides: list[str],
    run_dir: Path,
    identity: dict[str, Any],
    previous: dict[str, Any] | None,
    superseded: str | None = None,
) -> dict[str, Any]:
    from adasam_glue.tasks import get_task
    from adasam_glue.trainer import TrainState

    t0 = time.perf_counter()
    task = get_task(cfg.task.name)
    accelerator = setup_accelerator(cfg)
    print(f"run dir: {run_dir}", flush=True)
    base = record_provenance(cfg, overrides, identity, task.name, accelerator)
    if superseded:  # rerun_on_new_commit: the record of the earlier code, kept beside this one
        base["supersedes"] = superseded
    recorder = RunRecorder(
        run_dir / RECORD_NAME,
        base,
        previous,
        write=accelerator.is_main_process,
    )
    trainer = wandb_run = None
    try:
        tokenizer, model = setup_model_and_tokenizer(cfg, task)
        wandb_run = _init_wandb(cfg, accelerator, recorder.base["config"], run_dir, recorder)
        trainer, loaders = setup_training(
            cfg, accelerator, task, tokenizer, model, run_dir, recorder, identity, wandb_run
        )
        trainer.verify_identity = not (previous or {}).get("identity_changes")  # reuse_run_dir=true
        if cfg.trainer.predict_test:  # the final phase's last step, under the trainer's signal handlers
            from adasam_glue.predict import predict_test

            trainer.predict = lambda trained: predict_test(
                cfg, task, trained, tokenizer, loaders.collator, accelerator, run_dir
            )
        resumed = recorder.resumed = trainer.load_checkpoint()
        # the attempt starts where training does: the checkpoint's update (or 0), not the old record's count
        recorder.attempt["updates_at_start"] = int(trainer.state.updates)
        if resumed and previous is None:
            log.warning(
                "resuming %s from its checkpoint at update %d although it has no %s: to start over, move "
                "the checkpoint/ folder away too",
                run_dir,
                trainer.state.updates,
                RECORD_NAME,
            )
        state = trainer.fit()
        extra = {
            "resumed": resumed,
            "padding": padding_summary(loaders),
            "data_quality": _data_quality(loaders),
        }
        if state.predictions is not None and state.status == "completed":
            extra["predictions"] = state.predictions
        if wandb_run is not None:  # before the record is written, so a failure to finish is in it
            wandb_run.finish()
        record = recorder.write(state, state.status, extra)
        if state.status == "completed" and not cfg.trainer.keep_checkpoint:
            trainer.remove_checkpoint()  # only now: the completed record is on disk
        if accelerator.is_main_process:
            print(_summary(record, run_dir, cfg, time.perf_counter() - t0), flush=True)
        return record | {"objective": (state.best or {}).get("metrics", {}).get(cfg.task.metric)}
    except BaseException as e:  # Ctrl-C and OSError too: the record gets a final status
        if wandb_run is not None:  # guarded: never hides the error below
            wandb_run.finish()
        state = trainer.state if trainer is not None else TrainState()
        why = "KeyboardInterrupt (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        try:
            recorder.write(state, "failed", {"error": why})
        except OSError as write_error:  # e.g. the disk is full: say so, keep the original error
            log.error("could not write the failed record: %s", write_error)
        raise


# ---------------------------------------------------------------------------------- setup steps
# Public: the benchmarks (adasam_glue.bench) and the HF integration's tests build through these same
# steps, so what they measure is what run() trains.
def setup_accelerator(cfg: DictConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    # Accelerate keeps one process-wide state; several runs in one process (a notebook, the demo, the
    # tests) may differ in precision, so forget the previous run's settings (the process group stays).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(cpu=cfg.trainer.cpu, mixed_precision=cfg.trainer.mixed_precision)
    set_seed(cfg.seed)
    return accelerator


def record_provenance(
    cfg: DictConfig, overrides: list[str], identity: dict[str, Any], task: str, accelerator: Any
) -> dict[str, Any]:
    """The record's fixed part: what ran, under which identity, from which code, on which hardware."""
    from adasam_glue.optim import get_optim_info
    from adasam_glue.provenance import git_commit, hardware, versions

    commit, dirty = git_commit()
    tag, group = run_params_tag(cfg), group_hash(identity)
    return {
        "run_id": f"{cfg.experiment_name}/{task}/{cfg.optim.name}/{tag}-{group}/seed{cfg.seed}",
        "experiment": cfg.experiment_name,
        "task": task,
        "optimizer": cfg.optim.name,
        "model": model_label(cfg.model),
        "seed": cfg.seed,
        "params": tag,
        "identity": identity,
        "identity_hash": identity_hash(identity),
        "group_hash": group,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "overrides": overrides,
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions(),
        "hardware": hardware(accelerator),
        "selection_metric": cfg.task.metric,
        "train_loss_at": get_optim_info(cfg.optim.name).loss_point,  # RSAM: at w + delta0, not w
        "started_at": now(),
    }


def setup_model_and_tokenizer(cfg: DictConfig, task: Any) -> tuple[Any, Any]:
    """The tokenizer and model the run starts from (``task.init_from`` when set: the MNLI checkpoint).

    The tiny test model builds its word-level tokenizer from the training texts, so it reads them first.
    """
    from adasam_glue.data import load_glue_config
    from adasam_glue.modeling import build_model, build_tokenizer

    init_from = cfg.task.init_from
    texts = None
    if cfg.model.source == "tiny" and not init_from:
        raw, _ = load_glue_config(cfg.data, task.name)
        texts = [t for key in task.text_keys for t in raw["train"][key][:2000]]
    tokenizer = build_tokenizer(cfg.model, texts=texts, init_from=init_from)
    return tokenizer, build_model(cfg.model, task, tokenizer, init_from=init_from)


def setup_data(cfg: DictConfig, task: Any, tokenizer: Any, accelerator: Any) -> tuple[Any, int, Any]:
    """Batch plan, per-device micro-batch size and the loaders (tokenized once per node)."""
    from adasam_glue.data import build_dataloaders
    from adasam_glue.schedules import build_batch_plan

    tc = cfg.trainer
    plan = build_batch_plan(
        cfg.task.batch_size, total_updates(cfg), list(tc.batch_schedule) if tc.batch_schedule else None
    )
    micro = _micro_batch_size(cfg, accelerator.num_processes, min(plan.sizes))
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
        target_scale=cfg.task.get("target_scale"),
    )
    return plan, micro, loaders


def setup_optimizer_and_schedule(cfg: DictConfig, model: Any, plan: Any) -> tuple[Any, Any]:
    from adasam_glue.modeling import param_groups
    from adasam_glue.optim import build_optimizer
    from adasam_glue.schedules import build_scheduler

    tc = cfg.trainer
    optimizer = build_optimizer(
        cfg.optim.name,
        param_groups(model, cfg.optim.weight_decay, cfg.optim.lr, tc.get("head_lr_scale")),
        **optim_kwargs(cfg),
    )
    scheduler = build_scheduler(
        optimizer, tc.schedule, plan.total_updates, warmup_updates(cfg, plan.total_updates), tc.min_lr_ratio
    )
    return optimizer, scheduler


def setup_training(
    cfg: DictConfig,
    accelerator: Any,
    task: Any,
    tokenizer: Any,
    model: Any,
    run_dir: Path,
    recorder: RunRecorder,
    identity: dict[str, Any],
    wandb_run: Any = None,
) -> tuple[Any, Any]:
    """Data, optimizer and schedule, Accelerate's ``prepare`` and the trainer over them, for ``model``:
    ``(trainer, loaders)`` (``trainer.model`` is the prepared model)."""
    plan, micro, loaders = setup_data(cfg, task, tokenizer, accelerator)
    optimizer, scheduler = setup_optimizer_and_schedule(cfg, model, plan)
    # Only the model and loaders go through prepare(): the optimizer's first_step/second_step and
    # the update-counting scheduler stay ours (AcceleratedOptimizer does not forward them).
    model, train_loader = accelerator.prepare(model, loaders.train)
    evals = {split: accelerator.prepare(dl) for split, dl in loaders.evals.items()}
    trainer = setup_trainer(cfg, accelerator, model, optimizer, scheduler, train_loader, evals, task, run_dir,
                            plan, micro, tokenizer, loaders, recorder, wandb_run, identity)  # fmt: skip
    return trainer, loaders


def setup_trainer(cfg, accelerator, model, optimizer, scheduler, train_loader, eval_loaders, task, run_dir, plan,
             micro, tokenizer, loaders, recorder, wandb_run, identity) -> Any:  # fmt: skip
    from adasam_glue.optim import get_optim_info
    from adasam_glue.trainer import Trainer, TrainerSettings

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if wandb_run is not None:
            wandb_run.log(metrics, step=step)

    sharpness_fn = None
    if cfg.sharpness.enabled:
        from adasam_glue.sharpness.measure import sharpness_for_training

        sharpness_fn = sharpness_for_training(cfg.sharpness, loaders, task, accelerator.device)
    return Trainer(
        TrainerSettings.from_config(cfg),
        accelerator,
        model,
        optimizer,
        get_optim_info(cfg.optim.name),
        scheduler,
        train_loader,
        eval_loaders,
        task,
        run_dir,
        plan,
        micro,
        tokenizer=tokenizer,
        on_progress=lambda st: recorder.write(st, "running" if st.status == "completed" else st.status),
        log_metrics=log_metrics,
        sharpness_fn=sharpness_fn,
        identity_hash=identity_hash(identity),
    )


def _micro_batch_size(cfg: DictConfig, num_processes: int, smallest_batch: int) -> int:
    """Per-device micro-batch: global batch / (processes x accumulation), which must divide exactly."""
    div = num_processes * cfg.trainer.grad_accum
    if smallest_batch % div:
        raise ConfigError(
            f"invalid task.batch_size={smallest_batch}: must be divisible by num_processes x trainer.grad_accum "
            f"= {num_processes} x {cfg.trainer.grad_accum}"
        )
    return smallest_batch // div


def optim_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The optimizer's own keys: everything set in ``optim`` except its name and the trainer's sync flag."""
    o = OmegaConf.to_container(cfg.optim, resolve=True)
    return {k: v for k, v in o.items() if v is not None and k not in ("name", "sync_ascent")}


def padding_summary(loaders: Any) -> Any:
    stats = getattr(loaders, "padding_stats", None)
    try:
        return stats() if callable(stats) else stats
    except Exception:  # statistics are informative only
        return None


def _data_quality(loaders: Any) -> Any:
    quality = getattr(loaders, "data_quality", None)
    return quality() if callable(quality) else quality


def _overrides(given: list[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not under @hydra.main (tests, notebooks)
        return []


class _job_files_in:
    """Under ``@hydra.main``: the job's ``.hydra/`` config copied into the run dir and the log written to
    ``run_dir/train.log``, so everything about a run sits in its own folder (not a dated Hydra dir)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.handler = run_dir, None

    def __enter__(self) -> None:
        try:
            from hydra.core.hydra_config import HydraConfig

            hydra_dir = Path(HydraConfig.get().runtime.output_dir) / ".hydra"
        except Exception:  # not under @hydra.main
            return
        if hydra_dir.is_dir():
            shutil.copytree(hydra_dir, self.run_dir / ".hydra", dirs_exist_ok=True)
        self.handler = logging.FileHandler(self.run_dir / "train.log")
        self.handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(self.handler)

    def __exit__(self, *exc: Any) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()


def _summary(record: dict[str, Any], run_dir: Path, cfg: DictConfig, seconds: float) -> str:
    """What a person wants to read when a run ends: outcome, numbers, where the record is, what next."""

    def metrics(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "none"
        m = ", ".join(f"{k} {v:.4f}" for k, v in entry["metrics"].items() if isinstance(v, (int, float)))
        return f"{m} (update {entry['update']})"

    runs_root = Path(cfg.results_dir).expanduser().absolute() / "runs"
    why = [f"  why:       {record['diverged_reason']}"] if record.get("diverged_reason") else []
    lines = [
        f"== {record['run_id']}: {record['status']} ==",
        f"  updates {record['optimizer_updates']}, forward/backward passes {record['forward_backward_passes']}, "
        f"skipped updates {record.get('skipped_updates', 0)}, wall time {seconds:.1f}s",
        *why,
        f"  best dev:  {metrics(record.get('best'))}",
        f"  final dev: {metrics(record.get('final'))}",
        f"  record:    {run_dir / RECORD_NAME}",
        f"  report:    python -m adasam_glue.report {runs_root} <report dir>",
    ]
    return "\n".join(lines)


def _init_wandb(
    cfg: DictConfig, accelerator: Any, resolved: dict[str, Any], run_dir: Path, recorder: RunRecorder
) -> WandbLogger | None:
    """A wandb run whose id lives in the run dir, so a requeued run continues the same wandb run.

    ``WANDB_MODE`` in the environment wins over ``logging.wandb_mode`` (wandb's own convention), as do
    ``WANDB_PROJECT``, ``WANDB_ENTITY`` and ``WANDB_DIR`` (default: the run dir, so a run's files stay in
    its folder). wandb is a convenience, the record is the result: if wandb cannot be imported or
    ``wandb.init`` fails, the run goes on without it (:class:`WandbLogger` says why).
    """
    mode = os.environ.get("WANDB_MODE") or cfg.logging.wandb_mode
    if mode == "disabled" or not accelerator.is_main_process:
        return None
    id_file = run_dir / WANDB_ID_FILE
    try:
        import wandb

        run_id = id_file.read_text().strip() if id_file.exists() else new_wandb_id()
        id_file.write_text(run_id)
        wandb_run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or cfg.logging.wandb_project,
            entity=os.environ.get("WANDB_ENTITY") or cfg.logging.wandb_entity,
            mode=mode,
            config=resolved,
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            name=f"{run_params_tag(cfg)}/seed{cfg.seed}",
            group=f"{cfg.experiment_name}/{cfg.task.name}",
            resume="allow",
            id=run_id,
        )
    except Exception as e:  # ImportError, a bad WANDB_MODE, no network or login for mode=online ...
        WandbLogger(None, recorder).fail("init", e)
        return None
    return WandbLogger(wandb_run, recorder)


#: the run dir's file holding the wandb run id (a resumed run logs to the same wandb run)
WANDB_ID_FILE = ".wandb_id"


def new_wandb_id() -> str:
    """A fresh wandb run id: wandb's own generator (``wandb.sdk.lib.runid`` since ``wandb.util.generate_id``
    was removed, wandb 0.2x), else 8 random lowercase hex characters, which wandb accepts as an id."""
    try:
        from wandb.sdk.lib.runid import generate_id

        return str(generate_id())
    except Exception:  # wandb moved it again: any short [a-z0-9] string is a valid id
        import uuid

        return uuid.uuid4().hex[:8]


class WandbLogger:
    """The run's wandb run, guarded: a failing ``log`` or ``finish`` never ends the training run.

    The first failure is reported once (a logged warning and ``wandb_error`` in this attempt's entry of
    the record) and wandb is dropped for the rest of the run; the record, not wandb, holds the results.
    Ctrl-C and other ``BaseException``s still propagate.
    """

    def __init__(self, run: Any, recorder: RunRecorder | None = None) -> None:
        self.run, self.recorder = run, recorder
        self.error: str | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as e:
            self.fail("log", e)

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as e:
            self.fail("finish", e)
        self.run = None

    def fail(self, what: str, error: Exception) -> None:
        self.error = f"wandb.{what} failed: {type(error).__name__}: {error}"
        log.warning("%s; the run goes on without wandb (metrics are in %s)", self.error, RECORD_NAME)
        if self.recorder is not None:
            self.recorder.note("wandb_error", self.error)
        self.run = None
