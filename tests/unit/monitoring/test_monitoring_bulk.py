"""The bulk capture reader (``CaptureScanner.read_file_bulk`` + ``DriftAccumulator.update_csv``)
against the line-by-line reader it replaces on the job's path: on the same files, the same
report, metrics and carry, issues included; and the accumulator's state equal batch by batch,
whichever values the rows hold."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from monitoring import capture, drift, monitor

NUMERIC = ["f0", "f1", "f2"]
WINDOW = ["--window-start", "2024-05-01T12:00:00Z", "--window-end", "2024-05-01T13:00:00Z"]
VOLATILE = ("generated_at", "duration_seconds", "inputs")
LEVELS = {"colour": ["red", "green", "blue"], "size": ["1", "2", "3"], "tier": ["bronze-customer-tier", "gold"]}


def line(data: str, output: str = "0.5", event: str = "e", inference: "str | None" = None,
         time: "str | None" = "2024-05-01T12:30:00Z", ascii_only: bool = True) -> str:
    """A capture line in SageMaker's own compact layout (what the bulk reader takes)."""
    meta = {"eventId": event}
    if inference is not None:
        meta["inferenceId"] = inference
    if time is not None:
        meta["inferenceTime"] = time
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": data, "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT", "data": output,
                               "encoding": "CSV"},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    }, separators=(",", ":"), ensure_ascii=ascii_only)


def odd_lines(build, width: int) -> list:
    """Every kind of line the job meets besides clean CSV records."""
    row = ",".join(["0.5"] * width)
    json_row = json.dumps({"instances": [[0.25] * width]})
    return [
        "",  # blank
        "   ",
        "{not json",
        line(row, time="2024-05-01T11:59:59Z"),  # before the window
        line(row, time="2024-05-01T13:00:00Z"),  # at its (exclusive) end
        line(row, time="2024-05-01T12:10:00.250+00:00"),
        line(row, time=None),  # no time: kept, its hour is inside
        line(row, time="yesterday"),  # malformed when filtering
        line(row, inference=""),  # empty inference id: the event id is the key
        line(row, output="yes"),  # a label
        line(row, output="0.2,0.8"),  # class probabilities
        line(row, output=""),  # no prediction
        line(row, output="1_0"),
        line(",".join(["1_5"] * width)),
        line(",".join([" 1.5"] * width)),
        line(",".join(["-0"] * width)),
        line(",".join(["1e400"] * width)),
        line(",".join(["nan"] * width)),
        line(",".join(["0.5"] * (width + 1))),  # too many values: rejected row
        line(",".join(["0.5"] * (width - 1))),  # too few
        line(",".join(["0.5"] * (width - 1)) + ","),  # an empty value
        line(""),
        line('0.5,"quoted",0.5'),
        line(row, event="tab").replace('"data":"', '"data":"\t', 1),  # a raw tab in a string: invalid JSON
        line(row, event="tab-outside").replace('"captureData":', '"captureData":\t', 1),  # JSON white space
        line("0.5\t,0.5,0.5" + ",0.5" * (width - 3)),  # an escaped tab
        line("caf\u00e9," + ",".join(["0.5"] * (width - 1))),  # escaped non-ASCII
        line("caf\u00e9," + ",".join(["0.5"] * (width - 1)), ascii_only=False),  # raw UTF-8
        build.capture_line(build.payload(json_row, "JSON", "application/json"), build.payload("0.75", mode="OUTPUT"),
                           "json-1", "json-1"),
        build.capture_line(build.payload(row, "BASE64"), build.payload("0.75", mode="OUTPUT"), "b64-1"),
        json.dumps(json.loads(line(row, event="spaced", inference="spaced"))),  # json.dumps' own spacing
        line(row, event="no-output").replace(
            ',"endpointOutput":{"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT","data":"0.5",'
            '"encoding":"CSV"}', ""),
    ]


