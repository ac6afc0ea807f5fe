"""Promotion staging -> prod in the templates (issue 15, defect 7): staging forwards its approvals to
prod's bus and shares its groups, artifacts and key; prod's promotion function registers them."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

pytestmark = pytest.mark.synth

STAGING, PROD = "222222222222", "333333333333"
GROUP = "example-classifier"


def resources(synthesis, environment, stack, type_):
    template = synthesis.template(environment, stack)
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def promotion_function(synthesis) -> dict:
    (function,) = [f["Properties"] for f in resources(synthesis, "prod", "Training", "AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "mlops_runtime.handlers.model_promotion.handler"]
    return function


def test_prod_registers_what_staging_approves(synthesis):
    from settings_support import deployed_settings

    setting = deployed_settings(promotion_function(synthesis))
    assert setting.source_account == STAGING
    training = synthesis.configs["prod"].training
    groups = {p.model_package_group for p in training.pipelines} | set(training.registry.additional_groups)
    assert setting.groups == {f"mlops-staging-{group}": f"mlops-prod-{group}" for group in groups}
    assert {f"mlops-staging-{GROUP}", "mlops-staging-example-gnn"} <= set(setting.groups)
    [rule] = [r["Properties"] for r in resources(synthesis, "prod", "Training", "AWS::Events::Rule").values()
              if "OnSourceApproval" in json.dumps(r["Properties"]["Targets"]) or
              r["Properties"].get("Description", "").startswith("A package approved in mlops-staging")]
    assert rule["EventPattern"]["detail"] == {"ModelPackageGroupName": sorted(setting.groups),
                                              "ModelApprovalStatus": ["Approved"]}
    [bus_policy] = resources(synthesis, "prod", "Training", "AWS::Events::EventBusPolicy").values()
    statement = bus_policy["Properties"]["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{STAGING}:root"} and statement["Action"] == "events:PutEvents"


def test_prod_endpoints_may_read_and_decrypt_the_staging_artifacts(synthesis):
    statements = [s for p in resources(synthesis, "prod", "Training", "AWS::IAM::ManagedPolicy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    read = next(s for s in statements if s.get("Sid") == "ReadPromotedArtifacts")
    assert read["Resource"] == f"arn:aws:s3:::mlops-staging-artifacts-{STAGING}-eu-west-1/pipelines/*"
    decrypt = next(s for s in statements if s.get("Sid") == "DecryptPromotedArtifacts")
    assert decrypt["Resource"] == f"arn:aws:kms:eu-west-1:{STAGING}:key/*"
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_staging_forwards_its_approvals_and_shares_its_groups_with_prod(synthesis):
    rules = [r["Properties"] for r in resources(synthesis, "staging", "Training", "AWS::Events::Rule").values()]
    [forward] = [r for r in rules if any(t["Arn"] == f"arn:aws:events:eu-west-1:{PROD}:event-bus/default"
                                         for t in r["Targets"])]
    assert forward["EventPattern"]["detail"]["ModelApprovalStatus"] == ["Approved"]
    [group] = [g["Properties"] for g in resources(synthesis, "staging", "Training",
                                                   "AWS::SageMaker::ModelPackageGroup").values()
               if g["Properties"]["ModelPackageGroupName"] == f"mlops-staging-{GROUP}"]
    [statement] = group["ModelPackageGroupPolicy"]["Statement"]
    assert f":iam::{PROD}:root" in json.dumps(statement["Principal"])
    assert "sagemaker:DescribeModelPackage" in statement["Action"]


def test_one_account_for_every_environment_needs_no_forwarding_nor_bus_policy():
    """The approval is already on the account's bus: the promotion rule reads it there."""
    from mlops_platform.constructs.model_promotion import ModelPromotion, ModelPromotionProps
    from mlops_platform.constructs.platform_function import PlatformFunctionProps

    from aws_cdk import RemovalPolicy

    stack = Stack(App(), "OneAccount", env=Environment(account=STAGING, region="eu-west-1"))
    role = iam.Role(stack, "Execution", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    groups = {f"mlops-staging-{GROUP}": f"mlops-prod-{GROUP}"}
    ModelPromotion(stack, "Promotion", ModelPromotionProps(
        function=PlatformFunctionProps(function_name="p", handler="mlops_runtime.handlers.model_promotion.handler",
                                       description="d", key=kms.Key(stack, "Key"), log_retention_days=30,
                                       removal_policy=RemovalPolicy.DESTROY,
                                       environment={}),
        source_account=STAGING, source_name_prefix="mlops-staging", groups=groups,
        source_artifacts_bucket=f"mlops-staging-artifacts-{STAGING}-eu-west-1", execution_role=role))
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::Events::EventBusPolicy", 0)
    template.resource_count_is("AWS::Events::Rule", 1)
