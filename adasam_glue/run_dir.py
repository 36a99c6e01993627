"""The run dir: where one run lives, its readable name, and the lock that keeps it to one launch.

Layout: ``<results_dir>/runs/<experiment>/<task>/<optim>/<tag>-<group hash>/seed<k>/`` holding
``record.json`` (the result), ``checkpoint/`` (resume state, removed after the completed record is
written), ``model/`` (``save_model``), ``.lock`` (``.lock.excl`` with the lock-file fallback, see
:func:`run_dir_lock`) and the Hydra job files under ``.hydra/``.

The tag is for people (model, the optimizer's grid keys, batch, schedule, cap); the hash of the run
identity without its seed (``adasam_glue.identity.group_hash``) is what keeps two configs that differ in
any result-changing key apart, so a changed config lands in a new dir by default.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adasam_glue import config
from adasam_glue.config import ConfigError

LOCK_NAME = ".lock"

#: how an ``optim`` key is written in the run-dir tag: its short name (``""``: the value alone); a key not
#: named here is written under its own name (a new variant's key needs no entry)
_TAG_NAMES = {"base": "", "beta1": "b1", "beta2": "b2", "rho_min": "rhomin", "form": "", "weight_decay": "wd"}
#: keys left out of the tag (the same in every grid; the hash still tells two values apart), and the key
#: written last
_UNTAGGED, _TAG_LAST = ("name", "eps", "nesterov", "sync_ascent"), "weight_decay"


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
    order = [f.name for f in fields(config.OptimConfig)]  # every optimizer's keys (config.optim_schema)
    keys = [k for k in (*order, *o) if k not in _UNTAGGED and k != _TAG_LAST] + [_TAG_LAST]
    for key in dict.fromkeys(keys):
        value, short = o.get(key), _TAG_NAMES.get(key, key)
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


class RunDirLockUnsupported(ConfigError):
    """The run dir's file system cannot ``flock`` and the lock-file fallback is not switched on."""


#: ``=1`` switches on the lock-file fallback where ``flock`` is not supported (see :func:`run_dir_lock`)
LOCK_FALLBACK_ENV = "ADASAM_GLUE_LOCK_FALLBACK"
#: the fallback's lock file: created with ``O_EXCL``, holds host, pid and start time, removed at the end
EXCL_LOCK_NAME = ".lock.excl"
#: what ``flock`` raises where the file system has no locks (NFS without lockd, Lustre without -o flock)
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the run dir for the run's life (training, or a post-hoc measurement).

    Normally an ``fcntl.flock`` on ``run_dir/.lock``: a second launch of the same run dir fails at once
    naming the holder (host, pid, start time; another host's is reported as such) and touches nothing;
    the kernel drops the lock when the holder dies, so a killed run never leaves a stale lock behind.

    Where the file system cannot ``flock`` (``ENOLCK``/``EOPNOTSUPP``: NFS without lockd, Lustre mounted
    without ``-o flock``) the launch stops with :class:`RunDirLockUnsupported` saying what to do, unless
    ``ADASAM_GLUE_LOCK_FALLBACK=1``: then the lock is ``run_dir/.lock.excl``, created with ``O_EXCL``
    (atomic on NFSv3+ and Lustre) and holding host and pid. Such a file outlives a killed holder: one
    left by a dead process *of this host* is removed and the lock taken; one of another host cannot be
    checked from here and is reported with its host and pid (delete it once that process is gone).

    ``enabled=False`` on the non-main ranks of a data-parallel run (rank 0 holds it for all of them).
    """
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    release = _take_lock(run_dir)
    try:
        _remove_stray_temps(run_dir)
        yield
    finally:
        release()


def _take_lock(run_dir: Path) -> Callable[[], None]:
    """Take the run dir's lock (``flock``, or the ``O_EXCL`` fallback); return what releases it."""
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirLocked(
            f"{run_dir} is in use by another process ({_describe_holder(_holder_dict(path))}); wait for it "
            "to finish, stop it, or pick another run_dir / seed. Nothing was changed."
        ) from None
    except OSError as e:
        os.close(fd)
        if e.errno not in _NO_FLOCK:
            raise
        if not _fallback_enabled():
            name = errno.errorcode.get(e.errno or 0, str(e.errno))
            raise RunDirLockUnsupported(
                f"cannot lock {path}: the file system does not support flock ({name}: {e.strerror}; "
                "e.g. NFS without lockd, Lustre mounted without -o flock). Put results_dir (or run_dir) on "
                "a file system with locks (a local disk; NFS with lockd; Lustre with -o flock), or set "
                f"{LOCK_FALLBACK_ENV}=1 to lock with a lock file instead ({run_dir / EXCL_LOCK_NAME}, "
                "created with O_EXCL, holding host and pid; one left by a killed run of this host is "
                "removed at the next launch, one of another host must be deleted by hand). Nothing was "
                "changed."
            ) from None
        return _take_excl_lock(run_dir)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder()).encode())
    return lambda: os.close(fd)  # closing releases the lock


def _fallback_enabled() -> bool:
    value = os.environ.get(LOCK_FALLBACK_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(
        f"invalid {LOCK_FALLBACK_ENV}={os.environ[LOCK_FALLBACK_ENV]!r}: must be 1 (use a lock file where "
        "flock is not supported) or 0 / unset"
    )


def _take_excl_lock(run_dir: Path) -> Callable[[], None]:
    """The fallback lock: ``run_dir/.lock.excl`` created with ``O_EXCL``; a dead local holder's is removed."""
    path = run_dir / EXCL_LOCK_NAME
    mine = _holder() | {"token": uuid.uuid4().hex, "lock": "O_EXCL lock file (flock unsupported)"}
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _holder_dict(path)
            if attempt == 0 and _is_stale(holder):
                # a killed run of this host left it: remove it if it is still that one, then retry once
                if _holder_dict(path) == holder:
                    path.unlink(missing_ok=True)
                continue
            raise RunDirLocked(
                f"{run_dir} is in use by another process ({_describe_holder(holder)}; lock file {path}); "
                "wait for it to finish, stop it, or pick another run_dir / seed"
                + (
                    f". If that process is gone (its node crashed), delete {path}"
                    if holder and holder.get("host") != socket.gethostname()
                    else ""
                )
                + ". Nothing was changed."
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(mine))
            f.flush()
            os.fsync(f.fileno())
        break
    else:  # pragma: no cover - the retry above either returns or raises
        raise RunDirLocked(f"{run_dir}: could not take the lock file {path}")

    def release() -> None:
        if (_holder_dict(path) or {}).get("token") == mine["token"]:  # never remove another's lock
            path.unlink(missing_ok=True)

    return release


def _is_stale(holder: dict[str, Any] | None) -> bool:
    """A lock file of this host whose process is dead (another host's cannot be checked from here)."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _holder_dict(path: Path) -> dict[str, Any] | None:
    try:
        h = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    return h if isinstance(h, dict) else None


def _describe_holder(h: dict[str, Any] | None) -> str:
    """``host X, pid P, since S`` and whether X is this host: a pid means nothing on another host."""
    if not h:
        return "holder unknown"
    here = socket.gethostname()
    where = "on this host" if h.get("host") == here else f"on another host than this one ({here})"
    return f"host {h.get('host')}, pid {h.get('pid')}, since {h.get('since')}; {where}"


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
