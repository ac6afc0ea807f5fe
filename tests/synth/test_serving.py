"""Serving stack: endpoint specs for the deployer, guardrail alarms, approval routing, scoped deployer."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

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
    raw = deployer(synthesis, environment)["Environment"]["Variables"]["ENDPOINTS"]
    if isinstance(raw, dict):  # tokens (VPC ids) make it an Fn::Join
        raw = "".join(p if isinstance(p, str) else '"TOKEN"' for p in raw["Fn::Join"][1]).replace('""TOKEN""', '"TOKEN"')
    return json.loads(raw)


def test_dev_endpoint_is_serverless_without_capture(synthesis):
    (spec,) = endpoint_specs(synthesis, "dev")
    assert spec["name"] == "mlops-dev-example-classifier"
    assert spec["variants"]["champion"] == {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}
    assert "data_capture" not in spec and spec["challenger_initial_weight"] == 0
    assert spec["guardrails"]["mode"] == "ALL_AT_ONCE"


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_realtime_endpoints_capture_data_with_the_key(synthesis, environment):
    (spec,) = endpoint_specs(synthesis, environment)
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
    (staging,) = endpoint_specs(synthesis, "staging")
    assert staging["guardrails"]["mode"] == "CANARY" and staging["guardrails"]["canary_size_percent"] == 50
    assert staging["challenger_initial_weight"] == 0.2
    (prod,) = endpoint_specs(synthesis, "prod")
    assert prod["guardrails"]["mode"] == "LINEAR" and prod["guardrails"]["linear_step_percent"] == 50
    assert sorted(prod["guardrails"]["alarm_names"]) == sorted(
        f"mlops-prod-example-classifier-{variant}-{kind}"
        for variant in ("champion", "challenger") for kind in ("5xx-rate", "p99-latency"))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_specs_parse_with_the_deployers_own_parser(synthesis, environment):
    from mlops_runtime.domain.deployment import parse_endpoint_specs

    specs = endpoint_specs(synthesis, environment)
    for spec in specs:
        if "vpc" in spec:
            spec["vpc"] = {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-0123456789abcdef0"]}
    assert [s.name for s in parse_endpoint_specs(specs)] == [f"mlops-{environment}-example-classifier"]


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
    assert len(resources(synthesis, "prod", "AWS::CloudWatch::Alarm")) == 4


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_approvals_reach_the_deployer_through_an_encrypted_queue(cdk_template, environment):
    template = cdk_template(environment, "Serving")
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                         "detail": {"ModelPackageGroupName": [f"mlops-{environment}-example-classifier"],
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
    # "*" only for APIs without resource-level permissions: X-Ray, and VPC ENIs when in a VPC
    unscoped = {a for s in statements if s.get("Resource") == "*"
                for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert unscoped <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}, unscoped


def test_endpoints_may_write_capture_and_async_results(synthesis):
    (policy,) = resources(synthesis, "staging", "AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["s3:AbortMultipartUpload", "s3:PutObject"] or set(statement["Action"]) == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert any(r.endswith("/capture/*") for r in statement["Resource"])
