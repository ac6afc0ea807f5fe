"""Writers: the in-memory fake's Feature Store semantics, and the boto3 adapter against a Stubber."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from mlops_runtime.features.schema import validate_record
from mlops_runtime.features.store import (
    Boto3FeatureStoreWriter,
    FeatureStoreWriter,
    InMemoryFeatureStore,
    UnknownFeatureGroup,
)


def customer(identifier="c1", event_time="2024-05-01T12:00:00Z", **values):
    return {"customer_id": identifier, "event_time": event_time, **values}


# --- InMemoryFeatureStore --------------------------------------------------------------------


@pytest.fixture
def store(customers, sensors) -> InMemoryFeatureStore:
    return InMemoryFeatureStore([customers, sensors])


def put(store, schema, record, target_stores=None):
    store.put_record(schema.name, validate_record(schema, record), target_stores)


def test_fake_implements_the_protocol(store):
    writer: FeatureStoreWriter = store
    assert callable(writer.put_record)


def test_get_record_returns_the_latest_values(store, customers):
    put(store, customers, customer(age=30, segment="gold"))
    assert store.get_record("customers", "c1") == {
        "customer_id": "c1",
        "event_time": "2024-05-01T12:00:00Z",
        "age": "30",
        "segment": "gold",
    }
    assert store.get_record("customers", "unknown") is None


def test_newer_event_time_replaces_the_online_record(store, customers):
    put(store, customers, customer(event_time="2024-05-01T12:00:00Z", age=30))
    put(store, customers, customer(event_time="2024-05-01T12:00:00.001Z", age=31))
    assert store.get_record("customers", "c1")["age"] == "31"


def test_older_event_time_does_not_replace_the_online_record(store, customers):
    put(store, customers, customer(event_time="2024-05-02T00:00:00Z", age=31))
    put(store, customers, customer(event_time="2024-05-01T23:59:59.999999999Z", age=30))
    assert store.get_record("customers", "c1")["age"] == "31"
    # ...but the offline store keeps the historic record.
    assert [r["age"] for r in store.offline_records("customers")] == ["31", "30"]


def test_equal_event_time_keeps_the_first_record(store, customers):
    put(store, customers, customer(age=30))
    put(store, customers, customer(age=99))
    assert store.get_record("customers", "c1")["age"] == "30"


def test_event_times_compare_chronologically_not_as_text(store, customers):
    # As text "...:00Z" sorts after "...:00.5Z" ('Z' > '.'), yet it is half a second earlier.
    put(store, customers, customer(event_time="2024-05-01T12:00:00Z", age=1))
    put(store, customers, customer(event_time="2024-05-01T12:00:00.5Z", age=2))
    assert store.get_record("customers", "c1")["age"] == "2"


def test_fractional_event_times_compare_numerically(store, sensors):
    put(store, sensors, {"sensor_id": 7, "observed_at": 100.0, "temperature": 1.0})
    put(store, sensors, {"sensor_id": 7, "observed_at": 99.5, "temperature": 2.0})
    put(store, sensors, {"sensor_id": 7, "observed_at": 1e3, "temperature": 3.0})  # "1000.0"
    assert store.get_record("sensor-readings", 7) == {
        "sensor_id": "7",
        "observed_at": "1000.0",
        "temperature": "3.0",
    }


def test_records_are_kept_per_identifier(store, customers):
    put(store, customers, customer("a", age=1))
    put(store, customers, customer("b", age=2))
    assert store.get_record("customers", "a")["age"] == "1"
    assert store.get_record("customers", "b")["age"] == "2"


def test_target_stores(store, customers):
    put(store, customers, customer("offline-only"), ["OfflineStore"])
    put(store, customers, customer("online-only"), ["OnlineStore"])
    put(store, customers, customer("both"), ["OnlineStore", "OfflineStore"])
    assert store.get_record("customers", "offline-only") is None
    assert store.get_record("customers", "online-only") is not None
    assert [r["customer_id"] for r in store.offline_records("customers")] == ["offline-only", "both"]


@pytest.mark.parametrize("target_stores", [[], ["Online"], ["OnlineStore", "OnlineStore"], "OnlineStore"])
def test_invalid_target_stores_are_rejected(store, customers, target_stores):
    with pytest.raises(ValueError, match="target stores must be one or both of OnlineStore, OfflineStore"):
        put(store, customers, customer(), target_stores)


def test_unknown_feature_group(store):
    with pytest.raises(UnknownFeatureGroup, match="'nope' does not exist"):
        store.put_record("nope", [], None)
    with pytest.raises(UnknownFeatureGroup):
        store.get_record("nope", "c1")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([{"FeatureName": "customer_id", "ValueAsString": "c1"}], "lacks required feature 'event_time'"),
        (
            [{"FeatureName": "event_time", "ValueAsString": "2024-05-01T12:00:00Z"}],
            "lacks required feature 'customer_id'",
        ),
        ([{"FeatureName": "zzz", "ValueAsString": "1"}], "'zzz' is not in feature group"),
        ([{"FeatureName": "customer_id", "ValueAsString": 1}], "must be a string"),
        (
            [
                {"FeatureName": "customer_id", "ValueAsString": "a"},
                {"FeatureName": "customer_id", "ValueAsString": "b"},
            ],
            "appears twice",
        ),
        (
            [
                {"FeatureName": "customer_id", "ValueAsString": "a"},
                {"FeatureName": "event_time", "ValueAsString": "yesterday"},
            ],
            "invalid event time",
        ),
    ],
)
def test_fake_rejects_requests_feature_store_would_reject(store, record, message):
    with pytest.raises(ValueError, match=message):
        store.put_record("customers", record, None)
    assert store.offline_records("customers") == []


def test_stored_records_are_copies(store, customers):
    fields = validate_record(customers, customer(age=1))
    store.put_record("customers", fields, None)
    fields[2]["ValueAsString"] = "tampered"
    assert store.get_record("customers", "c1")["age"] == "1"


@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 1000)), min_size=1, max_size=20))
def test_online_store_serves_the_record_with_the_latest_event_time(puts):
    from mlops_runtime.settings.features import FeatureIngestSettings

    schema = FeatureIngestSettings.model_validate(
        {
            "name": "g",
            "record_identifier": "id",
            "event_time_feature": "ts",
            "features": [
                {"name": "id", "type": "String"},
                {"name": "ts", "type": "Fractional"},
                {"name": "v", "type": "Integral"},
            ],
        }
    ).schema
    store = InMemoryFeatureStore([schema])
    for event_time, value in puts:
        store.put_record("g", validate_record(schema, {"id": "x", "ts": event_time, "v": value}), None)
    latest = max(event_time for event_time, _ in puts)
    first_at_latest = next(value for event_time, value in puts if event_time == latest)
    assert store.get_record("g", "x") == {"id": "x", "ts": repr(float(latest)), "v": str(first_at_latest)}
    assert len(store.offline_records("g")) == len(puts)


# --- Boto3FeatureStoreWriter -----------------------------------------------------------------


RECORD = [
    {"FeatureName": "customer_id", "ValueAsString": "c1"},
    {"FeatureName": "event_time", "ValueAsString": "2024-05-01T12:00:00Z"},
]


@pytest.fixture
def client():
    return boto3.client("sagemaker-featurestore-runtime", region_name="eu-west-1")


@pytest.fixture
def stubber(client):
    with Stubber(client) as stubbed:
        yield stubbed
        stubbed.assert_no_pending_responses()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def writer_for(client, sleeps, **options):
    return Boto3FeatureStoreWriter(client, sleep=sleeps, jitter=lambda: 1.0, **options)


def test_put_record_request_shape(client, stubber):
    stubber.add_response(
        "put_record",
        {},
        expected_params={
            "FeatureGroupName": "customers",
            "Record": RECORD,
            "TargetStores": ["OnlineStore", "OfflineStore"],
        },
    )
    writer_for(client, Sleeps()).put_record("customers", RECORD, ["OnlineStore", "OfflineStore"])


def test_target_stores_omitted_when_none(client, stubber):
    stubber.add_response(
        "put_record", {}, expected_params={"FeatureGroupName": "customers", "Record": RECORD}
    )
    writer_for(client, Sleeps()).put_record("customers", RECORD, None)


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailable", "InternalFailure"])
def test_retryable_errors_are_retried_with_exponential_back_off(client, stubber, code):
    for _ in range(3):
        stubber.add_client_error(
            "put_record", service_error_code=code, http_status_code=400 if code.startswith("Thr") else 503
        )
    stubber.add_response(
        "put_record", {}, expected_params={"FeatureGroupName": "customers", "Record": RECORD}
    )
    sleeps = Sleeps()
    writer_for(client, sleeps, base_delay=0.1).put_record("customers", RECORD, None)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_back_off_is_capped_and_jittered(client, stubber):
    for _ in range(4):
        stubber.add_client_error("put_record", service_error_code="ThrottlingException", http_status_code=400)
    stubber.add_response("put_record", {})
    sleeps = Sleeps()
    writer = Boto3FeatureStoreWriter(client, base_delay=1.0, max_delay=3.0, sleep=sleeps, jitter=lambda: 0.5)
    writer.put_record("customers", RECORD, None)
    assert sleeps == pytest.approx([0.5, 1.0, 1.5, 1.5])


def test_retries_are_bounded(client, stubber):
    for _ in range(3):
        stubber.add_client_error("put_record", service_error_code="ThrottlingException", http_status_code=400)
    sleeps = Sleeps()
    with pytest.raises(ClientError) as caught:
        writer_for(client, sleeps, max_attempts=3).put_record("customers", RECORD, None)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(sleeps) == 2


@pytest.mark.parametrize("code", ["ValidationError", "AccessForbidden", "ResourceNotFound"])
def test_other_errors_are_raised_at_once(client, stubber, code):
    stubber.add_client_error(
        "put_record", service_error_code=code, service_message="bad", http_status_code=400
    )
    sleeps = Sleeps()
    with pytest.raises(ClientError) as caught:
        writer_for(client, sleeps).put_record("customers", RECORD, None)
    assert caught.value.response["Error"]["Code"] == code
    assert sleeps == []


def test_client_is_created_lazily_with_standard_retries(monkeypatch):
    created = []

    def fake_client(service_name, **kwargs):
        created.append((service_name, kwargs))
        return "client"

    monkeypatch.setattr(boto3, "client", fake_client)
    writer = Boto3FeatureStoreWriter()
    assert created == []
    assert writer.client == "client"
    assert writer.client == "client"
    [(service_name, kwargs)] = created
    assert service_name == "sagemaker-featurestore-runtime"
    assert kwargs["config"].retries == {"mode": "standard", "max_attempts": 3}


def test_real_client_config(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = Boto3FeatureStoreWriter().client
    assert client.meta.service_model.service_name == "sagemaker-featurestore-runtime"
    assert client.meta.config.retries["mode"] == "standard"


def test_max_attempts_must_be_positive():
    with pytest.raises(ValueError):
        Boto3FeatureStoreWriter(max_attempts=0)
