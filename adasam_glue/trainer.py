"""The training loop: one Accelerate loop in which a SAM update is visibly two passes over one batch.

Spec ``docs/algorithms.md``: §1–2 (one SAM-family update = ascent pass at w, ``first_step`` to w + e,
descent pass at w + e on the *same* mini-batch, ``second_step``), §2 "Numerics" (the ascent gradient is
kept per device unless ``optim.sync_ascent``), §3 (schedules count optimizer updates, not passes).

Conventions that keep the accounting honest:

- ``optimizer_updates`` counts parameter updates; ``forward_backward_passes`` counts passes over the
  update's whole batch (2 per SAM update, 1 otherwise) whatever the number of micro-batches.
- Gradient accumulation for SAM accumulates the ascent gradient over *all* micro-batches before the
  perturbation, then runs the descent pass over the same micro-batches; each micro-batch's loss is
  weighted by its share of the update's examples so k micro-batches equal one batch k times the size.
- Data-parallel sync: gradients are all-reduced once per pass at most, on the pass's last micro-batch.
  The ascent pass is not all-reduced at all by default (per-device perturbation: one all-reduce per
  update); ``optim.sync_ascent=true`` all-reduces it too (global SAM: two).
- A resume checkpoint holds model, optimizer (SAM state included), scheduler, every RNG and the data
  position, so a preempted run resumed later reaches the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from adasam_glue import checkpoint
from adasam_glue.checkpoint import CHECKPOINT_DIR
from adasam_glue.config import SharpnessConfig, TrainerConfig
from adasam_glue.metrics import compute_metrics, constant_prediction
from adasam_glue.modeling import per_sample_loss
from adasam_glue.optim import OptimInfo
from adasam_glue.schedules import BatchPlan
from adasam_glue.step import UpdateStep, all_reduce_mean_
from adasam_glue.tasks import TaskInfo

log = logging.getLogger(__name__)

#: signals that mean "you are about to be stopped": checkpoint and requeue (SLURM, submitit)
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
#: the final phase, in order: dev evaluation at the last update, final sharpness, the final model save
#: (``save_model=final``), the test predictions (``predict_test``)
FINAL_STEPS = ("evaluate", "sharpness", "save_model", "predict")


class _FinalPhaseSignal(BaseException):
    """Raised by the signal handler inside a final-phase step (one process): the step stops at once.

    A ``BaseException`` so that no ``except Exception`` in library code (saving, metrics) swallows it.
    """


@dataclass(frozen=True)
class TrainerSettings:
    """What the loop reads from the config: the ``trainer`` and ``sharpness`` sections as composed (typed
    schema objects: no key restated here) and three values from other sections, built once by
    :meth:`from_config`."""

    trainer: TrainerConfig
    sharpness: SharpnessConfig
    eval_every: int  #: dev evaluation period in updates (0: only at the end); ``trainer.eval_every`` resolved
    sync_ascent: bool  #: ``optim.sync_ascent``
    selection_metric: str  #: the task's metric that picks the best checkpoint (higher wins)

    @classmethod
    def from_config(cls, cfg: Any) -> TrainerSettings:
        """``trainer.eval_every: null`` means once per epoch of the recipe, as fairseq evaluates."""
        eval_every = cfg.trainer.eval_every
        if eval_every is None:
            eval_every = max(1, cfg.task.total_updates // cfg.task.epochs)
        return cls(
            trainer=OmegaConf.to_object(cfg.trainer),
            sharpness=OmegaConf.to_object(cfg.sharpness),
            eval_every=eval_every,
            sync_ascent=bool(cfg.optim.sync_ascent),
            selection_metric=cfg.task.metric,
        )


@dataclass
class TrainState:
    """Everything about progress that a resumed run needs (saved as JSON in the checkpoint)."""

    updates: int = 0
    forward_backward_passes: int = 0
    micro_batch_passes: int = 0
    #: fp16 updates skipped for a non-finite gradient (counted in ``updates``; the lr schedule did not
    #: advance for them, as HF Trainer/Accelerate do; weights and optimizer state untouched)
    skipped_updates: int = 0
    skip_streak: int = 0  #: skipped updates in a row up to now (the fp16 skip rule)
    samples_seen: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0  #: micro-batches of ``epoch`` already consumed (per process)
    train_curve: list[dict[str, float]] = field(default_factory=list)
    eval_curve: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    status: str = "running"
    diverged_reason: str | None = None  #: why a ``diverged`` run was stopped (written to the record)
    wall_time_s: float = 0.0
    sharpness: dict[str, Any] | None = None
    sharpness_curve: list[dict[str, Any]] = field(default_factory=list)
    #: the final phase's steps (:data:`FINAL_STEPS`) already done: a run requeued after a signal in the
    #: final phase does only the others
    final_done: list[str] = field(default_factory=list)
    #: the steps a run preempted in its final phase has left (the record's ``final_phase_pending``)
    final_pending: list[str] = field(default_factory=list)
    predictions: dict[str, Any] | None = None  #: the record's ``predictions`` block (``predict_test``)

    @property
    def final(self) -> dict[str, Any] | None:
        return self.eval_curve[-1] if self.eval_curve else None


class Trainer:
    """Owns the loop; everything it trains with is built outside (``adasam_glue.run``) and passed in."""

    def __init__(
        self,
        settings: TrainerSettings,
        accelerator: Any,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        optim_info: OptimInfo,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_loader: Any,
        eval_loaders: dict[str, Any],
        task: TaskInfo,
        run_dir: Path,
        batch_plan: BatchPlan,
        micro_batch_size: int,
        tokenizer: Any = None,
        on_progress: Callable[[TrainState], None] | None = None,
        log_metrics: Callable[[dict[str, float], int], None] | None = None,
        sharpness_fn: Callable[[torch.nn.Module], dict[str, Any]] | None = None,
        identity_hash: str | None = None,
    ) -> None:
        self.settings, self.accelerator, self.model = settings, accelerator, model
        self.optimizer, self.info, self.scheduler = optimizer, optim_info, scheduler
        self.train_loader, self.eval_loaders, self.task = train_loader, eval_loaders, task
        self.run_dir, self.batch_plan, self.tokenizer = Path(run_dir), batch_plan, tokenizer
        self.global_micro = micro_batch_size * accelerator.num_processes
        self.on_progress = on_progress or (lambda state: None)
        self.log_metrics = log_metrics or (lambda metrics, step: None)
        self.sharpness_fn = sharpness_fn
        self.identity_hash = identity_hash  #: stored in checkpoints; a resume checks it
        self.verify_identity = True  #: False when the user asked to reuse a run dir (``reuse_run_dir``)
        #: ``predict(model) -> predictions block``: the final phase's last step when set (``predict_test``)
        self.predict: Callable[[torch.nn.Module], dict[str, Any]] | None = None
        self.state = TrainState()
        self._signal: int | None = None
        self._interruptible = False  #: a signal now raises _FinalPhaseSignal (inside a final-phase step)
        # fp16 is the trainer's on every device (spec §2.2): autocast in _losses, one GradScaler for both
        # passes of an update. On CUDA Accelerate made one (and autocasts the prepared forward): reuse it,
        # one scale; on CPU its fp16 is a no-op, so the scaler is ours. Under fp16 the backward is a plain
        # loss.backward() of the already scaled loss (accelerator.backward would scale it again).
        self.fp16 = settings.trainer.mixed_precision == "fp16"
        self.scaler: torch.amp.GradScaler | None = None
        if self.fp16:
            self.scaler = getattr(accelerator, "scaler", None)
            if self.scaler is None:
                self.scaler = torch.amp.GradScaler(accelerator.device.type)
        #: the one update of any optimizer (adasam_glue.step; shared with the transformers integration)
        self.update = UpdateStep(
            optimizer,
            optim_info,
            self._losses,
            backward=(lambda loss: loss.backward()) if self.scaler is not None else accelerator.backward,
            sync=self._sync,
            sync_ascent=settings.sync_ascent,
            clip=self._clip,
            scaler=self.scaler,
            all_reduce_mean=all_reduce_mean_ if accelerator.num_processes > 1 else None,
        )
        self.eval_every = settings.eval_every

    # ------------------------------------------------------------------ one update
    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """One optimizer update over ``micro_batches``; returns the summed first-pass loss (local
        examples): at w, RSAM at w + delta0 (``OptimInfo.loss_point``, the record's ``train_loss_at``).

        The update is ``self.update`` (:class:`adasam_glue.step.UpdateStep`, the one copy of the SAM step):
        1. ascent pass at w over every micro-batch, all-reduced only with ``optim.sync_ascent``;
           fp16: unscale, an overflow skips the update here; ``first_step``: w <- w + e;
        2. descent pass at w + e on the same micro-batches, all-reduced on the last one; each loss
           weighted by its share of the update's examples (ESAM: selection over the whole batch);
           fp16: unscale, an overflow restores w and skips; clipping; ``second_step``: w <- copy, base step;
        (one pass and ``step()`` for SGD/AMSGrad). Here: the counters and the schedule (§3).
        """
        out = self.update(micro_batches)
        st = self.state
        st.forward_backward_passes += out.passes
        st.micro_batch_passes += out.passes * len(micro_batches)
        if out.skipped:
            st.skipped_updates += 1  # fp16 overflow: nothing applied; the schedule waits (HF/Accelerate)
            st.skip_streak += 1
        else:
            self.scheduler.step()  # the schedule counts applied updates
            st.skip_streak = 0
        st.updates += 1
        return out.loss_sum

    def _losses(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-example losses (fp32) of a forward pass; per example so ESAM can select samples."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
        # fp16: the trainer's autocast (a no-op nest inside Accelerate's on CUDA; the only one on CPU)
        with torch.autocast(self.accelerator.device.type, dtype=torch.float16, enabled=self.fp16):
            logits = self.model(**inputs).logits
        return per_sample_loss(logits, batch["labels"], self.task.num_labels)

    def _sync(self, sync: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model)

    def _clip(self) -> None:
        # fp16: UpdateStep unscaled the gradients already; accelerator.clip_grad_norm_ unscales only
        # optimizers passed to prepare(), and ours is not, so nothing is unscaled twice.
        if self.settings.trainer.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.settings.trainer.max_grad_norm)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainState:
        st, tcfg, acc = self.state, self.settings.trainer, self.accelerator
        sharp = self.settings.sharpness
        total = self.batch_plan.total_updates
        stream = self._micro_batches()
        bar = self._progress_bar(total)
        started, updates_at_start = time.perf_counter(), st.updates
        fit_started = started
        self.model.train()  # from_pretrained returns eval mode: dropout must be on while training
        self.on_progress(st)  # one "running" record per launch: the run is visible from its start
        with self._signal_handlers():
            while st.updates < total:
                k = max(1, self.batch_plan.batch_size(st.updates) // self.global_micro)
                micro_batches = [next(stream) for _ in range(k)]
                lr = self.scheduler.get_last_lr()[0]
                skipped_before = st.skipped_updates
                loss_sum = self.train_step(micro_batches)
                skipped = st.skipped_updates > skipped_before  # fp16 overflow: the same on every rank

                # One scalar all-reduce per update: loss, examples, and "stop" (signal on any rank).
                stop = float(self._signal is not None or st.updates == tcfg.stop_after_updates)
                n_local = float(sum(len(mb["labels"]) for mb in micro_batches))
                stats = torch.tensor([loss_sum.item(), n_local, stop], device=acc.device, dtype=torch.float64)
                stats = acc.reduce(stats, reduction="sum")
                loss, n_global, stop = (
                    stats[0].item() / stats[1].item(),
                    int(stats[1].item()),
                    stats[2].item() > 0,
                )
                st.samples_seen += n_global
                if st.updates % tcfg.log_every == 0 or st.updates == total:
                    st.train_curve.append({"update": st.updates, "loss": loss, "lr": lr})
                    self.log_metrics({"train/loss": loss, "train/lr": lr}, st.updates)
                elapsed = max(time.perf_counter() - fit_started, 1e-9)  # updates/s since this launch
                bar.set_postfix(
                    loss=f"{loss:.4f}", lr=f"{lr:.2e}", ups=f"{(st.updates - updates_at_start) / elapsed:.2f}"
                )
                bar.update(1)

                why = None
                if not math.isfinite(loss) and not skipped:  # an fp16 overflow is a skipped update
                    why = f"train loss {loss} at update {st.updates} (an applied update)"
                elif tcfg.fp16_max_skip_streak is not None and st.skip_streak > tcfg.fp16_max_skip_streak:
                    why = self._skip_streak_reason()
                if why is not None:
                    self._diverge(why)  # diverged runs are data: stop, keep the record
                    break
                # The record is written at evals, checkpoints, signals and the end, never per update:
                # its size grows with the run, so a per-update write would make the run quadratic.
                write_record = False
                if self.eval_every and st.updates % self.eval_every == 0 and st.updates < total:
                    self.evaluate_and_track()
                    write_record = True
                if sharp.enabled and sharp.every and st.updates % sharp.every == 0:
                    self._measure_sharpness(final=False)
                if tcfg.checkpoint_every and st.updates % tcfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    write_record = True
                st.wall_time_s += time.perf_counter() - started
                started = time.perf_counter()
                if stop and st.updates < total:
                    bar.close()
                    self.save_checkpoint()
                    st.status = "preempted"
                    return st
                if write_record:
                    self.on_progress(st)
            bar.close()
            if st.status == "running":
                why = self._end_of_run_verdict()
                if why is not None:
                    self._diverge(why)
            if st.status == "running":
                st.wall_time_s += time.perf_counter() - started
                started = time.perf_counter()
                self._final_phase()  # may replace self.state (a signal: back to the last finished step)
            self.state.wall_time_s += time.perf_counter() - started
        return self.state

    # ------------------------------------------------------------------ the final phase
    def _final_phase(self) -> None:
        """After the last update: the steps of :data:`FINAL_STEPS` this run needs, each done once.

        It runs under the signal handlers, and a preemption signal here is never swallowed (the run
        would end ``running`` with no checkpoint, and its requeue would start at update 0). With one
        process the signal interrupts the current step at once (the final sharpness of a large model
        can outlast the grace period between the signal and the kill); with several, the processes
        agree on it between steps. Either way the state goes back to the last finished step (weights
        too: sharpness perturbs them and ``save_model=best`` predictions load the best ones), a
        checkpoint is written at the last update, and the run ends ``preempted`` with
        ``final_pending`` naming the steps left; the requeued run resumes at the last update and does
        only those (``final_done``).
        """
        st, t = self.state, self.settings
        needed = {
            "evaluate": not st.eval_curve or st.eval_curve[-1]["update"] != st.updates,
            "sharpness": t.sharpness.enabled and self.sharpness_fn is not None,
            "save_model": t.trainer.save_model == "final",
            "predict": self.predict is not None,
        }
        todo = [name for name in FINAL_STEPS if needed[name] and name not in st.final_done]
        one_process = self.accelerator.num_processes == 1
        # the final weights, kept to checkpoint them if a step that changes the weights is interrupted
        final_weights = None
        if one_process and ("sharpness" in todo or ("predict" in todo and t.trainer.save_model == "best")):
            model = self.accelerator.unwrap_model(self.model)
            final_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        done = copy.deepcopy(st)
        for i, name in enumerate(todo):
            if self._stop_requested():
                self._preempt_in_final_phase(done, todo[i:], final_weights)
                return
            self._interruptible = one_process
            try:
                self._final_step(name)
            except _FinalPhaseSignal:
                self._preempt_in_final_phase(done, todo[i:], final_weights)
                return
            finally:
                self._interruptible = False
            self.state.final_done.append(name)
            done = copy.deepcopy(self.state)
        self.state.status = "completed"

    def _final_step(self, name: str) -> None:
        if name == "evaluate":
            self.evaluate_and_track()
        elif name == "sharpness":
            self._measure_sharpness(final=True)
        elif name == "save_model":
            self.save_model()
        elif name == "predict" and self.predict is not None:
            self.state.predictions = self.predict(self.model)

    def _stop_requested(self) -> bool:
        """Whether a signal came on any process (one all-reduce with several processes)."""
        flag = self._signal is not None
        if self.accelerator.num_processes > 1:
            t = torch.tensor([float(flag)], device=self.accelerator.device)
            flag = self.accelerator.reduce(t, reduction="sum").item() > 0
        return flag

    def _preempt_in_final_phase(
        self, done: TrainState, pending: list[str], final_weights: dict[str, torch.Tensor] | None
    ) -> None:
        """Back to the last finished step, checkpoint at the last update, end ``preempted``."""
        self._interruptible = False
        if final_weights is not None:
            self.accelerator.unwrap_model(self.model).load_state_dict(final_weights)
        self.model.train()
        log.warning(
            "signal %s in the final phase (before %s): checkpointing at update %d; the requeued run "
            "resumes there and does only %s",
            self._signal,
            pending[0],
            done.updates,
            ", ".join(pending),
        )
        self.state = done
        self.save_checkpoint()
        self.state.final_pending = list(pending)
        self.state.status = "preempted"

    # ------------------------------------------------------------------ the divergence rule
    def _diverge(self, why: str) -> None:
        self.state.status, self.state.diverged_reason = "diverged", why
        log.warning("stopping at update %d, status=diverged: %s", self.state.updates, why)

    def _skip_streak_reason(self) -> str:
        scale = f"; loss scale now {self.scaler.get_scale():g}" if self.scaler is not None else ""
        return (
            f"fp16: {self.state.skip_streak} updates in a row skipped for non-finite gradients (up to update "
            f"{self.state.updates}{scale}), more than "
            f"trainer.fp16_max_skip_streak={self.settings.trainer.fp16_max_skip_streak}: the run no longer trains"
        )

    def _end_of_run_verdict(self) -> str | None:
        """The rule's end-of-run part (:func:`adasam_glue.records.skip_rule_verdict`, the one the report
        applies to old records): too many skipped updates in all, or a non-finite last train loss."""
        from adasam_glue.records import final_loss_not_finite, too_many_skips

        st, t = self.state, self.settings
        why = too_many_skips(
            st.skipped_updates,
            st.updates,
            t.trainer.fp16_max_skip_streak,
            t.trainer.fp16_max_skipped_fraction,
        )
        if why is None:
            record = {"train_curve": st.train_curve[-1:], "optimizer_updates": st.updates}
            why = final_loss_not_finite(record)
        return why

    def remove_checkpoint(self) -> None:
        """Delete the resume checkpoint; the caller does this only after the completed record is written."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            checkpoint.remove(self.run_dir)

    def _micro_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless micro-batch stream; epoch and in-epoch position live in the state (resumable)."""
        st = self.state
        while True:
            self.train_loader.set_epoch(st.epoch)  # shuffle order = f(seed, epoch)
            skip = st.micro_in_epoch
            loader = (
                self.accelerator.skip_first_batches(self.train_loader, skip) if skip else self.train_loader
            )
            batches = iter(loader)
            while True:
                # A DataLoader draws its base seed from the global torch RNG when it starts an epoch;
                # keep data loading out of the dropout stream so a resumed run sees the same masks.
                rng = torch.get_rng_state()
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                finally:
                    torch.set_rng_state(rng)
                st.micro_in_epoch += 1
                yield batch
            st.epoch, st.micro_in_epoch = st.epoch + 1, 0

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Dev metrics on every eval split (MNLI: matched and mismatched) and the mean eval loss."""
        self.model.eval()
        metrics: dict[str, float] = {}
        losses, constant = [], True
        for split, loader in self.eval_loaders.items():
            preds, refs, loss_sum, count = [], [], 0.0, 0
            for batch in loader:
                inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
                logits = self.model(**inputs).logits.float()
                loss = per_sample_loss(logits, batch["labels"], self.task.num_labels)
                logits, labels, loss = self.accelerator.gather_for_metrics((logits, batch["labels"], loss))
                preds.append(logits.cpu())
                refs.append(labels.cpu())
                loss_sum, count = loss_sum + loss.sum().item(), count + len(loss)
            outputs = torch.cat(preds).numpy()
            metrics.update(compute_metrics(self.task.name, outputs, torch.cat(refs).numpy(), split=split))
            constant = constant and constant_prediction(self.task.name, outputs)
            losses.append(loss_sum / max(count, 1))
        self.model.train()
        return {
            "update": self.state.updates,
            "eval_loss": float(np.mean(losses)),
            "metrics": metrics,
            "constant_prediction": constant,  # every split, every prediction the same (no_learning)
        }

    def evaluate_and_track(self) -> dict[str, Any]:
        """Evaluate, append to the curve, keep the best by the task's selection metric (higher wins)."""
        entry = self.evaluate()
        st, key = self.state, self.settings.selection_metric
        st.eval_curve.append(entry)
        value = entry["metrics"].get(key, float("nan"))
        best = st.best["metrics"].get(key, float("nan")) if st.best else float("-inf")
        if st.best is None or (math.isfinite(value) and not value <= best):
            st.best = entry
            if self.settings.trainer.save_model == "best":
                self.save_model()
        self.log_metrics(
            {f"eval/{k}": v for k, v in entry["metrics"].items()} | {"eval/loss": entry["eval_loss"]},
            st.updates,
        )
        if self.accelerator.is_main_process:
            log.info("update %d: %s", st.updates, json.dumps(entry["metrics"]))
        return entry

    def _measure_sharpness(self, final: bool) -> None:
        """Sharpness on the main process only (spec: never repeated on every rank)."""
        if self.sharpness_fn is None:
            return
        block = None
        if self.accelerator.is_main_process:
            block = self.sharpness_fn(self.accelerator.unwrap_model(self.model))
            block["update"] = self.state.updates
            if final:
                self.state.sharpness = block
            else:
                self.state.sharpness_curve.append(block)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ saving and resuming
    def save_model(self) -> None:
        """HF ``save_pretrained`` of the model (+ tokenizer) to ``run_dir/model`` (:mod:`adasam_glue.checkpoint`)."""
        checkpoint.save_model(self.accelerator, self.model, self.tokenizer, self.run_dir)

    def save_checkpoint(self) -> None:
        """Model, optimizer (SAM state included), scheduler, RNGs, loss scale and data position."""
        opt = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.scaler is not None:  # fp16: the loss scale and its growth tracker (adasam_glue.step)
            opt["grad_scaler"] = self.scaler.state_dict()
        checkpoint.save(
            self.accelerator, self.run_dir, self.model, opt, asdict(self.state), self.identity_hash
        )

    def load_checkpoint(self) -> bool:
        """Resume from ``run_dir/checkpoint`` if present; returns whether it did (failures:
        :class:`~adasam_glue.checkpoint.CheckpointError`, naming the file and the way out)."""
        stored = checkpoint.load(
            self.accelerator, self.run_dir, self.model, self.identity_hash if self.verify_identity else None
        )
        if stored is None:
            return False
        rank_state, trainer_state, where = stored
        try:
            self.optimizer.load_state_dict(rank_state["optimizer"])
            self.scheduler.load_state_dict(rank_state["scheduler"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise checkpoint.CheckpointError(
                f"{where}: optimizer/scheduler state does not fit ({e}). {checkpoint.recover_hint(self.run_dir)}"
            ) from e
        if self.scaler is not None and rank_state.get("grad_scaler"):  # fp16 (adasam_glue.step)
            self.scaler.load_state_dict(rank_state["grad_scaler"])
        self.state = TrainState(**trainer_state)
        self.state.status, self.state.final_pending = "running", []
        log.info("resumed from %s at update %d", self.run_dir / CHECKPOINT_DIR, self.state.updates)
        return True

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        """Preemption and Ctrl-C: finish the current update, checkpoint, write the record, exit cleanly
        (in the final phase: stop the current step, checkpoint, see :meth:`_final_phase`).

        :data:`PREEMPT_SIGNALS` covers every signal a SLURM setup may send before a kill: SIGTERM,
        SIGUSR1 and SIGUSR2 (submitit's default ``--signal=USR2@...`` when ``SUBMITIT_PREEMPT_SIGNAL`` is
        unset). The previous handler (submitit's requeue) is called after the checkpoint and record are
        written. SIGINT (Ctrl-C) does the same without chaining; a second Ctrl-C interrupts at once.
        """
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            self._signal = signum
            if signum == signal.SIGINT:  # a second Ctrl-C raises KeyboardInterrupt right away
                signal.signal(signal.SIGINT, signal.default_int_handler)
            if self._interruptible:  # inside a final-phase step (one process): stop it now
                log.warning("received signal %d in the final phase: checkpointing now", signum)
                self._interruptible = False
                raise _FinalPhaseSignal(signum)
            log.warning("received signal %d: checkpointing after this update", signum)

        for sig in (*PREEMPT_SIGNALS, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, prev in previous.items():
                signal.signal(sig, prev)
            chain = (
                self._signal is not None
                and self._signal != signal.SIGINT
                and self.state.status == "preempted"
            )
            if chain and callable(previous.get(self._signal)):  # a run that completed anyway just ends
                self.on_progress(self.state)  # the record says "preempted" before the old handler runs
                previous[self._signal](self._signal, None)

    def _progress_bar(self, total: int) -> Any:
        from tqdm.auto import tqdm

        disable = not (self.settings.trainer.progress_bar and self.accelerator.is_main_process)
        return tqdm(
            total=total, initial=self.state.updates, disable=disable, desc="updates", dynamic_ncols=True
        )
