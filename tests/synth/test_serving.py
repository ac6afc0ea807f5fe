"""Serving stack: endpoint specs for the deployer, guardrail alarms, approval routing, scoped deployer."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match
from settings_support import deployed_settings

from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()


def resources(synthesis, environment, type_):
    template = synthesis.template(environment, "Serving")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def deployer(synthesis, environment) -> dict:
    (function,) = [f for f in resources(synthesis, environment, "AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "mlops_runtime.handlers.deployer.handler"]
    return function["Properties"]


def endpoint_specs(synthesis, environment) -> list[dict]:
    """The deployer's endpoint specs as it reads them (its settings model), unset fields left out."""
    return [spec.to_dict() for spec in deployed_settings(deployer(synthesis, environment)).endpoints]


def classifier_spec(synthesis, environment) -> dict:
    (spec,) = [s for s in endpoint_specs(synthesis, environment) if s["name"] == f"mlops-{environment}-example-classifier"]
    return spec


def test_dev_endpoints_are_serverless_without_capture(synthesis):
    examples = ["mlops-dev-example-classifier", "mlops-dev-example-classifier-candidate"]
    specs = [spec for spec in endpoint_specs(synthesis, "dev") if spec["name"] in examples]
    assert [spec["name"] for spec in specs] == examples
    assert [spec["model_package_group"] for spec in specs] == [
        "mlops-dev-example-classifier", "mlops-dev-example-classifier-candidates"]
    for spec in specs:
        assert spec["variants"]["champion"] == {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}
        assert "data_capture" not in spec and spec["challenger_initial_weight"] == 0
        assert spec["guardrails"]["mode"] == "ALL_AT_ONCE"


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_realtime_endpoints_capture_data_with_the_key(synthesis, environment):
    spec = classifier_spec(synthesis, environment)
    account = synthesis.configs[environment].account
    capture = spec["data_capture"]
    assert capture["enabled"] is True
    assert capture["destination_s3_uri"] == f"s3://mlops-{environment}-data-capture-{account}-eu-west-1/capture"
    assert capture["kms_key_arn"] == f"arn:aws:kms:eu-west-1:{account}:alias/mlops-{environment}"
    assert spec["kms_key_arn"] == capture["kms_key_arn"]
    assert spec["execution_role_arn"] == f"arn:aws:iam::{account}:role/mlops-{environment}-sagemaker-execution"
    assert spec["variants"]["champion"]["kind"] == "realtime"
    assert spec["vpc"]["subnet_ids"] and spec["vpc"]["security_group_ids"]


def test_guardrails_follow_config(synthesis):
    staging = classifier_spec(synthesis, "staging")
    assert staging["guardrails"]["mode"] == "CANARY" and staging["guardrails"]["canary_size_percent"] == 50
    assert staging["challenger_initial_weight"] == 0.2
    prod = classifier_spec(synthesis, "prod")
    assert prod["guardrails"]["mode"] == "LINEAR" and prod["guardrails"]["linear_step_percent"] == 50
    assert sorted(prod["guardrails"]["alarm_names"]) == sorted(
        f"mlops-prod-example-classifier-{variant}-{kind}"
        for variant in ("champion", "challenger") for kind in ("5xx-rate", "p99-latency"))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_deployer_gets_one_spec_per_configured_endpoint(synthesis, environment):
    expected = [f"mlops-{environment}-{e.name}" for e in synthesis.configs[environment].serving.endpoints]
    assert [spec["name"] for spec in endpoint_specs(synthesis, environment)] == expected and expected


