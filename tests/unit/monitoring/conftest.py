"""Builders for the monitoring tests: capture and ground-truth lines in SageMaker's documented
format, baselines in the layout of ``training/example_classifier/preprocess.py``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest


def payload(data: str, encoding: str = "CSV", content_type: str = "text/csv", mode: str = "INPUT") -> dict:
    """One ``endpointInput``/``endpointOutput`` object; BASE64 encodes ``data`` here."""
    if encoding == "BASE64":
        data = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def capture_line(
    request: dict | None,
    response: dict | None,
    event_id: str,
    inference_id: str | None = None,
    time: str | None = "2024-05-01T12:30:00Z",
) -> str:
    capture = {}
    if request is not None:
        capture["endpointInput"] = request
    if response is not None:
        capture["endpointOutput"] = response
    meta = {"eventId": event_id}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    if time is not None:
        meta["inferenceTime"] = time
    return json.dumps({"captureData": capture, "eventMetadata": meta, "eventVersion": "0"})


def csv_line(row, score: float, event_id: str, inference_id: str | None = None, time: str | None = "2024-05-01T12:30:00Z") -> str:
    return capture_line(
        payload(",".join(repr(float(x)) for x in row)),
        payload(repr(float(score)), mode="OUTPUT"),
        event_id,
        inference_id,
        time,
    )


def ground_truth_line(label: object, event_id: str, encoding: str = "CSV") -> str:
    data = label if encoding != "BASE64" else base64.b64encode(str(label).encode()).decode()
    return json.dumps(
        {"groundTruthData": {"data": data, "encoding": encoding}, "eventMetadata": {"eventId": event_id}, "eventVersion": "0"}
    )


def feature_statistics(values: np.ndarray) -> dict:
    """The numeric-feature statistics of preprocess.py's baseline (same code, no pandas)."""
    values = np.asarray(values, dtype=np.float64)
    quantiles = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
        counts = np.array([values.size])
    else:
        counts, _ = np.histogram(values, bins=edges)
    return {
        "type": "numeric",
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {format(q, "g"): float(v) for q, v in zip(quantiles, np.quantile(values, quantiles))},
        "histogram": {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def make_baseline(train: np.ndarray, names: list, labels: np.ndarray | None = None, **extra) -> dict:
    labels = np.zeros(len(train), dtype=int) if labels is None else np.asarray(labels)
    document = {
        "version": 1,
        "target_column": "target",
        "feature_names": list(names),
        "row_count": int(len(train)),
        "features": {name: feature_statistics(train[:, i]) for i, name in enumerate(names)},
        "label_distribution": {"0": int((labels == 0).sum()), "1": int((labels == 1).sum())},
    }
    document.update(extra)
    return document


def write_lines(path: Path, lines: list, trailing_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    path.write_text(text, encoding="utf-8")
    return path


def hour_dir(root: Path, variant: str, hour: str = "2024/05/01/12", endpoint: str = "churn-endpoint") -> Path:
    return root / endpoint / variant / hour


class Builders:
    payload = staticmethod(payload)
    capture_line = staticmethod(capture_line)
    csv_line = staticmethod(csv_line)
    ground_truth_line = staticmethod(ground_truth_line)
    feature_statistics = staticmethod(feature_statistics)
    make_baseline = staticmethod(make_baseline)
    write_lines = staticmethod(write_lines)
    hour_dir = staticmethod(hour_dir)


@pytest.fixture(scope="session")
def build() -> type:
    """Test-data builders (see the module docstring)."""
    return Builders
