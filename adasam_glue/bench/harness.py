"""The benchmarks' shared set-up: a config composed by Hydra from ``conf/`` and the run's own setup steps.

Everything a benchmark trains is built by the functions :func:`adasam_glue.run.run` calls (its
accelerator, model/tokenizer, data, optimizer/schedule and trainer steps) from the real composed
config plus overrides, so a benchmark times the code a run executes with the values the YAML holds,
and fails loudly when that code changes shape instead of quietly timing something else. Model
architectures come from ``conf/model/`` (``tiny``, ``minilm``, ``roberta-large-random``, ...).

:class:`Setup` is one model with fixed batches (the per-optimizer rows, the optimizer math, the GPU
rows); :func:`build_trainer` wraps an optimizer of the registry, built from its ``conf/optim`` YAML,
in the real :class:`adasam_glue.trainer.Trainer` on that model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

#: overrides every benchmark config gets: no wandb, no progress bar, results under the bench's name
BENCH_OVERRIDES = ("logging.wandb_mode=disabled", "trainer.progress_bar=false", "experiment_name=bench")


def compose(overrides: Sequence[str]) -> DictConfig:
    """``conf/config.yaml`` composed with ``overrides``, exactly as ``python -m adasam_glue`` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from adasam_glue.config import CONF_DIR

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main or a test that initialised it
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def setup_overrides(
    model: str,
    task: str,
    device: str,
    batch_size: int,
    max_length: int,
    mixed_precision: str = "no",
    cache_dir: str | None = None,
    seed: int = 0,
    train_rows: int = 64,
) -> list[str]:
    """The overrides of a step benchmark: a model config, a task recipe, synthetic data, a device."""
    out = [
        *BENCH_OVERRIDES,
        f"model={model}",
        f"task={task}",
        f"task.batch_size={batch_size}",
        f"task.max_length={max_length}",
        f"trainer.mixed_precision={mixed_precision}",
        f"trainer.cpu={str(device == 'cpu').lower()}",
        "data.source=synthetic",
        f"data.synthetic_train_size={train_rows}",
        "data.synthetic_eval_size=16",
        f"seed={seed}",
    ]
    if cache_dir:
        out.append(f"data.cache_dir={cache_dir}")
    return out


@dataclass
class Setup:
    """A model, the fixed batches every variant trains on, and what rebuilding optimizers needs."""

    name: str  #: the ``conf/model`` config name
    cfg: DictConfig
    overrides: tuple[str, ...]
    accelerator: Any
    task: Any  #: :class:`adasam_glue.tasks.TaskInfo`
    model: torch.nn.Module  #: as prepared by Accelerate (what the Trainer trains)
    raw_model: torch.nn.Module  #: unwrapped
    tokenizer: Any  #: ``None`` for random-id models
    batches: list[dict[str, torch.Tensor]]  #: on the device
    rows: list[dict[str, Any]]  #: tokenized rows in batch order (HF comparison); [] for random ids
    collator: Any
    plan: Any  #: :class:`adasam_glue.schedules.BatchPlan`
    micro: int  #: per-device micro-batch
    loaders: Any  #: :class:`adasam_glue.data.GlueLoaders` (``None`` for random ids)
    initial_state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def batch_size(self) -> int:
        return int(self.cfg.task.batch_size)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.raw_model.parameters() if p.requires_grad]

    @property
    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.params)

    def reset(self) -> None:
        """Initial weights, no gradients, train mode (dropout on, as in training)."""
        with torch.no_grad():
            self.raw_model.load_state_dict(self.initial_state)
        self.raw_model.zero_grad(set_to_none=True)
        self.raw_model.train()


def build_setup(
    model: str = "tiny",
    device: str = "cpu",
    batch_size: int = 16,
    num_batches: int = 4,
    task: str = "mrpc",
    max_length: int = 128,
    seq_len: int | None = None,
    mixed_precision: str = "no",
    cache_dir: str | None = None,
    seed: int = 0,
    overrides: Sequence[str] = (),
) -> Setup:
    """Model + fixed batches through the run's setup steps.

    Text models (``tiny``, ``minilm``, ...) train on the first ``num_batches`` batches of the real
    train loader over the synthetic task (dynamic padding, the run's collator and sampler). Models
    without a tokenizer (``source: random``, e.g. ``roberta-large-random``) or a given ``seq_len`` get
    random token ids of exactly ``seq_len`` (``max_length`` by default).
    """
    from adasam_glue import run as run_mod
    from adasam_glue.tasks import get_task

    train_rows = max(64, batch_size * num_batches)
    ov = (
        *setup_overrides(
            model, task, device, batch_size, max_length, mixed_precision, cache_dir, seed, train_rows
        ),
        *overrides,
    )
    cfg = compose(ov)
    info = get_task(cfg.task.name)
    acc = run_mod.setup_accelerator(cfg)
    parts = _model_and_batches(
        cfg, acc, info, num_batches, seq_len or (None if cfg.model.source != "random" else max_length)
    )
    net = parts.pop("net")
    batches = [{k: v.to(acc.device) for k, v in b.items()} for b in parts.pop("batches")]
    net.to(acc.device)
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return Setup(
        name=model,
        cfg=cfg,
        overrides=tuple(ov),
        accelerator=acc,
        task=info,
        model=acc.prepare(net),
        raw_model=net,
        batches=batches,
        initial_state=initial,
        info=_describe(net, batches, info.name, mixed_precision, ov),
        **parts,
    )


