"""FeatureDefinition / FeatureGroupSchema: the declaration itself is checked on construction."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlops_runtime.settings.features import FeatureIngestSettings
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
    assert hash(group) == hash(FeatureGroupSchema("g", "id", "ts", tuple(group.features)))


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


# --- the JSON form: the ingest function's settings (settings.FeatureIngestSettings) --------------


def test_the_json_form_round_trips(customers_dict):
    settings = FeatureIngestSettings.model_validate_json(json.dumps(customers_dict))
    group = settings.schema
    assert group.name == "customers"
    assert group.record_identifier == "customer_id"
    assert group.event_time_feature == "event_time"
    assert group.features[2] == FeatureDefinition("age", "Integral")
    assert json.loads(settings.model_dump_json()) == customers_dict
    assert FeatureIngestSettings.from_env(settings.to_env()).schema == group


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("record_identifier"), "record_identifier\n  Field required"),
        (lambda d: d.update(online_store=True), "online_store\n  Extra inputs are not permitted"),
        (lambda d: d.update(features={"a": "String"}), "features\n  Input should be a valid array"),
        (lambda d: d["features"].append("age"), "features.5\n  Input should be an object"),
        (lambda d: d["features"].append({"name": "x"}), "features.5.type\n  Field required"),
        (lambda d: d["features"].append({"name": "x", "type": "String", "extra": 1}), "features.5.extra"),
        (lambda d: d["features"].append({"name": "x", "type": "Bool"}), "feature 'x': type must be one of"),
        (lambda d: d.update(event_time_feature="age"), "must be Fractional (epoch seconds) or String"),
        (lambda d: d["features"].append({"name": "AGE", "type": "Integral"}), "(same as 'age' ignoring case)"),
        (lambda d: d["features"].append({"name": "write_time", "type": "String"}), "reserved by Feature Store"),
        (lambda d: d.update(name="x" * 65), "feature group name"),
    ],
)
def test_malformed_declarations_are_refused_with_the_field(customers_dict, mutate, message):
    mutate(customers_dict)
    with pytest.raises(ValueError) as caught:
        FeatureIngestSettings.model_validate_json(json.dumps(customers_dict))
    assert message in str(caught.value)


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)
