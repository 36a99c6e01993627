"""Run identity: the part of a resolved config (plus data and weights fingerprints) that can change a result.

Two runs are *the same run* exactly when their identities are equal. The harness skips a completed run
and resumes a preempted one only when the stored identity equals the requested one; the report pools
seeds only of runs whose identities differ in nothing but ``seed``. One definition, used by both.

What is left out is a short, explicit list (:data:`NON_IDENTITY_KEYS`): keys that change where things
are written, how much is printed, or how fast it runs, but never a number in the record's results.
Everything else in the resolved config is in, so a key added to the schema later enters the identity
without anyone remembering to list it. Values that are ``None`` are dropped before hashing, so adding a
new optional key whose default is ``null`` (feature off, the old behaviour) keeps existing identities.

Keys that only matter under some setting are dropped when that setting is off (``data.synthetic_*``
unless ``data.source=synthetic``, ``data.hub_name`` unless ``hub``, ``sharpness.*`` unless enabled).
Data and model *paths* are replaced by fingerprints of what they hold (``fingerprint_path``), so a
moved copy of the same files is the same run and an edited file under the same path is not.

Three keys are left out although a launch may ask for something different with them; none of them
changes a number the report reads, and ``adasam_glue.run`` makes each difference visible instead:

- ``trainer.predict_test`` and ``trainer.save_model`` decide which files a run writes besides its
  record (test predictions, model weights), not what it computes. A completed run asked for
  predictions writes them from its saved model, or says that it saved none (``adasam_glue.predict``).
- ``trainer.cpu`` (the device): CPU and GPU kernels differ only by float rounding, as two GPU models
  do, and the hardware is never part of the identity (it is recorded under the record's
  ``hardware``); taking it in would also change every identity already written. A launch on another
  device than the record's is told so in the skip message (a warning, not a rerun).
- ``rerun_on_new_commit``: the policy for records written by other code (``adasam_glue.run``), not a
  property of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: content fingerprints of local files (its own module: the data loader uses it too, below this one)
from adasam_glue.fingerprint import fingerprint_path

#: Bump when the definition below changes so that old and new identities never compare equal by accident.
IDENTITY_VERSION = 1

#: Dotted config keys that cannot change a result (output places, logging, speed, test seams).
NON_IDENTITY_KEYS: tuple[str, ...] = (
    "results_dir",
    "run_dir",
    "dry_run",
    "experiment_name",  # a folder label: the same config in two experiments is the same run
    "reuse_run_dir",
    "rerun_on_new_commit",  # what to do with records of another commit (adasam_glue.run), not the run
    "logging",
    "trainer.progress_bar",
    "trainer.log_every",
    "trainer.eval_batch_size",
    "trainer.checkpoint_every",
    "trainer.save_model",
    "trainer.keep_checkpoint",
    "trainer.stop_after_updates",
    "trainer.cpu",  # the device is recorded under ``hardware``; why it is out: the module docstring
    "trainer.predict_test",
    # the fp16 skip rule: when a run that no longer trains (every update skipped) is stopped and called
    # diverged; no number of a run that trains depends on them (added after runs existed: identities kept)
    "trainer.fp16_max_skip_streak",
    "trainer.fp16_max_skipped_fraction",
    "data.num_workers",
    "data.cache_dir",
    "data.data_dir",  # replaced by the fingerprint of the files it holds
    "model.cache_dir",
    "optim.name",  # replaced by the registry record's identity (below)
)

#: Keys kept only when ``condition(cfg_dict)`` holds.
_CONDITIONAL: tuple[tuple[str, Any], ...] = (
    ("data.synthetic_train_size", lambda c: c["data"].get("source") == "synthetic"),
    ("data.synthetic_eval_size", lambda c: c["data"].get("source") == "synthetic"),
    ("data.synthetic_seed", lambda c: c["data"].get("source") == "synthetic"),
    ("data.hub_name", lambda c: c["data"].get("source") == "hub"),
    ("sharpness", lambda c: bool(c.get("sharpness", {}).get("enabled"))),
)


#: Keys naming starting weights: a Hub id stays in the config part (with its revision); a local folder
#: leaves it, because ``weights`` holds the fingerprint of what it contains (the same files moved elsewhere
#: are the same run). No record made before this rule had a local path here, so no identity moved.
_LOCAL_WEIGHT_PATHS: tuple[str, ...] = ("model.path", "task.init_from")


def _get_dotted(d: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(part)
    return d


def _is_local_source(ref: Any) -> bool:
    return isinstance(ref, str) and bool(ref) and Path(ref).exists()


def _pop(d: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.get(p)
        if not isinstance(d, dict):
            return
    d.pop(parts[-1], None)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_drop_none(v) for v in obj]
    return obj


def _source_fingerprint(ref: str | None, revision: str | None = None) -> dict[str, Any] | None:
    """A Hub id stays an id (plus revision); a local path becomes the fingerprint of its files."""
    if not ref:
        return None
    p = Path(ref)
    if (p / "model" / "config.json").exists():  # one of this harness's run dirs: its saved model
        p = p / "model"
    if p.exists():
        return {"local": fingerprint_path(p, ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model"))}
    return {"hub": ref, "revision": revision}


def data_fingerprint(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """Fingerprint of the data files a ``tsv``/``disk`` source reads (the task's folder only)."""
    data = cfg["data"]
    if data.get("source") not in ("tsv", "disk") or not data.get("data_dir"):
        return None
    root = Path(data["data_dir"])
    if not root.exists():
        return {"missing": str(root)}  # the loader raises the real error; identity must not
    if data["source"] == "tsv":
        from adasam_glue.data.sources import find_task_dir
        from adasam_glue.tasks import get_task

        try:
            root = find_task_dir(root, get_task(cfg["task"]["name"]))
        except Exception:  # the loader reports the missing folder with its own message
            return {"missing": str(root)}
        return fingerprint_path(root, ("*.tsv",))
    return fingerprint_path(root)


def model_fingerprint(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """Fingerprint of the weights the run starts from: ``model.path`` and ``task.init_from``."""
    model = cfg["model"]
    path = model.get("path")
    if model.get("source") == "minilm_package" and not path:
        from adasam_glue.modeling import resolve_model_path

        path = resolve_model_path(OmegaConf.create(dict(model)))
    out = {
        "model": _source_fingerprint(path, model.get("revision")),
        "init_from": _source_fingerprint(cfg["task"].get("init_from"), model.get("revision")),
    }
    return _drop_none(out) or None


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def run_identity(cfg: DictConfig | Mapping[str, Any], world_size: int | None = None) -> dict[str, Any]:
    """The identity of the run ``cfg`` describes (``seed`` included); JSON-serialisable, ``None``-free.

    ``world_size`` (data-parallel processes) is part of it: with per-device ascent a SAM update depends
    on how the batch is split across devices.
    """
    c = (
        OmegaConf.to_container(cfg, resolve=True)
        if isinstance(cfg, DictConfig)
        else json.loads(json.dumps(cfg))
    )
    add_task_facts(c)
    optim_identity = _optim_identity(c.get("optim", {}))
    data_fp, model_fp = data_fingerprint(c), model_fingerprint(c)
    for key, keep in _CONDITIONAL:
        if not keep(c):
            _pop(c, key)
    for key in NON_IDENTITY_KEYS:
        _pop(c, key)
    for key in _LOCAL_WEIGHT_PATHS:  # a local folder is its fingerprint (``weights``), not where it lies
        if _is_local_source(_get_dotted(c, key)):
            _pop(c, key)
    c["optim"] = {**optim_identity, **c.get("optim", {})}
    identity = {
        "identity_version": IDENTITY_VERSION,
        "config": c,
        "data_files": data_fp,
        "weights": model_fp,
        "world_size": world_size if world_size is not None else _world_size(),
    }
    return _drop_none(identity)


def add_task_facts(c: dict[str, Any]) -> None:
    """The task registry's label count (the size of the classifier head) under ``task.num_labels``: a
    fact of the task, not a config value, but part of what produced the run (identities have carried
    it since version 1, when it was also written in ``conf/task/*.yaml``)."""
    task = c.get("task")
    if not isinstance(task, dict) or "num_labels" in task:
        return
    from adasam_glue.tasks import TASKS

    info = TASKS.get(str(task.get("name")))
    if info is not None:
        task["num_labels"] = info.num_labels


def _optim_identity(optim: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's name as the registry spells its identity (one place: the registry record)."""
    name = optim.get("name")
    try:
        from adasam_glue.optim import get_optim_info

        info = get_optim_info(name)
    except Exception:
        return {"name": name}
    keys = getattr(info, "identity", None)
    return dict(keys(optim)) if callable(keys) else {"name": name}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def identity_hash(identity: Mapping[str, Any], exclude: Iterable[str] = ()) -> str:
    """Short stable hash of ``identity`` with the dotted ``exclude`` keys removed (e.g. ``config.seed``)."""
    ident = json.loads(canonical_json(identity))
    for key in exclude:
        _pop(ident, key)
    return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:10]


def group_hash(identity: Mapping[str, Any]) -> str:
    """Hash of everything but the seed: the seeds of one grid point share it (run dir, report cell)."""
    return identity_hash(identity, exclude=("config.seed",))


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(obj, Mapping):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out |= flatten(v, key)
        else:
            out[key] = v
    return out


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, old value, new value)]`` where the identities differ (missing -> ``None``)."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe_diff(diff: list[tuple[str, Any, Any]], limit: int = 12) -> str:
    """One line per differing key, readable in an error message."""
    lines = [f"  {k}: {old!r} -> {new!r}" for k, old, new in diff[:limit]]
    if len(diff) > limit:
        lines.append(f"  ... and {len(diff) - limit} more")
    return "\n".join(lines)
