"""What every function's settings model shares: the strict, closed, immutable base and its error.

Resource names are CloudFormation tokens while the stack builds a model, so they are plain
non-empty strings (:data:`Name`); the rules are about the values that come from the config.
"""

from __future__ import annotations

import os

# No pydantic plugins are used: skip their discovery, which scans the entry points of every installed
# distribution when the first model is built (tens of milliseconds of cold start). Set before the
# first model class is created; an explicit setting in the environment wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from collections.abc import Mapping  # noqa: E402
from typing import Annotated, Self  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from mlops_runtime.settings_env import SETTINGS_ENV, settings_text  # noqa: E402  (one place)

__all__ = ["SETTINGS_ENV", "FunctionSettings", "Name", "SettingsError", "Texts"]

Name = Field(min_length=1)
# A JSON array read as a tuple: lax, since strict mode refuses a list once a before-validator ran.
Texts = Annotated[tuple[str, ...], Field(strict=False)]


class SettingsError(ValueError):
    """The function's settings are missing or invalid: a deployment error, never bad input."""


class FunctionSettings(BaseModel):
    """Base of every function's settings: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

    def to_env(self) -> dict[str, str]:
        """The function's environment entry (what the stack and the rehearsal set)."""
        return {SETTINGS_ENV: self.model_dump_json(exclude_defaults=False)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        raw = settings_text(environ)
        if not raw:
            raise SettingsError(f"environment variable {SETTINGS_ENV} is not set")
        try:
            return cls.model_validate_json(raw)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise SettingsError(f"{SETTINGS_ENV} is not valid {cls.__name__}: {error}") from None
