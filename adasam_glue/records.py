"""Run records: one schema-versioned JSON per run, written atomically.

The report (and nothing else) reads these. Everything a later reader needs to rank, plot or audit a
run is in the record, so runs can be compared long after their checkpoints are gone
(style guide, "tuning playbook / AlgoPerf").

Record layout (``SCHEMA_VERSION`` 2; version 1 records are still read), top-level keys:

- ``schema_version`` (int), ``run_id`` (str), ``status``: one of ``STATUSES``
- ``experiment``, ``task``, ``optimizer`` (str), ``seed`` (int), ``params`` (str: the run-dir tag)
- ``config`` (the resolved Hydra config as a dict), ``overrides`` (list of ``key=value`` strings)
- ``git_commit`` (str | None), ``git_dirty`` (bool | None), ``versions`` (package -> version),
  ``hardware`` (device, num_processes, mixed_precision, gpu names, cpu count, platform)
- ``optimizer_updates``, ``forward_backward_passes``, ``samples_seen`` (ints)
- ``train_curve``: list of ``{"update", "loss", "lr"}`` (one per update, loss averaged over the update,
  measured where ``train_loss_at`` says: ``w``, or RSAM's ``w + delta0``; an absent key means ``w``)
- ``eval_curve``: list of ``{"update", "eval_loss", "metrics": {key: float}, "constant_prediction": bool}``
  (``constant_prediction``, written since 2026-12: every dev prediction the same class or value,
  ``adasam_glue.metrics.constant_prediction``; absent in older records)
- ``selection_metric`` (str), ``best`` and ``final``: an eval entry (as above) or None
- ``wall_time_s`` (float), ``started_at``, ``finished_at`` (ISO 8601 UTC)
- ``error`` (str, failed runs), ``sharpness`` (optional block, see ``adasam_glue.sharpness.measure``)
- version 2 adds: ``identity`` (``adasam_glue.identity.run_identity``: what can change a result),
  ``identity_hash`` and ``group_hash`` (the same without the seed: one report cell),
  ``attempts`` (one entry per launch: started/finished, status, updates at start and end, commit,
  error, ``wandb_error`` when wandb failed and the run went on without it; a failed attempt never erases
  what an earlier one recorded), ``data_quality`` (rows read and skipped per split), ``skipped_updates``
  (fp16 overflow skips), ``diverged_reason`` (str, a ``diverged`` run written since the rule below: why
  it was stopped), ``final_phase_pending`` (a run ``preempted`` after its last update: the final-phase
  steps its requeue does, ``adasam_glue.trainer.FINAL_STEPS``), ``predictions`` (``predict_test``: the
  test submission files and the model they came from), ``supersedes`` (``rerun_on_new_commit=true``:
  the name of the earlier code's record, kept in the run dir as ``record.<commit>.json``)

When it is written: at every evaluation, checkpoint, signal and at the end of a run, never per update,
so the cost of keeping it is independent of the run's length.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
RECORD_NAME = "record.json"
STATUSES = ("running", "completed", "diverged", "failed", "preempted")
#: statuses after which a run is never trained again (the record is the result)
FINAL_STATUSES = ("completed", "diverged")


#: The fp16 skip rule's values as ``conf/trainer/default.yaml`` sets them: applied to records written
#: before the keys existed (their configs lack them). A test checks that the two agree.
FP16_MAX_SKIP_STREAK = 20
FP16_MAX_SKIPPED_FRACTION = 0.05


def fp16_skip_limits(config: Any) -> tuple[int | None, float | None]:
    """``(max_skip_streak, max_skipped_fraction)`` of a run: its config's ``trainer.fp16_*`` keys, the
    defaults above where the config predates them (``null`` in a config turns that part off)."""
    trainer = config.get("trainer") if isinstance(config, dict) else None
    trainer = trainer if isinstance(trainer, dict) else {}
    streak = trainer.get("fp16_max_skip_streak", FP16_MAX_SKIP_STREAK)
    fraction = trainer.get("fp16_max_skipped_fraction", FP16_MAX_SKIPPED_FRACTION)
    return streak, fraction


def too_many_skips(
    skipped: int, updates: int, max_streak: int | None, max_fraction: float | None
) -> str | None:
    """The fp16 skip rule's total part: why ``skipped`` of ``updates`` is not a run that trained, or None.

    A GradScaler skips an update whose scaled gradient is not finite. A healthy fp16 run skips a few
    in a row at its start, while the scale falls from 2**16 to one that fits (at most
    ``max_streak``), and then about one per 2000 updates, when the scale tries to grow; a run whose
    weights are NaN skips every update and would end ``completed`` with nothing learnt. So: more than
    ``max_streak + max_fraction * updates`` skipped updates is divergence (``max_fraction`` None: off).
    """
    if max_fraction is None or not skipped:
        return None
    allowed = (max_streak or 0) + max_fraction * updates
    if skipped <= allowed:
        return None
    return (
        f"fp16: {skipped} of {updates} updates skipped for non-finite gradients, more than "
        f"trainer.fp16_max_skip_streak + trainer.fp16_max_skipped_fraction x updates = "
        f"{max_streak or 0} + {max_fraction:g} x {updates} = {allowed:g}: the run did not train"
    )


def final_loss_not_finite(record: dict[str, Any]) -> str | None:
    """Why a record's last train loss (at its last update) says the run ended broken, or None.

    The trainer stops a run as ``diverged`` at a non-finite loss on an applied update; under fp16 a NaN
    loss on a *skipped* update went unnoticed, so a run could end ``completed`` with NaN weights.
    """
    curve = record.get("train_curve")
    if not isinstance(curve, list) or not curve or not isinstance(curve[-1], dict):
        return None
    last = curve[-1]
    if last.get("update") != record.get("optimizer_updates"):
        return None
    try:
        loss = float(last.get("loss"))
    except (TypeError, ValueError):
        return None
    if math.isfinite(loss):
        return None
    return f"train loss {loss} at the last update ({last.get('update')}): the run ended with broken weights"


def skip_rule_verdict(record: dict[str, Any]) -> str | None:
    """Why a ``completed`` record breaks the divergence rule (docs/algorithms.md §2.2), or None.

    Records written before the rule existed can say ``completed`` for a run that never trained (an fp16
    run whose updates were nearly all skipped); the report and the lr selection read them through this.
    """
    if record.get("status") != "completed":
        return None
    skipped, updates = record.get("skipped_updates"), record.get("optimizer_updates")
    if isinstance(skipped, int) and isinstance(updates, int):
        streak, fraction = fp16_skip_limits(record.get("config"))
        why = too_many_skips(skipped, updates, streak, fraction)
        if why:
            return why
    return final_loss_not_finite(record)


def record_commits(record: dict[str, Any]) -> tuple[list[str], bool]:
    """``(commits, dirty)`` behind a record: every git commit that trained it (one per attempt, in first-seen
    order, then the record's own ``git_commit``) and whether any of them ran from a tree with uncommitted
    changes (``git_dirty``). Records of a run outside a git checkout have none: ``([], False)``."""
    commits: list[str] = []
    dirty = False
    attempts = record.get("attempts") if isinstance(record.get("attempts"), list) else []
    for entry in [*attempts, record]:
        if not isinstance(entry, dict):
            continue
        commit = entry.get("git_commit")
        if isinstance(commit, str) and commit and commit not in commits:
            commits.append(commit)
        dirty = dirty or entry.get("git_dirty") is True
    return commits, dirty


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


def _umask_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 minus the umask): collaborators can read it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder + ``os.replace`` (never torn).

    The temp name is unique per process (``mkstemp``) and removed on any failure; the file gets the
    mode the umask allows (``mkstemp`` alone would leave 0600, unreadable for a shared cluster group).
    An ``OSError`` (disk full, permissions) is re-raised naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
        raise


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Atomically write a run record (adds ``schema_version`` if absent)."""
    record = {"schema_version": SCHEMA_VERSION, **record}
    atomic_write_text(path, dumps_record(record))


#: keys whose values are long per-update or per-eval lists: written one entry per line, not indented
_CURVES = ("train_curve", "eval_curve", "sharpness_curve")


def dumps_record(record: dict[str, Any]) -> str:
    """The record as JSON: indented at the top, one line per curve entry (compact and diff-friendly)."""
    record = _clean(record)
    head = {k: v for k, v in record.items() if k not in _CURVES}
    text = json.dumps(head, indent=2, default=_json_default)
    curves = [k for k in _CURVES if k in record]
    if not curves:
        return text + "\n"
    parts = []
    for key in curves:
        rows = ",\n    ".join(
            json.dumps(r, separators=(",", ":"), default=_json_default) for r in record[key]
        )
        parts.append(f'  "{key}": [\n    {rows}\n  ]' if rows else f'  "{key}": []')
    body = text[: text.rstrip().rfind("}")].rstrip()
    sep = ",\n" if head else "\n"
    return body + sep + ",\n".join(parts) + "\n}\n"


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
    if version not in READABLE_VERSIONS:
        raise RecordError(
            f"{path}: run record schema_version {version!r} is not supported "
            f"(this adasam_glue reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    return record


def find_records(root: str | os.PathLike) -> list[Path]:
    """All ``record.json`` files under ``root``, sorted (deterministic report order)."""
    return sorted(Path(root).rglob(RECORD_NAME))


def now() -> str:
    """ISO 8601 UTC, to the second (record timestamps)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


#: the progress part of a record: taken from the training state, or kept from an earlier attempt
_PROGRESS = (
    "optimizer_updates",
    "forward_backward_passes",
    "micro_batch_passes",
    "samples_seen",
    "skipped_updates",
    "diverged_reason",
    "train_curve",
    "eval_curve",
    "best",
    "final",
    "wall_time_s",
    "sharpness",
    "sharpness_curve",
)


class RunRecorder:
    """Writes one run's record: its fixed part, the training state's progress and the attempt history.

    Each launch of a run dir is one *attempt*; the record keeps every attempt (start, end, status,
    updates at start and end, commit, error). An attempt that fails before it has made as much progress
    as the record already shows (a resume that cannot load its checkpoint, a crash at start-up) keeps
    the earlier counters and curves: a failure adds its error, it never erases history.
    """

    def __init__(
        self, path: Path, base: dict[str, Any], previous: dict[str, Any] | None, write: bool = True
    ) -> None:
        self.path, self.base, self.previous, self.enabled = Path(path), base, previous, write
        #: whether this attempt started from a checkpoint (set once it has tried to load one); until then
        #: the record keeps the previous attempt's value
        self.resumed: bool | None = None
        self.attempts: list[dict[str, Any]] = list((previous or {}).get("attempts", []))
        if previous is not None and not self.attempts:  # a version-1 record: its run was one attempt
            self.attempts.append(_attempt_of(previous))
        self.attempt = {
            "started_at": base.get("started_at"),
            "updates_at_start": (previous or {}).get("optimizer_updates", 0),
            "git_commit": base.get("git_commit"),
            "git_dirty": base.get("git_dirty"),
            "hardware": base.get("hardware"),
        }
        if previous is not None and previous.get("identity_changes"):
            self.attempt["identity_changes"] = previous["identity_changes"]
        if previous is not None:  # the run started when its first attempt did
            self.base = base | {"started_at": previous.get("started_at", base.get("started_at"))}

    def note(self, key: str, value: Any) -> None:
        """A fact of this attempt that is not training progress (e.g. ``wandb_error``: logging failed and
        the run went on without wandb), kept in its ``attempts`` entry from the next write on."""
        self.attempt[key] = value

    def progress(self, state: Any) -> dict[str, Any]:
        out = {
            "optimizer_updates": state.updates,
            "forward_backward_passes": state.forward_backward_passes,
            "micro_batch_passes": state.micro_batch_passes,
            "samples_seen": state.samples_seen,
            "skipped_updates": getattr(state, "skipped_updates", 0),
            "train_curve": state.train_curve,
            "eval_curve": state.eval_curve,
            "best": state.best,
            "final": state.final,
            "wall_time_s": state.wall_time_s,
        }
        if getattr(state, "diverged_reason", None):
            out["diverged_reason"] = state.diverged_reason
        if state.sharpness is not None:
            out["sharpness"] = state.sharpness
        if state.sharpness_curve:
            out["sharpness_curve"] = state.sharpness_curve
        if getattr(state, "final_pending", None):  # preempted in the final phase: what the requeue does
            out["final_phase_pending"] = list(state.final_pending)
        return out

    def write(self, state: Any, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write (atomically) and return the record for ``state`` with ``status``."""
        progress = self.progress(state)
        prev = self.previous or {}
        if prev.get("optimizer_updates", 0) > state.updates:  # this attempt has not caught up: keep history
            progress = {k: prev[k] for k in _PROGRESS if k in prev}
        self.attempt |= {
            "finished_at": now(),
            "status": status,
            "updates_at_end": progress.get("optimizer_updates", 0),
        }
        if extra and "error" in extra:
            self.attempt["error"] = extra["error"]
        record = (
            self.base
            | {"status": status}
            | progress
            | {"finished_at": now(), "attempts": [*self.attempts, dict(self.attempt)]}
        )
        for key in ("data_quality", "padding", "resumed"):  # facts of the data, kept across attempts
            if key in prev and key not in (extra or {}):
                record[key] = prev[key]
        if (
            self.resumed is not None
        ):  # this attempt's, in every write (evals, checkpoints), not the last one's
            record["resumed"] = self.attempt["resumed"] = self.resumed
        record |= extra or {}
        if status != "failed":
            record.pop("error", None)
        if self.enabled:
            write_record(self.path, record)
        return record


def _attempt_of(record: dict[str, Any]) -> dict[str, Any]:
    out = {
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "status": record.get("status"),
        "updates_at_start": 0,
        "updates_at_end": record.get("optimizer_updates", 0),
        "git_commit": record.get("git_commit"),
    }
    if record.get("error"):
        out["error"] = record["error"]
    return out
