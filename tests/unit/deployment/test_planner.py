"""plan_deployment: every outcome, the exact requests, deterministic names, refusals."""

from __future__ import annotations

import re
from datetime import timedelta

import botocore.session
import pytest
from botocore.validate import ParamValidator
from deployment_fixtures import (
    CPU_IMAGE,
    ENDPOINT,
    GPU_IMAGE,
    GROUP,
    KMS_KEY_ARN,
    NEURON_IMAGE,
    NOW,
    ROLE_ARN,
    make_package,
    make_spec,
    make_state,
    package_arn,
    spec_dict,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mlops_runtime.domain.deployment import (
    ACTION_ADD_CHALLENGER,
    ACTION_CREATE,
    ACTION_NOOP,
    ACTION_REPLACE_CHALLENGER,
    ACTION_REPLACE_CHAMPION,
    CHALLENGER,
    CHAMPION,
    MANAGED_BY_TAG,
    PACKAGE_ARN_TAG,
    ApprovedPackage,
    CannotPlan,
    DeployedVariant,
    EndpointBusy,
    EndpointSpec,
    EndpointState,
    PackageContainer,
    plan_deployment,
    resource_name,
)
from mlops_runtime.domain.instance_types import INSTANCE_TYPES

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
ALL_AT_ONCE = {"mode": "ALL_AT_ONCE", "wait_interval_s": 300, "alarm_names": ["mlops-dev-churn-5xx"]}
SERVERLESS = {
    "champion": {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 20, "provisioned_concurrency": 2}
}
ASYNC = {
    "champion": {
        "kind": "async",
        "instance_type": "ml.m5.xlarge",
        "initial_instance_count": 1,
        "output_s3_uri": "s3://mlops-dev-artifacts/async/out",
        "failure_s3_uri": "s3://mlops-dev-artifacts/async/failed",
        "success_topic_arn": "arn:aws:sns:eu-west-1:123456789012:async-ok",
        "error_topic_arn": "arn:aws:sns:eu-west-1:123456789012:async-error",
        "max_concurrent_invocations_per_instance": 4,
    }
}


def assert_valid_requests(plan):
    """Every call passes botocore's validation of the real API model; names fit SageMaker's rules."""
    for call in plan.calls:
        operation = _SAGEMAKER.operation_model(call.operation)
        report = ParamValidator().validate(dict(call.params), operation.input_shape)
        assert not report.has_errors(), report.generate_report()
        for key in ("ModelName", "EndpointConfigName", "EndpointName"):
            if key in call.params:
                assert len(call.params[key]) <= 63 and NAME_RE.match(call.params[key]), call.params[key]
        for tag in call.params.get("Tags", ()):
            assert len(tag["Key"]) <= 128 and len(tag["Value"]) <= 256
        assert len(call.params.get("Tags", ())) <= 50


def config_of(plan):
    return plan.call("CreateEndpointConfig").params


def variants_of(plan, key="ProductionVariants"):
    return {variant["VariantName"]: variant for variant in config_of(plan).get(key, ())}


def tags_of(params):
    return {tag["Key"]: tag["Value"] for tag in params["Tags"]}


# --- new endpoint ---------------------------------------------------------------------------------


def test_new_endpoint_creates_model_config_and_endpoint(realtime_spec):
    package = make_package(1)
    plan = plan_deployment(None, package, realtime_spec, NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_CREATE
    assert [call.operation for call in plan.calls] == [
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
    ]
    model = plan.call("CreateModel").params
    assert model["ModelName"].startswith(f"{ENDPOINT}-v1-m")
    assert model["ExecutionRoleArn"] == ROLE_ARN
    assert model["PrimaryContainer"] == {
        "Image": CPU_IMAGE,
        "ModelDataUrl": "s3://mlops-dev-artifacts/churn/1/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
    }
    assert tags_of(model) == {
        "environment": "dev",
        "mlops:endpoint": ENDPOINT,
        "mlops:managed-by": "endpoint-deployer",
        "mlops:model-package-arn": package.arn,
        "mlops:stack": "dev-deployment",
    }
    config = config_of(plan)
    assert config["ProductionVariants"] == [
        {
            "VariantName": CHAMPION,
            "ModelName": model["ModelName"],
            "InitialVariantWeight": 1.0,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 2,
        }
    ]
    assert "ShadowProductionVariants" not in config
    assert config["KmsKeyId"] == KMS_KEY_ARN
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": "s3://mlops-dev-data-capture/endpoints",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "KmsKeyId": KMS_KEY_ARN,
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }
    assert config["EndpointConfigName"] == plan.new_config_name
    assert plan.call("CreateEndpoint").params == {
        "EndpointName": ENDPOINT,
        "EndpointConfigName": plan.new_config_name,
        "Tags": [
            {"Key": "environment", "Value": "dev"},
            {"Key": "mlops:endpoint", "Value": ENDPOINT},
            {"Key": "mlops:managed-by", "Value": "endpoint-deployer"},
            {"Key": "mlops:stack", "Value": "dev-deployment"},
        ],
    }
    assert plan.previous_config_name is None and plan.rollback is None and not plan.guardrails
    assert plan.planned_at == "2026-11-27T12:00:00Z"
    assert plan.to_dict()["calls"][2]["operation"] == "CreateEndpoint"


def test_new_endpoint_ignores_shadow_and_challenger_weight():
    plan = plan_deployment(None, make_package(4), make_spec(shadow=True, challenger_initial_weight=0.3), NOW)
    assert list(variants_of(plan)) == [CHAMPION] and "ShadowProductionVariants" not in config_of(plan)
    assert variants_of(plan)[CHAMPION]["InitialVariantWeight"] == 1.0


# --- champion / challenger ------------------------------------------------------------------------


def test_existing_champion_gets_a_challenger_at_the_configured_split(realtime_spec):
    current = make_state(champion=1)
    plan = plan_deployment(current, make_package(2), realtime_spec, NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_ADD_CHALLENGER
    assert [call.operation for call in plan.calls] == [
        "CreateModel",
        "CreateEndpointConfig",
        "UpdateEndpoint",
    ]
    variants = variants_of(plan)
    assert variants[CHAMPION] == {
        "VariantName": CHAMPION,
        "ModelName": current.variant(CHAMPION).model_name,  # unchanged model
        "InitialVariantWeight": 0.9,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 2,
    }
    assert variants[CHALLENGER]["ModelName"] == plan.call("CreateModel").params["ModelName"]
    assert variants[CHALLENGER]["InitialVariantWeight"] == 0.1
    update = plan.call("UpdateEndpoint").params
    # The variant names change (champion -> champion+challenger): SageMaker guardrails need the same
    # names, so the update has no DeploymentConfig and the plan says why.
    assert update == {"EndpointName": ENDPOINT, "EndpointConfigName": plan.new_config_name}
    assert not plan.guardrails
    assert any("guardrails require the same variant names" in note for note in plan.notes)
    assert plan.previous_config_name == current.config_name
    assert plan.rollback == (
        f"aws sagemaker update-endpoint --endpoint-name {ENDPOINT} "
        f"--endpoint-config-name {current.config_name} --retain-all-variant-properties"
    )
    assert tags_of(config_of(plan))[PACKAGE_ARN_TAG] == package_arn(2)


def test_newer_package_replaces_the_older_challenger_with_guardrails(realtime_spec):
    current = make_state(champion=1, challenger=2)
    plan = plan_deployment(current, make_package(3), realtime_spec, NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_REPLACE_CHALLENGER
    assert package_arn(2) in plan.reason
    variants = variants_of(plan)
    assert set(variants) == {CHAMPION, CHALLENGER}
    assert variants[CHAMPION]["ModelName"] == current.variant(CHAMPION).model_name
    new_model = plan.call("CreateModel").params["ModelName"]
    assert variants[CHALLENGER]["ModelName"] == new_model != current.variant(CHALLENGER).model_name
    assert (variants[CHAMPION]["InitialVariantWeight"], variants[CHALLENGER]["InitialVariantWeight"]) == (
        0.9,
        0.1,
    )
    assert plan.guardrails
    assert plan.call("UpdateEndpoint").params["DeploymentConfig"] == {
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


def test_challenger_sizing_can_differ_from_the_champion():
    data = spec_dict(challenger_initial_weight=0.25)
    data["variants"]["challenger"] = {
        "kind": "realtime",
        "instance_type": "ml.c5.xlarge",
        "initial_instance_count": 2,
    }
    plan = plan_deployment(make_state(champion=1), make_package(2), EndpointSpec.from_dict(data), NOW)
    variants = variants_of(plan)
    assert (variants[CHALLENGER]["InstanceType"], variants[CHALLENGER]["InitialVariantWeight"]) == (
        "ml.c5.xlarge",
        0.25,
    )
    assert (variants[CHAMPION]["InstanceType"], variants[CHAMPION]["InitialVariantWeight"]) == (
        "ml.m5.large",
        0.75,
    )


def test_weight_zero_replaces_the_champion_with_guardrails():
    spec = make_spec(challenger_initial_weight=0)
    plan = plan_deployment(make_state(champion=1), make_package(2), spec, NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_REPLACE_CHAMPION
    assert variants_of(plan)[CHAMPION]["ModelName"] == plan.call("CreateModel").params["ModelName"]
    assert list(variants_of(plan)) == [CHAMPION]
    assert plan.guardrails and "DeploymentConfig" in plan.call("UpdateEndpoint").params


def test_weight_zero_with_a_challenger_drops_it_without_guardrails():
    plan = plan_deployment(
        make_state(champion=1, challenger=2), make_package(3), make_spec(challenger_initial_weight=0), NOW
    )
    assert plan.action == ACTION_REPLACE_CHAMPION and list(variants_of(plan)) == [CHAMPION]
    assert "DeploymentConfig" not in plan.call("UpdateEndpoint").params
    assert any("challenger" in note and "removed" in note for note in plan.notes)


def test_a_scaled_out_champion_keeps_its_instances():
    plan = plan_deployment(make_state(champion=1, champion_count=6), make_package(2), make_spec(), NOW)
    assert variants_of(plan)[CHAMPION]["InitialInstanceCount"] == 6
    assert variants_of(plan)[CHALLENGER]["InitialInstanceCount"] == 2
    assert any("keeps its current 6 instances" in note for note in plan.notes)
    # A different instance type in the spec: the spec's count applies.
    data = spec_dict()
    data["variants"]["champion"]["instance_type"] = "ml.m5.xlarge"
    plan = plan_deployment(
        make_state(champion=1, champion_count=6), make_package(2), EndpointSpec.from_dict(data), NOW
    )
    assert variants_of(plan)[CHAMPION]["InitialInstanceCount"] == 2


# --- shadow ---------------------------------------------------------------------------------------


def test_shadow_challenger():
    spec = make_spec(shadow=True, challenger_initial_weight=0.5)
    current = make_state(champion=1)
    plan = plan_deployment(current, make_package(2), spec, NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_ADD_CHALLENGER and plan.shadow
    assert variants_of(plan)[CHAMPION]["InitialVariantWeight"] == 1.0
    assert list(variants_of(plan)) == [CHAMPION]
    shadow = variants_of(plan, "ShadowProductionVariants")
    assert shadow[CHALLENGER]["InitialVariantWeight"] == 0.5
    assert shadow[CHALLENGER]["ModelName"] == plan.call("CreateModel").params["ModelName"]
    assert "DeploymentConfig" not in plan.call("UpdateEndpoint").params
    assert "shadow" in plan.reason


def test_newer_shadow_challenger_replaces_the_older_one():
    spec = make_spec(shadow=True, challenger_initial_weight=0.5)
    plan = plan_deployment(make_state(champion=1, challenger=2, shadow=True), make_package(3), spec, NOW)
    assert plan.action == ACTION_REPLACE_CHALLENGER
    assert list(variants_of(plan, "ShadowProductionVariants")) == [CHALLENGER]
    assert "DeploymentConfig" not in plan.call("UpdateEndpoint").params
    assert any("shadow challenger serves no live traffic" in note for note in plan.notes)


def test_switching_from_live_to_shadow_changes_the_layout():
    spec = make_spec(shadow=True, challenger_initial_weight=0.5)
    plan = plan_deployment(make_state(champion=1, challenger=2), make_package(3), spec, NOW)
    assert list(variants_of(plan)) == [CHAMPION] and list(variants_of(plan, "ShadowProductionVariants")) == [
        CHALLENGER
    ]
    assert not plan.guardrails


# --- same package, older package --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "version", "role"),
    [
        (make_state(champion=1), 1, "champion"),
        (make_state(champion=1, challenger=2), 2, "challenger"),
        (make_state(champion=1, challenger=2, shadow=True), 2, "shadow challenger"),
    ],
)
def test_same_package_again_is_a_noop(realtime_spec, state, version, role):
    plan = plan_deployment(state, make_package(version), realtime_spec, NOW)
    assert plan.action == ACTION_NOOP and plan.is_noop and plan.calls == ()
    assert plan.reason.startswith("already deployed") and f"is the {role} of" in plan.reason
    assert plan.rollback is None


def test_an_older_version_than_the_deployed_one_is_a_noop(realtime_spec):
    plan = plan_deployment(make_state(champion=1, challenger=3), make_package(2), realtime_spec, NOW)
    assert plan.is_noop
    assert plan.reason == (
        f"superseded: version 3 of {GROUP} is already deployed as the challenger; "
        "version 2 is older and is not deployed"
    )


def test_a_package_of_another_group_on_the_endpoint_does_not_supersede(realtime_spec):
    other = DeployedVariant(CHAMPION, "m", package_arn(9, "other-group"), 1.0, "ml.m5.large", 2)
    state = EndpointState(ENDPOINT, "InService", "cfg", (other,))
    assert plan_deployment(state, make_package(2), realtime_spec, NOW).action == ACTION_ADD_CHALLENGER


# --- serverless and async -----------------------------------------------------------------------------


def serverless_spec():
    return make_spec(
        variants=SERVERLESS, challenger_initial_weight=0, data_capture=None, guardrails=ALL_AT_ONCE
    )


def test_serverless_new_endpoint():
    plan = plan_deployment(None, make_package(1), serverless_spec(), NOW)
    assert_valid_requests(plan)
    config = config_of(plan)
    assert config["ProductionVariants"] == [
        {
            "VariantName": CHAMPION,
            "ModelName": plan.call("CreateModel").params["ModelName"],
            "InitialVariantWeight": 1.0,
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 20, "ProvisionedConcurrency": 2},
        }
    ]
    assert "KmsKeyId" not in config and "DataCaptureConfig" not in config
    assert any("serverless variants have no ML storage volume" in note for note in plan.notes)


def test_serverless_always_replaces_the_sole_variant():
    current = make_state(champion=1, serverless=True)
    plan = plan_deployment(current, make_package(2), serverless_spec(), NOW)
    assert_valid_requests(plan)
    assert plan.action == ACTION_REPLACE_CHAMPION and list(variants_of(plan)) == [CHAMPION]
    assert plan.call("UpdateEndpoint").params["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 0,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "mlops-dev-churn-5xx"}]},
    }


def async_spec(**overrides):
    return make_spec(
        **{"variants": ASYNC, "challenger_initial_weight": 0, "guardrails": ALL_AT_ONCE, **overrides}
    )


def test_async_new_endpoint():
    plan = plan_deployment(None, make_package(1), async_spec(), NOW)
    assert_valid_requests(plan)
    config = config_of(plan)
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": "s3://mlops-dev-artifacts/async/out",
            "S3FailurePath": "s3://mlops-dev-artifacts/async/failed",
            "KmsKeyId": KMS_KEY_ARN,
            "NotificationConfig": {
                "SuccessTopic": "arn:aws:sns:eu-west-1:123456789012:async-ok",
                "ErrorTopic": "arn:aws:sns:eu-west-1:123456789012:async-error",
            },
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
    }
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    assert "DataCaptureConfig" in config and config["KmsKeyId"] == KMS_KEY_ARN


def test_async_replaces_its_single_variant():
    plan = plan_deployment(make_state(champion=1, is_async=True), make_package(2), async_spec(), NOW)
    assert_valid_requests(plan)
    assert (
        plan.action == ACTION_REPLACE_CHAMPION and list(variants_of(plan)) == [CHAMPION] and plan.guardrails
    )


# --- GPUs, storage, containers, VPC ---------------------------------------------------------------


def gpu_spec(**champion):
    data = spec_dict(challenger_initial_weight=0.2)
    data["variants"]["champion"] = {
        "kind": "realtime",
        "instance_type": "ml.g5.12xlarge",
        "initial_instance_count": 2,
        "model_data_download_timeout_s": 1800,
        "container_startup_health_check_timeout_s": 1200,
        **champion,
    }
    return EndpointSpec.from_dict(data)


def test_multi_gpu_realtime_variant_with_timeouts():
    package = make_package(1, image=GPU_IMAGE, supported=("ml.g5.12xlarge", "ml.g5.48xlarge"))
    plan = plan_deployment(None, package, gpu_spec(), NOW)
    assert_valid_requests(plan)
    champion = variants_of(plan)[CHAMPION]
    assert champion == {
        "VariantName": CHAMPION,
        "ModelName": plan.call("CreateModel").params["ModelName"],
        "InitialVariantWeight": 1.0,
        "InstanceType": "ml.g5.12xlarge",
        "InitialInstanceCount": 2,
        "ModelDataDownloadTimeoutInSeconds": 1800,
        "ContainerStartupHealthCheckTimeoutInSeconds": 1200,
    }
    config = config_of(plan)
    # g5 has local NVMe storage: SageMaker rejects an endpoint-config KMS key (and VolumeSizeInGB);
    # data capture still uses the key.
    assert "KmsKeyId" not in config and config["DataCaptureConfig"]["KmsKeyId"] == KMS_KEY_ARN
    assert any("ml.g5.12xlarge use local NVMe storage" in note for note in plan.notes)


def test_volume_size_on_an_ebs_gpu_instance():
    data = spec_dict()
    data["variants"]["champion"] = {
        "kind": "realtime",
        "instance_type": "ml.p3.8xlarge",
        "initial_instance_count": 2,
        "volume_size_gb": 300,
    }
    plan = plan_deployment(None, make_package(1, image=GPU_IMAGE), EndpointSpec.from_dict(data), NOW)
    assert variants_of(plan)[CHAMPION]["VolumeSizeInGB"] == 300
    assert config_of(plan)["KmsKeyId"] == KMS_KEY_ARN


def test_neuron_image_on_inferentia():
    data = spec_dict()
    data["variants"]["champion"] = {
        "kind": "realtime",
        "instance_type": "ml.inf2.8xlarge",
        "initial_instance_count": 2,
    }
    plan = plan_deployment(None, make_package(1, image=NEURON_IMAGE), EndpointSpec.from_dict(data), NOW)
    assert variants_of(plan)[CHAMPION]["InstanceType"] == "ml.inf2.8xlarge"


def test_cpu_image_on_a_gpu_instance_is_allowed_with_a_note():
    plan = plan_deployment(None, make_package(1), gpu_spec(), NOW)
    assert any("does not look like it uses the accelerator" in note for note in plan.notes)


def test_multi_container_package_and_vpc():
    package = ApprovedPackage(
        arn=package_arn(1),
        group=GROUP,
        version=1,
        containers=(
            PackageContainer("111.dkr.ecr.eu-west-1.amazonaws.com/preprocess:1", "s3://b/pre.tar.gz"),
            PackageContainer(CPU_IMAGE, "s3://b/model.tar.gz", {"B": "2", "A": "1"}),
        ),
    )
    spec = make_spec(
        vpc={"subnet_ids": ["subnet-0a1b2c3d4e5f60718"], "security_group_ids": ["sg-0123456789abcdef0"]}
    )
    plan = plan_deployment(None, package, spec, NOW)
    assert_valid_requests(plan)
    model = plan.call("CreateModel").params
    assert "PrimaryContainer" not in model
    assert model["Containers"][1] == {
        "Image": CPU_IMAGE,
        "ModelDataUrl": "s3://b/model.tar.gz",
        "Environment": {"A": "1", "B": "2"},
    }
    assert model["VpcConfig"] == {
        "Subnets": ["subnet-0a1b2c3d4e5f60718"],
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
    }


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("package", "spec", "reason"),
    [
        (
            make_package(1, supported=("ml.c5.large",)),
            make_spec(),
            (
                "the champion runs on ml.m5.large but arn:aws:sagemaker:eu-west-1:123456789012:model-package/"
                "mlops-dev-churn/1 supports only ml.c5.large for real-time inference"
            ),
        ),
        (make_package(1, image=GPU_IMAGE), make_spec(), "uses a GPU image"),
        (make_package(1, image=NEURON_IMAGE), gpu_spec(), "which has no Inferentia/Trainium chip"),
        (make_package(1, image=GPU_IMAGE), serverless_spec(), "serverless endpoints have no accelerators"),
        (make_package(1, group="other-group"), make_spec(), "does not feed this endpoint"),
        (make_package(1, status="Rejected"), make_spec(), "is Rejected, not Approved"),
    ],
    ids=["unsupported-instance", "gpu-on-cpu", "neuron-on-gpu", "gpu-serverless", "other-group", "rejected"],
)
def test_cannot_plan(package, spec, reason):
    with pytest.raises(CannotPlan) as raised:
        plan_deployment(None, package, spec, NOW)
    assert reason in raised.value.reason
    assert not raised.value.retryable and raised.value.endpoint_name == ENDPOINT


def test_the_challenger_instance_type_is_checked_against_the_package():
    package = make_package(2, supported=("ml.m5.xlarge",))
    data = spec_dict()
    data["variants"]["champion"]["instance_type"] = "ml.m5.xlarge"
    data["variants"]["challenger"] = {
        "kind": "realtime",
        "instance_type": "ml.m5.large",
        "initial_instance_count": 2,
    }
    with pytest.raises(CannotPlan, match="the challenger runs on ml.m5.large"):
        plan_deployment(make_state(champion=1), package, EndpointSpec.from_dict(data), NOW)


@pytest.mark.parametrize("status", ["Updating", "Creating", "SystemUpdating", "RollingBack"])
def test_a_busy_endpoint_is_retryable(realtime_spec, status):
    with pytest.raises(EndpointBusy) as raised:
        plan_deployment(make_state(champion=1, status=status), make_package(2), realtime_spec, NOW)
    assert raised.value.retryable and isinstance(raised.value, CannotPlan)
    assert f"the endpoint is {status}" in raised.value.reason


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        ("Failed", "delete the endpoint"),
        ("OutOfService", "out of service"),
        ("Deleting", "being deleted"),
        ("UpdateRollbackFailed", "fix the endpoint by hand"),
    ],
)
def test_a_broken_endpoint_cannot_be_planned(realtime_spec, status, advice):
    # Even for the already-deployed package: the state check comes first.
    with pytest.raises(CannotPlan) as raised:
        plan_deployment(make_state(champion=1, status=status), make_package(1), realtime_spec, NOW)
    assert not raised.value.retryable and not isinstance(raised.value, EndpointBusy)
    assert advice in raised.value.reason


