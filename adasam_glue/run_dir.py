"""The run dir: where one run lives, its readable name, and the lock that keeps it to one launch.

Layout: ``<results_dir>/runs/<experiment>/<task>/<optim>/<tag>-<group hash>/seed<k>/`` holding
``record.json`` (the result), ``checkpoint/`` (resume state, removed after the completed record is
written), ``model/`` (``save_model``), ``.lock`` and the Hydra job files under ``.hydra/``.

The tag is for people (model, the optimizer's grid keys, batch, schedule, cap); the hash of the run
identity without its seed (``adasam_glue.identity.group_hash``) is what keeps two configs that differ in
any result-changing key apart, so a changed config lands in a new dir by default.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adasam_glue.config import ConfigError

LOCK_NAME = ".lock"

_TAG_KEYS = (  # optimizer keys that distinguish grid points, in tag order, with short names
    ("base", ""),
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


def model_label(model_cfg: Any) -> str:
    """The model's name in folder names and captions: the last part of ``model.path`` when one is set
    (``/models/my-bert`` -> ``my-bert``, ``microsoft/deberta-v3-large`` -> ``deberta-v3-large``), else
    the config name (``minilm``, ``tiny``)."""
    path = model_cfg.get("path") if hasattr(model_cfg, "get") else None
    return Path(str(path).rstrip("/")).name if path else str(model_cfg.name)


def run_params_tag(cfg: DictConfig) -> str:
    """Readable folder name of a grid point: model, optimizer hyperparameters, batch and schedule."""
    o = cfg.optim
    parts = [model_label(cfg.model)]
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


def resolve_run_dir(cfg: DictConfig, group_hash: str | None = None) -> Path:
    """``cfg.run_dir`` when given, else the layout above (absolute: the printed path works anywhere).

    ``group_hash`` is computed from ``cfg`` when not given (``adasam_glue.identity.group_hash``).
    """
    if cfg.run_dir:
        return Path(cfg.run_dir).expanduser().absolute()
    if group_hash is None:
        from adasam_glue.identity import group_hash as _group_hash
        from adasam_glue.identity import run_identity

        group_hash = _group_hash(run_identity(cfg))
    return (
        Path(cfg.results_dir).expanduser().absolute()
        / "runs"
        / cfg.experiment_name
        / cfg.task.name
        / cfg.optim.name
        / f"{run_params_tag(cfg)}-{group_hash}"
        / f"seed{cfg.seed}"
    )


class RunDirLocked(ConfigError):
    """Another live process holds this run dir; nothing was changed."""


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``run_dir/.lock`` for the run's life.

    A second launch of the same run dir fails at once naming the holder (host, pid, start time) and
    touches nothing. The kernel drops the lock when the holder dies, so a killed run never leaves a
    stale lock behind. ``enabled=False`` on the non-main ranks of a data-parallel run (rank 0 holds it
    for all of them).
    """
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise RunDirLocked(
                f"{run_dir} is in use by another process ({holder}); wait for it to finish, stop it, or "
                "pick another run_dir / seed. Nothing was changed."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        _remove_stray_temps(run_dir)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _read_holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text() or "{}")
        return f"host {h.get('host')}, pid {h.get('pid')}, since {h.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


def _remove_stray_temps(run_dir: Path) -> None:
    """Temp files and folders a killed earlier launch left (safe: we hold the lock).

    A kill inside a folder swap can leave ``.checkpoint.old`` with no ``checkpoint``: that old folder is
    complete, so it is put back rather than deleted.
    """
    import shutil

    for p in run_dir.glob(".*.old"):
        live = run_dir / p.name[1 : -len(".old")]
        if not live.exists():
            p.rename(live)
    for p in run_dir.glob(".*.tmp*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for p in run_dir.glob(".*.old"):
        shutil.rmtree(p, ignore_errors=True)
