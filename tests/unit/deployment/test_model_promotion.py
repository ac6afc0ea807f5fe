"""Promotion staging -> prod (issue 15, defect 7): a package approved in staging's registry is
registered in prod's, pointing at the same artifacts, and waits there for prod's manual approval.

Before, no path existed: the promotion was only described in the docs and prod trained its own
models. Both registries are real (moto), in two accounts; the event is AWS's documented sample with
staging's names put in."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from lambda_context import LambdaContext
from settings_support import set_settings

from mlops_runtime.domain import registry_promotion as promotion

REGION = "eu-west-1"
STAGING_ACCOUNT = "222222222222"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
MODEL = "s3://mlops-staging-artifacts-222222222222-eu-west-1/pipelines/example-classifier/exec-1/Train/model.tar.gz"
EVALUATION = "s3://mlops-staging-artifacts-222222222222-eu-west-1/pipelines/example-classifier/exec-1/Evaluate/evaluation.json"
BASELINE = "s3://mlops-staging-artifacts-222222222222-eu-west-1/pipelines/example-classifier/exec-1/Preprocess/baseline/baseline.json"
SOURCE_GROUP, TARGET_GROUP = "mlops-staging-example-classifier", "mlops-prod-example-classifier"
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "events" / "sagemaker-model-package-state-change.json"
PROMOTION = {"source_account": STAGING_ACCOUNT, "groups": {SOURCE_GROUP: TARGET_GROUP}}


def approval_event(arn: str, status: str = "Approved", account: str = STAGING_ACCOUNT) -> dict:
    event = copy.deepcopy(json.loads(SAMPLE.read_text())["event"])
    event.update(account=account, region=REGION, resources=[arn])
    event["detail"].update(ModelPackageGroupName=SOURCE_GROUP, ModelPackageArn=arn, ModelPackageVersion=1,
                           ModelApprovalStatus=status)
    return event


@pytest.fixture
def registries(monkeypatch):
    set_settings(monkeypatch, **PROMOTION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        credentials = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=f"arn:aws:iam::{STAGING_ACCOUNT}:role/staging-admin", RoleSessionName="staging")["Credentials"]
        staging = boto3.client("sagemaker", region_name=REGION, aws_access_key_id=credentials["AccessKeyId"],
                               aws_secret_access_key=credentials["SecretAccessKey"],
                               aws_session_token=credentials["SessionToken"])
        prod = boto3.client("sagemaker", region_name=REGION)
        staging.create_model_package_group(ModelPackageGroupName=SOURCE_GROUP)
        prod.create_model_package_group(ModelPackageGroupName=TARGET_GROUP)
        source = staging.create_model_package(
            ModelPackageGroupName=SOURCE_GROUP, ModelApprovalStatus="PendingManualApproval",
            ModelPackageDescription="Registered by pipeline mlops-staging-example-classifier",
            InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
                                    "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": EVALUATION}},
                          "ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": BASELINE}}},
            CustomerMetadataProperties={"production-records": "27"},
        )["ModelPackageArn"]
        from mlops_runtime.adapters.model_registry import ModelRegistry
        from mlops_runtime.handlers import model_promotion

        model_promotion.configure(ModelRegistry(prod, source=ModelRegistry(staging)))
        yield {"staging": staging, "prod": prod, "source": source}
        model_promotion.configure()


def promote(event: dict) -> dict:
    from mlops_runtime.handlers import model_promotion

    return model_promotion.handler(event, LambdaContext())


def test_approval_in_staging_registers_the_package_in_prod_pending_approval(registries):
    staging, prod, source = registries["staging"], registries["prod"], registries["source"]
    staging.update_model_package(ModelPackageArn=source, ModelApprovalStatus="Approved")  # the staging approval
    result = promote(approval_event(source))
    assert result["status"] == "promoted" and result["source"] == source

    [summary] = prod.list_model_packages(ModelPackageGroupName=TARGET_GROUP)["ModelPackageSummaryList"]
    assert summary["ModelPackageArn"] == result["target"]
    package = prod.describe_model_package(ModelPackageName=result["target"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"  # prod's own approval deploys it
    [container] = package["InferenceSpecification"]["Containers"]
    assert (container["Image"], container["ModelDataUrl"]) == (IMAGE, MODEL)  # the same artifacts
    assert package["ModelMetrics"]["ModelDataQuality"]["Statistics"]["S3Uri"] == BASELINE  # prod monitoring's baseline
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == EVALUATION
    assert package["CustomerMetadataProperties"]["promoted-from"] == source


def test_other_statuses_groups_and_accounts_are_not_promoted(registries):
    prod, source = registries["prod"], registries["source"]
    assert promote(approval_event(source, status="Rejected"))["status"] == "ignored"
    assert "account 999999999999" in promote(approval_event(source, account="999999999999"))["reason"]
    other = approval_event(source)
    other["detail"]["ModelPackageGroupName"] = "mlops-staging-something-else"
    assert promote(other)["status"] == "ignored"
    assert prod.list_model_packages(ModelPackageGroupName=TARGET_GROUP)["ModelPackageSummaryList"] == []


def test_a_redelivered_approval_sends_the_same_client_token():
    source = {"ModelPackageArn": "arn:aws:sagemaker:eu-west-1:222222222222:model-package/g/3",
              "InferenceSpecification": {"Containers": [{"Image": IMAGE}]}, "ModelApprovalStatus": "Approved",
              "ModelPackageStatus": "Completed"}
    first, again = promotion.promotion_request(source, "t"), promotion.promotion_request(dict(source), "t")
    assert first["ClientToken"] == again["ClientToken"] and len(first["ClientToken"]) <= 36
    assert set(first) == {"InferenceSpecification", "ModelPackageGroupName", "ModelApprovalStatus",
                          "CustomerMetadataProperties", "ClientToken"}  # nothing describe-only is sent back
    kept = promotion.promotion_request({**source, "CustomerMetadataProperties": {"production-records": "27"}}, "t")
    assert kept["CustomerMetadataProperties"] == {"production-records": "27", "promoted-from": source["ModelPackageArn"]}
    with pytest.raises(ValueError, match="InferenceSpecification"):
        promotion.promotion_request({"ModelPackageArn": "arn:x"}, "t")


@pytest.mark.parametrize("raw", [None, "[]", json.dumps({"source_account": "12", "groups": {}}),
                                 json.dumps({"source_account": STAGING_ACCOUNT, "groups": {"a": "b c"}})])
def test_bad_promotion_setting_is_an_error_result(monkeypatch, raw):
    from mlops_runtime.handlers import model_promotion
    from mlops_runtime.settings.base import SETTINGS_ENV

    if raw is None:
        monkeypatch.delenv(SETTINGS_ENV, raising=False)
    else:
        monkeypatch.setenv(SETTINGS_ENV, raw)
    model_promotion.configure()  # a cold start: the settings are read on the next invocation
    result = model_promotion.handler(approval_event("arn:aws:sagemaker:eu-west-1:222222222222:model-package/g/1"),
                                     LambdaContext())
    assert result["status"] == "error" and SETTINGS_ENV in result["reason"]
