"""Stream-parse SageMaker data-capture files and ground-truth files into typed records.

Data capture (one JSON object per line of ``*.jsonl`` files below
``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/``)::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "1.0,2.0", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.87", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "2024-05-01T12:00:00Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV`` (``data`` is the CSV text), ``JSON`` (``data`` is the JSON text) or
``BASE64`` (``data`` is the base64 of the raw body, read according to ``observedContentType``:
``*json*`` as JSON, ``*jsonlines*`` as JSON lines, ``*csv*`` as CSV, ``text/*`` as text;
a body that is not UTF-8 is *unsupported* content, e.g. images, and is counted, not parsed).

Each line becomes a :class:`CaptureRecord`:

- ``inference_id``: ``eventMetadata.inferenceId`` when present, else ``eventId`` (the key the
  ground truth is joined on); ``time``: ``inferenceTime`` as written (``None`` when absent);
- ``endpoint`` and ``variant`` from the file path (the two directories above ``yyyy/mm/dd/hh``;
  ``None`` / ``"unknown"`` when the path has no such layout);
- ``inputs``: a list of items, one per instance of the request, each a *positional row* (list of
  values: floats, or ``str`` for values that are not numbers, ``None`` for empty ones), a *named
  row* (dict feature name -> value) or a *text document* (``str``). CSV bodies give one row per
  line. JSON bodies: ``{"instances": [...]}``, ``{"inputs": [...]}`` and ``{"features": [...]}``
  unwrap to their list (a one-line CSV body with text values may come as a :class:`CsvRow` of its
  raw fields, converted in bulk downstream); in a list, a list of scalars is one row, a list of lists is one row per
  element, a dict is a named row (``{"features": [...]}`` unwraps), a string is a text document
  (so a list of strings is a list of documents; send categorical-only rows as
  ``{"features": [...]}`` or as named rows); a JSON string or a ``text/*`` body is one document;
- ``outputs``: a list of :class:`Prediction` ``(score, label)``, one per instance. A number is a
  score; a non-numeric string a label; a pair of numbers is ``[P(0), P(1)]`` (score = the second);
  a longer list of numbers is a class-probability vector (label = index of the largest); a dict
  reads ``score``/``probability``, ``probabilities``/``scores`` and
  ``predicted_label``/``label``/``predicted_class``/``prediction``. ``{"predictions": [...]}``
  and top-level lists hold one prediction per element. Labels are normalised to strings
  (``True``/``1``/``1.0`` -> ``"1"``).

A line that is not valid JSON, not a capture record, has an unknown encoding or an unreadable
payload is *malformed*: counted in :class:`Issues` with its file, line number and reason, and
skipped. A file that cannot be read is a malformed *file*. Nothing here raises on bad input.

Ground truth (one JSON object per line)::

    {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "<inference id>"},
     "eventVersion": "0"}

``data`` is read like a capture payload (CSV, JSON or BASE64) into a list of label values (one per
instance: ``"1"``, ``"1,0"``, ``[1, 0]``, ``{"label": 1}``); the inference id is
``eventMetadata.eventId``. Every non-hidden file of the ground-truth directory is read, whatever
its name (Kinesis Data Firehose writes objects without an extension). Capture and ground-truth
files may be gzip-compressed (recognised by their first bytes).
"""

from __future__ import annotations

import base64
import binascii
import csv
import fnmatch
import gzip
import json
import json.scanner
import os
import re
import zlib
from datetime import datetime, timedelta, timezone
from itertools import compress
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np

MAX_EXAMPLES = 100
"""How many (file, line, reason) examples :class:`Issues` keeps; the counts are always complete."""

UNKNOWN_VARIANT = "unknown"
HOUR_SLACK = timedelta(hours=1)
"""Files in an hour directory this far outside the window are still read (records are filtered
by their own ``inferenceTime``); farther ones are skipped without being opened."""

_HOUR_DIR = re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$"), re.compile(r"^\d{2}$")
_FAST_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:Z|[+-]00:?00)?\Z")
_ISO_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?\s*(Z|[+-]\d\d:?\d\d)?$", re.I
)


class CaptureError(ValueError):
    """A line or payload that cannot be used; the message is the reason."""


class UnsupportedContent(CaptureError):
    """A payload that is valid but not monitorable (binary bodies such as images)."""


class Prediction(NamedTuple):
    score: float | None
    label: str | None


class CsvRow(list):
    """The raw fields of one CSV line with text values (categorical features), left unparsed:
    the drift accumulator converts whole columns at once (``drift.bulk_numbers``, one hash
    factorisation per categorical column) instead of one value at a time."""

    __slots__ = ()


class CaptureRecord(NamedTuple):
    inference_id: str
    event_id: str
    time: str | None
    endpoint: str | None
    variant: str
    inputs: list
    outputs: list
    file: str
    line: int


