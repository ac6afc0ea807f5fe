"""The configs the local rehearsal and the lifecycle story run: a shipped environment's file, changed.

Their functions get their settings from the stack's builders (``mlops_platform.function_settings``)
for a config validated as any config file, so that a field the stack sets from the config is set the
same way here; what they need to change (moto's account, their one endpoint and experiment) is
changed in the config's data, before validation, never in the settings built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mlops_platform import function_settings as build
from mlops_platform.config import loader
from mlops_platform.config.models import PlatformConfig


def with_one_endpoint(environment: str, endpoint: Mapping[str, Any], experiment: Mapping[str, Any], *,
                      promote_from: Mapping[str, str] | None = None, **fields: Any) -> PlatformConfig:
    """``config/<environment>.yaml`` with ``endpoint`` and its ``experiment`` in place of the file's
    endpoints and experiments (the rest of ``serving``, e.g. the API's limits, kept), the endpoint's
    model package group added to the registry (and ``promote_from`` set there, if given), and the
    top-level ``fields`` changed (e.g. ``account``); validated by ``config.loader.parse_config``: the
    config model, then every function's settings rules."""
    data = yaml.safe_load((loader.CONFIG_DIR / f"{environment}.yaml").read_text(encoding="utf-8"))
    registry = data.setdefault("training", {}).setdefault("registry", {})
    registry["additional_groups"] = [*registry.get("additional_groups", ()), endpoint["model_package_group"]]
    if promote_from is not None:
        registry["promote_from"] = dict(promote_from)
    data.update(fields)
    data["serving"] = {**data.get("serving", {}), "endpoints": [dict(endpoint)], "experiments": [dict(experiment)]}
    return loader.parse_config(data, f"config/{environment}.yaml (as mlops_platform.local changes it)")


@dataclass(frozen=True)
class ApiSettings:
    """The settings models of the API's functions (``mlops_runtime.settings``), as the API stack builds them."""

    inference: Any
    feedback: Any
    controller: Any


def api_settings(config: PlatformConfig, resources: build.ApiResources) -> ApiSettings:
    """What the API stack gives its functions for ``config`` and ``resources``: the same builders' models."""
    return ApiSettings(
        inference=build.inference(config, resources),
        feedback=build.feedback(config, resources),
        controller=build.controller(config, resources, build.controller_rules(config)),
    )
