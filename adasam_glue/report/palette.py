"""Display names and the fixed colour of every optimizer (the same in every figure of the report)."""

from __future__ import annotations

from adasam_glue.tasks import TASKS

#: Optimizer key -> paper spelling.
METHOD_NAMES: dict[str, str] = {
    "sgd": "SGD",
    "amsgrad": "AMSGrad",
    "sam": "SAM",
    "adasam": "AdaSAM",
    "asam": "ASAM",
    "usam": "USAM",
    "gsam": "GSAM",
    "vasso": "VaSSO",
    "rsam": "RSAM",
    "esam": "ESAM",
    "lightsam": "LightSAM",
}

#: Optimizer key -> colour (colour-blind-safe Okabe-Ito / Tol hues). The paper's four are four distinct
#: hues (SGD sky blue, SAM dark blue, AMSGrad green, AdaSAM vermillion); base optimizers are also drawn
#: dashed (:func:`linestyle`) so each base/SAM pair reads at a glance.
PALETTE: dict[str, str] = {
    "sgd": "#56B4E9",
    "sam": "#0072B2",
    "amsgrad": "#009E73",
    "adasam": "#D55E00",
    "asam": "#CC79A7",
    "usam": "#999933",
    "gsam": "#882255",
    "vasso": "#7f7f7f",
    "rsam": "#8c564b",
    "esam": "#9467bd",
    "lightsam": "#000000",
}
BASE_OPTIMIZERS = ("sgd", "amsgrad")
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


def method_name(key: str) -> str:
    return METHOD_NAMES.get(key, key)


def color(key: str) -> str:
    """The optimizer's colour; unknown names get a stable fallback (by the name's characters)."""
    if key in PALETTE:
        return PALETTE[key]
    return _FALLBACK[sum(map(ord, key)) % len(_FALLBACK)]


def linestyle(key: str) -> str:
    """Dashed for the base optimizers (SGD, AMSGrad), solid for the SAM family."""
    return "--" if key in BASE_OPTIMIZERS else "-"


def task_name(key: str) -> str:
    """Paper spelling of a task: ``sst2`` -> ``SST-2``."""
    return TASKS[key].glue_dir if key in TASKS else key


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)
