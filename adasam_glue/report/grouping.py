"""Like with like (docs/algorithms.md §4.4), through the flattened run identity (``flat``): a cell pools
the seeds of one identity, rho is selected among runs identical but for ``config.optim.rho``, a paired
comparison pairs runs differing only in ``config.optim.*``. :func:`setting_of` is the one like-with-like
key and :func:`counterparts` the one matching of configurations (identities without the seed) on it: the
variants table and the sharpness claims both pair an optimizer with its base (:func:`baselines`) there.

Unlike runs go to separate rows, labelled by how they differ from a *reference* setting (the most common,
:func:`mode`): global keys against the table's, task keys (``config.task.*``, data files,
``weights.init_from``) against the task's, optimizer keys but rho against the (task, optimizer)'s.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from adasam_glue.identity import canonical_json, identity_diff

SEED = "config.seed"
RHO = "config.optim.rho"
OPTIM = "config.optim"
#: identity keys that differ between tasks by design (the task's recipe, its data files, its start point)
TASK_SCOPED = ("config.task", "data_files", "weights.init_from")

#: a difference from the reference setting: ``((dotted key, canonical JSON of the value), ...)``, sorted
Diff = tuple[tuple[str, str], ...]


def under(key: str, *prefixes: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def like_part(flat: Mapping[str, Any], allowed: tuple[str, ...] = (OPTIM,)) -> dict[str, Any]:
    """What a like-with-like comparison holds equal: the identity without the seed and ``allowed`` keys."""
    return {k: v for k, v in flat.items() if k != SEED and not under(k, *allowed)}


def global_part(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The keys that must be equal across a whole row: not seed, not optimizer, not per task."""
    return like_part(flat, (OPTIM, *TASK_SCOPED))


def setting_hash(part: Mapping[str, Any]) -> str:
    """Short stable hash of a projection (names a setting in file names and listings)."""
    return hashlib.sha256(canonical_json(dict(part)).encode()).hexdigest()[:10]


def setting_of(df: pd.DataFrame, allowed: tuple[str, ...] = (OPTIM,)) -> pd.Series:
    """Per run, the like-with-like key: the hash of :func:`like_part`; runs with one key differ in the seed
    and ``allowed`` keys alone (by default: in optimizer keys alone)."""
    return df.flat.map(lambda f: setting_hash(like_part(f, allowed)))


def baseline(r: Any) -> str | None:
    """The optimizer run ``r``'s is compared with: the registry's ``baseline_of`` its optimizer on its
    ``optim.base`` (``None``: a one-pass optimizer, or a base without a record)."""
    from adasam_glue.optim.registry import baseline_of  # imported on first use: torch loads only then

    return baseline_of(r.optimizer, r.flat.get(f"{OPTIM}.base"))


def baselines(df: pd.DataFrame) -> pd.Series:
    """Per run, :func:`baseline`."""
    return pd.Series([baseline(r) for r in df.itertuples()], index=df.index, dtype=object)


def counterparts(
    df: pd.DataFrame,
    column: str,
    want: pd.Series,
    allowed: tuple[str, ...] = (OPTIM,),
    same: tuple[str, ...] = ("task",),
) -> dict[str, list[str]]:
    """Per configuration (group hash) whose runs ``want`` a counterpart (not ``None``), the configurations
    of ``df`` whose ``column`` is the wanted value, that agree on the columns ``same`` and whose runs
    differ from its own only in the seed and ``allowed`` keys (one :func:`setting_of`), in frame order."""
    keys = list(zip(setting_of(df, allowed), *(df[c] for c in same)))
    found: dict[tuple, dict[str, None]] = {}
    for value, key, h in zip(df[column], keys, df.group_hash):
        found.setdefault((value, *key), {})[h] = None
    return {
        h: list(found.get((w, *key), ())) for w, key, h in zip(want, keys, df.group_hash) if w is not None
    }