def test_an_endpoint_not_created_by_the_deployer_is_left_alone(realtime_spec):
    with pytest.raises(CannotPlan, match=f"not created by the deployer \\(no {MANAGED_BY_TAG}"):
        plan_deployment(make_state(champion=1, managed=False), make_package(2), realtime_spec, NOW)


def test_an_unexpected_variant_layout(realtime_spec):
    state = EndpointState(
        ENDPOINT, "InService", "cfg", (DeployedVariant("AllTraffic", "m", None, 1.0, "ml.m5.large", 1),)
    )
    with pytest.raises(CannotPlan, match=r"unexpected variant layout \(production \['AllTraffic'\]"):
        plan_deployment(state, make_package(2), realtime_spec, NOW)


def test_the_kind_of_an_endpoint_is_not_converted():
    with pytest.raises(CannotPlan, match="the endpoint is serverless but the spec asks for realtime"):
        plan_deployment(make_state(champion=1, serverless=True), make_package(2), make_spec(), NOW)
    with pytest.raises(CannotPlan, match="the endpoint is realtime but the spec asks for async"):
        plan_deployment(make_state(champion=1), make_package(2), async_spec(), NOW)


# --- determinism and names ---------------------------------------------------------------------------


def test_a_retry_plans_the_same_calls(realtime_spec):
    current = make_state(champion=1, challenger=2)
    first = plan_deployment(current, make_package(3), realtime_spec, NOW)
    later = plan_deployment(current, make_package(3), realtime_spec, NOW + timedelta(hours=5))
    assert first.calls == later.calls and first.planned_at != later.planned_at


