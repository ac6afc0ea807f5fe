"""The pure side of endpoint autoscaling: the scaler's settings, endpoint descriptions, the planner."""

from __future__ import annotations

import json

import pytest
from mlops_runtime.domain.autoscaling import (
    APPLY,
    BACKLOG_POLICY,
    IGNORE,
    INVOCATIONS_POLICY,
    SCALE_OUT_FROM_ZERO_POLICY,
    SKIP,
    EndpointDescription,
    LiveVariant,
    ScalingSpec,
    backlog_alarm_name,
    parse_resource_id,
    plan_scaling,
    plan_suspension,
    resource_id,
)
from mlops_runtime.domain.validation import first_problem
from mlops_runtime.settings.endpoint_scaler import ScalerSettings
from pydantic import ValidationError

ENDPOINT = "mlops-dev-churn"
CHAMPION_ID = f"endpoint/{ENDPOINT}/variant/champion"
CHALLENGER_ID = f"endpoint/{ENDPOINT}/variant/challenger"
REALTIME = {
    "kind": "realtime",
    "min_instances": 2,
    "max_instances": 8,
    "target_invocations_per_instance": 300,
    "scale_in_cooldown_s": 300,
    "scale_out_cooldown_s": 60,
}
ASYNC = {
    "kind": "async",
    "min_instances": 0,
    "max_instances": 4,
    "target_backlog_per_instance": 5,
    "scale_in_cooldown_s": 600,
    "scale_out_cooldown_s": 120,
}


def scaler_settings(endpoints: dict) -> ScalerSettings:
    """The scaler's settings as its handler reads them (JSON)."""
    return ScalerSettings.model_validate_json(json.dumps({"endpoints": endpoints}))


def spec(data=None, name: str = ENDPOINT, **overrides) -> ScalingSpec:
    return scaler_settings({name: {**(data or REALTIME), **overrides}}).spec_for(name)


def problem(endpoints: object) -> tuple[str, str]:
    """(field path, reason) of the settings error, as the config loader reports it."""
    data = {"endpoints": endpoints}
    with pytest.raises(ValidationError) as raised:
        ScalerSettings.model_validate_json(json.dumps(data))
    return first_problem(raised.value, ScalerSettings, data)


def endpoint(*variants: tuple[str, int], kind: str = "realtime", status: str = "InService", managed=True,
             shadows=()) -> EndpointDescription:
    return EndpointDescription(
        name=ENDPOINT,
        status=status,
        kind=kind,
        variants=tuple(LiveVariant(name, count, count) for name, count in (variants or (("champion", 2),))),
        shadow_variant_names=tuple(shadows),
        managed=managed,
    )


# --- the scaler's settings -----------------------------------------------------------------------


def test_settings_round_trip():
    settings = scaler_settings({ENDPOINT: REALTIME, "mlops-dev-batch": ASYNC})
    assert settings.spec_for(ENDPOINT).to_dict() == REALTIME
    assert settings.spec_for("mlops-dev-batch").to_dict() == ASYNC
    assert settings.spec_for("mlops-dev-batch").scales_from_zero and not settings.spec_for(ENDPOINT).scales_from_zero
    assert ScalerSettings.from_env(settings.to_env()) == settings
    assert scaler_settings({}).spec_for(ENDPOINT) is None


@pytest.mark.parametrize(
    ("entry", "field", "reason"),
    [
        ({**REALTIME, "min_instances": 0}, "min_instances", "from 1 to 1000"),
        ({**REALTIME, "min_instances": 9}, "max_instances", "at least min_instances"),
        ({**REALTIME, "max_instances": True}, "max_instances", "expected an integer, got a boolean"),
        ({**REALTIME, "max_instances": 2.5}, "max_instances", "expected an integer"),
        ({**REALTIME, "target_invocations_per_instance": 0}, "target_invocations_per_instance", "from 1"),
        ({**REALTIME, "target_invocations_per_instance": 1_000_001}, "target_invocations_per_instance",
         "from 1 to 1000000"),
        ({**REALTIME, "scale_in_cooldown_s": -1}, "scale_in_cooldown_s", "from 0 to 3600"),
        ({**REALTIME, "scale_out_cooldown_s": None}, "scale_out_cooldown_s", "is required"),
        ({**REALTIME, "target_backlog_per_instance": 5}, "target_backlog_per_instance", "unknown field"),
        ({**ASYNC, "target_invocations_per_instance": 5}, "target_invocations_per_instance", "unknown field"),
        ({**REALTIME, "surprise": 1}, "surprise", "unknown field"),
        ({**REALTIME, "kind": "serverless"}, "kind", "must be one of realtime, async"),
        ({k: v for k, v in ASYNC.items() if k != "target_backlog_per_instance"},
         "target_backlog_per_instance", "is required"),
    ],
)
def test_invalid_entries_name_the_field(entry, field, reason):
    path, why = problem({ENDPOINT: entry})
    assert path == f"endpoints.{ENDPOINT}.{field}"
    assert reason in why


