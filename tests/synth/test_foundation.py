"""Foundation stack: encryption, TLS, public access, retention, role scope, network, tags."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture

from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()

# Logical ids of stateful resources. A refactor that changes one makes CloudFormation replace
# (and, for buckets and keys, orphan or delete) the resource: change them only on purpose.
PINNED_LOGICAL_IDS = {
    "AWS::KMS::Key": {"PlatformKey1C4A1A63"},
    "AWS::S3::Bucket": {
        "AccessLogsBucketCD784A59",
        "RawDataBucket46CFA8FB",
        "ArtifactsBucket88671897",
        "DataCaptureBucketA9343715",
        "FeedbackBucketC7CB8C59",
    },
}
DATA_BUCKETS = PINNED_LOGICAL_IDS["AWS::S3::Bucket"] - {"AccessLogsBucketCD784A59"}


def resources(synthesis, environment, type_):
    template = synthesis.template(environment, "Foundation")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_stateful_logical_ids_are_pinned(synthesis, environment):
    for type_, expected in PINNED_LOGICAL_IDS.items():
        assert set(resources(synthesis, environment, type_)) == expected, type_


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_key_rotates(cdk_template, environment):
    cdk_template(environment, "Foundation").has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "RotationPeriodInDays": 365}
    )


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_data_buckets_encrypted_with_the_platform_key(synthesis, environment):
    for logical_id, bucket in resources(synthesis, environment, "AWS::S3::Bucket").items():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        if logical_id in DATA_BUCKETS:
            assert rule["ServerSideEncryptionByDefault"] == {
                "KMSMasterKeyID": {"Fn::GetAtt": ["PlatformKey1C4A1A63", "Arn"]},
                "SSEAlgorithm": "aws:kms",
            }
            assert rule["BucketKeyEnabled"] is True
            logging = bucket["Properties"]["LoggingConfiguration"]
            assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucketCD784A59"}
            assert logging["LogFilePrefix"].endswith("/")
        else:  # server access logs cannot target SSE-KMS buckets
            assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_buckets_block_public_access_and_are_versioned(cdk_template, environment):
    template = cdk_template(environment, "Foundation")
    template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True,
                "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    )


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_bucket_is_tls_only(synthesis, environment):
    buckets = set(resources(synthesis, environment, "AWS::S3::Bucket"))
    denied = set()
    for policy in resources(synthesis, environment, "AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
                    and statement["Condition"] in ({"Bool": {"aws:SecureTransport": "false"}},
                                                   {"NumericLessThan": {"s3:TlsVersion": 1.2}})):
                denied.add(policy["Properties"]["Bucket"]["Ref"])
    assert denied == buckets


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_data_capture_expires_per_config(synthesis, environment):
    config = synthesis.configs[environment]
    bucket = resources(synthesis, environment, "AWS::S3::Bucket")["DataCaptureBucketA9343715"]
    rule = bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert rule["ExpirationInDays"] == config.storage.data_capture_expiry_days
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == config.storage.noncurrent_version_expiry_days


def test_retention_per_environment(synthesis):
    for environment, (policy, auto_delete) in {
        "dev": ("Delete", True), "staging": ("Retain", False), "prod": ("Retain", False)
    }.items():
        template = synthesis.template(environment, "Foundation")
        stateful = {k: v for k, v in template["Resources"].items()
                    if v["Type"] in ("AWS::S3::Bucket", "AWS::KMS::Key")}
        assert {v["DeletionPolicy"] for v in stateful.values()} == {policy}, environment
        has_auto_delete = any(v["Type"] == "Custom::S3AutoDeleteObjects" for v in template["Resources"].values())
        assert has_auto_delete is auto_delete, environment


def test_prod_stack_has_termination_protection(synthesis):
    manifest = json.loads((synthesis.outdir / "assembly-prod" / "manifest.json").read_text())
    stack = next(a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack")
    assert stack["properties"]["terminationProtection"] is True


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_sagemaker_role_trust_is_scoped_to_the_account(cdk_template, synthesis, environment):
    account = synthesis.configs[environment].account
    cdk_template(environment, "Foundation").has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": f"mlops-{environment}-sagemaker-execution",
            "AssumeRolePolicyDocument": {
                "Statement": [{
                    "Action": "sts:AssumeRole", "Effect": "Allow",
                    "Principal": {"Service": "sagemaker.amazonaws.com"},
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                }],
            },
        },
    )


def _role_statements(synthesis, environment):
    template = synthesis.template(environment, "Foundation")
    role_id = next(k for k, v in template["Resources"].items()
                   if v["Type"] == "AWS::IAM::Role"
                   and v["Properties"].get("RoleName", "").endswith("sagemaker-execution"))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            yield from resource["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_sagemaker_role_has_no_admin_wildcards(synthesis, environment):
    statements = list(_role_statements(synthesis, environment))
    assert statements
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), actions
        if statement["Resource"] == "*":
            # only APIs without resource-level permissions, and PutMetricData by namespace
            assert all(a.startswith("ec2:Describe") or a == "cloudwatch:PutMetricData" for a in actions), actions
            if "cloudwatch:PutMetricData" in actions:
                assert "cloudwatch:namespace" in json.dumps(statement["Condition"])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_sagemaker_role_can_read_raw_data_and_write_artifacts(synthesis, environment):
    by_bucket: dict[str, set] = {}
    for statement in _role_statements(synthesis, environment):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
            text = json.dumps(resource)
            for bucket in DATA_BUCKETS:
                if bucket in text:
                    by_bucket.setdefault(bucket, set()).update(actions)
    assert "s3:GetObject*" in by_bucket["RawDataBucket46CFA8FB"]
    assert "s3:PutObject" not in by_bucket["RawDataBucket46CFA8FB"]
    assert {"s3:GetObject*", "s3:PutObject"} <= by_bucket["ArtifactsBucket88671897"]


def test_vpc_only_where_configured(synthesis, cdk_template):
    assert not resources(synthesis, "dev", "AWS::EC2::VPC")
    for environment in ("staging", "prod"):
        template = cdk_template(environment, "Foundation")
        template.resource_count_is("AWS::EC2::VPC", 1)
        template.resource_count_is("AWS::EC2::InternetGateway", 0)
        template.resource_count_is("AWS::EC2::NatGateway", 0)
        services = Capture()
        template.has_resource_properties(
            "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "ServiceName": services,
                                      "PrivateDnsEnabled": True}
        )
        names = {
            json.dumps(endpoint["Properties"]["ServiceName"])
            for endpoint in resources(synthesis, environment, "AWS::EC2::VPCEndpoint").values()
        }
        for service in ("sagemaker.api", "sagemaker.runtime", "sts", "logs", "ecr.api", "ecr.dkr", "monitoring", "s3"):
            assert any(f".{service}" in name for name in names), service
        # staging and prod track with managed MLflow: its endpoint is the jobs' only way to it
        assert synthesis.configs[environment].training.experiment_tracking.backend.value == "mlflow"
        assert any(".experiments" in name for name in names)
        template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
        template.has_resource_properties(
            "AWS::Logs::LogGroup", {"KmsKeyId": {"Fn::GetAtt": ["PlatformKey1C4A1A63", "Arn"]}}
        )


def test_prod_spans_configured_zones(synthesis):
    subnets = resources(synthesis, "prod", "AWS::EC2::Subnet").values()
    assert {s["Properties"]["AvailabilityZone"] for s in subnets} == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_resources_carry_cost_allocation_tags(synthesis, environment):
    config = synthesis.configs[environment]
    for logical_id in PINNED_LOGICAL_IDS["AWS::S3::Bucket"] | PINNED_LOGICAL_IDS["AWS::KMS::Key"]:
        resource = synthesis.template(environment, "Foundation")["Resources"][logical_id]
        tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
        assert tags["environment"] == environment
        assert tags["project"] == config.tags.project
        assert tags["cost-centre"] == config.tags.cost_centre


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_monthly_budget_alerts_the_notifications_topic(synthesis, environment):
    config = synthesis.configs[environment].budget
    (budget,) = resources(synthesis, environment, "AWS::Budgets::Budget").values()
    data = budget["Properties"]["Budget"]
    assert data["BudgetName"] == f"mlops-{environment}-monthly" and data["TimeUnit"] == "MONTHLY"
    assert data["BudgetLimit"] == {"Amount": config.monthly_limit_usd, "Unit": "USD"}
    assert data["CostFilters"] == {"TagKeyValue": [f"user:environment${environment}"]}
    alerts = budget["Properties"]["NotificationsWithSubscribers"]
    actual = sorted(a["Notification"]["Threshold"] for a in alerts if a["Notification"]["NotificationType"] == "ACTUAL")
    assert actual == list(config.alert_at_percent)
    assert any(a["Notification"]["NotificationType"] == "FORECASTED" for a in alerts)
    topic_id = next(k for k, v in synthesis.template(environment, "Foundation")["Resources"].items()
                    if v["Type"] == "AWS::SNS::Topic")
    assert all(a["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic_id}}] for a in alerts)
