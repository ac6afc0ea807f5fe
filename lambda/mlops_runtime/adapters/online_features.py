"""Reading a subject's features from the Feature Store online store (inference-time lookup).

:class:`OnlineFeatures` is the interface; :class:`Boto3OnlineFeatures` calls
``sagemaker-featurestore-runtime.GetRecord`` (moto does not implement it, so tests use
:class:`InMemoryOnlineFeatures`). boto3 is imported only when the client is first needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class FeatureLookupError(Exception):
    """The online store could not be read (not: the record does not exist)."""


class OnlineFeatures(Protocol):
    def get_record(
        self, feature_group: str, record_identifier: str, feature_names: Sequence[str]
    ) -> dict[str, str] | None:
        """Feature name -> value (as string) for the requested features, or ``None`` without a record."""
        ...


class Boto3OnlineFeatures:
    """:class:`OnlineFeatures` over ``sagemaker-featurestore-runtime`` (client lazy, or injected)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sagemaker-featurestore-runtime",
                config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=1, read_timeout=2),
            )
        return self._client

    def get_record(
        self, feature_group: str, record_identifier: str, feature_names: Sequence[str]
    ) -> dict[str, str] | None:
        from botocore.exceptions import ClientError

        request: dict[str, Any] = {
            "FeatureGroupName": feature_group,
            "RecordIdentifierValueAsString": record_identifier,
        }
        if feature_names:
            request["FeatureNames"] = list(feature_names)
        try:
            response = self.client.get_record(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ResourceNotFound" and "record" in str(error).lower() and "group" not in str(error).lower():
                return None
            raise FeatureLookupError(f"GetRecord on {feature_group} failed: {code}") from error
        record = response.get("Record")
        if not record:  # GetRecord answers an unknown identifier with an empty response
            return None
        return {entry["FeatureName"]: entry.get("ValueAsString", "") for entry in record}


class InMemoryOnlineFeatures:
    """:class:`OnlineFeatures` fake: ``put(group, identifier, {feature: value})``; records GetRecord calls."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []

    def put(self, feature_group: str, record_identifier: str, values: Mapping[str, Any]) -> None:
        self._records[(feature_group, record_identifier)] = {k: str(v) for k, v in values.items()}

    def get_record(
        self, feature_group: str, record_identifier: str, feature_names: Sequence[str]
    ) -> dict[str, str] | None:
        self.calls.append((feature_group, record_identifier, tuple(feature_names)))
        record = self._records.get((feature_group, record_identifier))
        if record is None:
            return None
        if not feature_names:
            return dict(record)
        return {name: record[name] for name in feature_names if name in record}