@pytest.mark.parametrize(
    ("endpoints", "reason"),
    [
        ([REALTIME], "expected an object"),
        ({"not a name!": REALTIME}, "must be an endpoint name"),
        ({ENDPOINT: REALTIME, ENDPOINT.upper(): REALTIME}, "names ignore case"),
        ({ENDPOINT: "realtime"}, "expected an object"),
    ],
)
def test_invalid_scaling_settings(endpoints, reason):
    assert reason in problem(endpoints)[1]


def test_spec_lookup_ignores_case_when_the_name_comes_from_an_arn():
    settings = scaler_settings({"Mlops-Dev-Churn": REALTIME})
    assert settings.spec_for("mlops-dev-churn").endpoint_name == "Mlops-Dev-Churn"
    assert settings.spec_for("mlops-dev-other") is None


def test_resource_ids():
    assert resource_id(ENDPOINT, "champion") == CHAMPION_ID
    assert parse_resource_id(CHAMPION_ID) == (ENDPOINT, "champion")
    assert parse_resource_id("table/orders") is None


# --- the endpoint as described ------------------------------------------------------------------


def test_description_from_realtime_endpoint_with_shadow():
    described = EndpointDescription.from_descriptions(
        {
            "EndpointName": ENDPOINT,
            "EndpointStatus": "InService",
            "ProductionVariants": [
                {"VariantName": "champion", "CurrentInstanceCount": 3, "DesiredInstanceCount": 3}
            ],
            "ShadowProductionVariants": [{"VariantName": "challenger", "CurrentInstanceCount": 1}],
        },
        {"ProductionVariants": [{"VariantName": "champion", "InstanceType": "ml.m5.large"}]},
        {"mlops:managed-by": "endpoint-deployer"},
    )
    assert (described.kind, described.managed) == ("realtime", True)
    assert described.shadow_variant_names == ("challenger",)
    assert described.variant("champion") == LiveVariant("champion", 3, 3)


def test_description_kinds_and_tags():
    live = {
        "EndpointName": ENDPOINT,
        "EndpointStatus": "InService",
        "ProductionVariants": [{"VariantName": "champion"}],
    }
    async_config = {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o"}}}
    assert EndpointDescription.from_descriptions(live, async_config, {}).kind == "async"
    assert not EndpointDescription.from_descriptions(live, async_config, {}).managed
    serverless_variant = {"VariantName": "champion", "CurrentServerlessConfig": {"MemorySizeInMB": 2048}}
    serverless = {**live, "ProductionVariants": [serverless_variant]}
    assert EndpointDescription.from_descriptions(serverless, {}, {}).kind == "serverless"
    # no live variants reported (yet): the config's
    config_only = EndpointDescription.from_descriptions(
        {"EndpointName": ENDPOINT}, {"ProductionVariants": [{"VariantName": "champion"}]}, {}
    )
    assert [v.name for v in config_only.variants] == ["champion"]


# --- the planner --------------------------------------------------------------------------------


def test_realtime_champion():
    plan = plan_scaling(endpoint(("champion", 2)), spec(), {})
    assert plan.action == APPLY
    assert not plan.deregister and not plan.delete_policies and not plan.delete_alarms
    (target,) = plan.targets
    assert target.register_request() == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": CHAMPION_ID,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 2,
        "MaxCapacity": 8,
    }
    assert [policy.request(target.resource_id) for policy in target.policies] == [
        {
            "PolicyName": INVOCATIONS_POLICY,
            "ServiceNamespace": "sagemaker",
            "ResourceId": CHAMPION_ID,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 300.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        }
    ]
    assert target.alarm is None


