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
``conf/optim/<name>.yaml`` (``adasam_glue.optim.build_optimizer``), and a key not given takes that file's
value, so ``SAMTrainer(optim="adasam")`` builds what ``python -m adasam_glue optim=adasam`` builds (rho
0.01, beta2 0.98, eps 1e-6). The lr is ``args.learning_rate`` and the weight decay ``args.weight_decay``,
applied with HF's no-decay rule (``get_decay_parameter_names``: no decay for biases and norm layers, as
``adasam_glue.modeling.param_groups``). ``args.adam_beta1`` etc. are not used: betas and eps are the
registry's keys (``beta1``, ``beta2``, ``eps``). From a command line, :class:`SAMTrainingArguments`
takes ``--optim adasam --optim_args rho=0.01,beta2=0.98`` (HF's flags, registry names and keys), so that
transformers' ``run_glue.py`` runs with the arguments class and the trainer class changed.

What ran is said where HF users look: ``logger.info`` names the optimizer and every value; ``args.optim``
and ``args.optim_args`` are set to them (``"beta1=0.9,beta2=0.98,eps=1e-06,rho=0.01,form=library"``), so
``training_args.bin``, the loggers' hparams and the model card (``create_model_card``) carry them; and
``state.total_flos`` counts every forward/backward pass (two per update for a two-pass optimizer:
:meth:`SAMTrainer.floating_point_ops`).

Not supported (refused at construction): DeepSpeed, FSDP, ``nn.DataParallel`` (several GPUs without a
distributed launch), ``compute_loss_func`` (override :meth:`SAMTrainer.per_sample_losses` instead).
Under DDP HF saves the optimizer state of rank 0 only: with per-device ascent the ascent-dependent state
of VaSSO (``d``) and LightSAM (``u``, ``r``) differs between ranks (§2.4), so a resumed multi-process run
of those two continues from rank 0's copy on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import Optimizer
from transformers import Trainer, TrainingArguments
from transformers.training_args import OptimizerNames

from adasam_glue.modeling import per_sample_loss
from adasam_glue.optim import (
    BASES,
    OPTIMIZERS,
    OptimInfo,
    SAMBase,
    build_optimizer,
    get_optim_info,
    optimizer_values,
)
from adasam_glue.step import StepResult, UpdateStep, all_reduce_mean_

__all__ = [
    "SAMTrainer",
    "SAMTrainerOptimizer",
    "SAMTrainingArguments",
    "format_optim_args",
    "optim_info_for",
    "parse_optim_args",
    "per_example_losses",
]

log = logging.getLogger(__name__)

#: optimizer keys that come from ``TrainingArguments`` instead (HF's names for them)
_FROM_ARGS = {"lr": "learning_rate", "weight_decay": "weight_decay"}
#: what SAMTrainer builds when neither its ``optim`` nor ``SAMTrainingArguments.optim`` names one
DEFAULT_OPTIM = "adasam"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_optim_args(text: str | None, optim: str) -> dict[str, Any]:
    """HF's ``optim_args`` string (``"rho=0.01,beta2=0.98"``) as the registry keys of ``optim``.

    Each value is typed as the key's value in ``conf/optim/<optim>.yaml`` (or its signature default) on the
    base in effect: float, int, bool (true/false/1/0/yes/no) or str; a key the optimizer does not take is
    kept as written for :func:`~adasam_glue.optim.optimizer_values` to refuse, naming the valid keys.
    Raises ``ValueError`` naming the item for a malformed item, a repeated key or a value of the wrong type.
    """
    if not text:
        return {}
    info = get_optim_info(optim)
    raw: dict[str, str] = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(
                f"optim_args item {item!r} of {text!r}: expected key=value items separated by commas "
                "(e.g. 'rho=0.01,beta2=0.98')"
            )
        if key in raw:
            raise ValueError(f"optim_args {text!r} gives {key!r} twice")
        raw[key] = value
    base = raw.get("base") if raw.get("base") in BASES and info.bases else None
    like = info.defaults_for(base)
    return {key: _typed(key, value, like.get(key)) for key, value in raw.items()}


def _typed(key: str, text: str, like: Any) -> Any:
    """``text`` as the type of ``like`` (the key's default); without one, a number or a bool if it reads
    as one, else the string."""
    if isinstance(like, bool) or (like is None and text.lower() in (*_TRUE, *_FALSE)):
        if text.lower() not in (*_TRUE, *_FALSE):
            raise ValueError(f"optim_args {key}={text!r}: must be a bool, one of {', '.join(_TRUE + _FALSE)}")
        return text.lower() in _TRUE
    if isinstance(like, str):
        return text
    casts: tuple[type, ...] = (
        (float,) if isinstance(like, float) else (int,) if isinstance(like, int) else (int, float)
    )
    for cast in casts:
        try:
            return cast(text)
        except ValueError:
            continue
    if like is None:
        return text
    raise ValueError(f"optim_args {key}={text!r}: must be a {casts[0].__name__} (its default is {like!r})")


def format_optim_args(values: Mapping[str, Any]) -> str:
    """``values`` in HF's ``optim_args`` form (``"beta1=0.9,rho=0.01"``), without the keys that are
    ``TrainingArguments`` fields (lr, weight decay); :func:`parse_optim_args` reads it back."""
    return ",".join(f"{k}={v}" for k, v in values.items() if k not in _FROM_ARGS)


@dataclasses.dataclass
class SAMTrainingArguments(TrainingArguments):
    """``TrainingArguments`` whose ``optim`` / ``optim_args`` name a registry optimizer, for
    :class:`SAMTrainer` (HF's own ``optim`` is an enum of its optimizers and refuses ``"adasam"``).

    From a command line (``HfArgumentParser``, e.g. transformers' ``run_glue.py`` with this class in place
    of ``TrainingArguments``): ``--optim adasam --optim_args rho=0.01,beta2=0.98``. The keys are those of
    ``conf/optim/<optim>.yaml`` (:func:`parse_optim_args`), its values for the keys not given; the lr and
    weight decay are ``--learning_rate`` and ``--weight_decay`` (an ``lr`` or ``weight_decay`` in
    ``optim_args`` is refused), HF's ``--adam_*`` are not used. Both are checked here, when the arguments
    are parsed, not at the first step.

    Attributes:
        optim: a name of ``adasam_glue.optim.OPTIMIZERS``; ``None``: :class:`SAMTrainer`'s ``optim``
            argument, else ``adasam``. :class:`SAMTrainer` sets it to the optimizer it built.
        optim_args: its keys, HF's ``key=value,...`` string; :class:`SAMTrainer` sets it to every value
            it built with.
    """

    optim: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": (
                f"The SAMTrainer optimizer, a name of adasam_glue's registry ({', '.join(OPTIMIZERS)}); "
                f"default: {DEFAULT_OPTIM}. Its keys: --optim_args."
            )
        },
    )
    optim_args: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": (
                "The optimizer's keys as key=value,... (rho=0.01,beta2=0.98): those of "
                "conf/optim/<optim>.yaml, whose values fill the keys not given. Not lr/weight_decay "
                "(--learning_rate, --weight_decay)."
            )
        },
    )

    def __post_init__(self) -> None:
        name = self.optim.value if isinstance(self.optim, enum.Enum) else self.optim
        if name is not None and name not in OPTIMIZERS:
            raise ValueError(
                f"SAMTrainingArguments.optim={name!r} is not an optimizer of adasam_glue's registry; valid "
                f"names: {', '.join(OPTIMIZERS)} (HF's own optimizers need transformers.TrainingArguments "
                "and Trainer)"
            )
        self.optim = OptimizerNames.ADAMW_TORCH  # a placeholder while HF's checks convert it to its enum
        try:
            super().__post_init__()
        finally:
            self.optim = name
        _check_optim(name or DEFAULT_OPTIM, parse_optim_args(self.optim_args, name or DEFAULT_OPTIM), self)


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
            gsam, vasso, rsam, esam, lightsam); ``None``: ``args.optim`` of :class:`SAMTrainingArguments`,
            else ``adasam``. (A plain ``TrainingArguments``' ``optim``/``optim_args`` name HF's optimizers
            and are not read.)
        optim_kwargs: its hyperparameters, the keys of ``conf/optim/<optim>.yaml`` (``rho``, ``beta1``,
            ``form``, ``base``, ...), over ``SAMTrainingArguments.optim_args``; the YAML's values for the
            keys given by neither. Not ``lr``/``weight_decay``, which are
            ``args.learning_rate``/``args.weight_decay``.
        sync_ascent: all-reduce the ascent gradient too (global SAM, two all-reduces per update); default:
            per-device ascent under DDP, as the harness's ``optim.sync_ascent`` (spec §2.4).

    Attributes:
        optim: the registry name built.
        optim_kwargs: the keys given (``optim_kwargs`` over ``SAMTrainingArguments.optim_args``).
        optim_values: every value the optimizer is built with (lr and weight decay from ``args``
            included), as logged and written to ``args.optim_args``.

    Example::

        trainer = SAMTrainer(model, TrainingArguments("out", learning_rate=1e-5, weight_decay=0.1),
                             train_dataset=train, optim="adasam", optim_kwargs={"rho": 0.01})
        trainer.train()
    """

    def __init__(
        self,
        *args: Any,
        optim: str | None = None,
        optim_kwargs: Mapping[str, Any] | None = None,
        sync_ascent: bool = False,
        **kwargs: Any,
    ) -> None:
        self.sync_ascent = bool(sync_ascent)
        self.optim_values: dict[str, Any] = {}
        self._update: UpdateStep | None = None
        self._update_model: torch.nn.Module | None = None
        self._update_size = 1  # micro-batches of the update in progress (get_batch_samples)
        self._pending: list[dict[str, Any]] = []
        self._grad_norm: Tensor | None = None
        self._flos_held = 0.0  # per-pass flos of the micro-batches whose update has not run yet
        self._flos_passes = 1  # passes of the last update (floating_point_ops)
        super().__init__(*args, **kwargs)
        # HF sets its loggers' level from --log_level (run_glue.py: info by default) and leaves the root at
        # WARNING; unless the user set ours, it follows HF's, so the optimizer line below reaches that log
        package_log = logging.getLogger("adasam_glue")
        if package_log.level == logging.NOTSET:
            package_log.setLevel(self.args.get_process_log_level())
        if self.optimizer is None:
            self.optim, self.optim_kwargs = self._choose_optim(optim, dict(optim_kwargs or {}))
            self._record_optim(_check_optim(self.optim, self.optim_kwargs, self.args))
        elif optim_kwargs or optim is not None:
            raise ValueError(
                "pass either optimizers=(optimizer, ...) or optim/optim_kwargs to SAMTrainer, not both"
            )
        else:
            self.optim, self.optim_kwargs = optim_info_for(self.optimizer).name, {}
        self._refuse_unsupported()

    def _choose_optim(self, optim: str | None, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The name and keys: ``optim``/``optim_kwargs`` over ``SAMTrainingArguments.optim``/``optim_args``
        (the same name or none), else ``adasam`` and ``optim_kwargs``."""
        own = isinstance(self.args, SAMTrainingArguments)
        from_args = self.args.optim if own else None
        if optim is not None and from_args is not None and optim != from_args:
            raise ValueError(
                f"SAMTrainer(optim={optim!r}) and SAMTrainingArguments.optim={from_args!r} name different "
                "optimizers: set one of them"
            )
        name = optim or from_args or DEFAULT_OPTIM
        parsed = parse_optim_args(self.args.optim_args, name) if own else {}
        clash = sorted(k for k in parsed.keys() & kwargs.keys() if parsed[k] != kwargs[k])
        if clash:
            raise ValueError(
                f"optim_kwargs and SAMTrainingArguments.optim_args={self.args.optim_args!r} give "
                f"{', '.join(map(repr, clash))} different values: set each key in one of them"
            )
        if not own and self.args.optim_args and str(self.args.optim) not in OPTIMIZERS:
            log.warning(
                "SAMTrainer ignores TrainingArguments.optim_args=%r (arguments of HF's optimizer %s): its "
                "optimizer's keys are optim_kwargs, or --optim/--optim_args with SAMTrainingArguments",
                self.args.optim_args,
                self.args.optim,
            )
        return name, {**parsed, **kwargs}

    def _record_optim(self, values: Mapping[str, Any], built: bool = False) -> None:
        """Say what is built: ``self.optim_values`` and ``args.optim``/``optim_args`` (read by
        ``training_args.bin``, the loggers' hparams and the model card) from the start, so that the
        loggers' ``on_train_begin`` sees them; ``logger.info`` when ``built``."""
        self.optim_values = dict(values)
        info = get_optim_info(self.optim)
        self.args.optim = info.name
        self.args.optim_args = format_optim_args(values)
        if not built:
            return
        log.info(
            "SAMTrainer optimizer: %s (%s, %s; conf/optim/%s.yaml for the keys not given) with %s; lr %s "
            "(TrainingArguments.learning_rate), weight decay %s (TrainingArguments.weight_decay, not on "
            "biases and norm layers)",
            info.name,
            info.label(info.base_of(values)),
            (
                f"two passes per update, sync_ascent={self.sync_ascent}"
                if info.two_pass
                else "one pass per update"
            ),
            info.name,
            ", ".join(f"{k}={v!r}" for k, v in values.items() if k not in _FROM_ARGS),
            values.get("lr"),
            values.get("weight_decay"),
        )

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
            log.info(
                "SAMTrainer optimizer: the instance passed, %s (registry record %s, %s), defaults %s",
                type(inner).__name__,
                info.name,
                "two passes per update" if info.two_pass else "one pass per update",
                inner.defaults,
            )
        else:
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            trainable = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for n, p in trainable if n in decay], "weight_decay": self.args.weight_decay},
                {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
            ]
            values = _check_optim(self.optim, self.optim_kwargs, self.args)
            inner = build_optimizer(self.optim, [g for g in groups if g["params"]], **values)
            info = get_optim_info(self.optim)
            self._record_optim(values, built=True)
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
        self._flos_passes = out.passes
        return (out.loss_sum.detach().float() / max(out.examples, 1)).to(self.args.device)

    def floating_point_ops(self, inputs: dict[str, Tensor | Any]) -> int | float:
        """HF's flos of ``inputs`` (one forward + backward, ``6 x tokens x parameters``) times the passes
        their update ran: two for a two-pass optimizer (one after an fp16 overflow in the ascent), so
        ``state.total_flos`` counts both. HF calls it after each micro-batch's ``training_step``; the
        micro-batches before the update's last one count 0 and are added, with the update's passes, at it.
        """
        self._flos_held += super().floating_point_ops(inputs)
        if self._pending:  # the update has not run yet: its passes are not known
            return 0
        flos, self._flos_held = self._flos_held * self._flos_passes, 0.0
        return flos

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


def _check_optim(name: str, kwargs: Mapping[str, Any], args: TrainingArguments) -> dict[str, Any]:
    """Fail at construction, not at the first step: the name, the keys and their ranges (registry). Returns
    every value the optimizer is built with: ``kwargs`` over the YAML's, lr and weight decay from ``args``."""
    info = get_optim_info(name)
    for key, arg in _FROM_ARGS.items():
        if key in kwargs:
            raise ValueError(
                f"optimizer key {key!r} (optim_kwargs / optim_args): SAMTrainer takes it from "
                f"TrainingArguments.{arg} (HF's name for it, --{arg})"
            )
    values = optimizer_values(
        info.name, **kwargs, lr=args.learning_rate, weight_decay=args.weight_decay
    )  # raises ValueError
    build_optimizer(info.name, [torch.nn.Parameter(torch.zeros(1))], **values)  # keys that must fit together
    return values
