"""``load_glue``: one GLUE task as a ``datasets.DatasetDict`` with the Hub's (``nyu-mll/glue``) schema,
whatever the source: the Hub (or a user's HF cache / a local copy of the Hub repo), the original TSV
distribution, a ``save_to_disk``/parquet folder, or the synthetic generator.

Schema (identical for every source): splits ``train``, the task's ``eval_splits`` and the matching
``test*`` splits (a TSV folder without ``test.tsv`` simply has no test split); columns = the task's
``text_keys`` (strings), ``label`` (``ClassLabel`` with the Hub's names, ``-1`` on test; ``float32``
for STS-B) and ``idx`` (``int32``).

Data quality (``load_glue_with_quality``): per split, the rows kept and the malformed TSV rows skipped
(reasons, first line numbers). It is saved beside the cached Arrow copy (``data_quality.json``), so a
cached load reports the same counts as the first parse and every run can record them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from adasam_glue.data.glue_tsv import SPLIT_FILES, TsvFormatError, describe_skipped, parse_glue_tsv
from adasam_glue.fingerprint import fingerprint_path
from adasam_glue.tasks import TASK_ORDER, TaskInfo, get_task

logger = logging.getLogger(__name__)

SOURCES = ("hub", "tsv", "disk", "synthetic")
_TSV_CACHE_VERSION = "2"  # bump when the parser's output changes (invalidates cached TSV datasets)
QUALITY_FILE = "data_quality.json"  #: per-split skipped-row counts, saved beside the cached TSV dataset

_GET_DATA = (
    "Get the data with one of: data.source=hub (needs the Hugging Face Hub or a local HF cache of "
    "nyu-mll/glue); data.source=tsv data.data_dir=/path/to/glue_data (the original GLUE distribution, "
    "e.g. from the classic download_glue_data.py script); data.source=disk data.data_dir=/path (a "
    "DatasetDict.save_to_disk folder or <split>.parquet files); data.source=synthetic (offline demo data)."
)


class DataError(RuntimeError):
    """Data that cannot be loaded; the message says what was expected and how to get it."""


def _task(task: str) -> TaskInfo:
    try:
        return get_task(task)
    except ValueError as err:
        raise DataError(str(err)) from None


def hub_splits(info: TaskInfo) -> tuple[str, ...]:
    """The Hub's split names for a task: ``train``, the dev split(s), the test split(s)."""
    return ("train", *info.eval_splits, *(s.replace("validation", "test") for s in info.eval_splits))


def hub_features(task: str | TaskInfo) -> Features:
    """The Hub's feature types for a task (column order as on the Hub)."""
    info = task if isinstance(task, TaskInfo) else _task(task)
    cols: dict = {key: Value("string") for key in info.text_keys}
    cols["label"] = Value("float32") if info.is_regression else ClassLabel(names=list(info.label_names))
    cols["idx"] = Value("int32")
    return Features(cols)