def test_async_scales_to_zero_with_a_step_policy_and_its_alarm():
    plan = plan_scaling(endpoint(("champion", 1), kind="async"), spec(ASYNC), {})
    (target,) = plan.targets
    assert (target.min_capacity, target.max_capacity) == (0, 4)
    backlog, from_zero = (policy.request(CHAMPION_ID) for policy in target.policies)
    assert backlog["PolicyName"] == BACKLOG_POLICY
    assert backlog["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 5.0,
        "CustomizedMetricSpecification": {
            "MetricName": "ApproximateBacklogSizePerInstance",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
            "Statistic": "Average",
        },
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 120,
    }
    assert from_zero["PolicyName"] == SCALE_OUT_FROM_ZERO_POLICY
    assert from_zero["PolicyType"] == "StepScaling"
    assert from_zero["StepScalingPolicyConfiguration"] == {
        "AdjustmentType": "ChangeInCapacity",
        "MetricAggregationType": "Average",
        "Cooldown": 120,
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
    }
    alarm = target.alarm.request("arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x")
    assert alarm["AlarmName"] == backlog_alarm_name(ENDPOINT, "champion")
    assert (alarm["MetricName"], alarm["Namespace"], alarm["Statistic"]) == (
        "HasBacklogWithoutCapacity", "AWS/SageMaker", "Average"
    )
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": ENDPOINT}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1.0, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == ["arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x"]


def test_async_with_a_floor_has_no_step_policy_and_drops_an_old_one():
    registered = {CHAMPION_ID: (BACKLOG_POLICY, SCALE_OUT_FROM_ZERO_POLICY)}
    plan = plan_scaling(endpoint(("champion", 1), kind="async"), spec(ASYNC, min_instances=1), registered)
    (target,) = plan.targets
    assert [policy.name for policy in target.policies] == [BACKLOG_POLICY] and target.alarm is None
    assert plan.delete_policies == ((CHAMPION_ID, SCALE_OUT_FROM_ZERO_POLICY),)
    assert plan.delete_alarms == (backlog_alarm_name(ENDPOINT, "champion"),)


def test_challenger_gets_the_same_bounds():
    plan = plan_scaling(endpoint(("champion", 4), ("challenger", 1)), spec(), {})
    assert [(t.variant_name, t.min_capacity, t.max_capacity) for t in plan.targets] == [
        ("champion", 2, 8),
        ("challenger", 2, 8),
    ]
    assert plan.targets[0].policies == plan.targets[1].policies
    assert "challenger runs 1 instance(s): autoscaling scales it out to 2" in plan.notes
    assert any("the challenger included" in note for note in plan.notes)


def test_removed_variant_is_deregistered_with_its_policies():
    registered = {CHAMPION_ID: (INVOCATIONS_POLICY,), CHALLENGER_ID: (INVOCATIONS_POLICY, "hand-made")}
    plan = plan_scaling(endpoint(("champion", 2)), spec(), registered)
    assert [t.variant_name for t in plan.targets] == ["champion"]
    (gone,) = plan.deregister
    assert gone.resource_id == CHALLENGER_ID
    assert [r["PolicyName"] for r in gone.delete_policy_requests()] == ["hand-made", INVOCATIONS_POLICY]
    assert gone.deregister_request() == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": CHALLENGER_ID,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert plan.delete_alarms == (backlog_alarm_name(ENDPOINT, "challenger"),)
    assert "challenger no longer runs: its scalable target is deregistered" in plan.notes


def test_challenger_moved_to_shadow_is_deregistered():
    plan = plan_scaling(endpoint(("champion", 2), shadows=("challenger",)), spec(), {CHALLENGER_ID: ()})
    assert [item.resource_id for item in plan.deregister] == [CHALLENGER_ID]
    assert "challenger now a shadow variant: its scalable target is deregistered" in plan.notes


def test_other_endpoints_targets_and_foreign_policies_are_left_alone():
    registered = {
        CHAMPION_ID: (INVOCATIONS_POLICY, "hand-made", "mlops-retired-policy"),
        f"endpoint/{ENDPOINT}-2/variant/challenger": (INVOCATIONS_POLICY,),
        "endpoint/mlops-dev/variant/challenger": (INVOCATIONS_POLICY,),
    }
    plan = plan_scaling(endpoint(("champion", 2)), spec(), registered)
    assert not plan.deregister
    assert plan.delete_policies == ((CHAMPION_ID, "mlops-retired-policy"),)  # ours only, not "hand-made"


def test_endpoint_not_in_scaling_is_ignored():
    plan = plan_scaling(endpoint(("champion", 2)), None, {CHAMPION_ID: ()})
    assert plan.action == IGNORE and plan.is_noop
    assert "not in the scaler's settings" in plan.reason


