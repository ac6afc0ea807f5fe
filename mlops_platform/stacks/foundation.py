"""Foundation of one environment: key, buckets, SageMaker execution role, optional VPC."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from constructs import Construct

from ..config import PlatformConfig
from ..constructs.encryption import PlatformKey, PlatformKeyProps
from ..constructs.logging import retention
from ..constructs.network import PlatformNetwork, PlatformNetworkProps
from ..constructs.sagemaker_role import SageMakerExecutionRole, SageMakerExecutionRoleProps
from ..constructs.storage import AccessLogBucket, AccessLogBucketProps, SecureBucket, SecureBucketProps


def removal_policy_of(config: PlatformConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.removal_policy.value == "retain" else RemovalPolicy.DESTROY


class FoundationStack(Stack):
    """Stateful base every other stack of the environment builds on.

    Construct ids of stateful resources are part of the contract: changing one replaces the
    resource (tests pin the logical ids).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = removal_policy_of(config)
        storage = config.storage

        self.key = PlatformKey(
            self, "PlatformKey", PlatformKeyProps(alias=f"alias/{config.name_prefix}", removal_policy=removal)
        ).key

        self.access_log_bucket = AccessLogBucket(
            self, "AccessLogs",
            AccessLogBucketProps(removal_policy=removal, expiry_days=storage.access_log_expiry_days),
        ).bucket

        def data_bucket(construct_id: str, log_prefix: str, **overrides) -> SecureBucket:
            props = dict(
                key=self.key,
                access_log_bucket=self.access_log_bucket,
                log_prefix=log_prefix,
                removal_policy=removal,
                noncurrent_version_expiry_days=storage.noncurrent_version_expiry_days,
                infrequent_access_after_days=storage.infrequent_access_after_days,
            )
            props.update(overrides)
            return SecureBucket(self, construct_id, SecureBucketProps(**props))

        self.raw_data_bucket = data_bucket("RawData", "raw-data").bucket
        self.artifacts_bucket = data_bucket("Artifacts", "artifacts").bucket
        self.data_capture_bucket = data_bucket(
            "DataCapture", "data-capture",
            expiry_days=storage.data_capture_expiry_days, infrequent_access_after_days=None,
        ).bucket
        self.feedback_bucket = data_bucket("Feedback", "feedback").bucket

        self.network: PlatformNetwork | None = None
        if config.vpc.enabled:
            self.network = PlatformNetwork(
                self, "Network",
                PlatformNetworkProps(
                    cidr=config.vpc.cidr,
                    availability_zones=config.vpc.zones_in(config.region),
                    key=self.key,
                    flow_log_retention=retention(config.vpc.flow_log_retention_days),
                    removal_policy=removal,
                ),
            )

        self.sagemaker_role = SageMakerExecutionRole(
            self, "SageMakerExecutionRole",
            SageMakerExecutionRoleProps(
                role_name=f"{config.name_prefix}-sagemaker-execution",
                key=self.key,
                read_buckets=(self.raw_data_bucket, self.data_capture_bucket, self.feedback_bucket),
                read_write_buckets=(self.artifacts_bucket,),
                subnets=tuple(self.network.vpc.isolated_subnets) if self.network else (),
                security_group=self.network.workload_security_group if self.network else None,
            ),
        ).role
