"""Experiments and API config: resolved routes, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_platform.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]
SERVERLESS = {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}
REALTIME = {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 2}
ASYNC = {"kind": "async", "instance_type": "ml.m5.large"}


def endpoint(name, variant, **extra):
    base = {"name": name, "model_package_group": "example-classifier", "variant": variant,
            "guardrails": {"mode": "ALL_AT_ONCE"}}
    if variant["kind"] == "serverless":
        base.update(challenger_initial_weight=0, data_capture=None)
    return {**base, **extra}


ENDPOINTS = [
    endpoint("rt", REALTIME, challenger_initial_weight=0.2, allow_variant_override=True),
    endpoint("sl-a", SERVERLESS),
    endpoint("sl-b", SERVERLESS),
    endpoint("batchy", ASYNC, challenger_initial_weight=0),
    endpoint("shadowed", REALTIME, shadow=True, challenger_initial_weight=0.2),
]


def load(tmp_path: Path, experiments=(), api=None, endpoints=ENDPOINTS):
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data["serving"] = {"endpoints": list(endpoints), "experiments": list(experiments)}
    if api is not None:
        data["serving"]["api"] = api
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def error_of(tmp_path, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **kwargs)
    assert len(caught.value.lines) == 1, caught.value.lines
    return caught.value.lines[0]


def test_every_synchronous_endpoint_is_published_with_its_live_variants(tmp_path):
    routes = {r.name: r for r in load(tmp_path).serving.routes()}
    assert list(routes) == ["rt", "sl-a", "sl-b", "shadowed"]  # async endpoints are not on the API
    assert [(a.arm, a.endpoint, a.variant) for a in routes["rt"].arms] == [
        ("champion", "rt", "champion"), ("challenger", "rt", "challenger")]
    assert routes["rt"].initial_weights == pytest.approx({"champion": 0.8, "challenger": 0.2})
    assert routes["rt"].allow_variant_override is True
    assert [a.arm for a in routes["sl-a"].arms] == ["champion"] and routes["sl-a"].initial_weights == {"champion": 1.0}
    assert [a.arm for a in routes["shadowed"].arms] == ["champion"]  # a shadow takes no live traffic
    assert all(r.config.controller is None for r in routes.values())


def test_an_experiment_spans_endpoints_and_replaces_a_default_route(tmp_path):
    config = load(tmp_path, experiments=[
        {"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a"}, {"arm": "b", "endpoint": "sl-b"}],
         "controller": {"strategy": "ucb1"}},
        {"name": "rt", "initial_weights": {"champion": 0.5, "challenger": 0.5}, "allow_variant_override": False},
    ])
    routes = {r.name: r for r in config.serving.routes()}
    assert routes["ab"].initial_weights == {"a": 0.5, "b": 0.5}  # even split by default
    assert [(a.endpoint, a.variant) for a in routes["ab"].arms] == [("sl-a", "champion"), ("sl-b", "champion")]
    assert routes["ab"].config.controller.settings()["strategy"] == "ucb1"
    assert "interval_minutes" not in routes["ab"].config.controller.settings()
    assert routes["rt"].initial_weights == {"champion": 0.5, "challenger": 0.5}
    assert routes["rt"].allow_variant_override is False


@pytest.mark.parametrize("experiments,api,expected", [
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "nope"}]}], None,
     "experiments[0].arms: endpoint 'nope' is not in serving.endpoints"),
    ([{"name": "nope"}], None, "experiments[0] 'nope' has no arms and no endpoint of that name"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a", "variant": "challenger"}]}], None,
     "endpoint 'sl-a' has no live challenger variant"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "batchy"}]}], None, "endpoint 'batchy' is asynchronous"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a"}, {"arm": "a", "endpoint": "sl-b"}]}], None,
     "arm names must be unique"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a"}, {"arm": "b", "endpoint": "sl-a"}]}], None,
     "two arms serve from the same endpoint variant"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a"}, {"arm": "b", "endpoint": "sl-b"}],
       "initial_weights": {"a": 1.0}}], None, "experiments[0].initial_weights must name exactly the arms ['a', 'b']"),
    ([{"name": "rt", "initial_weights": {"champion": 1.0}}], None,
     "initial_weights must name exactly the arms ['champion', 'challenger']"),
    ([{"name": "ab", "arms": [{"arm": "a", "endpoint": "sl-a"}, {"arm": "b", "endpoint": "sl-b"}],
       "initial_weights": {"a": 0, "b": 0}}], None, "initial_weights must be >= 0 and not all 0"),
    ([{"name": "rt", "controller": {"min_share": 0.45, "strategy": "thompson"}},
      {"name": "ab", "arms": [{"arm": x, "endpoint": e} for x, e in (("a", "sl-a"), ("b", "sl-b"), ("c", "rt"))],
       "controller": {"min_share": 0.4}}], None, "experiments[1].controller.min_share x 3 arms must stay below 1"),
    ([{"name": "rt", "controller": {"strategy": "softmax"}}], None, "controller.strategy"),
    ([{"name": "rt", "controller": {"alpha": 0.5}}], None, "controller.alpha"),
    ([{"name": "rt", "controller": {"min_effect": -0.01}}], None, "controller.min_effect"),
    ([{"name": "rt", "controller": {"max_invocations": 10}}], None, "controller.max_invocations"),
    ([{"name": "rt", "controller": {"feedback_delay_hours": -1}}], None, "controller.feedback_delay_hours"),
    ([{"name": "rt", "controller": {"max_duration_days": 2, "feedback_delay_hours": 72}}], None,
     "max_duration_days 2 must be longer than feedback_delay_hours 72 / 24"),
    ([{"name": "Bad_Name", "arms": [{"arm": "a", "endpoint": "sl-a"}]}], None, "path segment of the API"),
    ([{"name": "rt", "content_types": ["JSON"]}], None, "must be a lower-case media type"),
    ([{"name": "rt"}, {"name": "rt"}], None, "experiment names must be unique"),
    ([], {"daily_quota": 1000}, "daily_quota needs authorization: api_key"),
    ([], {"authorization": "cognito"}, "serving.api.authorization"),
    ([], {"feedback_max_batch": 501}, "feedback_max_batch"),
])
def test_mistakes_get_one_line(tmp_path, experiments, api, expected):
    line = error_of(tmp_path, experiments=experiments, api=api)
    assert expected in line and "dev.yaml" in line


@pytest.mark.parametrize("features,expected", [
    ({"feature_group": "customers", "features": ["tenure_months", "monthly_spend"]}, ""),
    ({"feature_group": "orders", "features": ["x"]}, "features.feature_group 'orders' is not declared"),
    ({"feature_group": "customers", "features": ["tenure_months", "shoe_size"]}, "['shoe_size'] are not features"),
])
def test_feature_lookups_name_declared_online_features(tmp_path, features, expected):
    experiments = [{"name": "rt", "features": features}]
    if expected:
        assert expected in error_of(tmp_path, experiments=experiments)
    else:
        (route,) = [r for r in load(tmp_path, experiments=experiments).serving.routes() if r.name == "rt"]
        assert route.config.features.features == ("tenure_months", "monthly_spend")


@pytest.mark.parametrize("data,expected", [
    ({"enabled": True}, "enabled: true needs account, region, connection_arn, repository"),
    ({"enabled": False, "manual_approval_before": ["qa"]}, "not stages: ['qa']"),
    ({"enabled": False, "connection_arn": "arn:aws:codecommit:eu-west-1:1:repo"}, "connection_arn"),
    ({"enabled": False, "repo": "x"}, "unknown field"),
])
def test_delivery_config_mistakes_get_one_line(tmp_path, data, expected):
    from mlops_platform.config.delivery import load_delivery

    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_delivery(path)
    assert len(caught.value.lines) == 1 and expected in caught.value.lines[0] and "pipeline.yaml" in caught.value.lines[0]


def test_delivery_config_in_the_repository_is_valid_and_off():
    from mlops_platform.config.delivery import load_delivery

    delivery = load_delivery()
    assert delivery is not None and delivery.enabled is False and delivery.stages == ("dev", "staging", "prod")