class Issues:
    """Problems met while reading inputs: complete counts by category, the first examples in full."""

    def __init__(self, max_examples: int = MAX_EXAMPLES) -> None:
        self.max_examples = max_examples
        self.counts: dict = {}
        self.examples: list = []

    def add(self, category: str, file: str, line: int | None, reason: str) -> None:
        self.counts[category] = self.counts.get(category, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append({"category": category, "file": file, "line": line, "reason": reason})

    def merge(self, other: Issues) -> None:
        """Add another collector's counts, and its examples while there is room."""
        for category, count in other.counts.items():
            self.counts[category] = self.counts.get(category, 0) + count
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])

    def count(self, prefix: str = "") -> int:
        return sum(n for category, n in self.counts.items() if category.startswith(prefix))

    def to_dict(self) -> dict:
        return {
            "total": self.count(),
            "by_category": dict(sorted(self.counts.items())),
            "examples": list(self.examples),
            "examples_truncated": self.count() > len(self.examples),
        }


# --- time -----------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``Z``, ``+hh:mm`` or no zone = UTC) as an aware UTC datetime."""
    match = _ISO_TIME.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    value = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, timezone.utc
    )
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        value -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return value


def time_key(value: str | datetime) -> str:
    """A fixed-width UTC string (``YYYY-MM-DDTHH:MM:SS.ffffff``) that sorts like the time."""
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    match = _FAST_TIME.match(value)
    if match:
        return match.group(1) + "." + (match.group(2) or "")[:6].ljust(6, "0")
    return time_key(parse_time(value))


def path_layout(relative: Path) -> tuple[str | None, str, datetime | None]:
    """(endpoint, variant, hour) from ``.../{endpoint}/{variant}/yyyy/mm/dd/hh/{file}``."""
    parts = relative.parts[:-1]
    for start in range(len(parts) - 4, -1, -1):
        window = parts[start : start + 4]
        if all(pattern.match(part) for pattern, part in zip(_HOUR_DIR, window)):
            try:
                hour = datetime(*(int(part) for part in window), tzinfo=timezone.utc)
            except ValueError:
                continue
            variant = parts[start - 1] if start >= 1 else UNKNOWN_VARIANT
            endpoint = parts[start - 2] if start >= 2 else None
            return endpoint, variant, hour
    return None, UNKNOWN_VARIANT, None


# --- payloads -------------------------------------------------------------------------------


