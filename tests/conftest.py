"""Shared fixtures: compose the real ``conf/`` and shrink it (tiny model, synthetic data, CPU)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# every test that composes an experiment config (hydra.compose) needs its resolvers, as the CLI has them
import adasam_glue.experiments.resolvers  # noqa: E402,F401


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = [
    "model=tiny",
    "data.source=synthetic",
    "data.synthetic_train_size=64",
    "data.synthetic_eval_size=32",
    "task.max_length=32",
    "task.batch_size=8",
    "trainer.max_updates=4",
    "trainer.cpu=true",
    "trainer.progress_bar=false",
    "trainer.eval_batch_size=32",
]


def compose_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    from adasam_glue.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def tiny_mrpc_glue(root: Path) -> Path:
    """A GLUE root (``root/glue``) holding a 20-row MRPC in the original TSV layout, train and dev, no
    test split (the identity fingerprints the files, so they must exist)."""
    d = root / "glue" / "MRPC"
    d.mkdir(parents=True)
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    body = "".join(f"{i % 2}\t{i}\t{i + 1000}\tthe cat sat {i}\ta cat sat {i}\n" for i in range(20))
    for name in ("train.tsv", "dev.tsv"):
        (d / name).write_text(head + body, encoding="utf-8")
    return root / "glue"


def data_config(**values):
    """``conf/data/default.yaml`` with ``values`` replaced: the ``data`` node a real run passes on."""
    from omegaconf import OmegaConf

    from adasam_glue.config import CONF_DIR

    return {**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "default.yaml")), **values}


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture
def tiny_cfg(tmp_path, data_cache):
    """``tiny_cfg(*overrides)``: the real config, shrunk to seconds on CPU, writing under tmp_path."""

    def make(*overrides: str, run_dir: str | Path | None = None):
        base = [*TINY, f"results_dir={tmp_path}", f"data.cache_dir={data_cache}"]
        if run_dir is not None:
            base.append(f"run_dir={run_dir}")
        return compose_cfg(*base, *overrides)

    return make


@contextlib.contextmanager
def training_linear_dtypes() -> Iterator[set]:
    """The dtypes of every ``nn.Linear`` output computed for training (module in train mode, grad on)
    while the block runs: ``{torch.float16}`` when the forward ran under fp16 autocast (spec
    ``docs/algorithms.md`` §2.2), ``{torch.float32}`` without it. Evaluation and the sharpness measure
    (eval mode, no grad, autocast off by design) are left out."""
    import torch

    seen: set = set()

    def hook(module, args, output) -> None:
        if isinstance(module, torch.nn.Linear) and module.training and torch.is_grad_enabled():
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- two gloo processes
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_process(rank: int, port: int, timeout_s: int, worker, args: tuple) -> None:
    """One of the two processes: the process group up, ``worker(rank, *args)``, the group down."""
    import datetime
    import gc

    import torch
    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    # a desynchronised collective (ranks skipping different updates) fails after timeout_s, never hangs
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=timeout_s))
    worker(rank, *args)
    # the DDP reducers go before the process group does (gloo aborts at exit otherwise, now and then)
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def run_two_gloo_processes(worker, *args, timeout_s: int = 60) -> None:
    """``worker(rank, *args)`` in two spawned CPU processes sharing a gloo process group (DDP's data
    parallelism, spec ``docs/algorithms.md`` §2.4); ``worker`` must be a module-level function (pickled)."""
    import torch.multiprocessing as mp

    mp.spawn(_gloo_process, args=(_free_port(), timeout_s, worker, args), nprocs=2, join=True)


@pytest.fixture(autouse=True)
def _package_loggers_restored() -> Iterator[None]:
    """Each test starts with the package's loggers as the process had them: a test that builds a
    SAMTrainer (which sets the ``adasam_glue`` level from HF's log level) or runs Hydra's job logging
    (which may disable existing loggers) must not silence the log a later test reads through caplog."""
    import logging

    names = ["adasam_glue", *(n for n in logging.root.manager.loggerDict if n.startswith("adasam_glue."))]
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    yield
    for name in logging.root.manager.loggerDict:
        if name == "adasam_glue" or name.startswith("adasam_glue."):
            logger = logging.getLogger(name)
            logger.level, logger.disabled = saved.get(name, (logging.NOTSET, False))
