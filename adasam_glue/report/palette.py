"""Display names, colours and line styles of the optimizers (the same in every figure of the report).

They are facts of each optimizer's registry record (``adasam_glue.optim.registry``: ``display``,
``color``, ``linestyle``), read here live, so a newly registered optimizer is drawn with its own name
and colour with no edit to this module. Names the registry does not know (records of an older
version) keep their key as name and get a stable fallback colour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from adasam_glue.tasks import TASKS


def _records() -> dict[str, Any]:
    from adasam_glue.optim.registry import OPTIMIZERS  # imported on first use: torch loads only then

    return OPTIMIZERS


class _RegistryView(Mapping[str, str]):
    """``{optimizer key: record.<attr>}`` in registry order, read on every access."""

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def __getitem__(self, key: str) -> str:
        return getattr(_records()[key], self._attr)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_records()))

    def __len__(self) -> int:
        return len(_records())


#: Optimizer key -> paper spelling (``record.display``).
METHOD_NAMES: Mapping[str, str] = _RegistryView("display")
#: Optimizer key -> colour (``record.color``: colour-blind-safe Okabe-Ito / Tol hues; the paper's four
#: are four distinct hues, and the one-pass base optimizers are also drawn dashed, :func:`linestyle`).
PALETTE: Mapping[str, str] = _RegistryView("color")
_FALLBACK = ("#17becf", "#bcbd22", "#e377c2", "#2ca02c")

#: Metric key -> short column label.
METRIC_LABELS: dict[str, str] = {
    "matthews_correlation": "MCC",
    "mcc": "MCC",  # records written before the HF metric names
    "accuracy": "acc",
    "f1": "F1",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
    "spearman": "Spearman",  # records written before the HF metric names
    "accuracy_matched": "m",
    "accuracy_mismatched": "mm",
}


def method_name(key: str, base: str | None = None) -> str:
    """The optimizer's name; with ``base`` (a run's ``optim.base``) other than its own, the base too
    (``VaSSO (SGD)``)."""
    info = _records().get(key)
    if info is None:
        return key
    return info.label(base) if base is not None else info.display


def color(key: str) -> str:
    """The optimizer's colour; unknown names get a stable fallback (by the name's characters)."""
    info = _records().get(key)
    if info is not None:
        return info.color
    return _FALLBACK[sum(map(ord, key)) % len(_FALLBACK)]


def linestyle(key: str) -> str:
    """Dashed for the one-pass base optimizers (SGD, AMSGrad), solid for the SAM family."""
    info = _records().get(key)
    return info.linestyle if info is not None else "-"


def task_name(key: str) -> str:
    """Paper spelling of a task: ``sst2`` -> ``SST-2``."""
    return TASKS[key].glue_dir if key in TASKS else key


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)