def test_rollback_alarms_per_variant(cdk_template, synthesis):
    template = cdk_template("prod", "Serving")
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "mlops-prod-example-classifier-champion-p99-latency",
        "MetricName": "ModelLatency", "Namespace": "AWS/SageMaker", "ExtendedStatistic": "p99",
        "Threshold": 500_000,  # 500 ms in microseconds
        "Dimensions": Match.array_with([{"Name": "VariantName", "Value": "champion"}]),
        "AlarmActions": Match.any_value(),
    })
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": "mlops-prod-example-classifier-challenger-5xx-rate",
        "Threshold": 0.5, "ComparisonOperator": "GreaterThanThreshold",
        "Metrics": Match.array_with([Match.object_like({"Expression": "IF(invocations > 0, 100 * errors / invocations, 0)"})]),
    })
    endpoints = len(synthesis.configs["prod"].serving.endpoints)
    assert len(resources(synthesis, "prod", "AWS::CloudWatch::Alarm")) == 4 * endpoints


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_approvals_reach_the_deployer_through_an_encrypted_queue(synthesis, cdk_template, environment):
    template = cdk_template(environment, "Serving")
    groups = sorted({f"mlops-{environment}-{e.model_package_group}" for e in synthesis.configs[environment].serving.endpoints})
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                         "detail": {"ModelPackageGroupName": groups,
                                    "ModelApprovalStatus": ["Approved"]}},
    })
    template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": Match.any_value(), "VisibilityTimeout": 720,
        "RedrivePolicy": {"deadLetterTargetArn": Match.any_value(), "maxReceiveCount": 15},
    })
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": 1, "FunctionResponseTypes": ["ReportBatchItemFailures"],
    })


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_queue_fed_function_reports_its_failed_records_only(synthesis, environment):
    """The handlers answer SQS batches with ``batchItemFailures`` (Powertools BatchProcessor); without
    ReportBatchItemFailures on the mapping, Lambda would ignore it and delete the failed records."""
    mappings = {(stack, logical_id): resource["Properties"]
                for stack, template in synthesis.templates[environment].items()
                for logical_id, resource in template["Resources"].items()
                if resource["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert any(stack == "Serving" for stack, _ in mappings)  # the deployer's approval queue
    for where, mapping in mappings.items():
        assert mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], where


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_decided_experiments_reach_the_deployer_through_the_same_queue(synthesis, cdk_template, environment):
    template = cdk_template(environment, "Serving").to_json()
    rules = {rule["Properties"]["EventPattern"]["detail-type"][0]: rule["Properties"]
             for rule in template["Resources"].values() if rule["Type"] == "AWS::Events::Rule"
             and "detail-type" in rule["Properties"].get("EventPattern", {})}
    decided, approved = rules["Experiment Decided"], rules["SageMaker Model Package State Change"]
    endpoints = sorted(f"mlops-{environment}-{e.name}" for e in synthesis.configs[environment].serving.endpoints)
    assert decided["EventPattern"] == {"source": ["mlops.experiments"], "detail-type": ["Experiment Decided"],
                                       "detail": {"endpoint_name": endpoints}}
    assert [t["Arn"] for t in decided["Targets"]] == [t["Arn"] for t in approved["Targets"]]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_idempotency_table(cdk_template, environment):
    cdk_template(environment, "Serving").has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    })


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_deployer_permissions_are_scoped_to_the_environment(synthesis, environment):
    statements = [s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    manage = next(s for s in statements if s.get("Sid") == "ManageEndpointsOfThisEnvironment")
    assert all(f":endpoint/mlops-{environment}-*" in json.dumps(manage["Resource"]) or
               f"/mlops-{environment}-*" in r for r in manage["Resource"])
    assert "sagemaker:DeleteEndpoint" not in manage["Action"]
    passing = next(s for s in statements if s.get("Sid") == "PassExecutionRoleToSageMaker")
    assert passing["Resource"].endswith(f":role/mlops-{environment}-sagemaker-execution")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    # "*" only for APIs without resource-level permissions: X-Ray, VPC ENIs when in a VPC, and
    # List/Describe calls of the teardown and the scaling code
    unscoped = {a for s in statements if s.get("Resource") == "*"
                for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert unscoped <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
                        "sagemaker:ListEndpoints", "sagemaker:ListEndpointConfigs", "sagemaker:ListModels",
                        "application-autoscaling:DescribeScalableTargets",
                        "application-autoscaling:DescribeScalingPolicies", "cloudwatch:DescribeAlarms"}, unscoped


def test_endpoints_may_write_capture_and_async_results(synthesis):
    (policy,) = resources(synthesis, "staging", "AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["s3:AbortMultipartUpload", "s3:PutObject"] or set(statement["Action"]) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert any(r.endswith("/capture/*") for r in statement["Resource"])


def test_custom_container_from_a_dockerfile(synthesis):
    """Prod's GNN endpoint (`container.dockerfile_dir`) gets an image asset, the image in its spec and
    ECR pull rights for the execution role (the session synthesis is nag-checked: test_compliance)."""
    template = synthesis.template("prod", "Serving")
    (assets_file,) = (synthesis.outdir / "assembly-prod").glob("prodServing*.assets.json")
    (image,) = json.loads(assets_file.read_text())["dockerImages"].values()
    assert image["displayName"] == "ExampleGnnImage" and "asset." in image["source"]["directory"]
    statements = [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    pull = next(s for s in statements if s.get("Sid") == "PullCustomServingImages")
    assert "ecr:BatchGetImage" in pull["Action"] and "cdk-hnb659fds-container-assets" in json.dumps(pull["Resource"])
    deployer_env = next(r["Properties"]["Environment"]["Variables"] for r in template["Resources"].values()
                        if r["Type"] == "AWS::Lambda::Function"
                        and r["Properties"]["Handler"] == "mlops_runtime.handlers.deployer.handler")
    assert "image_uri" in json.dumps(deployer_env["MLOPS_SETTINGS"])


def test_the_gnn_endpoint_states_its_gpu_layout_and_the_deployer_passes_it_on(synthesis):
    """prod serves the GNN on ml.g5.12xlarge, one worker per GPU: the spec carries the layout, and the
    model the deployer would create tells the container to run four workers on devices 0-3."""
    from datetime import UTC, datetime

    from mlops_runtime.domain.deployment import ApprovedPackage, EndpointSpec, PackageContainer, plan_deployment

    (gnn,) = [s for s in endpoint_specs(synthesis, "prod") if s["name"] == "mlops-prod-example-gnn"]
    assert gnn["variants"]["champion"]["instance_type"] == "ml.g5.12xlarge"
    assert gnn["gpu_layout"] == {"layout": "worker_per_gpu", "model_memory_gib": 2.0}
    group = gnn["model_package_group"]
    package = ApprovedPackage(
        arn=f"arn:aws:sagemaker:eu-west-1:333333333333:model-package/{group}/1", group=group, version=1,
        containers=(PackageContainer(image="763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-cpu",
                                     model_data_url="s3://artifacts/gnn/1/model.tar.gz"),),
        approval_status="Approved")
    plan = plan_deployment(None, package, EndpointSpec.from_dict(gnn), datetime(2026, 12, 5, tzinfo=UTC))
    environment = plan.call("CreateModel").params["PrimaryContainer"]["Environment"]
    assert {k: environment[k] for k in ("SAGEMAKER_MODEL_SERVER_WORKERS", "MLOPS_GPU_LAYOUT", "MLOPS_GPU_DEVICES")} \
        == {"SAGEMAKER_MODEL_SERVER_WORKERS": "4", "MLOPS_GPU_LAYOUT": "worker_per_gpu", "MLOPS_GPU_DEVICES": "0,1,2,3"}
    assert "classifier" not in json.dumps(gnn) and classifier_spec(synthesis, "prod").get("gpu_layout") is None


def test_autoscaling_registered_when_endpoints_are_in_service(synthesis, cdk_template):
    assert not [f for f in resources(synthesis, "dev", "AWS::Lambda::Function").values()
                if f["Properties"]["Handler"].endswith("endpoint_scaler.handler")]  # serverless: nothing to scale
    for environment, (low, high, target) in {"staging": (2, 4, 200), "prod": (2, 8, 300)}.items():
        (scaler,) = [f["Properties"] for f in resources(synthesis, environment, "AWS::Lambda::Function").values()
                     if f["Properties"]["Handler"] == "mlops_runtime.handlers.endpoint_scaler.handler"]
        scaling = deployed_settings(scaler).model_dump(mode="json")["endpoints"]
        assert scaling == {f"mlops-{environment}-example-classifier": {
            "kind": "realtime", "min_instances": low, "max_instances": high,
            "target_invocations_per_instance": target, "scale_in_cooldown_s": 300, "scale_out_cooldown_s": 60}}
        cdk_template(environment, "Serving").has_resource_properties("AWS::Events::Rule", {
            "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"],
                             "detail": {"EndpointStatus": ["IN_SERVICE"],
                                        "EndpointName": [f"mlops-{environment}-example-classifier"]}},
        })
        statements = [s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
                      for s in p["Properties"]["PolicyDocument"]["Statement"]]
        change = next(s for s in statements if s.get("Sid") == "ChangeVariantScaling"
                      and "application-autoscaling:RegisterScalableTarget" in s["Action"])
        assert change["Condition"]["StringEquals"]["application-autoscaling:service-namespace"] == "sagemaker"


@pytest.mark.parametrize("environment,delete", [("dev", "true"), ("staging", "false"), ("prod", "false")])
def test_teardown_deletes_endpoints_only_where_data_is_disposable(synthesis, environment, delete):
    template = synthesis.template(environment, "Serving")
    (teardown_id, teardown) = next((k, v) for k, v in template["Resources"].items()
                                   if v["Type"] == "Custom::EndpointTeardown")
    assert teardown["Properties"]["DeleteOnDestroy"] == delete
    assert teardown["Properties"]["Environment"] == environment
    from mlops_runtime.settings.endpoint_teardown import TeardownSettings  # what the handler reads the properties as

    settings, unknown = TeardownSettings.from_properties(teardown["Properties"])
    assert unknown == [] and settings.delete_on_destroy is (delete == "true")
    (rule,) = [v for v in template["Resources"].values() if v["Type"] == "AWS::Events::Rule"
               and "Model Package State Change" in json.dumps(v["Properties"]["EventPattern"])]
    assert teardown_id in rule["DependsOn"]  # on destroy: deployments stop before endpoints go
    statements = [s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    delete_statement = next(s for s in statements if s.get("Sid") == "DeleteOnlyWhatTheDeployerMadeHere")
    assert delete_statement["Condition"]["StringEquals"] == {
        "aws:ResourceTag/mlops:managed-by": "endpoint-deployer", "aws:ResourceTag/mlops:environment": environment}
