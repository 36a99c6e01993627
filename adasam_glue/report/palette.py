"""Names, colours and line styles of optimizers, tasks and metrics, the same in every table and figure.

Optimizer facts are read live from the registry, so a newly registered optimizer needs no edit here; a
name it does not know (an older record) keeps its key and gets a stable fallback colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from adasam_glue.tasks import TASKS

_FALLBACK = ("#17becf", "#bcbd22", "#e377c2", "#2ca02c")
#: Metric key -> short column label (``mcc``/``spearman``: records written before the HF metric names).
METRIC_LABELS: dict[str, str] = {
    "matthews_correlation": "MCC",
    "mcc": "MCC",
    "accuracy": "acc",
    "f1": "F1",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
    "spearman": "Spearman",
    "accuracy_matched": "m",
    "accuracy_mismatched": "mm",
}


def optimizers() -> dict[str, Any]:
    """The registry's records, in its order (imported on first use: torch loads only then)."""
    from adasam_glue.optim.registry import OPTIMIZERS

    return OPTIMIZERS


class RegistryView(Mapping[str, Any]):
    """A mapping computed from the registry on every access (``{name: value}``, registry order), so a
    record registered later shows up with no edit here."""

    def __init__(self, items: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._items = lambda: items(optimizers())

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


#: Optimizer key -> paper spelling (``record.display``).
METHOD_NAMES: Mapping[str, str] = RegistryView(lambda recs: {n: r.display for n, r in recs.items()})
#: Optimizer key -> colour (colour-blind-safe hues; the one-pass bases are also dashed, :func:`linestyle`).
PALETTE: Mapping[str, str] = RegistryView(lambda recs: {n: r.color for n, r in recs.items()})


def method_name(key: str, base: str | None = None) -> str:
    """The optimizer's name; with a ``base`` other than its own, the base too (``VaSSO (SGD)``)."""
    info = optimizers().get(key)
    return key if info is None else info.label(base) if base is not None else info.display


def color(key: str) -> str:
    """The optimizer's colour; unknown names get a stable fallback (by the name's characters)."""
    info = optimizers().get(key)
    return info.color if info is not None else _FALLBACK[sum(map(ord, key)) % len(_FALLBACK)]


def linestyle(key: str) -> str:
    """Dashed for the one-pass base optimizers (SGD, AMSGrad), solid for the SAM family."""
    info = optimizers().get(key)
    return info.linestyle if info is not None else "-"


def optimizer_rank(key: str) -> tuple[int, str]:
    """Sort key: registry order, unknown names last (alphabetically)."""
    keys = list(optimizers())
    return (keys.index(key) if key in keys else len(keys), key)


def task_name(key: str) -> str:
    """Paper spelling of a task: ``sst2`` -> ``SST-2``."""
    return TASKS[key].glue_dir if key in TASKS else key


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def g_or(x: float | None, missing: str = "?") -> str:
    """A number as labels write it (``:g``); ``missing`` for none."""
    return missing if x is None else f"{x:g}"
