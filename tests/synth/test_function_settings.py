"""The join between each stack and its functions: the settings JSON in every synthesized function's
environment validates with the model its own handler reads at cold start (``SETTINGS_MODEL``)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from settings_support import deployed_settings

from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth


def functions(synthesis, environment):
    for stack, template in synthesis.templates[environment].items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function" and "Handler" in resource["Properties"]:
                yield f"{stack}/{logical_id}", resource["Properties"]


def handlers_with_settings() -> set[str]:
    import mlops_runtime.handlers as package

    found = set()
    for module in pkgutil.iter_modules(package.__path__):
        name = f"{package.__name__}.{module.name}"
        if hasattr(importlib.import_module(name), "SETTINGS_MODEL"):
            found.add(name)
    return found


def test_every_functions_settings_validate_with_its_handlers_model(synthesis):
    from mlops_runtime.settings.base import SETTINGS_ENV

    expected = handlers_with_settings()
    assert expected, "no handler reads its settings from MLOPS_SETTINGS"
    seen = set()
    for environment in environment_names():
        synthesis.template(environment, "Api")  # fails the test with the synthesis error, if any
        for where, props in functions(synthesis, environment):
            module = props["Handler"].rsplit(".", 1)[0]
            if module not in expected:
                assert SETTINGS_ENV not in props.get("Environment", {}).get("Variables", {}), where
                continue
            settings = deployed_settings(props)  # raises if the JSON is not the handler's model
            assert type(settings).__name__ == importlib.import_module(module).SETTINGS_MODEL.__name__, where
            seen.add(module)
    # every handler with a settings model is deployed with its settings (in the environments that have it)
    assert seen == expected