@pytest.mark.parametrize(
    ("described", "reason"),
    [
        (None, "does not exist"),
        (endpoint(managed=False), "not tagged mlops:managed-by=endpoint-deployer"),
        (endpoint(status="Updating"), "Updating, not InService"),
        (endpoint(kind="async"), "SCALING says realtime but the endpoint is async"),
        (endpoint(kind="serverless"), "endpoint is serverless"),
    ],
)
def test_skipped_endpoints_are_not_touched(described, reason):
    plan = plan_scaling(described, spec(), {CHAMPION_ID: (INVOCATIONS_POLICY,)}, endpoint_name=ENDPOINT)
    assert plan.action == SKIP and plan.is_noop and plan.endpoint_name == ENDPOINT
    assert reason in plan.reason


def test_counts_outside_the_bounds_are_noted():
    plan = plan_scaling(endpoint(("champion", 12)), spec(), {})
    assert plan.notes == ("champion runs 12 instance(s): autoscaling scales it in to 8",)


def test_planning_is_deterministic_and_idempotent():
    described = endpoint(("champion", 2), ("challenger", 2))
    first = plan_scaling(described, spec(), {})
    # after applying: the same targets are registered with the same policies -> the same calls again
    registered = {t.resource_id: tuple(p.name for p in t.policies) for t in first.targets}
    second = plan_scaling(described, spec(), registered)
    assert second.targets == first.targets and not second.deregister and not second.delete_policies
    assert first.to_dict() == json.loads(json.dumps(first.to_dict()))


def test_suspension_deregisters_every_target_of_the_endpoint_only():
    registered = {
        CHAMPION_ID: (INVOCATIONS_POLICY,),
        CHALLENGER_ID: (),
        "endpoint/mlops-dev-churn-2/variant/champion": (INVOCATIONS_POLICY,),
    }
    plan = plan_suspension(ENDPOINT, registered)
    assert [item.resource_id for item in plan.deregister] == [CHALLENGER_ID, CHAMPION_ID]
    assert plan.deregister[1].policy_names == (INVOCATIONS_POLICY,)
    assert plan.delete_alarms == tuple(backlog_alarm_name(ENDPOINT, v) for v in ("challenger", "champion"))
    assert not plan.targets
    assert plan_suspension(ENDPOINT, {}).is_noop


# --- every request is valid for the real API ----------------------------------------------------


@pytest.fixture(scope="module")
def validate():
    import botocore.session
    from botocore.validate import ParamValidator

    session = botocore.session.get_session()
    models = {
        service: session.get_service_model(service) for service in ("application-autoscaling", "cloudwatch")
    }
    validator = ParamValidator()

    def check(service: str, operation: str, params: dict) -> None:
        report = validator.validate(params, models[service].operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()

    return check


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (REALTIME, "realtime"),
        ({**REALTIME, "min_instances": 1, "max_instances": 1000, "scale_in_cooldown_s": 0}, "realtime"),
        (ASYNC, "async"),
        ({**ASYNC, "min_instances": 3}, "async"),
    ],
)
def test_requests_pass_botocore_validation(validate, data, kind):
    registered = {
        CHALLENGER_ID: (INVOCATIONS_POLICY, SCALE_OUT_FROM_ZERO_POLICY),
        CHAMPION_ID: ("mlops-old",),
    }
    plan = plan_scaling(endpoint(("champion", 2), kind=kind), spec(data), registered)
    for target in plan.targets:
        validate("application-autoscaling", "RegisterScalableTarget", target.register_request())
        for policy in target.policies:
            validate("application-autoscaling", "PutScalingPolicy", policy.request(target.resource_id))
        if target.alarm:
            arn = (
                "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:1:"
                "resource/sagemaker/x:policyName/y"
            )
            validate("cloudwatch", "PutMetricAlarm", target.alarm.request(arn))
    for item in plan.deregister:
        validate("application-autoscaling", "DeregisterScalableTarget", item.deregister_request())
        for request in item.delete_policy_requests():
            validate("application-autoscaling", "DeleteScalingPolicy", request)
    for request in plan.delete_policy_requests():
        validate("application-autoscaling", "DeleteScalingPolicy", request)
    assert plan.deregister and plan.delete_policies
    validate("cloudwatch", "DeleteAlarms", {"AlarmNames": list(plan.delete_alarms)})
