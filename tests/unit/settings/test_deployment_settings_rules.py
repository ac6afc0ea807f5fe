"""The deployment functions' rules (deployer, endpoint scaler, model promotion) fail the config load
with one line naming the config field, instead of failing the function at run time.

Each case takes a shipped config, changes one endpoint, and expects ``parse_config`` to refuse it
with the rule the function's own settings model enforces; without ``function_settings.check`` these
configs would load (the config models alone accept them)."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_platform import function_settings
from mlops_platform.config import ConfigError, PlatformConfig, parse_config
from mlops_platform.config.loader import CONFIG_DIR
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError
from mlops_runtime.settings.endpoint_scaler import ScalerSettings
from mlops_runtime.settings.endpoint_teardown import TeardownSettings
from mlops_runtime.settings.model_promotion import PromotionSettings

STAGING = "config/staging.yaml"  # a realtime endpoint with autoscaling, CANARY, capture
PROD = "config/prod.yaml"  # the same with LINEAR and a VPC
EXAMPLE = "example-classifier"  # the shipped example's endpoint, wherever a config lists it
ENDPOINT = "serving.endpoints[{example}]"  # formatted with its index: field_of(...)


def raw(source: str) -> dict:
    return yaml.safe_load((CONFIG_DIR.parent / source).read_text())


def deep_update(target: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value
    return target


def example_index(source: str) -> int:
    return next(i for i, e in enumerate(raw(source)["serving"]["endpoints"]) if e["name"] == EXAMPLE)


def field_of(source: str, field: str) -> str:
    """``field`` with ``{example}`` replaced by the example endpoint's index in ``source``."""
    return field.format(example=example_index(source))


def with_endpoint(source: str, **changes) -> dict:
    data = copy.deepcopy(raw(source))
    deep_update(data["serving"]["endpoints"][example_index(source)], changes)
    return data


def refused(data: dict, source: str) -> str:
    """The one error line of ``data``; fails if the config loads or gives more than one line."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source)
    (line,) = caught.value.lines
    return line


def config_models_alone_accept(data: dict) -> bool:
    """The config's own models accept ``data``: the rule is the function's, applied by ``check``."""
    return PlatformConfig.model_validate(data) is not None


ASYNC = {"kind": "async", "instance_type": "ml.m5.large", "initial_instance_count": 2}


@pytest.mark.parametrize(("source", "changes", "field", "rule", "function"), [
    (STAGING, {"variant": {"autoscaling": {"target_invocations_per_instance": 2_000_000}}},
     f"{ENDPOINT}.variant.autoscaling.target_invocations_per_instance",
     "must be an integer from 1 to 1000000, got 2000000", "endpoint-scaler"),
    (PROD, {"guardrails": {"linear_step_percent": 5}},
     f"{ENDPOINT}.guardrails.linear_step_percent", "must be an integer from 10 to 50, got 5", "endpoint-deployer"),
    (STAGING, {"variant": ASYNC, "monitoring": None},
     f"{ENDPOINT}.challenger_initial_weight", "must be 0 for an async endpoint", "endpoint-deployer"),
    (STAGING, {"shadow": True, "challenger_initial_weight": 0},
     f"{ENDPOINT}.challenger_initial_weight", "must be above 0 with shadow", "endpoint-deployer"),
    (STAGING, {"challenger_initial_weight": 1},
     f"{ENDPOINT}.challenger_initial_weight", "must be below 1 for a live split", "endpoint-deployer"),
    (STAGING, {"data_capture": {"json_content_types": ["application/x+json"]}},
     f"{ENDPOINT}.data_capture.json_content_types", "must be a MIME type", "endpoint-deployer"),
    (STAGING, {"data_capture": {"csv_content_types": [f"text/csv{i}" for i in range(11)]}},
     f"{ENDPOINT}.data_capture.csv_content_types", "at most 10 content types", "endpoint-deployer"),
], ids=["scaling-target", "linear-step", "async-weight", "shadow-without-share", "live-split-of-1",
        "capture-content-type", "capture-content-type-count"])
def test_an_endpoint_rule_of_a_deployment_function_fails_the_load_with_one_line(source, changes, field, rule,
                                                                               function):
    data = with_endpoint(source, **changes)
    assert config_models_alone_accept(data)
    line = refused(data, source)
    assert line.startswith(f"{source}: field '{field_of(source, field)}' = "), line
    assert rule in line and line.endswith(f"(the {function} function would refuse it)"), line


@pytest.mark.parametrize(("key", "rule"), [
    ("aws:team", "the aws: prefix is reserved by AWS"),
    ("mlops:managed-by", "is set by the deployer itself"),
    ("team#1", "tag keys are 1-128 letters"),
])
def test_environment_tags_the_deployer_cannot_put_on_endpoints_fail_the_load(key, rule):
    data = copy.deepcopy(raw(STAGING))
    data["tags"].setdefault("extra", {})[key] = "x"
    assert config_models_alone_accept(data)
    line = refused(data, STAGING)
    assert line.startswith(f"{STAGING}: field 'tags.extra' = ") and rule in line, line


def test_an_endpoint_whose_full_name_is_too_long_fails_the_load():
    """The config checks the name, the deployer the name with the environment's prefix (at most 63)."""
    data = with_endpoint(STAGING, name="e" * 60)
    data["serving"]["experiments"] = []  # they name the endpoint
    assert config_models_alone_accept(data)
    line = refused(data, STAGING)
    assert line.startswith(f"{STAGING}: field '{field_of(STAGING, ENDPOINT)}.name' = '{'e' * 60}': must be 1-63 letters"), line


