"""Training stack: pipeline from the SDK definition, least-privilege roles, registry, triggers, MLflow."""

from __future__ import annotations

import json

from pathlib import Path

import pytest
import yaml
from aws_cdk.assertions import Match

from mlops_platform.app_builder import build_app
from mlops_platform.config import parse_config
from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()


def resources(synthesis, environment, type_):
    template = synthesis.template(environment, "Training")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def pipeline_definition(synthesis, environment, name: str = "example-classifier") -> tuple[dict, dict]:
    """The pipeline ``<prefix>-<name>`` (the shipped example's; a config may add others)."""
    (pipeline,) = [p for p in resources(synthesis, environment, "AWS::SageMaker::Pipeline").values()
                   if p["Properties"]["PipelineName"] == f"mlops-{environment}-{name}"]
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    # Tokens (role, key, bucket names) make the body an Fn::Join; the literal parts hold the JSON.
    text = body if isinstance(body, str) else "".join(
        part if isinstance(part, str) else "TOKEN" for part in body["Fn::Join"][1]
    )
    return pipeline, json.loads(text.replace('"TOKEN"', '"x"').replace("TOKEN", "x"))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_pipeline_runs_the_five_steps(synthesis, environment):
    pipeline, definition = pipeline_definition(synthesis, environment)
    assert pipeline["Properties"]["PipelineName"] == f"mlops-{environment}-example-classifier"
    steps = [step["Name"] for step in definition["Steps"]]
    assert steps == ["Preprocess", "Train", "Evaluate", "CheckMetric"]
    check = definition["Steps"][3]
    assert [s["Name"] for s in check["Arguments"]["IfSteps"]] == ["Register"]
    assert [s["Name"] for s in check["Arguments"]["ElseSteps"]] == ["MetricBelowThreshold"]
    register = check["Arguments"]["IfSteps"][0]["Arguments"]
    assert register["ModelPackageGroupName"] == f"mlops-{environment}-example-classifier"
    parameters = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    (config,) = [p for p in synthesis.configs[environment].training.pipelines if p.name == "example-classifier"]
    assert parameters["MetricThreshold"] == config.metric_threshold
    assert parameters["ModelApprovalStatus"] == config.approval_status.value


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_jobs_encrypt_with_the_platform_key_and_use_the_vpc_when_present(synthesis, environment):
    pipeline, _ = pipeline_definition(synthesis, environment)
    body = json.dumps(pipeline["Properties"]["PipelineDefinition"])
    assert "VolumeKmsKeyId" in body and "PlatformKey" in body
    has_vpc = synthesis.configs[environment].vpc.enabled
    assert ("SecurityGroupIds" in body) is has_vpc
    assert ("EnableInterContainerTrafficEncryption" in body) is has_vpc


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_step_code_comes_from_cdk_assets(synthesis, environment):
    pipeline, definition = pipeline_definition(synthesis, environment)
    body = json.dumps(pipeline["Properties"]["PipelineDefinition"])
    assert body.count("cdk-hnb659fds-assets-") >= 3
    assert "/work/" not in body and "training/example_classifier" not in body
    train = definition["Steps"][1]["Arguments"]
    assert train["HyperParameters"]["sagemaker_program"] == "train.py"


def test_feature_store_input_passes_offline_store_arguments():
    """A pipeline that trains from a feature group reads its offline store folder."""
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "dev.yaml").read_text())
    data["training"]["pipelines"][0]["feature_group"] = "customers"
    config = parse_config(data, "dev.yaml")
    stage = build_app([config]).node.find_child("dev")
    pipeline = stage.training.node.find_child("ExampleClassifierPipeline")
    body = json.dumps(stage.training.resolve(pipeline.pipeline_definition))
    assert "--input-format" in body and "feature-store" in body and "--record-identifier" in body
    assert "offline-store/mlops-dev-customers-" in body


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_pipeline_role_is_scoped(synthesis, environment):
    template = synthesis.template(environment, "Training")
    role_id = next(k for k, v in resources(synthesis, environment, "AWS::IAM::Role").items()
                   if k.startswith("PipelineRole"))
    statements = [
        s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = json.dumps(statements)
    assert '"Resource": "*"' not in text
    assert "processing-job/pipelines-*" in text and "training-job/pipelines-*" in text
    pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert "sagemaker-execution" in json.dumps(pass_role["Resource"]) or "SageMakerExecutionRole" in json.dumps(pass_role)
    assert template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": synthesis.configs[environment].account}
    }


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_approval_decisions_notify_the_topic(synthesis, cdk_template, environment):
    training = synthesis.configs[environment].training
    groups = sorted({*(p.model_package_group for p in training.pipelines), *training.registry.additional_groups})
    cdk_template(environment, "Training").has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {
                "ModelPackageGroupName": [f"mlops-{environment}-{group}" for group in groups],
                "ModelApprovalStatus": ["Approved", "Rejected"],
            },
        },
        "Targets": [Match.object_like({"Arn": Match.any_value(), "InputTransformer": Match.any_value()})],
    })


