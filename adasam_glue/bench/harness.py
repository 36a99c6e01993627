"""What every benchmark is built from and writes: the real composed config, the run's own setup steps, and
the JSON (with where its figures came from).

Everything a benchmark trains is built by the steps :func:`adasam_glue.run.run` calls (accelerator,
model and tokenizer, data, optimizer and schedule, trainer) from ``conf/`` plus overrides, so a benchmark
times the code a run executes with the values the YAML holds. Files are written atomically with the run
records' conventions (NaN as strings); schema: ``docs/bench_schema.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from adasam_glue.records import atomic_write_text, dumps_record

#: overrides every benchmark config gets: no wandb, no progress bar, results under the bench's name
BENCH_OVERRIDES = ("logging.wandb_mode=disabled", "trainer.progress_bar=false", "experiment_name=bench")
#: bumped when a key changes meaning or disappears (adding keys keeps the version)
SCHEMA_VERSION = 3


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


@dataclass
class Setup:
    """One model (``name``: its ``conf/model``; ``raw_model`` unwrapped), the fixed batches every optimizer
    trains on (on the device), and what building a trainer on it needs; ``info`` is the JSON's ``setups``
    entry."""

    name: str
    cfg: DictConfig
    overrides: tuple[str, ...]
    raw_model: torch.nn.Module
    batches: list[dict[str, torch.Tensor]]
    initial_state: dict[str, torch.Tensor]
    info: dict[str, Any]
    #: the arguments of :func:`adasam_glue.run.setup_trainer` but the config, optimizer, schedule and recorder
    trainer_inputs: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return self.trainer_inputs["accelerator"].device

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.raw_model.parameters() if p.requires_grad]

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
    max_length: int = 128,
    seq_len: int | None = None,
    mixed_precision: str = "no",
    cache_dir: str | None = None,
    overrides: Sequence[str] = (),
) -> Setup:
    """Model + fixed batches through the run's setup steps: the first ``num_batches`` batches of the real
    train loader over the synthetic task (dynamic padding, the run's collator and sampler); for a model
    without a tokenizer (``source: random``, e.g. ``roberta-large-random``) or a given ``seq_len``, random
    token ids (FLOPs and memory do not depend on which) of exactly ``seq_len`` (``max_length`` by default)."""
    from adasam_glue import run as run_mod
    from adasam_glue.modeling import build_model
    from adasam_glue.schedules import build_batch_plan
    from adasam_glue.tasks import get_task

    train_rows = max(64, batch_size * num_batches)
    ov = (
        *BENCH_OVERRIDES,
        *f"model={model} task=mrpc task.batch_size={batch_size} task.max_length={max_length}".split(),
        *f"trainer.mixed_precision={mixed_precision} trainer.cpu={str(device == 'cpu').lower()}".split(),
        *f"data.source=synthetic data.synthetic_eval_size=16 data.synthetic_train_size={train_rows}".split(),
        "seed=0",
        *([f"data.cache_dir={cache_dir}"] if cache_dir else []),
        *overrides,
    )
    cfg = compose(ov)
    info = get_task(cfg.task.name)
    acc = run_mod.setup_accelerator(cfg)
    tok = None
    if cfg.model.source == "random":
        with torch.device(acc.device):  # random init on the device: seconds, not a minute, for 355M
            net = build_model(cfg.model, info, None)
    else:
        tok, net = run_mod.setup_model_and_tokenizer(cfg, info)
    seq_len = seq_len or (max_length if tok is None else None)
    if seq_len is None:
        plan, micro, loaders = run_mod.setup_data(cfg, info, tok, acc)
        order = list(loaders.train.sampler)[: batch_size * num_batches]
        rows = [loaders.train_dataset[int(i)] for i in order]
        batches = [loaders.collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    else:
        plan, loaders = build_batch_plan(batch_size, run_mod.total_updates(cfg), None), None
        micro, g, batches = batch_size // acc.num_processes, torch.Generator().manual_seed(int(cfg.seed)), []
        for _ in range(num_batches):
            ids = torch.randint(5, net.config.vocab_size, (batch_size, seq_len), generator=g)
            if info.is_regression:
                labels = torch.rand(batch_size, generator=g)
            else:
                labels = torch.randint(0, info.num_labels, (batch_size,), generator=g)
            batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    batches = [{k: v.to(acc.device) for k, v in b.items()} for b in batches]
    initial = {k: v.detach().clone() for k, v in net.to(acc.device).state_dict().items()}
    params, n = [(name, p) for name, p in net.named_parameters() if p.requires_grad], len(batches)
    total = sum(p.numel() for _, p in params)
    desc = {
        "task": info.name,
        "batch_size": int(batches[0]["input_ids"].shape[0]),
        "num_batches": n,
        "num_params": total,
        "num_nonembedding_params": total - sum(p.numel() for name, p in params if "embeddings" in name),
        "param_mb": sum(p.numel() * p.element_size() for _, p in params) / 2**20,
        "mean_padded_len": sum(b["input_ids"].shape[1] for b in batches) / n,
        "real_tokens_per_batch": sum(float(b["attention_mask"].sum()) for b in batches) / n,
        "padded_tokens_per_batch": sum(b["input_ids"].numel() for b in batches) / n,
        "mixed_precision": mixed_precision,
        "overrides": list(ov),
    }
    inputs = {"accelerator": acc, "model": acc.prepare(net), "task": info, "tokenizer": tok, "plan": plan}
    inputs |= {"micro": micro, "loaders": loaders, "train_loader": None if loaders is None else loaders.train}
    inputs |= {"eval_loaders": {}, "run_dir": Path(tempfile.gettempdir()), "wandb_run": None, "identity": {}}
    return Setup(model, cfg, ov, net, batches, initial, desc, inputs)


def build_trainer(setup: Setup, name: str, form: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``(optimizer, trainer)``: registry optimizer ``name`` (``form``: ``optim.<key>=<value>`` for a
    non-default form) and schedule from the composed ``conf/optim`` YAML (the run's own step) in the run's
    own :class:`~adasam_glue.trainer.Trainer` on ``setup``'s model, for ``train_step``; its record writer
    writes nothing."""
    from adasam_glue import run as run_mod
    from adasam_glue.records import RunRecorder

    cfg = compose([*setup.overrides, f"optim={name}", *(f"optim.{k}={v}" for k, v in (form or {}).items())])
    inputs = setup.trainer_inputs
    optimizer, scheduler = run_mod.setup_optimizer_and_schedule(cfg, setup.raw_model, inputs["plan"])
    recorder = RunRecorder(inputs["run_dir"] / "record.json", {}, None, write=False)
    trainer = run_mod.setup_trainer(
        cfg, optimizer=optimizer, scheduler=scheduler, recorder=recorder, **inputs
    )
    return optimizer, trainer


def environment(device: str) -> dict[str, Any]:
    """The ``env`` block of every file: versions, CPUs and threads, device, git commit, load average,
    date and the command line."""
    from adasam_glue.provenance import git_commit, versions

    commit, dirty = git_commit()
    v = versions()
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):  # not available on this platform
        load = None
    return {
        **{k: v.get(k) for k in ("python", "torch", "transformers", "accelerate", "datasets")},
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_avg_at_start": load,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "adasam_glue.bench", *sys.argv[1:]]),
    }


def write_json(path: str | Path, obj: dict[str, Any], partial: bool = False) -> None:
    """Atomically write ``obj`` (``schema_version`` first; ``partial: true`` while the benchmark runs, so
    an interrupted one keeps what it measured)."""
    obj = {"schema_version": SCHEMA_VERSION, **obj, **({"partial": True} if partial else {})}
    atomic_write_text(Path(path), dumps_record(obj))


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def error_text(e: BaseException) -> str:
    """How a JSON file records a failure: the exception's type and message."""
    return f"{type(e).__name__}: {e}"
