"""Feature group schemas and record validation (pure: no boto3, no I/O).

A team declares a feature group (name, record identifier, event-time feature, typed features).
:func:`validate_record` turns one record (a mapping of feature name to value) into the ``Record``
list that Feature Store's ``PutRecord`` expects, or raises :class:`InvalidRecord` naming the feature
and the reason. :func:`validate_batch` checks every record before anything is written and raises
:class:`InvalidBatch` listing all bad records.

Rules, taken from the Feature Store API model and its quotas page:

- Names match ``^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$``; ``is_deleted``, ``write_time`` and
  ``api_invocation_time`` are reserved; at most 2,500 features per group.
- ``Integral``: a signed 64-bit integer. ``bool`` is refused. A float is accepted only when it is
  an integer no larger than 2**53 in magnitude (so it cannot be a rounded integer). A string of
  ASCII decimal digits (optional sign) is accepted too.
- ``Fractional``: a finite IEEE-754 double (NaN and infinities are refused). Ints and plain decimal
  strings (``"1.5"``, ``"-2e3"``) are accepted.
- ``String``: a ``str`` of at most 350 KB encoded as UTF-8.
- The event-time feature is ``Fractional`` (Unix epoch seconds) or ``String`` in UTC ISO-8601,
  ``yyyy-MM-ddTHH:mm:ssZ`` or with 1 to 9 fractional-second digits (``...:ss.SSSZ``), between
  ``0000-01-01T00:00:00Z`` and ``9999-12-31T23:59:59.999999999Z``.
- The record identifier and the event time are required; other features may be absent or ``None``
  and are then left out of the record, as Feature Store allows.
"""

from __future__ import annotations

import calendar
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, get_args

FeatureType = Literal["Integral", "Fractional", "String"]
FEATURE_TYPES: tuple[str, ...] = get_args(FeatureType)

NAME_PATTERN = re.compile(r"[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}", re.ASCII)
RESERVED_FEATURE_NAMES = frozenset({"is_deleted", "write_time", "api_invocation_time"})
MAX_FEATURES = 2500

MAX_VALUE_BYTES = 350 * 1024  # 358,400: ValueAsString limit and "max size of a feature value"
MAX_RECORD_BYTES = 350 * 1024  # "max size of a record"; approximated as names + values, UTF-8
MAX_RECORD_IDENTIFIER_BYTES = 2 * 1024

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_EXACT_FLOAT_INTEGER = 2**53

EPOCH_SECONDS_MIN = -62_167_219_200  # 0000-01-01T00:00:00Z
EPOCH_SECONDS_MAX = Decimal("253402300799.999999999")  # 9999-12-31T23:59:59.999999999Z

_ISO_EVENT_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_INTEGER_TEXT = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class SchemaError(ValueError):
    """The feature group declaration itself is invalid."""


class InvalidRecord(ValueError):
    """One record does not match its feature group schema.

    ``feature`` is the offending feature (``None`` for a problem with the record as a whole),
    ``index`` the record's 0-based position in its batch when known.
    """

    def __init__(self, feature: str | None, reason: str, index: int | None = None) -> None:
        self.feature = feature
        self.reason = reason
        self.index = index
        super().__init__(self.message)

    @property
    def detail(self) -> str:
        """The error without the record position, e.g. ``feature 'age': expected Integral, got 'x'``."""
        return self.reason if self.feature is None else f"feature {self.feature!r}: {self.reason}"

    @property
    def message(self) -> str:
        return self.detail if self.index is None else f"record {self.index}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "feature": self.feature, "reason": self.reason}


