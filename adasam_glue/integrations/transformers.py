"""``SAMTrainer``: a ``transformers.Trainer`` whose training step is the harness's one update.

A plain ``transformers.Trainer`` runs one forward/backward per micro-batch and then calls
``optimizer.step()``; a SAM-family optimizer needs two passes over the same batch with a perturbation in
between (``docs/algorithms.md`` §2.1), so ``Trainer(optimizers=(AdaSAM(...), None))`` fails at its first
step. :class:`SAMTrainer` keeps everything of HF's loop (data, sharding, logging, evaluation, callbacks,
checkpoints, the scheduler HF builds from the arguments) and replaces only what happens to one update's
micro-batches: they are handed to :class:`adasam_glue.step.UpdateStep`, the project's only copy of the SAM
step, wired the way :class:`adasam_glue.trainer.Trainer` wires it (the scaler, the backward, the sync
context, clipping, the all-reduce).

Where it hooks into HF's loop (transformers 5.x ``Trainer._run_epoch``): per update HF prefetches the
update's micro-batches (``get_batch_samples``), calls ``training_step`` once per micro-batch (all but the
last under ``accelerator.no_sync``), then clips, calls ``optimizer.step()``, steps the scheduler unless
``accelerator.optimizer_step_was_skipped``, and zeroes the gradients. Here:

- ``get_batch_samples`` records how many micro-batches the update has;
- ``training_step`` keeps each micro-batch (no forward) and, on the last one (where HF allows the
  all-reduce), runs ``UpdateStep`` over all of them: the ascent gradient accumulated over *every*
  micro-batch before the perturbation (§2.3), the ascent pass under ``no_sync`` unless ``sync_ascent``
  (§2.4), clipping of the descent gradient with ``args.max_grad_norm``, the base step. It returns the
  update's mean loss (0 for the other micro-batches), so HF's logged loss is the loss at w;
- ``trainer.optimizer`` is a :class:`SAMTrainerOptimizer`, a view of the registry optimizer whose
  ``step()`` does nothing (the update is done) and that accelerate does not wrap, so neither the optimizer
  nor accelerate's fp16 ``GradScaler`` steps a second time; its ``step_was_skipped`` tells HF's loop that
  an fp16 update was skipped (the schedule then waits, as the harness's does);
- ``_clip_grad_norm``/``_get_grad_norm`` return the norm ``UpdateStep``'s clip measured instead of
  clipping (again) gradients that are already gone; HF logs it as ``grad_norm``.

The optimizer is chosen as in the harness: ``optim="adasam", optim_kwargs={"rho": 0.01}`` are the keys of
``conf/optim/<name>.yaml`` (``adasam_glue.optim.build_optimizer``); the lr is ``args.learning_rate`` and
the weight decay ``args.weight_decay``, applied with HF's no-decay rule (``get_decay_parameter_names``:
no decay for biases and norm layers, as ``adasam_glue.modeling.param_groups``). ``args.adam_beta1`` etc.
are not used: betas and eps are the registry's keys (``beta1``, ``beta2``, ``eps``) with its defaults.

Not supported (refused at construction): DeepSpeed, FSDP, ``nn.DataParallel`` (several GPUs without a
distributed launch), ``compute_loss_func`` (override :meth:`SAMTrainer.per_sample_losses` instead).
Under DDP HF saves the optimizer state of rank 0 only: with per-device ascent the ascent-dependent state
of VaSSO (``d``) and LightSAM (``u``, ``r``) differs between ranks (§2.4), so a resumed multi-process run
of those two continues from rank 0's copy on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer
from transformers import Trainer

from adasam_glue.modeling import per_sample_loss
from adasam_glue.optim import OPTIMIZERS, OptimInfo, SAMBase, build_optimizer, get_optim_info
from adasam_glue.step import StepResult, UpdateStep, all_reduce_mean_

__all__ = ["SAMTrainer", "SAMTrainerOptimizer", "optim_info_for", "per_example_losses"]

log = logging.getLogger(__name__)

#: optimizer keys that come from ``TrainingArguments`` instead (HF's names for them)
_FROM_ARGS = {"lr": "learning_rate", "weight_decay": "weight_decay"}


class SAMTrainerOptimizer(Optimizer):
    """What HF's loop holds as ``trainer.optimizer``: a view of the registry optimizer.

    ``param_groups``, ``state``, ``state_dict``/``load_state_dict`` (what HF's scheduler and checkpoints
    use) are the wrapped optimizer's. ``step()`` does nothing: :meth:`SAMTrainer.training_step` already ran
    the update (``UpdateStep``); it raises if no update ran since the last call, which would mean HF's loop
    stepped without going through ``training_step``. Like accelerate's own ``AcceleratedOptimizer`` it is a
    view (no ``Optimizer.__init__``), and it is marked as already prepared so that accelerate does not wrap
    it: an ``AcceleratedOptimizer`` would step and update the fp16 ``GradScaler`` a second time.

    Attributes:
        optimizer: the registry optimizer (a :class:`~adasam_glue.optim.SAMBase` for two-pass ones).
        info: its registry record.
        step_was_skipped: the last update was skipped (fp16 overflow); read by
            ``accelerator.optimizer_step_was_skipped``, so HF's loop does not step the scheduler.
        last_update: the :class:`~adasam_glue.step.StepResult` of the last update.
    """

    _is_accelerate_prepared = True  # accelerate.Accelerator.prepare returns it as is

    def __init__(self, optimizer: Optimizer, info: OptimInfo) -> None:
        self.optimizer, self.info = optimizer, info
        self.step_was_skipped = False
        self.last_update: StepResult | None = None
        self._pending_step = False

    # the wrapped optimizer's groups, state and defaults (HF's LR scheduler sets lr in these groups)
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, state: Any) -> None:
        self.optimizer.state = state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, defaults: dict[str, Any]) -> None:
        self.optimizer.defaults = defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's (SAM state, base state and the RSAM/ESAM generator included)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def update_done(self, result: StepResult) -> None:
        """Called by :class:`SAMTrainer` after each update: the next ``step()`` is the loop's echo of it."""
        self.last_update, self.step_was_skipped, self._pending_step = result, result.skipped, True

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """Nothing to do: the update ran in ``SAMTrainer.training_step`` (module docstring)."""
        if closure is not None or not self._pending_step:
            raise RuntimeError(
                f"{type(self.optimizer).__name__} inside SAMTrainer is stepped by SAMTrainer.training_step "
                "(adasam_glue.step.UpdateStep runs both passes); optimizer.step() was called without an update "
                "having run, so HF's training loop is not the one SAMTrainer was written for (transformers 5.x)"
            )
        self._pending_step = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"


