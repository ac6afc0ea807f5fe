"""Feedback on served predictions: validation, normalisation, ground truth, processing (pure).

The product sends feedback (a click, a purchase, a corrected label) for a prediction the inference
API made, naming it by its inference id. This module holds everything that needs no I/O:

- :func:`parse_body` / :func:`split_records`: the HTTP body (size, UTF-8, JSON, single record or
  ``{"records": [...]}``) -> raw records, or :class:`RequestRejected` (a 4xx status and errors);
- :class:`FeedbackRecord` (pydantic) and :func:`validate_record`: one raw record -> a validated
  record, or :class:`InvalidFeedback` listing ``{"field", "reason"}`` errors;
- :func:`build_feedback`: a validated record -> :class:`Feedback`, the normalised feedback that is
  stored (idempotency key derived when absent, subject id replaced by its keyed hash);
- :func:`ground_truth_line`: one line of SageMaker model-quality ground truth;
- :func:`process_feedback`: the pipeline (look up predictions, write ground truth, store and credit,
  dead-letter what cannot be written) over three small ports, :class:`FeedbackStore`,
  :class:`GroundTruthSink` and :class:`DeadLetterSink`, implemented in ``mlops_runtime.adapters``;
- dead-letter messages (:func:`dead_letter_message`, :func:`parse_dead_letter`) and their replay
  (:func:`replay_dead_letter`).

Time is never read here: callers pass ``now`` (an aware ``datetime``). See ``docs/feedback-api.md``
for the contract, the join and credit semantics and the failure handling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from mlops_runtime.domain.rounds import UNKNOWN_ROUND, statistics_key

# --- limits -------------------------------------------------------------------------------------

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB, after base64 decoding
DEFAULT_MAX_BATCH = 500
MAX_BATCH_LIMIT = 10_000  # the 1 MiB body limit binds long before this
DEFAULT_MAX_AGE_DAYS = 30
DEFAULT_RETENTION_DAYS = 90
CLOCK_SKEW = timedelta(minutes=5)  # how far in the future an event time may be

MAX_INFERENCE_ID_CHARS = 64  # SageMaker InferenceId: 1-64, \A\S[\p{Print}]*\z
MAX_FEEDBACK_ID_CHARS = 128
MAX_FEEDBACK_TYPE_CHARS = 64
MAX_LABEL_CHARS = 1024
MAX_LABEL_ITEMS = 100
MAX_LABEL_ITEM_CHARS = 64
MAX_SUBJECT_ID_CHARS = 512
MAX_EVENT_TIME_CHARS = 64
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 256
# Numbers must fit a DynamoDB number (38 significant digits, magnitude 1E-130 .. 9.99E+125).
MAX_INTEGER_DIGITS = 38
_INTEGER_LIMIT = 10**MAX_INTEGER_DIGITS
MIN_NUMBER_MAGNITUDE = 1e-130
MAX_NUMBER_MAGNITUDE = 1e125

MAX_ERRORS_PER_RECORD = 20
MAX_ERROR_FIELD_CHARS = 100

FEEDBACK_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
FEEDBACK_TYPE_PATTERN = re.compile(r"[a-z0-9_.-]{1,64}", re.ASCII)
_CSV_SPECIAL = re.compile(r'[,"\r\n]')

# Prefix of the key of the "this inference id has been credited" marker in the feedback table. '#'
# is not allowed in feedback ids, so a marker can never collide with a feedback record.
CREDIT_MARKER_PREFIX = "reward-credit#"
_FEEDBACK_ID_DOMAIN = b"mlops-feedback-id-v1"
SUBJECT_HASH_CHARS = 32  # the same form as mlops_runtime.domain.routing.hash_subject

DEAD_LETTER_KIND = "mlops.feedback.dead-letter"
DEAD_LETTER_VERSION = 1

# --- settings (built from ``settings.FeedbackApiSettings`` by the handlers) -------------------------


class ConfigurationError(RuntimeError):
    """The function's settings miss something it needs (a deployment error, not bad input)."""


@dataclass(frozen=True)
class FeedbackSettings:
    """Resources and limits of the feedback functions (``FeedbackApiSettings.limits``)."""

    predictions_table: str
    feedback_table: str
    statistics_table: str
    ground_truth_stream: str
    dead_letter_queue_url: str
    subject_hash_key: bytes | None = field(default=None, repr=False)
    max_batch: int = DEFAULT_MAX_BATCH
    max_age: timedelta = timedelta(days=DEFAULT_MAX_AGE_DAYS)
    retention: timedelta = timedelta(days=DEFAULT_RETENTION_DAYS)
    max_body_bytes: int = MAX_BODY_BYTES
    clock_skew: timedelta = CLOCK_SKEW


# --- the HTTP body ------------------------------------------------------------------------------