def decode_payload(section: object, where: str) -> tuple[str, Any]:
    """``(kind, value)`` of one ``endpointInput``/``endpointOutput``/``groundTruthData`` object.

    kind is ``csv`` (value: text), ``json`` (parsed value), ``jsonlines`` (list of parsed
    values) or ``text`` (value: text).
    """
    if not isinstance(section, dict):
        raise CaptureError(f"{where} is not an object")
    data = section.get("data")
    if data is None:
        raise CaptureError(f"{where} has no data")
    encoding = section.get("encoding")
    content_type = str(section.get("observedContentType") or "").lower()
    name = str(encoding).upper() if isinstance(encoding, str) else ""
    if name == "CSV":
        if not isinstance(data, str):
            raise CaptureError(f"{where}: CSV data is not a string")
        return "csv", data
    if name == "JSON":
        if not isinstance(data, str):
            return "json", data
        if "jsonlines" in content_type:
            return "jsonlines", _json_lines(data, where)
        try:
            return "json", json.loads(data)
        except ValueError as exc:
            raise CaptureError(f"{where}: JSON data does not parse ({exc})") from None
    if name == "BASE64":
        if not isinstance(data, str):
            raise CaptureError(f"{where}: BASE64 data is not a string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise CaptureError(f"{where}: BASE64 data does not decode") from None
        return _decode_bytes(raw, content_type, where)
    raise CaptureError(f"{where}: unknown encoding {encoding!r} (expected CSV, JSON or BASE64)")


def _json_lines(text: str, where: str) -> list:
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except ValueError as exc:
                raise CaptureError(f"{where}: JSON line {number} does not parse ({exc})") from None
    return values


def _decode_bytes(raw: bytes, content_type: str, where: str) -> tuple[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedContent(
            f"{where}: binary body ({content_type or 'no content type'}) cannot be monitored"
        ) from None
    if "jsonlines" in content_type:
        return "jsonlines", _json_lines(text, where)
    if "json" in content_type:
        try:
            return "json", json.loads(text)
        except ValueError as exc:
            raise CaptureError(f"{where}: JSON body does not parse ({exc})") from None
    if "csv" in content_type:
        return "csv", text
    if content_type.startswith("text/") or not content_type:
        return "text", text
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", text


def _csv_value(text: str) -> float | str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def parse_csv_row(line: str) -> list:
    """One CSV line as a list of floats (fast path) or of floats, strings and ``None``."""
    parts = line.split(",")
    try:
        return [float(part) for part in parts]
    except ValueError:
        pass
    if '"' in line:
        parts = next(csv.reader([line]))
    return [_csv_value(part) for part in parts]


def parse_csv_rows(text: str) -> list:
    if "\n" not in text and "\r" not in text:
        return [parse_csv_row(text)] if text.strip() else []
    return [parse_csv_row(line) for line in text.splitlines() if line.strip()]


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (int, float, bool))


def _instances(value: object) -> list:
    if isinstance(value, str):
        return [value]
    if _is_scalar(value):
        return [[value]]
    if isinstance(value, dict):
        return [_instance(value)]
    if isinstance(value, list):
        if all(_is_scalar(item) for item in value):
            return [value] if value else []
        return [_instance(item) for item in value]
    raise CaptureError(f"unsupported JSON input of type {type(value).__name__}")


def _instance(item: object) -> list | dict | str:
    if isinstance(item, str):
        return item
    if _is_scalar(item):
        return [item]
    if isinstance(item, list):
        if not all(_is_scalar(value) or isinstance(value, str) for value in item):
            raise CaptureError("an instance is nested deeper than a list of values")
        return item
    if isinstance(item, dict):
        features = item.get("features")
        if isinstance(features, list):
            return features
        for key in ("text", "inputs"):
            if len(item) == 1 and isinstance(item.get(key), str):
                return item[key]
        return item
    raise CaptureError(f"unsupported JSON instance of type {type(item).__name__}")


def json_input_items(value: object) -> list:
    """Rows / documents of a parsed JSON request body (see the module docstring)."""
    if isinstance(value, dict):
        for key in ("instances", "inputs"):
            if key in value:
                return _instances(value[key])
        features = value.get("features")
        if isinstance(features, list):
            if features and all(isinstance(item, list) for item in features):
                return [_instance(item) for item in features]
            return [features]
        if len(value) == 1 and isinstance(value.get("text"), str):
            return [value["text"]]
        return [value]
    return _instances(value)


def input_items(kind: str, value: Any) -> list:
    if kind == "csv":
        return parse_csv_rows(value)
    if kind == "text":
        return [value]
    if kind == "jsonlines":
        items: list = []
        for obj in value:
            items.extend(json_input_items(obj))
        return items
    return json_input_items(value)


def normalize_label(value: object) -> str:
    """Labels as strings: ``True``/``1``/``1.0``/``"1"`` -> ``"1"``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return "1" if lowered == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _from_sequence(values: list) -> Prediction:
    numbers = [_number(value) for value in values]
    if len(values) == 1:
        if numbers[0] is not None:
            return Prediction(numbers[0], None)
        if values[0] is None:
            raise CaptureError("empty prediction")
        return Prediction(None, normalize_label(values[0]))
    if values and all(number is not None for number in numbers):
        if len(values) == 2:
            return Prediction(numbers[1], None)
        best = max(range(len(numbers)), key=lambda index: numbers[index])
        return Prediction(None, str(best))
    raise CaptureError(f"cannot read a prediction from {values!r:.80}")


_SCORE_KEYS = ("score", "probability", "predicted_score")
_VECTOR_KEYS = ("probabilities", "scores")
_LABEL_KEYS = ("predicted_label", "label", "predicted_class", "prediction", "predicted_value")


def _prediction(item: object) -> Prediction:
    if isinstance(item, dict):
        score = None
        label = None
        for key in _SCORE_KEYS:
            if key in item:
                score = _number(item[key])
                break
        if score is None:
            for key in _VECTOR_KEYS:
                if isinstance(item.get(key), list):
                    vector = _from_sequence(item[key])
                    score, label = vector.score, vector.label
                    break
        for key in _LABEL_KEYS:
            if key in item and item[key] is not None and not isinstance(item[key], (list, dict)):
                number = _number(item[key])
                if key in ("prediction", "predicted_value") and number is not None and score is None:
                    score = number
                else:
                    label = normalize_label(item[key])
                break
        if score is None and label is None:
            raise CaptureError(f"no score or label in prediction {json.dumps(item)[:80]}")
        return Prediction(score, label)
    if isinstance(item, list):
        return _from_sequence(item)
    if isinstance(item, str):
        return _from_sequence([item.strip()])
    number = _number(item)
    if number is None:
        raise CaptureError(f"cannot read a prediction from {item!r:.80}")
    return Prediction(number, None)


def json_predictions(value: object) -> list:
    if isinstance(value, dict):
        for key in ("predictions", "outputs", "results"):
            if key in value:
                inner = value[key]
                return [_prediction(item) for item in inner] if isinstance(inner, list) else [_prediction(inner)]
        return [_prediction(value)]
    if isinstance(value, list):
        return [_prediction(item) for item in value]
    return [_prediction(value)]


def output_items(kind: str, value: Any) -> list:
    if kind == "csv":
        return [_from_sequence(row) for row in parse_csv_rows(value)]
    if kind == "text":
        return [_from_sequence([line.strip()]) for line in value.splitlines() if line.strip()]
    if kind == "jsonlines":
        predictions: list = []
        for obj in value:
            predictions.extend(json_predictions(obj))
        return predictions
    return json_predictions(value)


# --- capture lines and files ----------------------------------------------------------------


_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def load_json_line(raw: bytes | str) -> Any:
    """``json.loads`` of one line, with less per-call overhead (same result, same errors)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)  # raises the usual JSONDecodeError
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)
    return value