def write_window(root: Path, build, categorical: bool) -> Path:
    rng = np.random.default_rng(11)
    train = rng.normal(size=(500, len(NUMERIC)))
    names = list(NUMERIC)
    extra = {}
    if categorical:
        names += list(LEVELS)
    baseline = build.make_baseline(train, NUMERIC, (train[:, 0] > 0).astype(int), **extra)
    if categorical:
        baseline["feature_names"] = names
        for name, levels in LEVELS.items():
            baseline["features"][name] = {"type": "categorical", "counts": {level: 10 + i for i, level in enumerate(levels)}}
    (root / "baseline").mkdir(parents=True)
    (root / "baseline" / "baseline.json").write_text(json.dumps(baseline))
    width = len(names)
    truth = []
    files = 0
    for variant, shift in (("variant-a", 0.0), ("variant-b", 0.7)):
        hour = build.hour_dir(root / "capture", variant)
        for part in range(3):
            lines = []
            for i in range(60):
                key = f"{variant}-{part}-{i}"
                values = [f"{v:.6g}" for v in rng.normal(size=len(NUMERIC)) + shift]
                if categorical:
                    values += [levels[int(rng.integers(len(levels)))] for levels in LEVELS.values()]
                lines.append(line(",".join(values), f"{rng.random():.6f}", f"evt-{key}",
                                  key if i % 4 else None, f"2024-05-01T12:{i % 60:02d}:{i % 7:02d}Z"))
                if i % 3:
                    truth.append(build.ground_truth_line(str(i % 2), key if i % 4 else f"evt-{key}"))
            odd = odd_lines(build, width)
            for index, extra_line in enumerate(odd):  # spread through the file
                lines.insert((index * 7 + part * 5) % len(lines), extra_line)
            path = build.write_lines(hour / f"part-{part}.jsonl", lines, trailing_newline=part != 1)
            if part == 2:  # CRLF line ends and a truncated last record
                path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + lines[5][:40].encode())
            files += 1
        # every row numeric in a categorical baseline (category codes), then a gzip file
        numbers_only = [line(",".join(["0.5"] * len(NUMERIC) + ["2"] * (width - len(NUMERIC))), "0.25", f"n-{variant}-{i}")
                        for i in range(30)]
        build.write_lines(hour / "numbers-only.jsonl", numbers_only)
        half = numbers_only[:15] + [line(",".join(["0.5"] * len(NUMERIC) + ["red"] * (width - len(NUMERIC))),
                                         "0.25", f"h-{variant}-{i}") for i in range(15)]
        build.write_lines(hour / "half-numbers.jsonl", half)
        (hour / "zipped.jsonl").write_bytes(gzip.compress(("\n".join(numbers_only[:10]) + "\n").encode()))
    build.write_lines(root / "ground_truth" / "2024" / "05" / "01" / "14" / "labels.jsonl", truth)
    return root


