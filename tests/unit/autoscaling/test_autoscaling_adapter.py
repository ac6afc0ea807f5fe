"""Boto3EndpointScaling against moto: describe, plan, apply, re-apply, suspend."""

from __future__ import annotations

import pytest
from mlops_runtime.adapters.autoscaling import suspend_scaling
from mlops_runtime.domain.autoscaling import (
    BACKLOG_POLICY,
    INVOCATIONS_POLICY,
    SCALE_OUT_FROM_ZERO_POLICY,
    ScalingSpec,
    backlog_alarm_name,
    plan_scaling,
)
# aws, scaling: pytest fixtures shared through the helper module (no conftest in this directory)
from test_autoscaling_moto import (  # noqa: F401, F811
    ENDPOINT,
    alarms,
    aws,
    create_endpoint,
    error_hook,
    policies,
    scaling,
    set_endpoint_status,
    targets,
)

CHAMPION_ID = f"endpoint/{ENDPOINT}/variant/champion"
CHALLENGER_ID = f"endpoint/{ENDPOINT}/variant/challenger"
REALTIME = ScalingSpec(ENDPOINT, "realtime", 2, 6, 200, 300, 60)
ASYNC = ScalingSpec(ENDPOINT, "async", 0, 3, 5, 600, 120)


def scale(scaling, spec: ScalingSpec):
    name = spec.endpoint_name
    plan = plan_scaling(scaling.describe_endpoint(name), spec, scaling.registered_targets(name))
    return plan, scaling.apply(plan)


def snapshot(name: str = ENDPOINT):
    """Registrations without the ARNs (moto makes a new policy ARN on every put)."""
    return targets(name), {key: (p["type"], p["configuration"]) for key, p in policies(name).items()}


def test_describe_endpoint(scaling):
    create_endpoint(variants={"champion": 2, "challenger": 1})
    described = scaling.describe_endpoint(ENDPOINT)
    assert (described.status, described.kind, described.managed) == ("InService", "realtime", True)
    counts = [(v.name, v.current_instance_count) for v in described.variants]
    assert counts == [("champion", 2), ("challenger", 1)]
    assert scaling.describe_endpoint("mlops-dev-nothing") is None
    create_endpoint("mlops-dev-queue", kind="async", managed=False)
    described = scaling.describe_endpoint("mlops-dev-queue")
    assert (described.kind, described.managed) == ("async", False)


