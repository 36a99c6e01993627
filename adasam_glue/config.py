"""Typed config schema (Hydra structured configs) and value checks that run before any model loads.

The YAML under ``conf/`` holds every value; these dataclasses only fix the *shape* so that a misspelt
key or a wrong type fails when Hydra composes the config (style guide: "Hydra examples").
``validate_config`` then checks ranges (rho >= 0, lr > 0, betas in [0, 1), batch >= 1, known names)
and raises ``ConfigError`` naming the key, the bad value and what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

#: the project's ``conf/`` folder; its own module (below every other), re-exported here as ever
from adasam_glue.conf_location import CONF_DIR


class ConfigError(ValueError):
    """A config value outside its valid range; the message names the key."""


@dataclass
class TaskConfig:
    name: str = MISSING
    lr: float = MISSING  #: the recipe's lr for adaptive optimizers (AMSGrad/AdaSAM and variants)
    batch_size: int = MISSING  #: global batch per optimizer update (all devices x accumulation)
    total_updates: int = MISSING  #: optimizer updates of the recipe (the schedule's length)
    warmup_updates: int = MISSING  #: linear warmup updates (scaled with trainer.max_updates)
    epochs: int = MISSING
    max_length: int = MISSING  #: tokens per example after truncation
    metric: str = MISSING  #: selection metric key (must match adasam_glue.tasks)
    init_from: str | None = MISSING  #: checkpoint to start from (Hub id or local run dir)
    #: regression only: train on label / target_scale (STS-B: 5, as fairseq); predictions are scaled back
    target_scale: float | None = None


@dataclass
class OptimKeys:
    """The ``optim`` keys every run has, or that ``--help`` describes; ``None``: not used by this optimizer.

    The schema's ``optim`` node is :func:`optim_schema`: these plus every key an optimizer takes, read from
    ``conf/optim/*.yaml`` and the registry's records, so a new variant's key needs no edit here. Only
    non-None keys (minus ``name``/``sync_ascent``) reach ``build_optimizer``, so setting a key an optimizer
    does not know (``optim.theta`` on AdaSAM) is an error rather than silently ignored.
    """

    name: str = MISSING
    base: str | None = None  #: descent optimizer of a perturbation (asam ... esam): sgd, amsgrad or adamw
    lr: float = MISSING  #: peak learning rate (adaptive optimizers: the task's recipe lr)
    beta1: float | None = None  #: momentum / first-moment decay (Tables 1/2: 0.9, Tables 3/4: 0)
    rho: float | None = None  #: SAM-family perturbation radius (paper grid 0.01, 0.005, 0.001)
    sync_ascent: bool = MISSING  #: all-reduce the ascent gradient (global SAM) instead of per-device


def _key_type(key: str, examples: list[Any], rule: Any) -> Any:
    """A derived key's type: its range rule's (an interval: float, a flag: bool, a choice: str), else the
    type of its YAML literals, else ``Any``; always optional (``None``: not this optimizer's key)."""
    from adasam_glue.optim.validation import Flag, Interval, OneOf

    kinds = {Interval: float, Flag: bool, OneOf: str}
    if rule is not None:
        return kinds[type(rule)] | None
    types = {type(v) for v in examples if isinstance(v, bool | int | float | str)}
    if types == {int}:
        return int | None
    if types == {int, float}:
        return float | None
    return types.pop() | None if len(types) == 1 else Any


def optim_schema() -> type:
    """``OptimConfig``: :class:`OptimKeys` plus every other key of ``conf/optim/*.yaml``, of the range
    table and of the registry's records (when the registry is loaded: composing imports no torch).

    Rebuilt by :func:`register_configs` (the registry calls it when a record is added at run time)."""
    import sys

    from adasam_glue.optim.validation import RULES

    found: dict[str, list[Any]] = {k: [] for k in RULES}
    for path in sorted((CONF_DIR / "optim").glob("*.yaml")):
        node = OmegaConf.load(path)
        for key in node:
            if not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
                found.setdefault(str(key), []).append(node[key])
            else:
                found.setdefault(str(key), [])
    rules: dict[str, Any] = dict(RULES)
    registry = sys.modules.get("adasam_glue.optim.registry")
    for info in getattr(registry, "OPTIMIZERS", {}).values():
        for key in (*info.hparams, *info.choices):
            found.setdefault(key, [])
            rules.setdefault(key, info.rule(key))
    fixed = {f.name: f for f in fields(OptimKeys)}
    ends = ("name", "base", "sync_ascent")
    order = [*ends[:2], *(k for k in {**found, **fixed} if k not in ends)]
    spec = [
        (k, fixed[k].type, field(default=fixed[k].default))
        if k in fixed
        else (k, _key_type(k, found[k], rules.get(k)), None)
        for k in (*order, "sync_ascent")
    ]
    return make_dataclass("OptimConfig", spec)


OptimConfig = optim_schema()


@dataclass
class ModelConfig:
    name: str = MISSING  #: config name (``roberta-large``, ``minilm``, ``tiny`` ...)
    path: str | None = MISSING  #: Hub id or local folder; ``null`` for ``tiny`` / resolved for ``minilm``
    revision: str | None = MISSING  #: Hub revision (branch, tag or commit) of ``path`` and ``init_from``
    cache_dir: str | None = MISSING  #: where Hub downloads go (``null``: the HF default cache)
    trust_remote_code: bool = MISSING  #: allow a Hub model's own modeling code (off by default, as in HF)
    source: str = MISSING  #: ``hub`` (id or folder), ``minilm_package`` or ``tiny`` (random init)
    dropout: float | None = MISSING  #: hidden/attention dropout override (``null``: the model's own)
    mnli_checkpoint: str | None = MISSING  #: this family's MNLI-tuned model (RTE/MRPC/STS-B start there)
    # tiny random model (tests)
    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    intermediate_size: int = MISSING
    vocab_size: int = MISSING


@dataclass
class DataConfig:
    source: str = MISSING  #: where GLUE comes from (tsv: the original GLUE TSV folder)
    data_dir: str | None = MISSING  #: GLUE TSV root (``glue_data``) or saved dataset folder
    hub_name: str = MISSING
    max_train_samples: int | None = MISSING  #: a seeded subset of the training rows (low-resource runs)
    max_eval_samples: int | None = MISSING
    group_by_length: bool = MISSING  #: batch examples of similar length (less padding, same epochs)
    pad_to_multiple_of: int | None = MISSING  #: ``null``: 8 under mixed precision, else none
    num_workers: int = MISSING
    synthetic_train_size: int = MISSING
    synthetic_eval_size: int = MISSING
    synthetic_seed: int = MISSING  #: the generated data set (independent of the run's seed)
    cache_dir: str | None = MISSING


@dataclass
class TrainerConfig:
    max_updates: int | None = MISSING  #: cap on updates (``null``: the task's total_updates)
    grad_accum: int = MISSING  #: micro-batches per update (per device)
    eval_every: int | None = MISSING  #: eval every N updates; null: once per recipe epoch; 0: only at the end
    eval_batch_size: int = MISSING
    mixed_precision: str = MISSING  #: autocast precision (fp16 with a GradScaler for every optimizer)
    fp16_max_skip_streak: int | None = MISSING  #: more fp16-skipped updates in a row: stop, diverged
    fp16_max_skipped_fraction: float | None = MISSING  #: at the end: skipped > streak + this x updates
    max_grad_norm: float | None = MISSING  #: clipping (off in the paper)
    #: lr of the head (classifier + pooler) as a multiple of optim.lr; null: one lr for all
    head_lr_scale: float | None = None
    schedule: str = MISSING  #: lr schedule over optimizer updates (linear: warmup + linear decay to 0)
    min_lr_ratio: float = MISSING  #: cosine floor as a fraction of the peak lr
    batch_schedule: list[int] | None = MISSING  #: increasing batch sizes, equal shares of the updates
    log_every: int = MISSING
    checkpoint_every: int = MISSING  #: save a resume checkpoint every N updates (0: only on preemption/end)
    save_model: str = MISSING  #: keep the best/final weights as an HF folder under run_dir/model
    keep_checkpoint: bool = MISSING  #: keep the resume checkpoint after a completed run
    progress_bar: bool = MISSING
    cpu: bool = MISSING  #: force CPU even when a GPU is visible
    predict_test: bool = MISSING  #: write GLUE-submission TSVs of the test split(s) from the best model
    stop_after_updates: int | None = MISSING  #: test seam: behave as if preempted after N updates


@dataclass
class LoggingConfig:
    wandb_mode: str = MISSING  #: Weights & Biases logging (WANDB_MODE in the environment wins)
    wandb_project: str = MISSING
    wandb_entity: str | None = MISSING


@dataclass
class SharpnessConfig:
    enabled: bool = MISSING
    every: int = MISSING  #: also measure every N updates (0: only at the end)
    num_samples: int = MISSING
    batch_size: int = MISSING
    subset_seed: int = MISSING
    measures: list[str] = MISSING
    power_iters: int = MISSING
    power_tol: float = MISSING
    top_k: int = MISSING
    trace_probes: int = MISSING
    rhos: list[float] | None = MISSING  #: ``null``: the paper's grid 0.01/0.005/0.001
    ascent_steps: int = MISSING  #: points of projected normalized gradient ascent per rho (1: SAM's one step)
    ascent_step_size: float = MISSING  #: ascent step as a multiple of rho
    adaptive_eta: float = MISSING  #: ASAM's eta in T = |w| + eta (adaptive worst case)
    seed: int = MISSING  #: seeds the probe / start vectors (own generator; global RNG untouched)


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: Any = field(default_factory=lambda: OptimConfig())  # optim_schema(): derived, see OptimKeys
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    sharpness: SharpnessConfig = field(default_factory=SharpnessConfig)
    experiment_name: str = MISSING  #: folder under results_dir/runs (set by experiment=...)
    seed: int = MISSING  #: seeds model init, dropout and data order (and the max_train_samples subset)
    results_dir: str = MISSING  #: root of runs/ (resolved to an absolute path)
    run_dir: str | None = MISSING  #: ``null``: results_dir/runs/<experiment>/<task>/<optim>/<tag>/seed<k>
    reuse_run_dir: bool = MISSING  #: resume a run dir of another identity (recorded in ``attempts``)
    rerun_on_new_commit: bool = (
        MISSING  #: train again a run another git commit wrote (old record kept); false: warn
    )
    dry_run: bool = MISSING  #: print the plan line and exit (used by reproduce-all DRY_RUN=1)


def register_configs() -> None:
    """Register the schema so ``conf/config.yaml`` can extend it (``defaults: [base_config, ...]``), with
    the ``optim`` node rebuilt from the YAML and the registry (:func:`optim_schema`)."""
    global OptimConfig
    OptimConfig = optim_schema()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config(optim=OptimConfig()))


register_configs()

_VALID = {
    "trainer.mixed_precision": ("no", "bf16", "fp16"),
    "trainer.save_model": ("best", "final", "none"),
    "data.source": ("hub", "tsv", "disk", "synthetic"),
    "logging.wandb_mode": ("online", "offline", "disabled"),
}


def valid_choices() -> dict[str, tuple[str, ...]]:
    """The named choices of config keys: this module's, plus the schedules' and the model sources'
    (owned by :mod:`adasam_glue.schedules` and :mod:`adasam_glue.modeling`)."""
    from adasam_glue.modeling import MODEL_SOURCES
    from adasam_glue.schedules import SCHEDULES

    return {**_VALID, "trainer.schedule": SCHEDULES, "model.source": MODEL_SOURCES}


#: Hugging Face ``TrainingArguments`` / ``run_glue.py`` names -> what this harness calls them. A user who
#: types ``trainer.max_steps=100`` gets this instead of Hydra's "To append to your config use +..."
#: (appending never works here: the schema is closed).
HF_KEYS: dict[str, str] = {
    "max_steps": "trainer.max_updates (a cap on optimizer updates; null: the task's total_updates)",
    "num_train_epochs": "trainer.max_updates or task.total_updates (run lengths are counted in updates; "
    "task.epochs only sets the eval period)",
    "learning_rate": "optim.lr (this run's peak lr) or task.lr (the recipe lr that adaptive optimizers take)",
    "lr": "optim.lr (this run's peak lr) or task.lr (the recipe lr that adaptive optimizers take)",
    "per_device_train_batch_size": "task.batch_size (the global batch per update: each device gets "
    "task.batch_size / (processes x trainer.grad_accum))",
    "train_batch_size": "task.batch_size (the global batch per update)",
    "batch_size": "task.batch_size (the global batch per update)",
    "per_device_eval_batch_size": "trainer.eval_batch_size",
    "eval_batch_size": "trainer.eval_batch_size",
    "gradient_accumulation_steps": "trainer.grad_accum",
    "warmup_steps": "task.warmup_updates",
    "warmup_ratio": "task.warmup_updates (a number of updates, scaled with trainer.max_updates)",
    "max_grad_norm": "trainer.max_grad_norm",
    "weight_decay": "optim.weight_decay",
    "adam_beta1": "optim.beta1",
    "adam_beta2": "optim.beta2",
    "adam_epsilon": "optim.eps",
    "lr_scheduler_type": "trainer.schedule",
    "eval_steps": "trainer.eval_every",
    "eval_strategy": "trainer.eval_every (updates between evals; null: once per recipe epoch)",
    "evaluation_strategy": "trainer.eval_every (updates between evals; null: once per recipe epoch)",
    "save_steps": "trainer.checkpoint_every",
    "logging_steps": "trainer.log_every",
    "output_dir": "results_dir (runs go to <results_dir>/runs/...) or run_dir",
    "fp16": "trainer.mixed_precision=fp16",
    "bf16": "trainer.mixed_precision=bf16",
    "no_cuda": "trainer.cpu=true",
    "use_cpu": "trainer.cpu=true",
    "max_seq_length": "task.max_length",
    "model_name_or_path": "model.path (or a model config: model=roberta-large, ...)",
    "task_name": "the task group: task=mrpc",
    "dataloader_num_workers": "data.num_workers",
    "report_to": "logging.wandb_mode (online, offline, disabled)",
    "max_train_samples": "data.max_train_samples",
    "max_eval_samples": "data.max_eval_samples",
}
#: Hydra's command-line flags that take the next argument as their value (not an override)
_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--info", "--experimental-rerun")  # fmt: skip


def schema_keys() -> set[str]:
    """Every dotted key of the schema (``task.lr``, ``trainer.max_updates``, ``seed`` ...)."""

    def walk(node: Any, prefix: str) -> set[str]:
        if isinstance(node, dict):
            return {k for key, value in node.items() for k in walk(value, f"{prefix}{key}.")}
        return {prefix[:-1]}

    return walk(OmegaConf.to_container(OmegaConf.structured(Config)), "")


def misnamed_key_hint(key: str) -> str | None:
    """What to write instead of ``key`` when it is not a key of this harness but means one: a Hugging Face
    name (``max_steps``, ``learning_rate`` ...) or a harness key under the wrong section
    (``max_grad_norm`` -> ``trainer.max_grad_norm``). ``None`` for a valid key or one without a hint."""
    keys = schema_keys()
    if key in keys or key.split(".", 1)[0] == "hydra":
        return None
    name = key.rsplit(".", 1)[-1]
    if name in HF_KEYS:
        return HF_KEYS[name]
    elsewhere = sorted(k for k in keys if k.rsplit(".", 1)[-1] == name)
    return " or ".join(elsewhere) or None


def check_override_keys(args: list[str] | tuple[str, ...]) -> None:
    """Raise ``ConfigError`` for a ``key=value`` override whose key is misnamed (see ``misnamed_key_hint``),
    naming the key to use. Group choices (``task=mrpc``), Hydra's own keys and flags are left to Hydra,
    as are unknown keys without a hint (Hydra's message then names them)."""
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    skip_next = False
    for arg in args:
        if skip_next or arg.startswith("-") or "=" not in arg:
            skip_next = arg in _FLAGS_WITH_VALUE
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if "/" in key or key in groups:
            continue
        hint = misnamed_key_hint(key)
        if hint is not None:
            raise ConfigError(
                f"unknown key {key!r} in {arg!r}: this harness calls it {hint}. "
                "Every key and its value: python -m adasam_glue --cfg job; the keys set most: --help"
            )


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key)


def validate_config(cfg: DictConfig) -> None:
    """Check ranges and names; raise ``ConfigError`` naming the key. Runs before any model loads."""
    from adasam_glue.tasks import TASKS

    def bad(key: str, value: Any, valid: str) -> ConfigError:
        return ConfigError(f"invalid {key}={value!r}: must be {valid}")

    task = _get(cfg, "task.name")
    if task not in TASKS:
        raise bad("task.name", task, f"one of {', '.join(TASKS)}")
    seed = _get(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise bad("seed", seed, "an integer in [0, 2**32)")
    _validate_optim_keys(cfg, bad)
    v = _get(cfg, "task.lr")
    if v is None or not v > 0:
        raise bad("task.lr", v, "> 0")
    for key in (
        "task.batch_size",
        "trainer.grad_accum",
        "trainer.eval_batch_size",
        "task.total_updates",
        "task.max_length",
        "sharpness.num_samples",
        "sharpness.batch_size",
    ):
        v = _get(cfg, key)
        if v is None or v < 1:
            raise bad(key, v, ">= 1")
    for key in ("task.warmup_updates", "trainer.checkpoint_every"):
        v = _get(cfg, key)
        if v is None or v < 0:
            raise bad(key, v, ">= 0")
    v = _get(cfg, "trainer.eval_every")
    if v is not None and v < 0:
        raise bad("trainer.eval_every", v, ">= 0 or null")
    v = _get(cfg, "trainer.max_updates")
    if v is not None and v < 1:
        raise bad("trainer.max_updates", v, ">= 1 or null")
    v = _get(cfg, "trainer.max_grad_norm")
    if v is not None and not v > 0:
        raise bad("trainer.max_grad_norm", v, "> 0 or null")
    v = _get(cfg, "trainer.head_lr_scale")
    if v is not None and not v > 0:
        raise bad("trainer.head_lr_scale", v, "> 0 or null")
    v = _get(cfg, "task.target_scale")
    if v is not None and (not TASKS[task].is_regression or not v > 0):
        raise bad("task.target_scale", v, f"> 0 or null for a regression task, null for {task}")
    v = _get(cfg, "trainer.fp16_max_skip_streak")
    if v is not None and (isinstance(v, bool) or v < 0):
        raise bad("trainer.fp16_max_skip_streak", v, ">= 0 or null (off)")
    v = _get(cfg, "trainer.fp16_max_skipped_fraction")
    if v is not None and not 0 <= v <= 1:
        raise bad("trainer.fp16_max_skipped_fraction", v, "in [0, 1] or null (off)")
    bs = _get(cfg, "trainer.batch_schedule")
    if bs is not None and (len(bs) == 0 or any(b < 1 for b in bs)):
        raise bad("trainer.batch_schedule", list(bs), "a non-empty list of batch sizes >= 1")
    for key, valid in valid_choices().items():
        v = _get(cfg, key)
        if v not in valid:
            raise bad(key, v, f"one of {', '.join(valid)}")
    metrics = dict.fromkeys((TASKS[task].selection_metric, *TASKS[task].paper_metrics))
    if _get(cfg, "task.metric") not in metrics:
        raise bad("task.metric", _get(cfg, "task.metric"), f"one of {', '.join(metrics)} for {task}")
    if _get(cfg, "data.source") in ("tsv", "disk") and not _get(cfg, "data.data_dir"):
        raise bad(
            "data.data_dir",
            None,
            f"the folder to read for data.source={_get(cfg, 'data.source')} (e.g. the glue_data root)",
        )
    _validate_optimizer(cfg)
    _validate_batch_split(cfg)


def _validate_optim_keys(cfg: DictConfig, bad: Any) -> None:
    """The optimizer's name, its lr and a ``base`` the record does not take, said against the config
    key; the keys' ranges are ``_validate_optimizer``'s (the registry's one table, run once)."""
    from adasam_glue.optim import OPTIMIZERS  # the registry owns the optimizer names and ranges

    name = _get(cfg, "optim.name")
    if name not in OPTIMIZERS:
        raise bad("optim.name", name, f"one of {', '.join(OPTIMIZERS)}")
    info = OPTIMIZERS[name]
    if _get(cfg, "optim.lr") is None:
        raise bad("optim.lr", None, str(info.rule("lr")))
    if _get(cfg, "optim.base") is not None and not info.bases:
        raise ConfigError(f"invalid optim.base={_get(cfg, 'optim.base')!r}: {info.no_base_message()}")


def _validate_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer on a one-element tensor, before any model loads: the registry checks every key
    once against its record's rule (``adasam_glue.optim.validation.RULES`` plus the record's choices;
    reported as ``optim.<key>``), unknown keys, a base where the record takes none, and the class's
    checks across keys (``rho_min <= rho``, beta2 = 1 where it divides by zero, nesterov without
    momentum), which live in the class that needs them and so need the construction."""
    import torch

    from adasam_glue.optim import build_optimizer
    from adasam_glue.optim.validation import RangeError

    o = OmegaConf.to_container(cfg.optim, resolve=True)
    kwargs = {k: v for k, v in o.items() if v is not None and k not in ("name", "sync_ascent")}
    try:
        build_optimizer(o["name"], [torch.nn.Parameter(torch.zeros(1))], **kwargs)
    except RangeError as e:
        raise ConfigError(f"invalid optim.{e.key}={e.value!r}: must be {e.rule}") from None
    except ValueError as e:
        raise ConfigError(f"invalid optim (conf/optim/{o['name']}.yaml or an override): {e}") from None


def _validate_batch_split(cfg: DictConfig) -> None:
    """Every batch of the plan must split evenly over processes x accumulation (``WORLD_SIZE`` from the
    launcher's environment), checked before the model loads."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    accum = _get(cfg, "trainer.grad_accum")
    sizes = list(_get(cfg, "trainer.batch_schedule") or []) or [_get(cfg, "task.batch_size")]
    for b in sizes:
        if b % (world * accum):
            key = (
                "trainer.batch_schedule"
                if len(sizes) > 1 or _get(cfg, "trainer.batch_schedule")
                else "task.batch_size"
            )
            raise ConfigError(
                f"invalid {key}={b}: must be divisible by processes x trainer.grad_accum = {world} x {accum}"
            )


def _if_base_takes(base: Any, value: Any, *, _node_: Any, _parent_: Any) -> Any:
    """``beta2: ${if_base_takes:${.base},0.98}`` in ``conf/optim``: the optimizer registry's resolver
    (:func:`adasam_glue.optim.registry.if_base_takes` says what it returns), imported when a value is
    first resolved, so that composing a config imports no torch; the registry registers it itself too
    (it resolves its YAML without this module: no import cycle, ``tests/test_import_graph.py``)."""
    from adasam_glue.optim.registry import if_base_takes

    return if_base_takes(base, value, _node_=_node_, _parent_=_parent_)


OmegaConf.register_new_resolver("if_base_takes", _if_base_takes, replace=True)


def _if_path(path: Any, expected: str, value: str) -> str | None:
    """``${if_path:${model.path},roberta-large,roberta-large-mnli}``: ``value`` only while the model is
    still the one the YAML names. A custom ``model.path`` therefore starts from its own weights (or the
    ``model.mnli_checkpoint`` given with it), never silently from another model's MNLI checkpoint."""
    return value if str(path) == str(expected) else None


OmegaConf.register_new_resolver("if_path", _if_path, replace=True)
# The experiment layer's resolvers (${sqrt_scale}, ${task_recipe}, ${tuned_lr}) are registered by
# adasam_glue.experiments.resolvers, which every entry point that composes configs imports.
