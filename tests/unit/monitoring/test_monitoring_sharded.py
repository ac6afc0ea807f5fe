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
    assert len(list(partials.glob("*.partial.npz"))) == shards
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


@pytest.fixture(scope="module")
def crossing(tmp_path_factory, build) -> Path:
    """Labels whose predictions sit in other shards' files, and inference ids captured in several
    files (a client retrying with its id), so that shards used the same label: numeric and
    categorical features, records without a prediction, a two-prediction record with one label,
    a variant whose only labelled record repeats an earlier file's id, malformed ground truth."""
    root = tmp_path_factory.mktemp("crossing")
    rng = np.random.default_rng(11)
    train = rng.normal(size=(1000, 2))
    baseline = build.make_baseline(train, ["f0", "f1"], (train[:, 1] > 0).astype(int))
    baseline["feature_names"].append("colour")
    baseline["features"]["colour"] = {"type": "categorical", "counts": {"red": 500, "blue": 400, "green": 100}}
    (root / "baseline").mkdir()
    (root / "baseline" / "baseline.json").write_text(json.dumps(baseline))

    def line(key: str, score: "float | None", minute: int, colour: str = "red", outputs: int = 1) -> str:
        row = rng.normal(size=2)
        request = build.payload(f"{row[0]!r},{row[1]!r},{colour}")
        response = None if score is None else build.payload("\n".join([repr(score)] * outputs), mode="OUTPUT")
        return build.capture_line(request, response, f"evt-{key}-{minute}", key, f"2024-05-01T12:{minute:02d}:00Z")

    files: dict = {}
    truth = []
    for variant in ("variant-a", "variant-b"):
        for part in range(6):
            lines = []
            for i in range(30):
                key = f"{variant}-{part}-{i}"
                lines.append(line(key, float(rng.random()), i, rng.choice(["red", "blue", "green", "violet"])))
                if i % 3:
                    truth.append(build.ground_truth_line(str(int(rng.random() > 0.5)), key))
            files[(variant, part)] = lines
    # the same id in several files (scores differ: which record keeps the label shows in the AUC)
    for number, places in enumerate([
        [("variant-a", 0), ("variant-a", 1)], [("variant-a", 2), ("variant-b", 0)],
        [("variant-a", 3), ("variant-a", 3), ("variant-b", 4)], [("variant-a", 5), ("variant-b", 1), ("variant-b", 2)],
    ]):
        key = f"retried-{number}"
        truth.append(build.ground_truth_line("1", key))
        for order, place in enumerate(places):
            files[place].append(line(key, 0.05 + 0.3 * order, 40 + order))
    truth.append(build.ground_truth_line("0", "no-output"))
    files[("variant-a", 1)].append(line("no-output", None, 45))  # the label's first record has no prediction
    files[("variant-b", 3)].append(line("no-output", 0.9, 46))
    truth.append(build.ground_truth_line("1", "two-outputs"))
    files[("variant-a", 4)].append(line("two-outputs", 0.6, 47, outputs=2))  # two predictions, one label
    files[("variant-b", 5)].append(line("two-outputs", 0.6, 48))
    truth.append(build.ground_truth_line("1", "late-variant"))
    files[("variant-a", 0)].append(line("late-variant", 0.7, 49))
    files[("variant-c", 0)] = [line("late-variant", 0.2, 50), line("unlabelled", 0.4, 51)]
    truth.append("{not json")
    for (variant, part), lines in files.items():
        build.write_lines(root / "capture" / "ep" / variant / "2024" / "05" / "01" / "12" / f"part-{part}.jsonl", lines)
    build.write_lines(root / "ground_truth" / "2024" / "05" / "01" / "14" / "labels.jsonl", truth)
    return root


def run_sharded(root: Path, tmp_path: Path, monkeypatch, shards: int) -> Path:
    partials = tmp_path / "partials"
    for index, directory in enumerate(split_capture(root, shards, tmp_path)):
        monkeypatch.setattr(monitor, "shard_name", lambda index=index: f"algo-{index + 1}")
        argv = ["--capture-dir", str(directory), "--shard-output", str(partials), *common(root, tmp_path / "unused")]
        assert monitor.main(argv) == 0
    return partials


