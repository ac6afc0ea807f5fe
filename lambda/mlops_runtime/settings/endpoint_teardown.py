"""``handlers.endpoint_teardown``'s settings (``TeardownSettings``): a custom resource's properties."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from mlops_runtime.settings.base import FunctionSettings, SettingsError


def _cloudformation_text(value: Any, info: ValidationInfo) -> Any:
    """CloudFormation passes every resource property as a string: a non-empty one, stripped."""
    if not isinstance(value, str) or not value.strip():
        name = _PROPERTIES.get(info.field_name or "", info.field_name)
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


class TeardownSettings(FunctionSettings):
    """``handlers.endpoint_teardown``, a custom resource: its settings are the resource's properties
    (a Delete carries the properties the resource was created or last updated with), in their
    PascalCase names (:meth:`to_properties`, :meth:`from_properties`)."""

    model_config = ConfigDict(populate_by_name=True)  # merged into the base's (strict, closed, immutable)

    managed_by_tag: str = Field(alias="ManagedByTag")  # the deployer's mlops:managed-by value
    environment: str = Field(alias="Environment")  # this environment's value of environment_tag_key
    delete_on_destroy: bool = Field(alias="DeleteOnDestroy")  # false: the endpoints outlive the stack
    environment_tag_key: str = Field(default="mlops:environment", alias="EnvironmentTagKey")

    _texts = field_validator("managed_by_tag", "environment", "environment_tag_key", mode="before")(
        classmethod(lambda cls, value, info: _cloudformation_text(value, info)))

    @field_validator("delete_on_destroy", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        if isinstance(value, bool):
            return value
        raise ValueError(f'DeleteOnDestroy must be "true" or "false", got {value!r}')

    def to_properties(self) -> dict[str, str]:
        """The custom resource's properties (strings, as CloudFormation passes them back)."""
        values = self.model_dump(by_alias=True)
        return {key: str(value).lower() if isinstance(value, bool) else value
                for key, value in values.items()}

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> tuple[Self, list[str]]:
        """The settings and the names of unknown properties (ignored; ``ServiceToken`` is the
        Provider's)."""
        if not isinstance(properties, Mapping):
            raise SettingsError("ResourceProperties must be an object")
        known = set(_PROPERTIES.values())
        unknown = sorted(str(key) for key in properties if key not in known and key != "ServiceToken")
        try:
            given = {key: value for key, value in properties.items() if key in known}
            return cls.model_validate(given), unknown
        except ValueError as error:
            problems = [item["msg"].removeprefix("Value error, ") if item["type"] == "value_error"
                        else f"{item['loc'][0]} is required" if item["type"] == "missing" else item["msg"]
                        for item in error.errors(include_url=False)]
            raise SettingsError("; ".join(problems)) from None

    @property
    def required_tags(self) -> dict[str, str]:
        """The tags an endpoint carries when it is this environment's and the deployer made it."""
        from mlops_runtime.domain.deployment import MANAGED_BY_TAG

        return {MANAGED_BY_TAG: self.managed_by_tag, self.environment_tag_key: self.environment}

    @property
    def physical_id(self) -> str:
        return f"endpoint-teardown:{self.managed_by_tag}:{self.environment}"


# field name -> its property name
_PROPERTIES: dict[str, str] = {name: field.alias for name, field in TeardownSettings.model_fields.items()}
