"""A feature group's ingest function's settings (``FeatureIngestSettings``)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from mlops_runtime.settings.base import FunctionSettings


class FeatureColumn(FunctionSettings):
    name: str
    type: str  # Integral | Fractional | String: checked by features.schema with the other rules


class FeatureIngestSettings(FunctionSettings):
    """``handlers.feature_ingest`` (and the ``features.ingest`` command): the feature group that
    records are validated against. Its rules are ``features.schema``'s (names, reserved names,
    duplicates ignoring case as the offline store's columns, identifier and event-time features),
    checked here so that a group the function would refuse fails ``make synth``."""

    name: str
    record_identifier: str
    event_time_feature: str
    features: Annotated[tuple[FeatureColumn, ...], Field(strict=False)]

    @field_validator("name")
    @classmethod
    def _a_feature_store_name(cls, name: str) -> str:
        from mlops_runtime.features.schema import check_name

        check_name("feature group name", name)
        return name

    @field_validator("features")
    @classmethod
    def _a_valid_group(cls, features: tuple[FeatureColumn, ...], info: ValidationInfo) -> tuple[FeatureColumn, ...]:
        if "name" in info.data:  # else the name's own error is reported
            cls._schema_of(info.data["name"], info.data.get("record_identifier"),
                           info.data.get("event_time_feature"), features)
        return features

    @staticmethod
    def _schema_of(name: str, record_identifier: Any, event_time_feature: Any,
                   features: tuple[FeatureColumn, ...]) -> Any:
        from mlops_runtime.features.schema import FeatureDefinition, FeatureGroupSchema

        return FeatureGroupSchema(name, record_identifier, event_time_feature,
                                  tuple(FeatureDefinition(f.name, f.type) for f in features))  # type: ignore[arg-type]

    @functools.cached_property
    def schema(self) -> Any:
        """The group as ``features.schema.FeatureGroupSchema`` (what records are validated with)."""
        return self._schema_of(self.name, self.record_identifier, self.event_time_feature, self.features)
