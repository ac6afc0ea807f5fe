"""The feature-ingest Lambda handler: schema from the environment, responses, laziness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlops_runtime.features.schema import FeatureGroupSchema
from mlops_runtime.features.store import Boto3FeatureStoreWriter, InMemoryFeatureStore
from mlops_runtime.handlers import feature_ingest
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError
from lambda_context import LambdaContext
from settings_support import set_settings

REPO_ROOT = Path(__file__).resolve().parents[3]
NOW = "2024-05-01T12:00:00Z"


@pytest.fixture
def store(customers, customers_dict, monkeypatch) -> Iterator[InMemoryFeatureStore]:
    """A fresh cold start: schema in the environment, nothing cached, a fake writer."""
    fake = InMemoryFeatureStore([customers])
    set_settings(monkeypatch, **customers_dict)
    feature_ingest.settings.set(None)
    feature_ingest.feature_store_writer.set(fake)
    yield fake
    feature_ingest.feature_store_writer.set(None)


def invoke(event):
    return feature_ingest.handler(event, LambdaContext())


def customer(identifier, **values):
    return {"customer_id": identifier, "event_time": NOW, **values}


def test_writes_records(store):
    assert invoke({"records": [customer("a", age=1), customer("b")]}) == {"written": 2}
    assert store.get_record("customers", "a")["age"] == "1"


def test_target_stores(store):
    assert invoke({"records": [customer("a")], "target_stores": ["OfflineStore"]}) == {"written": 1}
    assert store.get_record("customers", "a") is None
    assert len(store.offline_records("customers")) == 1


def test_invalid_records_are_listed_and_nothing_is_written(store):
    response = invoke(
        {
            "records": [
                customer("a"),
                customer("b", age="x"),
                {"customer_id": "c"},
                customer("d", colour="red"),
            ]
        }
    )
    assert response == {
        "error": "invalid_records",
        "errors": [
            {"index": 1, "feature": "age", "reason": "expected Integral, got 'x'"},
            {"index": 2, "feature": "event_time", "reason": "missing: the event time is required"},
            {"index": 3, "feature": "colour", "reason": "not declared in feature group 'customers'"},
        ],
    }
    assert store.offline_records("customers") == []
    json.dumps(response)  # the response must be JSON-serialisable


def test_record_level_errors_have_no_feature(store):
    assert invoke({"records": ["x"]})["errors"] == [
        {"index": 0, "feature": None, "reason": "expected an object mapping feature names to values, got str"}
    ]


def test_empty_batch(store):
    assert invoke({"records": []}) == {"written": 0}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "must be an object with a 'records' list"),
        ({"records": {"customer_id": "a"}}, "must be an object with a 'records' list"),
        ([], "must be an object with a 'records' list"),
        ({"records": [], "targetStores": ["OnlineStore"]}, "unknown event key(s) ['targetStores']"),
        ({"records": [], "target_stores": ["Online"]}, "target stores must be one or both"),
        ({"records": [], "target_stores": []}, "target stores must be one or both"),
    ],
)
def test_malformed_events(store, event, message):
    response = invoke(event)
    assert response["error"] == "invalid_request"
    assert message in response["message"]


def test_write_failure_fails_the_invocation(store, monkeypatch):
    class Failing:
        def put_record(self, *args):
            raise RuntimeError("boom")

    feature_ingest.feature_store_writer.set(Failing())
    with pytest.raises(feature_ingest.IngestWriteError, match="after 0 of 1 record"):
        invoke({"records": [customer("a")]})


def test_schema_is_parsed_once_per_cold_start(store, monkeypatch):
    invoke({"records": []})
    first = feature_ingest.settings.current
    monkeypatch.setenv(SETTINGS_ENV, "not json any more")
    invoke({"records": []})
    assert feature_ingest.settings.current is first
    assert isinstance(first.schema, FeatureGroupSchema)


def test_missing_schema_is_a_deployment_error(store, monkeypatch):
    monkeypatch.delenv(SETTINGS_ENV)
    with pytest.raises(SettingsError, match="MLOPS_SETTINGS is not set"):
        invoke({"records": []})


@pytest.mark.parametrize("value", ["{not json", '{"name": "g"}'])
def test_invalid_schema_is_a_deployment_error(store, monkeypatch, value):
    monkeypatch.setenv(SETTINGS_ENV, value)
    with pytest.raises(SettingsError, match="MLOPS_SETTINGS is not valid FeatureIngestSettings"):
        invoke({"records": []})
    assert feature_ingest.settings.current is None


def test_default_writer_is_boto3_with_a_lazy_client(store):
    feature_ingest.feature_store_writer.set(None)
    writer = feature_ingest.feature_store_writer()
    assert isinstance(writer, Boto3FeatureStoreWriter)
    assert writer._client is None
    assert feature_ingest.feature_store_writer() is writer


def test_importing_the_handler_does_not_import_boto3():
    code = "import sys, mlops_runtime.handlers.feature_ingest; print('boto3' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "lambda")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert run.stdout.strip() == "False"


# --- the real writer against botocore's service model (moto has no Feature Store runtime) -------


def test_the_handler_writes_through_the_feature_store_runtime_as_its_service_model_defines(store, monkeypatch):
    """Each PutRecord is validated by botocore against the sagemaker-featurestore-runtime model
    (names, types, required fields); a throttled write is answered with the model's error shape and
    retried; the response is the model's (empty) PutRecord output."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session(region_name="eu-west-1").client("sagemaker-featurestore-runtime")
    sleeps: list[float] = []
    feature_ingest.feature_store_writer.set(Boto3FeatureStoreWriter(client, sleep=sleeps.append, jitter=lambda: 0.5))
    record = [{"FeatureName": "customer_id", "ValueAsString": "a"}, {"FeatureName": "event_time", "ValueAsString": NOW},
              {"FeatureName": "age", "ValueAsString": "41"}, {"FeatureName": "balance", "ValueAsString": "2.5"}]
    with Stubber(client) as stubber:
        stubber.add_client_error("put_record", "ThrottlingException", "Rate exceeded", 400,
                                 expected_params={"FeatureGroupName": "customers", "Record": record})
        stubber.add_response("put_record", {}, {"FeatureGroupName": "customers", "Record": record})
        stubber.add_response("put_record", {}, {"FeatureGroupName": "customers", "TargetStores": ["OfflineStore"],
                                                "Record": [{"FeatureName": "customer_id", "ValueAsString": "b"},
                                                           {"FeatureName": "event_time", "ValueAsString": NOW}]})
        assert invoke({"records": [customer("a", age=41, balance=2.5)]}) == {"written": 1}
        assert invoke({"records": [customer("b")], "target_stores": ["OfflineStore"]}) == {"written": 1}
        stubber.assert_no_pending_responses()
    assert len(sleeps) == 1
