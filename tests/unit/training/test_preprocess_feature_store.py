"""preprocess.py reading a feature group's offline store (Parquet files, append-only versions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.example_classifier import preprocess

FS_ARGS = ["--input-format", "feature-store", "--record-identifier", "customer_id",
           "--event-time-feature", "event_time"]


def offline_store_rows(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in range(n)],
        "event_time": 1_700_000_000.0 + np.arange(n),
        "f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2],
        "target": (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64),
        # Feature Store's metadata columns
        "write_time": pd.Timestamp("2026-11-01", tz="UTC"),
        "api_invocation_time": pd.Timestamp("2026-11-01", tz="UTC"),
        "is_deleted": False,
    })


def write_store(root: Path, frames: list[pd.DataFrame]) -> Path:
    """Lay files out like an Iceberg offline store: <group>-<ts>/data/<partition>/<file>.parquet."""
    data = root / "mlops-dev-customers-1764000000" / "data"
    for index, frame in enumerate(frames):
        part = data / f"event_time_day=2026-11-0{index + 1}"
        part.mkdir(parents=True)
        frame.to_parquet(part / f"{index:05d}.parquet", index=False)
    return root


def test_latest_version_of_each_record_minus_deletions(tmp_path):
    base = offline_store_rows(200)
    # A newer version of c0000..c0009 with flipped labels, and a deletion of c0010..c0019.
    updated = base.iloc[:10].copy()
    updated["event_time"] += 1_000_000
    updated["target"] = 1 - updated["target"]
    deleted = base.iloc[10:20].copy()
    deleted["event_time"] += 1_000_000
    deleted["is_deleted"] = True
    store = write_store(tmp_path / "in", [base, updated, deleted])

    current = preprocess.load_feature_store(store, "target", "customer_id", "event_time")

    assert len(current) == 190
    assert list(current.columns) == ["f1", "f2", "f3", "target"]
    expected_flipped = 1 - base.iloc[:10]["target"].to_numpy()
    merged = current.merge(updated[["f1", "target"]], on="f1", suffixes=("", "_new"))
    assert (merged["target"].to_numpy() == expected_flipped[: len(merged)]).all() and len(merged) == 10


def test_pipeline_runs_on_the_offline_store(tmp_path):
    store = write_store(tmp_path / "in", [offline_store_rows(300)])
    out = tmp_path / "out"
    assert preprocess.main(["--input-dir", str(store), "--output-dir", str(out), *FS_ARGS]) == 0
    names = json.loads((out / "baseline" / "feature_names.json").read_text())
    assert names == ["f1", "f2", "f3"]
    rows = sum(len(pd.read_csv(out / s / f"{s}.csv", header=None)) for s in ("train", "validation", "test"))
    assert rows == 300


def test_string_event_times_are_ordered_as_times(tmp_path):
    frame = offline_store_rows(100)
    frame["event_time"] = pd.to_datetime(frame["event_time"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    newer = frame.iloc[:1].copy()
    newer["event_time"] = "2030-01-01T00:00:00Z"
    newer["f1"] = 99.0
    store = write_store(tmp_path / "in", [frame, newer])
    current = preprocess.load_feature_store(store, "target", "customer_id", "event_time")
    assert 99.0 in set(current["f1"]) and len(current) == 100


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda f: f.drop(columns=["target"]), "column 'target' not found"),
        (lambda f: f.assign(f2="gold"), "feature column 'f2' is not numeric (row"),
        (lambda f: f.assign(is_deleted=True), "no current records"),
    ],
)
def test_unusable_offline_store_is_one_clear_line(tmp_path, capsys, mutate, message):
    store = write_store(tmp_path / "in", [mutate(offline_store_rows(100))])
    assert preprocess.main(["--input-dir", str(store), "--output-dir", str(tmp_path / "out"), *FS_ARGS]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_empty_offline_store(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert preprocess.main(["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "o"), *FS_ARGS]) != 0
    assert "no *.parquet file" in capsys.readouterr().err


def test_feature_store_mode_needs_its_columns_named(tmp_path):
    with pytest.raises(SystemExit):
        preprocess.main(["--input-dir", str(tmp_path), "--input-format", "feature-store"])
