"""``handlers.endpoint_scaler``'s settings (``ScalerSettings``): ``domain.autoscaling``'s entries."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from mlops_runtime.domain.autoscaling import EndpointName, ScalingEntry, ScalingSpec, spec_for
from mlops_runtime.settings.base import FunctionSettings


class ScalerSettings(FunctionSettings):
    """``handlers.endpoint_scaler``: how each endpoint scales, keyed by its full name (endpoints
    not listed, e.g. serverless ones, are left alone)."""

    endpoints: dict[EndpointName, ScalingEntry]

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, endpoints: dict[str, Any]) -> dict[str, Any]:
        lowered: dict[str, str] = {}
        for name in endpoints:  # SageMaker endpoint names are unique regardless of case
            if name.lower() in lowered:
                raise ValueError(f"{name} is the same endpoint as {lowered[name.lower()]} (names ignore case)")
            lowered[name.lower()] = name
        return endpoints

    def spec_for(self, endpoint_name: str) -> ScalingSpec | None:
        """The spec of ``endpoint_name``: exact match, else ignoring case (names from ARNs are lowercase)."""
        return spec_for({name: ScalingSpec.of(name, entry) for name, entry in self.endpoints.items()},
                        endpoint_name)
