"""The other pure pieces: endpoint state from describe responses, packages, events, images, messages."""

from __future__ import annotations

import pytest
from deployment_fixtures import CPU_IMAGE, GPU_IMAGE, GROUP, NEURON_IMAGE, package_arn
from mlops_runtime.domain.deployment import (
    CHALLENGER,
    CHAMPION,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    PACKAGE_ARN_TAG,
    ApprovalEvent,
    ApprovedPackage,
    DeployedVariant,
    EndpointState,
    InvalidEvent,
    failure_notification,
    image_accelerator,
    model_package_arn_of,
    parse_model_package_arn,
    previous_config_name,
    rollback_command,
)

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"


def test_endpoint_state_from_describe_responses():
    endpoint = {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/e",
        "EndpointConfigName": "e-v2-c1",
        "EndpointStatus": "InService",
        "ProductionVariants": [
            {"VariantName": CHAMPION, "CurrentWeight": 0.8, "CurrentInstanceCount": 5},
            {"VariantName": CHALLENGER, "CurrentWeight": 0.2, "CurrentInstanceCount": 1},
        ],
        "ShadowProductionVariants": [],
    }
    config = {
        "EndpointConfigName": "e-v2-c1",
        "ProductionVariants": [
            {
                "VariantName": CHAMPION,
                "ModelName": "m1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 2,
                "InitialVariantWeight": 0.9,
            },
            {
                "VariantName": CHALLENGER,
                "ModelName": "m2",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 0.1,
            },
        ],
    }
    state = EndpointState.from_descriptions(
        endpoint, config, {"m1": package_arn(1), "m2": None}, {MANAGED_BY_TAG: MANAGED_BY_VALUE}
    )
    assert state.variants == (
        DeployedVariant(CHAMPION, "m1", package_arn(1), 0.8, "ml.m5.large", 5),  # live weight and count
        DeployedVariant(CHALLENGER, "m2", None, 0.2, "ml.m5.large", 1),
    )
    assert state.managed and state.kind == "realtime" and state.layout == ((CHALLENGER, CHAMPION), ())
    assert previous_config_name(state) == "e-v2-c1" and previous_config_name(None) is None


