"""moto helpers and fixtures shared by the autoscaling and teardown tests (imported by name).

boto3 clients are built once per session (loading the sagemaker API model costs ~0.5 s per client);
moto intercepts requests through botocore's event system, so one client serves every test's own
``mock_aws()``, each starting with empty backends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlops_runtime.domain.deployment import ENDPOINT_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlops-dev-sagemaker-execution"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ENDPOINT = "mlops-dev-churn"
ENVIRONMENT_TAG = "mlops:environment"

_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    if service not in _clients:
        import boto3

        _clients[service] = boto3.session.Session(region_name=REGION).client(service)
    return _clients[service]


@pytest.fixture
def aws():
    """Fresh moto backends for the test; ``aws("sagemaker")`` is the shared client."""
    from moto import mock_aws

    with mock_aws():
        yield client


@pytest.fixture
def scaling(aws):
    from mlops_runtime.adapters.autoscaling import Boto3EndpointScaling

    return Boto3EndpointScaling(aws("application-autoscaling"), aws("sagemaker"), aws("cloudwatch"))


def create_endpoint(
    name: str = ENDPOINT,
    variants: dict[str, int] | None = None,
    *,
    kind: str = "realtime",
    managed: bool = True,
    environment: str = "dev",
    version: int = 1,
) -> str:
    """A deployer-like endpoint in moto: a model per variant and a config, all tagged like the deployer's."""
    sagemaker = client("sagemaker")
    variants = variants if variants is not None else {"champion": 2}
    tags = [{"Key": ENVIRONMENT_TAG, "Value": environment}]
    if managed:
        tags += [{"Key": MANAGED_BY_TAG, "Value": MANAGED_BY_VALUE}, {"Key": ENDPOINT_TAG, "Value": name}]
    production = []
    for index, (variant, count) in enumerate(variants.items()):
        model = f"{name}-v{version + index}-m{index:08d}"
        sagemaker.create_model(
            ModelName=model,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://mlops-dev-artifacts/model.tar.gz"},
            ExecutionRoleArn=ROLE_ARN,
            Tags=tags,
        )
        entry: dict[str, Any] = {"VariantName": variant, "ModelName": model}
        if kind == "serverless":
            entry["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
        else:
            entry.update(InstanceType="ml.m5.large", InitialInstanceCount=count,
                         InitialVariantWeight=1.0 if index == 0 else 0.1)
        production.append(entry)
    config: dict[str, Any] = {
        "EndpointConfigName": f"{name}-v{version}-c{len(variants):08d}",
        "ProductionVariants": production,
        "Tags": tags,
    }
    if kind == "async":
        config["AsyncInferenceConfig"] = {
            "OutputConfig": {"S3OutputPath": f"s3://mlops-dev-capture/async/{name}/output"}
        }
    sagemaker.create_endpoint_config(**config)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config["EndpointConfigName"], Tags=tags)
    return name


def set_endpoint_status(name: str, status: str) -> None:
    from moto.sagemaker.models import sagemaker_backends

    sagemaker_backends[ACCOUNT][REGION].endpoints[name].endpoint_status = status


def targets(name: str = ENDPOINT) -> dict[str, tuple[int, int]]:
    """The endpoint's scalable targets in moto: resource id -> (min, max)."""
    response = client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    return {
        target["ResourceId"]: (target["MinCapacity"], target["MaxCapacity"])
        for target in response["ScalableTargets"]
        if target["ResourceId"].startswith(f"endpoint/{name}/")
    }


def policies(name: str = ENDPOINT) -> dict[tuple[str, str], dict[str, Any]]:
    """(resource id, policy name) -> {type, configuration, arn} of the endpoint's policies in moto."""
    response = client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    result = {}
    for policy in response["ScalingPolicies"]:
        if not policy["ResourceId"].startswith(f"endpoint/{name}/"):
            continue
        configuration = policy.get("TargetTrackingScalingPolicyConfiguration") or policy.get(
            "StepScalingPolicyConfiguration"
        )
        result[(policy["ResourceId"], policy["PolicyName"])] = {
            "type": policy["PolicyType"],
            "configuration": json.loads(json.dumps(configuration)),
            "arn": policy["PolicyARN"],
        }
    return result


def alarms(prefix: str = "mlops-autoscaling-") -> dict[str, dict[str, Any]]:
    response = client("cloudwatch").describe_alarms(AlarmNamePrefix=prefix)
    return {alarm["AlarmName"]: alarm for alarm in response["MetricAlarms"]}


def error_hook(service_client: Any, operation: str, code: str, message: str, status: int = 400):
    """Make ``operation`` on the shared client answer an AWS error (botocore ``before-call``); returns
    a function removing the hook. The real client still validates and serializes the request."""
    from botocore.awsrequest import AWSResponse

    def answer(**kwargs: Any):
        error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://aws", status, {}, None), error

    event = f"before-call.{service_client.meta.service_model.service_id.hyphenize()}.{operation}"
    service_client.meta.events.register(event, answer)
    return lambda: service_client.meta.events.unregister(event, answer)


def test_moto_endpoint_is_in_service_with_its_variants(aws):
    create_endpoint(variants={"champion": 2, "challenger": 1})
    endpoint = aws("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    assert [(v["VariantName"], v["CurrentInstanceCount"]) for v in endpoint["ProductionVariants"]] == [
        ("champion", 2),
        ("challenger", 1),
    ]
