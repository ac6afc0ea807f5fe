"""Builders shared by the deployer tests: endpoint specs, packages, endpoint states, moto helpers.

Imported by name (``from deployment_fixtures import ...``): pytest puts this test directory on
``sys.path``; a helper named ``conftest`` would clash with the other conftest modules.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops_runtime.domain.deployment import (
    CHALLENGER,
    CHAMPION,
    ApprovedPackage,
    DeployedVariant,
    EndpointSpec,
    EndpointState,
    PackageContainer,
)
from lambda_context import LambdaContext

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlops-dev-sagemaker-execution"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
GROUP = "mlops-dev-churn"
ENDPOINT = "mlops-dev-churn"
CPU_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
GPU_IMAGE = (
    "763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
    "2.1.1-tgi2.0.0-gpu-py310-cu121-ubuntu22.04"
)
NEURON_IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/djl-inference:0.29.0-neuronx-sdk2.19.1"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

REALTIME_SPEC: dict[str, Any] = {
    "name": ENDPOINT,
    "model_package_group": GROUP,
    "variants": {
        "champion": {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 2}
    },
    "execution_role_arn": ROLE_ARN,
    "challenger_initial_weight": 0.1,
    "kms_key_arn": KMS_KEY_ARN,
    "data_capture": {
        "enabled": True,
        "sampling_percentage": 20,
        "destination_s3_uri": "s3://mlops-dev-data-capture/endpoints",
        "capture_content_types": {"csv": ["text/csv"], "json": ["application/json"]},
    },
    "guardrails": {
        "mode": "CANARY",
        "canary_size_percent": 10,
        "wait_interval_s": 600,
        "termination_wait_s": 300,
        "alarm_names": ["mlops-dev-churn-5xx", "mlops-dev-churn-latency"],
    },
    "tags": {"mlops:stack": "dev-deployment", "environment": "dev"},
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    """The realtime spec as JSON, with top-level keys replaced (``None`` removes a key)."""
    data = copy.deepcopy(REALTIME_SPEC)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def make_spec(**overrides: Any) -> EndpointSpec:
    return EndpointSpec.from_dict(spec_dict(**overrides))


def package_arn(version: int, group: str = GROUP) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group.lower()}/{version}"


def make_package(
    version: int,
    *,
    group: str = GROUP,
    image: str = CPU_IMAGE,
    supported: tuple[str, ...] = (),
    status: str = "Approved",
) -> ApprovedPackage:
    return ApprovedPackage(
        arn=package_arn(version, group),
        group=group,
        version=version,
        containers=(
            PackageContainer(
                image=image,
                model_data_url=f"s3://mlops-dev-artifacts/churn/{version}/model.tar.gz",
                environment={"SAGEMAKER_PROGRAM": "inference.py"},
            ),
        ),
        approval_status=status,
        supported_realtime_instance_types=supported,
        supported_content_types=("text/csv",),
        supported_response_mime_types=("text/csv",),
    )


def variant(
    name: str,
    version: int | None,
    weight: float,
    *,
    instance_type: str | None = "ml.m5.large",
    count: int | None = 2,
    serverless: bool = False,
) -> DeployedVariant:
    return DeployedVariant(
        name=name,
        model_name=f"{ENDPOINT}-v{version}-mdeadbeef",
        model_package_arn=None if version is None else package_arn(version),
        weight=weight,
        instance_type=None if serverless else instance_type,
        instance_count=None if serverless else count,
    )


def make_state(
    champion: int | None = 1,
    challenger: int | None = None,
    *,
    shadow: bool = False,
    status: str = "InService",
    weight: float = 0.1,
    config_name: str = f"{ENDPOINT}-v1-c00000000",
    champion_count: int = 2,
    serverless: bool = False,
    is_async: bool = False,
    managed: bool = True,
) -> EndpointState:
    production = [
        variant(
            CHAMPION,
            champion,
            1.0 if (challenger is None or shadow) else 1 - weight,
            count=champion_count,
            serverless=serverless,
        )
    ]
    shadows = []
    if challenger is not None:
        (shadows if shadow else production).append(variant(CHALLENGER, challenger, weight))
    return EndpointState(
        name=ENDPOINT,
        status=status,
        config_name=config_name,
        variants=tuple(production),
        shadow_variants=tuple(shadows),
        kind="serverless" if serverless else "async" if is_async else "realtime",
        managed=managed,
    )


# --- moto helpers -------------------------------------------------------------------------------

from mlops_platform.local.sagemaker_stubs import UpdateEndpointStub  # noqa: E402  (re-exported for the tests)


def moto_sagemaker_backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION]


def register_package(
    client: Any,
    *,
    group: str = GROUP,
    image: str = CPU_IMAGE,
    status: str = "Approved",
    supported: tuple[str, ...] = ("ml.m5.large", "ml.m5.xlarge"),
) -> str:
    """Create (the group if needed and) the next version of ``group`` in moto's registry; its ARN."""
    try:
        client.create_model_package_group(ModelPackageGroupName=group)
    except client.exceptions.ClientError:
        pass
    response = client.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": image,
                    "ModelDataUrl": "s3://mlops-dev-artifacts/churn/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
            "SupportedRealtimeInferenceInstanceTypes": list(supported),
        },
    )
    return response["ModelPackageArn"]


# --- the deployer handler on moto ------------------------------------------------------------

TABLE = "mlops-dev-deployer-idempotency"


@dataclass
class Deployer:
    """The handler wired to moto, plus what the tests look at."""

    aws: object
    queue_url: str

    @property
    def sagemaker(self):
        return self.aws("sagemaker")

    def invoke(self, event):
        from mlops_runtime.handlers import deployer

        return deployer.handler(event, LambdaContext())

    def notifications(self) -> list[dict]:
        sqs = self.aws("sqs")
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    def endpoint_config(self):
        name = self.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        return self.sagemaker.describe_endpoint_config(EndpointConfigName=name)


def approval(arn: str, event_id: str, status: str = "Approved", group: str = GROUP) -> dict:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-27T12:00:00Z",
        "region": REGION,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageArn": arn,
            "ModelPackageVersion": int(arn.rsplit("/", 1)[1]),
            "ModelApprovalStatus": status,
        },
    }


def configure_deployer(monkeypatch, *, endpoints=None, notification_topic_arn=None) -> None:
    """A cold start's settings (``settings.DeployerSettings`` in ``MLOPS_SETTINGS``), read on next use."""
    from mlops_runtime.handlers import deployer
    from settings_support import set_settings

    set_settings(monkeypatch, endpoints=endpoints or [spec_dict()], idempotency_table=TABLE,
                 notification_topic_arn=notification_topic_arn, environment="dev")
    deployer.settings.set(None)
