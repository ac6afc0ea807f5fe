"""The monitoring launcher's pure logic: the window, the S3 hour directories to list, the manifests.

No boto3, no I/O; ``handlers.monitoring_launcher`` does the calls.

- **Window**: ``end`` = now floored to the hour (UTC), ``start`` = ``end - window_hours``; start
  inclusive, end exclusive, as the monitoring job's ``--window-start``/``--window-end``.
- **Capture hours**: SageMaker data capture writes ``<prefix><variant>/yyyy/mm/dd/hh/<file>.jsonl``
  by the UTC hour the file was written; a record's ``inferenceTime`` can fall into the
  neighbouring hour's file, so the hours ``[start - 1h, end + 1h)`` are listed (the job filters
  the records by time).
- **Ground-truth hours**: labels are keyed by the hour they were *collected*, so every label hour
  from ``start`` up to ``min(now, start + ground_truth_lookback_hours)`` (an hour directory is
  taken when its hour begins before that limit).
- **Late labels**: each run also rechecks the quality of earlier windows at label ages of 1, 2, 4,
  ... windows and once the lookback has closed, when labels were collected since the previous
  checkpoint (:func:`label_rechecks`); a recheck publishes only quality metrics, timestamped at
  the run, so the quality alarm sees them however late the labels were.
- **Manifests**: SageMaker's ``ManifestFile`` layout, a JSON list whose first element is
  ``{"prefix": "s3://bucket/common/prefix/"}`` followed by keys relative to that prefix; the
  processing job downloads each object to ``<LocalPath>/<relative key>``, so the capture manifest's
  common prefix is the endpoint's capture prefix and the job sees ``<variant>/yyyy/mm/dd/hh/``.
  A manifest input must not be empty: without ground truth, the ground-truth manifest lists a
  single hidden marker object (``no-ground-truth/.empty``), which the job ignores.
- **Idempotency**: :func:`request_token` (``ClientRequestToken`` of ``StartPipelineExecution``) is a
  hash of its parts, so a retried invocation for the same window sends the same token;
  :func:`display_name` fits SageMaker's execution display-name pattern.

The launcher's settings (``settings.MonitoringLauncherSettings``) use this module's names and limits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator

from mlops_runtime.domain.validation import matching

HOUR = timedelta(hours=1)
MIN_WINDOW_HOURS = 1
MAX_WINDOW_HOURS = 168
MAX_LOOKBACK_HOURS = 744  # 31 days; in practice bounded by "now" anyway

CAPTURE_MANIFEST = "capture.manifest"
GROUND_TRUTH_MANIFEST = "ground_truth.manifest"
NO_GROUND_TRUTH_DIR = "no-ground-truth/"
EMPTY_MARKER = ".empty"
CAPTURE_SUFFIX = ".jsonl"

# Pipeline parameters the monitoring pipeline must declare (all strings).
PARAM_WINDOW_START = "WindowStart"
PARAM_WINDOW_END = "WindowEnd"
PARAM_BASELINE = "BaselineS3Uri"
PARAM_CAPTURE_MANIFEST = "CaptureManifestS3Uri"
PARAM_GROUND_TRUTH_MANIFEST = "GroundTruthManifestS3Uri"
PARAM_METRIC_SCOPE = "MetricScope"  # "all" (a window's first analysis) or "quality" (a late-label recheck)
PARAM_METRIC_TIME = "MetricTime"  # "" (the window's end) or when a recheck computed its quality
PARAMETER_NAMES = (
    PARAM_WINDOW_START,
    PARAM_WINDOW_END,
    PARAM_BASELINE,
    PARAM_CAPTURE_MANIFEST,
    PARAM_GROUND_TRUTH_MANIFEST,
    PARAM_METRIC_SCOPE,
    PARAM_METRIC_TIME,
)
SCOPE_ALL = "all"
SCOPE_QUALITY = "quality"

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DISPLAY_NAME_MAX = 82
TOKEN_MIN, TOKEN_MAX = 32, 128
_NOT_DISPLAYABLE = re.compile(r"[^a-zA-Z0-9]+")


# --- time ---------------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC hour."""
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first hour start at or after ``moment`` (UTC)."""
    floored = floor_hour(moment)
    return floored if floored == as_utc(moment) else floored + HOUR


def iso(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds), the job's ``--window-*`` format."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC, both on the hour."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """``YYYYMMDDTHHMMZ`` of the end: the window's folder under the manifest prefix."""
        return self.end.strftime("%Y%m%dT%H%MZ")

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    def to_dict(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


def window_for(now: datetime, window_hours: int) -> Window:
    """The window ending at ``now`` floored to the hour, ``window_hours`` long."""
    if isinstance(window_hours, bool) or not isinstance(window_hours, int) or window_hours < 1:
        raise ValueError(f"window_hours must be a positive integer, not {window_hours!r}")
    end = floor_hour(now)
    return Window(end - window_hours * HOUR, end)


def hour_range(start: datetime, end: datetime) -> list[datetime]:
    """Every hour start ``h`` (UTC) with ``start <= h < end``, ascending."""
    hours: list[datetime] = []
    hour, limit = ceil_hour(start), as_utc(end)
    while hour < limit:
        hours.append(hour)
        hour += HOUR
    return hours


def capture_hours(window: Window) -> list[datetime]:
    """The capture hour directories to list: the window plus one hour on each side."""
    return hour_range(window.start - HOUR, window.end + HOUR)


def ground_truth_hours(window: Window, now: datetime, lookback_hours: int) -> list[datetime]:
    """Label hours from the window's start up to ``min(now, start + lookback_hours)``."""
    limit = min(as_utc(now), window.start + lookback_hours * HOUR)
    return hour_range(window.start, limit)


def hour_path(hour: datetime) -> str:
    """``yyyy/mm/dd/hh/`` of an hour (UTC), the layout of data capture and Firehose."""
    return as_utc(hour).strftime("%Y/%m/%d/%H/")


def capture_listing_prefixes(variant_prefixes: Iterable[str], window: Window) -> list[str]:
    """S3 prefixes to list: each variant directory (``<capture_prefix><variant>/``) times each capture hour."""
    hours = capture_hours(window)
    return [f"{variant}{hour_path(hour)}" for variant in sorted(set(variant_prefixes)) for hour in hours]


def ground_truth_listing_prefixes(prefix: str, window: Window, now: datetime, lookback_hours: int) -> list[str]:
    return [f"{prefix}{hour_path(hour)}" for hour in ground_truth_hours(window, now, lookback_hours)]


# --- late labels --------------------------------------------------------------------------------
#
# Labels come late (hours to days after the prediction), and a window's first analysis, a quarter
# of an hour after it ends, joins only the labels collected by then. Each window's quality is
# therefore recomputed ("rechecked") at label ages of 1, 2, 4, 8, ... windows after its end and a
# last time once its whole lookback has been collected, each time only when labels were collected
# since the previous checkpoint. A quality drop whose labels arrive d hours late is seen within
# about 2·d hours (never later than the end of the lookback), at about log2(lookback / window) + 2
# extra executions per window, instead of one per window per hour. Labels collected more than
# ``ground_truth_lookback_hours`` after the window's start are never joined to it.


@dataclass(frozen=True)
class LabelRecheck:
    """Recompute ``window``'s quality now, ``age_hours`` after its end, because labels were
    collected since ``since`` (the previous checkpoint)."""

    window: Window
    age_hours: int
    since: datetime


def recheck_ages(window_hours: int, lookback_hours: int) -> list[int]:
    """Hours after a window's end at which its quality is recomputed: ``window_hours`` times 1, 2,
    4, ... while the lookback is still open, then once when it has closed (multiples of the window,
    so each checkpoint falls on a run of a schedule that runs once per window)."""
    closing = max(0, lookback_hours - window_hours)  # labels of the window stop being collected then
    last = -(-closing // window_hours) * window_hours  # the first run at or after that
    ages: list[int] = []
    age = window_hours
    while age < last:
        ages.append(age)
        age *= 2
    if last:
        ages.append(last)
    return ages


def label_rechecks(now: datetime, window_hours: int, lookback_hours: int) -> list[LabelRecheck]:
    """The earlier windows whose checkpoint is the run at ``now`` (newest first); whether labels
    were collected since ``since`` is for the caller to find out."""
    end = floor_hour(now)
    previous = 0
    rechecks: list[LabelRecheck] = []
    for age in recheck_ages(window_hours, lookback_hours):
        window_end = end - age * HOUR
        rechecks.append(LabelRecheck(Window(window_end - window_hours * HOUR, window_end), age,
                                     window_end + previous * HOUR))
        previous = age
    return rechecks


def new_label_hours(recheck: LabelRecheck, now: datetime, lookback_hours: int) -> list[datetime]:
    """The label hours collected since the recheck's previous checkpoint (within the lookback)."""
    return [hour for hour in ground_truth_hours(recheck.window, now, lookback_hours) if hour >= floor_hour(recheck.since)]


# --- S3 keys and manifests ----------------------------------------------------------------------


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``; ValueError otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not BUCKET_NAME.match(bucket):
        raise ValueError(f"not an s3:// URI with a valid bucket: {uri!r}")
    return bucket, key


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def is_capture_file(key: str, prefix: str) -> bool:
    """A data-capture file below ``prefix`` the job reads: ``*.jsonl``, not hidden, not a folder marker."""
    relative = key[len(prefix) :] if key.startswith(prefix) else None
    return bool(relative) and relative.endswith(CAPTURE_SUFFIX) and not _hidden(relative)


def is_ground_truth_file(key: str, prefix: str) -> bool:
    """A ground-truth object below ``prefix``: any name (Firehose objects have no extension), not hidden."""
    relative = key[len(prefix) :] if key.startswith(prefix) else None
    return bool(relative) and not relative.endswith("/") and not _hidden(relative)


def build_manifest(bucket: str, prefix: str, keys: Iterable[str]) -> list[Any]:
    """The manifest of ``keys`` (all below ``prefix`` in ``bucket``): the common prefix, then the
    relative keys, sorted and without duplicates. ValueError for an empty list or a key outside."""
    relative: set[str] = set()
    for key in keys:
        if not key.startswith(prefix) or len(key) == len(prefix):
            raise ValueError(f"key {key!r} is not below the manifest prefix {prefix!r}")
        relative.add(key[len(prefix) :])
    if not relative:
        raise ValueError("a manifest must list at least one object")
    return [{"prefix": s3_uri(bucket, prefix)}, *sorted(relative)]


def manifest_body(manifest: Sequence[Any]) -> bytes:
    return json.dumps(list(manifest), separators=(",", ":")).encode("utf-8")


def manifest_keys(manifest: Sequence[Any]) -> list[str]:
    """The full S3 URIs a manifest designates (its prefix joined to each entry)."""
    prefix = manifest[0]["prefix"]
    return [prefix + entry for entry in manifest[1:]]


@dataclass(frozen=True)
class ManifestLocations:
    """Where one window's manifests go in the manifest bucket."""

    bucket: str
    folder: str  # <manifest_prefix><window label>/

    @property
    def capture_key(self) -> str:
        return self.folder + CAPTURE_MANIFEST

    @property
    def ground_truth_key(self) -> str:
        return self.folder + GROUND_TRUTH_MANIFEST

    @property
    def no_ground_truth_prefix(self) -> str:
        return self.folder + NO_GROUND_TRUTH_DIR

    @property
    def marker_key(self) -> str:
        return self.no_ground_truth_prefix + EMPTY_MARKER

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)


def manifest_locations(manifest_bucket: str, manifest_prefix: str, window: Window,
                       recheck: LabelRecheck | None = None) -> ManifestLocations:
    """``<prefix><window label>/`` for a window's first analysis, ``.../labels-<age>h/`` for a recheck."""
    folder = f"{manifest_prefix}{window.label}/"
    return ManifestLocations(manifest_bucket, folder if recheck is None else f"{folder}labels-{recheck.age_hours}h/")


def empty_ground_truth_manifest(locations: ManifestLocations) -> list[Any]:
    """The ground-truth manifest when no label exists: the hidden marker only."""
    return build_manifest(locations.bucket, locations.no_ground_truth_prefix, [locations.marker_key])


# --- the pipeline execution ---------------------------------------------------------------------


def pipeline_parameters(window: Window, baseline_uri: str, capture_manifest_uri: str,
                        ground_truth_manifest_uri: str, recheck_at: datetime | None = None) -> list[dict[str, str]]:
    """``PipelineParameters`` of ``StartPipelineExecution`` (names: :data:`PARAMETER_NAMES`).

    A late-label recheck (``recheck_at`` given) publishes only the quality metrics, timestamped at
    ``recheck_at``: a CloudWatch alarm only sees recent datapoints, and the window's drift was
    already published by its first analysis."""
    scope, metric_time = (SCOPE_ALL, "") if recheck_at is None else (SCOPE_QUALITY, iso(recheck_at))
    values = (iso(window.start), iso(window.end), baseline_uri, capture_manifest_uri, ground_truth_manifest_uri,
              scope, metric_time)
    return [{"Name": name, "Value": value} for name, value in zip(PARAMETER_NAMES, values, strict=True)]


def request_token(*parts: str) -> str:
    """A ``ClientRequestToken`` (32-128 characters, hex digits only) determined by ``parts``."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()  # 64 characters


def display_name(*parts: str, max_length: int = DISPLAY_NAME_MAX) -> str:
    """``parts`` joined by ``-`` as a ``PipelineExecutionDisplayName`` (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``,
    at most 82): other characters become ``-``; when too long, the first parts are shortened and
    the last one (e.g. the window) is kept whole."""
    cleaned = [_NOT_DISPLAYABLE.sub("-", str(part)).strip("-") for part in parts]
    cleaned = [part for part in cleaned if part]
    if not cleaned:
        return "execution"
    last = cleaned[-1][:max_length].strip("-")
    head = "-".join(cleaned[:-1])
    room = max_length - len(last) - 1
    if head and room > 0:
        name = f"{head[:room].strip('-')}-{last}"
    else:
        name = last
    name = name.strip("-") or "execution"
    return name


# --- settings types (settings.MonitoringLauncherSettings and RetrainingTriggerSettings) ---------------


def _key_prefix(value: str) -> str:
    """A key prefix, normalised to no leading ``/`` and one trailing ``/`` (``""``: the bucket's root)."""
    if "//" in value.strip("/"):
        raise ValueError(f"must be a key prefix like 'a/b/', got {value!r}")
    value = value.lstrip("/")
    return value if not value or value.endswith("/") else value + "/"


def check_baseline_uri(value: str) -> str:
    try:
        _, key = parse_s3_uri(value)
    except ValueError:
        key = ""
    if not key or key.endswith("/"):
        raise ValueError(f"must be null or s3://bucket/key of baseline.json, got {value!r}")
    return value


Bucket = matching(BUCKET_NAME, "an S3 bucket name")
KeyPrefix = Annotated[str, AfterValidator(_key_prefix)]
