"""GLUE metrics computed locally with NumPy/SciPy (no ``evaluate``: its GLUE script needs the Hub).

Equal to scikit-learn's ``matthews_corrcoef``/``accuracy_score``/``f1_score`` and SciPy's ``pearsonr``/
``spearmanr`` (tested). Values are fractions (correlations in [-1, 1]); the report multiplies by 100.
Degenerate inputs (a constant prediction or reference) give 0.0 for MCC/Pearson/Spearman, as
scikit-learn does for MCC, without NaN or warnings.

Which metric selects the best checkpoint and which numbers the tables show come from the task
registry (``adasam_glue.tasks``): ``SELECTION_METRIC[task]`` and ``PAPER_METRICS[task]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata

from adasam_glue.tasks import TASKS, get_task, split_suffix

#: task -> metric key that picks the best checkpoint / tuned rho (higher is better).
SELECTION_METRIC: dict[str, str] = {name: t.selection_metric for name, t in TASKS.items()}
#: task -> metric keys reported in the paper's tables, in column order.
PAPER_METRICS: dict[str, tuple[str, ...]] = {name: t.paper_metrics for name, t in TASKS.items()}


def _class_ids(predictions) -> np.ndarray:
    p = np.asarray(predictions)
    if p.ndim == 2:
        return p.argmax(axis=-1) if p.shape[1] > 1 else (p[:, 0] > 0).astype(np.int64)
    if p.ndim != 1:
        raise ValueError(f"predictions must be logits (N, C) or class ids (N,), got shape {p.shape}")
    return p.astype(np.int64)


def _scores(predictions) -> np.ndarray:
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim != 1:
        raise ValueError(f"regression predictions must be (N,) or (N, 1), got shape {p.shape}")
    return p


def accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(pred == ref)) if len(ref) else 0.0


def f1_binary(pred: np.ndarray, ref: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (0.0 when there are no true or predicted positives, like sklearn)."""
    tp = np.sum((pred == positive) & (ref == positive))
    denom = np.sum(pred == positive) + np.sum(ref == positive)
    return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(pred: np.ndarray, ref: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin's R_K, as sklearn); 0.0 when either side is constant."""
    labels = np.union1d(pred, ref)
    if len(labels) == 0:
        return 0.0
    p = np.searchsorted(labels, pred)
    r = np.searchsorted(labels, ref)
    k = len(labels)
    cm = np.bincount(r * k + p, minlength=k * k).reshape(k, k).astype(np.float64)
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    n_correct, n = np.trace(cm), cm.sum()
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n * n - np.dot(p_sum, p_sum)
    cov_ytyt = n * n - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; 0.0 when either side is constant (SciPy returns NaN and warns)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return 0.0
    xm, ym = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0 or ny == 0 or not np.isfinite(nx * ny):
        return 0.0
    return float(np.clip(np.dot(xm / nx, ym / ny), -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (Pearson of average ranks, as SciPy); 0.0 when either side is constant."""
    return pearson(rankdata(x), rankdata(y))


def compute_metrics(task: str, predictions, references, split: str | None = None) -> dict[str, float]:
    """GLUE metrics for one eval split.

    predictions: logits (N, C), class ids (N,), or scores (N,)/(N, 1) for STS-B. references: labels.
    Keys: CoLA ``matthews_correlation``; SST-2/QNLI/RTE ``accuracy``; MRPC/QQP ``accuracy``, ``f1``; STS-B ``pearson``,
    ``spearmanr``; MNLI ``accuracy_<suffix>`` from the split (``validation_matched`` -> ``accuracy_matched``;
    no split: ``accuracy``).
    """
    info = get_task(task)
    ref = np.asarray(references)
    if info.is_regression:
        pred = _scores(predictions)
        ref = ref.astype(np.float64).reshape(-1)
        _check_len(pred, ref)
        return {"pearson": pearson(pred, ref), "spearmanr": spearman(pred, ref)}
    pred = _class_ids(predictions)
    ref = ref.astype(np.int64).reshape(-1)
    _check_len(pred, ref)
    if info.name == "cola":
        return {"matthews_correlation": matthews_corrcoef(pred, ref)}
    out = {"accuracy": accuracy(pred, ref)}
    if info.name in ("mrpc", "qqp"):
        out["f1"] = f1_binary(pred, ref, positive=1)
    if info.name == "mnli":
        suffix = split_suffix(split) if split else ""  # no split given: plain "accuracy"
        out = {f"accuracy_{suffix}" if suffix else "accuracy": out["accuracy"]}
    return out


def constant_prediction(task: str, predictions) -> bool:
    """Whether one split's predictions are all the same: one class id (classification, the argmax of
    the logits) or one value (STS-B). The record keeps it per evaluation (``constant_prediction`` of an
    eval entry) because accuracy alone cannot show it: a majority-class predictor's accuracy is just a
    number (:func:`no_learning`)."""
    if get_task(task).is_regression:
        scores = _scores(predictions)
        return bool(len(scores) == 0 or np.all(scores == scores[0]))
    return len(np.unique(_class_ids(predictions))) <= 1


def no_learning(task: str, metrics: Mapping[str, float], constant: bool | None = None) -> bool | None:
    """Whether one evaluation's metrics are those of a predictor that has learned nothing of the task;
    ``None`` when they cannot tell (accuracy alone, or a metric missing) and the evaluation did not
    record ``constant`` (its ``constant_prediction``: every prediction the same, :func:`constant_prediction`).
    A recorded ``constant=True`` is itself the signature, on every task; ``False`` rules out nothing on an
    accuracy-only task (a non-constant predictor may still be at chance), so it stays ``None`` there.

    Exact signatures, from the definitions above (docs/algorithms.md §4.4, "does not learn"):
    CoLA MCC exactly 0 (a constant prediction gives 0; a non-constant one gives 0 only by an exact
    cancellation); STS-B Pearson and Spearman both exactly 0 (constant predictions); MRPC/QQP F1 = 0 (no
    positive found) or F1 = 2a/(1+a) with accuracy a < 1, which holds exactly when no negative was found
    (TN = 0: the all-positive predictor's pair, 68.38/81.22 on MRPC dev).
    """
    if constant:
        return True
    info = get_task(task)
    if info.is_regression:
        r, rho = metrics.get("pearson"), metrics.get("spearmanr")
        return None if r is None or rho is None else r == 0.0 and rho == 0.0
    if info.name == "cola":
        mcc = metrics.get("matthews_correlation")
        return None if mcc is None else mcc == 0.0
    if info.name in ("mrpc", "qqp"):
        acc, f1 = metrics.get("accuracy"), metrics.get("f1")
        if acc is None or f1 is None:
            return None
        return f1 == 0.0 or (acc < 1.0 and abs(f1 - 2 * acc / (1 + acc)) <= 1e-12)
    return None


def _check_len(pred: np.ndarray, ref: np.ndarray) -> None:
    if len(pred) != len(ref):
        raise ValueError(f"{len(pred)} predictions for {len(ref)} references")


__all__ = [
    "PAPER_METRICS",
    "SELECTION_METRIC",
    "compute_metrics",
    "constant_prediction",
    "no_learning",
    "f1_binary",
    "matthews_corrcoef",
    "pearson",
    "spearman",
    "accuracy",
]
