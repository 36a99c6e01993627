"""Load run records for the report: validate, parse, and sort them into usable / skipped runs.

Rules:

- a record of another ``schema_version`` is refused: :func:`load_runs` raises :class:`RecordError`
  naming the file (``skip_unknown_schema=True`` lists it as skipped instead);
- corrupt JSON (or JSON that is not an object, or lacks the keys the report needs) is reported and
  skipped, never fatal;
- a folder without any ``record.json`` raises :class:`NoRecordsError` (the CLI exits with code 2).

Only ``completed`` runs enter the tables; ``diverged`` runs are counted and shown; ``running``,
``failed`` and ``preempted`` runs are listed as incomplete.

The report does not take a record's ``status`` on trust (``Run.status`` is the report's, ``Run.flags``
says why it differs from the record's, :func:`judge`):

- a ``completed`` record that breaks the divergence rule (:func:`adasam_glue.records.skip_rule_verdict`:
  fp16 updates nearly all skipped, or a non-finite last train loss; records written before the trainer
  applied the rule) is ``diverged``: counted and listed, never in a mean, a rho or an lr selection;
- a run resumed under a changed config (``reuse_run_dir=true``: ``identity_changes`` in the record or
  one of its attempts) is ``excluded``: its results mix two configs and belong to neither identity,
  so it is listed with the keys that changed and enters no table;
- a run that lost rows to malformed TSV lines (``data_quality``: rows skipped in a train or dev split)
  keeps its status and is flagged wherever it is listed: every run of one identity read the same
  files (the identity fingerprints them) and skipped the same rows, so its cell is like with like,
  but its dev metric is over fewer rows than the task's dev set.

Every run carries its *identity* (:func:`adasam_glue.identity.run_identity`: everything in the resolved
config that can change a result, plus data and weights fingerprints and the number of processes). A
schema-2 record stores it; for a schema-1 record it is derived here from the stored config (marked
``identity_derived``), so old and new records are grouped by one definition. The report pools, selects
and pairs runs only through identities (:mod:`adasam_glue.report.grouping`, docs/algorithms.md §4.4).

The identity says what ran, not which code ran it: every run carries the git commits of its attempts
(``Run.commits``, ``Run.dirty``), and the tables name the commit(s) behind each cell and flag a cell
whose runs mix commits or ran from uncommitted changes (:func:`code_versions`).

Two records of one identity *and* seed (a copied folder, a run filed under two experiment names) are
one run: :func:`dedupe` keeps one by an explicit rule and lists the others, with their statuses.

Metric keys are read under the Hugging Face names (``matthews_correlation``, ``spearmanr``) and the
names records used before them (``mcc``, ``spearman``), so old records still render.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from adasam_glue.tasks import TASKS

__all__ = [
    "EXCLUDED",
    "METRIC_ALIASES",
    "Collection",
    "NoRecordsError",
    "Run",
    "dedupe",
    "judge",
    "load_runs",
    "to_float",
]

#: the report's status of a final record it will not use (a run resumed under a changed config)
EXCLUDED = "excluded"

#: metric key a record may use -> the key the report uses (Hugging Face ``evaluate`` names)
METRIC_ALIASES: dict[str, str] = {"mcc": "matthews_correlation", "spearman": "spearmanr"}


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


def normalize_metrics(metrics: Any) -> dict[str, Any]:
    """``metrics`` with old key names mapped to the current ones (a current key present wins)."""
    if not isinstance(metrics, dict):
        return {}
    out = {k: v for k, v in metrics.items() if k not in METRIC_ALIASES}
    for old, new in METRIC_ALIASES.items():
        if old in metrics and new not in out:
            out[new] = metrics[old]
    return out


def _metrics(block: Any) -> dict[str, float]:
    if not isinstance(block, dict):
        return {}
    metrics = normalize_metrics(block.get("metrics"))
    return {k: v for k, v in ((k, finite(v)) for k, v in metrics.items()) if v is not None}


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
    identity: dict[str, Any] = field(default_factory=dict, compare=False)  #: see the module docstring
    flat: dict[str, Any] = field(default_factory=dict, compare=False)  #: ``flatten(identity)``
    identity_hash: str = ""  #: hash of the identity (seed included): one run
    group_hash: str = ""  #: hash of the identity without the seed: the seeds of one grid point
    identity_derived: bool = False  #: True: derived from a schema-1 record's config, not stored
    identity_note: str = ""  #: why a derived identity is incomplete (weights not fingerprinted)
    record_status: str = ""  #: the record's own ``status`` (``status`` is the report's, see :func:`judge`)
    flags: tuple[str, ...] = field(default=(), compare=False)  #: what the report flags, in words
    #: the git commits that trained the run (one per attempt, :func:`adasam_glue.records.record_commits`)
    commits: tuple[str, ...] = field(default=(), compare=False)
    dirty: bool = field(default=False, compare=False)  #: some attempt ran from uncommitted changes

    @property
    def rejudged(self) -> bool:
        """The report's status differs from the record's (diverged by the rule, or excluded)."""
        return bool(self.record_status) and self.status != self.record_status

    @property
    def status_text(self) -> str:
        """The status as listings show it: the report's, with the record's and the flags when they differ."""
        if not self.flags:
            return self.status
        said = f"record says {self.record_status}; " if self.rejudged else ""
        return f"{self.status}: {said}{'; '.join(self.flags)}"

    @property
    def finished_ts(self) -> float | None:
        """``finished_at`` as a POSIX time (None when absent or unparsable): the duplicate rule's tiebreak."""
        import datetime as _dt

        value = self.record.get("finished_at")
        try:
            return _dt.datetime.fromisoformat(str(value)).timestamp() if value else None
        except ValueError:
            return None

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
            f"seed {self.seed}, identity {self.group_hash} ({self.rel})"
        )