def test_a_shadow_challenger_with_a_share_of_the_requests_loads():
    """The config once required weight 0 with shadow, the deployer above 0: no shadow config passed."""
    config = parse_config(with_endpoint(STAGING, shadow=True, challenger_initial_weight=1), STAGING)
    (spec,) = function_settings.deployer(config).endpoints
    assert spec.shadow and spec.challenger_initial_weight == 1


@settings(max_examples=40, deadline=None)
@given(target=st.integers(1, 3_000_000), low=st.integers(1, 100), high=st.integers(1, 100))
def test_the_load_time_check_and_the_scaler_agree(target, low, high):
    """Whatever the scaling values: the config loads exactly when the scaler accepts its entry."""
    data = with_endpoint(STAGING, variant={"autoscaling": {
        "target_invocations_per_instance": target, "min_instances": low, "max_instances": high}})
    try:
        parse_config(data, STAGING)
        loads = True
    except ConfigError:
        loads = False
    entry = {"kind": "realtime", "min_instances": low, "max_instances": high,
             "target_invocations_per_instance": target, "scale_in_cooldown_s": 0, "scale_out_cooldown_s": 0}
    try:
        ScalerSettings.model_validate({"endpoints": {"e": entry}}, strict=False)
        accepted = True
    except ValueError:
        accepted = False
    assert loads == accepted == (target <= 1_000_000 and low <= high)


def test_settings_survive_the_environment_variable_and_match_the_domain():
    config = parse_config(raw(PROD), PROD)
    for built in (function_settings.deployer(config), function_settings.scaler(config),
                  function_settings.promotion(config)):
        assert type(built).from_env(built.to_env()) == built
    scaler = function_settings.scaler(config)
    spec = scaler.spec_for("MLOPS-PROD-EXAMPLE-CLASSIFIER")  # names from ARNs are lower-case: any case matches
    assert (spec.kind, spec.min_instances, spec.max_instances, spec.target) == ("realtime", 2, 8, 300)
    promotion = function_settings.promotion(config)
    groups = {p.model_package_group for p in config.training.pipelines} | set(config.training.registry.additional_groups)
    assert promotion.groups == {f"mlops-staging-{group}": f"mlops-prod-{group}" for group in groups}
    assert {"mlops-staging-example-classifier", "mlops-staging-example-gnn"} <= set(promotion.groups)


@pytest.mark.parametrize(("source", "deletes"), [("config/dev.yaml", True), (PROD, False)])
def test_the_teardown_properties_survive_cloudformation(source, deletes):
    """CloudFormation hands the properties back as strings; the handler reads the same settings."""
    settings = function_settings.teardown(parse_config(raw(source), source))
    properties = settings.to_properties()
    assert all(isinstance(value, str) for value in properties.values())
    assert properties["DeleteOnDestroy"] == str(deletes).lower()
    assert TeardownSettings.from_properties({**properties, "ServiceToken": "arn"}) == (settings, [])
    assert TeardownSettings.from_properties({**properties, "Surprise": "1"})[1] == ["Surprise"]


@pytest.mark.parametrize(("settings_json", "problem"), [
    ('{"source_account": "12345", "groups": {}}', "a 12-digit account id"),
    ('{"source_account": "123456789012", "groups": {"a b": "c"}}', "a model package group name"),
    ('{"source_account": "123456789012", "groups": {}, "extra": 1}', "Extra inputs are not permitted"),
])
def test_promotion_settings_rules(settings_json, problem):
    with pytest.raises(SettingsError, match=problem):
        PromotionSettings.from_env({SETTINGS_ENV: settings_json})


SERVERLESS = {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}


@pytest.mark.parametrize(("changes", "field", "rule"), [
    ({"challenger_initial_weight": 0}, "data_capture", "serverless variants do not support data capture"),
    ({"data_capture": None}, "challenger_initial_weight", "must be 0 for a serverless endpoint"),
    ({"data_capture": None, "challenger_initial_weight": 0, "guardrails": {"mode": "CANARY"}},
     "guardrails.mode", "which a serverless endpoint does not have"),
], ids=["capture", "second-variant", "canary"])
def test_what_an_endpoint_of_a_kind_may_hold_is_the_deployers_rule_written_once(changes, field, rule):
    """The config's variant models hold the kind's fields and sizing rules; what the endpoint may hold
    (a challenger, capture, guardrail modes) is the deployer's layout rule from the kind's class, applied
    at load: the config models alone accept these endpoints."""
    data = with_endpoint(STAGING, monitoring=None, **changes)
    data["serving"]["endpoints"][example_index(STAGING)]["variant"] = SERVERLESS
    data["serving"]["experiments"] = []  # their arms name the example's challenger
    assert config_models_alone_accept(data)
    line = refused(data, STAGING)
    assert line.startswith(f"{STAGING}: field '{field_of(STAGING, ENDPOINT)}.{field}' = "), line
    assert rule in line and line.endswith("(the endpoint-deployer function would refuse it)"), line
