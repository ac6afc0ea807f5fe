"""The deployer Lambda end to end on moto: SageMaker, DynamoDB (idempotency), SNS -> SQS (notifications)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deployment_fixtures import (
    ENDPOINT,
    GPU_IMAGE,
    GROUP,
    REGION,
    approval,
    configure_deployer,
    moto_sagemaker_backend,
    register_package,
    spec_dict,
)
from mlops_runtime.domain.deployment import CHALLENGER, CHAMPION
from mlops_runtime.handlers import deployer
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_approval_creates_model_config_and_endpoint(lambda_env):
    arn = register_package(lambda_env.sagemaker)
    response = lambda_env.invoke(approval(arn, "event-1"))
    assert response["status"] == "done"
    (result,) = response["results"]
    assert (result["endpoint"], result["status"], result["action"]) == (
        ENDPOINT,
        "deployed",
        "create-endpoint",
    )
    endpoint = lambda_env.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert (
        endpoint["EndpointStatus"] == "InService"
        and endpoint["EndpointConfigName"] == result["endpoint_config"]
    )
    (variant,) = lambda_env.endpoint_config()["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        CHAMPION,
        "ml.m5.large",
        2,
    )
    assert len(lambda_env.sagemaker.list_models()["Models"]) == 1
    assert lambda_env.notifications() == []


def test_newer_version_becomes_the_challenger_then_is_replaced_with_guardrails(lambda_env, stub):
    v1, v2, v3 = (register_package(lambda_env.sagemaker) for _ in range(3))
    lambda_env.invoke(approval(v1, "event-1"))

    result = lambda_env.invoke(approval(v2, "event-2"))["results"][0]
    assert (result["status"], result["action"]) == ("deployed", "add-challenger")
    weights = {
        v["VariantName"]: v["InitialVariantWeight"]
        for v in lambda_env.endpoint_config()["ProductionVariants"]
    }
    assert weights == {CHAMPION: 0.9, CHALLENGER: 0.1}
    # Adding the challenger changes the variant names: no DeploymentConfig (SageMaker would refuse it).
    assert stub.calls == [{"EndpointName": ENDPOINT, "EndpointConfigName": result["endpoint_config"]}]
    assert result["rollback"].startswith(f"aws sagemaker update-endpoint --endpoint-name {ENDPOINT} ")

    result = lambda_env.invoke(approval(v3, "event-3"))["results"][0]
    assert (result["action"], result["guardrails"]) == ("replace-challenger", True)
    update = stub.calls[-1]
    assert update["EndpointConfigName"] == result["endpoint_config"]
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 300,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": "mlops-dev-churn-5xx"}, {"AlarmName": "mlops-dev-churn-latency"}]
        },
    }
    state = deployer.sagemaker_endpoints().describe_endpoint_state(ENDPOINT)
    assert {v.name: v.model_package_arn for v in state.variants} == {CHAMPION: v1, CHALLENGER: v3}


def test_a_redelivered_event_deploys_once(lambda_env, stub):
    v1, v2 = register_package(lambda_env.sagemaker), register_package(lambda_env.sagemaker)
    lambda_env.invoke(approval(v1, "event-1"))
    first = lambda_env.invoke(approval(v2, "event-2"))
    models = lambda_env.sagemaker.list_models()["Models"]
    configs = lambda_env.sagemaker.list_endpoint_configs()["EndpointConfigs"]

    again = lambda_env.invoke(approval(v2, "event-2"))
    assert again == first  # the stored result of the first delivery
    assert len(stub.calls) == 1
    assert lambda_env.sagemaker.list_models()["Models"] == models
    assert lambda_env.sagemaker.list_endpoint_configs()["EndpointConfigs"] == configs

    # A different event for the same package (approved again): planned, and a no-op.
    other = lambda_env.invoke(approval(v2, "event-2-bis"))["results"][0]
    assert other["status"] == "noop" and other["reason"].startswith("already deployed")
    assert len(stub.calls) == 1


def test_an_unplannable_event_is_reported_and_not_retried(lambda_env):
    arn = register_package(lambda_env.sagemaker, image=GPU_IMAGE)
    response = lambda_env.invoke(approval(arn, "event-gpu"))
    (result,) = response["results"]
    assert result["status"] == "failed" and "uses a GPU image" in result["reason"]
    (notification,) = lambda_env.notifications()
    assert notification["Subject"] == f"[dev] Deployment to {ENDPOINT} failed"
    assert f"Model package: {arn}" in notification["Message"]
    assert "which has no GPU" in notification["Message"] and "Next: not retried" in notification["Message"]
    assert "EventBridge event: event-gpu" in notification["Message"]
    # Redelivered: the recorded result, no second notification.
    assert lambda_env.invoke(approval(arn, "event-gpu")) == response
    assert lambda_env.notifications() == []
    with pytest.raises(Exception, match="Could not find endpoint"):
        lambda_env.sagemaker.describe_endpoint(EndpointName=ENDPOINT)


def test_a_busy_endpoint_is_reported_and_retried(lambda_env, stub):
    v1, v2 = register_package(lambda_env.sagemaker), register_package(lambda_env.sagemaker)
    lambda_env.invoke(approval(v1, "event-1"))
    moto_sagemaker_backend().endpoints[ENDPOINT].endpoint_status = "Updating"
    with pytest.raises(deployer.RetryLater, match="the endpoint is Updating"):
        lambda_env.invoke(approval(v2, "event-2"))
    (notification,) = lambda_env.notifications()
    assert notification["Subject"] == f"[dev] Deployment to {ENDPOINT} delayed (will retry)"
    assert stub.calls == []

    # The failed attempt released the idempotency record: the retry of the same event deploys.
    moto_sagemaker_backend().endpoints[ENDPOINT].endpoint_status = "InService"
    result = lambda_env.invoke(approval(v2, "event-2"))["results"][0]
    assert result["action"] == "add-challenger" and len(stub.calls) == 1


def test_events_through_an_sqs_queue(lambda_env, stub):
    """A busy endpoint leaves the message on the queue (batchItemFailures); the redelivery deploys."""
    v1, v2 = register_package(lambda_env.sagemaker), register_package(lambda_env.sagemaker)

    def batch(*events):
        return {
            "Records": [{"messageId": f"m-{i}", "body": json.dumps(event)} for i, event in enumerate(events)]
        }

    assert lambda_env.invoke(batch(approval(v1, "event-1"))) == {"batchItemFailures": []}
    moto_sagemaker_backend().endpoints[ENDPOINT].endpoint_status = "Updating"
    unreadable = {"messageId": "m-x", "body": "{not json"}
    response = lambda_env.invoke({"Records": [*batch(approval(v2, "event-2"))["Records"], unreadable]})
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-0"}]}  # the unreadable one is dropped
    moto_sagemaker_backend().endpoints[ENDPOINT].endpoint_status = "InService"
    assert lambda_env.invoke(batch(approval(v2, "event-2"))) == {"batchItemFailures": []}
    assert len(stub.calls) == 1


def test_an_update_refused_as_in_progress_is_retried(lambda_env, update_endpoint):
    v1, v2 = register_package(lambda_env.sagemaker), register_package(lambda_env.sagemaker)
    lambda_env.invoke(approval(v1, "event-1"))
    update_endpoint(busy=True)
    with pytest.raises(deployer.RetryLater, match="Cannot update in-progress endpoint"):
        lambda_env.invoke(approval(v2, "event-2"))


@pytest.mark.parametrize(
    ("event_kwargs", "reason"),
    [
        ({"status": "Rejected"}, "model package is Rejected, not Approved"),
        ({"status": "PendingManualApproval"}, "model package is PendingManualApproval, not Approved"),
        (
            {"group": "mlops-dev-fraud"},
            "no endpoint of this deployer is fed by model package group mlops-dev-fraud",
        ),
    ],
)
def test_ignored_events(lambda_env, event_kwargs, reason):
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{event_kwargs.get('group', GROUP)}/1"
    response = lambda_env.invoke(approval(arn, "event-x", **event_kwargs))
    assert response == {"status": "ignored", "reason": reason}
    assert lambda_env.sagemaker.list_models()["Models"] == []


def test_malformed_event_is_ignored(lambda_env):
    response = lambda_env.invoke({"source": "aws.s3", "detail-type": "Object Created", "id": "x"})
    assert response["status"] == "ignored" and response["reason"].startswith("malformed event")


def test_a_package_no_longer_approved_is_ignored(lambda_env):
    arn = register_package(lambda_env.sagemaker, status="Rejected")
    response = lambda_env.invoke(approval(arn, "event-late"))
    assert response == {"status": "ignored", "reason": "model package is now Rejected, no longer Approved"}
    assert lambda_env.sagemaker.list_models()["Models"] == []


def test_one_group_feeding_two_endpoints(lambda_env, monkeypatch, stub):
    second = spec_dict(
        name="mlops-dev-churn-batch",
        challenger_initial_weight=0,
        guardrails={"mode": "ALL_AT_ONCE", "wait_interval_s": 0},
    )
    configure_deployer(monkeypatch, endpoints=[spec_dict(), second])
    arn = register_package(lambda_env.sagemaker)
    results = lambda_env.invoke(approval(arn, "event-1"))["results"]
    assert [(r["endpoint"], r["status"]) for r in results] == [
        (ENDPOINT, "deployed"),
        ("mlops-dev-churn-batch", "deployed"),
    ]


def test_aws_errors_are_classified(lambda_env, monkeypatch):
    from botocore.exceptions import ClientError

    arn = register_package(lambda_env.sagemaker)
    adapter = deployer.sagemaker_endpoints()

    def fail(code):
        def raise_error(*args, **kwargs):
            raise ClientError({"Error": {"Code": code, "Message": "nope"}}, "DescribeEndpoint")

        return raise_error

    monkeypatch.setattr(adapter, "describe_endpoint_state", fail("ThrottlingException"))
    with pytest.raises(deployer.RetryLater, match="ThrottlingException: nope"):
        lambda_env.invoke(approval(arn, "event-1"))
    monkeypatch.setattr(adapter, "describe_endpoint_state", fail("AccessDeniedException"))
    result = lambda_env.invoke(approval(arn, "event-2"))["results"][0]
    assert result == {"endpoint": ENDPOINT, "status": "failed", "reason": "AccessDeniedException: nope"}
    monkeypatch.setattr(adapter, "describe_model_package", fail("AccessDeniedException"))
    result = lambda_env.invoke(approval(arn, "event-3"))["results"][0]
    assert result["status"] == "failed" and result["reason"].startswith("DescribeModelPackage failed")
    subjects = [n["Subject"] for n in lambda_env.notifications()]
    assert subjects.count(f"[dev] Deployment to {ENDPOINT} failed") == 1
    assert "[dev] Deployment to (no endpoint) failed" in subjects


def test_a_bug_is_reported_and_raised(lambda_env, monkeypatch):
    arn = register_package(lambda_env.sagemaker)
    monkeypatch.setattr(deployer, "plan_deployment", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        lambda_env.invoke(approval(arn, "event-1"))
    (notification,) = lambda_env.notifications()
    assert "unexpected error: ZeroDivisionError" in notification["Message"]


def test_settings_are_read_once_per_cold_start(lambda_env, monkeypatch):
    first = deployer.settings()
    monkeypatch.setenv(SETTINGS_ENV, "not json any more")
    assert deployer.settings() is first and deployer.endpoint_specs()[0].name == ENDPOINT


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "MLOPS_SETTINGS is not set"),
        ("{not json", "MLOPS_SETTINGS is not valid DeployerSettings"),
        (json.dumps({"endpoints": [spec_dict(name="bad_name")], "idempotency_table": "t", "environment": "dev"}),
         r"endpoints.0.name\n.*must be 1-63"),
    ],
    ids=["missing", "not-json", "invalid-spec"],
)
def test_bad_settings_are_a_deployment_error(lambda_env, monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv(SETTINGS_ENV)
    else:
        monkeypatch.setenv(SETTINGS_ENV, value)
    deployer.settings.set(None)
    with pytest.raises(SettingsError, match=message):
        lambda_env.invoke(approval(register_package(lambda_env.sagemaker), "event-1"))


def test_the_idempotent_wrapper_is_built_lazily_from_the_settings(lambda_env):
    deployer.deploy_once.set(None)
    built = deployer.deploy_once()
    assert callable(built) and deployer.deploy_once() is built


def test_no_topic_configured_only_logs(lambda_env, monkeypatch):
    configure_deployer(monkeypatch, notification_topic_arn=None)
    arn = register_package(lambda_env.sagemaker, image=GPU_IMAGE)
    assert lambda_env.invoke(approval(arn, "event-1"))["results"][0]["status"] == "failed"
    assert lambda_env.notifications() == []


def test_logged_plans_mask_container_environment_values():
    plan = {"calls": [{"params": {"PrimaryContainer": {"Image": "i", "Environment": {"TOKEN": "secret"}}}}]}
    assert deployer._loggable(plan) == {
        "calls": [{"params": {"PrimaryContainer": {"Image": "i", "Environment": {"TOKEN": "***"}}}}]
    }


def test_importing_the_handler_imports_neither_boto3_nor_the_xray_sdk():
    code = (
        "import sys, mlops_runtime.handlers.deployer as d; "
        "print('boto3' in sys.modules, 'aws_xray_sdk' in sys.modules, d.handler.traced._call is None)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "lambda"), "LAMBDA_TASK_ROOT": "/var/task"}
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert run.stdout.strip() == "False False True"