def _default_cache_root(cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
    return root / "adasam_glue"


def _conform(dd: DatasetDict, info: TaskInfo, origin: str) -> DatasetDict:
    """Check columns/splits against the Hub schema and cast to the Hub's feature types."""
    features = hub_features(info)
    missing_splits = [s for s in ("train", *info.eval_splits) if s not in dd]
    if missing_splits:
        raise DataError(
            f"{origin}: GLUE task {info.name!r} lacks split(s) {missing_splits} (has {list(dd)}); "
            f"expected splits {list(hub_splits(info))}. {_GET_DATA}"
        )
    out = {}
    for split in hub_splits(info):
        if split not in dd:
            continue
        ds = dd[split]
        missing = [c for c in features if c not in ds.column_names]
        if missing:
            raise DataError(
                f"{origin}: split {split!r} of {info.name!r} lacks column(s) {missing} "
                f"(has {ds.column_names}); expected the Hub schema {list(features)}"
            )
        ds = ds.select_columns(list(features))
        if ds.features != features:
            ds = ds.cast(features)
        out[split] = ds
    return DatasetDict(out)


# ----------------------------------------------------------------------------------------------- hub
@contextlib.contextmanager
def _offline_mode() -> Iterator[None]:
    """Temporarily put ``datasets``/``huggingface_hub`` in offline mode (serves the local cache)."""
    import huggingface_hub.constants as hf_constants

    saved = datasets.config.HF_HUB_OFFLINE, hf_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hf_constants.HF_HUB_OFFLINE = saved


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub endpoint (avoids ``huggingface_hub``'s retry loop offline)."""
    import huggingface_hub.constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connect proves nothing: let huggingface_hub try
    url = urlparse(hf_constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(info: TaskInfo, hub_name: str, cache_dir) -> DatasetDict:
    local = Path(hub_name).expanduser()
    offline = not local.is_dir() and not hub_reachable()
    if offline:
        logger.info(
            "Hugging Face Hub unreachable or offline: looking for %s/%s in the local cache only",
            hub_name,
            info.name,
        )
    try:
        with _offline_mode() if offline else contextlib.nullcontext():
            dd = datasets.load_dataset(
                str(local) if local.is_dir() else hub_name,
                info.name,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        where = f"local folder {local}" if local.is_dir() else f"the Hub ({hub_name})"
        reason = (
            "the Hub is unreachable/offline and the dataset is not in the local cache"
            if offline
            else f"{type(err).__name__}: {err}"
        )
        raise DataError(
            f"cannot load GLUE task {info.name!r} from {where}: {reason}. Alternatives: "
            f"data.source=tsv data.data_dir=/path/to/glue_data (original GLUE TSVs), data.source=disk "
            f"data.data_dir=/path (save_to_disk or parquet), or data.source=synthetic (offline demo data)."
        ) from err
    return _conform(dd, info, f"{hub_name} ({info.name})")


# ----------------------------------------------------------------------------------------------- tsv
@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Saving the dataset" bars for our internal cache writes."""
    was = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def find_task_dir(root: str | os.PathLike, info: TaskInfo) -> Path:
    """``root`` is the ``glue_data`` folder (holding ``<Dir>/``) or the task folder itself."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"GLUE data folder {root} does not exist. Expected layout: {root}/{info.glue_dir}/train.tsv, "
            f"{_dev_names(info)} (or data_dir pointing at the {info.glue_dir} folder itself). {_GET_DATA}"
        )
    train = SPLIT_FILES["train"]
    if (root / train).is_file():
        return root
    for name in dict.fromkeys((info.glue_dir, info.glue_dir.lower(), info.name, info.name.upper())):
        if (root / name / train).is_file():
            return root / name
    raise DataError(
        f"no GLUE {info.glue_dir} data under {root}: expected {root}/{info.glue_dir}/{train} and "
        f"{_dev_names(info)} (the original GLUE distribution), or data_dir set to the task folder. {_GET_DATA}"
    )


def _dev_names(info: TaskInfo) -> str:
    return ", ".join(SPLIT_FILES[s] for s in info.eval_splits)


def _parse_tsv_files(info: TaskInfo, files: dict[str, Path]) -> tuple[DatasetDict, dict[str, dict]]:
    """Parse every split file; a file that cannot be used becomes one ``DataError`` naming it."""
    features = hub_features(info)
    splits, quality = {}, {}
    try:
        for split, path in files.items():
            columns, quality[split] = parse_glue_tsv(path, info, split)
            splits[split] = Dataset.from_dict(columns, features=features)
    except TsvFormatError as err:
        raise DataError(f"{err}. {_GET_DATA}") from None
    return DatasetDict(splits), quality


def _write_json(path: Path, value: Any) -> None:
    """Atomic write (unique temp name, then rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_quality(target: Path, splits: Iterable[str]) -> dict[str, dict] | None:
    """The saved counts of a cached TSV dataset, or None when absent, unreadable or incomplete."""
    try:
        quality = json.loads((target / QUALITY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(quality, dict) or any(not isinstance(quality.get(s), dict) for s in splits):
        return None
    return quality


def _load_tsv(info: TaskInfo, data_dir, cache_dir) -> tuple[DatasetDict, dict[str, dict]]:
    if data_dir is None:
        raise DataError(f"data.source=tsv needs data.data_dir (the glue_data folder). {_GET_DATA}")
    task_dir = find_task_dir(data_dir, info)
    files = {s: task_dir / SPLIT_FILES[s] for s in hub_splits(info)}
    for split in ("train", *info.eval_splits):
        if not files[split].is_file():
            raise DataError(
                f"missing {files[split]} (split {split!r} of GLUE {info.glue_dir}); expected "
                f"{task_dir}/train.tsv and {_dev_names(info)}. {_GET_DATA}"
            )
    files = {s: p for s, p in files.items() if p.is_file()}
    # Parse once, save as Arrow; later runs (and datasets' map cache) reuse the saved folder. The key is
    # the files' content fingerprint, the one the run identity holds (identity.fingerprint_path), not
    # their path, size and mtime: a same-size edit that keeps the mtime (cp -p, rsync -t, os.utime)
    # must not train on the old cached labels while the record names the new files.
    key = hashlib.sha256(
        json.dumps(
            [
                _TSV_CACHE_VERSION,
                info.name,
                [(s, fingerprint_path(p)[p.name]) for s, p in sorted(files.items())],
            ],
        ).encode()
    ).hexdigest()[:16]
    target = _default_cache_root(cache_dir) / "tsv" / f"{info.name}-{key}"
    if not (target / "dataset_dict.json").is_file():
        dd, quality = _parse_tsv_files(info, files)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        with _quiet_progress():
            dd.save_to_disk(str(tmp))
        _write_json(tmp / QUALITY_FILE, quality)  # saved with the dataset: cached loads report it too
        try:
            os.replace(tmp, target)  # atomic: another process may have won the race, that is fine
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    quality = _read_quality(target, files)
    if quality is None:  # a cached folder without its counts (removed by hand): parsing again is cheap
        _, quality = _parse_tsv_files(info, files)
        with contextlib.suppress(OSError):
            _write_json(target / QUALITY_FILE, quality)
    for split, path in files.items():  # every load, cached or not: the skipped rows are facts of this data
        quality[split] = {**quality[split], "file": str(path)}  # as this run spells it (cache may be shared)
        message = describe_skipped(quality[split])
        if message:
            logger.warning("%s", message)
    dd = _conform(datasets.load_from_disk(str(target)), info, str(task_dir))
    return dd, {s: quality[s] for s in dd}


def _clean_quality(dd: DatasetDict) -> dict[str, dict]:
    """Sources that hold parsed rows already (hub, disk): nothing was skipped here."""
    return {
        split: {
            "file": None,
            "rows": len(ds),
            "skipped": 0,
            "reasons": {},
            "first_lines": [],
            "expected": None,
        }
        for split, ds in dd.items()
    }


# ---------------------------------------------------------------------------------------------- disk
def _load_disk(info: TaskInfo, data_dir, cache_dir) -> DatasetDict:
    if data_dir is None:
        raise DataError(f"data.source=disk needs data.data_dir (save_to_disk or parquet folder). {_GET_DATA}")
    root = Path(data_dir).expanduser()
    layout = (
        f"expected {root}/dataset_dict.json (DatasetDict.save_to_disk) or parquet files "
        f"{root}/<split>.parquet / <split>-*.parquet for splits {list(hub_splits(info))}, "
        f"optionally inside a {info.name}/ subfolder"
    )
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; {layout}. {_GET_DATA}")
    for folder in (root, root / info.name, root / info.glue_dir):
        if (folder / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(folder))
            if not isinstance(loaded, DatasetDict):
                raise DataError(f"{folder} holds a single Dataset, not a DatasetDict with splits; {layout}")
            return _conform(loaded, info, str(folder))
        data_files = {}
        for split in hub_splits(info):
            found = sorted(folder.glob(f"{split}.parquet")) + sorted(folder.glob(f"{split}-*.parquet"))
            if found:
                data_files[split] = [str(p) for p in found]
        if data_files:
            dd = datasets.load_dataset(
                "parquet", data_files=data_files, cache_dir=None if cache_dir is None else str(cache_dir)
            )
            return _conform(dd, info, str(folder))
    raise DataError(f"no saved GLUE {info.name} dataset in {root}; {layout}. {_GET_DATA}")


# ------------------------------------------------------------------------------------------ synthetic
def _load_synthetic(
    info: TaskInfo, data_dir, cache_dir, num_train: int, num_eval: int, seed: int
) -> tuple[DatasetDict, dict[str, dict]]:
    from adasam_glue.data.synthetic import GENERATOR_VERSION, make_synthetic_glue

    root = Path(data_dir) if data_dir else _default_cache_root(cache_dir) / "synthetic"
    folder = root / f"n{num_train}-{num_eval}-s{seed}-v{GENERATOR_VERSION}"
    task_dir = folder / info.glue_dir
    if not (task_dir / "train.tsv").is_file():
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        make_synthetic_glue(info.name, tmp, num_train=num_train, num_eval=num_eval, seed=seed)
        task_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp / info.glue_dir, task_dir)
        except OSError:  # another process wrote it first
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_tsv(info, task_dir, cache_dir)


def load_glue_with_quality(
    task: str,
    source: str = "hub",
    data_dir: str | os.PathLike | None = None,
    hub_name: str = "nyu-mll/glue",
    cache_dir: str | os.PathLike | None = None,
    *,
    synthetic_train_size: int = 512,
    synthetic_eval_size: int = 128,
    synthetic_seed: int = 0,
) -> tuple[DatasetDict, dict[str, dict]]:
    """``load_glue`` plus the data quality of every split, so a run can record what was skipped.

    Quality per split (JSON-serialisable, the same on a cached load as on the first parse):
    ``{"file", "rows", "skipped", "reasons": {reason: count}, "first_lines": [<= 10 line numbers],
    "expected"}`` (see ``glue_tsv.parse_glue_tsv``). Hub/disk sources: ``skipped`` 0, ``file`` and
    ``expected`` None.
    """
    info = _task(task)
    if source == "hub":
        dd = _load_hub(info, hub_name, cache_dir)
        return dd, _clean_quality(dd)
    if source == "tsv":
        return _load_tsv(info, data_dir, cache_dir)
    if source == "disk":
        dd = _load_disk(info, data_dir, cache_dir)
        return dd, _clean_quality(dd)
    if source == "synthetic":
        return _load_synthetic(
            info, data_dir, cache_dir, synthetic_train_size, synthetic_eval_size, synthetic_seed
        )
    raise DataError(f"unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")


#: the ``data`` config keys that choose where a task's rows come from (conf/data/default.yaml holds them)
SOURCE_KEYS = (
    "source",
    "data_dir",
    "hub_name",
    "cache_dir",
    "synthetic_train_size",
    "synthetic_eval_size",
    "synthetic_seed",
)


def load_glue_config(data_cfg: Any, task: str) -> tuple[DatasetDict, dict[str, dict]]:
    """The one place a ``data`` config node becomes a load: ``(splits, data quality)``.

    No fallbacks: every key is in ``conf/data/default.yaml`` (a record's stored ``config["data"]``
    carries them too), so a missing key is a ``KeyError`` naming it, never a silently different default.
    """
    get = data_cfg.get if hasattr(data_cfg, "get") else lambda k: getattr(data_cfg, k)
    missing = [k for k in SOURCE_KEYS if k not in data_cfg] if hasattr(data_cfg, "__contains__") else []
    if missing:
        raise KeyError(f"data config lacks {', '.join(missing)} (see conf/data/default.yaml)")
    kw = {k: get(k) for k in SOURCE_KEYS}
    return load_glue_with_quality(
        task, kw.pop("source"), kw.pop("data_dir"), kw.pop("hub_name"), kw.pop("cache_dir"), **kw
    )


def load_glue(
    task: str,
    source: str = "hub",
    data_dir: str | os.PathLike | None = None,
    hub_name: str = "nyu-mll/glue",
    cache_dir: str | os.PathLike | None = None,
    *,
    synthetic_train_size: int = 512,
    synthetic_eval_size: int = 128,
    synthetic_seed: int = 0,
) -> DatasetDict:
    """Load one GLUE task with the Hub's schema (splits, columns, label ids, feature types).

    source: ``hub`` (``datasets.load_dataset(hub_name, task)``; ``hub_name`` may be a local copy of the
    Hub repo; an unreachable Hub falls back to the local HF cache without retries), ``tsv`` (``data_dir``
    = ``glue_data`` root or the task folder), ``disk`` (``save_to_disk`` folder or ``<split>.parquet``
    files) or ``synthetic`` (generated into ``data_dir`` or the cache, then read as TSV).
    TSV and synthetic data are parsed once and cached as Arrow under ``cache_dir/adasam_glue``
    (``cache_dir`` null: the ``datasets`` cache).
    Malformed TSV rows are skipped and logged on every load (cached or not);
    ``load_glue_with_quality`` also returns their counts.
    Raises ``DataError`` with the expected layout and how to get the data.
    """
    dd, _ = load_glue_with_quality(
        task,
        source,
        data_dir,
        hub_name,
        cache_dir,
        synthetic_train_size=synthetic_train_size,
        synthetic_eval_size=synthetic_eval_size,
        synthetic_seed=synthetic_seed,
    )
    return dd


__all__ = [
    "DataError",
    "QUALITY_FILE",
    "SOURCES",
    "TASK_ORDER",
    "find_task_dir",
    "hub_features",
    "hub_splits",
    "load_glue",
    "load_glue_with_quality",
]