def test_names_change_with_the_request_not_with_tags(realtime_spec):
    base = plan_deployment(make_state(champion=1), make_package(2), realtime_spec, NOW)
    other_weight = plan_deployment(
        make_state(champion=1), make_package(2), make_spec(challenger_initial_weight=0.2), NOW
    )
    other_tags = plan_deployment(make_state(champion=1), make_package(2), make_spec(tags={"team": "x"}), NOW)
    assert (
        base.call("CreateModel").params["ModelName"] == other_weight.call("CreateModel").params["ModelName"]
    )
    assert base.new_config_name != other_weight.new_config_name
    assert base.new_config_name == other_tags.new_config_name
    assert base.call("CreateModel").params["ModelName"] == other_tags.call("CreateModel").params["ModelName"]


def test_long_endpoint_names_are_cut_to_63_characters():
    name = "a" * 40 + "-" + "b" * 22  # 63 characters
    plan = plan_deployment(None, make_package(123456789), make_spec(name=name), NOW)
    assert_valid_requests(plan)
    model_name = plan.call("CreateModel").params["ModelName"]
    assert len(model_name) == 63 and model_name.startswith("a" * 40) and "-v123456789-m" in model_name
    # Two endpoints sharing the first 42 characters still get different names.
    twin = plan_deployment(None, make_package(123456789), make_spec(name=name[:-1] + "c"), NOW)
    assert twin.call("CreateModel").params["ModelName"] != model_name


