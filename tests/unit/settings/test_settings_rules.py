"""Every rule a function's settings model enforces at run time is enforced when the config is loaded:
a config the function would refuse fails ``make synth`` with one line (file, field, value, rule)."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mlops_platform import function_settings
from mlops_platform.config import ConfigError, load_environments, parse_config
from mlops_platform.config.loader import CONFIG_DIR, environment_names
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.experiments import ControllerSettings, ExperimentSettings
from mlops_runtime.settings.feedback import FeedbackApiSettings
from mlops_runtime.settings.monitoring import MonitoringLauncherSettings, RetrainingSettings


def raw_config(environment: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{environment}.yaml").read_text())


def with_api(environment: str, **api) -> dict:
    data = copy.deepcopy(raw_config(environment))
    data.setdefault("serving", {}).setdefault("api", {}).update(api)
    return data


@pytest.mark.parametrize("config", load_environments(), ids=lambda c: c.environment)
def test_every_shipped_config_builds_every_functions_settings(config):
    built = {name: build() for name, build in function_settings.builders(config).items()}
    assert set(built) >= {"inference-api", "feedback-api", "feedback-replay", "experiment-controller",
                          "monitoring-launcher", "retraining-trigger", "endpoint-deployer", "endpoint-scaler",
                          "model-promotion"}
    for settings in filter(None, built.values()):  # and survives the trip through the environment variable
        assert type(settings).from_env(settings.to_env()) == settings


@pytest.mark.parametrize("environment", environment_names())
@pytest.mark.parametrize(("api", "rule"), [
    ({"feedback_max_age_days": 120, "feedback_retention_days": 90}, "must exceed feedback_max_age_days (120)"),
    ({"prediction_ttl_days": 400, "feedback_retention_days": 90}, "must be at least prediction_ttl_days (400)"),
])
def test_a_cross_field_rule_of_the_feedback_function_fails_at_load_with_one_line(environment, api, rule):
    source = f"config/{environment}.yaml"
    with pytest.raises(ConfigError) as caught:
        parse_config(with_api(environment, **api), source)
    (line,) = caught.value.lines  # the API and its replay share the rule: reported once
    assert line.startswith(f"{source}: field 'serving.api.feedback_retention_days' = 90: {rule}")


@given(max_age=st.integers(1, 365), retention=st.integers(1, 3650), ttl=st.integers(1, 3650))
def test_the_load_time_check_and_the_runtime_model_agree(max_age, retention, ttl):
    """Whatever the values: the config loads exactly when the function would accept its settings."""
    data = with_api("dev", feedback_max_age_days=max_age, feedback_retention_days=retention,
                    prediction_ttl_days=ttl)
    try:
        parse_config(data, "config/dev.yaml")
        loads = True
    except ConfigError:
        loads = False
    fields = dict(predictions_table="p", feedback_table="f", statistics_table="s", ground_truth_stream="g",
                  dead_letter_queue_url="q", max_age_days=max_age, retention_days=retention, prediction_ttl_days=ttl)
    try:
        FeedbackApiSettings(**fields)
        accepted = True
    except ValueError:
        accepted = False
    assert loads == accepted == (retention > max_age and retention >= ttl)


def experiment(**changes):
    base = {"name": "e", "arms": [{"arm": "a", "endpoint": "ep", "variant": "v"},
                                  {"arm": "b", "endpoint": "ep", "variant": "w"}]}
    return {**base, **changes}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"arms": []}, "at least 1 item"),
    ({"arms": [{"arm": "a", "endpoint": "ep", "variant": "v"}] * 2}, "arm names must be unique"),
    ({"initial_weights": {"a": 1.0}}, "initial_weights must give every arm"),
    ({"initial_weights": {"a": 0.0, "b": 0.0}}, "summing to more than 0"),
    ({"initial_weights": {"a": -1.0, "b": 2.0}}, "a weight >= 0"),
])
def test_experiment_rules(changes, problem):
    with pytest.raises(ValueError, match=problem):
        ExperimentSettings.model_validate(experiment(**changes))


def test_experiment_defaults_follow_its_name():
    parsed = ExperimentSettings.model_validate(experiment(content_types=["Text/CSV"]))
    assert (parsed.experiment, parsed.salt, parsed.content_types) == ("e", "e", ("text/csv",))
    assert parsed.initial_weights == {"a": 1.0, "b": 1.0}


@pytest.mark.parametrize(("rule", "problem"), [
    ({"min_share": 0.4}, "min_share 0.4 is impossible for 3 arms"),
    ({"strategy": "fixed", "weights": {"a": 1.0}}, "fixed weights"),
])
def test_controller_rules_that_depend_on_the_experiment(rule, problem):
    three = experiment(arms=[{"arm": x, "endpoint": "ep", "variant": x} for x in "abc"])
    with pytest.raises(ValueError, match=problem):
        ControllerSettings(experiments={"e": three}, controllers={"e": rule}, statistics_table="s",
                                   state_table="t")
    with pytest.raises(ValueError, match="unknown experiment"):
        ControllerSettings(experiments={"e": three}, controllers={"other": {}}, statistics_table="s",
                                   state_table="t")


def test_settings_are_closed_and_strict():
    fields = dict(predictions_table="p", feedback_table="f", statistics_table="s", ground_truth_stream="g",
                  dead_letter_queue_url="q")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        FeedbackApiSettings(**fields, unknown=1)
    with pytest.raises(ValueError, match="valid integer"):
        FeedbackApiSettings.model_validate_json(
            FeedbackApiSettings(**fields).model_dump_json().replace('"max_batch":500', '"max_batch":"500"'))
    with pytest.raises(SettingsError, match="is not set"):
        FeedbackApiSettings.from_env({})


# --- monitoring: the launcher and the retraining trigger -----------------------------------------


def monitored_field(environment: str, field: str) -> str:
    """``serving.endpoints[i].monitoring.<field>`` of the first monitored endpoint (the one
    :func:`with_monitoring` changes)."""
    endpoints = raw_config(environment)["serving"]["endpoints"]
    index = next(i for i, e in enumerate(endpoints) if e.get("monitoring") is not None)
    return f"serving.endpoints[{index}].monitoring.{field}"


def with_monitoring(environment: str, **monitoring) -> dict:
    """``environment``'s config with its first monitored endpoint's ``monitoring`` changed."""
    data = copy.deepcopy(raw_config(environment))
    endpoint = next(e for e in data["serving"]["endpoints"] if e.get("monitoring") is not None)
    for key, value in monitoring.items():
        if isinstance(value, dict):
            endpoint["monitoring"].setdefault(key, {}).update(value)
        else:
            endpoint["monitoring"][key] = value
    return data


def one_line(data: dict, source: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source)
    (line,) = caught.value.lines
    return line


@pytest.mark.parametrize(("schedule", "hours"), [
    ("cron(15 * * * ? *)", 1), ("cron(0 */6 * * ? *)", 6), ("cron(5 0/2 * * ? *)", 2), ("cron(30 4 * * ? *)", 24),
    ("cron(0 3 ? * MON *)", 168), ("rate(1 hour)", 1), ("rate(3 hours)", 3), ("rate(2 days)", 48),
    ("rate(30 minutes)", 0.5), ("cron(0 9-17 * * ? *)", None), ("cron(0 0 1 * ? *)", None),
])
def test_schedule_period(schedule, hours):
    assert function_settings.schedule_hours(schedule) == hours


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_a_launcher_schedule_that_does_not_run_once_per_window_fails_at_load(environment):
    """The launcher analyses the window before each run: it must run once per window (a run-time rule
    of ``MonitorSettings``, here enforced when the config loads)."""
    source = f"config/{environment}.yaml"
    line = one_line(with_monitoring(environment, window_hours=24), source)
    assert line.startswith(f"{source}: field '{monitored_field(environment, 'schedule')}' = 'cron(15 * * * ? *)': "
                           "runs every 1 h but window_hours is 24")
    assert line.endswith("(the monitoring-launcher function would refuse it)")
    parse_config(with_monitoring(environment, window_hours=24, schedule="cron(15 0 * * ? *)"), source)  # daily: fine


def test_a_retraining_cooldown_shorter_than_the_alarm_period_fails_at_load():
    source = "config/staging.yaml"
    data = with_monitoring("staging", window_hours=48, schedule="rate(2 days)", retraining={"cooldown_hours": 24})
    line = one_line(data, source)  # the drift and quality alarms share the rule: reported once
    assert line.startswith(f"{source}: field '{monitored_field('staging', 'retraining.cooldown_hours')}' = 24.0: "
                           "must be at least the alarm's period, the monitoring window (48 h)")
    assert "(the retraining-trigger function would refuse it)" in line
    parse_config(with_monitoring("staging", window_hours=48, schedule="rate(2 days)",
                                 retraining={"cooldown_hours": 48}), source)


@given(window=st.integers(1, 168), schedule=st.sampled_from(["rate(1 hour)", "rate(6 hours)", "rate(1 day)",
                                                              "cron(0 0 ? * SUN *)"]),
       cooldown=st.integers(1, 720))
def test_the_load_time_check_and_the_monitoring_models_agree(window, schedule, cooldown):
    """Whatever the values: staging loads exactly when the launcher and the trigger accept them."""
    data = with_monitoring("staging", window_hours=window, schedule=schedule, retraining={"cooldown_hours": cooldown})
    try:
        parse_config(data, "config/staging.yaml")
        loads = True
    except ConfigError:
        loads = False
    period = function_settings.schedule_hours(schedule)
    entry = dict(endpoint="ep", pipeline_name="p", window_hours=window, schedule_hours=period,
                 ground_truth_lookback_hours=72, capture_bucket="capture-bucket", capture_prefix="c/",
                 ground_truth_bucket="feedback-bucket", ground_truth_prefix="g/", manifest_bucket="artifacts-bucket",
                 manifest_prefix="m/")
    try:
        MonitoringLauncherSettings(monitors={"ep": entry})
        RetrainingSettings(alarm="a", pipelines=("p",), alarm_period_hours=window, cooldown_hours=cooldown)
        accepted = True
    except ValueError:
        accepted = False
    assert loads == accepted == (period == window and cooldown >= window)


# --- features: a feature group's ingest function -------------------------------------------------


def with_features(*extra: dict, name: str | None = None) -> dict:
    data = copy.deepcopy(raw_config("dev"))
    group = data["feature_store"]["feature_groups"][0]
    group["features"].extend(extra)
    if name is not None:
        group["name"] = name
    return data


@pytest.mark.parametrize(("extra", "rule"), [
    ({"name": "Tenure_Months", "type": "Integral"},
     "duplicate feature name 'Tenure_Months' (same as 'tenure_months' ignoring case)"),
    ({"name": "write_time", "type": "String"}, "feature name 'write_time' is reserved by Feature Store"),
])
def test_a_feature_the_ingest_function_refuses_fails_at_load_with_one_line(extra, rule):
    """Offline-store columns compare ignoring case and Feature Store reserves three names: rules of
    ``features.schema`` that the config model itself does not know."""
    line = one_line(with_features(extra), "config/dev.yaml")
    assert line.startswith("config/dev.yaml: field 'feature_store.feature_groups[0].features' = ['customer_id', ")
    assert f": feature group 'mlops-dev-customers': {rule}" in line or f": {rule}" in line
    assert line.endswith("(the feature-ingest:customers function would refuse it)")


def test_a_feature_group_name_too_long_with_the_prefix_fails_at_load():
    name = "c" * 60  # a valid name on its own; with "mlops-dev-" over Feature Store's 64 characters
    data = with_features(name=name)
    for route in data["serving"].get("experiments", []):  # experiments that read the group follow it
        if route.get("features"):
            route["features"]["feature_group"] = name
    line = one_line(data, "config/dev.yaml")
    assert line.startswith(f"config/dev.yaml: field 'feature_store.feature_groups[0].name' = 'mlops-dev-{name}': "
                           f"feature group name 'mlops-dev-{name}' is not a valid Feature Store name")


# --- search: the indexer, the search API and the bulk job (settings parsed by hand) ---------------


def with_search_index(environment: str, **changes) -> dict:
    data = copy.deepcopy(raw_config(environment))
    index = data["search"]["indexes"][0]
    for key, value in changes.items():
        if isinstance(value, dict):
            index.setdefault(key, {}).update(value)
        else:
            index[key] = value
    return data


@pytest.mark.parametrize("environment", environment_names())
@pytest.mark.parametrize(("changes", "field", "rule"), [
    ({"filterable_metadata": ["category", "vector"]}, "search.indexes[0].filterable_metadata",
     "'vector' is reserved by the platform"),
    ({"chunk_overlap": 200}, "search.indexes[0].chunk_overlap", "must be smaller than chunk_size"),
    ({"embedder": {"model_id": "amazon.nova-embed-v1:0"}}, "search.indexes[0].embedder.model_id",
     "unsupported embedding model"),
    ({"embedder": {"model_id": "cohere.embed-english-v3"}, "dimension": 512}, "search.indexes[0].embedder.model_id",
     "cohere.embed-english-v3 produces vectors of [1024] dimensions, not 512"),
    ({"dimension": 768}, "search.indexes[0].embedder.model_id",
     "amazon.titan-embed-text-v2:0 produces vectors of [256, 512, 1024] dimensions, not 768"),
])
def test_a_search_index_the_search_functions_refuse_fails_at_load_with_one_line(environment, changes, field, rule):
    """The search functions' own rules (``domain.search``, parsed by hand) are the only ones: the
    config model does not repeat them, so each must come from the load-time check."""
    source = f"config/{environment}.yaml"
    line = one_line(with_search_index(environment, **changes), source)
    assert line.startswith(f"{source}: field '{field}' = ")
    assert f": {rule}" in line and line.endswith("(the search functions would refuse it)")


def test_a_threshold_the_monitoring_job_refuses_fails_at_load_with_one_line():
    """The monitoring job reads its --thresholds itself (monitoring/report.py): a non-finite target,
    which the config model lets through, would fail every scheduled run."""
    data = with_monitoring("staging", thresholds={"auc_min": float("inf")})
    line = one_line(data, "config/staging.yaml")
    assert line.startswith(f"config/staging.yaml: field '{monitored_field('staging', 'thresholds')}' = "
                           "{'auc_min': inf}: threshold 'auc_min' must be a number, got inf")
    assert line.endswith("(the monitoring-job:example-classifier would refuse it)")


def _inference_settings_with(monkeypatch, **fields) -> None:
    """The inference API's settings model with ``fields`` (annotation, default) added, as a new field would be."""
    from pydantic import create_model

    from mlops_runtime.settings.experiments import InferenceSettings

    model = create_model("InferenceSettings", __base__=InferenceSettings, **fields)
    monkeypatch.setattr(function_settings.experiment_settings, "InferenceSettings", model)


def test_a_settings_rule_on_a_field_named_as_in_serving_api_names_that_config_field(monkeypatch):
    from pydantic import Field

    # a new field, as serving.api.rate_limit (dev: 20), with a rule of its own; no entry in CONFIG_FIELDS
    _inference_settings_with(monkeypatch, rate_limit=(int, Field(default=20, le=10, validate_default=True)))
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config("dev"), "config/dev.yaml")
    (line,) = caught.value.lines
    assert line.startswith("config/dev.yaml: field 'serving.api.rate_limit' = 20.0: "), line


def test_a_settings_field_the_builder_does_not_set_is_named_as_the_builders_omission(monkeypatch):
    _inference_settings_with(monkeypatch, summary_history=(int, ...))
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config("dev"), "config/dev.yaml")
    assert caught.value.lines == ["config/dev.yaml: the inference-api function's settings need 'summary_history', "
                                  "which its builder in mlops_platform/function_settings.py does not set"]
