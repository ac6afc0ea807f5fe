"""The endpoint teardown custom resource (CDK Provider onEvent) on moto."""

from __future__ import annotations


import pytest
from mlops_runtime.adapters import autoscaling as autoscaling_adapter
from mlops_runtime.adapters.sagemaker_endpoints import Boto3SageMakerEndpoints
from mlops_runtime.domain.autoscaling import ScalingSpec, backlog_alarm_name, plan_scaling
from mlops_runtime.handlers import endpoint_teardown
from mlops_runtime.handlers.endpoint_teardown import InvalidProperties, TeardownFailed, on_event
# aws, scaling: pytest fixtures shared through the helper module (no conftest in this directory)
from test_autoscaling_moto import (  # noqa: F401, F811
    ENDPOINT,
    alarms,
    aws,
    create_endpoint,
    error_hook,
    policies,
    scaling,
    targets,
)
from lambda_context import LambdaContext

PROPERTIES = {
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:provider-framework-onEvent",
    "ManagedByTag": "endpoint-deployer",
    "Environment": "dev",
    "DeleteOnDestroy": "true",
}
PHYSICAL_ID = "endpoint-teardown:endpoint-deployer:dev"


def request(request_type: str, physical_id: str | None = PHYSICAL_ID, **properties) -> dict:
    event = {
        "RequestType": request_type,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/mlops-dev-serving/1",
        "RequestId": "1",
        "LogicalResourceId": "EndpointTeardown",
        "ResourceType": "Custom::EndpointTeardown",
        "ResourceProperties": {k: v for k, v in {**PROPERTIES, **properties}.items() if v is not None},
    }
    if physical_id and request_type != "Create":
        event["PhysicalResourceId"] = physical_id
    return event


@pytest.fixture
def endpoints(aws):
    return Boto3SageMakerEndpoints(aws("sagemaker"))


@pytest.fixture
def landscape(aws, scaling):
    """dev: a scaled realtime endpoint with a challenger and a scaled-to-zero async one; prod's
    endpoint (same tags but environment); an endpoint made by hand (no deployer tags)."""
    create_endpoint(ENDPOINT, {"champion": 2, "challenger": 1})
    create_endpoint("mlops-dev-queue", {"champion": 1}, kind="async")
    create_endpoint("mlops-prod-churn", {"champion": 2}, environment="prod")
    create_endpoint("mlops-dev-by-hand", {"champion": 1}, managed=False)
    for name, spec in (
        (ENDPOINT, ScalingSpec(ENDPOINT, "realtime", 1, 4, 100, 300, 60)),
        ("mlops-dev-queue", ScalingSpec("mlops-dev-queue", "async", 0, 2, 5, 300, 60)),
        ("mlops-prod-churn", ScalingSpec("mlops-prod-churn", "realtime", 2, 4, 100, 300, 60)),
    ):
        scaling.apply(plan_scaling(scaling.describe_endpoint(name), spec, {}))
    return aws


@pytest.fixture
def one_endpoint(aws):
    """A single dev endpoint, for the requests that must leave it alone."""
    create_endpoint(ENDPOINT, {"champion": 1})
    return aws


def names(aws, method: str, key: str, name_key: str) -> set[str]:
    return {item[name_key] for item in getattr(aws("sagemaker"), method)()[key]}


def test_delete_removes_this_environments_endpoints_only(landscape, endpoints, scaling):
    aws = landscape
    result = on_event(request("Delete"), endpoints, scaling)
    assert result == {
        "PhysicalResourceId": PHYSICAL_ID,
        "Data": {"DeletedEndpoints": "mlops-dev-churn,mlops-dev-queue"},
    }
    remaining = names(aws, "list_endpoints", "Endpoints", "EndpointName")
    assert remaining == {"mlops-prod-churn", "mlops-dev-by-hand"}
    assert all(name.startswith(("mlops-prod-churn", "mlops-dev-by-hand"))
               for name in names(aws, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"))
    assert all(name.startswith(("mlops-prod-churn", "mlops-dev-by-hand"))
               for name in names(aws, "list_models", "Models", "ModelName"))
    # autoscaling of the deleted endpoints is gone, prod's is untouched
    assert targets(ENDPOINT) == {} and targets("mlops-dev-queue") == {} and policies(ENDPOINT) == {}
    assert backlog_alarm_name("mlops-dev-queue", "champion") not in alarms()
    assert targets("mlops-prod-churn") == {"endpoint/mlops-prod-churn/variant/champion": (2, 4)}
    # a second delete (CloudFormation retrying) finds nothing and succeeds
    assert on_event(request("Delete"), endpoints, scaling)["Data"] == {"DeletedEndpoints": ""}


def test_handler_entry_point(one_endpoint, endpoints, scaling, monkeypatch):
    monkeypatch.setattr(endpoint_teardown, "sagemaker_endpoints", lambda: endpoints)
    monkeypatch.setattr(autoscaling_adapter, "_default", scaling)
    result = endpoint_teardown.handler(request("Delete"), LambdaContext())
    assert result["Data"]["DeletedEndpoints"] == ENDPOINT


@pytest.mark.parametrize("flag", ["False", False])
def test_retained_when_delete_on_destroy_is_false(one_endpoint, endpoints, scaling, flag):
    result = on_event(request("Delete", DeleteOnDestroy=flag), endpoints, scaling)
    assert result == {"PhysicalResourceId": PHYSICAL_ID, "Data": {"DeletedEndpoints": ""}}
    assert names(one_endpoint, "list_endpoints", "Endpoints", "EndpointName") == {ENDPOINT}


def test_create_and_update_do_nothing_with_a_stable_physical_id(one_endpoint, endpoints, scaling):
    assert on_event(request("Create"), endpoints, scaling) == {"PhysicalResourceId": PHYSICAL_ID}
    # an update keeps the id even when properties change: a new id would make CloudFormation
    # delete the old one
    updated = on_event(request("Update", Environment="dev2", DeleteOnDestroy="false"), endpoints, scaling)
    assert updated == {"PhysicalResourceId": PHYSICAL_ID}
    assert names(one_endpoint, "list_endpoints", "Endpoints", "EndpointName") == {ENDPOINT}


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"Environment": None}, "Environment is required"),
        ({"Environment": ""}, "Environment must be a non-empty string"),
        ({"ManagedByTag": " "}, "ManagedByTag must be a non-empty string"),
        ({"DeleteOnDestroy": "yes"}, 'DeleteOnDestroy must be "true" or "false"'),
    ],
)
def test_invalid_properties_fail_create_but_never_delete(
    one_endpoint, endpoints, scaling, properties, reason
):
    with pytest.raises(InvalidProperties, match=reason):
        on_event(request("Create", **properties), endpoints, scaling)
    result = on_event(request("Delete", physical_id=None, **properties), endpoints, scaling)
    assert result == {"PhysicalResourceId": "endpoint-teardown:invalid"}
    assert names(one_endpoint, "list_endpoints", "Endpoints", "EndpointName") == {ENDPOINT}


