"""Model quality of one window: captured predictions joined with ground-truth labels.

Join: the ground-truth labels are read first into a dict ``{inference id: label(s)}`` (see
``capture.load_ground_truth``), then the capture stream is joined against it record by record;
a label is removed from the dict when its prediction is found, so each label is used once (the
first captured record with that id wins). Memory is therefore bounded by the number of labels
in the ground-truth input, about 150-200 bytes per label id (1 M labels ~ 200 MB), plus
17 bytes per joined (score, label, prediction) triple kept for the exact AUC; a few million
labels per window fit comfortably in a 4-8 GiB processing instance. Labels whose prediction is
not in the window are reported as ``labels_without_prediction`` (they belong to another window
or the capture sampled them out).

Binary classification (labels 0/1; ``true``/``false`` accepted): the predicted class is the
model's label when it returns one, else ``score >= score_threshold``; accuracy, precision,
recall and F1 of class 1 (``None`` when undefined, e.g. precision without predicted
positives), the confusion counts, and the ROC AUC with DeLong's standard error (``None`` with a
single class), all from scikit-learn except the standard error.
When a prediction has a label but no score, its 0/1 label is its score. Regression: RMSE, MAE,
mean error (prediction - label) and R^2, and the moments of the squared and absolute errors (the
quality tests of ``decision.py`` read them).

With fewer than ``min_labels`` joined labels a variant's ``status`` is ``insufficient_data`` and
its ``metrics`` are ``null`` (the counts are still reported); ``no_labels`` when none joined.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

DEFAULT_MIN_LABELS = 100
# what a used label's record became (QualityJoin.journal)
JOINED, NO_PREDICTION, COUNT_MISMATCH = 0, 1, 2
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def binary_label(value: object) -> int:
    """A 0/1 ground-truth or predicted label; ``ValueError`` for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return int(value)
        raise ValueError(f"binary label must be 0 or 1, got {value!r}")
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ValueError(f"binary label must be 0 or 1, got {value!r:.40}")


def regression_label(value: object) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"regression label must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"regression label must be a number, got {value!r:.40}") from None
    if not math.isfinite(number):
        raise ValueError(f"regression label must be finite, got {value!r}")
    return number


def label_converter(problem_type: str):
    """``convert`` for ``capture.load_ground_truth``: one value -> scalar, several -> tuple."""
    one = binary_label if problem_type == "binary" else regression_label

    def convert(values: list):
        if len(values) == 1:
            return one(values[0])
        return tuple(one(value) for value in values)

    return convert


