"""A late-label recheck of a window publishes only its quality, timestamped when it ran (issue 15, defect 3).

Before, every run published all metrics at the window's end: a window's quality computed three
days later landed three days in the past, where the quality alarm (one period, the latest) never
looks, and its drift was published again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitoring import monitor

NAMES = ["f0", "f1"]
WINDOW = ["--window-start", "2024-05-01T12:00:00Z", "--window-end", "2024-05-01T13:00:00Z"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, build) -> Path:
    root = tmp_path_factory.mktemp("late-labels")
    rng = np.random.default_rng(5)
    train = rng.normal(size=(500, 2))
    (root / "baseline").mkdir()
    (root / "baseline" / "baseline.json").write_text(
        json.dumps(build.make_baseline(train, NAMES, (train[:, 1] > 0).astype(int))))
    lines, truth = [], []
    for i, row in enumerate(rng.normal(size=(200, 2)) + [2.0, 0.0]):  # f0 drifted
        key = f"id-{i}"
        lines.append(build.csv_line(row, float(row[1] > 0), key, inference_id=key, time=f"2024-05-01T12:{i % 60:02d}:00Z"))
        truth.append(build.ground_truth_line(str(int(rng.random() < 0.5)), key))  # labels unrelated to the score
    build.write_lines(build.hour_dir(root / "capture", "champion") / "a.jsonl", lines)
    build.write_lines(root / "ground_truth" / "2024" / "05" / "03" / "09" / "late.jsonl", truth)  # two days late
    return root


def metrics(job: Path, out: str, *extra: str) -> list[dict]:
    argv = ["--capture-dir", str(job / "capture"), "--baseline", str(job / "baseline"), "--ground-truth-dir",
            str(job / "ground_truth"), "--output-dir", str(job / out), "--workers", "1", "--endpoint", "churn",
            "--thresholds", json.dumps({"auc_min": 0.8}), *WINDOW, *extra]
    assert monitor.main(argv) == 0
    return json.loads((job / out / "cloudwatch_metrics.json").read_text())


def test_a_recheck_publishes_only_quality_at_its_own_time(job: Path) -> None:
    data = metrics(job, "recheck", "--metric-scope", "quality", "--metric-time", "2024-05-03T10:15:07Z")
    names = {datum["MetricName"] for datum in data}
    assert "AUC" in names and "LabelCount" in names
    assert names <= monitor.QUALITY_METRICS  # no DriftedFeatures: the drift alarm is not raised again
    assert {datum["Timestamp"] for datum in data} == {"2024-05-03T10:15:07Z"}


def test_a_first_analysis_publishes_everything_at_the_window_end(job: Path) -> None:
    data = metrics(job, "first", "--metric-time", "")  # the pipeline passes MetricTime="" then
    names = {datum["MetricName"] for datum in data}
    assert {"DriftedFeatures", "AUC"} <= names
    assert {datum["Timestamp"] for datum in data} == {"2024-05-01T13:00:00Z"}


def test_a_bad_metric_time_exits_1(job: Path, capsys) -> None:
    argv = ["--capture-dir", str(job / "capture"), "--baseline", str(job / "baseline"),
            "--output-dir", str(job / "bad"), "--metric-time", "yesterday"]
    assert monitor.main(argv) == 1
    assert "--metric-time" in capsys.readouterr().err