def test_unknown_request_type(endpoints, scaling):
    with pytest.raises(InvalidProperties, match="unknown RequestType"):
        on_event(request("Replace"), endpoints, scaling)


def test_access_denied_fails_with_a_clear_message(landscape, endpoints, scaling):
    remove = error_hook(
        landscape("sagemaker"), "DeleteEndpoint", "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/teardown is not authorized to perform: "
        "sagemaker:DeleteEndpoint",
    )
    try:
        with pytest.raises(TeardownFailed) as raised:
            on_event(request("Delete"), endpoints, scaling)
    finally:
        remove()
    message = str(raised.value)
    assert "access denied on DeleteEndpoint while deleting endpoint mlops-dev-churn" in message
    assert "not authorized to perform: sagemaker:DeleteEndpoint" in message
    assert "Endpoints not deleted: mlops-dev-churn, mlops-dev-queue" in message


def test_access_denied_while_listing(one_endpoint, endpoints, scaling):
    remove = error_hook(
        one_endpoint("sagemaker"), "ListEndpoints", "AccessDeniedException", "no sagemaker:ListEndpoints"
    )
    try:
        with pytest.raises(TeardownFailed, match="access denied on ListEndpoints while listing"):
            on_event(request("Delete"), endpoints, scaling)
    finally:
        remove()


class VanishingEndpoints:
    """The real adapter, except that the listed endpoints were deleted by someone else meanwhile."""

    def __init__(self, real: Boto3SageMakerEndpoints, gone: list[str]) -> None:
        self.real, self.gone = real, gone

    def managed_endpoints(self, required_tags):
        return sorted({*self.real.managed_endpoints(required_tags), *self.gone})

    def delete_endpoint_resources(self, name):
        return self.real.delete_endpoint_resources(name)


def test_endpoints_already_gone_are_done(one_endpoint, endpoints, scaling):
    adapter = VanishingEndpoints(endpoints, ["mlops-dev-already-deleted"])
    result = on_event(request("Delete"), adapter, scaling)
    assert result["Data"]["DeletedEndpoints"] == f"mlops-dev-already-deleted,{ENDPOINT}"


def test_not_found_from_suspend_counts_as_gone(one_endpoint, endpoints, scaling):
    class GoneScaling:
        def suspend_scaling(self, name):
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f"Could not find endpoint '{name}'."}},
                "DescribeEndpoint",
            )

    result = on_event(request("Delete"), endpoints, GoneScaling())
    assert result["Data"]["DeletedEndpoints"] == ENDPOINT


def test_other_errors_try_every_endpoint_then_fail(landscape, endpoints, scaling):
    class FlakyEndpoints(VanishingEndpoints):
        def delete_endpoint_resources(self, name):
            if name == ENDPOINT:
                from botocore.exceptions import ClientError

                error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
                raise ClientError(error, "DeleteEndpoint")
            return super().delete_endpoint_resources(name)

    with pytest.raises(TeardownFailed) as raised:
        on_event(request("Delete"), FlakyEndpoints(endpoints, []), scaling)
    message = str(raised.value)
    assert "could not delete 1 endpoint(s): mlops-dev-churn (ThrottlingException: Rate exceeded)" in message
    assert "Deleted: mlops-dev-queue" in message
    assert names(landscape, "list_endpoints", "Endpoints", "EndpointName") == {
        ENDPOINT, "mlops-prod-churn", "mlops-dev-by-hand"
    }


def test_environment_tag_key_can_be_changed(one_endpoint, endpoints, scaling):
    result = on_event(request("Delete", EnvironmentTagKey="mlops:stack"), endpoints, scaling)
    assert result["Data"]["DeletedEndpoints"] == ""  # no endpoint carries mlops:stack=dev
