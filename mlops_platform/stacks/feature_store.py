"""Feature Store: feature groups from config, their offline-store role, and ingestion Lambdas."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnTag, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from .. import function_settings
from ..compliance import (
    GRANT_READ_ACTIONS,
    GRANT_WRITE_ACTIONS,
    KMS_GRANT_ACTIONS,
    acknowledge_inline_policy,
    acknowledge_wildcards,
    objects_under,
    partition_arn,
)
from ..config import PlatformConfig
from ..config.models import FeatureGroupConfig
from ..constructs.naming import pascal
from ..constructs.roles import service_role
from ..constructs.platform_function import PlatformFunction
from .foundation import FoundationStack

OFFLINE_STORE_PREFIX = "feature-store"
GLUE_DATABASE = "sagemaker_featurestore"  # the database SageMaker creates its tables in


@dataclass(frozen=True)
class FeatureGroupResources:
    group: sagemaker.CfnFeatureGroup
    name: str
    arn: str
    ingest_function: PlatformFunction


class FeatureStoreStack(Stack):
    """One ``AWS::SageMaker::FeatureGroup`` per configured group, with a PutRecord Lambda each."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.groups: dict[str, FeatureGroupResources] = {}
        groups = config.feature_store.feature_groups
        if not groups:
            return
        self.raw_data_bucket = foundation.import_bucket(self, "raw-data")
        self.offline_store_role = self._offline_store_role(self.raw_data_bucket) \
            if any(g.offline for g in groups) else None
        for group in groups:
            self.groups[group.name] = self._feature_group(group)

    def group_name(self, group: FeatureGroupConfig) -> str:
        return function_settings.feature_group_name(self.config, group)

    def _feature_group(self, group: FeatureGroupConfig) -> FeatureGroupResources:
        name = self.group_name(group)
        key = self.foundation.key
        online = None
        if group.online:
            # The store configs are untyped JSON in CloudFormation: CloudFormation's own key names.
            online = {"EnableOnlineStore": True, "StorageType": group.online_storage_type}
            if group.online_storage_type == "Standard":  # InMemory stores take no customer key
                online["SecurityConfig"] = {"KmsKeyId": key.key_arn}
            if group.online_ttl_days:
                online["TtlDuration"] = {"Unit": "Days", "Value": group.online_ttl_days}
        offline = None
        if group.offline:
            offline = {
                "S3StorageConfig": {
                    "S3Uri": self.raw_data_bucket.s3_url_for_object(OFFLINE_STORE_PREFIX),
                    "KmsKeyId": key.key_arn,
                },
                "DisableGlueTableCreation": False,
                "TableFormat": "Iceberg",
            }
        cfn = sagemaker.CfnFeatureGroup(
            self, f"{pascal(group.name)}FeatureGroup",
            feature_group_name=name,
            description=group.description or f"Feature group {group.name}",
            record_identifier_feature_name=group.record_identifier,
            event_time_feature_name=group.event_time_feature,
            feature_definitions=[
                sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(feature_name=f.name, feature_type=f.type.value)
                for f in group.features
            ],
            online_store_config=online,
            offline_store_config=offline,
            role_arn=self.offline_store_role.role_arn if offline else None,
            throughput_config=sagemaker.CfnFeatureGroup.ThroughputConfigProperty(throughput_mode=group.throughput_mode),
            tags=[CfnTag(key="feature-group", value=group.name)],
        )
        if offline:
            cfn.node.add_dependency(self.offline_store_role)
        arn = self.format_arn(service="sagemaker", resource="feature-group", resource_name=name.lower())
        ingest = self._ingest_function(group, name, arn)
        return FeatureGroupResources(group=cfn, name=name, arn=arn, ingest_function=ingest)

    def _ingest_function(self, group: FeatureGroupConfig, name: str, arn: str) -> PlatformFunction:
        function = PlatformFunction(
            self, f"{pascal(group.name)}Ingest",
            self.foundation.function_props(
                function_name=f"{name}-ingest",
                handler="mlops_runtime.handlers.feature_ingest.handler",
                description=f"Validates records against feature group {name} and writes them with PutRecord",
                environment=function_settings.feature_ingest(self.config, group).to_env(),
                timeout=Duration.minutes(1),
            ),
        )
        function.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sagemaker:PutRecord"], resources=[arn])
        )
        # PutRecord into a KMS-encrypted online store needs the key.
        self.foundation.key.grant_encrypt_decrypt(function.role)
        acknowledge_wildcards(
            function.role.node.find_child("DefaultPolicy"), KMS_GRANT_ACTIONS,
            "CDK's key grant: data-key actions on the platform key only.",
        )
        return function

    def _offline_store_role(self, bucket: s3.IBucket) -> iam.Role:
        role = service_role(self, "OfflineStoreRole", "sagemaker.amazonaws.com",
                            "Lets Feature Store write offline-store files and their Glue table")
        bucket.grant_read_write(role, f"{OFFLINE_STORE_PREFIX}/*")  # and the platform key
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="OfflineStoreGlueTable",
                actions=["glue:GetDatabase", "glue:CreateDatabase", "glue:GetTable", "glue:CreateTable",
                         "glue:UpdateTable", "glue:GetPartitions", "glue:BatchCreatePartition"],
                resources=[
                    self.format_arn(service="glue", resource="catalog"),
                    self.format_arn(service="glue", resource="database", resource_name=GLUE_DATABASE),
                    self.format_arn(service="glue", resource="table", resource_name=f"{GLUE_DATABASE}/*"),
                ],
            )
        )
        policy = role.node.find_child("DefaultPolicy")
        acknowledge_wildcards(
            policy,
            [*GRANT_READ_ACTIONS, *GRANT_WRITE_ACTIONS, *KMS_GRANT_ACTIONS,
             objects_under(bucket.bucket_name, f"{OFFLINE_STORE_PREFIX}/")],
            "CDK grants limited to the feature-store/ prefix of the raw-data bucket and the platform key.",
        )
        acknowledge_wildcards(
            policy, [partition_arn(f"glue:{self.region}:{self.account}:table/{GLUE_DATABASE}/*")],
            "SageMaker names the offline-store tables itself, inside the sagemaker_featurestore database.",
        )
        acknowledge_inline_policy(role)
        return role