def run(root: Path, out: Path, bulk: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(monitor, "BULK_READER", bulk)
    argv = ["--capture-dir", str(root / "capture"), "--baseline", str(root / "baseline"),
            "--ground-truth-dir", str(root / "ground_truth"), "--output-dir", str(out),
            "--carry", str(out / "carry.json"), "--workers", "1", *WINDOW]
    assert monitor.main(argv) == 0
    document = json.loads((out / "report.json").read_text())
    for key in VOLATILE:
        document.pop(key)
    return (document, json.loads((out / "cloudwatch_metrics.json").read_text()),
            json.loads((out / "carry.json").read_text()))


@pytest.mark.parametrize("categorical", [False, True], ids=["numeric", "categorical"])
@pytest.mark.parametrize("batch, chunk", [(10000, 1 << 22), (7, 700)], ids=["default", "small-batches-and-chunks"])
def test_bulk_reader_gives_the_line_readers_report(tmp_path, build, monkeypatch, categorical, batch, chunk) -> None:
    root = write_window(tmp_path / "window", build, categorical)
    monkeypatch.setattr(monitor, "BATCH_SIZE", batch)
    monkeypatch.setattr(capture, "BULK_CHUNK_BYTES", chunk)
    bulk_batches = []
    real = drift.DriftAccumulator.update_csv

    def counted(self, data, scores):
        done = real(self, data, scores)
        bulk_batches.append(done)
        return done

    monkeypatch.setattr(drift.DriftAccumulator, "update_csv", counted)
    reference = run(root, tmp_path / "lines", False, monkeypatch)
    assert not bulk_batches
    bulk = run(root, tmp_path / "bulk", True, monkeypatch)
    assert bulk == reference
    assert any(bulk_batches)  # batches of blocks only went through update_csv
    if categorical and batch == 7:
        assert not all(bulk_batches)  # ... which declined some (only some rows all numeric)
    document = reference[0]
    assert document["capture"]["malformed_lines"] > 0 and document["issues"]["by_category"]["rejected_row"] > 0
    assert document["quality"]["join"]["joined_records"] > 0


BASE = ["0.5", "-1.25", "3"]


def rows_cases() -> list:
    """Batches of CSV rows (numeric f0-f2, then colour, size, tier) and whether update_csv takes
    them with the categorical baseline and with the numeric one (the first three values)."""
    plain = [",".join(BASE + ["red", "1", "gold"]), ",".join(BASE + ["blue", "x", "bronze-customer-tier"])]
    return [
        (plain * 3, True, True),
        ([",".join([" 1.5", "-0", "1e400"] + ["green", "", "gold"])] * 2, True, True),  # padding, -0, overflow, empty
        ([",".join(["nan", "inf", "-inf"] + ["red", "2", "gold "])], True, True),
        ([",".join(BASE + ["1", "2", "3"])] * 4, True, True),  # every value numeric: the rows are floats
        ([",".join(BASE + ["1", "2", "3"]), plain[0]], False, True),  # only some rows all numeric
        ([",".join(BASE + ["1.50", "02", "3e0"])], True, True),
        ([",".join(BASE + ["a-category-value-longer-than-16", "b", "c"])] * 2, True, True),
        ([",".join(BASE + ["eight888", "seven77", "16-bytes-value-x"])], True, True),
        ([",".join(["1_0"] + BASE[1:] + ["red", "1", "gold"])], False, False),  # float() takes it, numpy does not
        ([",".join(BASE + ["red", "1"])], False, True),  # too few values
        ([",".join(BASE + ["red", "1", "gold", "extra"])], False, True),  # too many
        ([",".join(["x"] + BASE[1:] + ["red", "1", "gold"])], False, False),  # text in a numeric column
        (["", ""], False, False),
    ]


@pytest.mark.parametrize("categorical", [False, True], ids=["numeric", "categorical"])
def test_update_csv_equals_update_on_the_same_records(build, categorical) -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(300, 3))
    baseline = build.make_baseline(train, NUMERIC, (train[:, 0] > 0).astype(int))
    if categorical:
        baseline["feature_names"] = NUMERIC + list(LEVELS)
        for name, levels in LEVELS.items():
            baseline["features"][name] = {"type": "categorical", "counts": {level: 5 for level in levels}}
    file = capture.CaptureFile(Path("f.jsonl"), "f.jsonl", "ep", "v", None, True)
    for rows, with_categories, numeric_only in rows_cases():
        expected = with_categories if categorical else numeric_only
        if not categorical:
            rows = [",".join(row.split(",")[:3]) for row in rows]
        data = [row.encode() for row in rows]
        scores = [0.1 * (i % 10) for i in range(len(rows))]
        block = capture.CaptureBlock(data, scores, [b"e"] * len(rows), [None] * len(rows),
                                     [b"2024-05-01T12:00:00Z"] * len(rows), list(range(1, len(rows) + 1)), file)
        bulk, reference = drift.DriftAccumulator(baseline), drift.DriftAccumulator(baseline)
        reference.update(block.records())
        assert bulk.update_csv(data, np.array(scores)) is expected, rows
        if not expected:
            continue
        for accumulator in (bulk, reference):  # a second batch on top of the first
            accumulator.update(block.records()[:1])
        assert json.dumps(bulk.result(), sort_keys=True) == json.dumps(reference.result(), sort_keys=True), rows
        assert bulk.test_inputs() == reference.test_inputs(), rows


def test_records_of_a_block_are_the_parsers(tmp_path, build) -> None:
    lines = [line("1.5,2,x", "0.25", "e1", "i1"), line("1,2,3", "0.5", "e2"), line("4,5,6", "1e-3", "e3", "")]
    path = build.write_lines(build.hour_dir(tmp_path, "AllTraffic") / "f.jsonl", lines)
    scanner = capture.CaptureScanner(tmp_path)
    (file,) = scanner.files()
    items = list(scanner.read_file_bulk(file, {}, capture.Issues()))
    assert [type(item) for item in items] == [capture.CaptureBlock]
    parsed = [capture.parse_capture_line(text.encode(), "churn-endpoint", "AllTraffic", file.label, number)
              for number, text in enumerate(lines, 1)]
    assert items[0].records() == parsed
    assert items[0].keys() == ["i1", "e2", "e3"]
    assert path.exists()


