"""Sharded monitoring: N instances each write partial statistics of their capture files, and the
merge step's report, metrics and carry equal one instance's over the same files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitoring import monitor

NAMES = ["f0", "f1", "f2"]
WINDOW = ["--window-start", "2024-05-01T12:00:00Z", "--window-end", "2024-05-01T13:00:00Z"]
# A run's own bookkeeping, not statistics.
VOLATILE = ("generated_at", "duration_seconds", "inputs")


@pytest.fixture(scope="module")
def window(tmp_path_factory, build) -> Path:
    """Two variants over eight capture files (one variant drifts, broken lines), labels for most."""
    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(7)
    train = rng.normal(size=(2000, 3))
    (root / "baseline").mkdir()
    (root / "baseline" / "baseline.json").write_text(
        json.dumps(build.make_baseline(train, NAMES, (train[:, 1] > 0).astype(int)))
    )
    truth = []
    for variant, shift in (("variant-a", 0.0), ("variant-b", 0.8)):
        rows = rng.normal(size=(400, 3))
        rows[:, 0] += shift
        scores = 1 / (1 + np.exp(-3 * rows[:, 1]))
        lines = []
        for i, (row, score) in enumerate(zip(rows, scores)):
            key = f"{variant}-{i}"
            lines.append(build.csv_line(row, score, f"evt-{key}", key, f"2024-05-01T12:{i % 60:02d}:00Z"))
            if i % 5:
                truth.append(build.ground_truth_line(str(int(row[1] > 0)), key))
        lines.insert(3, "{broken")
        hour = root / "capture" / "ep" / variant / "2024" / "05" / "01" / "12"
        for part in range(4):
            build.write_lines(hour / f"part-{part}.jsonl", lines[part::4])
    build.write_lines(root / "ground_truth" / "2024" / "05" / "01" / "14" / "labels.jsonl", truth)
    return root


def common(root: Path, out: Path) -> list:
    return [
        "--baseline", str(root / "baseline"), "--ground-truth-dir", str(root / "ground_truth"),
        "--output-dir", str(out), "--carry", str(out / "carry.json"), "--workers", "1", *WINDOW,
    ]


def split_capture(root: Path, shards: int, target: Path) -> list:
    """Each capture file copied to one shard's directory, round-robin (as ShardedByS3Key does),
    keeping its relative path; shard directories without a file are not created."""
    files = sorted(path for path in (root / "capture").rglob("*.jsonl"))
    directories = [target / f"shard-{index}" for index in range(shards)]
    for number, path in enumerate(files):
        destination = directories[number % shards] / path.relative_to(root / "capture")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, destination)
    return directories


def outputs(out: Path) -> tuple:
    document = json.loads((out / "report.json").read_text())
    for key in VOLATILE:
        document.pop(key)
    metrics = json.loads((out / "cloudwatch_metrics.json").read_text())
    return document, metrics, json.loads((out / "carry.json").read_text())


@pytest.mark.parametrize("shards", [3, 10])  # 10 > 8 files: two instances get no file at all
def test_sharded_then_merged_equals_a_single_pass(window: Path, tmp_path: Path, monkeypatch, shards: int) -> None:
    assert monitor.main(["--capture-dir", str(window / "capture"), *common(window, tmp_path / "single")]) == 0
    partials = tmp_path / "partials"
    for index, directory in enumerate(split_capture(window, shards, tmp_path)):
        monkeypatch.setattr(monitor, "shard_name", lambda index=index: f"algo-{index + 1}")
        argv = ["--capture-dir", str(directory), "--shard-output", str(partials), *common(window, tmp_path / "unused")]
        assert monitor.main(argv) == 0
    assert not (tmp_path / "unused" / "report.json").exists()  # a shard writes no report
    assert len(list(partials.glob("*.partial.pkl"))) == shards
    assert monitor.main(["--partials-dir", str(partials), *common(window, tmp_path / "merged")]) == 0

    single, merged = outputs(tmp_path / "single"), outputs(tmp_path / "merged")
    document = single[0]
    assert document["capture"]["records"] == 800 and document["capture"]["malformed_lines"] == 2
    assert document["quality"]["status"] == "ok"
    # counts, histograms, sums, the joined labels and the decisions: identical, not merely close
    assert merged == single


def test_merge_without_partials_exits_1(window: Path, tmp_path: Path, capsys) -> None:
    assert monitor.main(["--partials-dir", str(tmp_path / "none"), *common(window, tmp_path / "out")]) == 1
    assert "no shard partials" in capsys.readouterr().err


def test_listing_states_merge() -> None:
    listing = {"files_found": 0, "files_skipped_outside_window": 0}
    assert monitor.merge_listings([dict(listing, state="missing_dir"), dict(listing, state="no_files")])["state"] == "no_files"
    assert monitor.merge_listings([dict(listing, state="missing_dir")] * 2)["state"] == "missing_dir"
    merged = monitor.merge_listings([dict(listing, state="ok", files_found=3), dict(listing, state="missing_dir")])
    assert merged == {"state": "ok", "files_found": 3, "files_skipped_outside_window": 0}