def derive_identity(record: dict[str, Any]) -> tuple[dict[str, Any], bool, str]:
    """``(identity, derived, note)`` of a record: the stored one, else derived from its config.

    A derived identity fingerprints the data and weights the config points at *now* (a schema-1 record
    did not store them); ``world_size`` comes from the record's ``hardware.num_processes``. When the
    weights cannot be located (the MiniLM package missing, say), the identity is derived without them
    and ``note`` says so: such a run never pools with one whose weights were fingerprinted.
    """
    stored = record.get("identity")
    if isinstance(stored, dict) and stored:
        return stored, False, ""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    config = {"task": {}, "model": {}, "data": {}, **json.loads(canonical_json(config))}
    hardware = record.get("hardware") if isinstance(record.get("hardware"), dict) else {}
    world = hardware.get("num_processes")
    world = int(world) if isinstance(world, int) and not isinstance(world, bool) and world > 0 else 1
    try:
        return run_identity(config, world_size=world), True, ""
    except Exception as e:  # the weights' location cannot be resolved on this machine
        model = dict(config.get("model") or {})
        model["source"] = f"unresolved:{model.get('source')}"
        ident = run_identity({**config, "model": model}, world_size=world)
        return ident, True, f"weights not fingerprinted ({type(e).__name__}: {e})"


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


@dataclass
class Collection:
    """What :func:`load_runs` found: usable runs plus everything left out, with the reason."""

    root: Path
    runs: list[Run] = field(default_factory=list)  #: every parsed run, any status, sorted by path
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (relative path, reason)
    duplicates: list[tuple[Run, Run]] = field(default_factory=list)  #: (dropped, kept), see :func:`dedupe`

    @property
    def unique(self) -> list[Run]:
        """The runs without the dropped duplicates (what every table, figure and claim reads)."""
        dropped = {d.rel for d, _ in self.duplicates}
        return [r for r in self.runs if r.rel not in dropped]

    @property
    def incomplete(self) -> list[Run]:
        return [r for r in self.unique if r.status not in ("completed", "diverged")]

    @property
    def flagged(self) -> list[Run]:
        """Every run the report flags (:func:`judge`), duplicates included: each is one record to look at."""
        return [r for r in self.runs if r.flags]


def dedupe(runs: list[Run], prefer: str = "") -> list[tuple[Run, Run]]:
    """``(dropped, kept)`` for every record whose identity and seed another record already has.

    One identity and seed is one run, however many folders hold a record of it (the speedup study's
    batch-16 MRPC run *is* Table 1's AdaSAM rho 0.01 run when their configs agree). The rule, in
    order (the first that tells two records apart decides):

    1. the report's status: ``completed`` over ``diverged`` (the rule's verdicts included) over anything
       unfinished or excluded: a valid completed record wins;
    2. a record of the experiment ``prefer`` (a table's own), then of a table's experiment (``table1`` ...);
    3. the latest ``finished_at`` (a record without one last): the newer attempt at the same run;
    4. the path (alphabetical), so that the choice never depends on the order files are found in.

    Runs of different identities are never duplicates: a diverged run at one lr is counted even when a
    completed run at another lr has the same task, optimizer, rho and seed. Each consumer dedupes the
    runs it selected (a table its eligible runs, the speedup figure its speedup runs), so a copy filed
    under another experiment never hides a run from it; every dropped record is listed with the kept one.
    """
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.identity_hash, []).append(r)
    out = []
    for rs in groups.values():
        rs = sorted(
            rs,
            key=lambda r: (
                0 if r.status == "completed" else 1 if r.status in FINAL_STATUSES else 2,
                r.experiment != prefer,
                not r.experiment.startswith("table"),
                -(r.finished_ts if r.finished_ts is not None else -math.inf),
                r.rel,
            ),
        )
        out += [(d, rs[0]) for d in rs[1:]]
    return sorted(out, key=lambda p: p[0].rel)