_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@st.composite
def endpoint_names(draw):
    """Valid SageMaker names: alphanumeric runs joined by one or more hyphens, at most 63 characters."""
    runs = draw(st.lists(st.text(_ALNUM, min_size=1, max_size=20), min_size=1, max_size=8))
    hyphens = draw(st.lists(st.integers(1, 3), min_size=len(runs) - 1, max_size=len(runs) - 1))
    name = runs[0] + "".join("-" * count + run for count, run in zip(hyphens, runs[1:], strict=True))
    return name[:63].rstrip("-")


@settings(max_examples=150, deadline=None)
@given(
    endpoint=endpoint_names(),
    version=st.integers(1, 999_999_999),
    kind=st.sampled_from(["m", "c"]),
    payload=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=10), max_size=3),
)
def test_resource_names_are_always_valid(endpoint, version, kind, payload):
    name = resource_name(endpoint, version, kind, payload)
    assert len(name) <= 63 and NAME_RE.match(name) and name.endswith(tuple("0123456789abcdef"))
    assert name == resource_name(endpoint, version, kind, dict(payload))
    assert re.search(rf"-v{version}-{kind}[0-9a-f]{{8}}$", name)


# --- property: any valid realtime spec and state gives valid, consistent requests ---------------------

_CPU = ["ml.m5.large", "ml.m5.xlarge", "ml.c6i.2xlarge", "ml.r5.large"]
_GPU = ["ml.g5.12xlarge", "ml.g4dn.xlarge", "ml.p3.8xlarge", "ml.g6.48xlarge"]


