"""validate_record / validate_batch: every value type, its boundaries, and the error messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlops_runtime.settings.features import FeatureIngestSettings
from mlops_runtime.features.schema import (
    INT64_MAX,
    INT64_MIN,
    MAX_RECORD_IDENTIFIER_BYTES,
    MAX_VALUE_BYTES,
    FeatureDefinition,
    FeatureGroupSchema,
    InvalidBatch,
    InvalidRecord,
    validate_batch,
    validate_record,
    value_as_string,
)

NOW = "2024-05-01T12:00:00Z"


def as_dict(fields: list[dict]) -> dict[str, str]:
    return {item["FeatureName"]: item["ValueAsString"] for item in fields}


def value_of(schema, feature, value):
    """ValueAsString of ``feature`` in a minimal valid customers record carrying ``value``."""
    record = {"customer_id": "c1", "event_time": NOW, feature: value}
    return as_dict(validate_record(schema, record))[feature]


def reason_for(schema, feature, value, base=None):
    record = dict(base or {"customer_id": "c1", "event_time": NOW})
    record[feature] = value
    with pytest.raises(InvalidRecord) as caught:
        validate_record(schema, record)
    assert caught.value.feature == feature
    return caught.value.reason


# --- the Record shape ------------------------------------------------------------------------


def test_full_record_in_schema_order(customers):
    record = {"segment": "gold", "balance": 10.5, "age": 42, "event_time": NOW, "customer_id": "c1"}
    assert validate_record(customers, record) == [
        {"FeatureName": "customer_id", "ValueAsString": "c1"},
        {"FeatureName": "event_time", "ValueAsString": NOW},
        {"FeatureName": "age", "ValueAsString": "42"},
        {"FeatureName": "balance", "ValueAsString": "10.5"},
        {"FeatureName": "segment", "ValueAsString": "gold"},
    ]


def test_absent_or_none_optional_features_are_omitted(customers):
    record = {"customer_id": "c1", "event_time": NOW, "age": None}
    assert [f["FeatureName"] for f in validate_record(customers, record)] == ["customer_id", "event_time"]


@pytest.mark.parametrize("missing", ["customer_id", "event_time"])
@pytest.mark.parametrize("how", ["absent", "none"])
def test_identifier_and_event_time_are_required(customers, missing, how):
    record = {"customer_id": "c1", "event_time": NOW, "age": 1}
    if how == "absent":
        del record[missing]
    else:
        record[missing] = None
    with pytest.raises(InvalidRecord, match=f"feature '{missing}': missing: the .* is required") as caught:
        validate_record(customers, record)
    assert caught.value.feature == missing


def test_undeclared_feature_is_named(customers):
    with pytest.raises(InvalidRecord) as caught:
        validate_record(customers, {"customer_id": "c1", "event_time": NOW, "agee": 3})
    assert caught.value.feature == "agee"
    assert str(caught.value) == "feature 'agee': not declared in feature group 'customers'"


def test_undeclared_feature_is_reported_before_a_missing_one(customers):
    # A misspelt identifier is more usefully reported as the unknown name than as "missing".
    with pytest.raises(InvalidRecord, match="'customerid': not declared"):
        validate_record(customers, {"customerid": "c1", "event_time": NOW})


def test_non_string_keys_are_undeclared(customers):
    with pytest.raises(InvalidRecord, match="feature '1': not declared"):
        validate_record(customers, {"customer_id": "c1", "event_time": NOW, 1: "x"})


@pytest.mark.parametrize("record", [[], "c1", 42, None, [("customer_id", "c1")]])
def test_record_must_be_a_mapping(customers, record):
    with pytest.raises(InvalidRecord, match="expected an object mapping feature names to values") as caught:
        validate_record(customers, record)
    assert caught.value.feature is None


def test_message_carries_the_record_index(customers):
    with pytest.raises(InvalidRecord) as caught:
        validate_record(customers, {"customer_id": "c1", "event_time": NOW, "age": "abc"}, index=3)
    error = caught.value
    assert str(error) == "record 3: feature 'age': expected Integral, got 'abc'"
    assert error.detail == "feature 'age': expected Integral, got 'abc'"
    assert error.to_dict() == {"index": 3, "feature": "age", "reason": "expected Integral, got 'abc'"}


def test_input_record_is_not_modified(customers):
    record = {"customer_id": "c1", "event_time": NOW, "age": 3.0, "segment": None}
    snapshot = dict(record)
    validate_record(customers, record)
    assert record == snapshot


# --- Integral --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (-7, "-7"),
        (INT64_MAX, "9223372036854775807"),
        (INT64_MIN, "-9223372036854775808"),
        (3.0, "3"),
        (-0.0, "0"),
        (float(2**53), "9007199254740992"),
        (-float(2**53), "-9007199254740992"),
        ("42", "42"),
        ("-42", "-42"),
        ("+42", "42"),
        ("007", "7"),
        ("9223372036854775807", "9223372036854775807"),
    ],
)
def test_integral_accepted(customers, value, expected):
    assert value_of(customers, "age", value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (INT64_MAX + 1, "Integral value 9223372036854775808 is outside the signed 64-bit range"),
        (INT64_MIN - 1, "Integral value -9223372036854775809 is outside the signed 64-bit range"),
        ("9223372036854775808", "outside the signed 64-bit range"),
        (True, "expected Integral, got boolean True"),
        (False, "expected Integral, got boolean False"),
        (1.5, "expected Integral, got non-integer 1.5"),
        (float("nan"), "expected Integral, got nan"),
        (float("inf"), "expected Integral, got inf"),
        (float(2**53 + 2), "beyond 2\\*\\*53"),
        (1e19, "beyond 2\\*\\*53"),
        ("abc", "expected Integral, got 'abc'"),
        ("4.0", "expected Integral, got '4.0'"),
        (" 4", "expected Integral, got ' 4'"),
        ("1_000", "expected Integral, got '1_000'"),
        ("٣", "expected Integral, got '٣'"),  # Arabic-Indic digit: int() would take it
        ("", "expected Integral, got ''"),
        ([1], "expected Integral, got \\[1\\]"),
        (b"1", "expected Integral, got b'1'"),
    ],
)
def test_integral_rejected(customers, value, reason):
    assert re.search(reason, reason_for(customers, "age", value))


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_any_int64_round_trips(value):
    schema = FeatureGroupSchema(
        "g", "id", "ts", (FeatureDefinition("id", "Integral"), FeatureDefinition("ts", "String"))
    )
    fields = as_dict(validate_record(schema, {"id": value, "ts": NOW}))
    assert int(fields["id"]) == value


@given(st.one_of(st.integers(max_value=INT64_MIN - 1), st.integers(min_value=INT64_MAX + 1)))
def test_any_int_outside_int64_is_rejected(value):
    schema = FeatureGroupSchema(
        "g", "id", "ts", (FeatureDefinition("id", "Integral"), FeatureDefinition("ts", "String"))
    )
    with pytest.raises(InvalidRecord, match="outside the signed 64-bit range"):
        validate_record(schema, {"id": value, "ts": NOW})


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_any_non_integer_float_is_rejected_for_integral(value):
    schema = FeatureGroupSchema(
        "g", "id", "ts", (FeatureDefinition("id", "Integral"), FeatureDefinition("ts", "String"))
    )
    with pytest.raises(InvalidRecord, match="non-integer"):
        validate_record(schema, {"id": value, "ts": NOW})


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_exact_integral_floats_are_accepted(value):
    schema = FeatureGroupSchema(
        "g", "id", "ts", (FeatureDefinition("id", "Integral"), FeatureDefinition("ts", "String"))
    )
    assert as_dict(validate_record(schema, {"id": float(value), "ts": NOW}))["id"] == str(value)


def test_numpy_scalars_are_accepted_and_numpy_bool_rejected(customers):
    numpy = pytest.importorskip("numpy")
    assert value_of(customers, "age", numpy.int64(5)) == "5"
    assert value_of(customers, "age", numpy.float64(5.0)) == "5"
    assert value_of(customers, "balance", numpy.float32(0.5)) == "0.5"
    assert reason_for(customers, "age", numpy.bool_(True)).startswith("expected Integral, got boolean")
    assert reason_for(customers, "balance", numpy.float64("nan")).startswith(
        "Fractional value must be finite"
    )


# --- Fractional ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10.5, "10.5"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        (3, "3.0"),
        (1e308, "1e+308"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (2**70, "1.1805916207174113e+21"),
        ("2.5", "2.5"),
        ("-1e3", "-1000.0"),
        (".5", "0.5"),
        ("7", "7.0"),
    ],
)
def test_fractional_accepted(customers, value, expected):
    assert value_of(customers, "balance", value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "Fractional value must be finite, got nan"),
        (float("inf"), "Fractional value must be finite, got inf"),
        (float("-inf"), "Fractional value must be finite, got -inf"),
        ("1e999", "Fractional value must be finite, got '1e999'"),
        (10**400, "too large for a 64-bit float"),
        (True, "expected Fractional, got boolean True"),
        ("nan", "expected Fractional, got 'nan'"),
        ("inf", "expected Fractional, got 'inf'"),
        ("1,5", "expected Fractional, got '1,5'"),
        ("", "expected Fractional, got ''"),
        ({}, "expected Fractional, got {}"),
    ],
)
def test_fractional_rejected(customers, value, reason):
    assert reason in reason_for(customers, "balance", value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_round_trips_exactly(value):
    schema = FeatureGroupSchema(
        "g",
        "id",
        "ts",
        (
            FeatureDefinition("id", "String"),
            FeatureDefinition("ts", "String"),
            FeatureDefinition("x", "Fractional"),
        ),
    )
    assert float(as_dict(validate_record(schema, {"id": "a", "ts": NOW, "x": value}))["x"]) == value


# --- String ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "gold", "héllo wörld", "日本語", "emoji 🎉", "line\nbreak", "tab\tand \x00 nul"]
)
def test_strings_accepted_verbatim(customers, value):
    assert value_of(customers, "segment", value) == value


def test_string_limit_is_350_kb_of_utf8(customers):
    assert value_as_string("String", "a" * MAX_VALUE_BYTES) == "a" * MAX_VALUE_BYTES
    assert value_of(customers, "segment", "a" * (MAX_VALUE_BYTES - 100)) == "a" * (MAX_VALUE_BYTES - 100)
    assert reason_for(customers, "segment", "a" * (MAX_VALUE_BYTES + 1)) == (
        "String value is 358401 bytes in UTF-8, over Feature Store's limit of 358400"
    )
    # Multi-byte characters count by their encoded size: 120,000 x 3 bytes is over the limit.
    assert "360000 bytes" in reason_for(customers, "segment", "€" * 120_000)


@pytest.mark.parametrize(
    ("value", "shown"), [(42, "42"), (1.5, "1.5"), (True, "True"), (b"x", "b'x'"), (["a"], "\\['a'\\]")]
)
def test_strings_are_not_coerced(customers, value, shown):
    with pytest.raises(InvalidRecord, match=f"expected String, got {shown}"):
        validate_record(customers, {"customer_id": "c1", "event_time": NOW, "segment": value})


def test_lone_surrogates_are_rejected(customers):
    assert "lone surrogate" in reason_for(customers, "segment", "bad \ud800 text")


def test_long_values_are_abbreviated_in_messages(customers):
    reason = reason_for(customers, "age", "x" * 1000)
    assert len(reason) < 100 and reason.endswith("...")


@given(st.text())
def test_any_unicode_text_round_trips(value):
    schema = FeatureGroupSchema(
        "g",
        "id",
        "ts",
        (
            FeatureDefinition("id", "String"),
            FeatureDefinition("ts", "String"),
            FeatureDefinition("s", "String"),
        ),
    )
    assert as_dict(validate_record(schema, {"id": "a", "ts": NOW, "s": value}))["s"] == value


# --- record identifier -----------------------------------------------------------------------


def test_identifier_is_limited_to_2_kb(customers):
    ok = "i" * MAX_RECORD_IDENTIFIER_BYTES
    assert value_of(customers, "customer_id", ok) == ok
    with pytest.raises(InvalidRecord, match="record identifier is 2049 bytes"):
        validate_record(customers, {"customer_id": ok + "i", "event_time": NOW})


def test_identifier_must_not_be_empty(customers):
    with pytest.raises(InvalidRecord, match="feature 'customer_id': record identifier must not be empty"):
        validate_record(customers, {"customer_id": "", "event_time": NOW})


def test_whole_record_size_is_limited(customers):
    half = "a" * (MAX_VALUE_BYTES // 2 + 10)
    schema = FeatureGroupSchema(
        "g", "id", "ts", tuple(FeatureDefinition(n, "String") for n in ("id", "ts", "a", "b"))
    )
    with pytest.raises(
        InvalidRecord, match=r"record is about \d+ bytes, over Feature Store's limit"
    ) as caught:
        validate_record(schema, {"id": "x", "ts": NOW, "a": half, "b": half})
    assert caught.value.feature is None


# --- event time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:00:00Z",
        "2024-02-29T23:59:59Z",
        "2000-02-29T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "0000-02-29T00:00:00Z",  # year 0 is a leap year in ISO 8601
        "9999-12-31T23:59:59.999999999Z",
        "2024-05-01T12:00:00.5Z",
        "2024-05-01T12:00:00.123Z",
        "2024-05-01T12:00:00.123456Z",
        "1970-01-01T00:00:00.000Z",
    ],
)
def test_iso_event_times_accepted(customers, value):
    assert value_of(customers, "event_time", value) == value


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:00:00",  # no zone
        "2024-05-01 12:00:00Z",  # space
        "2024-05-01T12:00:00+00:00",  # offsets are not accepted, only Z
        "2024-05-01T12:00Z",  # no seconds
        "2024-05-01",
        "2024-5-01T12:00:00Z",
        "2024-13-01T12:00:00Z",
        "2024-00-01T12:00:00Z",
        "2024-04-31T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "1900-02-29T12:00:00Z",
        "2024-05-00T12:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:60Z",  # leap seconds are not accepted
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00.1234567890Z",  # more than nanoseconds
        "2024-05-01t12:00:00z",
        "2024-05-01T12:00:00Z\n",
        " 2024-05-01T12:00:00Z",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # full-width digits
        "10000-01-01T00:00:00Z",
        "-001-01-01T00:00:00Z",
        "",
    ],
)
def test_iso_event_times_rejected(customers, value):
    reason = reason_for(customers, "event_time", value)
    assert reason.endswith(
        "is not a valid UTC ISO-8601 time 'yyyy-MM-ddTHH:mm:ssZ' or 'yyyy-MM-ddTHH:mm:ss.SSSZ' "
        "(1-9 fractional digits)"
    )


@pytest.mark.parametrize(
    "value", [1714564800, 1714564800.5, datetime(2024, 5, 1, tzinfo=UTC), b"2024-05-01T12:00:00Z"]
)
def test_string_event_time_must_be_text(customers, value):
    assert reason_for(customers, "event_time", value).startswith("expected an ISO-8601 String event time")


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)), st.integers(0, 9)
)
def test_any_iso_event_time_round_trips(moment, digits):
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"
    if digits:
        text += "." + f"{moment.microsecond:06d}000"[:digits]
    text += "Z"
    schema = FeatureGroupSchema(
        "g", "id", "ts", (FeatureDefinition("id", "String"), FeatureDefinition("ts", "String"))
    )
    assert as_dict(validate_record(schema, {"id": "a", "ts": text}))["ts"] == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714564800, "1714564800.0"),
        (1714564800.25, "1714564800.25"),
        ("1714564800.25", "1714564800.25"),
        (0, "0.0"),
        (-1.5, "-1.5"),
        (-62167219200, "-62167219200.0"),
        (253402300799.9, "253402300799.9"),
    ],
)
def test_fractional_event_times_accepted(sensors, value, expected):
    fields = as_dict(validate_record(sensors, {"sensor_id": 1, "observed_at": value}))
    assert fields["observed_at"] == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "Fractional value must be finite, got nan"),
        (float("inf"), "Fractional value must be finite, got inf"),
        (True, "expected Fractional, got boolean True"),
        ("2024-05-01T12:00:00Z", "expected Fractional, got '2024-05-01T12:00:00Z'"),
        (253402300800, "outside 0000-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
        (-62167219201, "outside 0000-01-01T00:00:00Z..9999-12-31T23:59:59Z"),
    ],
)
def test_fractional_event_times_rejected(sensors, value, reason):
    with pytest.raises(InvalidRecord) as caught:
        validate_record(sensors, {"sensor_id": 1, "observed_at": value})
    assert caught.value.feature == "observed_at"
    assert reason in caught.value.reason


# --- batches ---------------------------------------------------------------------------------


def test_valid_batch(customers):
    batch = [{"customer_id": f"c{i}", "event_time": NOW, "age": i} for i in range(3)]
    assert [as_dict(r)["age"] for r in validate_batch(customers, batch)] == ["0", "1", "2"]


def test_empty_batch(customers):
    assert validate_batch(customers, []) == []


def test_batch_lists_every_bad_record(customers):
    batch = [
        {"customer_id": "ok", "event_time": NOW},
        {"customer_id": "c1", "event_time": NOW, "age": "abc"},
        {"customer_id": "ok2", "event_time": NOW},
        {"event_time": NOW},
        "not a record",
    ]
    with pytest.raises(InvalidBatch) as caught:
        validate_batch(customers, batch)
    errors = caught.value.errors
    assert [(e.index, e.feature) for e in errors] == [(1, "age"), (3, "customer_id"), (4, None)]
    assert str(caught.value).splitlines() == [
        "3 invalid record(s):",
        "  record 1: feature 'age': expected Integral, got 'abc'",
        "  record 3: feature 'customer_id': missing: the record identifier is required",
        "  record 4: expected an object mapping feature names to values, got str",
    ]


def test_batch_accepts_any_iterable(customers):
    generated = ({"customer_id": f"c{i}", "event_time": NOW} for i in range(2))
    assert len(validate_batch(customers, generated)) == 2


@given(
    st.lists(
        st.fixed_dictionaries(
            {"customer_id": st.text(min_size=1, max_size=20), "event_time": st.just(NOW)},
            optional={
                "age": st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX)),
                "balance": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                "segment": st.one_of(st.none(), st.text()),
            },
        ),
        max_size=10,
    )
)
def test_any_valid_generated_batch_round_trips(records):
    schema = FeatureIngestSettings.model_validate(
        {
            "name": "customers",
            "record_identifier": "customer_id",
            "event_time_feature": "event_time",
            "features": [
                {"name": "customer_id", "type": "String"},
                {"name": "event_time", "type": "String"},
                {"name": "age", "type": "Integral"},
                {"name": "balance", "type": "Fractional"},
                {"name": "segment", "type": "String"},
            ],
        }
    ).schema
    for record, fields in zip(records, validate_batch(schema, records), strict=True):
        values = as_dict(fields)
        assert set(values) == {name for name, value in record.items() if value is not None}
        assert values["customer_id"] == record["customer_id"]
        if record.get("age") is not None:
            assert int(values["age"]) == record["age"]
        if record.get("balance") is not None:
            assert float(values["balance"]) == record["balance"]
        if record.get("segment") is not None:
            assert values["segment"] == record["segment"]
