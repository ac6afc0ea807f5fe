"""Feature Store stack: groups with KMS, Iceberg offline store, TTL, scoped ingestion Lambda."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from mlops_platform.config.loader import environment_names
from mlops_runtime.settings.base import SETTINGS_ENV

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()
KEY = {"Fn::ImportValue": Match.string_like_regexp("PlatformKey")}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_feature_group_from_config(cdk_template, synthesis, environment):
    group = synthesis.configs[environment].feature_store.feature_groups[0]
    online = {"EnableOnlineStore": True, "StorageType": "Standard", "SecurityConfig": {"KmsKeyId": KEY}}
    if group.online_ttl_days:
        online["TtlDuration"] = {"Unit": "Days", "Value": group.online_ttl_days}
    cdk_template(environment, "FeatureStore").has_resource_properties("AWS::SageMaker::FeatureGroup", {
        "FeatureGroupName": f"mlops-{environment}-customers",
        "RecordIdentifierFeatureName": "customer_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [{"FeatureName": f.name, "FeatureType": f.type.value} for f in group.features],
        "OnlineStoreConfig": online,
        "OfflineStoreConfig": {
            "S3StorageConfig": {"S3Uri": f"s3://mlops-{environment}-raw-data-{synthesis.configs[environment].account}-eu-west-1/feature-store",
                                "KmsKeyId": KEY},
            "DisableGlueTableCreation": False,
            "TableFormat": "Iceberg",
        },
        "ThroughputConfig": {"ThroughputMode": "OnDemand"},
    })


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_ingest_function_may_only_put_records_into_its_group(synthesis, environment):
    template = synthesis.template(environment, "FeatureStore")
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == len(synthesis.configs[environment].feature_store.feature_groups)  # one per group
    assert all(f["Properties"]["Handler"] == "mlops_runtime.handlers.feature_ingest.handler" for f in functions)
    ((props, schema),) = [(f["Properties"], settings) for f in functions
                       for settings in [json.loads(f["Properties"]["Environment"]["Variables"][SETTINGS_ENV])]
                       if settings["name"] == f"mlops-{environment}-customers"]
    assert schema["name"] == f"mlops-{environment}-customers" and schema["record_identifier"] == "customer_id"
    assert props["ReservedConcurrentExecutions"] > 0 and props["TracingConfig"] == {"Mode": "Active"}
    assert "017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64" in json.dumps(props["Layers"])
    assert "VpcConfig" not in props  # AWS APIs only: the isolated VPC has no route to Feature Store
    statements = [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]]
    put = [s for s in statements if s["Action"] == "sagemaker:PutRecord"]
    assert len(put) == len(functions) and all(len(json.dumps(s["Resource"]).split("feature-group/")) == 2 for s in put)
    assert any(f"feature-group/mlops-{environment}-customers" in json.dumps(s["Resource"]) for s in put)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_offline_store_role_limited_to_its_prefix(synthesis, environment):
    template = synthesis.template(environment, "FeatureStore")
    text = json.dumps([r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"])
    assert "/feature-store/*" in text
    assert "sagemaker_featurestore" in text
