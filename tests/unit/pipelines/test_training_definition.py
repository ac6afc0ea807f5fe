"""The training pipeline definition: structure, contract names, security settings, offline build.

Definitions are built once per module where possible: one build takes seconds (SDK v3).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_platform.pipelines import TrainingPipelineSpec, build_training_pipeline_definition
from mlops_platform.pipelines import training_definition as td

REPO_ROOT = Path(__file__).resolve().parents[3]
REGION = "eu-west-1"
SKLEARN_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
XGBOOST_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"

ROLE_TOKEN = "${Token[TOKEN.101]}"
KMS_TOKEN = "${Token[TOKEN.102]}"
BUCKET_TOKEN = "${Token[TOKEN.103]}"
TRACKING_TOKEN = "${Token[TOKEN.104]}"
SDK_DEFAULT_BUCKET = "sdk-session-bucket-never-referenced"


def minimal_spec(**changes: Any) -> TrainingPipelineSpec:
    """Defaults everywhere: no KMS, no VPC, plain ARNs and bucket names."""
    spec = TrainingPipelineSpec(
        pipeline_name="mlops-dev-training",
        region=REGION,
        role_arn="arn:aws:iam::123456789012:role/mlops-dev-sagemaker",
        default_bucket=SDK_DEFAULT_BUCKET,
        input_data_uri="s3://mlops-dev-data/raw/churn.csv",
        output_uri="s3://mlops-dev-artifacts/pipelines/training/",
        model_package_group_name="mlops-dev-churn",
        preprocess_code_uri="s3://mlops-dev-code/training/preprocess.py",
        evaluate_code_uri="s3://mlops-dev-code/training/evaluate.py",
        train_source_uri="s3://mlops-dev-code/training/sourcedir.tar.gz",
    )
    return dataclasses.replace(spec, **changes)


def full_spec(**changes: Any) -> TrainingPipelineSpec:
    """Every option set, with CDK tokens wherever the CDK app may put them."""
    spec = TrainingPipelineSpec(
        pipeline_name="mlops-prod-training",
        region=REGION,
        role_arn=ROLE_TOKEN,
        default_bucket=SDK_DEFAULT_BUCKET,
        input_data_uri=f"s3://{BUCKET_TOKEN}/raw/churn.csv",
        output_uri=f"s3://{BUCKET_TOKEN}/pipelines/training",
        model_package_group_name="mlops-prod-churn",
        preprocess_code_uri=f"s3://{BUCKET_TOKEN}/code/preprocess.py",
        evaluate_code_uri=f"s3://{BUCKET_TOKEN}/code/evaluate.py",
        train_source_uri=f"s3://{BUCKET_TOKEN}/code/sourcedir.tar.gz",
        train_entry_point="train_churn.py",
        processing_instance_type="ml.c5.xlarge",
        processing_instance_count=2,
        training_instance_type="ml.m5.2xlarge",
        training_instance_count=3,
        hyperparameters={"num_round": "200", "max_depth": "6", "objective": "binary:logistic"},
        metric_name="f1",
        metric_threshold=0.75,
        default_approval_status="Approved",
        kms_key_arn=KMS_TOKEN,
        subnet_ids=("subnet-0a", "subnet-0b"),
        security_group_ids=("sg-0c",),
        environment={"MLFLOW_TRACKING_URI": TRACKING_TOKEN, "MLFLOW_EXPERIMENT_NAME": "churn"},
        inference_instance_types=("ml.m5.large", "ml.m5.xlarge"),
        transform_instance_types=("ml.m5.xlarge",),
        model_approval_description="Churn model, trained by the platform pipeline",
        evaluate_image_framework="xgboost",
        tags={"environment": "prod", "cost-centre": "ml"},
    )
    return dataclasses.replace(spec, **changes)


@pytest.fixture(scope="module")
def minimal_json() -> str:
    return build_training_pipeline_definition(minimal_spec())


@pytest.fixture(scope="module")
def full_json() -> str:
    return build_training_pipeline_definition(full_spec())


@pytest.fixture(scope="module")
def minimal(minimal_json: str) -> dict:
    return json.loads(minimal_json)


@pytest.fixture(scope="module")
def full(full_json: str) -> dict:
    return json.loads(full_json)


def steps_by_name(definition: dict) -> dict[str, dict]:
    """All steps, including those nested in the condition's branches."""
    found: dict[str, dict] = {}

    def visit(steps: list[dict]) -> None:
        for step in steps:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"]["IfSteps"])
                visit(step["Arguments"]["ElseSteps"])

    visit(definition["Steps"])
    return found