def differs_outside(a: Mapping[str, Any], b: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    """Dotted keys where the flat identities ``a`` and ``b`` differ outside the ``allowed`` prefixes."""
    return [k for k, _, _ in identity_diff(dict(a), dict(b)) if not under(k, *allowed)]


def mode(parts: pd.Series, completed: pd.Series) -> dict[str, Any]:
    """The most common projection: most completed runs, then most runs, then smallest canonical JSON."""
    if parts.empty:
        return {}
    key = parts.map(lambda p: canonical_json(dict(p)))
    score = (
        pd.DataFrame({"key": key, "done": completed.astype(bool)}).groupby("key").done.agg(["sum", "size"])
    )
    best = min(score.index, key=lambda k: (-score.loc[k, "sum"], -score.loc[k, "size"], k))
    return dict(parts[key == best].iloc[-1])


def diff_from(ref: Mapping[str, Any], part: Mapping[str, Any]) -> Diff:
    """The keys where ``part`` differs from ``ref``, with ``part``'s values (absent: ``null``)."""
    return tuple((k, canonical_json(new)) for k, _, new in identity_diff(dict(ref), dict(part)))


def assign_rows(df: pd.DataFrame, methods: tuple[str, ...]) -> pd.Series:
    """Per run, ``(optimizer, setting diff, optim diff)``: the table row it belongs to (module docstring)."""
    done = df.status.eq("completed")
    gparts = df.flat.map(global_part)
    tparts = df.flat.map(lambda f: {k: f[k] for k in f if under(k, *TASK_SCOPED)})
    oparts = df.flat.map(
        lambda f: {k: f[k] for k in f if under(k, OPTIM) and k != RHO}
    )  # rho: a cell's choice
    g_ref = mode(gparts, done)
    out = pd.Series(index=df.index, dtype=object)
    for _, rs in sorted(df.groupby("task").groups.items()):
        in_ref = [i for i in rs if gparts[i] == g_ref] or list(rs)
        t_ref = mode(tparts[in_ref], done[in_ref])
        for m in methods:
            rm = [i for i in rs if df.optimizer[i] == m]
            pool = [i for i in rm if gparts[i] == g_ref] or rm
            pool = [i for i in pool if tparts[i] == t_ref] or pool
            o_ref = mode(oparts[pool], done[pool])
            for i in rm:
                setting = tuple(sorted(diff_from(g_ref, gparts[i]) + diff_from(t_ref, tparts[i])))
                out[i] = (m, setting, diff_from(o_ref, oparts[i]))
    return out


# ------------------------------------------------------------------------------------------- labels
def short_key(key: str) -> str:
    """``config.task.lr`` -> ``task.lr`` (the config prefix adds nothing to a reader)."""
    return key.removeprefix("config.")


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


def label_suffix(diff: Diff, limit: int = 4) -> str:
    """A compact suffix naming how a row differs: ``model.name=tiny, data.source=synthetic, task.lr=1000``.

    A differing model name stands for the rest of the model and its weights, a differing data source for
    the rest of the data keys and files; fingerprints show as a short hash. The notes list every key.
    """
    vals = {k: json.loads(v) for k, v in diff}
    hidden: set[str] = set()
    for name, groups in (("config.model.name", ("config.model", "weights.model")), ("config.data.source", ("config.data", "data_files"))):  # fmt: skip
        if name in vals:
            hidden |= {k for k in vals if under(k, *groups) and k != name}
    parts: list[str] = []
    for group in ("weights", "data_files"):
        members = [k for k in vals if under(k, group) and k not in hidden]
        if members:
            parts.append(f"{group.replace('_', ' ')}={setting_hash({k: vals[k] for k in members})[:6]}")
            hidden |= set(members)
    parts = [f"{short_key(k)}={short_value(v)}" for k, v in vals.items() if k not in hidden] + parts
    return ", ".join(parts[:limit] + ([f"+{len(parts) - limit} more"] if len(parts) > limit else []))


def format_diff(diff: Diff) -> str:
    """Every differing key with its value, for the notes: ``task.lr = 1000; model.name = 'tiny'``."""
    return "; ".join(f"{short_key(k)} = {json.loads(v)!r}" for k, v in diff)