class RequestRejected(Exception):
    """The whole request is unusable: ``status`` (400/413/422) and ``errors`` ``[{"field", "reason"}]``."""

    def __init__(self, status: int, field_name: str, reason: str) -> None:
        super().__init__(f"{status} {field_name}: {reason}")
        self.status = status
        self.errors = [{"field": field_name, "reason": reason}]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(body: str | bytes | None, is_base64: bool, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The JSON document of a request body, or :class:`RequestRejected`.

    413 when it is larger than ``max_bytes`` (counted as UTF-8 bytes after base64 decoding); 400 when
    empty, not valid base64 (``is_base64``), not UTF-8, not JSON (``NaN``/``Infinity`` refused) or
    nested too deeply for the parser.
    """
    if body is None or body == "" or body == b"":
        raise RequestRejected(400, "body", "the request body is empty; send a JSON object")
    if is_base64:
        if not isinstance(body, str | bytes) or len(body) > (max_bytes * 4) // 3 + 4:
            raise RequestRejected(413, "body", f"the request body is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected(400, "body", "the request body is not valid base64") from None
    elif isinstance(body, str):
        if len(body) > max_bytes:  # each character is at least one byte
            raise RequestRejected(413, "body", f"the request body is larger than {max_bytes} bytes")
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestRejected(400, "body", "the request body is not valid UTF-8") from None
    elif isinstance(body, bytes):
        raw = body
    else:
        raise RequestRejected(400, "body", "the request body is not text")
    if len(raw) > max_bytes:
        raise RequestRejected(413, "body", f"the request body is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestRejected(
            400, "body", f"the request body is not valid UTF-8 (byte {error.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestRejected(400, "body", "the request body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, integers too long to convert
        reason = (
            f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            if isinstance(error, json.JSONDecodeError)
            else "invalid JSON: " + str(error)[:200]
        )
        raise RequestRejected(400, "body", reason) from None


def split_records(document: Any, *, max_batch: int = DEFAULT_MAX_BATCH) -> tuple[bool, list[Any]]:
    """``(is_batch, raw_records)`` of a parsed body, or :class:`RequestRejected`.

    A body is either one record (a JSON object without a ``records`` key) or exactly
    ``{"records": [...]}`` with 1 to ``max_batch`` records (more: 413).
    """
    if not isinstance(document, dict):
        raise RequestRejected(
            400, "body", 'the request body must be a JSON object: one record or {"records": [...]}'
        )
    if "records" not in document:
        return False, [document]
    unknown = sorted(key for key in document if key != "records")
    if unknown:
        listed = ", ".join(repr(_clip(key, 40)) for key in unknown[:5])
        raise RequestRejected(400, "body", f"unknown field(s) next to 'records': {listed}")
    records = document["records"]
    if not isinstance(records, list):
        raise RequestRejected(400, "records", "must be a list of feedback records")
    if not records:
        raise RequestRejected(400, "records", "must contain at least one record")
    if len(records) > max_batch:
        raise RequestRejected(
            413, "records", f"{len(records)} records in one request; the limit is {max_batch}"
        )
    return True, records


# --- one record ---------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_text(value: str) -> bool:
    """True unless ``value`` holds an unpaired surrogate (which JSON escapes can produce)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number_problem(value: Any) -> str | None:
    """Why ``value`` is not an acceptable JSON number (bool excluded), or None."""
    if isinstance(value, bool):
        return "must be a number, not a boolean"
    if isinstance(value, int):
        if abs(value) >= _INTEGER_LIMIT:
            return f"integers may have at most {MAX_INTEGER_DIGITS} digits"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number"
        magnitude = abs(value)
        if magnitude != 0.0 and not MIN_NUMBER_MAGNITUDE <= magnitude < MAX_NUMBER_MAGNITUDE:
            return f"numbers must be 0 or of magnitude {MIN_NUMBER_MAGNITUDE:g} to {MAX_NUMBER_MAGNITUDE:g}"
        return None
    return "must be a number"


def _label_problem(value: Any) -> str | None:
    if isinstance(value, str):
        if len(value) > MAX_LABEL_CHARS:
            return f"a string label may have at most {MAX_LABEL_CHARS} characters, got {len(value)}"
        return None if _is_text(value) else "must be valid Unicode text"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number_problem(value)
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_LABEL_ITEMS:
            return f"a list label must have 1 to {MAX_LABEL_ITEMS} items, got {len(value)}"
        for position, item in enumerate(value):
            if isinstance(item, str):
                if len(item) > MAX_LABEL_ITEM_CHARS:
                    return f"item {position}: strings in a list label may have at most {MAX_LABEL_ITEM_CHARS} characters"
                if not _is_text(item):
                    return f"item {position}: must be valid Unicode text"
            elif isinstance(item, int | float) and not isinstance(item, bool):
                problem = _number_problem(item)
                if problem:
                    return f"item {position}: {problem}"
            else:
                return f"item {position}: list items must be numbers or strings"
        return None
    return "must be a number, a string or a list of numbers and strings"


def _metadata_problem(value: dict[str, Any]) -> str | None:
    if len(value) > MAX_METADATA_KEYS:
        return f"at most {MAX_METADATA_KEYS} keys, got {len(value)}"
    for key, item in value.items():
        problem = None
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS or not _is_text(key):
            problem = f"keys must be 1 to {MAX_METADATA_KEY_CHARS} characters of text"
        elif isinstance(item, str):
            if len(item) > MAX_METADATA_VALUE_CHARS:
                problem = f"string values may have at most {MAX_METADATA_VALUE_CHARS} characters"
            elif not _is_text(item):
                problem = "must be valid Unicode text"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int | float):
            problem = _number_problem(item)
        else:
            problem = "values must be strings, numbers or booleans (no nesting)"
        if problem:
            return f"key {_clip(key, MAX_METADATA_KEY_CHARS)!r}: {problem}"
    return None