def optim_info_for(optimizer: Optimizer) -> OptimInfo:
    """The registry record of an optimizer instance (most specific class); one-pass for non-registry ones."""
    for info in OPTIMIZERS.values():
        if type(optimizer) is info.cls:
            return info
    for info in OPTIMIZERS.values():
        if info.two_pass and isinstance(optimizer, info.cls):
            return info  # e.g. the LightSAM family (the record's cls is the family base class)
    if isinstance(optimizer, SAMBase):
        return dataclasses.replace(OPTIMIZERS["sam"], name=type(optimizer).__name__, cls=type(optimizer))
    return dataclasses.replace(OPTIMIZERS["sgd"], name=type(optimizer).__name__, cls=type(optimizer))


def per_example_losses(
    logits: Tensor, labels: Tensor, config: Any = None, label_smoothing: float = 0.0
) -> Tensor:
    """Per-example fp32 losses ``[B]`` of a sequence-classification head, as HF's models define the loss.

    ``problem_type`` regression / single-label / multi-label as in ``*ForSequenceClassification``; the
    single-label and 1-output regression cases are the harness's :func:`adasam_glue.modeling.per_sample_loss`
    (per example, so ESAM can rank examples, spec §2.11). ``label_smoothing`` is HF's
    ``args.label_smoothing_factor`` (``LabelSmoother`` equals ``cross_entropy(label_smoothing=...)``).
    """
    num_labels = int(getattr(config, "num_labels", None) or logits.shape[-1])
    problem = getattr(config, "problem_type", None)
    logits = logits.float()
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1)
    if problem == "regression" and num_labels > 1:
        return F.mse_loss(logits, labels.float(), reduction="none").mean(-1)
    if label_smoothing and num_labels > 1:
        return F.cross_entropy(logits, labels.long(), reduction="none", label_smoothing=label_smoothing)
    return per_sample_loss(logits, labels, num_labels)


