"""FeatureDefinition / FeatureGroupSchema: the declaration itself is checked on construction."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlops_runtime.features.schema import (
    MAX_FEATURES,
    NAME_PATTERN,
    FeatureDefinition,
    FeatureGroupSchema,
    SchemaError,
)


def schema(features, identifier="id", event_time="ts", name="group") -> FeatureGroupSchema:
    return FeatureGroupSchema(
        name=name,
        record_identifier=identifier,
        event_time_feature=event_time,
        features=tuple(FeatureDefinition(n, t) for n, t in features),
    )


# --- feature definitions ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A1", "customer_id", "customer-id", "a__-_b", "x" * 64, "0", "9lives"])
def test_valid_feature_names(name):
    assert FeatureDefinition(name, "String").name == name


@pytest.mark.parametrize(
    "name",
    ["", "_a", "a_", "-a", "a-", "a b", "a.b", "é", "x" * 65, "a\n", "\uff11", None, 3],
)
def test_invalid_feature_names(name):
    with pytest.raises(SchemaError, match="not a valid Feature Store name"):
        FeatureDefinition(name, "String")


@pytest.mark.parametrize("name", ["is_deleted", "write_time", "api_invocation_time", "Write_Time"])
def test_reserved_feature_names(name):
    with pytest.raises(SchemaError, match="reserved"):
        FeatureDefinition(name, "String")


@pytest.mark.parametrize("feature_type", ["integral", "Float", "Boolean", "", None, "Integer"])
def test_invalid_feature_types(feature_type):
    with pytest.raises(SchemaError, match="type must be one of Integral, Fractional, String"):
        FeatureDefinition("age", feature_type)


@given(st.from_regex(NAME_PATTERN, fullmatch=True))
def test_every_name_matching_the_pattern_is_accepted_unless_reserved(name):
    if name.lower() in {"is_deleted", "write_time", "api_invocation_time"}:
        return
    assert FeatureDefinition(name, "Integral").name == name


@given(st.text(max_size=70).filter(lambda s: not NAME_PATTERN.fullmatch(s)))
def test_every_name_not_matching_the_pattern_is_rejected(name):
    with pytest.raises(SchemaError):
        FeatureDefinition(name, "Integral")


def test_definitions_are_frozen():
    feature = FeatureDefinition("age", "Integral")
    with pytest.raises(AttributeError):
        feature.name = "other"  # type: ignore[misc]


# --- feature group schemas -------------------------------------------------------------------


def test_valid_schema_keeps_feature_order_and_types():
    group = schema([("id", "String"), ("ts", "Fractional"), ("n", "Integral")])
    assert [f.name for f in group.features] == ["id", "ts", "n"]
    assert group.type_of("n") == "Integral"
    assert group.type_of("missing") is None


def test_features_given_as_list_are_stored_as_tuple():
    group = FeatureGroupSchema(
        "g", "id", "ts", [FeatureDefinition("id", "String"), FeatureDefinition("ts", "String")]
    )
    assert isinstance(group.features, tuple)
    assert hash(group) == hash(FeatureGroupSchema.from_dict(group.to_dict()))


def test_identifier_must_be_a_feature():
    with pytest.raises(SchemaError, match="record identifier 'id' is not among its features"):
        schema([("other", "String"), ("ts", "String")])


def test_event_time_must_be_a_feature():
    with pytest.raises(SchemaError, match="event time feature 'ts' is not among its features"):
        schema([("id", "String"), ("other", "String")])


def test_identifier_must_be_a_name():
    with pytest.raises(SchemaError, match=r"record identifier \['id'\] is not among its features"):
        FeatureGroupSchema("g", ["id"], "ts", (FeatureDefinition("ts", "String"),))  # type: ignore[arg-type]


def test_event_time_cannot_be_integral():
    with pytest.raises(SchemaError, match=r"must be Fractional .* or String .*not Integral"):
        schema([("id", "String"), ("ts", "Integral")])


@pytest.mark.parametrize("event_time_type", ["Fractional", "String"])
def test_event_time_may_be_fractional_or_string(event_time_type):
    assert schema([("id", "Integral"), ("ts", event_time_type)]).type_of("ts") == event_time_type


def test_identifier_and_event_time_may_be_the_same_feature():
    # Unusual, but Feature Store does not forbid it; both rules then apply to the one value.
    group = schema([("ts", "String")], identifier="ts", event_time="ts")
    assert group.record_identifier == group.event_time_feature == "ts"


def test_duplicate_feature_names_are_rejected():
    with pytest.raises(SchemaError, match="duplicate feature name 'id'"):
        schema([("id", "String"), ("ts", "String"), ("id", "Integral")])


def test_feature_names_differing_only_in_case_are_rejected():
    with pytest.raises(SchemaError, match=r"duplicate feature name 'ID' \(same as 'id' ignoring case\)"):
        schema([("id", "String"), ("ts", "String"), ("ID", "Integral")])


def test_at_most_2500_features():
    names = ["id", "ts"] + [f"f{i}" for i in range(MAX_FEATURES - 2)]
    assert len(schema([(n, "String") for n in names]).features) == MAX_FEATURES
    with pytest.raises(SchemaError, match="2501 features, max 2500"):
        schema([(n, "String") for n in [*names, "one_more"]])


def test_no_features_is_rejected():
    with pytest.raises(SchemaError, match="declares no features"):
        FeatureGroupSchema("g", "id", "ts", ())


@pytest.mark.parametrize(
    "name", ["", "my group", "g" * 65, "-g", "arn:aws:sagemaker:eu-west-1:111111111111:feature-group/g"]
)
def test_group_name_follows_feature_store_pattern(name):
    with pytest.raises(SchemaError, match="feature group name"):
        schema([("id", "String"), ("ts", "String")], name=name)


def test_features_must_be_definitions():
    with pytest.raises(SchemaError, match="FeatureDefinition objects"):
        FeatureGroupSchema("g", "id", "ts", ({"name": "id", "type": "String"},))  # type: ignore[arg-type]


# --- from_dict / to_dict ---------------------------------------------------------------------


def test_from_dict_round_trips_through_json(customers_dict):
    group = FeatureGroupSchema.from_dict(json.loads(json.dumps(customers_dict)))
    assert group.name == "customers"
    assert group.record_identifier == "customer_id"
    assert group.event_time_feature == "event_time"
    assert group.features[2] == FeatureDefinition("age", "Integral")
    assert group.to_dict() == customers_dict
    assert FeatureGroupSchema.from_dict(group.to_dict()) == group


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("record_identifier"), r"missing key\(s\) \['record_identifier'\]"),
        (lambda d: d.update(online_store=True), r"unknown key\(s\) \['online_store'\]"),
        (lambda d: d.update(features={"a": "String"}), "'features' must be a list"),
        (lambda d: d["features"].append("age"), r"features\[5\] must be an object"),
        (
            lambda d: d["features"].append({"name": "x"}),
            r"features\[5\] must be an object with exactly 'name' and 'type'",
        ),
        (lambda d: d["features"].append({"name": "x", "type": "String", "extra": 1}), r"features\[5\]"),
        (lambda d: d["features"].append({"name": "x", "type": "Bool"}), "feature 'x': type must be one of"),
        (lambda d: d.update(event_time_feature="age"), "must be Fractional .* or String"),
    ],
)
def test_from_dict_reports_malformed_declarations(customers_dict, mutate, message):
    mutate(customers_dict)
    with pytest.raises(SchemaError, match=message):
        FeatureGroupSchema.from_dict(customers_dict)


def test_from_dict_requires_an_object():
    with pytest.raises(SchemaError, match="must be a JSON object, got list"):
        FeatureGroupSchema.from_dict([])  # type: ignore[arg-type]


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)
