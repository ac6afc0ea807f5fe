"""Closed-loop retraining's training data from production: captured requests joined with their labels.

Standard library only (no boto3, no I/O); ``handlers.retraining_trigger`` lists and reads the
objects and writes the result.

- **Window** (:func:`training_window`): from the creation of the newest model package of the
  group (the last training that registered a model), at most ``max_lookback_hours`` back, to now
  floored to the hour; no package yet: the whole lookback.
- **Features** come from SageMaker data capture (``captureData.endpointInput``, CSV, JSON or
  BASE64; ``eventMetadata.inferenceId``, else ``eventId``; records outside the window by
  ``inferenceTime`` are left out). A CSV body gives one row per line; a JSON body a list of
  numbers (one row), a list of lists, or ``{"instances"|"inputs"|"features": ...}``; a JSON
  object with named values is read in ``feature_names`` order.
- **Labels** come from the feedback API's ground truth (``groundTruthData.data``, one label, or
  one per row as ``"1,0"`` / ``[1, 0]``; ``eventMetadata.eventId`` = the inference id), listed
  from the window's start to now: a label collected after the window for a prediction in it
  counts.
- **Join** (:class:`ProductionJoin`): one training row per captured row with a label, as
  ``feature_names`` then the target column (the raw data's CSV layout the example's preprocess
  step reads). A record whose row count or width does not match, or whose label is not 0/1, is
  counted as ``unusable``; a label for an id never captured in the window is not used.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlops_runtime.domain.monitoring_window import HOUR, Window, as_utc, floor_hour, hour_range, iso

PRODUCTION_FILE = "production.csv"
DEFAULT_TARGET_COLUMN = "target"
_ROW_KEYS = ("instances", "inputs", "features")


@dataclass(frozen=True)
class TrainingWindow:
    """Production records inferred in ``[start, end)`` go into the retraining run."""

    start: datetime
    end: datetime
    since_last_training: bool  # False: no package yet, the window is the whole lookback

    @property
    def capture_window(self) -> Window:
        return Window(floor_hour(self.start), self.end)

    def label_hours(self, now: datetime) -> list[datetime]:
        """Label hours from the window's start up to now (labels arrive after their predictions)."""
        return hour_range(floor_hour(self.start), as_utc(now) + HOUR)

    def to_dict(self) -> dict[str, str | bool]:
        return {"start": iso(self.start), "end": iso(self.end), "since_last_training": self.since_last_training}


def training_window(now: datetime, last_training: datetime | None, max_lookback_hours: int) -> TrainingWindow:
    end = floor_hour(now)
    earliest = end - timedelta(hours=max_lookback_hours)
    if last_training is None or as_utc(last_training) < earliest:
        return TrainingWindow(earliest, end, last_training is not None)
    return TrainingWindow(min(as_utc(last_training), end), end, True)


# --- parsing --------------------------------------------------------------------------------------


def _decoded(payload: Mapping[str, Any]) -> str:
    data = payload.get("data")
    if not isinstance(data, str):
        raise ValueError("no data")
    if str(payload.get("encoding", "")).upper() == "BASE64":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ValueError(f"bad BASE64 data: {error}") from None
    return data


def _csv_rows(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]


def request_rows(payload: Mapping[str, Any], feature_names: Sequence[str]) -> list[list[Any]]:
    """The feature rows of a captured ``endpointInput`` (ValueError when it has none)."""
    text = _decoded(payload)
    content_type = str(payload.get("observedContentType", "")).lower()
    if "json" not in content_type and str(payload.get("encoding", "")).upper() != "JSON":
        return [[cell.strip() for cell in row] for row in _csv_rows(text)]
    body = json.loads(text)
    if isinstance(body, Mapping):
        for key in _ROW_KEYS:
            if key in body:
                body = body[key]
                break
        else:
            return [[body.get(name) for name in feature_names]]
    if isinstance(body, list) and body and all(isinstance(v, int | float | str) for v in body):
        return [list(body)]
    if isinstance(body, list) and all(isinstance(r, list | Mapping) for r in body):
        return [[r.get(name) for name in feature_names] if isinstance(r, Mapping) else list(r) for r in body]
    raise ValueError("the request body holds no feature rows")


