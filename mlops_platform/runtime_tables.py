"""Pure modules shared with the Lambda runtime, so infrastructure and runtime validate alike.

``lambda/mlops_runtime`` is deployed as Lambda code, not installed as a package of the CDK app.
Its dependency-free domain modules (the instance-type table, the deployer's endpoint spec) are
imported from there, so config validation at synth time applies the deployer's own rules.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from .paths import RUNTIME_ROOT



def _runtime(module: str) -> ModuleType:
    if str(RUNTIME_ROOT) not in sys.path:
        sys.path.append(str(RUNTIME_ROOT))  # appended: never shadows an installed package
    return importlib.import_module(f"mlops_runtime.{module}")


def _domain(module: str) -> ModuleType:
    return _runtime(f"domain.{module}")


def instance_types() -> ModuleType:
    """``mlops_runtime.domain.instance_types``: the one table of ml.* hosting instance types."""
    return _domain("instance_types")


def variant_kinds() -> ModuleType:
    """``mlops_runtime.domain.variant_kinds``: the variant kinds (fields, rules, requests, scaling, idle cost)."""
    return _domain("variant_kinds")


def deployment_domain() -> ModuleType:
    """``mlops_runtime.domain.deployment``: the deployer's endpoint spec and its validation."""
    return _domain("deployment")


def monitoring_window() -> ModuleType:
    """``mlops_runtime.domain.monitoring_window``: the launcher's windows and late-label rechecks."""
    return _domain("monitoring_window")


def promotion_domain() -> ModuleType:
    """``mlops_runtime.domain.promotion``: the controller -> deployer hand-over event."""
    return _domain("promotion")


def runtime_settings(module: str) -> ModuleType:
    """``mlops_runtime.settings.<module>``: the settings models of a function or family, built by the stacks."""
    return _runtime(f"settings.{module}")


def settings_env() -> ModuleType:
    """``mlops_runtime.settings_env``: the one environment variable of a function's settings."""
    return _runtime("settings_env")


def search_domain() -> ModuleType:
    """``mlops_runtime.domain.search``: the search functions' settings, parsed by hand."""
    return _domain("search")
