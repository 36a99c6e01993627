"""adasam_glue.metrics equals scikit-learn / SciPy; degenerate inputs are defined (0.0), never NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from adasam_glue import metrics
from adasam_glue.metrics import PAPER_METRICS, SELECTION_METRIC, compute_metrics
from adasam_glue.tasks import TASK_ORDER, get_task

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    ref = rng.integers(0, 2, n)
    logits = rng.normal(size=(n, 2)) + 0.8 * np.eye(2)[ref]
    pred = logits.argmax(1)
    assert compute_metrics("cola", logits, ref) == {
        "matthews_correlation": pytest.approx(matthews_corrcoef(ref, pred), abs=1e-12)
    }
    for task in ("mrpc", "qqp"):
        out = compute_metrics(task, logits, ref)
        assert out == {
            "accuracy": pytest.approx(accuracy_score(ref, pred)),
            "f1": pytest.approx(f1_score(ref, pred, pos_label=1, zero_division=0.0)),
        }
    for task in ("sst2", "qnli", "rte"):
        assert compute_metrics(task, pred, ref) == {"accuracy": pytest.approx(accuracy_score(ref, pred))}
    ref3, pred3 = rng.integers(0, 3, n), rng.integers(0, 3, n)
    assert metrics.matthews_corrcoef(pred3, ref3) == pytest.approx(matthews_corrcoef(ref3, pred3), abs=1e-12)


def test_mnli_keys_follow_the_split():
    ref = RNG.integers(0, 3, 100)
    logits = RNG.normal(size=(100, 3))
    acc = accuracy_score(ref, logits.argmax(1))
    assert compute_metrics("mnli", logits, ref, split="validation_matched") == {"accuracy_matched": acc}
    assert compute_metrics("mnli", logits, ref, split="validation_mismatched") == {"accuracy_mismatched": acc}
    assert compute_metrics("mnli", logits, ref) == {"accuracy": acc}


@pytest.mark.parametrize("shape", [(200,), (200, 1)])
def test_stsb_correlations_equal_scipy(shape):
    ref = RNG.uniform(0, 5, 200).astype(np.float32)
    pred = ref + RNG.normal(scale=1.5, size=200)
    pred[:20] = np.round(pred[:20])  # ties for Spearman's average ranks
    out = compute_metrics("stsb", pred.reshape(shape), ref)
    assert out["pearson"] == pytest.approx(pearsonr(pred, ref)[0], abs=1e-10)
    assert out["spearmanr"] == pytest.approx(spearmanr(pred, ref)[0], abs=1e-10)


def test_degenerate_inputs_are_defined_without_warnings():
    ref = np.array([0, 1, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics("cola", np.ones(5, dtype=int), ref) == {"matthews_correlation": 0.0}
        assert compute_metrics("cola", np.ones(5, dtype=int), np.ones(5)) == {"matthews_correlation": 0.0}
        assert compute_metrics("mrpc", np.zeros(5, dtype=int), np.zeros(5)) == {"accuracy": 1.0, "f1": 0.0}
        const = compute_metrics("stsb", np.full(5, 2.5), np.array([0.0, 1, 2, 3, 4]))
        assert const == {"pearson": 0.0, "spearmanr": 0.0}
        assert compute_metrics("stsb", np.array([0.0, 1, 2]), np.full(3, 4.0)) == {
            "pearson": 0.0,
            "spearmanr": 0.0,
        }
        assert compute_metrics("stsb", np.array([1.0]), np.array([2.0])) == {"pearson": 0.0, "spearmanr": 0.0}
        assert compute_metrics("rte", np.zeros((0, 2)), np.zeros(0, dtype=int)) == {"accuracy": 0.0}
    assert matthews_corrcoef(ref, np.ones(5, dtype=int)) == 0.0  # sklearn agrees on the convention


def test_selection_and_paper_metrics_are_produced():
    for task in TASK_ORDER:
        info = get_task(task)
        ref = RNG.integers(0, max(info.num_labels, 2), 50).astype(float if info.is_regression else int)
        pred = RNG.normal(size=(50, info.num_labels))
        keys = set()
        for split in info.eval_splits:
            keys |= set(compute_metrics(task, pred, ref, split=split))
        assert SELECTION_METRIC[task] in keys and set(PAPER_METRICS[task]) <= keys, task
        assert all(
            -1.0 <= v <= 1.0 for s in info.eval_splits for v in compute_metrics(task, pred, ref, s).values()
        )
    assert SELECTION_METRIC["stsb"] == "pearson" and PAPER_METRICS["mrpc"] == ("accuracy", "f1")


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="3 predictions for 2 references"):
        compute_metrics("rte", np.array([0, 1, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown GLUE task"):
        compute_metrics("wnli", np.array([0]), np.array([0]))


@pytest.mark.parametrize("task", ["cola", "mrpc", "qqp", "stsb"])
def test_no_learning_recognises_constant_predictors_from_their_metrics(task):
    """A constant prediction's metrics (as compute_metrics makes them) are recognised; a predictor that
    learned something, even barely, is not (docs/algorithms.md §4.4 item 5)."""
    rng = np.random.default_rng(0)
    n = 408
    if get_task(task).is_regression:
        ref = rng.uniform(0, 5, n)
        constants = [np.full(n, 2.5), np.zeros(n)]
        learned = [ref + rng.normal(0, 20, n), ref]
    else:
        ref = (rng.random(n) < 0.68).astype(int)
        constants = [np.ones(n, int), np.zeros(n, int)]
        weak = ref.copy()
        flip = rng.choice(n, n // 3, replace=False)
        weak[flip] = 1 - weak[flip]  # a third of the answers wrong, both classes predicted
        learned = [weak, ref]
        one_negative = np.ones(n, int)
        one_negative[np.flatnonzero(ref == 0)[0]] = 0  # a single negative found: it learned something
        learned.append(one_negative)
    for pred in constants:
        assert metrics.no_learning(task, compute_metrics(task, pred, ref)) is True, pred[:3]
    for pred in learned:
        assert metrics.no_learning(task, compute_metrics(task, pred, ref)) is False


def test_no_learning_cannot_tell_from_accuracy_alone():
    assert metrics.no_learning("rte", {"accuracy": 0.527}) is None
    assert metrics.no_learning("cola", {}) is None
    assert metrics.no_learning("mrpc", {"accuracy": 0.6838235294117647, "f1": 0.8122270742358079}) is True


def test_constant_prediction_of_logits_class_ids_and_scores():
    """The flag an eval entry records: one predicted class (argmax of logits, or ids) or one STS-B value."""
    assert metrics.constant_prediction("rte", np.array([[2.0, 1.0], [3.0, -1.0], [0.5, 0.4]])) is True
    assert metrics.constant_prediction("rte", np.array([[2.0, 1.0], [1.0, 3.0]])) is False
    assert metrics.constant_prediction("mnli", np.array([2, 2, 2])) is True
    assert metrics.constant_prediction("stsb", np.full((5, 1), 0.5)) is True
    assert metrics.constant_prediction("stsb", np.array([0.5, 0.5, 0.5000001])) is False


def test_a_recorded_constant_prediction_settles_what_accuracy_cannot():
    """RTE's majority-class predictor has an accuracy (52.7) that says nothing; its recorded flag does.
    A non-constant predictor may still be at chance: on an accuracy-only task that stays unknown, and on
    a task whose metrics can tell, the metrics still decide."""
    assert metrics.no_learning("rte", {"accuracy": 0.527}, constant=True) is True
    assert metrics.no_learning("rte", {"accuracy": 0.527}, constant=False) is None
    assert metrics.no_learning("mnli", {"accuracy_matched": 0.35}, constant=True) is True
    assert metrics.no_learning("cola", {"matthews_correlation": 0.0}, constant=False) is True
    assert metrics.no_learning("cola", {"matthews_correlation": 0.2}, constant=False) is False
    assert metrics.no_learning("stsb", {"pearson": 0.1, "spearmanr": 0.1}, constant=None) is False