def judge(record: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """``(status, flags)``: the status the report uses for ``record`` and what it flags (module docstring).

    Applied to every record, old and new: a record written before a rule existed is judged by it too.
    """
    status = str(record.get("status"))
    flags: list[str] = []
    verdict = skip_rule_verdict(record)
    if verdict:
        status = "diverged"
        flags.append(verdict)
    changes = _identity_changes(record)
    if changes:
        if status in FINAL_STATUSES:
            status = EXCLUDED
        flags.append(
            "resumed under a changed config (reuse_run_dir=true: "
            + ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes)
            + "): its results mix two configs"
        )
    lost = _data_quality_losses(record)
    if lost:
        flags.append("malformed rows skipped: " + ", ".join(lost))
    return status, tuple(flags)


def _identity_changes(record: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``identity_changes`` of the record and of each attempt (``[key, old, new]`` lists), once each."""
    seen: dict[str, tuple[str, Any, Any]] = {}
    attempts = record.get("attempts") if isinstance(record.get("attempts"), list) else []
    for block in (record, *[a for a in attempts if isinstance(a, dict)]):
        changes = block.get("identity_changes")
        for c in changes if isinstance(changes, list) else []:
            if isinstance(c, (list, tuple)) and len(c) == 3:
                seen.setdefault(json.dumps(c, sort_keys=True, default=str), (str(c[0]), c[1], c[2]))
    return list(seen.values())


def _data_quality_losses(record: dict[str, Any]) -> list[str]:
    """``["validation 3 of 411 rows", ...]``: the splits that lost malformed rows (``data_quality``)."""
    quality = record.get("data_quality")
    out = []
    for split, q in sorted(quality.items()) if isinstance(quality, dict) else []:
        skipped = q.get("skipped") if isinstance(q, dict) else None
        if isinstance(skipped, int) and not isinstance(skipped, bool) and skipped > 0:
            rows = q.get("rows")
            total = f" of {rows + skipped}" if isinstance(rows, int) else ""
            out.append(f"{split} {skipped}{total} rows")
    return out


#: a run whose record names no commit (not run from a git checkout, or written before commits were kept)
UNKNOWN_COMMIT = "unknown"


def code_versions(runs: list[Run] | tuple[Run, ...]) -> tuple[list[str], bool]:
    """``(short commits, dirty)`` behind ``runs``: the sorted 10-character commits of all their attempts
    (:data:`UNKNOWN_COMMIT` last for runs that name none) and whether any ran from uncommitted changes."""
    short = {c[:10] for r in runs for c in r.commits}
    unknown = any(not r.commits for r in runs)
    return sorted(short) + ([UNKNOWN_COMMIT] if unknown else []), any(r.dirty for r in runs)


def code_text(runs: list[Run] | tuple[Run, ...]) -> str:
    """The code column of a cell: its commits, ``+ uncommitted changes`` and a ⚠ when mixed or dirty."""
    commits, dirty = code_versions(runs)
    text = ", ".join(commits) or UNKNOWN_COMMIT
    if dirty:
        text += " + uncommitted changes"
    return text + (" ⚠" if len(commits) > 1 or dirty else "")


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
    record_status = record.get("status")
    if not isinstance(record_status, str):
        raise ValueError(f"status {record_status!r} is not a string")
    status, flags = judge(record)
    bs = task_cfg.get("batch_size")
    identity, derived, note = derive_identity(record)
    commits, dirty = record_commits(record)
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
        identity=identity,
        flat=flatten(identity),
        identity_hash=identity_hash(identity),
        group_hash=group_hash(identity),
        identity_derived=derived,
        identity_note=note,
        record_status=record_status,
        flags=flags,
        commits=tuple(commits),
        dirty=dirty,
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
    out.duplicates = dedupe(out.runs)
    return out