def configured_groups(synthesis, environment) -> list[str]:
    """Every pipeline's group and the registry's additional groups, prefixed."""
    training = synthesis.configs[environment].training
    groups = {p.model_package_group for p in training.pipelines} | set(training.registry.additional_groups)
    return sorted(f"mlops-{environment}-{group}" for group in groups)


def test_registry_shared_with_prod_only_where_configured(synthesis):
    staging_groups = resources(synthesis, "staging", "AWS::SageMaker::ModelPackageGroup").values()
    staging_names = sorted(g["Properties"]["ModelPackageGroupName"] for g in staging_groups)
    assert staging_names == configured_groups(synthesis, "staging")
    assert {"mlops-staging-example-classifier", "mlops-staging-example-gnn"} <= set(staging_names)
    for staging_group in staging_groups:
        policy = staging_group["Properties"]["ModelPackageGroupPolicy"]
        assert "arn:" in json.dumps(policy) and ":iam::333333333333:root" in json.dumps(policy)
    dev_groups = resources(synthesis, "dev", "AWS::SageMaker::ModelPackageGroup").values()
    dev_names = sorted(g["Properties"]["ModelPackageGroupName"] for g in dev_groups)
    assert dev_names == configured_groups(synthesis, "dev")
    assert "mlops-dev-example-classifier-candidates" in dev_names  # a group without a pipeline
    assert all("ModelPackageGroupPolicy" not in g["Properties"] for g in dev_groups)
    # prod's account can read the staging artifacts bucket's pipeline outputs and decrypt them
    foundation = json.dumps(synthesis.template("staging", "Foundation"))
    assert ":iam::333333333333:root" in foundation


def test_mlflow_where_enabled(synthesis, cdk_template):
    assert not resources(synthesis, "dev", "AWS::SageMaker::MlflowTrackingServer")
    for environment, size in (("staging", "Small"), ("prod", "Medium")):
        cdk_template(environment, "Training").has_resource_properties(
            "AWS::SageMaker::MlflowTrackingServer",
            {"TrackingServerName": f"mlops-{environment}-mlflow", "TrackingServerSize": size,
             "ArtifactStoreUri": Match.string_like_regexp(r"^s3://mlops-.*-artifacts-.*/mlflow$"),
             "AutomaticModelRegistration": False},
        )
        _, definition = pipeline_definition(synthesis, environment)
        assert "MLFLOW_TRACKING_URI" in definition["Steps"][1]["Arguments"]["Environment"]


def test_schedules_and_new_data_triggers(synthesis, cdk_template):
    assert not resources(synthesis, "dev", "AWS::Scheduler::Schedule")
    cdk_template("prod", "Training").has_resource_properties("AWS::Scheduler::Schedule", {
        "ScheduleExpression": "cron(0 3 ? * MON *)",
        "ScheduleExpressionTimezone": "UTC",
        "Target": {"Arn": Match.any_value(),
                   "RoleArn": Match.any_value(), "SageMakerPipelineParameters": Match.any_value(),
                   "RetryPolicy": Match.any_value()},
    })
    (schedule,) = resources(synthesis, "prod", "AWS::Scheduler::Schedule").values()
    assert ":pipeline/mlops-prod-example-classifier" in json.dumps(schedule["Properties"]["Target"]["Arn"])
    cdk_template("dev", "Training").has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["mlops-dev-raw-data-111111111111-eu-west-1"]},
                       "object": {"key": [{"wildcard": "example-classifier/*_SUCCESS"}]}},
        },
    })
    assert not [r for r in resources(synthesis, "prod", "AWS::Events::Rule").values()
                if "aws.s3" in json.dumps(r)]
