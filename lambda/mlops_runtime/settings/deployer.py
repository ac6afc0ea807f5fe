"""``handlers.deployer``'s settings (``DeployerSettings``): the endpoint specs of ``domain.deployment``."""

from __future__ import annotations

from pydantic import Field, field_validator

from mlops_runtime.domain.deployment import EndpointSpec
from mlops_runtime.settings.base import FunctionSettings, Name


class DeployerSettings(FunctionSettings):
    """``handlers.deployer``: the endpoints it owns (packages of other groups are ignored), the
    idempotency table (partition key ``id``, TTL ``expiration``), the topic told about every
    deployment that cannot be planned or fails, and the environment's name (messages, metrics)."""

    endpoints: tuple[EndpointSpec, ...]
    idempotency_table: str = Name
    notification_topic_arn: str | None = Field(default=None, min_length=1)
    environment: str = Name

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, endpoints: tuple[EndpointSpec, ...]) -> tuple[EndpointSpec, ...]:
        seen: set[str] = set()
        for spec in endpoints:  # SageMaker endpoint names are unique regardless of case
            if spec.name.lower() in seen:
                raise ValueError(f"endpoint {spec.name!r} is listed twice (names ignore case)")
            seen.add(spec.name.lower())
        return endpoints