class SAMTrainer(Trainer):
    """``transformers.Trainer`` for every optimizer of the registry (module docstring; spec §2.1-2.4).

    Args:
        *args, **kwargs: ``transformers.Trainer``'s (model, args, data_collator, train_dataset, ...).
            ``optimizers=(opt, scheduler)`` may pass an optimizer instance (e.g. ``AdaSAM(...)``) instead of
            ``optim``; its registry record is looked up from its class.
        optim: registry name (``adasam_glue.optim.OPTIMIZERS``: sgd, amsgrad, sam, adasam, asam, usam,
            gsam, vasso, rsam, esam, lightsam).
        optim_kwargs: its hyperparameters, the keys of ``conf/optim/<optim>.yaml`` (``rho``, ``beta1``,
            ``form``, ...), the registry's defaults otherwise; not ``lr``/``weight_decay``, which are
            ``args.learning_rate``/``args.weight_decay``.
        sync_ascent: all-reduce the ascent gradient too (global SAM, two all-reduces per update); default:
            per-device ascent under DDP, as the harness's ``optim.sync_ascent`` (spec §2.4).

    Example::

        trainer = SAMTrainer(model, TrainingArguments("out", learning_rate=1e-5, weight_decay=0.1),
                             train_dataset=train, optim="adasam", optim_kwargs={"rho": 0.01})
        trainer.train()
    """

    def __init__(
        self,
        *args: Any,
        optim: str = "adasam",
        optim_kwargs: Mapping[str, Any] | None = None,
        sync_ascent: bool = False,
        **kwargs: Any,
    ) -> None:
        self.optim, self.optim_kwargs, self.sync_ascent = optim, dict(optim_kwargs or {}), bool(sync_ascent)
        self._update: UpdateStep | None = None
        self._update_model: torch.nn.Module | None = None
        self._update_size = 1  # micro-batches of the update in progress (get_batch_samples)
        self._pending: list[dict[str, Any]] = []
        self._grad_norm: Tensor | None = None
        super().__init__(*args, **kwargs)
        if self.optimizer is None:
            _check_optim(optim, self.optim_kwargs)
        elif optim_kwargs:
            raise ValueError(
                "pass either optimizers=(optimizer, ...) or optim/optim_kwargs to SAMTrainer, not both"
            )
        self._refuse_unsupported()

    def _refuse_unsupported(self) -> None:
        why = None
        if self.is_deepspeed_enabled:
            why = "DeepSpeed (it owns the optimizer step)"
        elif self.is_fsdp_enabled:
            why = "FSDP"
        elif self.args.n_gpu > 1:
            why = f"nn.DataParallel over {self.args.n_gpu} GPUs (launch with torchrun/accelerate for DDP instead)"
        elif self.compute_loss_func is not None:
            why = "compute_loss_func (UpdateStep needs per-example losses: override SAMTrainer.per_sample_losses)"
        if why:
            raise NotImplementedError(f"SAMTrainer does not support {why}")
        for name, default in (("adam_beta1", 0.9), ("adam_beta2", 0.999), ("adam_epsilon", 1e-8)):
            if getattr(self.args, name) != default:
                log.warning(
                    "SAMTrainer ignores TrainingArguments.%s: the optimizer's betas/eps are optim_kwargs "
                    "(beta1, beta2, eps, the keys of conf/optim/<name>.yaml)",
                    name,
                )

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: torch.nn.Module | None = None) -> Optimizer:
        """The registry optimizer on HF's two param groups (decay / no decay), seen through a
        :class:`SAMTrainerOptimizer`; an optimizer passed as ``optimizers=(opt, ...)`` is wrapped as is."""
        if isinstance(self.optimizer, SAMTrainerOptimizer):
            return self.optimizer
        if self.optimizer is not None:
            inner, info = self.optimizer, optim_info_for(self.optimizer)
        else:
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            trainable = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for n, p in trainable if n in decay], "weight_decay": self.args.weight_decay},
                {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
            ]
            hparams = {
                **self.optim_kwargs,
                "lr": self.args.learning_rate,
                "weight_decay": self.args.weight_decay,
            }
            inner = build_optimizer(self.optim, [g for g in groups if g["params"]], **hparams)
            info = get_optim_info(self.optim)
        self.optimizer = SAMTrainerOptimizer(inner, info)
        self._ensure_scaler()  # before HF's resume loads the scaler's state (_load_scaler)
        return self.optimizer

    def _ensure_scaler(self) -> torch.amp.GradScaler | None:
        """fp16: accelerate's GradScaler (CUDA), or one of ours where accelerate has none (CPU), as the
        harness's trainer; ours is set as ``accelerator.scaler`` so HF's checkpoints save and load it."""
        if self.accelerator.mixed_precision != "fp16":
            return None
        if getattr(self.accelerator, "scaler", None) is None:
            self.accelerator.scaler = torch.amp.GradScaler(self.args.device.type)
        return self.accelerator.scaler

    # ------------------------------------------------------------------ one update
    def get_batch_samples(
        self, epoch_iterator: Any, num_batches: int, device: torch.device
    ) -> tuple[list, Any]:
        """HF's prefetch of one update's micro-batches; remembers how many there are (spec §2.3)."""
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._update_size, self._pending = max(1, len(batch_samples)), []
        return batch_samples, num_items

    def training_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Tensor | Any],
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor:
        """Keep the micro-batch; on the update's last one run the whole update (``UpdateStep``).

        Returns the update's mean loss at w on its last micro-batch and 0 before it, so HF's summed
        ``tr_loss`` is the mean loss per update. ``num_items_in_batch`` is not used: each micro-batch's
        loss is weighted by its share of the update's examples (spec §2.3).
        """
        model.train()
        self._pending.append(self._prepare_inputs(inputs))
        if len(self._pending) < self._update_size:
            return torch.zeros((), device=self.args.device)
        micro_batches, self._pending, self._update_size = self._pending, [], 1
        self._grad_norm = None
        out = self._update_step(model)(micro_batches)
        self.optimizer.update_done(out)
        return (out.loss_sum.detach().float() / max(out.examples, 1)).to(self.args.device)

    def _update_step(self, model: torch.nn.Module) -> UpdateStep:
        """The :class:`UpdateStep` for the (prepared, possibly DDP-wrapped) ``model`` HF trains."""
        if self._update is not None and self._update_model is model:
            return self._update
        opt = self.optimizer
        if not isinstance(opt, SAMTrainerOptimizer):  # HF's loop always calls create_optimizer first
            opt = self.create_optimizer()
        scaler = self._ensure_scaler()
        fp16 = scaler is not None

        def losses_fn(mb: Mapping[str, Any]) -> Tensor:
            # fp16: an autocast of ours as the harness's (a no-op nest inside accelerate's on CUDA)
            with torch.autocast(self.args.device.type, dtype=torch.float16, enabled=fp16):
                return self.per_sample_losses(model, mb)

        def sync(all_reduce: bool) -> contextlib.AbstractContextManager:
            return contextlib.nullcontext() if all_reduce else self.accelerator.no_sync(model)

        self._update = UpdateStep(
            opt.optimizer,
            opt.info,
            losses_fn,
            # fp16: a plain backward of the loss UpdateStep scaled (accelerator.backward would scale again)
            backward=(lambda loss: loss.backward()) if fp16 else self.accelerator.backward,
            sync=sync,
            sync_ascent=self.sync_ascent,
            clip=lambda: self._clip(model),
            scaler=scaler,
            all_reduce_mean=all_reduce_mean_ if self.accelerator.num_processes > 1 else None,
            examples=self.count_examples,
        )
        self._update_model = model
        return self._update

    def per_sample_losses(self, model: torch.nn.Module, inputs: Mapping[str, Any]) -> Tensor:
        """Per-example fp32 losses ``[B]`` with grad at the current weights (ESAM ranks them, §2.11).

        The model runs without ``labels`` (its own mean loss is not needed) under HF's
        ``compute_loss_context_manager``; the losses come from the logits (:func:`per_example_losses`).
        Override for models whose loss is not a sequence-classification one.
        """
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        with self.compute_loss_context_manager():
            outputs = model(**model_inputs)
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        config = getattr(self.accelerator.unwrap_model(model), "config", None)
        return per_example_losses(logits, inputs["labels"], config, self.args.label_smoothing_factor)

    def count_examples(self, inputs: Mapping[str, Any]) -> int:
        """Examples in a micro-batch (the weights of §2.3): its labels' length."""
        return len(inputs["labels"])

    # ------------------------------------------------------------------ clipping
    def _clip(self, model: torch.nn.Module) -> None:
        """UpdateStep's clip: the descent gradient, already unscaled under fp16 (spec §2.1 step 5).

        ``torch.nn.utils.clip_grad_norm_`` directly, not ``accelerator.clip_grad_norm_``: accelerate would
        unscale the gradients of the optimizers it knows a second time. Without clipping
        (``max_grad_norm`` 0) the norm is still measured, for HF's ``grad_norm`` log.
        """
        params = [p for p in model.parameters() if p.grad is not None]
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            self._grad_norm = torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)
        elif params:
            self._grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])

    def _clip_grad_norm(self, model: torch.nn.Module) -> Tensor | None:
        """HF's clipping step: already done by the update (``_clip``); the norm it measured."""
        return self._grad_norm

    def _get_grad_norm(self, model: torch.nn.Module, grad_norm: Tensor | float | None = None) -> Any:
        """HF's grad-norm log: the norm of the last update's descent gradient (None if it was skipped)."""
        return self._grad_norm if grad_norm is None else grad_norm


def _check_optim(name: str, kwargs: Mapping[str, Any]) -> None:
    """Fail at construction, not at the first step: the name, the keys and their ranges (registry)."""
    info = get_optim_info(name)
    for key, arg in _FROM_ARGS.items():
        if key in kwargs:
            raise ValueError(
                f"optim_kwargs[{key!r}]: SAMTrainer takes it from TrainingArguments.{arg} (HF's name for it)"
            )
    build_optimizer(info.name, [torch.nn.Parameter(torch.zeros(1))], **kwargs)  # raises ValueError
