"""Load run records for the report: validate, parse, and sort them into usable / skipped runs.

Rules (issue 6, "Robustness"):

- a record of another ``schema_version`` is refused: :func:`load_runs` raises :class:`RecordError`
  naming the file (``skip_unknown_schema=True`` lists it as skipped instead);
- corrupt JSON (or JSON that is not an object, or lacks the keys the report needs) is reported and
  skipped, never fatal;
- a folder without any ``record.json`` raises :class:`NoRecordsError` (the CLI exits with code 2).

Only ``completed`` runs enter the tables; ``diverged`` runs are counted and shown; ``running``,
``failed`` and ``preempted`` runs are listed as incomplete.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adasam_glue.records import RECORD_NAME, RecordError, find_records, read_record
from adasam_glue.tasks import TASKS

__all__ = ["Collection", "NoRecordsError", "Run", "load_runs", "to_float"]


class NoRecordsError(FileNotFoundError):
    """The runs folder holds no run record (or does not exist)."""


def to_float(x: Any) -> float | None:
    """A record number back to ``float``: ``"nan"``/``"inf"`` strings (how records store non-finite
    floats) become ``nan``/``inf``; ``None``, bools and anything unparsable become ``None``."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def finite(x: Any) -> float | None:
    """``to_float`` that also maps nan/inf to ``None`` (a metric that is not a number is missing)."""
    v = to_float(x)
    return v if v is not None and math.isfinite(v) else None


def _metrics(block: Any) -> dict[str, float]:
    if not isinstance(block, dict) or not isinstance(block.get("metrics"), dict):
        return {}
    return {k: v for k, v in ((k, finite(v)) for k, v in block["metrics"].items()) if v is not None}


def schedule_label(config: dict[str, Any]) -> str:
    """Short name of the run's training schedule: ``batch 16→32→64`` or the lr schedule name."""
    trainer = config.get("trainer") or {}
    bs = trainer.get("batch_schedule")
    if bs:
        return "batch " + "→".join(str(b) for b in bs)
    return str(trainer.get("schedule") or "linear")


@dataclass(frozen=True)
class Run:
    """One usable run record with the fields the report needs, parsed once."""

    rel: str  #: path of the record relative to the runs folder (used in every listing: deterministic)
    record: dict[str, Any]
    experiment: str
    task: str
    optimizer: str
    seed: int
    status: str
    beta1: float | None
    rho: float | None
    batch_size: int | None
    schedule: str  #: see :func:`schedule_label`
    best: dict[str, float]  #: best-checkpoint metrics (fractions); empty when absent
    final: dict[str, float]

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def config(self) -> dict[str, Any]:
        return self.record.get("config") or {}

    def describe(self) -> str:
        from adasam_glue.report.palette import method_name, task_name

        rho = "" if self.rho is None else f", rho={self.rho:g}"
        return (
            f"{method_name(self.optimizer)} {task_name(self.task)} beta1={_fmt(self.beta1)}{rho} "
            f"seed {self.seed} ({self.rel})"
        )


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


@dataclass
class Collection:
    """What :func:`load_runs` found: usable runs plus everything left out, with the reason."""

    root: Path
    runs: list[Run] = field(default_factory=list)  #: every parsed run, any status, sorted by path
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (relative path, reason)

    @property
    def incomplete(self) -> list[Run]:
        return [r for r in self.runs if r.status not in ("completed", "diverged")]


def _parse(rel: str, record: dict[str, Any]) -> Run:
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    optim = config.get("optim") or {}
    task_cfg = config.get("task") or {}
    task = str(record.get("task") or task_cfg.get("name") or "").lower().replace("-", "")
    optimizer = str(record.get("optimizer") or optim.get("name") or "").lower()
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    if not optimizer:
        raise ValueError("no optimizer name")
    seed = record.get("seed", config.get("seed"))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed {seed!r} is not an integer")
    status = record.get("status")
    if not isinstance(status, str):
        raise ValueError(f"status {status!r} is not a string")
    bs = task_cfg.get("batch_size")
    return Run(
        rel=rel,
        record=record,
        experiment=str(record.get("experiment") or config.get("experiment_name") or ""),
        task=task,
        optimizer=optimizer,
        seed=seed,
        status=status,
        beta1=to_float(optim.get("beta1")),
        rho=to_float(optim.get("rho")),
        batch_size=int(bs) if isinstance(bs, (int, float)) and not isinstance(bs, bool) else None,
        schedule=schedule_label(config),
        best=_metrics(record.get("best")),
        final=_metrics(record.get("final")),
    )


def load_runs(runs_dir: str | os.PathLike, *, skip_unknown_schema: bool = False) -> Collection:
    """Read every ``record.json`` under ``runs_dir`` (sorted by path).

    Raises :class:`NoRecordsError` when there is none and :class:`RecordError` (naming the file) on a
    record of another schema version unless ``skip_unknown_schema``.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise NoRecordsError(f"{root}: not a folder; expected a runs folder holding */{RECORD_NAME} files")
    paths = find_records(root)
    if not paths:
        raise NoRecordsError(
            f"{root}: no run records ({RECORD_NAME}) found; train runs first "
            "(python -m adasam_glue ..., make demo) or point the report at the folder that holds them"
        )
    out = Collection(root=root)
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            record = read_record(path)
        except RecordError as e:
            corrupt = isinstance(e.__cause__, (json.JSONDecodeError, UnicodeDecodeError)) or (
                "must be a JSON object" in str(e)
            )
            if corrupt:
                out.skipped.append((rel, "corrupt JSON"))
                continue
            if skip_unknown_schema:
                out.skipped.append((rel, "unknown schema_version"))
                continue
            raise
        except OSError as e:
            out.skipped.append((rel, f"unreadable ({e.strerror or e})"))
            continue
        try:
            out.runs.append(_parse(rel, record))
        except ValueError as e:
            out.skipped.append((rel, f"incomplete record: {e}"))
    return out
