"""Configuration: the shipped files load, and every kind of bad value is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_platform.config import ConfigError, RemovalPolicy, load_config, load_environments

ROOT = Path(__file__).resolve().parents[3]


def valid(base: str = "dev", **overrides) -> dict:
    data = yaml.safe_load((ROOT / "config" / f"{base}.yaml").read_text())
    data.update(overrides)
    return data


def write(tmp_path: Path, data: dict, name: str = "dev") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def example(items: list[dict], name: str = "example-classifier") -> dict:
    """The shipped example's entry of a config list (a config may list other models before it)."""
    (item,) = [item for item in items if item["name"] == name]
    return item


def error_of(tmp_path: Path, data: dict, name: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data, name))
    return str(caught.value)


def test_shipped_environments_load():
    configs = {c.environment: c for c in load_environments()}
    assert set(configs) == {"dev", "staging", "prod"}
    assert configs["prod"].removal_policy is RemovalPolicy.RETAIN
    assert configs["dev"].removal_policy is RemovalPolicy.DESTROY
    assert configs["prod"].vpc.enabled and not configs["dev"].vpc.enabled


@pytest.mark.parametrize(
    "overrides,field,value,allowed",
    [
        ({"vpcc": {"enabled": True}}, "vpcc", "{'enabled': True}", "unknown field (allowed: environment, account"),
        ({"log_retention_days": "a year"}, "log_retention_days", "'a year'", "valid integer"),
        ({"account": "12345"}, "account", "'12345'", "12-digit AWS account id"),
        ({"account": 111111111111}, "account", "111111111111", "valid string"),
        ({"region": "moon-east-1"}, "region", "'moon-east-1'", "eu-west-1"),
        ({"name_prefix": "MLOps_Dev"}, "name_prefix", "'MLOps_Dev'", "lower-case letters, digits"),
        ({"name_prefix": "a-very-long-prefix-name-x"}, "name_prefix", "'a-very-long-prefix-name-x'", "at most 20"),
        ({"removal_policy": "delete"}, "removal_policy", "'delete'", "'retain' or 'destroy'"),
        ({"log_retention_days": 42}, "log_retention_days", "42", "retention periods"),
        ({"vpc": {"max_azs": 7}}, "vpc.max_azs", "7", "less than or equal to 3"),
        ({"tags": {"project": "p", "cost_centre": "c", "colour": "x"}}, "tags.colour", "'x'", "allowed: project, cost_centre"),
    ],
)
def test_bad_value_is_one_clear_line(tmp_path, overrides, field, value, allowed):
    message = error_of(tmp_path, valid(**overrides))
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'dev.yaml'}: field '{field}' = {value}") or message.startswith(
        f"{tmp_path / 'dev.yaml'}: field '{field}'"
    ), message
    assert value in message
    assert allowed in message


def test_missing_account(tmp_path):
    data = valid()
    del data["account"]
    assert error_of(tmp_path, data).endswith("field 'account' is missing: required")


def test_prod_cannot_destroy_its_data(tmp_path):
    message = error_of(tmp_path, valid("prod", removal_policy="destroy"), name="prod")
    assert "field 'removal_policy' = 'destroy'" in message
    assert "allowed is 'retain'" in message


def test_environment_must_match_file_name(tmp_path):
    message = error_of(tmp_path, valid(environment="staging"), name="dev")
    assert "field 'environment' = 'staging': must match the file name ('dev')" in message


def test_the_regions_allowed_are_those_botocore_lists_for_sagemaker():
    """The config reads botocore's endpoint data directly (a session loads SageMaker's service model
    to learn its endpoint prefix): the list must be the one the session gives."""
    import botocore.session

    from mlops_platform.config.models import sagemaker_regions

    session = botocore.session.get_session()
    expected = {region for partition in ("aws", "aws-cn", "aws-us-gov")
                for region in session.get_available_regions("sagemaker", partition_name=partition)}
    assert sagemaker_regions() == tuple(sorted(expected)) and "eu-west-1" in expected and "cn-north-1" in expected


