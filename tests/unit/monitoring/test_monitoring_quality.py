"""Model-quality metrics against scikit-learn, and the ground-truth join."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from monitoring import quality
from monitoring.capture import CaptureRecord, Prediction


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 700)
    scores = np.clip(y * 0.3 + rng.normal(0.35, 0.25, y.size), 0, 1)
    scores[:50] = np.round(scores[:50], 1)  # ties
    accumulator = quality.QualityAccumulator("binary", min_labels=100)
    for score, truth in zip(scores, y):
        assert accumulator.add(Prediction(float(score), None), int(truth))
    result = accumulator.result()
    predicted = (scores >= 0.5).astype(int)
    metrics = result["metrics"]
    assert result["status"] == "ok" and result["label_count"] == 700
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert metrics["precision"] == pytest.approx(precision_score(y, predicted))
    assert metrics["recall"] == pytest.approx(recall_score(y, predicted))
    assert metrics["f1"] == pytest.approx(f1_score(y, predicted))
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    matrix = metrics["confusion_matrix"]
    assert matrix["tp"] + matrix["fn"] == y.sum() and sum(matrix.values()) == 700
    assert result["class_counts"] == {"0": int((y == 0).sum()), "1": int(y.sum())}


def test_auc_with_heavy_ties_and_perfect_separation() -> None:
    y = [0, 0, 1, 1, 0, 1, 1, 0]
    scores = [0.5, 0.5, 0.5, 0.9, 0.1, 0.5, 0.9, 0.1]
    assert quality.roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    assert quality.roc_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert quality.roc_auc([1, 1], [0.2, 0.3]) is None


def test_model_labels_and_threshold() -> None:
    accumulator = quality.QualityAccumulator("binary", min_labels=1, score_threshold=0.7)
    accumulator.add(Prediction(0.6, None), 1)  # below 0.7: predicted 0
    accumulator.add(Prediction(0.2, "1"), 1)  # the model's label wins over the score
    accumulator.add(Prediction(None, "0"), 0)  # no score: the label is the score
    assert not accumulator.add(Prediction(None, "cat"), 1)
    assert not accumulator.add(Prediction(None, None), 1)
    result = accumulator.result()
    assert result["unusable_predictions"] == 2 and result["label_count"] == 3
    assert result["metrics"]["confusion_matrix"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 1}


def test_undefined_metrics_are_none() -> None:
    accumulator = quality.QualityAccumulator("binary", min_labels=1)
    for _ in range(3):
        accumulator.add(Prediction(0.1, None), 0)
    metrics = accumulator.result()["metrics"]
    assert metrics["precision"] is None and metrics["recall"] is None and metrics["f1"] is None
    assert metrics["auc"] is None and metrics["accuracy"] == 1.0


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(10, 3, 400)
    predicted = y + rng.normal(0.5, 1.0, y.size)
    accumulator = quality.QualityAccumulator("regression", min_labels=100)
    for p, t in zip(predicted, y):
        accumulator.add(Prediction(float(p), None), float(t))
    metrics = accumulator.result()["metrics"]
    assert metrics["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, predicted)))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, predicted))
    assert metrics["r2"] == pytest.approx(r2_score(y, predicted))
    assert metrics["mean_error"] == pytest.approx(np.mean(predicted - y))


def test_a_tiny_sample_is_insufficient_data() -> None:
    accumulator = quality.QualityAccumulator("binary", min_labels=100)
    for i in range(99):
        accumulator.add(Prediction(0.9, None), i % 2)
    result = accumulator.result()
    assert result["status"] == "insufficient_data" and result["metrics"] is None
    assert result["label_count"] == 99 and result["min_labels"] == 100
    assert quality.QualityAccumulator("binary").result()["status"] == "no_labels"


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("0", 0), (1, 1), (0.0, 0), (True, 1), ("true", 1), (" FALSE ", 0), ("1.0", 1)]
)
def test_binary_label_values(value, expected) -> None:
    assert quality.binary_label(value) == expected


@pytest.mark.parametrize("value", ["2", 2, 0.5, "yes please", None])
def test_bad_binary_labels(value) -> None:
    with pytest.raises(ValueError):
        quality.binary_label(value)


def _record(key: str, variant: str, outputs: list) -> CaptureRecord:
    return CaptureRecord(key, key, None, "ep", variant, [], outputs, "f", 1)


def test_join_per_variant_uses_each_label_once() -> None:
    labels = {f"id-{i}": i % 2 for i in range(10)}
    labels["multi"] = (1, 0)
    labels["mismatch"] = (1, 0, 1)
    labels["orphan"] = 1
    join = quality.QualityJoin(labels, "binary", min_labels=2)
    for i in range(10):
        join.add_record(_record(f"id-{i}", "a" if i < 6 else "b", [Prediction(0.9 if i % 2 else 0.1, None)]))
    join.add_record(_record("id-0", "a", [Prediction(0.9, None)]))  # the same id again: no label left
    join.add_record(_record("multi", "b", [Prediction(0.8, None), Prediction(0.3, None)]))
    join.add_record(_record("mismatch", "b", [Prediction(0.8, None)]))
    join.add_record(_record("nolabel", "a", [Prediction(0.8, None)]))
    result = join.result()
    assert result["join"] == {
        "labels": 13,
        "joined_records": 11,
        "labels_without_prediction": 1,
        "records_without_label": 2,
        "labelled_records_without_prediction": 0,
        "instance_count_mismatch": 1,
    }
    assert result["variants"]["a"]["label_count"] == 6
    assert result["variants"]["b"]["label_count"] == 4 + 2
    assert result["all"]["label_count"] == 12
    assert result["all"]["metrics"]["accuracy"] == 1.0
