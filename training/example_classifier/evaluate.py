"""Evaluate the trained model on the test split; write SageMaker model-quality metrics.

Runs unchanged in a SageMaker processing job and locally in the tests. It imports the stdlib,
numpy, pandas, scikit-learn and xgboost: the SageMaker XGBoost framework image has all of them
(the plain scikit-learn image has no xgboost), so run it in that image, the one that trained the
model, as a processing job.

Inputs:

- ``--model-dir`` (default ``/opt/ml/processing/model``): ``model.tar.gz`` as SageMaker delivers
  a training job's model, holding ``xgboost-model``; or an already extracted ``xgboost-model``.
  The model must output probabilities (objective ``binary:logistic``).
- ``--test-dir`` (default ``/opt/ml/processing/test``): header-less CSV files, the 0/1 label in
  the first column: ``preprocess.py``'s ``test/`` output.

Output: ``<--output-dir>/evaluation.json`` (default ``/opt/ml/processing/evaluation``), in the
model-quality layout of SageMaker model metrics (``sagemaker.model_metrics``), readable by a
pipeline ``JsonGet`` such as ``binary_classification_metrics.auc.value``::

    {
      "binary_classification_metrics": {
        "accuracy":  {"value": 0.97, "standard_deviation": "NaN"},
        "auc":       {"value": 0.99, "standard_deviation": "NaN"},
        "precision": {...}, "recall": {...}, "f1": {...}, "logloss": {...},
        "confusion_matrix": {"0": {"0": 30, "1": 2}, "1": {"0": 1, "1": 53}}
      },
      "test_row_count": 86
    }

With ``--baseline-dir`` (default ``/opt/ml/processing/baseline``) holding ``preprocess.py``'s
``baseline.json``, also ``<--output-dir>/baseline.json``: that baseline plus ``prediction`` (the
deciles of the model's scores on the test split), ``prediction_classes`` (its predicted classes
there) and ``prediction_reference``: what the monitoring job's score and predicted-class drift
tests compare production with (``docs/monitoring.md``). The pipeline registers this file as the
package's ``ModelDataQuality`` statistics.

Class predictions use a 0.5 probability threshold; precision, recall and f1 are for class 1;
the confusion matrix is keyed actual label first, then predicted label.

A missing or unreadable model, or an unusable test set (no CSV, no rows, labels other than 0/1,
a single class, a feature count the model does not expect) ends the job with exit status 1 and
one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

try:
    import xgboost as xgb
except ImportError:  # reported by main() as one clear line
    xgb = None

LOG = logging.getLogger("evaluate")

MODEL_FILE_NAME = "xgboost-model"
MODEL_ARCHIVE_NAME = "model.tar.gz"
THRESHOLD = 0.5


class EvaluationError(Exception):
    """The model or the test data cannot be used; the message names the file and problem."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/model"))
    parser.add_argument("--test-dir", type=Path, default=Path("/opt/ml/processing/test"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/evaluation"))
    parser.add_argument(
        "--baseline-dir", type=Path, default=Path("/opt/ml/processing/baseline"),
        help="preprocess.py's baseline output; when it holds baseline.json, the monitoring baseline is written",
    )
    return parser.parse_args(argv)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def read_model_bytes(model_dir: Path) -> tuple[bytes, str]:
    """The serialized model and where it came from: ``xgboost-model`` or inside ``model.tar.gz``."""
    direct = model_dir / MODEL_FILE_NAME
    if direct.is_file():
        return direct.read_bytes(), str(direct)
    archive = model_dir / MODEL_ARCHIVE_NAME
    if not archive.is_file():
        raise EvaluationError(f"no model in {model_dir}: expected {MODEL_ARCHIVE_NAME} or {MODEL_FILE_NAME}")
    try:
        # Read the member in memory: nothing from the archive is written to disk.
        with tarfile.open(archive, "r:*") as tar:
            members = [
                member
                for member in tar.getmembers()
                if member.isfile() and PurePosixPath(member.name).name == MODEL_FILE_NAME
            ]
            if not members:
                raise EvaluationError(f"{archive}: no {MODEL_FILE_NAME} inside the archive")
            member = min(members, key=lambda m: (len(PurePosixPath(m.name).parts), m.name))
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EvaluationError(f"{archive}: not a readable tar.gz archive ({_one_line(exc)})") from None
    return data, f"{archive}:{member.name}"


def load_model(model_dir: Path) -> xgb.Booster:
    data, source = read_model_bytes(model_dir)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as exc:
        raise EvaluationError(f"{source}: not an XGBoost model ({_one_line(exc)})") from None
    LOG.info("loaded model from %s", source)
    return booster


def load_test_set(test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and features of every header-less ``*.csv`` in ``test_dir``."""
    if not test_dir.is_dir():
        raise EvaluationError(f"test directory {test_dir} does not exist")
    files = sorted(path for path in test_dir.rglob("*.csv") if path.is_file())
    if not files:
        raise EvaluationError(f"no *.csv file found under {test_dir}")
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path, header=None)
        except pd.errors.EmptyDataError:
            continue  # an empty file adds no rows; an entirely empty test set is reported below
        if frame.shape[1] < 2 or not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
            raise EvaluationError(f"{path}: expected header-less numeric CSV, label first, then features")
        frames.append(frame)
    if not frames or sum(len(frame) for frame in frames) == 0:
        raise EvaluationError(f"test set under {test_dir} is empty: no data rows")
    if len({frame.shape[1] for frame in frames}) > 1:
        raise EvaluationError(f"test set under {test_dir}: files have different column counts")
    data = pd.concat(frames, ignore_index=True).to_numpy(dtype=np.float64)
    labels, features = data[:, 0], data[:, 1:]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise EvaluationError(f"test set under {test_dir}: first column must be the 0/1 label")
    if np.unique(labels).size < 2:
        raise EvaluationError(f"test set under {test_dir}: only one class present, AUC is undefined")
    return labels.astype(np.int64), features


def _metric(value: float) -> dict:
    return {"value": float(value), "standard_deviation": "NaN"}


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    predicted = (probabilities >= THRESHOLD).astype(np.int64)
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "binary_classification_metrics": {
            "accuracy": _metric(accuracy_score(labels, predicted)),
            "auc": _metric(roc_auc_score(labels, probabilities)),
            "precision": _metric(precision_score(labels, predicted, zero_division=0)),
            "recall": _metric(recall_score(labels, predicted, zero_division=0)),
            "f1": _metric(f1_score(labels, predicted, zero_division=0)),
            "logloss": _metric(log_loss(labels, probabilities, labels=[0, 1])),
            "confusion_matrix": {
                str(actual): {str(guess): int(matrix[actual, guess]) for guess in (0, 1)} for actual in (0, 1)
            },
        },
        "test_row_count": int(labels.size),
    }


def score_reference(probabilities: np.ndarray) -> dict:
    """The model's scores on the test split in the baseline's numeric layout (deciles as bins)."""
    edges = np.unique(np.quantile(probabilities, np.linspace(0.0, 1.0, 11)))
    if edges.size == 1:
        edges, counts = np.array([edges[0], edges[0]]), np.array([probabilities.size])
    else:
        counts, _ = np.histogram(probabilities, bins=edges)
    return {
        "type": "numeric",
        "count": int(probabilities.size),
        "mean": float(probabilities.mean()),
        "std": float(probabilities.std(ddof=1)) if probabilities.size > 1 else 0.0,
        "min": float(probabilities.min()),
        "max": float(probabilities.max()),
        "histogram": {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def monitoring_baseline(baseline: dict, probabilities: np.ndarray) -> dict:
    """The training baseline plus the references of the monitoring job's score and predicted-class
    tests, taken on held-out data: the model's own outputs (its predicted classes differ from the
    training labels' distribution, so the labels are no reference for them)."""
    positives = int(np.count_nonzero(probabilities >= THRESHOLD))
    return {
        **baseline,
        "prediction": score_reference(probabilities),
        "prediction_classes": {"0": int(probabilities.size - positives), "1": positives},
        "prediction_reference": {"split": "test", "rows": int(probabilities.size), "threshold": THRESHOLD},
    }


def evaluate(args: argparse.Namespace) -> dict:
    if xgb is None:
        raise EvaluationError("xgboost is not installed: run evaluate.py in the SageMaker XGBoost image")
    booster = load_model(args.model_dir)
    labels, features = load_test_set(args.test_dir)
    expected = booster.num_features()
    if features.shape[1] != expected:
        raise EvaluationError(
            f"test set under {args.test_dir} has {features.shape[1]} features, the model expects {expected}"
        )
    probabilities = booster.predict(xgb.DMatrix(features))
    if probabilities.ndim != 1 or probabilities.min() < 0.0 or probabilities.max() > 1.0:
        raise EvaluationError("model output is not a probability per row: train with binary:logistic")
    report = compute_metrics(labels, probabilities.astype(np.float64))

    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    baseline_path = args.baseline_dir / "baseline.json"
    if baseline_path.is_file():
        baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
        enriched = monitoring_baseline(baseline, probabilities.astype(np.float64))
        (args.output_dir / "baseline.json").write_text(json.dumps(enriched, indent=2, allow_nan=False) + "\n",
                                                       encoding="utf-8")
    summary = {k: v["value"] for k, v in report["binary_classification_metrics"].items() if "value" in v}
    LOG.info("wrote %s: %s", path, summary)
    return report


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    _configure_logging()
    args = parse_args(argv)
    try:
        evaluate(args)
    except EvaluationError as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
