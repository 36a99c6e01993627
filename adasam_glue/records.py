"""Run records: one schema-versioned JSON per run, written atomically.

The report (and nothing else) reads these. Everything a later reader needs to rank, plot or audit a
run is in the record, so runs can be compared long after their checkpoints are gone
(style guide, "tuning playbook / AlgoPerf").

Record layout (``SCHEMA_VERSION`` 1), top-level keys:

- ``schema_version`` (int), ``run_id`` (str), ``status``: one of ``STATUSES``
- ``experiment``, ``task``, ``optimizer`` (str), ``seed`` (int), ``params`` (str: the run-dir tag)
- ``config`` (the resolved Hydra config as a dict), ``overrides`` (list of ``key=value`` strings)
- ``git_commit`` (str | None), ``git_dirty`` (bool | None), ``versions`` (package -> version),
  ``hardware`` (device, num_processes, mixed_precision, gpu names, cpu count, platform)
- ``optimizer_updates``, ``forward_backward_passes``, ``samples_seen`` (ints)
- ``train_curve``: list of ``{"update", "loss", "lr"}`` (one per update, loss averaged over the update)
- ``eval_curve``: list of ``{"update", "eval_loss", "metrics": {key: float}}``
- ``selection_metric`` (str), ``best`` and ``final``: ``{"update", "eval_loss", "metrics"}`` or None
- ``wall_time_s`` (float), ``started_at``, ``finished_at`` (ISO 8601 UTC)
- ``error`` (str, failed runs), ``sharpness`` (optional block, see ``adasam_glue.sharpness``)
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
STATUSES = ("running", "completed", "diverged", "failed", "preempted")


class RecordError(ValueError):
    """A record that cannot be used (wrong schema version, corrupt JSON); the message names the file."""


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as strings so a diverged run's record stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder + ``os.replace`` (never torn)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Atomically write a run record (adds ``schema_version`` if absent)."""
    record = {"schema_version": SCHEMA_VERSION, **record}
    text = json.dumps(_clean(record), indent=2, sort_keys=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read one record; raise :class:`RecordError` naming the file on corrupt JSON or another schema."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: corrupt run record ({e})") from e
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a run record must be a JSON object")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{path}: run record schema_version {version!r} is not supported "
            f"(this adasam_glue reads version {SCHEMA_VERSION})"
        )
    return record


def find_records(root: str | os.PathLike) -> list[Path]:
    """All ``record.json`` files under ``root``, sorted (deterministic report order)."""
    return sorted(Path(root).rglob(RECORD_NAME))