def test_endpoint_state_shadow_serverless_async_and_unmanaged():
    endpoint = {
        "EndpointName": "e",
        "EndpointConfigName": "c",
        "EndpointStatus": "Updating",
        "FailureReason": None,
    }
    config = {
        "ProductionVariants": [{"VariantName": CHAMPION, "ModelName": "m1", "InitialVariantWeight": 1.0}],
        "ShadowProductionVariants": [
            {
                "VariantName": CHALLENGER,
                "ModelName": "m2",
                "InitialVariantWeight": 0.5,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o"}},
    }
    state = EndpointState.from_descriptions(endpoint, config, {}, {})
    assert state.shadow_variants[0].weight == 0.5 and state.variant(CHALLENGER).model_name == "m2"
    assert state.kind == "async" and not state.managed and state.status == "Updating"
    serverless = {
        "ProductionVariants": [
            {
                "VariantName": CHAMPION,
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ]
    }
    assert EndpointState.from_descriptions(endpoint, serverless, {}, {}).kind == "serverless"


def test_model_package_arn_of_a_model():
    assert model_package_arn_of({}, {PACKAGE_ARN_TAG: package_arn(3)}) == package_arn(3)
    assert model_package_arn_of(
        {"PrimaryContainer": {"ModelPackageName": package_arn(4)}}, {}
    ) == package_arn(4)
    assert model_package_arn_of(
        {"Containers": [{"Image": "x"}, {"ModelPackageName": package_arn(5)}]}, {}
    ) == (package_arn(5))
    assert model_package_arn_of({"PrimaryContainer": {"ModelPackageName": "unversioned-name"}}, {}) is None
    assert model_package_arn_of({"PrimaryContainer": {"Image": CPU_IMAGE}}, {}) is None


def test_parse_model_package_arn():
    assert parse_model_package_arn(package_arn(12)) == (GROUP, 12)
    assert parse_model_package_arn("arn:aws-cn:sagemaker:cn-north-1:123456789012:model-package/g/1") == (
        "g",
        1,
    )
    for bad in (
        "",
        "arn:aws:sagemaker:eu-west-1:123456789012:model-package/unversioned",
        "arn:aws:sagemaker:eu-west-1:123456789012:model/g/1",
    ):
        assert parse_model_package_arn(bad) is None


DESCRIBE = {
    "ModelPackageGroupName": GROUP,
    "ModelPackageVersion": 7,
    "ModelPackageArn": package_arn(7),
    "ModelApprovalStatus": "Approved",
    "InferenceSpecification": {
        "Containers": [{"Image": CPU_IMAGE, "ModelDataUrl": "s3://b/m.tar.gz", "Environment": {"A": "1"}}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
        "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
    },
}


def test_approved_package_from_describe():
    package = ApprovedPackage.from_describe_response(DESCRIBE)
    assert (package.arn, package.group, package.version, package.approval_status) == (
        package_arn(7),
        GROUP,
        7,
        "Approved",
    )
    assert (package.image_uri, package.model_data_url, dict(package.environment)) == (
        CPU_IMAGE,
        "s3://b/m.tar.gz",
        {"A": "1"},
    )
    assert package.supported_realtime_instance_types == ("ml.m5.large",)
    assert package.supported_content_types == ("text/csv",)
    minimal = ApprovedPackage.from_describe_response(
        {"ModelPackageArn": package_arn(8), "InferenceSpecification": {"Containers": [{"Image": CPU_IMAGE}]}}
    )
    assert (minimal.group, minimal.version, minimal.approval_status) == (GROUP, 8, "PendingManualApproval")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({}, "no ModelPackageArn"),
        ({"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/x"}, "not a versioned"),
        ({**DESCRIBE, "InferenceSpecification": {"Containers": []}}, "no inference container image"),
        ({**DESCRIBE, "InferenceSpecification": None}, "no inference container image"),
    ],
)
def test_undeployable_packages(response, message):
    with pytest.raises(ValueError, match=message):
        ApprovedPackage.from_describe_response(response)


def approval_event(**detail):
    return {
        "version": "0",
        "id": "7d7a1f8e-0000-4000-8000-000000000001",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-27T12:00:00Z",
        "region": "eu-west-1",
        "resources": [package_arn(3)],
        "detail": {
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 3,
            "ModelPackageArn": package_arn(3),
            "ModelApprovalStatus": "Approved",
            **detail,
        },
    }


def test_approval_event():
    event = ApprovalEvent.from_eventbridge(approval_event())
    assert event == ApprovalEvent(
        "7d7a1f8e-0000-4000-8000-000000000001", package_arn(3), GROUP, 3, "Approved"
    )
    # Group and version from the ARN when the detail lacks them.
    sparse = approval_event(
        ModelPackageGroupName=None, ModelPackageVersion=None, ModelApprovalStatus="Rejected"
    )
    assert ApprovalEvent.from_eventbridge(sparse) == ApprovalEvent(
        "7d7a1f8e-0000-4000-8000-000000000001", package_arn(3), GROUP, 3, "Rejected"
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "expected an object, got list"),
        ({**approval_event(), "source": "aws.s3"}, "source: must be one of aws.sagemaker, got 'aws.s3'"),
        (
            {**approval_event(), "detail-type": "SageMaker Endpoint State Change"},
            "detail-type: must be one of SageMaker Model Package State Change",
        ),
        ({**approval_event(), "id": ""}, "id: must not be empty"),
        ({**approval_event(), "detail": "x"}, "detail: expected an object, got str"),
        (approval_event(ModelPackageArn=None), "detail.ModelPackageArn: is required"),
        (
            approval_event(
                ModelPackageGroupName=None, ModelPackageArn="arn:aws:sagemaker:eu-west-1:1:model-package/x"
            ),
            "ModelPackageGroupName is missing",
        ),
    ],
)
def test_malformed_events(event, message):
    with pytest.raises(InvalidEvent, match=message):
        ApprovalEvent.from_eventbridge(event)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (CPU_IMAGE, None),
        (GPU_IMAGE, "gpu"),
        (NEURON_IMAGE, "neuron"),
        (
            f"{DLC}/pytorch-inference:2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker",
            "gpu",
        ),
        (
            f"{DLC}/pytorch-inference:2.3.0-cpu-py311-ubuntu20.04-sagemaker",
            None,
        ),
        (f"{DLC}/djl-inference:0.29.0-lmi11.0.0-cu124", "gpu"),
        (f"{DLC}/djl-inference:0.29.0-tensorrtllm0.11.0-cu124", "gpu"),
        (
            f"{DLC}/huggingface-pytorch-tgi-inference:2.1.2-optimum0.0.24-neuronx-py310",
            "neuron",
        ),
        ("gpu-registry.example.com/cpu-model:1", None),  # the registry host is not the image
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-gpuless-model:latest", None),
    ],
)
def test_image_accelerator(image, expected):
    assert image_accelerator(image) == expected


def test_failure_notification():
    subject, message = failure_notification(
        environment="prod",
        endpoint_name="mlops-prod-churn",
        model_package_arn=package_arn(4),
        reason="the endpoint is Failed",
        retryable=False,
        event_id="e-1",
    )
    assert subject == "[prod] Deployment to mlops-prod-churn failed"
    assert message.splitlines() == [
        "Environment: prod",
        "Endpoint: mlops-prod-churn",
        f"Model package: {package_arn(4)}",
        "Reason: the endpoint is Failed",
        "Next: not retried. Fix the cause, then approve the package again (or a newer version).",
        "EventBridge event: e-1",
    ]
    subject, message = failure_notification(
        environment="dév" * 40, endpoint_name=None, model_package_arn="p", reason="busy", retryable=True
    )
    assert len(subject) == 100 and subject.isascii() and subject.endswith("...")
    assert "(no endpoint)" in message and "retried automatically" in message


def test_rollback_command():
    assert rollback_command("e", "e-v1-c0") == (
        "aws sagemaker update-endpoint --endpoint-name e --endpoint-config-name e-v1-c0 "
        "--retain-all-variant-properties"
    )