def step(definition: dict, name: str) -> dict:
    return steps_by_name(definition)[name]


def referenced_steps(value: Any) -> set[str]:
    """Names of the steps whose properties or property files ``value`` reads."""
    return set(re.findall(r'"Steps\.([A-Za-z0-9-]+)\.', json.dumps(value)))


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*strings(key), *strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def execution_scoped(step_name: str, output_root: str, output_name: str | None = None) -> dict:
    values = [output_root, {"Get": "Execution.PipelineExecutionId"}, step_name]
    return {"Std:Join": {"On": "/", "Values": values + ([output_name] if output_name else [])}}


# --- Structure --------------------------------------------------------------------------------------


def test_top_level_steps_in_order_and_branches(minimal: dict) -> None:
    assert [s["Name"] for s in minimal["Steps"]] == ["Preprocess", "Train", "Evaluate", "CheckMetric"]
    assert [s["Type"] for s in minimal["Steps"]] == ["Processing", "Training", "Processing", "Condition"]
    condition = step(minimal, "CheckMetric")["Arguments"]
    assert [(s["Name"], s["Type"]) for s in condition["IfSteps"]] == [("Register", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in condition["ElseSteps"]] == [("MetricBelowThreshold", "Fail")]
    assert set(steps_by_name(minimal)) == set(td.STEP_NAMES)
    assert minimal["Version"] == "2020-12-01"
    assert minimal["PipelineExperimentConfig"] is None


def test_dependencies_follow_the_data(minimal: dict) -> None:
    # Data dependencies only (no explicit DependsOn): each step reads its upstream's properties.
    assert all("DependsOn" not in s for s in steps_by_name(minimal).values())
    assert referenced_steps(step(minimal, "Preprocess")) == set()
    assert referenced_steps(step(minimal, "Train")) == {"Preprocess"}
    assert referenced_steps(step(minimal, "Evaluate")) == {"Preprocess", "Train"}
    assert referenced_steps(step(minimal, "CheckMetric")["Arguments"]["Conditions"]) == {"Evaluate"}
    assert referenced_steps(step(minimal, "Register")) == {"Train", "Evaluate"}  # model; metrics and baseline
    assert referenced_steps(step(minimal, "MetricBelowThreshold")) == {"Evaluate"}


def test_parameters_names_types_defaults(minimal: dict, full: dict) -> None:
    assert minimal["Parameters"] == [
        {"Name": "InputDataUri", "Type": "String", "DefaultValue": "s3://mlops-dev-data/raw/churn.csv"},
        {"Name": "ProcessingInstanceType", "Type": "String", "DefaultValue": "ml.m5.large"},
        {"Name": "ProcessingInstanceCount", "Type": "Integer", "DefaultValue": 1},
        {"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
        {"Name": "TrainingInstanceCount", "Type": "Integer", "DefaultValue": 1},
        {"Name": "MetricThreshold", "Type": "Float", "DefaultValue": 0.8},
        {"Name": "ModelApprovalStatus", "Type": "String", "DefaultValue": "PendingManualApproval"},
        # closed-loop retraining: none unless the retraining trigger passes production data
        {"Name": "ProductionDataUri", "Type": "String", "DefaultValue": "none"},
        {"Name": "ProductionWindowStart", "Type": "String", "DefaultValue": "none"},
        {"Name": "ProductionWindowEnd", "Type": "String", "DefaultValue": "none"},
        {"Name": "ProductionRecords", "Type": "String", "DefaultValue": "none"},
    ]
    assert [p["Name"] for p in full["Parameters"]] == list(td.PARAMETER_NAMES)
    defaults = {p["Name"]: p["DefaultValue"] for p in full["Parameters"]}
    assert defaults == {
        "InputDataUri": f"s3://{BUCKET_TOKEN}/raw/churn.csv",
        "ProcessingInstanceType": "ml.c5.xlarge",
        "ProcessingInstanceCount": 2,
        "TrainingInstanceType": "ml.m5.2xlarge",
        "TrainingInstanceCount": 3,
        "MetricThreshold": 0.75,
        "ModelApprovalStatus": "Approved",
        **{name: "none" for name in td.PRODUCTION_PARAMETERS},
    }


# --- Steps ------------------------------------------------------------------------------------------


def test_preprocess_step(minimal: dict) -> None:
    args = step(minimal, "Preprocess")["Arguments"]
    assert args["AppSpecification"] == {
        "ImageUri": SKLEARN_IMAGE,
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"],
        # As many train files as training instances (ShardedByS3Key gives each its own).
        "ContainerArguments": ["--train-shards", {"Get": "Parameters.TrainingInstanceCount"},
                               # production records joined with their ground truth (retraining)
                               "--production-data", {"Get": "Parameters.ProductionDataUri"}],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["input"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}
    assert inputs["input"]["LocalPath"] == "/opt/ml/processing/input"
    assert inputs["code"]["S3Uri"] == "s3://mlops-dev-code/training/preprocess.py"
    outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    assert list(outputs) == ["train", "validation", "test", "baseline"]
    for name, output in outputs.items():
        assert output["LocalPath"] == f"/opt/ml/processing/{name}"
        # Under output_uri (trailing slash dropped), per execution.
        assert output["S3Uri"] == execution_scoped(
            "Preprocess", "s3://mlops-dev-artifacts/pipelines/training", name
        )
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == {
        "Get": "Parameters.ProcessingInstanceType"
    }
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == {
        "Get": "Parameters.ProcessingInstanceCount"
    }
    assert args["RoleArn"] == "arn:aws:iam::123456789012:role/mlops-dev-sagemaker"
    assert "ProcessingJobName" not in args


def test_train_step(full: dict) -> None:
    args = step(full, "Train")["Arguments"]
    assert args["AlgorithmSpecification"] == {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"}
    channels = {c["ChannelName"]: c for c in args["InputDataConfig"]}
    assert list(channels) == ["train", "validation"]
    for name, channel in channels.items():
        assert channel["ContentType"] == "text/csv"
        assert channel["DataSource"]["S3DataSource"]["S3Uri"] == {
            "Get": f"Steps.Preprocess.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"
        }
    # Data-parallel: each instance gets its own train files, and the whole validation split.
    assert channels["train"]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert channels["validation"]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    assert args["HyperParameters"] == {
        "num_round": "200",
        "max_depth": "6",
        "objective": "binary:logistic",
        "sagemaker_program": "train_churn.py",
        "sagemaker_submit_directory": f"s3://{BUCKET_TOKEN}/code/sourcedir.tar.gz",
        "sagemaker_region": REGION,
    }
    assert args["Environment"] == {"MLFLOW_EXPERIMENT_NAME": "churn", "MLFLOW_TRACKING_URI": TRACKING_TOKEN}
    assert args["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert args["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert args["OutputDataConfig"]["S3OutputPath"] == execution_scoped(
        "Train", f"s3://{BUCKET_TOKEN}/pipelines/training"
    )
    assert args["RoleArn"] == ROLE_TOKEN
    assert "TrainingJobName" not in args
    # Script mode through hyper-parameters only: no SDK-managed code / driver channels.
    assert "ContainerEntrypoint" not in args["AlgorithmSpecification"]


def test_train_step_without_environment(minimal: dict) -> None:
    args = step(minimal, "Train")["Arguments"]
    assert "Environment" not in args
    assert args["HyperParameters"] == {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": "s3://mlops-dev-code/training/sourcedir.tar.gz",
        "sagemaker_region": REGION,
    }


def test_evaluate_step_and_property_file(minimal: dict) -> None:
    evaluate = step(minimal, "Evaluate")
    args = evaluate["Arguments"]
    assert args["AppSpecification"] == {
        "ImageUri": SKLEARN_IMAGE,
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in args["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/model"
    assert inputs["test"]["S3Uri"] == {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"
    }
    assert inputs["code"]["S3Uri"] == "s3://mlops-dev-code/training/evaluate.py"
    [output] = args["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "evaluation"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"
    assert output["S3Output"]["S3Uri"] == execution_scoped(
        "Evaluate", "s3://mlops-dev-artifacts/pipelines/training", "evaluation"
    )
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_evaluate_step_can_run_in_the_xgboost_image(full: dict) -> None:
    # For evaluation scripts that load the model with xgboost (not in the scikit-learn image).
    evaluate = step(full, "Evaluate")["Arguments"]["AppSpecification"]
    assert evaluate == {
        "ImageUri": XGBOOST_IMAGE,
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"],
    }
    assert step(full, "Preprocess")["Arguments"]["AppSpecification"]["ImageUri"] == SKLEARN_IMAGE


def json_get(metric: str) -> dict:
    return {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
            "Path": f"binary_classification_metrics.{metric}.value",
        }
    }


@pytest.mark.parametrize(("fixture", "metric"), [("minimal", "auc"), ("full", "f1")])
def test_condition_on_metric_and_threshold_parameter(fixture: str, metric: str, request) -> None:
    definition = request.getfixturevalue(fixture)
    assert step(definition, "CheckMetric")["Arguments"]["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": json_get(metric),
            "RightValue": {"Get": "Parameters.MetricThreshold"},
        }
    ]


def test_fail_step_message_has_metric_value_and_threshold(minimal: dict) -> None:
    message = step(minimal, "MetricBelowThreshold")["Arguments"]["ErrorMessage"]
    values = message["Std:Join"]["Values"]
    assert json_get("auc") in values
    assert {"Get": "Parameters.MetricThreshold"} in values
    assert any("auc" in v for v in values if isinstance(v, str))


def test_register_step(full: dict) -> None:
    args = step(full, "Register")["Arguments"]
    assert args["ModelPackageGroupName"] == "mlops-prod-churn"
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert args["ModelPackageDescription"] == "Churn model, trained by the platform pipeline"
    spec = args["InferenceSpecification"]
    [container] = spec["Containers"]
    assert container["Image"] == XGBOOST_IMAGE
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    # Algorithm-mode serving: no empty script-mode variables.
    assert "SAGEMAKER_PROGRAM" not in container.get("Environment", {})
    assert spec["SupportedContentTypes"] == ["text/csv"]
    assert spec["SupportedResponseMIMETypes"] == ["text/csv"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == ["ml.m5.large", "ml.m5.xlarge"]
    assert spec["SupportedTransformInstanceTypes"] == ["ml.m5.xlarge"]
    assert args["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": {
            "Std:Join": {
                "On": "/",
                "Values": [
                    {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                    "evaluation.json",
                ],
            }
        },
    }
    # closed-loop retraining: where its production data came from, recorded on the package
    assert args["CustomerMetadataProperties"] == {
        "production-data": {"Get": "Parameters.ProductionDataUri"},
        "production-window-start": {"Get": "Parameters.ProductionWindowStart"},
        "production-window-end": {"Get": "Parameters.ProductionWindowEnd"},
        "production-records": {"Get": "Parameters.ProductionRecords"},
    }
    # the training baseline with the model's score references (evaluate.py), for the monitoring launcher
    assert args["ModelMetrics"]["ModelDataQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": {"Std:Join": {"On": "/", "Values": [
            {"Get": "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}, "baseline.json"]}},
    }


# --- Encryption and network -----------------------------------------------------------------------


def test_kms_on_every_job_when_set(full: dict) -> None:
    for name in ("Preprocess", "Evaluate"):
        args = step(full, name)["Arguments"]
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == KMS_TOKEN
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == KMS_TOKEN
    args = step(full, "Train")["Arguments"]
    assert args["ResourceConfig"]["VolumeKmsKeyId"] == KMS_TOKEN
    assert args["OutputDataConfig"]["KmsKeyId"] == KMS_TOKEN


def test_vpc_on_every_job_when_set(full: dict) -> None:
    for name in ("Preprocess", "Evaluate"):
        network = step(full, name)["Arguments"]["NetworkConfig"]
        assert network["VpcConfig"] == {"Subnets": ["subnet-0a", "subnet-0b"], "SecurityGroupIds": ["sg-0c"]}
        assert network["EnableInterContainerTrafficEncryption"] is True
    args = step(full, "Train")["Arguments"]
    assert args["VpcConfig"] == {"Subnets": ["subnet-0a", "subnet-0b"], "SecurityGroupIds": ["sg-0c"]}
    assert args["EnableInterContainerTrafficEncryption"] is True


def test_no_kms_and_no_vpc_when_not_set(minimal_json: str) -> None:
    for key in (
        "KmsKeyId",
        "VolumeKmsKeyId",
        "VpcConfig",
        "NetworkConfig",
        "Subnets",
        "SecurityGroupIds",
        "EnableInterContainerTrafficEncryption",
    ):
        assert f'"{key}"' not in minimal_json, key


# --- Code locations, tokens -----------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["minimal", "full"])
def test_code_is_referenced_by_the_given_s3_uris_only(fixture: str, request) -> None:
    definition = request.getfixturevalue(fixture)
    spec = minimal_spec() if fixture == "minimal" else full_spec()
    values = strings(definition)
    text = json.dumps(definition)
    for uri in (spec.preprocess_code_uri, spec.evaluate_code_uri, spec.train_source_uri):
        assert uri in values
    # Every S3 location is one of the spec's, never the SDK session's default bucket.
    allowed = (
        spec.input_data_uri,
        spec.output_uri.rstrip("/"),
        spec.preprocess_code_uri,
        spec.evaluate_code_uri,
        spec.train_source_uri,
    )
    assert all(value in allowed for value in values if value.startswith("s3://"))
    assert SDK_DEFAULT_BUCKET not in text
    assert f"sagemaker-{REGION}" not in text
    # No local paths: nothing from this machine.
    assert "file://" not in text
    for local in {os.getcwd(), str(REPO_ROOT), str(Path.home()), "/tmp/"}:
        assert local not in text
    assert not [v for v in values if v.startswith("/") and v != "/" and not v.startswith("/opt/ml/")]


def test_cdk_tokens_pass_through_unchanged(full_json: str, full: dict) -> None:
    assert full_json.count(ROLE_TOKEN) == 3  # Preprocess, Train, Evaluate
    assert full_json.count(KMS_TOKEN) == 6
    assert TRACKING_TOKEN in full_json
    assert f"s3://{BUCKET_TOKEN}/code/preprocess.py" in strings(full)
    assert td._PLACEHOLDER_PREFIX not in full_json
    assert {s["Arguments"]["RoleArn"] for s in full["Steps"][:3]} == {ROLE_TOKEN}


def test_json_is_compact_with_sorted_keys(minimal_json: str, minimal: dict) -> None:
    assert minimal_json == json.dumps(minimal, sort_keys=True, separators=(",", ":"))


# --- Determinism --------------------------------------------------------------------------------------

_SUBPROCESS_BUILD = """
import json, socket, sys

def _refuse(*args, **kwargs):
    raise OSError("network access during the pipeline definition build")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse

from mlops_platform.pipelines import TrainingPipelineSpec, build_training_pipeline_definition

fields = json.load(sys.stdin)
for name in ("subnet_ids", "security_group_ids", "inference_instance_types", "transform_instance_types"):
    fields[name] = tuple(fields[name])
sys.stdout.write(build_training_pipeline_definition(TrainingPipelineSpec(**fields)))
"""


def _spec_as_json(spec: TrainingPipelineSpec) -> str:
    return json.dumps({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})


def test_same_spec_gives_byte_identical_json(full_json: str) -> None:
    assert build_training_pipeline_definition(full_spec()) == full_json


def test_byte_identical_across_processes(full_json: str) -> None:
    """A fresh interpreter (another hash seed, other fake credentials) gives the same bytes as this
    one; building without any credentials is covered in-process below."""
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    base = {k: v for k, v in os.environ.items() if k not in credentials}
    environments = [
        {**base, "PYTHONHASHSEED": "2", "AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake"},
    ]
    for env in environments:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SUBPROCESS_BUILD],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in environments
    ]
    results = [process.communicate(_spec_as_json(full_spec()), timeout=600) for process in processes]
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert stdout == full_json


# --- Offline and contained ----------------------------------------------------------------------------


def test_builds_without_credentials_or_aws_config(monkeypatch: pytest.MonkeyPatch, minimal_json: str) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A profile that does not exist: the build must not read ~/.aws (it would fail if it did).
    monkeypatch.setenv("AWS_PROFILE", "profile-that-does-not-exist")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    environment = dict(os.environ)
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    import boto3

    default_session = boto3.DEFAULT_SESSION

    assert build_training_pipeline_definition(minimal_spec()) == minimal_json

    # Side effects contained: environment, root logger, boto3 default session.
    assert dict(os.environ) == environment
    assert (root.level, list(root.handlers)) == root_state
    assert boto3.DEFAULT_SESSION is default_session


def test_sdk_config_files_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, full_json: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n"
        "  ProcessingJob:\n"
        "    Environment: {INJECTED: 'yes'}\n"
        "  TrainingJob:\n"
        "    EnableNetworkIsolation: true\n"
        "    Tags: [{Key: injected, Value: 'yes'}]\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    assert build_training_pipeline_definition(full_spec()) == full_json
    assert os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] == str(config)


def test_no_telemetry_is_sent(monkeypatch: pytest.MonkeyPatch, minimal_json: str) -> None:
    from sagemaker.core.telemetry import telemetry_logging

    sent: list[tuple] = []
    for name in ("_send_telemetry_request", "_send_telemetry_request_sync"):
        monkeypatch.setattr(telemetry_logging, name, lambda *args, **kwargs: sent.append(args))
    assert build_training_pipeline_definition(minimal_spec()) == minimal_json
    assert sent == []


# --- Spec ------------------------------------------------------------------------------------------


def test_spec_is_frozen_and_copies_its_mappings() -> None:
    hyperparameters = {"max_depth": "5"}
    spec = minimal_spec(hyperparameters=hyperparameters, subnet_ids=["subnet-1"], security_group_ids=["sg-1"])
    hyperparameters["max_depth"] = "9"
    assert spec.hyperparameters == {"max_depth": "5"}
    assert spec.subnet_ids == ("subnet-1",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.metric_threshold = 0.1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default_approval_status": "Rejected"}, "default_approval_status"),
        ({"evaluate_image_framework": "pytorch"}, "evaluate_image_framework"),
        ({"subnet_ids": ("subnet-1",)}, "subnet_ids and security_group_ids"),
        ({"preprocess_code_uri": "training/preprocess.py"}, "preprocess_code_uri"),
        ({"train_source_uri": "/tmp/sourcedir.tar.gz"}, "train_source_uri"),
        ({"default_bucket": "s3://bucket"}, "default_bucket"),
        ({"region": "${Token[AWS.Region.5]}"}, "region"),
        ({"hyperparameters": {"sagemaker_program": "other.py"}}, "sagemaker_program"),
        ({"training_instance_count": 0}, "training_instance_count"),
        ({"subnet_ids": "subnet-1", "security_group_ids": ("sg-1",)}, "subnet_ids"),
    ],
)
def test_spec_rejects_invalid_values(changes: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        minimal_spec(**changes)


def test_spec_accepts_tokens_and_unusual_arns() -> None:
    # No strict ARN validation: tokens and partition-specific ARNs are accepted as they are.
    spec = minimal_spec(role_arn=ROLE_TOKEN, kms_key_arn="arn:aws-cn:kms:cn-north-1:123456789012:alias/x")
    assert spec.role_arn == ROLE_TOKEN


def test_every_job_carries_the_tags(full: dict, minimal: dict) -> None:
    """Issue 15, defect 6: jobs are created at run time, where CloudFormation's tags do not reach;
    the budget filters on the environment tag."""
    for name in ("Preprocess", "Train", "Evaluate"):
        assert step(full, name)["Arguments"]["Tags"] == [
            {"Key": "cost-centre", "Value": "ml"}, {"Key": "environment", "Value": "prod"}]
        assert "Tags" not in step(minimal, name)["Arguments"]