def roc_auc(y_true: "np.ndarray | list", scores: "np.ndarray | list") -> "float | None":
    """ROC AUC (``sklearn.metrics.roc_auc_score``: ties count half); ``None`` with a single class."""
    from sklearn.metrics import roc_auc_score  # imported when labels joined: a drift-only run skips it

    y = np.asarray(y_true).astype(bool)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def auc_standard_error(y_true: np.ndarray, scores: np.ndarray) -> "float | None":
    """DeLong's standard error of the AUC (structural components from mid-ranks)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = s[y], s[~y]
    m, n = positives.size, negatives.size
    if m < 2 or n < 2:
        return None
    from scipy.stats import rankdata  # imported when labels are joined

    ranks = rankdata(np.concatenate([positives, negatives]))
    placements_pos = (ranks[:m] - rankdata(positives)) / n  # share of negatives below each positive
    placements_neg = 1.0 - (ranks[m:] - rankdata(negatives)) / m  # share of positives above each negative
    variance = placements_pos.var(ddof=1) / m + placements_neg.var(ddof=1) / n
    return math.sqrt(variance) if variance > 0 else None


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict:
    """Accuracy, precision, recall, F1 (class 1) and AUC by scikit-learn; ``None`` where undefined."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, p, labels=[False, True]).ravel())
    n = tp + fp + fn + tn
    # one call for the three (scikit-learn validates its input per call: ~3 ms on small windows)
    precision, recall, f1 = (float(v) for v in precision_recall_fscore_support(
        y, p, average="binary", zero_division=0)[:3])
    precision = precision if tp + fp else None
    recall = recall if tp + fn else None
    f1 = f1 if tp + fp + fn else None
    return {
        "accuracy": float(accuracy_score(y, p)) if n else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": roc_auc(y, scores),
        "auc_standard_error": auc_standard_error(y, scores),
        "positive_rate": (tp + fn) / n if n else None,
        "predicted_positive_rate": (tp + fp) / n if n else None,
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def _error_moments(values: np.ndarray) -> dict:
    return {"count": int(values.size), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """RMSE, MAE, mean error and R^2 (scikit-learn), and the error moments the quality tests read."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if not y.size:
        return {"rmse": None, "mae": None, "mean_error": None, "r2": None}
    error = p - y
    return {
        "rmse": math.sqrt(float(mean_squared_error(y, p))),
        "mae": float(mean_absolute_error(y, p)),
        "mean_error": float(np.mean(error)),
        "r2": float(r2_score(y, p)) if y.size > 1 and np.ptp(y) > 0 else None,
        "squared_error": _error_moments(error**2),
        "absolute_error": _error_moments(np.abs(error)),
    }


class QualityAccumulator:
    """Joined (prediction, label) pairs of one variant, kept compactly for exact metrics."""

    def __init__(
        self, problem_type: str, min_labels: int = DEFAULT_MIN_LABELS, score_threshold: float = 0.5
    ) -> None:
        self.problem_type = problem_type
        self.min_labels = min_labels
        self.score_threshold = score_threshold
        self.truth = array("b") if problem_type == "binary" else array("d")
        self.predicted = array("b")
        self.scores = array("d")
        self.unusable_predictions = 0

    def add(self, prediction: tuple, truth: "int | float") -> bool:
        """Add one pair; ``False`` (and counted) when the prediction cannot be scored."""
        score, label = prediction[0], prediction[1]
        if self.problem_type == "binary":
            if label is not None:
                try:
                    predicted = binary_label(label)
                except ValueError:
                    self.unusable_predictions += 1
                    return False
                if score is None:
                    score = float(predicted)
            elif score is not None and math.isfinite(score):
                predicted = int(score >= self.score_threshold)
            else:
                self.unusable_predictions += 1
                return False
            self.truth.append(int(truth))
            self.predicted.append(predicted)
            self.scores.append(score)
            return True
        value = score
        if value is None and label is not None:
            try:
                value = float(label)
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            self.unusable_predictions += 1
            return False
        self.truth.append(float(truth))
        self.scores.append(value)
        return True

    @classmethod
    def from_arrays(cls, problem_type: str, min_labels: int, score_threshold: float, truth: np.ndarray,
                    predicted: np.ndarray, scores: np.ndarray, unusable_predictions: int) -> "QualityAccumulator":
        """An accumulator holding these pairs (a merge of shards' joins, monitoring/partials.py)."""
        accumulator = cls(problem_type, min_labels, score_threshold)
        for target, values in ((accumulator.truth, truth), (accumulator.predicted, predicted),
                               (accumulator.scores, scores)):
            target.frombytes(np.ascontiguousarray(values, dtype=target.typecode).tobytes())  # 'b' / 'd' are numpy's too
        accumulator.unusable_predictions = int(unusable_predictions)
        return accumulator

    def arrays(self) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
        """(truth, predicted, scores) as numpy arrays (copies)."""
        return tuple(np.frombuffer(values, dtype=values.typecode).copy()
                     for values in (self.truth, self.predicted, self.scores))

    @property
    def count(self) -> int:
        return len(self.truth)

    def merge(self, other: "QualityAccumulator") -> None:
        self.truth.extend(other.truth)
        self.predicted.extend(other.predicted)
        self.scores.extend(other.scores)
        self.unusable_predictions += other.unusable_predictions

    def result(self) -> dict:
        n = self.count
        result: dict = {
            "status": "ok",
            "label_count": n,
            "min_labels": self.min_labels,
            "unusable_predictions": self.unusable_predictions,
            "metrics": None,
        }
        if self.problem_type == "binary":
            truth = np.frombuffer(self.truth, dtype=np.int8) if n else np.zeros(0, dtype=np.int8)
            result["class_counts"] = {"0": int(n - truth.sum()), "1": int(truth.sum())}
        if n == 0:
            result["status"] = "no_labels"
        elif n < self.min_labels:
            result["status"] = "insufficient_data"
        elif self.problem_type == "binary":
            result["metrics"] = binary_metrics(
                np.frombuffer(self.truth, dtype=np.int8),
                np.frombuffer(self.predicted, dtype=np.int8),
                np.frombuffer(self.scores, dtype=np.float64),
            )
        else:
            result["metrics"] = regression_metrics(
                np.frombuffer(self.truth, dtype=np.float64), np.frombuffer(self.scores, dtype=np.float64)
            )
        return result


class QualityJoin:
    """Join the capture stream to ground-truth labels, per variant (see the module docstring)."""

    def __init__(
        self,
        labels: dict,
        problem_type: str,
        min_labels: int = DEFAULT_MIN_LABELS,
        score_threshold: float = 0.5,
    ) -> None:
        self.labels = labels
        self.labels_total = len(labels)
        self.problem_type = problem_type
        self.min_labels = min_labels
        self.score_threshold = score_threshold
        self.variants: dict = {}
        self.labels_used = 0
        self.joined_records = 0
        self.records_without_label = 0
        self.records_without_prediction = 0
        self.count_mismatch = 0
        # shard mode: one entry per label used, (inference id, variant, outcome, first entry in the
        # variant's accumulator, entries added, unusable predictions), so that a merge can undo the
        # use of a label another shard's earlier file used first (see merge_joins)
        self.journal: "list | None" = None

    def _accumulator(self, variant: str) -> QualityAccumulator:
        accumulator = self.variants.get(variant)
        if accumulator is None:
            accumulator = QualityAccumulator(self.problem_type, self.min_labels, self.score_threshold)
            self.variants[variant] = accumulator
        return accumulator

    def add_record(self, record: object) -> None:
        """Join one ``capture.CaptureRecord`` (uses its inference_id, variant and outputs)."""
        self.add(record.inference_id, record.variant, record.outputs)

    def add(self, inference_id: str, variant: str, outputs: list) -> None:
        """Join one captured record's predictions to its label(s), if there is one left."""
        truth = self.labels.pop(inference_id, None)
        if truth is None:
            self.records_without_label += 1
            return
        self.labels_used += 1
        journal = self.journal
        if not outputs:
            self.records_without_prediction += 1
            if journal is not None:
                journal.append((inference_id, variant, NO_PREDICTION, 0, 0, 0))
            return
        truths = truth if isinstance(truth, tuple) else (truth,)
        if len(truths) != len(outputs):
            self.count_mismatch += 1
            if journal is not None:
                journal.append((inference_id, variant, COUNT_MISMATCH, 0, 0, 0))
            return
        self.joined_records += 1
        accumulator = self._accumulator(variant)
        start, unusable = accumulator.count, accumulator.unusable_predictions
        for prediction, value in zip(outputs, truths):
            accumulator.add(prediction, value)
        if journal is not None:
            journal.append((inference_id, variant, JOINED, start, accumulator.count - start,
                            accumulator.unusable_predictions - unusable))

    def result(self) -> dict:
        overall = QualityAccumulator(self.problem_type, self.min_labels, self.score_threshold)
        variants = {}
        for name in sorted(self.variants):
            overall.merge(self.variants[name])
            variants[name] = self.variants[name].result()
        return {
            "join": {
                "labels": self.labels_total,
                "joined_records": self.joined_records,
                "labels_without_prediction": self.labels_total - self.labels_used,
                "records_without_label": self.records_without_label,
                "labelled_records_without_prediction": self.records_without_prediction,
                "instance_count_mismatch": self.count_mismatch,
            },
            "all": overall.result(),
            "variants": variants,
        }
