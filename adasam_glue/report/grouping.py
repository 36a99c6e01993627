"""Which runs the report may pool, select among and pair: the like-with-like rules (docs/algorithms.md §4.4).

Everything goes through the run identity (:mod:`adasam_glue.identity`, flattened to dotted keys such as
``config.task.lr`` or ``weights.model.local.model.safetensors``); there is no second definition here.

- **A cell pools seeds of one identity**: its runs are equal in every identity key but ``config.seed``.
- **Rho is selected among runs identical but for** ``config.optim.rho``: the candidates of a cell
  (one per rho) form a *variant*, everything but seed and rho equal.
- **A paired comparison pairs runs whose identities differ only in the optimizer keys**
  (``config.optim.*``, the optimizer's name included) and not in the seed.

Unlike runs are split into separate rows, not refused: a table over a mixed folder (a MiniLM run next
to a tiny-model one, a run at lr 1e-5 next to one at 1e3) still shows every result, each in a row
whose label names how it differs, and nothing is averaged, selected or paired across rows that differ
outside the optimizer keys. Refusing would hide all results behind one stray record.

Row labels are differences from a *reference* setting, chosen as the most common one (most completed
runs, then most runs, then the smallest canonical JSON: deterministic):

- *global* keys (model, weights, data source, trainer, precision, processes, ...) against the
  reference over the whole table, so one row never mixes models or data sources across its columns;
- *task* keys (``config.task.*``, the task's data files, ``weights.init_from``), which differ between
  tasks by design (each task has its recipe lr, batch, updates), against the reference of that task;
- optimizer keys (``config.optim.*`` but rho) against the reference of that task and optimizer.

The rows of the reference setting carry no suffix: on a clean sweep (one setting) the table looks as
it always did.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adasam_glue.identity import canonical_json, identity_diff

__all__ = [
    "OPTIM",
    "RHO",
    "SEED",
    "TASK_SCOPED",
    "Diff",
    "differs_outside",
    "format_diff",
    "global_part",
    "label_suffix",
    "mode",
    "non_optim_part",
    "optim_part",
    "setting_hash",
    "short_key",
    "short_value",
    "task_part",
    "variant_part",
]

SEED = "config.seed"
RHO = "config.optim.rho"
OPTIM = "config.optim"
#: identity keys that differ between tasks by design (the task's recipe, its data files, its start point)
TASK_SCOPED = ("config.task", "data_files", "weights.init_from")

#: a difference from the reference setting: ``((dotted key, canonical JSON of the value), ...)``, sorted
Diff = tuple[tuple[str, str], ...]


def under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _is_task(key: str) -> bool:
    return any(under(key, p) for p in TASK_SCOPED)


def global_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that must be equal across a whole row: not seed, not optimizer, not per task."""
    return {k: v for k, v in flat.items() if k != SEED and not under(k, OPTIM) and not _is_task(k)}


def task_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if _is_task(k)}


def optim_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Optimizer keys without rho (rho is what a cell's candidates differ in)."""
    return {k: v for k, v in flat.items() if under(k, OPTIM) and k != RHO}


def non_optim_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a paired comparison must hold equal: the identity without seed and optimizer keys."""
    return {k: v for k, v in flat.items() if k != SEED and not under(k, OPTIM)}


def variant_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The identity without seed and rho: the runs of one cell, over all its rho candidates."""
    return {k: v for k, v in flat.items() if k not in (SEED, RHO)}


def setting_hash(part: Mapping[str, Any]) -> str:
    """Short stable hash of a projection (names a setting in file names and listings)."""
    return hashlib.sha256(canonical_json(dict(part)).encode()).hexdigest()[:10]


def differs_outside(a: Mapping[str, Any], b: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    """Dotted keys where the flat identities ``a`` and ``b`` differ outside the ``allowed`` prefixes."""
    allowed = tuple(allowed)
    return [k for k, _, _ in identity_diff(dict(a), dict(b)) if not any(under(k, p) for p in allowed)]


def mode(parts: Sequence[Mapping[str, Any]], completed: Sequence[bool]) -> dict[str, Any]:
    """The most common projection: most completed runs, then most runs, then smallest canonical JSON."""
    if not parts:
        return {}
    score: dict[str, list[int]] = {}
    keep: dict[str, Mapping[str, Any]] = {}
    for p, done in zip(parts, completed):
        key = canonical_json(dict(p))
        s = score.setdefault(key, [0, 0])
        s[0] += bool(done)
        s[1] += 1
        keep[key] = p
    best = min(score, key=lambda k: (-score[k][0], -score[k][1], k))
    return dict(keep[best])


def diff_from(ref: Mapping[str, Any], part: Mapping[str, Any]) -> Diff:
    """The keys where ``part`` differs from ``ref``, with ``part``'s values (absent: ``null``)."""
    return tuple((k, canonical_json(new)) for k, _, new in identity_diff(dict(ref), dict(part)))


# ------------------------------------------------------------------------------------------- labels
def short_key(key: str) -> str:
    """``config.task.lr`` -> ``task.lr`` (the config prefix adds nothing to a reader)."""
    return key[len("config.") :] if key.startswith("config.") else key


def short_value(value: Any, width: int = 28) -> str:
    """A value as a label shows it: numbers by ``:g``, lists joined by arrows, long strings shortened."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "→".join(short_value(v, width) for v in value) or "[]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {short_value(v, width)}" for k, v in value.items()) + "}"
    text = str(value)
    if "/" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1] or text
    return text if len(text) <= width else text[: width - 1] + "…"


def _values(diff: Diff) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in diff}


def label_suffix(diff: Diff, limit: int = 4) -> str:
    """A compact suffix naming how a row differs: ``model.name=tiny, data.source=synthetic, task.lr=1000``.

    A differing model name stands for the rest of the model and its weights, a differing data source
    for the rest of the data keys and files; fingerprints are shown as a short hash of the differing
    entries. The full list of keys is in the table's notes (:func:`format_diff`).
    """
    if not diff:
        return ""
    vals = _values(diff)
    keys = list(vals)
    hidden: set[str] = set()
    if "config.model.name" in vals:
        hidden |= {
            k
            for k in keys
            if (under(k, "config.model") or under(k, "weights.model")) and k != "config.model.name"
        }
    if "config.data.source" in vals:
        hidden |= {
            k
            for k in keys
            if (under(k, "config.data") or under(k, "data_files")) and k != "config.data.source"
        }
    parts: list[str] = []
    for group in ("weights", "data_files"):
        members = [k for k in keys if under(k, group) and k not in hidden]
        if members:
            tag = setting_hash({k: vals[k] for k in members})[:6]
            parts.append(f"{group.replace('_', ' ')}={tag}")
            hidden |= set(members)
    parts = [f"{short_key(k)}={short_value(vals[k])}" for k in keys if k not in hidden] + parts
    if len(parts) > limit:
        parts = parts[:limit] + [f"+{len(parts) - limit} more"]
    return ", ".join(parts)


def format_diff(diff: Diff) -> str:
    """Every differing key with its value, for the notes: ``task.lr = 1000; model.name = 'tiny'``."""
    return "; ".join(f"{short_key(k)} = {json.loads(v)!r}" for k, v in diff)