def _model_and_batches(
    cfg: DictConfig, acc: Any, info: Any, num_batches: int, seq_len: int | None
) -> dict[str, Any]:
    """The model (run's model step, or random init for ``source: random``) and the fixed batches: the
    first batches of the run's own train loader, or random ids of ``seq_len`` when it is given."""
    from adasam_glue import run as run_mod
    from adasam_glue.data import GlueCollator, default_pad_multiple
    from adasam_glue.modeling import build_model
    from adasam_glue.schedules import build_batch_plan

    bs = int(cfg.task.batch_size)
    if cfg.model.source == "random":
        with torch.device(acc.device):  # random init on the device: seconds, not a minute, for 355M
            net = build_model(cfg.model, info, None)
        tokenizer, vocab, pad_id = None, net.config.vocab_size, net.config.pad_token_id or 0
    else:
        tokenizer, net = run_mod.setup_model_and_tokenizer(cfg, info)
        vocab, pad_id = len(tokenizer), tokenizer.pad_token_id or 0
    if seq_len is None:
        plan, micro, loaders = run_mod.setup_data(cfg, info, tokenizer, acc)
        order = list(loaders.train.sampler)[: bs * num_batches]
        rows = [loaders.train_dataset[int(i)] for i in order]
        batches = [loaders.collator(rows[i : i + bs]) for i in range(0, len(rows), bs)]
        return {
            "net": net,
            "tokenizer": tokenizer,
            "batches": batches,
            "rows": rows,
            "collator": loaders.collator,
            "plan": plan,
            "micro": micro,
            "loaders": loaders,
        }
    pad_multiple = default_pad_multiple(None, str(cfg.trainer.mixed_precision))
    return {
        "net": net,
        "tokenizer": tokenizer,
        "batches": _random_batches(info, num_batches, bs, seq_len, vocab, int(cfg.seed)),
        "rows": [],
        "collator": GlueCollator(pad_token_id=pad_id, pad_to_multiple_of=pad_multiple),
        "plan": build_batch_plan(bs, run_mod.total_updates(cfg), None),
        "micro": bs // acc.num_processes,
        "loaders": None,
    }


def _describe(
    net: torch.nn.Module, batches: list[dict[str, torch.Tensor]], task: str, mp: str, ov: Sequence[str]
) -> dict[str, Any]:
    """The ``setups`` entry of the JSON: sizes of the model and of the fixed batches."""
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    total = sum(p.numel() for _, p in params)
    n = len(batches)
    return {
        "task": task,
        "batch_size": int(batches[0]["input_ids"].shape[0]),
        "num_batches": n,
        "num_params": total,
        "num_nonembedding_params": total - sum(p.numel() for name, p in params if "embeddings" in name),
        "param_mb": sum(p.numel() * p.element_size() for _, p in params) / 2**20,
        "mean_padded_len": sum(b["input_ids"].shape[1] for b in batches) / n,
        "real_tokens_per_batch": sum(float(b["attention_mask"].sum()) for b in batches) / n,
        "padded_tokens_per_batch": sum(b["input_ids"].numel() for b in batches) / n,
        "mixed_precision": mp,
        "overrides": list(ov),
    }


def _random_batches(
    task: Any, n: int, batch_size: int, seq_len: int, vocab: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Batches of random token ids (FLOPs and memory do not depend on which ids), all rows ``seq_len``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (batch_size, seq_len), generator=g)
        b = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if task.is_regression:
            b["labels"] = torch.rand(batch_size, generator=g)
        else:
            b["labels"] = torch.randint(0, task.num_labels, (batch_size,), generator=g)
        out.append(b)
    return out


def optimizer_overrides(name: str, form: dict[str, Any] | None = None) -> list[str]:
    """``optim=<name>`` plus ``optim.<key>=<value>`` for a non-default form (AdaSAM paper, LightSAM)."""
    return [f"optim={name}", *(f"optim.{k}={v}" for k, v in (form or {}).items())]


def build_trainer(
    setup: Setup, optim_overrides: Sequence[str], run_dir: str | Path | None = None
) -> tuple[torch.optim.Optimizer, Any, Any]:
    """``(optimizer, scheduler, trainer)``: the optimizer and schedule of the composed ``conf/optim``
    YAML (the run's own step), inside the run's own :class:`~adasam_glue.trainer.Trainer` on
    ``setup``'s model. The trainer is used for ``train_step``; its record writer writes nothing."""
    from adasam_glue import run as run_mod
    from adasam_glue.records import RunRecorder

    cfg = compose([*setup.overrides, *optim_overrides])
    optimizer, scheduler = run_mod.setup_optimizer_and_schedule(cfg, setup.raw_model, setup.plan)
    run_dir = Path(run_dir or tempfile.gettempdir())
    recorder = RunRecorder(run_dir / "record.json", {}, None, write=False)
    train_loader = setup.loaders.train if setup.loaders is not None else None
    trainer = run_mod.setup_trainer(
        cfg,
        setup.accelerator,
        setup.model,
        optimizer,
        scheduler,
        train_loader,
        {},
        setup.task,
        run_dir,
        setup.plan,
        setup.micro,
        setup.tokenizer,
        setup.loaders,
        recorder,
        None,
        {},
    )
    return optimizer, scheduler, trainer


def base_name(optimizer: torch.optim.Optimizer) -> str | None:
    """The descent optimizer inside ``optimizer``, read from the built object: ``sgd``, ``amsgrad``,
    ``adamw`` or the class name; ``None`` for a two-pass optimizer with its own descent (LightSAM).
    A single-pass optimizer is its own base."""
    from adasam_glue.optim import SAMBase

    base = optimizer.base_optimizer if isinstance(optimizer, SAMBase) else optimizer
    if base is None:
        return None
    if isinstance(base, torch.optim.SGD):
        return "sgd"
    if isinstance(base, (torch.optim.Adam, torch.optim.AdamW)):
        return "amsgrad" if base.param_groups[0].get("amsgrad") else "adamw"
    return type(base).__name__