def test_zones_must_be_in_region(tmp_path):
    data = valid(vpc={"enabled": True, "max_azs": 2, "availability_zones": ["eu-west-1a", "us-east-1b"]})
    assert "['us-east-1b'] are not zones of region eu-west-1" in error_of(tmp_path, data)


def test_not_yaml(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text("environment: dev\naccount: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "not valid YAML" in str(caught.value) and "line" in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "qa.yaml")


def test_every_broken_file_is_reported(tmp_path):
    write(tmp_path, valid(account="1"), "dev")
    write(tmp_path, valid("prod", region="nowhere-1"), "prod")
    with pytest.raises(ConfigError) as caught:
        load_environments(config_dir=tmp_path)
    assert len(caught.value.lines) == 2


def test_defaults_are_documented_behaviour():
    config = load_environments(["dev"])[0]
    assert config.vpc.zones_in("eu-west-1") == ("eu-west-1a", "eu-west-1b")
    assert config.storage.data_capture_expiry_days == 30


def test_app_prints_one_line_and_exits_non_zero(tmp_path):
    """The CLI path: no traceback, exit code 2, file + field + value + rule on stderr."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write(config_dir, valid(region="mars-1"), "dev")
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "CDK_CONTEXT_JSON": f'{{"config_dir": "{config_dir}"}}'},
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "dev.yaml" in line]
    assert len(lines) == 1 and "field 'region' = 'mars-1'" in lines[0]


def _with_pipeline(base: str = "dev", **pipeline_overrides) -> dict:
    data = valid(base)
    pipeline = dict(data["training"]["pipelines"][0], **pipeline_overrides)
    data["training"]["pipelines"] = [pipeline]
    return data


def test_a_rule_across_a_section_shows_the_section_by_its_keys(tmp_path):
    data = valid()
    data["serving"]["endpoints"].append(dict(example(data["serving"]["endpoints"]), name="fraud",
                                             model_package_group="fraud"))
    message = error_of(tmp_path, data)
    assert "\n" not in message and len(message) < 400, message
    assert "field 'serving' = {'api': ..., 'endpoints': ..., 'experiments': ...}: endpoints[2].model_package_group 'fraud'" \
        in message


def test_an_invalid_training_section_is_one_line_not_also_every_endpoint_without_its_group(tmp_path):
    data = valid()
    data["training"]["pipelines"].append(dict(example(data["training"]["pipelines"])))  # a duplicate name
    message = error_of(tmp_path, data)
    assert "\n" not in message and "pipeline names must be unique" in message, message


def test_prod_cannot_auto_approve_models(tmp_path):
    message = error_of(tmp_path, _with_pipeline("prod", approval_status="Approved"), name="prod")
    assert "field 'training'" in message and "not allowed in prod" in message


def test_promotion_comes_from_another_environment(tmp_path):
    data = valid("prod")
    data["training"]["registry"]["promote_from"] = {"account": "333333333333", "name_prefix": "mlops-prod"}
    message = error_of(tmp_path, data, name="prod")
    assert "field 'training'" in message and "this environment's own" in message


def test_wandb_cannot_track_jobs_in_a_vpc_without_internet(tmp_path):
    data = valid("staging")  # VPC on
    data["training"]["experiment_tracking"] = {"backend": "wandb", "wandb_secret_name": "wandb-key"}
    (line,) = [line for line in error_of(tmp_path, data, "staging").splitlines() if "needs the internet" in line]
    assert "field 'training'" in line and "'wandb' needs the internet" in line and "without NAT" in line


def test_pipeline_feature_group_must_be_declared(tmp_path):
    message = error_of(tmp_path, _with_pipeline(feature_group="orders"))
    assert "feature_group 'orders' is not declared" in message and "customers" in message


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"training_instance_type": "m5.xlarge"}, "SageMaker instance type"),
        ({"schedule": "every monday"}, "EventBridge Scheduler expression"),
        ({"metric_threshold": 1.5}, "less than or equal to 1"),
        ({"approval_status": "Yes"}, "'PendingManualApproval' or 'Approved'"),
        ({"name": "-bad-"}, "letters, digits and hyphens"),
        # the old default images run Python 3.8: refused, with the images that run >= 3.10
        ({"framework_version": "1.7-1"}, "runs Python 3.8; the job code needs Python >= 3.10: use 3.0-5"),
        ({"sklearn_version": "1.2-1"}, "runs Python 3.8"),
        ({"framework_version": "9.9-9"}, "allowed: 3.0-5"),
        # the step code is packaged at synthesis: a path that is not in the repository is named here
        ({"code": {"preprocess_script": "training/fraud/preprocess.py"}},
         "code.preprocess_script' = 'training/fraud/preprocess.py': must be a file of the repository"),
        ({"code": {"evaluate_script": "training/example_classifier"}}, "code.evaluate_script' = "),
        ({"code": {"train_source_dir": "training/fraud"}}, "code.train_source_dir' = 'training/fraud': must be a directory"),
        ({"code": {"train_entry_point": "fit.py"}},
         "code' = {'train_entry_point': 'fit.py'}: train_entry_point 'fit.py' is not a file of train_source_dir"),
    ],
)
def test_bad_pipeline_settings(tmp_path, overrides, expected):
    message = error_of(tmp_path, _with_pipeline(**overrides))
    assert "field 'training.pipelines[0]." in message and expected in message


def test_feature_group_schema_rules(tmp_path):
    data = valid()
    group = data["feature_store"]["feature_groups"][0]
    group["event_time_feature"] = "tenure_months"  # Integral: not a valid event time type
    assert "event_time_feature must be Fractional" in error_of(tmp_path, data)
    group["event_time_feature"] = "missing"
    assert "event_time_feature 'missing' is not among the features" in error_of(tmp_path, data)


def test_wandb_needs_its_secret(tmp_path):
    data = valid()
    data["training"]["experiment_tracking"] = {"backend": "wandb"}
    assert "needs wandb_secret_name" in error_of(tmp_path, data)


@pytest.mark.parametrize(
    "budget,expected",
    [
        ({"monthly_limit_usd": 0}, "greater than 0"),
        ({"monthly_limit_usd": 10, "alert_at_percent": [50, 50]}, "distinct percentages"),
        ({"monthly_limit_usd": 10, "alert_at_percent": []}, "distinct percentages"),
        ({"monthly_limit_usd": 10, "forecast_alert_percent": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_budget(tmp_path, budget, expected):
    message = error_of(tmp_path, valid(budget=budget))
    assert "field 'budget." in message and expected in message


@pytest.mark.parametrize(
    "feature_group,text_features,expected",
    [
        ("customers", ["tenure_months"], "['tenure_months'] are not String input features of feature group 'customers'"),
        ("customers", ["customer_id"], "are not String input features"),  # the record identifier is no input
        (None, ["target"], "'target' is the label column (target_column) of pipeline 'example-classifier'"),
        (None, ["notes", "notes"], "['notes'] are listed more than once"),
        (None, ["a,b"], "no comma"),
    ],
)
def test_monitored_text_features_must_be_inputs_of_the_model(tmp_path, feature_group, text_features, expected):
    data = valid("staging")
    if feature_group:
        example(data["training"]["pipelines"])["feature_group"] = feature_group
    example(data["serving"]["endpoints"])["monitoring"]["text_features"] = text_features
    message = error_of(tmp_path, data, "staging")
    assert len(message.splitlines()) == 1 and "serving" in message and expected in message


def test_monitored_text_features_reach_the_training_pipelines_of_the_group(tmp_path):
    data = valid("staging")
    example(data["training"]["pipelines"])["feature_group"] = "customers"
    example(data["serving"]["endpoints"])["monitoring"]["text_features"] = ["plan"]
    config = load_config(write(tmp_path, data, "staging"))
    assert config.text_features_of_group("example-classifier") == ("plan",)
    assert config.text_features_of_group("other-group") == ()
    example(data["training"]["pipelines"])["feature_group"] = None  # CSV input: columns unknown until it runs
    example(data["serving"]["endpoints"])["monitoring"]["text_features"] = ["review"]
    assert load_config(write(tmp_path, data, "staging")).text_features_of_group("example-classifier") == ("review",)