def test_update_csv_on_a_full_batch(build) -> None:
    """A job-sized batch (10,000 rows, large values): the moments, sums of floats, are the same
    to the last bit (the columns reach the features laid out as the record path lays them out)."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(300, 3))
    baseline = build.make_baseline(train, NUMERIC, (train[:, 0] > 0).astype(int))
    baseline["feature_names"] = NUMERIC + ["colour"]
    baseline["features"]["colour"] = {"type": "categorical", "counts": {"red": 3, "blue": 4}}
    for names in (NUMERIC, NUMERIC + ["colour"]):
        baseline_now = dict(baseline, feature_names=names)
        values = rng.normal(size=(10_000, 3)) * 1e3 + 1e6
        rows = [",".join(repr(v) for v in row) + (",red" if len(names) == 4 else "") for row in values.tolist()]
        data = [row.encode() for row in rows]
        scores = rng.random(len(rows))
        file = capture.CaptureFile(Path("f.jsonl"), "f.jsonl", "ep", "v", None, True)
        block = capture.CaptureBlock(data, scores.tolist(), [b"e"] * len(rows), [None] * len(rows),
                                     [b"t"] * len(rows), range(1, len(rows) + 1), file)
        bulk, reference = drift.DriftAccumulator(baseline_now), drift.DriftAccumulator(baseline_now)
        reference.update(block.records())
        assert bulk.update_csv(data, scores)
        for mine, theirs in zip(bulk.features[:3], reference.features[:3]):
            assert (mine.moments.mean, mine.moments.m2) == (theirs.moments.mean, theirs.moments.m2)
        assert json.dumps(bulk.result(), sort_keys=True) == json.dumps(reference.result(), sort_keys=True)


@pytest.mark.parametrize("edges", [[-1.0, 0.0, 0.5, 2.0], [0.0, 0.0], [-0.0, 1.0, 1.0 + 2 ** -52], list(range(20))])
def test_numeric_cells_count_as_searchsorted_does(edges) -> None:
    spec = {"histogram": {"bin_edges": edges, "counts": [1] * (len(edges) - 1)}}
    values = np.array(edges + [-0.0, 0.0, -5.0, 5.0, 0.25, 1.0, 30.0] + list(np.nextafter(edges, np.inf)), dtype=np.float64)
    feature = drift.NumericDrift("x", spec)
    feature.update(values)
    expected = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right"),
                           minlength=len(edges) + 1)
    assert feature.cells.tolist() == expected.tolist()


def test_default_workers_follow_the_capture_size(tmp_path, monkeypatch) -> None:
    files = []
    for index, size in enumerate((600, 500, 300)):
        path = tmp_path / f"{index}.jsonl"
        path.write_bytes(b"x" * size)
        files.append(capture.CaptureFile(path, path.name, None, "v", None, True))
    files.append(capture.CaptureFile(tmp_path / "gone.jsonl", "gone.jsonl", None, "v", None, True))
    monkeypatch.setattr(monitor.os, "sched_getaffinity", lambda _: set(range(4)))
    monkeypatch.setattr(monitor, "WORKER_BYTES", 1000)
    assert monitor.default_workers(files[:1]) == 1
    assert monitor.default_workers(files) == 2  # 1,400 bytes
    monkeypatch.setattr(monitor, "WORKER_BYTES", 100)
    assert monitor.default_workers(files) == 4  # at most one per CPU
    assert monitor.default_workers() == 1


@pytest.mark.parametrize("size, levels", [(0, 1), (1, 1), (10_000, 3), (10_000, 5000)])
def test_factorize_integers_is_pandas_factorize(size, levels) -> None:
    import pandas as pd

    values = np.random.default_rng(size + levels).integers(0, levels, size).astype(np.uint64) * np.uint64(2 ** 40)
    codes, distinct = drift.factorize_integers(values)
    expected_codes, expected_distinct = pd.factorize(values)
    assert codes.tolist() == expected_codes.tolist() and distinct.tolist() == list(expected_distinct)