class InvalidBatch(ValueError):
    """Some records of a batch are invalid; ``errors`` holds one :class:`InvalidRecord` per bad record."""

    def __init__(self, errors: list[InvalidRecord]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  {error.message}" for error in self.errors)
        super().__init__(f"{len(self.errors)} invalid record(s):\n{lines}")


def check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SchemaError(
            f"{kind} {name!r} is not a valid Feature Store name: 1-64 characters, letters, digits, "
            "'-' and '_', starting and ending with a letter or digit"
        )


@dataclass(frozen=True)
class FeatureDefinition:
    """One declared feature: its name and Feature Store type."""

    name: str
    type: FeatureType

    def __post_init__(self) -> None:
        check_name("feature name", self.name)
        if self.name.lower() in RESERVED_FEATURE_NAMES:
            raise SchemaError(f"feature name {self.name!r} is reserved by Feature Store")
        if self.type not in FEATURE_TYPES:
            raise SchemaError(
                f"feature {self.name!r}: type must be one of {', '.join(FEATURE_TYPES)}, got {self.type!r}"
            )


@dataclass(frozen=True)
class FeatureGroupSchema:
    """A feature group declaration, checked on construction (raises :class:`SchemaError`)."""

    name: str
    record_identifier: str
    event_time_feature: str
    features: tuple[FeatureDefinition, ...]
    _types: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        check_name("feature group name", self.name)
        features = tuple(self.features)
        object.__setattr__(self, "features", features)
        if not features:
            raise SchemaError(f"feature group {self.name!r} declares no features")
        if len(features) > MAX_FEATURES:
            raise SchemaError(
                f"feature group {self.name!r} declares {len(features)} features, max {MAX_FEATURES}"
            )
        for feature in features:
            if not isinstance(feature, FeatureDefinition):
                raise SchemaError(f"features must be FeatureDefinition objects, got {feature!r}")
        seen: dict[str, str] = {}
        for feature in features:
            # Offline-store (Glue/Athena) column names are case-insensitive, so compare that way.
            folded = feature.name.lower()
            if folded in seen:
                raise SchemaError(
                    f"feature group {self.name!r}: duplicate feature name {feature.name!r}"
                    + ("" if seen[folded] == feature.name else f" (same as {seen[folded]!r} ignoring case)")
                )
            seen[folded] = feature.name
        types = {feature.name: feature.type for feature in features}
        for role, name in (
            ("record identifier", self.record_identifier),
            ("event time feature", self.event_time_feature),
        ):
            if not isinstance(name, str) or name not in types:
                raise SchemaError(f"feature group {self.name!r}: {role} {name!r} is not among its features")
        if types[self.event_time_feature] not in ("Fractional", "String"):
            raise SchemaError(
                f"feature group {self.name!r}: event time feature {self.event_time_feature!r} must be "
                f"Fractional (epoch seconds) or String (ISO-8601), not {types[self.event_time_feature]}"
            )
        object.__setattr__(self, "_types", types)

    def type_of(self, feature_name: str) -> str | None:
        """The declared type of ``feature_name``, or ``None`` when it is not declared."""
        return self._types.get(feature_name)


# --- value conversion ---------------------------------------------------------------------------


class _BadValue(Exception):
    """Internal: a value is invalid for its feature; the message is the reason."""


def _is_boolean(value: object) -> bool:
    # numpy.bool_ is not a bool subclass; recognise it by its dtype kind without importing numpy.
    return isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integral_text(value: object) -> str:
    if _is_boolean(value):
        raise _BadValue(f"expected Integral, got boolean {value!r}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real):
        as_float = float(value)
        if not math.isfinite(as_float):
            raise _BadValue(f"expected Integral, got {as_float!r}")
        if not as_float.is_integer():
            raise _BadValue(f"expected Integral, got non-integer {as_float!r}")
        if abs(as_float) > MAX_EXACT_FLOAT_INTEGER:
            raise _BadValue(
                f"expected Integral, got float {as_float!r}, beyond 2**53 where floats cannot hold "
                "every integer exactly; pass an int"
            )
        number = int(as_float)
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        number = int(value)
    else:
        raise _BadValue(f"expected Integral, got {_shown(value)}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise _BadValue(f"Integral value {number} is outside the signed 64-bit range")
    return str(number)


def _fractional_number(value: object) -> float:
    if _is_boolean(value):
        raise _BadValue(f"expected Fractional, got boolean {value!r}")
    if isinstance(value, numbers.Real) or (isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value)):
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise _BadValue(f"Fractional value {_shown(value)} is too large for a 64-bit float") from None
    else:
        raise _BadValue(f"expected Fractional, got {_shown(value)}")
    if not math.isfinite(number):
        raise _BadValue(f"Fractional value must be finite, got {_shown(value)}")
    return number


def _string_text(value: object) -> str:
    if not isinstance(value, str):
        raise _BadValue(f"expected String, got {_shown(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _BadValue("String value is not valid Unicode (it contains a lone surrogate)") from None
    if size > MAX_VALUE_BYTES:
        raise _BadValue(
            f"String value is {size} bytes in UTF-8, over Feature Store's limit of {MAX_VALUE_BYTES}"
        )
    return value


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def parse_iso_event_time(text: str) -> tuple[int, int, int, int, int, int, int] | None:
    """``(year, month, day, hour, minute, second, nanosecond)`` of an ISO event time, else ``None``.

    The tuple sorts chronologically (every accepted value is UTC).
    """
    match = _ISO_EVENT_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    nanosecond = int((match.group(7) or "").ljust(9, "0"))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if not (hour <= 23 and minute <= 59 and second <= 59):
        return None
    return (year, month, day, hour, minute, second, nanosecond)


def _event_time_text(feature_type: str, value: object) -> str:
    if feature_type == "Fractional":
        number = _fractional_number(value)
        if not EPOCH_SECONDS_MIN <= number <= EPOCH_SECONDS_MAX:
            raise _BadValue(
                f"event time {number!r} epoch seconds is outside 0000-01-01T00:00:00Z..9999-12-31T23:59:59Z"
            )
        return repr(number)
    if not isinstance(value, str):
        raise _BadValue(
            f"expected an ISO-8601 String event time like '2024-05-01T12:00:00Z', got {_shown(value)}"
        )
    if parse_iso_event_time(value) is None:
        raise _BadValue(
            f"event time {_shown(value)} is not a valid UTC ISO-8601 time "
            "'yyyy-MM-ddTHH:mm:ssZ' or 'yyyy-MM-ddTHH:mm:ss.SSSZ' (1-9 fractional digits)"
        )
    return value


def value_as_string(feature_type: str, value: object) -> str:
    """Feature Store's ``ValueAsString`` for a ``feature_type`` value; ``ValueError`` if it is invalid."""
    try:
        if feature_type == "Integral":
            return _integral_text(value)
        if feature_type == "Fractional":
            return repr(_fractional_number(value))
        return _string_text(value)
    except _BadValue as error:
        raise ValueError(str(error)) from None


def event_time_sort_key(schema: FeatureGroupSchema, value_as_string: str) -> Any:
    """A key ordering event-time ``ValueAsString`` values of ``schema`` chronologically."""
    if schema.type_of(schema.event_time_feature) == "Fractional":
        return Decimal(value_as_string)
    key = parse_iso_event_time(value_as_string)
    if key is None:
        raise ValueError(f"invalid event time {value_as_string!r}")
    return key


# --- records ------------------------------------------------------------------------------------


def validate_record(
    schema: FeatureGroupSchema, record: Mapping[str, object], *, index: int | None = None
) -> list[dict[str, str]]:
    """Check ``record`` against ``schema`` and return its Feature Store ``Record`` list, in schema order.

    Raises :class:`InvalidRecord` (carrying ``index`` when given) for the first problem found:
    an undeclared feature, a missing identifier or event time, or a value of the wrong type or size.
    ``None`` values of optional features are left out.
    """
    if not isinstance(record, Mapping):
        raise InvalidRecord(
            None, f"expected an object mapping feature names to values, got {type(record).__name__}", index
        )
    undeclared = sorted(
        str(name) for name in record if not isinstance(name, str) or schema.type_of(name) is None
    )
    if undeclared:
        raise InvalidRecord(undeclared[0], f"not declared in feature group {schema.name!r}", index)

    fields: list[dict[str, str]] = []
    total_bytes = 0
    for feature in schema.features:
        value = record.get(feature.name)
        required = feature.name in (schema.record_identifier, schema.event_time_feature)
        if value is None:
            if required:
                role = "record identifier" if feature.name == schema.record_identifier else "event time"
                raise InvalidRecord(feature.name, f"missing: the {role} is required", index)
            continue
        try:
            if feature.name == schema.event_time_feature:
                text = _event_time_text(feature.type, value)
            else:
                text = value_as_string(feature.type, value)
        except (_BadValue, ValueError) as error:
            raise InvalidRecord(feature.name, str(error), index) from None
        size = len(text.encode("utf-8"))
        if feature.name == schema.record_identifier and size > MAX_RECORD_IDENTIFIER_BYTES:
            raise InvalidRecord(
                feature.name,
                f"record identifier is {size} bytes, "
                f"over Feature Store's limit of {MAX_RECORD_IDENTIFIER_BYTES}",
                index,
            )
        if feature.name == schema.record_identifier and text == "":
            raise InvalidRecord(feature.name, "record identifier must not be empty", index)
        total_bytes += size + len(feature.name)
        fields.append({"FeatureName": feature.name, "ValueAsString": text})
    if total_bytes > MAX_RECORD_BYTES:
        raise InvalidRecord(
            None,
            f"record is about {total_bytes} bytes, over Feature Store's limit of {MAX_RECORD_BYTES}",
            index,
        )
    return fields


def validate_batch(
    schema: FeatureGroupSchema, records: Iterable[Mapping[str, object]]
) -> list[list[dict[str, str]]]:
    """Validate every record: their ``Record`` lists, or :class:`InvalidBatch` naming each bad one.

    Nothing should be written unless this returns: it checks the whole batch before any write.
    """
    validated: list[list[dict[str, str]]] = []
    errors: list[InvalidRecord] = []
    for index, record in enumerate(records):
        try:
            validated.append(validate_record(schema, record, index=index))
        except InvalidRecord as error:
            errors.append(error)
    if errors:
        raise InvalidBatch(errors)
    return validated
