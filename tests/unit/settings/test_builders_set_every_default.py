"""A settings field with a default, forgotten by its builder, ignores the config value in silence: the
function runs with the model's default whatever the config says, and nothing fails. So every field
with a default is set explicitly by its builder in ``mlops_platform/function_settings.py`` (pydantic's
``model_fields_set``, nested settings models included), unless :data:`RUNTIME_ONLY` lists it: a
field no config value maps to, each with its reason.

Not covered: the search functions' settings (``domain.search.SearchSettings``, parsed by hand, not a
pydantic model) and the deployment specs nested in the deployer's and the scaler's settings
(``domain.deployment.EndpointSpec``, ``domain.autoscaling`` entries: dataclasses, which keep no
record of the fields given)."""

from __future__ import annotations

import copy
import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from mlops_platform import function_settings
from mlops_platform.config import load_environments, parse_config
from mlops_platform.config.loader import CONFIG_DIR
from mlops_runtime import settings as settings_package
from mlops_runtime.settings.base import FunctionSettings

# (model, field) -> why no config value maps to it
RUNTIME_ONLY: dict[tuple[str, str], str] = {
    ("ArmTarget", "model_package_arn"): "pins an arm's package; deployed, the functions read it from the endpoint",
    ("ControllerRule", "weights"): "the fixed strategy's split is the experiment's initial_weights, set on it",
    ("MonitorSettings", "baseline_s3_uri"): "no config field: the launcher reads the baseline the package registers",
    ("TeardownSettings", "environment_tag_key"): "the deployer's tag key, a constant of the code, not of the config",
}


def instances(value: Any, path: str) -> Iterator[tuple[str, BaseModel]]:
    """(where, model) of every pydantic model within ``value``, ``value`` first."""
    if isinstance(value, BaseModel):
        yield path, value
        for name in type(value).model_fields:
            yield from instances(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from instances(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from instances(item, f"{path}[{index}]")


def with_feature_lookup() -> Any:
    """dev, its experiment reading the subject's features (no shipped config does: ``FeatureLookup``)."""
    data = copy.deepcopy(yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text()))
    data["serving"]["experiments"][0]["features"] = {"feature_group": "customers",
                                                     "features": ["tenure_months", "monthly_spend"]}
    return parse_config(data, "config/dev.yaml with a feature lookup")


CONFIGS = [*load_environments(), with_feature_lookup()]


def built(configs: list[Any]) -> Iterator[tuple[str, BaseModel]]:
    """(where, model) of every settings model the builders make from ``configs``, nested ones included."""
    for index, config in enumerate(configs):
        for function, build in function_settings.builders(config).items():
            model = build()
            if isinstance(model, FunctionSettings):
                yield from instances(model, f"{config.environment}#{index}:{function}")


def forgotten(configs: list[Any]) -> list[str]:
    """Each field with a default that a builder did not set, and RUNTIME_ONLY does not list."""
    return [f"{where}.{name} ({type(model).__name__}.{name})" for where, model in built(configs)
            for name, field in type(model).model_fields.items()
            if not field.is_required() and name not in model.model_fields_set
            and (type(model).__name__, name) not in RUNTIME_ONLY]


def settings_models() -> set[type]:
    """Every settings model of the runtime package (``mlops_runtime/settings/*.py``)."""
    found: set[type] = set()
    for module in pkgutil.iter_modules(settings_package.__path__):
        loaded = importlib.import_module(f"{settings_package.__name__}.{module.name}")
        found |= {value for value in vars(loaded).values() if isinstance(value, type)
                  and issubclass(value, FunctionSettings) and value is not FunctionSettings
                  and value.__module__ == loaded.__name__}
    return found


def test_every_builder_sets_every_field_that_has_a_default():
    missing = forgotten(CONFIGS)
    assert not missing, "set these in mlops_platform/function_settings.py (the config's value), or list them " \
        "in RUNTIME_ONLY with the reason no config value maps to them:\n" + "\n".join(missing)


def test_every_settings_model_is_checked_and_every_listed_field_still_has_a_default():
    models = {type(model) for _, model in built(CONFIGS)}
    assert settings_models() <= models, f"built from no config here: {settings_models() - models}"
    by_name = {model.__name__: model for model in models}
    for model, field in RUNTIME_ONLY:
        assert not by_name[model].model_fields[field].is_required(), (model, field)


def test_a_builder_line_removed_is_reported(monkeypatch):
    """What the check is for: the feedback builder without its ``max_batch=`` line (a default of 500
    then, whatever serving.api.feedback_max_batch says) fails it, naming both functions it builds."""
    settings = function_settings.feedback_settings
    real = settings.FeedbackApiSettings
    monkeypatch.setattr(settings, "FeedbackApiSettings",
                        lambda **fields: real(**{k: v for k, v in fields.items() if k != "max_batch"}))
    assert forgotten(CONFIGS[:1]) == [f"{CONFIGS[0].environment}#0:{function}.max_batch (FeedbackApiSettings.max_batch)"
                                      for function in ("feedback-api", "feedback-replay")]