def labels_of(payload: Mapping[str, Any]) -> list[int]:
    """The 0/1 labels of a ground-truth ``groundTruthData`` (one, or one per request row)."""
    text = _decoded(payload).strip()
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = [cell for row in _csv_rows(text) for cell in row]
    if isinstance(value, Mapping):
        value = value.get("label")
    values = value if isinstance(value, list) else [value]
    labels = []
    for item in values:
        normal = str(item).strip().lower()
        if normal in ("1", "1.0", "true"):
            labels.append(1)
        elif normal in ("0", "0.0", "false"):
            labels.append(0)
        else:
            raise ValueError(f"not a 0/1 label: {item!r}")
    return labels


def _json_lines(body: bytes) -> Iterable[dict[str, Any]]:
    for line in body.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            yield {}
            continue
        yield record if isinstance(record, dict) else {}


def _inference_time(metadata: Mapping[str, Any]) -> datetime | None:
    text = metadata.get("inferenceTime")
    if not isinstance(text, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


# --- the join -------------------------------------------------------------------------------------


@dataclass
class ProductionJoin:
    """Labels first (:meth:`add_labels`), then captured records (:meth:`add_capture`); :meth:`csv`."""

    feature_names: tuple[str, ...]
    window: TrainingWindow
    target_column: str = DEFAULT_TARGET_COLUMN
    labels: dict[str, list[int]] = field(default_factory=dict)
    rows: list[list[Any]] = field(default_factory=list)
    captured: int = 0  # records inferred in the window
    labelled: int = 0  # of which had a label
    unusable: int = 0  # malformed lines, rows or labels
    _joined: set[str] = field(default_factory=set)

    def add_labels(self, body: bytes) -> None:
        for record in _json_lines(body):
            metadata = record.get("eventMetadata") or {}
            payload = record.get("groundTruthData")
            event_id = metadata.get("eventId") if isinstance(metadata, Mapping) else None
            if not isinstance(event_id, str) or not isinstance(payload, Mapping):
                self.unusable += 1
                continue
            try:
                self.labels[event_id] = labels_of(payload)  # a later label replaces an earlier one
            except ValueError:
                self.unusable += 1

    def add_capture(self, body: bytes) -> None:
        for record in _json_lines(body):
            metadata = record.get("eventMetadata")
            payload = (record.get("captureData") or {}).get("endpointInput") if isinstance(
                record.get("captureData"), Mapping) else None
            if not isinstance(metadata, Mapping) or not isinstance(payload, Mapping):
                self.unusable += 1
                continue
            moment = _inference_time(metadata)
            if moment is None or not self.window.start <= moment < self.window.end:
                continue
            self.captured += 1
            inference_id = metadata.get("inferenceId") or metadata.get("eventId")
            labels = self.labels.get(inference_id) if isinstance(inference_id, str) else None
            if labels is None or inference_id in self._joined:
                continue
            try:
                rows = request_rows(payload, self.feature_names)
            except ValueError:
                self.unusable += 1
                continue
            width = len(self.feature_names)
            if len(rows) != len(labels) or any(len(row) != width or None in row for row in rows):
                self.unusable += 1
                continue
            self._joined.add(inference_id)
            self.labelled += 1
            self.rows.extend([*row, label] for row, label in zip(rows, labels, strict=True))

    def csv(self) -> bytes:
        """The joined rows with a header (``feature_names``, then the target column)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.feature_names, self.target_column])
        writer.writerows(self.rows)
        return out.getvalue().encode("utf-8")

    def counts(self) -> dict[str, int]:
        return {"captured": self.captured, "labelled": self.labelled, "rows": len(self.rows),
                "unusable": self.unusable}


def feature_layout(baseline: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """``(feature_names, target_column)`` of a training ``baseline.json`` (ValueError without names)."""
    names = baseline.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError("the baseline has no feature_names")
    target = baseline.get("target_column")
    return tuple(names), target if isinstance(target, str) and target else DEFAULT_TARGET_COLUMN
