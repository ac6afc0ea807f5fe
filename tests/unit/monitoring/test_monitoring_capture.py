"""Parsing data-capture and ground-truth files in SageMaker's documented JSON-lines format."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timezone

import pytest

from monitoring import capture
from monitoring.capture import CaptureScanner, Issues, Prediction


def parse(line: str, variant: str = "AllTraffic") -> capture.CaptureRecord:
    return capture.parse_capture_line(line.encode(), "ep", variant, "f.jsonl", 1)


def records_of(directory, **window) -> tuple[list, dict, Issues]:
    issues = Issues()
    scanner = CaptureScanner(directory, issues=issues, **window)
    records = list(scanner)
    return records, scanner.stats, issues


# --- encodings ------------------------------------------------------------------------------


def test_csv_encoding_with_inference_id(build) -> None:
    line = build.capture_line(
        build.payload("1.5,2,-3e2"), build.payload("0.87", mode="OUTPUT"), "evt-1", inference_id="inf-1"
    )
    record = parse(line)
    assert record.inference_id == "inf-1"
    assert record.event_id == "evt-1"
    assert record.time == "2024-05-01T12:30:00Z"
    assert record.inputs == [[1.5, 2.0, -300.0]]
    assert record.outputs == [Prediction(0.87, None)]


def test_without_inference_id_the_event_id_is_the_key(build) -> None:
    record = parse(build.capture_line(build.payload("1,2"), build.payload("0", mode="OUTPUT"), "evt-9", time=None))
    assert record.inference_id == "evt-9"
    assert record.time is None
    assert record.outputs == [Prediction(0.0, None)]


def test_csv_with_several_rows_text_values_quotes_and_empty_fields(build) -> None:
    body = '1,red,3\n4,"blue, dark",\n\n7,8,9\r\n'
    record = parse(build.capture_line(build.payload(body), build.payload("0.1\n0.9\n0.5", mode="OUTPUT"), "e"))
    assert record.inputs == [[1.0, "red", 3.0], [4.0, "blue, dark", None], [7.0, 8.0, 9.0]]
    assert [p.score for p in record.outputs] == [0.1, 0.9, 0.5]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"instances": [[1, 2], [3, 4]]}', [[1, 2], [3, 4]]),
        ('{"instances": [{"features": [1, 2]}, {"features": [3, 4]}]}', [[1, 2], [3, 4]]),
        ('{"features": [1, 2]}', [[1, 2]]),
        ('{"features": [[1, 2], [3, 4]]}', [[1, 2], [3, 4]]),
        ('[1, 2.5, null]', [[1, 2.5, None]]),
        ('[[1, 2], [3, 4]]', [[1, 2], [3, 4]]),
        ('{"age": 41, "plan": "gold"}', [{"age": 41, "plan": "gold"}]),
        ('[{"age": 41}, {"age": 7}]', [{"age": 41}, {"age": 7}]),
        ('"a short review"', ["a short review"]),
        ('{"inputs": "great product"}', ["great product"]),
        ('{"inputs": ["one", "two"]}', ["one", "two"]),
        ('{"text": "hello"}', ["hello"]),
        ("3.5", [[3.5]]),
    ],
)
def test_json_encoding_conventions(build, body: str, expected: list) -> None:
    record = parse(build.capture_line(build.payload(body, "JSON", "application/json"), None, "e"))
    assert record.inputs == expected
    assert record.outputs == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"predictions": [{"score": 0.8}]}', [Prediction(0.8, None)]),
        ('{"predictions": [{"score": 0.8, "predicted_label": 1}, {"score": 0.1, "predicted_label": 0}]}',
         [Prediction(0.8, "1"), Prediction(0.1, "0")]),
        ('{"predictions": [0.2, 0.7]}', [Prediction(0.2, None), Prediction(0.7, None)]),
        ('[[0.25, 0.75]]', [Prediction(0.75, None)]),
        ('{"probabilities": [0.3, 0.7]}', [Prediction(0.7, None)]),
        ('[{"label": "POSITIVE", "score": 0.99}]', [Prediction(0.99, "POSITIVE")]),
        ('{"predicted_label": true}', [Prediction(None, "1")]),
        ("0.42", [Prediction(0.42, None)]),
        ('[[0.1, 0.2, 0.7]]', [Prediction(None, "2")]),
    ],
)
def test_json_output_conventions(build, body: str, expected: list) -> None:
    record = parse(build.capture_line(None, build.payload(body, "JSON", "application/json", "OUTPUT"), "e"))
    assert record.outputs == expected


def test_base64_encoding_by_content_type(build) -> None:
    csv_record = parse(build.capture_line(build.payload("1,2,3", "BASE64", "text/csv"), build.payload("0.5", "BASE64", "text/csv", "OUTPUT"), "e"))
    assert csv_record.inputs == [[1.0, 2.0, 3.0]]
    assert csv_record.outputs == [Prediction(0.5, None)]
    json_record = parse(
        build.capture_line(
            build.payload('{"instances": [[1, 2]]}', "BASE64", "application/json"),
            build.payload('{"predictions": [{"score": 0.25}]}', "BASE64", "application/json", "OUTPUT"),
            "e",
        )
    )
    assert json_record.inputs == [[1, 2]]
    assert json_record.outputs == [Prediction(0.25, None)]
    text_record = parse(build.capture_line(build.payload("Ünïcode review text", "BASE64", "text/plain"), None, "e"))
    assert text_record.inputs == ["Ünïcode review text"]
    lines = parse(build.capture_line(build.payload('{"features": [1]}\n{"features": [2]}', "BASE64", "application/jsonlines"), None, "e"))
    assert lines.inputs == [[1], [2]]


def test_variant_and_endpoint_come_from_the_path(tmp_path, build) -> None:
    for variant in ("variant-a", "variant-b"):
        build.write_lines(build.hour_dir(tmp_path, variant) / "x.jsonl", [build.csv_line([1, 2], 0.5, f"{variant}-1")])
    build.write_lines(tmp_path / "flat.jsonl", [build.csv_line([1, 2], 0.5, "flat-1")])
    records, stats, _ = records_of(tmp_path)
    assert [(r.endpoint, r.variant, r.inference_id) for r in records] == [
        ("churn-endpoint", "variant-a", "variant-a-1"),
        ("churn-endpoint", "variant-b", "variant-b-1"),
        (None, "unknown", "flat-1"),
    ]
    assert records[0].file == "churn-endpoint/variant-a/2024/05/01/12/x.jsonl"
    assert stats["variants"] == {"unknown": 1, "variant-a": 1, "variant-b": 1}
    assert stats["endpoints"] == {"churn-endpoint": 2}
    assert stats["state"] == "ok"


# --- malformed input ------------------------------------------------------------------------


def test_malformed_lines_are_counted_with_file_line_and_reason(tmp_path, build) -> None:
    good = build.csv_line([1, 2], 0.5, "ok-1")
    lines = [
        good,
        '{"captureData": {"endpointInput": ',  # bad JSON
        build.capture_line({"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2", "encoding": "XML"}, None, "e2"),
        build.capture_line({"observedContentType": "text/csv", "mode": "INPUT", "data": "%%%", "encoding": "BASE64"}, None, "e3"),
        '["not", "an", "object"]',
        '{"captureData": {}, "eventVersion": "0"}',
        json.dumps({"captureData": {"endpointInput": build.payload("1,2")}, "eventMetadata": {}}),
        build.capture_line(build.payload("{oops", "JSON", "application/json"), None, "e4"),
        "",
        build.capture_line(
            {"observedContentType": "image/png", "mode": "INPUT", "encoding": "BASE64",
             "data": base64.b64encode(b"\x89PNG\r\n\x1a\n\xff\xd8").decode()},
            None,
            "e5",
        ),
        good.replace("ok-1", "ok-2"),
    ]
    path = build.write_lines(build.hour_dir(tmp_path, "AllTraffic") / "f.jsonl", lines)
    # a truncated last line (the writer stopped mid-record)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(good[: len(good) // 2])
    records, stats, issues = records_of(tmp_path)
    assert [r.inference_id for r in records] == ["ok-1", "ok-2"]
    assert stats["lines"] == 11 and stats["records"] == 2  # the blank line is not counted
    assert stats["malformed_lines"] == 8
    assert stats["unsupported_records"] == 1
    reasons = {e["line"]: e["reason"] for e in issues.examples}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8, 10, 12}
    assert reasons[2].startswith("invalid JSON")
    assert "unknown encoding 'XML'" in reasons[3]
    assert "BASE64 data does not decode" in reasons[4]
    assert reasons[5] == "line is not a JSON object"
    assert reasons[6] == "no eventMetadata object"
    assert "neither inferenceId nor eventId" in reasons[7]
    assert "JSON data does not parse" in reasons[8]
    assert "cannot be monitored" in reasons[10]
    assert reasons[12].startswith("truncated last line")
    assert all(e["file"] == "churn-endpoint/AllTraffic/2024/05/01/12/f.jsonl" for e in issues.examples)
    assert issues.counts == {"malformed_line": 8, "unsupported_content": 1}


def test_unreadable_file_and_non_utf8_line_are_reported_and_the_rest_is_read(tmp_path, build, monkeypatch) -> None:
    build.write_lines(tmp_path / "a" / "good.jsonl", [build.csv_line([1], 0.5, "g")])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    locked = build.write_lines(tmp_path / "c" / "locked.jsonl", [build.csv_line([1], 0.5, "h")])
    real_open = open

    def fake_open(path, *args, **kwargs):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(capture, "open", fake_open, raising=False)
    records, stats, issues = records_of(tmp_path)
    assert [r.inference_id for r in records] == ["g"]
    assert stats["malformed_lines"] == 1
    assert issues.counts == {"malformed_file": 1, "malformed_line": 1}
    by_file = {e["file"]: e for e in issues.examples}
    assert by_file["c/locked.jsonl"]["reason"] == "cannot open (Permission denied)"
    assert by_file["b/binary.jsonl"]["line"] == 1 and "utf-8" in by_file["b/binary.jsonl"]["reason"]


def test_issue_examples_are_capped_but_counts_are_complete() -> None:
    issues = Issues(max_examples=3)
    for line in range(10):
        issues.add("malformed_line", "f", line, "bad")
    other = Issues(max_examples=3)
    other.add("malformed_file", "g", None, "cannot open")
    issues.merge(other)
    summary = issues.to_dict()
    assert summary["total"] == 11 and len(summary["examples"]) == 3 and summary["examples_truncated"]
    assert summary["by_category"] == {"malformed_file": 1, "malformed_line": 10}


# --- windows and empty states ---------------------------------------------------------------


def test_missing_directory_no_files_and_empty_window_are_states(tmp_path, build) -> None:
    assert records_of(tmp_path / "nope")[1]["state"] == "missing_dir"
    assert records_of(tmp_path)[1]["state"] == "no_files"
    build.write_lines(build.hour_dir(tmp_path, "v") / "f.jsonl", [build.csv_line([1], 0.5, "e")])
    window = {
        "window_start": datetime(2024, 5, 2, 0, tzinfo=timezone.utc),
        "window_end": datetime(2024, 5, 2, 1, tzinfo=timezone.utc),
    }
    records, stats, _ = records_of(tmp_path, **window)
    assert records == [] and stats["state"] == "empty_window"
    assert stats["files_skipped_outside_window"] == 1 and stats["files_read"] == 0


def test_window_filters_records_by_inference_time(tmp_path, build) -> None:
    times = [
        "2024-05-01T11:59:59.999Z",  # before
        "2024-05-01T12:00:00Z",  # start: inclusive
        "2024-05-01T12:59:59.5Z",
        "2024-05-01T13:00:00Z",  # end: exclusive
        "2024-05-01T14:30:00+02:00",  # 12:30 UTC
        None,  # no time: kept, the file's hour is in the window
    ]
    lines = [build.csv_line([1], 0.5, f"e{i}", time=t) for i, t in enumerate(times)]
    build.write_lines(build.hour_dir(tmp_path, "v") / "f.jsonl", lines)
    build.write_lines(build.hour_dir(tmp_path, "v", "2024/05/01/13") / "g.jsonl", [build.csv_line([1], 0.5, "late", time=None)])
    build.write_lines(build.hour_dir(tmp_path, "v", "2024/04/01/13") / "old.jsonl", [build.csv_line([1], 0.5, "old")])
    window = {
        "window_start": capture.parse_time("2024-05-01T12:00:00Z"),
        "window_end": capture.parse_time("2024-05-01T13:00:00Z"),
    }
    records, stats, _ = records_of(tmp_path, **window)
    assert [r.inference_id for r in records] == ["e1", "e2", "e4", "e5"]
    assert stats["records_outside_window"] == 3
    assert stats["records_without_time"] == 1
    assert stats["files_skipped_outside_window"] == 1


def test_sub_second_window_bounds(tmp_path, build) -> None:
    lines = [build.csv_line([1], 0.5, f"e{i}", time=t) for i, t in enumerate(["2024-05-01T12:00:00.2Z", "2024-05-01T12:00:00.7Z"])]
    build.write_lines(build.hour_dir(tmp_path, "v") / "f.jsonl", lines)
    start = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)
    records, _, _ = records_of(tmp_path, window_start=start)
    assert [r.inference_id for r in records] == ["e1"]


def test_bad_inference_time_is_malformed_when_filtering(tmp_path, build) -> None:
    build.write_lines(build.hour_dir(tmp_path, "v") / "f.jsonl", [build.csv_line([1], 0.5, "e", time="yesterday")])
    records, stats, issues = records_of(tmp_path, window_start=datetime(2024, 5, 1, tzinfo=timezone.utc))
    assert records == [] and stats["malformed_lines"] == 1
    assert "not an ISO-8601 time" in issues.examples[0]["reason"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T14:00:00.123456789+02:00", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2024-05-01 12:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert capture.parse_time(text) == expected
    assert capture.time_key(text) == capture.time_key(expected)


# --- ground truth ---------------------------------------------------------------------------


def test_ground_truth_encodings_and_conventions(tmp_path, build) -> None:
    lines = [
        build.ground_truth_line("1", "a"),
        build.ground_truth_line("0", "b", "BASE64"),
        build.ground_truth_line('{"label": 1}', "c", "JSON"),
        build.ground_truth_line("[0, 1]", "d", "JSON"),
        build.ground_truth_line("1,0", "e"),
        build.ground_truth_line("true", "f", "JSON"),
        build.ground_truth_line("2", "g"),  # not binary
        '{"groundTruthData": {"data": "1", "encoding": "CSV"}}',  # no eventId
        "not json",
        build.ground_truth_line("0", "a"),  # a later label for "a" wins
    ]
    build.write_lines(tmp_path / "2024" / "05" / "01" / "13" / "labels.jsonl", lines)
    from monitoring.quality import label_converter

    issues = Issues()
    labels, stats = capture.load_ground_truth(tmp_path, label_converter("binary"), issues)
    assert labels == {"a": 0, "b": 0, "c": 1, "d": (0, 1), "e": (1, 0), "f": 1}
    assert stats["malformed_lines"] == 3 and stats["duplicate_ids"] == 1 and stats["labels"] == 6
    assert {e["line"] for e in issues.examples} == {7, 8, 9}
    assert all(e["category"] == "malformed_ground_truth" for e in issues.examples)


def test_ground_truth_files_as_firehose_writes_them(tmp_path, build) -> None:
    """Firehose objects have no extension and may be gzip-compressed; hidden files are skipped."""
    hour = tmp_path / "2024" / "05" / "01" / "13"
    build.write_lines(hour / "feedback-stream-1-2024-05-01-13-00-00-abc", [build.ground_truth_line("1", "a")])
    with gzip.open(hour / "feedback-stream-1-2024-05-01-13-05-00-def", "wt", encoding="utf-8") as handle:
        handle.write(build.ground_truth_line("0", "b") + "\n")
    build.write_lines(tmp_path / ".staging" / "partial", [build.ground_truth_line("1", "c")])
    (hour / "broken.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    issues = Issues()
    labels, stats = capture.load_ground_truth(tmp_path, issues=issues)
    assert labels == {"a": [1.0], "b": [0.0]}  # the default convert keeps the parsed values
    assert stats["files"] == 3
    assert issues.counts == {"malformed_file": 1}
    assert issues.examples[0]["file"] == "2024/05/01/13/broken.gz"


@pytest.mark.parametrize("patterns", [("*.jsonl",), ("*.jsonl", "*.json"), None, ()])
def test_files_are_found_as_a_recursive_glob_finds_them(tmp_path, patterns) -> None:
    """Hidden files and folders, folders named like files, links to files and folders, broken
    links, a folder name that sorts differently from its path: the rglob-based search's answer."""
    for name in ("a/b/x.jsonl", "a/b/y.json", "a/.hidden/z.jsonl", "a/.w.jsonl", "a-b/c.jsonl", "a/b-c/d.jsonl",
                 "top.jsonl", "deep/1/2/3/e.jsonl", "other/f.txt", "link-target/g.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "a" / "linked.jsonl").symlink_to(tmp_path / "top.jsonl")
    (tmp_path / "a" / "broken.jsonl").symlink_to(tmp_path / "missing.jsonl")
    (tmp_path / "linked-folder").symlink_to(tmp_path / "link-target", target_is_directory=True)

    def by_rglob(directory, patterns):
        found = set()
        for pattern in patterns or ("*",):
            for path in directory.rglob(pattern):
                relative = path.relative_to(directory)
                if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                    found.add(path)
        return sorted(found, key=lambda path: path.relative_to(directory).as_posix())

    for directory in (tmp_path, tmp_path / "a", tmp_path / "a" / ".hidden"):
        assert capture.find_files(directory, patterns) == by_rglob(directory, patterns)
    assert capture.find_files(tmp_path / "a", patterns)


def test_gzip_capture_file(tmp_path, build) -> None:
    path = build.hour_dir(tmp_path, "v") / "f.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress((build.csv_line([1, 2], 0.5, "z") + "\n").encode()))
    records, stats, _ = records_of(tmp_path)
    assert [r.inference_id for r in records] == ["z"] and stats["malformed_lines"] == 0


def test_ground_truth_states(tmp_path) -> None:
    assert capture.load_ground_truth(tmp_path / "missing")[1]["state"] == "missing_dir"
    assert capture.load_ground_truth(tmp_path)[1]["state"] == "no_files"
    (tmp_path / "x.jsonl").write_text("garbage\n")
    assert capture.load_ground_truth(tmp_path)[1]["state"] == "empty"


def test_fast_path_and_checked_path_agree(build) -> None:
    line = build.csv_line([1.25, -2, 3e-5], 0.125, "evt", inference_id="inf")
    fast = parse(line)
    checked = capture.parse_capture_object(json.loads(line), "ep", "AllTraffic", "f.jsonl", 1)
    assert fast == checked
