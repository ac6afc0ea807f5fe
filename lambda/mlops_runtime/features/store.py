"""Writing records to Feature Store: the writer interface, the boto3 adapter and an in-memory fake.

``Record`` lists come from :func:`mlops_runtime.features.schema.validate_record`. boto3 is imported
only when :class:`Boto3FeatureStoreWriter` creates its client, so importing this module stays cheap.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mlops_runtime.adapters.retrying import Retrying
from mlops_runtime.features.schema import FeatureGroupSchema, event_time_sort_key

TARGET_STORES = ("OnlineStore", "OfflineStore")

# PutRecord is idempotent for a given record (same identifier and event time), so retrying a
# throttled or failed call cannot duplicate anything in the online store.
RETRYABLE_ERROR_CODES = frozenset(
    {"ThrottlingException", "Throttling", "ServiceUnavailable", "InternalFailure"}
)


def check_target_stores(target_stores: list[str] | None) -> None:
    """Raise ``ValueError`` unless ``target_stores`` is ``None`` or 1-2 distinct known store names."""
    if target_stores is None:
        return
    if (
        not isinstance(target_stores, list | tuple)
        or not 1 <= len(target_stores) <= 2
        or len(set(target_stores)) != len(target_stores)
        or any(store not in TARGET_STORES for store in target_stores)
    ):
        raise ValueError(
            f"target stores must be one or both of {', '.join(TARGET_STORES)}, got {target_stores!r}"
        )


class FeatureStoreWriter(Protocol):
    """Writes one validated record to a feature group (Feature Store ``PutRecord``)."""

    def put_record(
        self, feature_group_name: str, record: list[dict], target_stores: list[str] | None
    ) -> None: ...


class Boto3FeatureStoreWriter(Retrying):
    """:class:`FeatureStoreWriter` over the ``sagemaker-featurestore-runtime`` client.

    The client is created on first use unless one is injected. Throttling and unavailability
    (:data:`RETRYABLE_ERROR_CODES`) are retried up to ``max_attempts`` times in all, sleeping a
    random "full jitter" delay in ``[0, min(max_delay, base_delay * 2**attempt))`` between tries;
    any other error, or the last retryable one, is raised as botocore's ``ClientError``.
    """

    def __init__(
        self,
        client: Any | None = None,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            client, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep, jitter=jitter
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sagemaker-featurestore-runtime",
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._client

    def put_record(
        self, feature_group_name: str, record: list[dict], target_stores: list[str] | None = None
    ) -> None:
        from botocore.exceptions import ClientError

        request: dict[str, Any] = {"FeatureGroupName": feature_group_name, "Record": record}
        if target_stores is not None:
            request["TargetStores"] = list(target_stores)
        client = self.client
        for attempt in range(self._max_attempts):
            try:
                client.put_record(**request)
                return
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code not in RETRYABLE_ERROR_CODES or attempt == self._max_attempts - 1:
                    raise
                self._back_off(attempt)


class UnknownFeatureGroup(LookupError):
    """The fake store has no schema registered under that feature group name."""


class InMemoryFeatureStore:
    """In-memory :class:`FeatureStoreWriter` for tests and local rehearsal.

    Like Feature Store, the online store keeps one record per identifier: a put replaces it only
    when its event time is later (an older or equal event time leaves the online record as it
    is, as PutRecord's documentation describes). The offline store keeps every record written to
    it. ``target_stores=None`` writes to both.
    """

    def __init__(self, schemas: Iterable[FeatureGroupSchema] = ()) -> None:
        self._schemas: dict[str, FeatureGroupSchema] = {}
        self._online: dict[str, dict[str, list[dict]]] = {}
        self._offline: dict[str, list[list[dict]]] = {}
        self._lock = threading.Lock()
        for schema in schemas:
            self.register(schema)

    def register(self, schema: FeatureGroupSchema) -> None:
        """Create the (empty) feature group ``schema.name``."""
        with self._lock:
            self._schemas[schema.name] = schema
            self._online.setdefault(schema.name, {})
            self._offline.setdefault(schema.name, [])

    def _schema(self, feature_group_name: str) -> FeatureGroupSchema:
        try:
            return self._schemas[feature_group_name]
        except KeyError:
            raise UnknownFeatureGroup(f"feature group {feature_group_name!r} does not exist") from None

    def put_record(
        self, feature_group_name: str, record: list[dict], target_stores: list[str] | None = None
    ) -> None:
        schema = self._schema(feature_group_name)
        check_target_stores(target_stores)
        values = self._record_values(schema, record)
        stores = TARGET_STORES if target_stores is None else tuple(target_stores)
        stored = [dict(item) for item in record]
        with self._lock:
            if "OfflineStore" in stores:
                self._offline[schema.name].append(stored)
            if "OnlineStore" in stores:
                online = self._online[schema.name]
                identifier = values[schema.record_identifier]
                current = online.get(identifier)
                if current is None or self._event_time(schema, stored) > self._event_time(schema, current):
                    online[identifier] = stored

    def get_record(self, feature_group_name: str, record_identifier_value: object) -> dict | None:
        """The online record as ``{feature name: value as string}``, or ``None`` if there is none."""
        schema = self._schema(feature_group_name)
        with self._lock:
            record = self._online[schema.name].get(str(record_identifier_value))
        return None if record is None else {item["FeatureName"]: item["ValueAsString"] for item in record}

    def offline_records(self, feature_group_name: str) -> list[dict]:
        """Every record written to the offline store, oldest write first, as ``{name: value}`` dicts."""
        schema = self._schema(feature_group_name)
        with self._lock:
            history = list(self._offline[schema.name])
        return [{item["FeatureName"]: item["ValueAsString"] for item in record} for record in history]

    @staticmethod
    def _record_values(schema: FeatureGroupSchema, record: list[dict]) -> dict[str, str]:
        """Check the request the way Feature Store would and return ``{name: value}``."""
        values: dict[str, str] = {}
        for item in record:
            name, value = item.get("FeatureName"), item.get("ValueAsString")
            if schema.type_of(name) is None:
                raise ValueError(f"feature {name!r} is not in feature group {schema.name!r}")
            if not isinstance(value, str):
                raise ValueError(f"feature {name!r}: ValueAsString must be a string, got {value!r}")
            if name in values:
                raise ValueError(f"feature {name!r} appears twice in the record")
            values[name] = value
        for required in (schema.record_identifier, schema.event_time_feature):
            if required not in values:
                raise ValueError(f"record lacks required feature {required!r}")
        event_time_sort_key(schema, values[schema.event_time_feature])  # raises if malformed
        return values

    @staticmethod
    def _event_time(schema: FeatureGroupSchema, record: list[dict]) -> Any:
        value = next(i["ValueAsString"] for i in record if i["FeatureName"] == schema.event_time_feature)
        return event_time_sort_key(schema, value)
