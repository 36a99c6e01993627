"""Run records -> one DataFrame, a row per ``record.json``: validated, parsed, judged and deduplicated.

A record of another ``schema_version`` is refused (:class:`RecordError`) unless ``skip_unknown_schema``;
a corrupt or incomplete one is listed as skipped. The report does not take ``status`` on trust
(:func:`judge_frame`): a completed record breaking the divergence rule is ``diverged``, a run resumed under
a changed config is ``excluded``, rows lost to malformed TSV lines are flagged (every seed of an identity
read the same files). Every row carries its flattened identity (derived from the config for schema-1
records): the report pools, selects and pairs only through it (docs/algorithms.md §4.4).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adasam_glue.identity import canonical_json, flatten, group_hash, identity_hash, run_identity
from adasam_glue.records import (
    FINAL_STATUSES,
    RECORD_NAME,
    RecordError,
    find_records,
    read_record,
    record_commits,
    skip_rule_verdict,
)
from adasam_glue.report.palette import g_or, method_name, task_name
from adasam_glue.tasks import TASKS

#: the report's status of a final record it will not use (a run resumed under a changed config)
EXCLUDED = "excluded"
#: metric key a record may use -> the key the report uses (Hugging Face ``evaluate`` names)
METRIC_ALIASES: dict[str, str] = {"mcc": "matthews_correlation", "spearman": "spearmanr"}
#: a run whose record names no commit (not run from a git checkout, or written before commits were kept)
UNKNOWN_COMMIT = "unknown"


class NoRecordsError(FileNotFoundError):
    """The runs folder holds no run record (or does not exist)."""


def to_float(x: Any) -> float | None:
    """A record number as ``float`` (``"nan"``/``"inf"`` strings too); ``None`` for bools and junk."""
    if x is None or isinstance(x, bool):
        return None
    try:
        return float(x) if isinstance(x, (int, float, str)) else None
    except ValueError:
        return None


def normalize_metrics(metrics: Any) -> dict[str, Any]:
    """``metrics`` with old key names mapped to the current ones (a current key present wins)."""
    if not isinstance(metrics, dict):
        return {}
    out = {k: v for k, v in metrics.items() if k not in METRIC_ALIASES}
    return out | {
        new: metrics[old] for old, new in METRIC_ALIASES.items() if old in metrics and new not in out
    }


def _metrics(block: Any) -> dict[str, float]:
    """Finite metrics of a ``best``/``final`` block (a non-number is missing)."""
    metrics = normalize_metrics(block.get("metrics")) if isinstance(block, dict) else {}
    vals = {k: to_float(v) for k, v in metrics.items()}
    return {k: v for k, v in vals.items() if v is not None and math.isfinite(v)}


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def schedule_label(config: dict[str, Any]) -> str:
    """Short name of the run's training schedule: ``batch 16→32→64`` or the lr schedule name."""
    trainer = config.get("trainer") or {}
    if trainer.get("batch_schedule"):
        return "batch " + "→".join(str(b) for b in trainer["batch_schedule"])
    return str(trainer.get("schedule") or "linear")


def derive_identity(record: dict[str, Any]) -> tuple[dict[str, Any], bool, str]:
    """``(identity, derived, note)``: the stored identity, else one derived from the config (schema 1).

    A derived identity fingerprints the data and weights the config points at *now*; when the weights
    cannot be located, ``note`` says so and the run never pools with one whose weights were fingerprinted.
    """
    stored = record.get("identity")
    if isinstance(stored, dict) and stored:
        return stored, False, ""
    config = {"task": {}, "model": {}, "data": {}, **json.loads(canonical_json(_dict(record.get("config"))))}
    world = _dict(record.get("hardware")).get("num_processes")
    world = world if isinstance(world, int) and not isinstance(world, bool) and world > 0 else 1
    try:
        return run_identity(config, world_size=world), True, ""
    except Exception as e:  # the weights' location cannot be resolved on this machine
        model = dict(config.get("model") or {}) | {"source": f"unresolved:{config['model'].get('source')}"}
        ident = run_identity({**config, "model": model}, world_size=world)
        return ident, True, f"weights not fingerprinted ({type(e).__name__}: {e})"


