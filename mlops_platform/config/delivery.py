"""The optional delivery pipeline's configuration: ``config/delivery/pipeline.yaml``.

It lives in its own folder so that ``config/*.yaml`` stays the list of environments. Without the
file, or with ``enabled: false``, the app has no pipeline and each environment is deployed with
``make deploy ENV=<name>``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from .loader import CONFIG_DIR, ConfigError, _describe, _display, _field_path, _known_fields
from .models import AccountId, EnvironmentName, NamePrefix, Region, StrictModel

DELIVERY_FILE = CONFIG_DIR / "delivery" / "pipeline.yaml"


class DeliveryConfig(StrictModel):
    """A self-mutating CDK pipeline in a tooling account: source from a CodeConnections connection,
    test and synthesize, then deploy the environments in order, with approvals and smoke tests."""

    enabled: bool = Field(default=False, description="Create the pipeline (the other fields are then required).")
    account: AccountId | None = Field(default=None, description="Tooling account the pipeline runs in.")
    region: Region | None = Field(default=None, description="Region of the pipeline.")
    name_prefix: NamePrefix = Field(default="mlops-delivery", description="Prefix of the pipeline's names.")
    connection_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$",
        description="CodeConnections (formerly CodeStar Connections) connection to GitHub, GitLab or Bitbucket.",
    )
    repository: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                   description="owner/name of the repository.")
    branch: str = Field(default="main", pattern=r"^[A-Za-z0-9_./-]{1,100}$")
    stages: tuple[EnvironmentName, ...] = Field(
        default=("dev", "staging", "prod"), description="Environments deployed, in this order."
    )
    manual_approval_before: tuple[EnvironmentName, ...] = Field(
        default=("prod",), description="Environments that wait for a manual approval before deploying."
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> DeliveryConfig:
        if self.enabled:
            missing = [name for name in ("account", "region", "connection_arn", "repository")
                       if getattr(self, name) is None]
            if missing:
                raise ValueError(f"enabled: true needs {', '.join(missing)}")
        strays = [name for name in self.manual_approval_before if name not in self.stages]
        if strays:
            raise ValueError(f"manual_approval_before names environments that are not stages: {strays}")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be unique, got {list(self.stages)}")
        return self


def load_delivery(path: Path = DELIVERY_FILE) -> DeliveryConfig | None:
    """The pipeline's config, or None without the file; raises :class:`ConfigError` (one line each)."""
    if not path.is_file():
        return None
    shown = _display(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"{shown}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{shown}: must be a mapping of settings"])
    try:
        return DeliveryConfig.model_validate(data)
    except ValidationError as exc:
        known = _known_fields(DeliveryConfig)
        raise ConfigError(f"{shown}: field '{_field_path(tuple(e['loc']))}' {_describe(e, known)}"
                          for e in exc.errors(include_url=False)) from None
