"""The environment's customer-managed KMS key."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


@dataclass(frozen=True)
class PlatformKeyProps:
    alias: str
    removal_policy: RemovalPolicy
    s3_vectors: bool = False  # S3 Vectors indexes use the key through the service principal


class PlatformKey(Construct):
    """Customer-managed key with yearly rotation, used by everything that stores data.

    CloudWatch Logs needs the key in its key policy (it cannot use IAM grants), limited to log
    groups of this account and region through the encryption context.
    """

    def __init__(self, scope: Construct, construct_id: str, props: PlatformKeyProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            alias=props.alias,
            description=f"Encrypts the data of {props.alias.removeprefix('alias/')}",
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            removal_policy=props.removal_policy,
            pending_window=Duration.days(7 if props.removal_policy is RemovalPolicy.DESTROY else 30),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                         "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn":
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                    }
                },
            )
        )
        if props.s3_vectors:
            # S3 Vectors maintains SSE-KMS indexes in the background with its indexing principal.
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AllowS3VectorsIndexingOfThisAccount",
                    principals=[iam.ServicePrincipal("indexing.s3vectors.amazonaws.com")],
                    actions=["kms:Decrypt"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                                "ArnLike": {"aws:SourceArn":
                                            f"arn:{stack.partition}:s3vectors:{stack.region}:{stack.account}:bucket/*"}},
                )
            )