def parse_capture_line(
    raw: bytes | str, endpoint: str | None, variant: str, file: str, line: int
) -> CaptureRecord:
    """One data-capture line; raises :class:`CaptureError` with the reason when it is unusable."""
    try:
        obj = load_json_line(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CaptureError(f"invalid JSON ({exc})") from None
    # Fast path: CSV in, one number out, one row (what most tabular endpoints capture). Any
    # surprise falls through to the checked path below, which gives the precise reason.
    try:
        capture = obj["captureData"]
        meta = obj["eventMetadata"]
        request = capture["endpointInput"]
        response = capture["endpointOutput"]
        if request["encoding"] == "CSV" and response["encoding"] == "CSV":
            data = request["data"]
            if type(data) is str and "\n" not in data and "\r" not in data:
                fields = data.split(",")
                try:
                    inputs = [list(map(float, fields))]
                except ValueError:
                    if '"' in data:  # quoted fields: the checked path's csv reader
                        raise
                    inputs = [CsvRow(fields)]  # text values: converted in bulk by the drift accumulator
                outputs = [Prediction(float(response["data"]), None)]
                event_id = meta.get("eventId")
                key = meta.get("inferenceId") or event_id
                when = meta.get("inferenceTime")
                if type(key) is str and (when is None or type(when) is str):
                    return CaptureRecord(
                        key, event_id if type(event_id) is str else key, when, endpoint, variant, inputs, outputs, file, line
                    )
    except Exception:  # noqa: BLE001 - take the checked path
        pass
    return parse_capture_object(obj, endpoint, variant, file, line)


def parse_capture_object(obj: object, endpoint: str | None, variant: str, file: str, line: int) -> CaptureRecord:
    """A parsed data-capture line, checked field by field."""
    if type(obj) is not dict:
        raise CaptureError("line is not a JSON object")
    capture = obj.get("captureData")
    if type(capture) is not dict:
        raise CaptureError("no captureData object")
    meta = obj.get("eventMetadata")
    if type(meta) is not dict:
        raise CaptureError("no eventMetadata object")
    event_id = meta.get("eventId")
    inference_id = meta.get("inferenceId")
    if inference_id in (None, ""):
        if event_id in (None, ""):
            raise CaptureError("eventMetadata has neither inferenceId nor eventId")
        key = str(event_id)
    else:
        key = str(inference_id)
    when = meta.get("inferenceTime")
    if when is not None and type(when) is not str:
        raise CaptureError("eventMetadata.inferenceTime is not a string")

    request = capture.get("endpointInput")
    response = capture.get("endpointOutput")
    if request is None and response is None:
        raise CaptureError("captureData has neither endpointInput nor endpointOutput")
    inputs = input_items(*decode_payload(request, "endpointInput")) if request is not None else []
    outputs = output_items(*decode_payload(response, "endpointOutput")) if response is not None else []
    return CaptureRecord(
        key, str(event_id) if event_id is not None else key, when, endpoint, variant, inputs, outputs, file, line
    )


def find_files(directory: Path, patterns: tuple[str, ...] | None = ("*.jsonl",)) -> list:
    """Files below ``directory`` matching any pattern (``None``: every file), in path order.

    Hidden files and directories (a name starting with ``.``) are left out.
    """
    patterns = patterns or ("*",)
    top = os.fspath(directory)
    found = []
    for root, folders, names in os.walk(top):  # as rglob: symbolic links to folders are not followed
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        relative_root = root[len(top):].lstrip(os.sep).replace(os.sep, "/")
        for name in names:
            if name.startswith(".") or not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                continue
            path = Path(root, name)
            if path.is_file():
                found.append((f"{relative_root}/{name}" if relative_root else name, path))
    return [path for _, path in sorted(found)]


_GZIP_MAGIC = b"\x1f\x8b"


def _lines(path: Path, issues: Issues, label: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a file, gzip-compressed or not; an unreadable file is reported,
    never raised."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        issues.add("malformed_file", label, None, f"cannot open ({exc.strerror or exc})")
        return
    with handle:
        number = 0
        try:
            stream = handle
            if handle.peek(2)[:2] == _GZIP_MAGIC:
                stream = gzip.GzipFile(fileobj=handle, mode="rb")
            for number, raw in enumerate(stream, 1):
                yield number, raw
        except (OSError, EOFError, zlib.error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            issues.add("malformed_file", label, number + 1, f"read failed ({reason})")


class CaptureFile(NamedTuple):
    """One capture file to read: its path, its name relative to the capture directory (as
    reported), the endpoint, variant and hour of its directory, and whether that hour lies
    inside the window (records without ``inferenceTime`` are kept only then)."""

    path: Path
    label: str
    endpoint: str | None
    variant: str
    hour: datetime | None
    hour_inside: bool


FILE_COUNTERS = (
    "lines",
    "records",
    "records_outside_window",
    "records_without_time",
    "malformed_lines",
    "unsupported_records",
)


def _fold(counters: dict, tally: dict) -> None:
    for name in FILE_COUNTERS:
        counters[name] = counters.get(name, 0) + tally[name]


def _split_lines(text: bytes) -> list:
    """Lines as the file reader yields them: split after each newline, which is kept."""
    parts = text.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# --- bulk reading ----------------------------------------------------------------------------

BULK_CHUNK_BYTES = 1 << 22
"""How much of a capture file one pass of :meth:`CaptureScanner.read_file_bulk` reads (whole lines)."""

_CSV_LINE = (  # SageMaker's own compact layout, CSV in, CSV out, with or without an inference id
    r'(?m)^\{"captureData":\{"endpointInput":\{"observedContentType":"S*","mode":"INPUT","data":"(S*)",'
    r'"encoding":"CSV"\},"endpointOutput":\{"observedContentType":"S*","mode":"OUTPUT","data":"(S*)",'
    r'"encoding":"CSV"\}\},"eventMetadata":\{"eventId":"(S+)"(?:,"inferenceId":"(S*)")?,'
    r'"inferenceTime":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]00:?00)?)"\},"eventVersion":"0"\}\n'
)


def _csv_line_pattern(string: str) -> "re.Pattern":
    """``_CSV_LINE`` with JSON strings matched by ``string``; possessive repeats (Python >= 3.11)
    only save the engine's backtracking bookkeeping: the same lines match without them."""
    for possessive in ("+", ""):
        text = _CSV_LINE.replace("S*", string + "*" + possessive).replace("S+", string + "+" + possessive)
        try:
            return re.compile(text.encode("ascii"))
        except re.error:
            continue
    raise AssertionError("unreachable")


# Any text between quotes: exact only in a chunk without backslashes, control characters other
# than newlines and non-ASCII bytes (checked first); the engine's fastest repeat.
_CSV_LINE_FAST = _csv_line_pattern(r'[^"]')
# Printable ASCII without quotes and backslashes: a matched line is valid JSON with exactly
# these strings, whatever the rest of the chunk holds.
_CSV_LINE_STRICT = _csv_line_pattern(r'[^"\\\x00-\x1f\x7f-\xff]')


class CaptureBlock(NamedTuple):
    """Consecutive records in the window of one capture file, in SageMaker's own layout with one
    CSV row in and one number out, as columns: the bytes of each input row, the scores, the
    event and inference ids (bytes; the inference id empty when absent), the inference
    times (bytes), the line numbers, and the file. :meth:`records` gives the
    :class:`CaptureRecord` that :func:`parse_capture_line` makes of each line."""

    data: "tuple | list"
    scores: list
    event_ids: "tuple | list"
    inference_ids: "tuple | list"
    times: "tuple | list"
    lines: "range | list"
    file: CaptureFile

    @property
    def size(self) -> int:
        """The number of records (``len`` is the tuple's)."""
        return len(self.data)

    def slice(self, start: int, stop: int) -> "CaptureBlock":
        return CaptureBlock(*(column[start:stop] for column in self[:6]), self.file)

    def keys(self) -> list:
        """Each record's inference id (the event id when there is none), as the join uses it."""
        return [(inference or event).decode("ascii") for inference, event in zip(self.inference_ids, self.event_ids)]

    def records(self) -> list:
        file = self.file
        records = []
        for data, score, event, inference, when, line in zip(*self[:6]):
            fields = data.decode("ascii").split(",")
            try:
                inputs = [list(map(float, fields))]
            except ValueError:
                inputs = [CsvRow(fields)]
            event_id = event.decode("ascii")
            records.append(CaptureRecord(
                (inference or event).decode("ascii"), event_id, when.decode("ascii"), file.endpoint, file.variant,
                inputs, [Prediction(score, None)], file.label, line,
            ))
        return records


class CaptureScanner:
    """The capture records of one window, file by file, counting what is read and skipped.

    ``window_start`` (inclusive) and ``window_end`` (exclusive) are aware datetimes or ``None``.
    A record whose ``inferenceTime`` is outside the window is skipped (counted); one without a
    time is kept (counted as ``records_without_time``) when its file's hour directory overlaps
    the window. ``files()`` lists the files to read and ``read_file(file, counters, issues)``
    yields one file's records, so that files can be read in separate processes; ``records()``
    does both in sequence. ``stats["state"]`` is ``ok``, ``missing_dir`` (no capture directory),
    ``no_files`` (no ``*.jsonl`` file) or ``empty_window`` (files, but no record in the window),
    set by :meth:`finish` (called by ``records()``).
    """

    def __init__(
        self,
        capture_dir: Path | None,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        issues: Issues | None = None,
    ) -> None:
        self.capture_dir = Path(capture_dir) if capture_dir is not None else None
        self.window_start = window_start
        self.window_end = window_end
        self.issues = issues if issues is not None else Issues()
        self.filtering = window_start is not None or window_end is not None
        whole = all(bound is None or bound.microsecond == 0 for bound in (window_start, window_end))
        width = 19 if whole else 26  # whole-second bounds: compare "YYYY-MM-DDTHH:MM:SS" prefixes
        self._width = width
        self._start_key = time_key(window_start)[:width] if window_start else None
        self._end_key = time_key(window_end)[:width] if window_end else None
        self.stats: dict = {
            "state": "ok",
            "files_found": 0,
            "files_read": 0,
            "files_skipped_outside_window": 0,
            **{name: 0 for name in FILE_COUNTERS},
            "endpoints": {},
            "variants": {},
        }

    def files(self) -> list:
        """The :class:`CaptureFile` entries to read, in path order (sets the state when none)."""
        stats = self.stats
        if self.capture_dir is None or not self.capture_dir.is_dir():
            stats["state"] = "missing_dir"
            return []
        paths = find_files(self.capture_dir)
        stats["files_found"] = len(paths)
        if not paths:
            stats["state"] = "no_files"
            return []
        selected = []
        start, end = self.window_start, self.window_end
        for path in paths:
            relative = path.relative_to(self.capture_dir)
            endpoint, variant, hour = path_layout(relative)
            if self.filtering and hour is not None:
                if (start and hour + timedelta(hours=1) <= start - HOUR_SLACK) or (end and hour >= end + HOUR_SLACK):
                    stats["files_skipped_outside_window"] += 1
                    continue
            inside = hour is None or (
                (start is None or hour + timedelta(hours=1) > start) and (end is None or hour < end)
            )
            selected.append(CaptureFile(path, relative.as_posix(), endpoint, variant, hour, inside))
        return selected

    def _in_window(self, when: str) -> bool:
        match = _FAST_TIME.match(when)
        if match and self._width == 19:
            key = match.group(1)
        else:
            key = time_key(when)[: self._width]
        if self._start_key and key < self._start_key:
            return False
        return not (self._end_key and key >= self._end_key)

    def read_file(self, file: CaptureFile, counters: dict, issues: Issues) -> Iterator[CaptureRecord]:
        """Yield one file's records in the window, line by line; counts go to ``counters``
        (FILE_COUNTERS). :meth:`read_file_bulk` reads the same records faster."""
        tally = dict.fromkeys(FILE_COUNTERS, 0)
        try:
            yield from self._line_records(_lines(file.path, issues, file.label), file, tally, issues)
        finally:
            _fold(counters, tally)

    def _line_records(self, lines: Iterable, file: CaptureFile, tally: dict, issues: Issues) -> Iterator[CaptureRecord]:
        """The records in the window of ``(line number, raw line)`` pairs, each parsed on its own."""
        filtering = self.filtering
        label, endpoint, variant = file.label, file.endpoint, file.variant
        for number, raw in lines:
            if raw.isspace() or not raw:
                continue
            tally["lines"] += 1
            try:
                record = parse_capture_line(raw, endpoint, variant, label, number)
                when = record.time
                if when is None:
                    if filtering and not file.hour_inside:
                        tally["records_outside_window"] += 1
                        continue
                    tally["records_without_time"] += 1
                elif filtering and not self._in_window(when):
                    tally["records_outside_window"] += 1
                    continue
            except UnsupportedContent as exc:
                tally["unsupported_records"] += 1
                issues.add("unsupported_content", label, number, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a bad line never stops the job
                tally["malformed_lines"] += 1
                reason = str(exc) if isinstance(exc, CaptureError) else f"{type(exc).__name__}: {exc}"
                if not raw.endswith(b"\n") and "JSON" in reason:
                    reason = f"truncated last line: {reason}"
                issues.add("malformed_line", label, number, reason)
                continue
            tally["records"] += 1
            yield record

    def read_file_bulk(self, file: CaptureFile, counters: dict, issues: Issues) -> Iterator:
        """One file's records in the window, as :meth:`read_file` reads them, but runs of lines in
        SageMaker's own layout with CSV input and a numeric CSV output come as
        :class:`CaptureBlock` columns, parsed by one regular-expression pass over a few MiB of
        the file instead of a JSON parse per line. Every other line (JSON or BASE64 payloads,
        other key orders, escapes, malformed lines, a truncated last line) is parsed on its own
        exactly as :meth:`read_file` does, in file order, so that the counts, the issues and
        the records are the same. Gzip-compressed files are read line by line."""
        try:
            handle = open(file.path, "rb")
        except OSError:
            yield from self.read_file(file, counters, issues)  # reports the file
            return
        with handle:
            try:
                compressed = handle.peek(2)[:2] == _GZIP_MAGIC
            except OSError:
                compressed = True  # the line reader reports it
            if compressed:
                handle.close()
                yield from self.read_file(file, counters, issues)
                return
            tally = dict.fromkeys(FILE_COUNTERS, 0)
            try:
                yield from self._bulk_items(handle, file, tally, issues)
            finally:
                _fold(counters, tally)

    def _bulk_items(self, handle, file: CaptureFile, tally: dict, issues: Issues) -> Iterator:
        done = 0  # lines before the current chunk
        rest = b""  # the start of a line that continues in the next read
        while True:
            try:
                more = handle.read(BULK_CHUNK_BYTES)
            except OSError as exc:  # what the line reader reports; the incomplete line is lost
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                issues.add("malformed_file", file.label, done + 1, f"read failed ({reason})")
                return
            if not more:
                if rest:  # a last line without a newline
                    yield from self._line_records([(done + 1, rest)], file, tally, issues)
                return
            start = 0
            if rest:
                start = more.find(b"\n") + 1
                if not start:
                    rest += more
                    continue
                line = rest + more[:start]
                done = yield from self._chunk_items(line, 0, len(line), done, file, tally, issues)
            end = more.rfind(b"\n") + 1
            if end > start:
                done = yield from self._chunk_items(more, start, end, done, file, tally, issues)
            rest = more[max(end, start):]

    def _chunk_items(self, buffer: bytes, start: int, end: int, done: int, file: CaptureFile, tally: dict,
                     issues: Issues):
        """Blocks and records of ``buffer[start:end]`` (whole lines, the first numbered
        ``done + 1``); returns the number of lines read so far."""
        matches = None
        # Without a backslash, a control character other than the line ends or a non-ASCII byte,
        # a JSON string is the text between two quotes: the fast expression then matches exactly
        # the lines that the strict one would, and when it matches as many lines as there are
        # control characters (the newlines) every line matched on its own.
        if buffer.find(b"\\", start, end) < 0 and buffer.isascii():
            matches = _CSV_LINE_FAST.findall(buffer, start, end)
            controls = int(np.count_nonzero(np.frombuffer(buffer, np.uint8, end - start, start) < 32))
            if len(matches) != controls:
                matches = None
        if matches is not None:
            block = self._block(matches, done + 1, file, tally)
            if block is not None:
                if block.size:
                    yield block
                return done + len(matches)
        # some lines need the JSON parser: the strict expression picks the others out, in order
        number = done
        position = start
        run: list = []
        first = 0
        for match in _CSV_LINE_STRICT.finditer(buffer, start, end):
            canonical = True
            if match.start() > position:
                if run:
                    yield from self._run_items(run, first, file, tally)
                    run = []
                between = _split_lines(buffer[position:match.start()])
                yield from self._line_records(enumerate(between, number + 1), file, tally, issues)
                number += len(between)
            number += 1
            groups = match.groups()
            try:
                float(groups[1])
            except ValueError:  # an output the JSON path reads otherwise (labels, vectors)
                canonical = False
            if canonical:
                if not run:
                    first = number
                run.append(groups)
            else:
                if run:
                    yield from self._run_items(run, first, file, tally)
                    run = []
                yield from self._line_records([(number, match.group(0))], file, tally, issues)
            position = match.end()
        if run:
            yield from self._run_items(run, first, file, tally)
        if position < end:
            between = _split_lines(buffer[position:end])
            yield from self._line_records(enumerate(between, number + 1), file, tally, issues)
            number += len(between)
        return number

    def _run_items(self, run: list, first: int, file: CaptureFile, tally: dict) -> Iterator:
        block = self._block(run, first, file, tally)
        if block is not None and block.size:
            yield block

    def _block(self, matches: list, first: int, file: CaptureFile, tally: dict) -> "CaptureBlock | None":
        """The records in the window of consecutive matched lines (the first numbered ``first``)
        as columns; ``None`` (nothing counted) when an output is not one number."""
        count = len(matches)
        data, outputs, event_ids, inference_ids, times = zip(*matches)
        try:
            scores = list(map(float, outputs))
        except ValueError:
            return None
        lines: "range | list" = range(first, first + count)
        if self.filtering:
            if self._width == 19:
                keys = np.array(times, dtype="S19")  # "YYYY-MM-DDTHH:MM:SS", as _in_window compares
                inside = np.ones(count, dtype=bool)
                if self._start_key:
                    inside &= keys >= self._start_key.encode()
                if self._end_key:
                    inside &= keys < self._end_key.encode()
            else:
                inside = np.array([self._in_window(when.decode()) for when in times], dtype=bool)
            kept = int(np.count_nonzero(inside))
            if kept < count:
                tally["records_outside_window"] += count - kept
                mask = inside.tolist()
                data, scores, event_ids, inference_ids, times, lines = (
                    list(compress(column, mask)) for column in (data, scores, event_ids, inference_ids, times, lines)
                )
        tally["lines"] += count
        tally["records"] += len(data)
        return CaptureBlock(data, scores, event_ids, inference_ids, times, lines, file)

    def add_file_counters(self, file: CaptureFile, counters: dict) -> None:
        """Fold one file's counters (from :meth:`read_file`) into ``stats``."""
        stats = self.stats
        stats["files_read"] += 1
        for name in FILE_COUNTERS:
            stats[name] += counters.get(name, 0)
        records = counters.get("records", 0)
        if records:
            stats["variants"][file.variant] = stats["variants"].get(file.variant, 0) + records
            if file.endpoint is not None:
                stats["endpoints"][file.endpoint] = stats["endpoints"].get(file.endpoint, 0) + records

    def finish(self) -> dict:
        if self.stats["state"] == "ok" and self.stats["records"] == 0:
            self.stats["state"] = "empty_window"
        self.stats["variants"] = dict(sorted(self.stats["variants"].items()))
        self.stats["endpoints"] = dict(sorted(self.stats["endpoints"].items()))
        return self.stats

    def __iter__(self) -> Iterator[CaptureRecord]:
        return self.records()

    def records(self) -> Iterator[CaptureRecord]:
        for file in self.files():
            counters: dict = {}
            yield from self.read_file(file, counters, self.issues)
            self.add_file_counters(file, counters)
        self.finish()


# --- ground truth ---------------------------------------------------------------------------


def ground_truth_values(kind: str, value: Any) -> list:
    """The label values of one ground-truth payload, one per instance."""
    if kind in ("csv", "text"):
        return [item for row in parse_csv_rows(value) for item in row]
    if kind == "jsonlines":
        return [item for obj in value for item in ground_truth_values("json", obj)]
    if isinstance(value, dict):
        for key in ("label", "labels", "ground_truth", "groundTruth", "target", "value", "data"):
            if key in value:
                return ground_truth_values("json", value[key])
        raise CaptureError(f"no label in ground truth {json.dumps(value)[:80]}")
    if isinstance(value, list):
        values = []
        for item in value:
            values.extend(ground_truth_values("json", item) if isinstance(item, (list, dict)) else [item])
        return values
    return [value]


def parse_ground_truth_line(raw: bytes | str) -> tuple[str, list]:
    """``(inference id, label values)`` of one ground-truth line; raises :class:`CaptureError`."""
    try:
        obj = load_json_line(raw)
    except ValueError as exc:
        raise CaptureError(f"invalid JSON ({exc})") from None
    try:  # fast path: one CSV value, the common case
        truth = obj["groundTruthData"]
        key = obj["eventMetadata"]["eventId"]
        data = truth["data"]
        if truth["encoding"] == "CSV" and type(key) is str and key and type(data) is str:
            if "," not in data and "\n" not in data and '"' not in data and data.strip():
                return key, [_csv_value(data)]
    except Exception:  # noqa: BLE001 - take the checked path
        pass
    if not isinstance(obj, dict):
        raise CaptureError("line is not a JSON object")
    meta = obj.get("eventMetadata")
    if not isinstance(meta, dict) or meta.get("eventId") in (None, ""):
        raise CaptureError("no eventMetadata.eventId")
    values = ground_truth_values(*decode_payload(obj.get("groundTruthData"), "groundTruthData"))
    if not values:
        raise CaptureError("groundTruthData holds no label")
    return str(meta["eventId"]), values


def load_ground_truth(
    directory: Path | None,
    convert: Callable[[list], Any] = list,
    issues: Issues | None = None,
) -> tuple[dict, dict]:
    """Read every file below ``directory`` into ``{inference id: labels}``.

    Every non-hidden file is read, whatever its name: Kinesis Data Firehose, which delivers the
    platform's ground truth, writes objects without an extension. Gzip-compressed files are
    recognised by their content.

    ``convert`` turns the list of label values into what is stored (raising ``ValueError`` with
    the reason for an unusable label). Later files (in path order, i.e. later hours) win over
    earlier ones for the same id. Returns ``(labels, stats)``; ``stats["state"]`` is ``ok``,
    ``missing_dir``, ``no_files`` or ``empty``.
    """
    issues = issues if issues is not None else Issues()
    labels: dict = {}
    stats = {"state": "ok", "files": 0, "lines": 0, "labels": 0, "malformed_lines": 0, "duplicate_ids": 0}
    if directory is None or not Path(directory).is_dir():
        stats["state"] = "missing_dir"
        return labels, stats
    directory = Path(directory)
    files = find_files(directory, None)
    stats["files"] = len(files)
    if not files:
        stats["state"] = "no_files"
        return labels, stats
    for path in files:
        label = path.relative_to(directory).as_posix()
        for number, raw in _lines(path, issues, label):
            if raw.isspace() or not raw:
                continue
            stats["lines"] += 1
            try:
                key, values = parse_ground_truth_line(raw)
                stored = convert(values)
            except (CaptureError, ValueError, TypeError, RecursionError) as exc:
                stats["malformed_lines"] += 1
                issues.add("malformed_ground_truth", label, number, str(exc))
                continue
            if key in labels:
                stats["duplicate_ids"] += 1
            labels[key] = stored
    stats["labels"] = len(labels)
    if not labels:
        stats["state"] = "empty"
    return labels, stats
