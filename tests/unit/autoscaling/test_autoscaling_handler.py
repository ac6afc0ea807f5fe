"""The endpoint_scaler Lambda end to end on moto."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlops_runtime.adapters.autoscaling import Boto3EndpointScaling
from mlops_runtime.handlers import endpoint_scaler
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError
from lambda_context import LambdaContext
from settings_support import set_settings
from test_autoscaling_event import EVENT
# aws, scaling: pytest fixtures shared through the helper module (no conftest in this directory)
from test_autoscaling_moto import (  # noqa: F401, F811
    ENDPOINT,
    aws,
    create_endpoint,
    error_hook,
    policies,
    targets,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
CHAMPION_ID = f"endpoint/{ENDPOINT}/variant/champion"
SCALING = {
    ENDPOINT: {
        "kind": "realtime",
        "min_instances": 1,
        "max_instances": 4,
        "target_invocations_per_instance": 100,
        "scale_in_cooldown_s": 300,
        "scale_out_cooldown_s": 60,
    },
    "mlops-dev-queue": {
        "kind": "async",
        "min_instances": 0,
        "max_instances": 2,
        "target_backlog_per_instance": 5,
        "scale_in_cooldown_s": 300,
        "scale_out_cooldown_s": 60,
    },
}


def state_change(name: str = ENDPOINT, status: str = "IN_SERVICE") -> dict:
    event = copy.deepcopy(EVENT)
    arn = f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{name.lower()}"
    event["detail"].update(EndpointName=name, EndpointStatus=status, EndpointArn=arn)
    event["resources"] = [arn]
    return event


@pytest.fixture
def invoke(aws, monkeypatch):
    """A cold start of the scaler: its settings set, caches empty, the adapter bound to moto's clients."""
    set_settings(monkeypatch, endpoints=SCALING)
    endpoint_scaler.settings.set(None)
    endpoint_scaler.endpoint_scaling.set(
        Boto3EndpointScaling(aws("application-autoscaling"), aws("sagemaker"), aws("cloudwatch")))
    yield lambda event: endpoint_scaler.handler(event, LambdaContext())
    endpoint_scaler.settings.set(None)
    endpoint_scaler.endpoint_scaling.set(None)


def test_in_service_event_applies_scaling(invoke):
    create_endpoint(variants={"champion": 2})
    result = invoke(state_change())
    assert result["status"] == "applied" and result["targets"] == [CHAMPION_ID]
    assert targets() == {CHAMPION_ID: (1, 4)}
    assert invoke(state_change()) == result  # a redelivered event changes nothing
    assert targets() == {CHAMPION_ID: (1, 4)}
    assert list(policies()) == [(CHAMPION_ID, "mlops-invocations-per-instance")]


def test_async_endpoint_from_an_event_without_endpoint_name(invoke):
    create_endpoint("mlops-dev-queue", kind="async", variants={"champion": 1})
    event = state_change("mlops-dev-queue")
    del event["detail"]["EndpointName"]
    result = invoke(event)
    assert result["status"] == "applied"
    assert targets("mlops-dev-queue") == {"endpoint/mlops-dev-queue/variant/champion": (0, 2)}
    assert {name for _, name in policies("mlops-dev-queue")} == {
        "mlops-backlog-per-instance", "mlops-scale-out-from-zero"
    }


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (state_change(status="UPDATING"), "endpoint is UPDATING, not InService"),
        (state_change("mlops-dev-serverless"), "not in the scaler's settings"),
        ({"source": "aws.sagemaker", "detail": {}}, "malformed event"),
    ],
)
def test_ignored_events(invoke, event, reason):
    create_endpoint("mlops-dev-serverless", kind="serverless")
    result = invoke(event)
    assert result["status"] == "ignored" and reason in result["reason"]
    assert targets("mlops-dev") == {}


def test_unmanaged_endpoint_is_skipped(invoke):
    create_endpoint(managed=False)
    result = invoke(state_change())
    assert result["status"] == "skipped" and "not tagged" in result["reason"]
    assert targets() == {}


def test_aws_error_fails_the_invocation(invoke, aws):
    create_endpoint()
    remove = error_hook(
        aws("application-autoscaling"), "RegisterScalableTarget", "ThrottlingException", "Rate exceeded"
    )
    try:
        with pytest.raises(aws("application-autoscaling").exceptions.ClientError, match="Rate exceeded"):
            invoke(state_change())
    finally:
        remove()


def test_sqs_batch_reports_failures_only(invoke, aws):
    create_endpoint()
    create_endpoint("mlops-dev-queue", kind="async", variants={"champion": 1})
    records = [
        {"messageId": "ok", "body": json.dumps(state_change())},
        {"messageId": "unreadable", "body": "{not json"},
        {"messageId": "failing", "body": json.dumps(state_change("mlops-dev-queue"))},
    ]
    remove = error_hook(aws("cloudwatch"), "PutMetricAlarm", "AccessDenied", "not authorized")
    try:
        result = invoke({"Records": records})
    finally:
        remove()
    assert result == {"batchItemFailures": [{"itemIdentifier": "failing"}]}
    assert targets() == {CHAMPION_ID: (1, 4)}


def test_invalid_scaling_is_a_deployment_error(invoke, monkeypatch):
    set_settings(monkeypatch, endpoints={ENDPOINT: {**SCALING[ENDPOINT], "min_instances": 0}})
    with pytest.raises(SettingsError, match=r"(?s)not valid ScalerSettings: .*min_instances"):
        invoke(state_change())
    # through SQS too: bad settings fail the invocation, rather than every record being retried
    with pytest.raises(SettingsError):
        invoke({"Records": [{"messageId": "m", "body": json.dumps(state_change())}]})
    monkeypatch.delenv(SETTINGS_ENV)
    with pytest.raises(SettingsError, match="MLOPS_SETTINGS is not set"):
        invoke(state_change())


def test_importing_the_handlers_creates_no_client_and_no_tracer():
    code = (
        "import sys\n"
        "import mlops_runtime.handlers.endpoint_scaler as s, mlops_runtime.handlers.endpoint_teardown as t\n"
        "assert s.handler.traced._call is None and s.endpoint_scaling.current is None\n"
        "assert t.sagemaker_endpoints.current is None\n"
        "import mlops_runtime.adapters.autoscaling as a\n"
        "assert a._default is None\n"
        "print('boto3' in sys.modules, 'aws_xray_sdk' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT / "lambda", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
