"""Buckets with the platform's security baseline, and the access-log bucket they log to."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..compliance import acknowledge

_REPLICATION_REASON = (
    "Single-region platform: cross-region replication doubles storage cost and is left to teams "
    "that need it; versioning and retention protect against deletion."
)


@dataclass(frozen=True)
class AccessLogBucketProps:
    bucket_name: str
    removal_policy: RemovalPolicy
    expiry_days: int


class AccessLogBucket(Construct):
    """Target of S3 server access logging for every other bucket.

    S3 server access logging cannot deliver to a bucket encrypted with SSE-KMS, so this bucket
    uses SSE-S3; it holds request metadata only, never data.
    """

    def __init__(self, scope: Construct, construct_id: str, props: AccessLogBucketProps) -> None:
        super().__init__(scope, construct_id)
        destroy = props.removal_policy is RemovalPolicy.DESTROY
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=props.bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=props.removal_policy,
            auto_delete_objects=destroy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(props.expiry_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        acknowledge(self.bucket, "AwsSolutions-S1",
                    "This is the access-log bucket; logging it to itself would loop.")
        acknowledge(self.bucket, "NIST.800.53.R5-S3BucketLoggingEnabled",
                    "This is the access-log bucket; logging it to itself would loop.")
        acknowledge(self.bucket, "NIST.800.53.R5-S3DefaultEncryptionKMS",
                    "S3 server access logging cannot deliver to SSE-KMS buckets; SSE-S3 is used.")
        acknowledge(self.bucket, "NIST.800.53.R5-S3BucketReplicationEnabled", _REPLICATION_REASON)


@dataclass(frozen=True)
class SecureBucketProps:
    """Props of :class:`SecureBucket`.

    ``log_prefix`` separates this bucket's access logs inside the access-log bucket.
    ``expiry_days`` deletes current objects after that many days (None keeps them).
    """

    bucket_name: str
    key: kms.IKey
    access_log_bucket: s3.IBucket
    log_prefix: str
    removal_policy: RemovalPolicy
    noncurrent_version_expiry_days: int
    expiry_days: int | None = None
    infrequent_access_after_days: int | None = None
    event_bridge_enabled: bool = False
    extra_lifecycle_rules: list[s3.LifecycleRule] = field(default_factory=list)


class SecureBucket(Construct):
    """A data bucket: KMS (bucket key), TLS 1.2+ only, no public access, versioned, logged."""

    def __init__(self, scope: Construct, construct_id: str, props: SecureBucketProps) -> None:
        super().__init__(scope, construct_id)
        rules = [
            s3.LifecycleRule(
                id="retention",
                expiration=Duration.days(props.expiry_days) if props.expiry_days else None,
                noncurrent_version_expiration=Duration.days(props.noncurrent_version_expiry_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
                transitions=(
                    [s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                   transition_after=Duration.days(props.infrequent_access_after_days))]
                    if props.infrequent_access_after_days
                    else None
                ),
            ),
            *props.extra_lifecycle_rules,
        ]
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=props.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=props.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=props.access_log_bucket,
            server_access_logs_prefix=props.log_prefix.rstrip("/") + "/",
            removal_policy=props.removal_policy,
            auto_delete_objects=props.removal_policy is RemovalPolicy.DESTROY,
            lifecycle_rules=rules,
        )
        if props.event_bridge_enabled:
            # Native CloudFormation property: no notification custom resource (and its Lambda).
            cfn_bucket = self.bucket.node.default_child
            cfn_bucket.add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
            )
        acknowledge(self.bucket, "NIST.800.53.R5-S3BucketReplicationEnabled", _REPLICATION_REASON)