@st.composite
def scenarios(draw):
    gpu = draw(st.booleans())
    instance = draw(st.sampled_from(_GPU if gpu else _CPU))
    champion = {
        "kind": "realtime",
        "instance_type": instance,
        "initial_instance_count": draw(st.integers(2, 6)),
    }
    if instance in ("ml.m5.large", "ml.m5.xlarge", "ml.c6i.2xlarge", "ml.r5.large", "ml.p3.8xlarge") and draw(
        st.booleans()
    ):
        champion["volume_size_gb"] = draw(st.integers(1, 512))
    if draw(st.booleans()):
        champion["container_startup_health_check_timeout_s"] = draw(st.integers(60, 3600))
    shadow = draw(st.booleans())
    weight = draw(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.9] if not shadow else [0.05, 0.5, 1.0]))
    mode = draw(st.sampled_from(["ALL_AT_ONCE", "CANARY", "LINEAR"]))
    guardrails = {"mode": mode, "alarm_names": draw(st.lists(st.sampled_from(["x", "y", "z"]), unique=True))}
    if mode == "CANARY":
        guardrails["canary_size_percent"] = draw(st.integers(1, 50))
    if mode == "LINEAR":
        guardrails["linear_step_percent"] = draw(st.integers(10, 50))
    name = draw(endpoint_names())
    spec = EndpointSpec.from_dict(
        spec_dict(
            name=name,
            variants={"champion": champion},
            shadow=shadow,
            challenger_initial_weight=weight,
            guardrails=guardrails,
            kms_key_arn=draw(st.sampled_from([KMS_KEY_ARN, None])),
        )
    )
    layout = draw(st.sampled_from(["none", "champion", "champion+challenger", "champion+shadow"]))
    version = draw(st.integers(3, 10_000))
    current = None
    if layout != "none":
        current = make_state(
            champion=1,
            challenger=None if layout == "champion" else 2,
            shadow=layout == "champion+shadow",
            champion_count=draw(st.integers(1, 10)),
        )
        current = EndpointState(
            name, current.status, current.config_name, current.variants, current.shadow_variants, managed=True
        )
    return current, make_package(version, image=GPU_IMAGE if gpu else CPU_IMAGE), spec


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_plans_are_valid_requests(scenario):
    current, package, spec = scenario
    plan = plan_deployment(current, package, spec, NOW)
    assert_valid_requests(plan)
    assert plan == plan_deployment(current, package, spec, NOW)
    production = config_of(plan)["ProductionVariants"]
    shadow = config_of(plan).get("ShadowProductionVariants", [])
    assert len(production) + len(shadow) <= 10
    assert all(variant["InitialVariantWeight"] > 0 for variant in production + shadow)
    assert abs(sum(variant["InitialVariantWeight"] for variant in production) - 1.0) < 1e-9
    new_model = plan.call("CreateModel").params["ModelName"]
    assert sum(variant["ModelName"] == new_model for variant in production + shadow) == 1
    assert {variant["VariantName"] for variant in production} <= {CHAMPION, CHALLENGER}
    assert (plan.call("CreateEndpoint") is None) == (current is not None)
    update = plan.call("UpdateEndpoint")
    if update is not None and "DeploymentConfig" in update.params:
        # Guardrails only when SageMaker accepts them: same variant names, no shadow.
        assert plan.guardrails and not shadow
        assert (tuple(sorted(v["VariantName"] for v in production)), ()) == current.layout
    nvme = any(INSTANCE_TYPES[variant["InstanceType"]].local_nvme for variant in production + shadow)
    assert ("KmsKeyId" in config_of(plan)) == (spec.kms_key_arn is not None and not nvme)
    assume(current is not None)
    assert plan.previous_config_name == current.config_name