@pytest.mark.parametrize("shards", [2, 3, 5])
def test_labels_used_in_several_shards_count_once(crossing: Path, tmp_path: Path, monkeypatch, shards: int) -> None:
    assert monitor.main(["--capture-dir", str(crossing / "capture"), *common(crossing, tmp_path / "single")]) == 0
    partials = run_sharded(crossing, tmp_path, monkeypatch, shards)
    # the merge reads no ground truth: it is not even given the directory
    merge_argv = [arg for arg in common(crossing, tmp_path / "merged") if arg != str(crossing / "ground_truth")]
    merge_argv.remove("--ground-truth-dir")
    assert monitor.main(["--partials-dir", str(partials), *merge_argv]) == 0

    single, merged = outputs(tmp_path / "single"), outputs(tmp_path / "merged")
    join = single[0]["quality"]["join"]
    assert join["records_without_label"] == 9  # every record of a used label after its first
    assert join["labelled_records_without_prediction"] == 1 and join["instance_count_mismatch"] == 1
    assert "variant-c" not in single[0]["quality"]["variants"]  # its one labelled record came too late
    assert single[0]["issues"]["by_category"].get("malformed_ground_truth") == 1
    # the shards did use some labels twice: without the merge's correction the counts would differ
    used = 0
    for path in sorted(partials.glob("*.partial.npz")):
        with np.load(path, allow_pickle=False) as archive:
            used += json.loads(archive["meta"].tobytes())["join"]["labels_used"]
    assert used > join["labels"] - join["labels_without_prediction"]
    assert merged == single


def test_partials_hold_no_pickle_and_bad_ones_exit_1(crossing: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    partials = run_sharded(crossing, tmp_path, monkeypatch, 2)
    for path in partials.glob("*.partial.npz"):
        with np.load(path, allow_pickle=False) as archive:  # would raise on an object array
            assert all(archive[name].dtype != object for name in archive.files)
    (partials / "algo-1.partial.npz").write_bytes(b"not a zip")
    assert monitor.main(["--partials-dir", str(partials), *common(crossing, tmp_path / "out")]) == 1
    assert "cannot read the shard partial" in capsys.readouterr().err


def test_a_partial_of_another_baseline_is_refused(crossing: Path, window: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    partials = run_sharded(crossing, tmp_path, monkeypatch, 2)
    assert monitor.main(["--partials-dir", str(partials), *common(window, tmp_path / "out")]) == 1
    assert "another baseline" in capsys.readouterr().err


def test_every_accumulator_state_survives_a_partial(build, monkeypatch) -> None:
    """Numeric, categorical (past the cap of new categories), text-feature and whole-document text
    statistics, written as a partial writes them (JSON) and loaded into fresh accumulators: their
    results and their merges are the originals'."""
    from monitoring import drift, partials
    from test_monitoring_text import FINANCE, SPORTS, corpus

    monkeypatch.setattr(drift, "MAX_NEW_CATEGORIES", 20)  # 40 records of ~60 categories pass it
    rng = np.random.default_rng(5)
    text = drift.build_text_baseline(corpus(SPORTS, 300, seed=1))
    baseline = build.make_baseline(rng.normal(size=(500, 1)), ["x"])
    baseline["feature_names"] += ["colour", "review"]
    baseline["features"]["colour"] = {"type": "categorical", "counts": {"red": 3, "blue": 1}}
    baseline["features"]["review"] = {"type": "text", **text}
    baseline["prediction"] = build.feature_statistics(rng.random(500))

    def accumulator(seed: int) -> "drift.DriftAccumulator":
        made = drift.DriftAccumulator(baseline, text)
        documents = corpus(SPORTS + FINANCE, 40, seed=seed)
        records = [type("Record", (), {
            "inputs": [[float(rng.normal()), f"c{int(rng.integers(0, 60))}", documents[i]], documents[i]],
            "outputs": [(float(rng.random()), None)], "file": "f", "line": i})() for i in range(40)]
        made.update(records)
        return made

    first, second = accumulator(1), accumulator(2)
    loaded = []
    for original in (first, second):
        state = json.loads(json.dumps(partials.encode_state(original)))
        fresh = drift.DriftAccumulator(baseline, text)
        partials.load_state(fresh, state["object"])
        assert fresh.result() == original.result() and fresh.test_inputs() == original.test_inputs()
        loaded.append(fresh)
    assert first.features[1].new_categories == 20 and first.text.documents == 40
    first.merge(second)
    loaded[0].merge(loaded[1])
    assert loaded[0].result() == first.result() and loaded[0].test_inputs() == first.test_inputs()
