"""Feature group schemas shared by the Feature Store ingestion tests."""

from __future__ import annotations

import copy

import pytest
from mlops_runtime.features.schema import FeatureGroupSchema
from mlops_runtime.settings.features import FeatureIngestSettings

CUSTOMERS = {
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

SENSORS = {
    "name": "sensor-readings",
    "record_identifier": "sensor_id",
    "event_time_feature": "observed_at",
    "features": [
        {"name": "sensor_id", "type": "Integral"},
        {"name": "observed_at", "type": "Fractional"},
        {"name": "temperature", "type": "Fractional"},
    ],
}


@pytest.fixture
def customers_dict() -> dict:
    """The JSON form of the ``customers`` schema (a fresh copy per test)."""
    return copy.deepcopy(CUSTOMERS)


@pytest.fixture
def sensors_dict() -> dict:
    """The JSON form of the ``sensors`` schema (a fresh copy per test)."""
    return copy.deepcopy(SENSORS)


@pytest.fixture
def customers() -> FeatureGroupSchema:
    """String identifier, ISO-8601 String event time, one feature of each type."""
    return FeatureIngestSettings.model_validate(CUSTOMERS).schema


@pytest.fixture
def sensors() -> FeatureGroupSchema:
    """Integral identifier, Fractional (epoch seconds) event time."""
    return FeatureIngestSettings.model_validate(SENSORS).schema