def test_realtime_champion_and_challenger_then_again(scaling):
    create_endpoint(variants={"champion": 2, "challenger": 1})
    plan, applied = scale(scaling, REALTIME)
    assert [(call.operation, call.name) for call in applied] == [
        ("RegisterScalableTarget", CHAMPION_ID),
        ("PutScalingPolicy", f"{CHAMPION_ID}:{INVOCATIONS_POLICY}"),
        ("RegisterScalableTarget", CHALLENGER_ID),
        ("PutScalingPolicy", f"{CHALLENGER_ID}:{INVOCATIONS_POLICY}"),
    ]
    registered, attached = snapshot()
    assert registered == {CHAMPION_ID: (2, 6), CHALLENGER_ID: (2, 6)}
    assert attached[(CHAMPION_ID, INVOCATIONS_POLICY)] == (
        "TargetTrackingScaling",
        {
            "TargetValue": 200.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )
    assert scaling.registered_targets(ENDPOINT) == {
        CHALLENGER_ID: (INVOCATIONS_POLICY,),
        CHAMPION_ID: (INVOCATIONS_POLICY,),
    }
    # idempotent: the second run upserts the same registrations
    again, _ = scale(scaling, REALTIME)
    assert again.targets == plan.targets and not again.deregister and not again.delete_policies
    assert snapshot() == (registered, attached)


def test_new_bounds_update_the_registration(scaling):
    create_endpoint()
    scale(scaling, REALTIME)
    scale(scaling, ScalingSpec(ENDPOINT, "realtime", 3, 10, 150, 300, 60))
    registered, attached = snapshot()
    assert registered == {CHAMPION_ID: (3, 10)}
    assert attached[(CHAMPION_ID, INVOCATIONS_POLICY)][1]["TargetValue"] == 150.0


def test_async_scale_to_zero_then_with_a_floor(scaling):
    create_endpoint(kind="async", variants={"champion": 1})
    scale(scaling, ASYNC)
    registered, attached = snapshot()
    assert registered == {CHAMPION_ID: (0, 3)}
    assert set(attached) == {(CHAMPION_ID, BACKLOG_POLICY), (CHAMPION_ID, SCALE_OUT_FROM_ZERO_POLICY)}
    assert attached[(CHAMPION_ID, BACKLOG_POLICY)][1]["CustomizedMetricSpecification"]["MetricName"] == (
        "ApproximateBacklogSizePerInstance"
    )
    alarm_name = backlog_alarm_name(ENDPOINT, "champion")
    alarm = alarms()[alarm_name]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": ENDPOINT}]
    assert alarm["AlarmActions"] == [policies()[(CHAMPION_ID, SCALE_OUT_FROM_ZERO_POLICY)]["arn"]]

    scale(scaling, ScalingSpec(ENDPOINT, "async", 1, 3, 5, 600, 120))
    registered, attached = snapshot()
    assert registered == {CHAMPION_ID: (1, 3)} and set(attached) == {(CHAMPION_ID, BACKLOG_POLICY)}
    assert alarm_name not in alarms()


def test_removed_challenger_is_deregistered(scaling, aws):
    create_endpoint(variants={"champion": 2, "challenger": 2})
    scale(scaling, REALTIME)
    # the challenger is dropped (moto has no UpdateEndpoint: recreate the endpoint with the champion only)
    aws("sagemaker").delete_endpoint(EndpointName=ENDPOINT)
    create_endpoint(variants={"champion": 2}, version=5)
    plan, applied = scale(scaling, REALTIME)
    assert [item.resource_id for item in plan.deregister] == [CHALLENGER_ID]
    assert ("DeregisterScalableTarget", CHALLENGER_ID, "deleted") in [
        (call.operation, call.name, call.outcome) for call in applied
    ]
    registered, attached = snapshot()
    assert registered == {CHAMPION_ID: (2, 6)} and set(attached) == {(CHAMPION_ID, INVOCATIONS_POLICY)}


def test_other_endpoints_are_left_alone(scaling):
    create_endpoint(variants={"champion": 2})
    create_endpoint(f"{ENDPOINT}-2", variants={"champion": 2, "challenger": 2})
    scale(scaling, ScalingSpec(f"{ENDPOINT}-2", "realtime", 2, 6, 200, 300, 60))
    plan, _ = scale(scaling, REALTIME)
    assert not plan.deregister
    assert set(targets(f"{ENDPOINT}-2")) == {f"endpoint/{ENDPOINT}-2/variant/champion",
                                             f"endpoint/{ENDPOINT}-2/variant/challenger"}
    suspend_scaling(ENDPOINT, scaling)
    assert len(targets(f"{ENDPOINT}-2")) == 2


def test_suspend_scaling_deregisters_everything_and_is_repeatable(scaling):
    create_endpoint(kind="async", variants={"champion": 1})
    scale(scaling, ASYNC)
    assert suspend_scaling(ENDPOINT, scaling) == [CHAMPION_ID]
    assert snapshot() == ({}, {})
    assert backlog_alarm_name(ENDPOINT, "champion") not in alarms()
    assert suspend_scaling(ENDPOINT, scaling) == []  # nothing left: nothing to do
    assert suspend_scaling("mlops-dev-never-deployed", scaling) == []


def test_a_target_deregistered_meanwhile_counts_as_done(scaling, aws):
    create_endpoint()
    scale(scaling, REALTIME)
    remove = error_hook(
        aws("application-autoscaling"), "DeregisterScalableTarget", "ObjectNotFoundException",
        "No scalable target registered for service namespace: sagemaker",
    )
    try:
        assert suspend_scaling(ENDPOINT, scaling) == [CHAMPION_ID]
    finally:
        remove()


def test_skipped_endpoint_is_not_registered(scaling):
    create_endpoint()
    set_endpoint_status(ENDPOINT, "Updating")
    plan, applied = scale(scaling, REALTIME)
    assert plan.action == "skip" and applied == [] and targets() == {}


def test_aws_errors_are_raised(scaling, aws):
    create_endpoint()
    remove = error_hook(aws("application-autoscaling"), "RegisterScalableTarget", "AccessDeniedException",
                        "not authorized to perform: application-autoscaling:RegisterScalableTarget")
    try:
        with pytest.raises(aws("application-autoscaling").exceptions.ClientError, match="AccessDenied"):
            scale(scaling, REALTIME)
    finally:
        remove()