# ------------------------------------------------------------------------------------------- flags
def identity_changes(record: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``identity_changes`` of the record and of each attempt (``[key, old, new]``), once each."""
    seen: dict[str, tuple[str, Any, Any]] = {}
    attempts = record.get("attempts") if isinstance(record.get("attempts"), list) else []
    for block in (record, *[a for a in attempts if isinstance(a, dict)]):
        changes = block.get("identity_changes")
        for c in changes if isinstance(changes, list) else []:
            if isinstance(c, (list, tuple)) and len(c) == 3:
                seen.setdefault(json.dumps(c, sort_keys=True, default=str), (str(c[0]), c[1], c[2]))
    return list(seen.values())


def data_quality_losses(record: dict[str, Any]) -> list[str]:
    """``["validation 3 of 411 rows", ...]``: the splits that lost malformed rows (``data_quality``)."""
    out = []
    for split, q in sorted(_dict(record.get("data_quality")).items()):
        skipped = q.get("skipped") if isinstance(q, dict) else None
        if isinstance(skipped, int) and not isinstance(skipped, bool) and skipped > 0:
            rows = q.get("rows")
            out.append(f"{split} {skipped}{f' of {rows + skipped}' if isinstance(rows, int) else ''} rows")
    return out


def judge_frame(records: pd.Series) -> pd.DataFrame:
    """``status`` and ``flagged`` (a tuple of sentences) per record: the status the report uses and why it
    differs from the record's. Applied to every record, old and new."""
    status, flagged = [], []
    for rec in records:
        verdict, changes, lost = skip_rule_verdict(rec), identity_changes(rec), data_quality_losses(rec)
        s = "diverged" if verdict else str(rec.get("status"))
        status.append(EXCLUDED if changes and s in FINAL_STATUSES else s)
        keys = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes)
        resumed = f"resumed under a changed config (reuse_run_dir=true: {keys}): its results mix two configs"
        flags = ((verdict, verdict), (resumed, changes), ("malformed rows skipped: " + ", ".join(lost), lost))
        flagged.append(tuple(text for text, on in flags if on))
    return pd.DataFrame({"status": status, "flagged": flagged}, index=records.index, dtype=object)