def parse_event_time(value: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset (``Z`` or ``+hh:mm``) -> aware ``datetime``; ``ValueError``."""
    if len(value) > MAX_EVENT_TIME_CHARS or not value.isascii():
        raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2024-05-01T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date-time with a time zone, e.g. 2024-05-01T12:00:00Z"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a time zone (Z or an offset such as +02:00)")
    return parsed


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2024-05-01T12:00:00.000000Z``."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("a naive datetime has no UTC equivalent")
    return (moment.replace(tzinfo=None) - offset).isoformat(timespec="microseconds") + "Z"


class FeedbackRecord(BaseModel):
    """One feedback record as the API receives it (unknown fields refused, no type coercion).

    Validate with :func:`validate_record`, which supplies the clock and limits the event-time check
    needs (through the validation context ``{"now": datetime, "max_age": timedelta, "skew": timedelta}``).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)

    inference_id: str
    feedback_type: str
    feedback_id: str | None = None
    label: Any = None
    reward: float | None = None
    event_time: str | None = None
    subject_id: str | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("inference_id")
    @classmethod
    def _inference_id(cls, value: str) -> str:
        if not 1 <= len(value) <= MAX_INFERENCE_ID_CHARS:
            raise ValueError(f"must have 1 to {MAX_INFERENCE_ID_CHARS} characters, got {len(value)}")
        if value[0].isspace():
            raise ValueError("must not start with whitespace")
        if not value.isprintable():
            raise ValueError("must contain only printable characters")
        return value

    @field_validator("feedback_type")
    @classmethod
    def _feedback_type(cls, value: str) -> str:
        if not FEEDBACK_TYPE_PATTERN.fullmatch(value):
            raise ValueError(f"must be 1 to {MAX_FEEDBACK_TYPE_CHARS} characters of [a-z0-9_.-]")
        return value

    @field_validator("feedback_id")
    @classmethod
    def _feedback_id(cls, value: str | None) -> str | None:
        if value is not None and not FEEDBACK_ID_PATTERN.fullmatch(value):
            raise ValueError(f"must be 1 to {MAX_FEEDBACK_ID_CHARS} characters of [A-Za-z0-9._:-]")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: Any) -> Any:
        if value is not None:
            problem = _label_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("reward")
    @classmethod
    def _reward(cls, value: float | None) -> float | None:
        if value is not None:
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError("must be a number from 0 to 1")
            return float(value)
        return value

    @field_validator("event_time")
    @classmethod
    def _event_time(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        moment = parse_event_time(value)
        context = info.context or {}
        now = context.get("now")
        try:
            if now is not None:
                skew = context.get("skew", CLOCK_SKEW)
                max_age = context.get("max_age", timedelta(days=DEFAULT_MAX_AGE_DAYS))
                if moment > now + skew:
                    raise ValueError("is in the future")
                if moment < now - max_age:
                    raise ValueError(f"is more than {max_age.days} days old")
            return format_time(moment)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
            raise ValueError("is out of range") from None

    @field_validator("subject_id")
    @classmethod
    def _subject_id(cls, value: str | None) -> str | None:
        if value is not None and (not 1 <= len(value) <= MAX_SUBJECT_ID_CHARS or not _is_text(value)):
            raise ValueError(f"must be 1 to {MAX_SUBJECT_ID_CHARS} characters of text")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            problem = _metadata_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _label_or_reward(self) -> FeedbackRecord:
        if self.label is None and self.reward is None:
            raise ValueError("at least one of 'label' and 'reward' is required")
        return self


class InvalidFeedback(ValueError):
    """A record failed validation; ``errors`` is ``[{"field", "reason"}]`` (values never echoed)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors


_REASONS = {
    "extra_forbidden": "unknown field",
    "missing": "required",
    "model_type": "must be a JSON object",
    "string_type": "must be a string",
    "float_type": "must be a number",
    "dict_type": "must be a JSON object",
}


def _errors_of(error: ValidationError) -> list[dict[str, str]]:
    errors = []
    for detail in error.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in detail["loc"]) or "record"
        reason = _REASONS.get(detail["type"]) or detail["msg"].removeprefix("Value error, ")
        errors.append({"field": _clip(location, MAX_ERROR_FIELD_CHARS), "reason": reason})
        if len(errors) == MAX_ERRORS_PER_RECORD:
            break
    return errors


def validate_record(
    raw: Any,
    *,
    now: datetime,
    max_age: timedelta = timedelta(days=DEFAULT_MAX_AGE_DAYS),
    skew: timedelta = CLOCK_SKEW,
) -> FeedbackRecord:
    """The validated record, or :class:`InvalidFeedback`; ``now`` must be timezone-aware."""
    try:
        return FeedbackRecord.model_validate(raw, context={"now": now, "max_age": max_age, "skew": skew})
    except ValidationError as error:
        raise InvalidFeedback(_errors_of(error)) from None


# --- normalised feedback ------------------------------------------------------------------------


def derive_feedback_id(inference_id: str, feedback_type: str) -> str:
    """The idempotency key of a record without ``feedback_id``: SHA-256 (hex) of the pair.

    So one feedback of each type per inference id is accepted; send explicit feedback ids to record
    several events of one type (e.g. two purchases) for the same prediction.
    """
    digest = hashlib.sha256(_FEEDBACK_ID_DOMAIN)
    for part in (inference_id, feedback_type):
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return digest.hexdigest()


def hash_subject(subject_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the subject id under ``key``, first 32 hex characters.

    The same form as ``mlops_runtime.domain.routing.hash_subject``: with the router's key (pepper)
    the hashes of feedback and of predictions can be joined; without the key the id cannot be
    recovered or confirmed from a guess.
    """
    if not key:
        raise ConfigurationError("no subject-hash key: subject ids cannot be stored")
    return hmac.digest(key, subject_id.encode("utf-8"), "sha256").hex()[:SUBJECT_HASH_CHARS]


@dataclass(frozen=True, slots=True)
class Feedback:
    """Validated, normalised feedback, ready to store: what the feedback table and the DLQ hold.

    ``received_at`` is Unix epoch seconds; ``expires_at`` epoch seconds (DynamoDB TTL);
    ``event_time`` UTC ISO 8601 (see :func:`format_time`); ``subject_hash`` replaces the subject id.
    """

    feedback_id: str
    inference_id: str
    feedback_type: str
    label: Any
    reward: float | None
    event_time: str | None
    subject_hash: str | None
    metadata: dict[str, Any] | None
    received_at: float
    expires_at: int

    def to_dict(self) -> dict[str, Any]:
        data = {
            "feedback_id": self.feedback_id,
            "inference_id": self.inference_id,
            "feedback_type": self.feedback_type,
            "received_at": self.received_at,
            "expires_at": self.expires_at,
        }
        for name in ("label", "reward", "event_time", "subject_hash", "metadata"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Feedback:
        """The inverse of :meth:`to_dict` (for dead letters); ``ValueError`` if it does not fit."""
        if not isinstance(data, dict):
            raise ValueError("feedback must be an object")  # noqa: TRY004 - one error type for callers
        try:
            feedback = cls(
                feedback_id=data["feedback_id"],
                inference_id=data["inference_id"],
                feedback_type=data["feedback_type"],
                label=data.get("label"),
                reward=data.get("reward"),
                event_time=data.get("event_time"),
                subject_hash=data.get("subject_hash"),
                metadata=data.get("metadata"),
                received_at=data["received_at"],
                expires_at=data["expires_at"],
            )
        except KeyError as missing:
            raise ValueError(f"feedback lacks {missing}") from None
        checks = (
            isinstance(feedback.feedback_id, str) and FEEDBACK_ID_PATTERN.fullmatch(feedback.feedback_id),
            isinstance(feedback.inference_id, str)
            and 1 <= len(feedback.inference_id) <= MAX_INFERENCE_ID_CHARS,
            isinstance(feedback.feedback_type, str)
            and FEEDBACK_TYPE_PATTERN.fullmatch(feedback.feedback_type),
            feedback.label is None or _label_problem(feedback.label) is None,
            feedback.reward is None
            or (
                isinstance(feedback.reward, int | float)
                and not isinstance(feedback.reward, bool)
                and 0 <= feedback.reward <= 1
            ),
            feedback.label is not None or feedback.reward is not None,
            feedback.metadata is None
            or (isinstance(feedback.metadata, dict) and _metadata_problem(feedback.metadata) is None),
            isinstance(feedback.received_at, int | float) and not isinstance(feedback.received_at, bool),
            isinstance(feedback.expires_at, int) and not isinstance(feedback.expires_at, bool),
        )
        if not all(checks):
            raise ValueError("feedback has a missing or malformed field")
        if feedback.reward is not None:
            object.__setattr__(feedback, "reward", float(feedback.reward))
        return feedback


def build_feedback(
    record: FeedbackRecord,
    *,
    now: datetime,
    retention: timedelta = timedelta(days=DEFAULT_RETENTION_DAYS),
    subject_hash_key: bytes | None = None,
) -> Feedback:
    """Normalise a validated record received at ``now``; it expires ``retention`` later."""
    received_at = now.timestamp()
    return Feedback(
        feedback_id=record.feedback_id or derive_feedback_id(record.inference_id, record.feedback_type),
        inference_id=record.inference_id,
        feedback_type=record.feedback_type,
        label=record.label,
        reward=record.reward,
        event_time=record.event_time,
        subject_hash=None
        if record.subject_id is None
        else hash_subject(record.subject_id, subject_hash_key or b""),
        metadata=record.metadata,
        received_at=round(received_at, 3),
        expires_at=int(received_at + retention.total_seconds()),
    )


# --- ground truth -------------------------------------------------------------------------------


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 1.0 -> "1": JSON does not tell 1 and 1.0 apart either
    return repr(value) if isinstance(value, float) else str(value)


def render_label(label: Any) -> tuple[str, str]:
    """``(data, encoding)`` of a label for SageMaker ground truth.

    Numbers and strings are CSV (one field), lists CSV-joined with ``,``; a label whose strings hold
    a comma, a double quote or a line break cannot be one CSV row and is sent as JSON instead
    (``data`` is the label's JSON text, encoding ``JSON``).
    """
    if isinstance(label, str):
        return (label, "CSV") if not _CSV_SPECIAL.search(label) else (json.dumps(label), "JSON")
    if isinstance(label, list):
        if any(isinstance(item, str) and _CSV_SPECIAL.search(item) for item in label):
            return json.dumps(label), "JSON"
        return ",".join(item if isinstance(item, str) else _number_text(item) for item in label), "CSV"
    return _number_text(label), "CSV"


def ground_truth_line(inference_id: str, label: Any) -> bytes:
    """One record of SageMaker model-quality ground truth: a JSON object and ``\\n``.

    ``{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "<inference
    id>"}, "eventVersion": "0"}``; Model Monitor joins it to captured data on the inference id.
    """
    data, encoding = render_label(label)
    # Equivalent to json.dumps of the nested dict (same key order and separators), built directly.
    return (
        f'{{"groundTruthData": {{"data": {json.dumps(data)}, "encoding": "{encoding}"}}, '
        f'"eventMetadata": {{"eventId": {json.dumps(inference_id)}}}, "eventVersion": "0"}}\n'
    ).encode()


# --- joining and crediting ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prediction:
    """The prediction an inference id names, as the router stored it (the join target)."""

    inference_id: str
    endpoint: str
    variant: str
    experiment: str
    arm: str
    model_package_arn: str | None = None
    round: int = UNKNOWN_ROUND
    served_at: float = 0.0
    counted: bool = True  # False: smoke-test traffic, whose rewards are never credited

    @property
    def statistics_key(self) -> str:
        """The statistics row this prediction's reward is credited to: its round, arm, served hour."""
        return statistics_key(self.round, self.arm, self.served_at)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Prediction | None:
        """From a predictions-table item (plain values); None when it names no endpoint and variant.

        ``experiment`` defaults to the endpoint and ``arm`` to ``endpoint/variant`` for records
        written before those attributes existed, ``round`` to 0 (counted in no round).
        """
        endpoint, variant = item.get("endpoint"), item.get("variant")
        inference_id = item.get("inference_id")
        if not all(isinstance(value, str) and value for value in (endpoint, variant, inference_id)):
            return None
        experiment = item.get("experiment")
        arm = item.get("arm")
        package = item.get("model_package_arn")
        round_id = item.get("round")
        served_ms = item.get("created_at_ms")
        served_at = served_ms / 1000 if isinstance(served_ms, (int, float)) else item.get("created_at", 0)
        return cls(
            inference_id=inference_id,
            endpoint=endpoint,
            variant=variant,
            experiment=experiment if isinstance(experiment, str) and experiment else endpoint,
            arm=arm if isinstance(arm, str) and arm else f"{endpoint}/{variant}",
            model_package_arn=package if isinstance(package, str) and package else None,
            round=round_id if isinstance(round_id, int) and not isinstance(round_id, bool) else UNKNOWN_ROUND,
            served_at=float(served_at) if isinstance(served_at, (int, float)) else 0.0,
            counted=not item.get("smoke_test"),
        )


@dataclass(frozen=True, slots=True)
class ExistingFeedback:
    """What the feedback table already holds under a feedback id."""

    joined: bool
    credited: bool = False


@dataclass(frozen=True, slots=True)
class Lookup:
    """Result of :meth:`FeedbackStore.lookup`: predictions by inference id, stored feedback by id."""

    predictions: Mapping[str, Prediction]
    existing: Mapping[str, ExistingFeedback]


@dataclass(frozen=True, slots=True)
class FeedbackWrite:
    """One feedback to store; ``credit``: also add its reward to the statistics of its arm."""

    feedback: Feedback
    prediction: Prediction | None
    credit: bool

    @property
    def joined(self) -> bool:
        return self.prediction is not None


@dataclass
class WriteResult:
    """Result of :meth:`FeedbackStore.write`, by feedback id.

    ``stored`` maps to whether the reward was credited (it is not when another feedback already
    credited the same inference id); ``duplicates`` were stored before; ``failed`` were not written
    (reason) after the store's retries.
    """

    stored: dict[str, bool] = field(default_factory=dict)
    duplicates: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


def credit_marker_id(inference_id: str) -> str:
    """Key, in the feedback table, of the marker saying this inference id's reward was credited."""
    return CREDIT_MARKER_PREFIX + inference_id


def aggregate_credits(writes: Sequence[FeedbackWrite]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """``{(experiment, statistics row key): (reward_sum, reward_sq_sum, feedback_count)}`` over the
    crediting writes: each reward goes to the row of its prediction's round, arm and served hour."""
    totals: dict[tuple[str, str], tuple[float, float, int]] = {}
    for write in writes:
        if not write.credit or write.prediction is None or write.feedback.reward is None:
            continue
        key = (write.prediction.experiment, write.prediction.statistics_key)
        reward = write.feedback.reward
        total, squares, count = totals.get(key, (0.0, 0.0, 0))
        totals[key] = (total + reward, squares + reward * reward, count + 1)
    return totals


class RetryBudget:
    """Until when (on ``clock``, e.g. ``time.monotonic``) adapters may keep retrying.

    One per function, shared by the store and the ground-truth writer; the handler moves ``until``
    at the start of each request so that retries stop early enough to dead-letter what still fails
    before the Lambda (and API Gateway's 29 s) times out. ``math.inf``: no limit.
    """

    __slots__ = ("clock", "until")

    def __init__(self, clock: Any, until: float = math.inf) -> None:
        self.clock = clock
        self.until = until

    def allows(self, delay: float = 0.0) -> bool:
        """Whether another attempt after sleeping ``delay`` seconds still starts before ``until``."""
        return self.until == math.inf or self.clock() + delay < self.until


class LookupFailed(Exception):
    """The store could not read predictions or feedback (after its retries)."""


class FeedbackStore(Protocol):
    """Predictions lookup and idempotent, crediting feedback writes (``adapters.feedback_store``)."""

    def lookup(self, inference_ids: Sequence[str], feedback_ids: Sequence[str]) -> Lookup:
        """Predictions and already-stored feedback (strongly consistent); raises :class:`LookupFailed`."""
        ...

    def write(self, writes: Sequence[FeedbackWrite]) -> WriteResult:
        """Store each feedback unless its id exists and, atomically with it, credit its reward."""
        ...


class GroundTruthSink(Protocol):
    """Delivers ground-truth lines (``adapters.ground_truth``)."""

    def put(self, lines: Sequence[bytes]) -> Mapping[int, str]:
        """Deliver the lines; returns ``{position: reason}`` of those still failing after retries."""
        ...


class DeadLetterSink(Protocol):
    """Durably queues what could not be delivered (``adapters.ground_truth.SqsDeadLetterQueue``)."""

    def send(self, messages: Sequence[Mapping[str, Any]]) -> Mapping[int, str]:
        """Queue the messages; returns ``{position: reason}`` of those that could not be queued."""
        ...


# --- dead letters -------------------------------------------------------------------------------

Stage = Literal["store", "ground_truth"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered feedback: ``stage`` says what is left to do.

    ``store``: look the prediction up, store and credit the feedback (and write its ground truth if
    ``write_ground_truth``); ``ground_truth``: deliver ``ground_truth`` (the feedback is stored).
    """

    stage: Stage
    reason: str
    feedback: Feedback
    write_ground_truth: bool = False
    ground_truth: str | None = None


def dead_letter_message(
    stage: Stage,
    reason: str,
    feedback: Feedback,
    *,
    now: datetime,
    write_ground_truth: bool = False,
    ground_truth: bytes | None = None,
) -> dict[str, Any]:
    """The JSON body of a dead-letter message (no raw subject id: ``feedback`` holds its hash)."""
    message: dict[str, Any] = {
        "kind": DEAD_LETTER_KIND,
        "version": DEAD_LETTER_VERSION,
        "stage": stage,
        "reason": _clip(reason, 1000),
        "dead_lettered_at": format_time(now),
        "feedback": feedback.to_dict(),
        "write_ground_truth": write_ground_truth,
    }
    if ground_truth is not None:
        message["ground_truth"] = ground_truth.decode("utf-8")
    return message


class InvalidDeadLetter(ValueError):
    """A queue message that is not a feedback dead letter."""


def parse_dead_letter(body: str | Mapping[str, Any]) -> DeadLetter:
    """A :class:`DeadLetter` from a message body (JSON text or parsed), or :class:`InvalidDeadLetter`."""
    try:
        message = json.loads(body) if isinstance(body, str) else body
    except ValueError as error:
        raise InvalidDeadLetter(f"not JSON: {error}") from None
    if not isinstance(message, Mapping) or message.get("kind") != DEAD_LETTER_KIND:
        raise InvalidDeadLetter("not a feedback dead letter (kind)")
    if message.get("version") != DEAD_LETTER_VERSION:
        raise InvalidDeadLetter(f"unsupported dead-letter version {message.get('version')!r}")
    stage = message.get("stage")
    if stage not in ("store", "ground_truth"):
        raise InvalidDeadLetter(f"unknown stage {stage!r}")
    try:
        feedback = Feedback.from_dict(message.get("feedback"))
    except ValueError as error:
        raise InvalidDeadLetter(str(error)) from None
    line = message.get("ground_truth")
    if stage == "ground_truth" and (not isinstance(line, str) or not line.endswith("\n")):
        raise InvalidDeadLetter("a ground_truth dead letter needs its ground_truth line")
    return DeadLetter(
        stage=stage,
        reason=str(message.get("reason", "")),
        feedback=feedback,
        write_ground_truth=bool(message.get("write_ground_truth")) and feedback.label is not None,
        ground_truth=line if isinstance(line, str) else None,
    )


# --- the pipeline -------------------------------------------------------------------------------

Status = Literal["stored", "dead_lettered", "duplicate", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one feedback.

    ``stored``: written (and credited if ``credited``); ``dead_lettered``: not written yet but durably
    queued for replay; ``duplicate``: its id was already stored (nothing written again);
    ``failed``: neither written nor queued (the caller should retry). ``ground_truth`` is
    ``written``, ``dead_lettered`` (queued for replay), ``pending`` (left to a store-stage replay) or
    ``none`` (no label, duplicate or failure).
    """

    feedback_id: str
    status: Status
    joined: bool = False
    credited: bool = False
    ground_truth: Literal["written", "dead_lettered", "pending", "none"] = "none"
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """Stored or durably queued: the caller need not send it again."""
        return self.status in ("stored", "dead_lettered")


def process_feedback(
    feedbacks: Sequence[Feedback],
    *,
    store: FeedbackStore,
    ground_truth: GroundTruthSink,
    dead_letters: DeadLetterSink | None,
    now: datetime,
    write_ground_truth: Sequence[bool] | None = None,
) -> list[Outcome]:
    """Join, deliver ground truth, store and credit ``feedbacks``; one :class:`Outcome` each, in order.

    1. Repeated feedback ids within the call: the later ones are duplicates of the first.
    2. One strongly consistent lookup of the predictions and of already-stored feedback ids; a stored
       id is a ``duplicate`` (nothing written). If the lookup fails, every record is dead-lettered
       (stage ``store``).
    3. A reward is credited to the statistics row of the prediction (the round, arm and hour that
       served it), at most once per inference id; smoke-test predictions are never credited.
    4. Ground truth for new records with a label is delivered *before* the store, so a crash between
       the two cannot lose it (a retry writes it again: at-least-once); lines still failing are
       dead-lettered (stage ``ground_truth``), and a record whose line can be neither delivered nor
       queued is not stored (``failed``), so that a retry delivers it.
    5. Store + credit (one transaction per group of records). Records still failing are dead-lettered
       (stage ``store``); if that fails too they are ``failed``.

    ``dead_letters=None`` (replay) reports every failure as ``failed`` instead of queueing it.
    ``write_ground_truth[i]`` (default: the record has a label) says whether record i's ground truth
    is still to be written.
    """
    count = len(feedbacks)
    wants_line = [
        feedback.label is not None and (write_ground_truth is None or bool(write_ground_truth[i]))
        for i, feedback in enumerate(feedbacks)
    ]
    outcomes: list[Outcome | None] = [None] * count
    first_of: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    unique: list[int] = []
    for index, feedback in enumerate(feedbacks):
        first = first_of.setdefault(feedback.feedback_id, index)
        if first != index:
            repeats.append((index, first))
        else:
            unique.append(index)

    def dead_letter(entries: list[tuple[int, Stage, str, bytes | None, bool]]) -> dict[int, str]:
        """Queue ``(index, stage, reason, line, write_line)`` entries; ``{index: reason}`` not queued."""
        if not entries:
            return {}
        if dead_letters is None:
            return {index: reason for index, _, reason, _, _ in entries}
        messages = [
            dead_letter_message(
                stage, reason, feedbacks[index], now=now, write_ground_truth=write_line, ground_truth=line
            )
            for index, stage, reason, line, write_line in entries
        ]
        refused = dead_letters.send(messages)
        return {
            entries[position][0]: f"{entries[position][2]}; dead-letter queue: {why}"
            for position, why in refused.items()
        }

    try:
        lookup = store.lookup(
            list(dict.fromkeys(feedbacks[i].inference_id for i in unique)),
            [feedbacks[i].feedback_id for i in unique],
        )
    except LookupFailed as error:
        reason = f"lookup failed: {error}"
        not_queued = dead_letter([(i, "store", reason, None, wants_line[i]) for i in unique])
        for i in unique:
            fid = feedbacks[i].feedback_id
            if i in not_queued:
                outcomes[i] = Outcome(fid, "failed", reason=not_queued[i])
            else:
                outcomes[i] = Outcome(
                    fid, "dead_lettered", ground_truth="pending" if wants_line[i] else "none", reason=reason
                )
        return _resolve_repeats(outcomes, repeats, feedbacks)

    writes: dict[int, FeedbackWrite] = {}
    credited_inferences: set[str] = set()
    for i in unique:
        feedback = feedbacks[i]
        existing = lookup.existing.get(feedback.feedback_id)
        if existing is not None:
            outcomes[i] = Outcome(feedback.feedback_id, "duplicate", joined=existing.joined)
            continue
        prediction = lookup.predictions.get(feedback.inference_id)
        credit = (
            prediction is not None
            and prediction.counted
            and feedback.reward is not None
            and feedback.inference_id not in credited_inferences
        )
        if credit:
            credited_inferences.add(feedback.inference_id)
        writes[i] = FeedbackWrite(feedback, prediction, credit)

    # Ground truth first (see the docstring).
    line_state: dict[int, Literal["written", "dead_lettered", "none"]] = {i: "none" for i in writes}
    with_line = [i for i in writes if wants_line[i]]
    if with_line:
        lines = [ground_truth_line(feedbacks[i].inference_id, feedbacks[i].label) for i in with_line]
        undelivered = ground_truth.put(lines)
        for i in with_line:
            line_state[i] = "written"
        entries = [
            (with_line[position], "ground_truth", f"ground truth: {why}", lines[position], False)
            for position, why in sorted(undelivered.items())
        ]
        not_queued = dead_letter(entries)
        for index, _, reason, _, _ in entries:
            if index in not_queued:
                outcomes[index] = Outcome(
                    feedbacks[index].feedback_id,
                    "failed",
                    joined=writes[index].joined,
                    reason=not_queued[index],
                )
                del writes[index]
            else:
                line_state[index] = "dead_lettered"

    result = store.write(list(writes.values())) if writes else WriteResult()
    to_queue: list[tuple[int, Stage, str, bytes | None, bool]] = []
    for i, write in writes.items():
        fid = write.feedback.feedback_id
        if fid in result.stored:
            outcomes[i] = Outcome(
                fid, "stored", joined=write.joined, credited=result.stored[fid], ground_truth=line_state[i]
            )
        elif fid in result.duplicates:
            outcomes[i] = Outcome(fid, "duplicate", joined=write.joined)
        else:
            reason = f"store: {result.failed.get(fid, 'not written')}"
            to_queue.append((i, "store", reason, None, False))
    not_queued = dead_letter(to_queue)
    for i, _, reason, _, _ in to_queue:
        write = writes[i]
        fid = write.feedback.feedback_id
        if i in not_queued:
            outcomes[i] = Outcome(fid, "failed", joined=write.joined, reason=not_queued[i])
        else:
            outcomes[i] = Outcome(
                fid, "dead_lettered", joined=write.joined, ground_truth=line_state[i], reason=reason
            )
    return _resolve_repeats(outcomes, repeats, feedbacks)


def _resolve_repeats(
    outcomes: list[Outcome | None], repeats: list[tuple[int, int]], feedbacks: Sequence[Feedback]
) -> list[Outcome]:
    for index, first in repeats:
        original = outcomes[first]
        assert original is not None
        if original.status == "failed":  # nothing was accepted: the repeat must be retried too
            outcomes[index] = Outcome(
                feedbacks[index].feedback_id, "failed", joined=original.joined, reason=original.reason
            )
        else:
            outcomes[index] = Outcome(feedbacks[index].feedback_id, "duplicate", joined=original.joined)
    return [outcome for outcome in outcomes if outcome is not None]


class ReplayFailed(Exception):
    """A dead letter could not be replayed yet; it should stay in the queue."""


def replay_dead_letter(
    letter: DeadLetter, *, store: FeedbackStore, ground_truth: GroundTruthSink, now: datetime
) -> Outcome:
    """Finish what ``letter`` left undone; raises :class:`ReplayFailed` (nothing is re-queued).

    A ``store`` letter runs :func:`process_feedback` again for its feedback (a feedback stored in the
    meantime is a ``duplicate``: nothing is written or credited twice); a ``ground_truth`` letter
    delivers its line again.
    """
    if letter.stage == "ground_truth":
        assert letter.ground_truth is not None
        failures = ground_truth.put([letter.ground_truth.encode("utf-8")])
        if failures:
            raise ReplayFailed(f"ground truth: {failures[0]}")
        return Outcome(letter.feedback.feedback_id, "stored", ground_truth="written")
    (outcome,) = process_feedback(
        [letter.feedback],
        store=store,
        ground_truth=ground_truth,
        dead_letters=None,
        now=now,
        write_ground_truth=[letter.write_ground_truth],
    )
    if outcome.status == "failed":
        raise ReplayFailed(outcome.reason or "not written")
    return outcome