def judge(record: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """``(status, flags)`` of one record (:func:`judge_frame`)."""
    row = judge_frame(pd.Series([record])).iloc[0]
    return row.status, row.flagged


# ------------------------------------------------------------------------------------------- frame
def _parse(rel: str, record: dict[str, Any]) -> dict[str, Any]:
    config = _dict(record.get("config"))
    optim, task_cfg = config.get("optim") or {}, config.get("task") or {}
    task = str(record.get("task") or task_cfg.get("name") or "").lower().replace("-", "")
    optimizer = str(record.get("optimizer") or optim.get("name") or "").lower()
    seed = record.get("seed", config.get("seed"))
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    if not optimizer:
        raise ValueError("no optimizer name")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed {seed!r} is not an integer")
    if not isinstance(record.get("status"), str):
        raise ValueError(f"status {record.get('status')!r} is not a string")
    identity, derived, note = derive_identity(record)
    commits, dirty = record_commits(record)
    bs = task_cfg.get("batch_size")
    try:
        finished = dt.datetime.fromisoformat(str(record["finished_at"])).timestamp()
    except (KeyError, ValueError):
        finished = None
    return dict(
        rel=rel,
        experiment=str(record.get("experiment") or config.get("experiment_name") or ""),
        task=task,
        optimizer=optimizer,
        seed=seed,
        record_status=record["status"],
        beta1=to_float(optim.get("beta1")),
        rho=to_float(optim.get("rho")),
        batch_size=int(bs) if isinstance(bs, (int, float)) and not isinstance(bs, bool) else None,
        schedule=schedule_label(config),
        best=_metrics(record.get("best")),
        final=_metrics(record.get("final")),
        record=record,
        config=config,
        identity=identity,
        flat=flatten(identity),
        identity_hash=identity_hash(identity),
        group_hash=group_hash(identity),
        identity_derived=derived,
        identity_note=note,
        commits=tuple(commits),
        dirty=dirty,
        finished_ts=finished if record.get("finished_at") else None,
    )


#: the columns of :func:`_parse` (a frame of no runs has them too)
COLUMNS = (
    "rel experiment task optimizer seed record_status beta1 rho batch_size schedule best final record config "
    "identity flat identity_hash group_hash identity_derived identity_note commits dirty finished_ts"
).split()


def build_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The run frame: one row per parsed record, judged (``status``, ``flagged``), with the texts every
    listing shows (``status_text``, ``description``). ``None`` stays ``None`` in optional columns."""
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else COLUMNS, dtype=object)
    df = pd.concat([df, judge_frame(df.record)], axis=1)
    df["status_text"] = [
        s if not f else f"{s}: {f'record says {rs}; ' if s != rs else ''}{'; '.join(f)}"
        for s, rs, f in zip(df.status, df.record_status, df.flagged)
    ]
    df["description"] = [
        f"{method_name(r.optimizer)} {task_name(r.task)} beta1={g_or(r.beta1)}"
        f"{'' if r.rho is None else f', rho={r.rho:g}'} seed {r.seed}, identity {r.group_hash} ({r.rel})"
        for r in df.itertuples()
    ]
    return df


@dataclass
class Collection:
    """What :func:`load_runs` found: the run frame plus everything left out, with the reason."""

    root: Path
    frame: pd.DataFrame  #: every parsed run, any status, sorted by path
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (relative path, reason)
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)  #: :func:`dedupe` of all runs

    @property
    def unique(self) -> pd.DataFrame:
        """The runs without the dropped duplicates (what every table, figure and claim reads)."""
        return self.frame[~self.frame.rel.isin(self.duplicates.get("rel", []))]


def dedupe(df: pd.DataFrame, prefer: str = "") -> pd.DataFrame:
    """The dropped records of ``df``, each with the kept record of its identity and seed (``kept_rel``,
    ``kept_status_text``), sorted by path. One identity and seed is one run; the first of this order is
    kept: (1) completed, then diverged, then the rest; (2) a record of the experiment ``prefer``, then of a
    table's experiment; (3) the latest ``finished_at``; (4) the path. Runs of different identities are
    never duplicates; each consumer dedupes the runs it selected, so a copy never hides a run from it."""
    if df.empty:
        return df.assign(kept_rel=[], kept_status_text=[])
    rank = df.status.map(lambda s: 0 if s == "completed" else 1 if s in FINAL_STATUSES else 2)
    latest = -df.finished_ts.astype(float).fillna(-math.inf)
    key = [rank, df.experiment.ne(prefer), ~df.experiment.str.startswith("table"), latest, df.rel]
    ordered = df.loc[pd.DataFrame(dict(enumerate(key))).sort_values(list(range(5))).index]
    first = ordered.groupby("identity_hash", sort=False).cumcount() == 0
    kept = ordered[first].set_index("identity_hash")
    dropped = ordered[~first].sort_values("rel")
    return dropped.assign(
        kept_rel=dropped.identity_hash.map(kept.rel),
        kept_status_text=dropped.identity_hash.map(kept.status_text),
    )


def without(df: pd.DataFrame, dropped: pd.DataFrame) -> pd.DataFrame:
    return df[~df.rel.isin(dropped.rel)] if len(dropped) else df


def code_text(df: pd.DataFrame) -> str:
    """The runs' sorted 10-character commits (:data:`UNKNOWN_COMMIT` last for runs that name none),
    ``+ uncommitted changes``, and a ⚠ when they mix commits or any ran from uncommitted changes."""
    commits = sorted({c[:10] for cs in df.commits for c in cs})
    commits += [UNKNOWN_COMMIT] if any(not cs for cs in df.commits) else []
    dirty = bool(df.dirty.any())
    text = (", ".join(commits) or UNKNOWN_COMMIT) + (" + uncommitted changes" if dirty else "")
    return text + (" ⚠" if len(commits) > 1 or dirty else "")


def load_runs(runs_dir: str | os.PathLike, *, skip_unknown_schema: bool = False) -> Collection:
    """Read every ``record.json`` under ``runs_dir`` (sorted by path) into a :class:`Collection`."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise NoRecordsError(f"{root}: not a folder; expected a runs folder holding */{RECORD_NAME} files")
    paths = find_records(root)
    if not paths:
        raise NoRecordsError(
            f"{root}: no run records ({RECORD_NAME}) found; train runs first "
            "(python -m adasam_glue ..., make demo) or point the report at the folder that holds them"
        )
    rows, skipped = [], []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            rows.append(_parse(rel, read_record(path)))
        except RecordError as e:
            corrupt = isinstance(e.__cause__, (json.JSONDecodeError, UnicodeDecodeError))
            if corrupt or "must be a JSON object" in str(e):
                skipped.append((rel, "corrupt JSON"))
            elif skip_unknown_schema:
                skipped.append((rel, "unknown schema_version"))
            else:
                raise
        except OSError as e:
            skipped.append((rel, f"unreadable ({e.strerror or e})"))
        except ValueError as e:
            skipped.append((rel, f"incomplete record: {e}"))
    frame = build_frame(rows)
    return Collection(root, frame, skipped, dedupe(frame))
