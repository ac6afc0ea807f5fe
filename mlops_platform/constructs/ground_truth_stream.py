"""Kinesis Data Firehose delivery of ground-truth lines into the feedback bucket.

Direct PUT (the feedback API calls ``PutRecordBatch``), encrypted at rest with the platform key,
delivered uncompressed (the lines are already JSON lines ending with ``\\n``) under
``<prefix>yyyy/MM/dd/HH/`` (UTC, the hour the label was collected): the layout SageMaker's
model-quality monitoring and the platform's monitoring job read (``monitoring/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..compliance import KMS_GRANT_ACTIONS, acknowledge_inline_policy, acknowledge_wildcards
from .logging import encrypted_log_group

GROUND_TRUTH_PREFIX = "ground-truth/"
ERROR_PREFIX = "ground-truth-errors/"


@dataclass(frozen=True)
class GroundTruthStreamProps:
    stream_name: str
    bucket: s3.IBucket
    key: kms.IKey
    log_retention_days: int
    removal_policy: RemovalPolicy
    buffering_interval: Duration = Duration.seconds(300)
    buffering_size: Size = Size.mebibytes(5)


class GroundTruthStream(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: GroundTruthStreamProps) -> None:
        super().__init__(scope, construct_id)
        self.log_group = encrypted_log_group(
            self, "DeliveryLogs", name=f"/aws/kinesisfirehose/{props.stream_name}", key=props.key,
            retention_days=props.log_retention_days, removal_policy=props.removal_policy,
        )
        self.stream = firehose.DeliveryStream(
            self, "Stream",
            delivery_stream_name=props.stream_name,
            encryption=firehose.StreamEncryption.customer_managed_key(props.key),
            destination=firehose.S3Bucket(
                props.bucket,
                data_output_prefix=GROUND_TRUTH_PREFIX + "!{timestamp:yyyy/MM/dd/HH}/",
                error_output_prefix=ERROR_PREFIX + "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/",
                compression=firehose.Compression.UNCOMPRESSED,
                buffering_interval=props.buffering_interval,
                buffering_size=props.buffering_size,
                encryption_key=props.key,
                logging_config=firehose.EnableLogging(self.log_group),
            ),
        )
        self._acknowledge(props)

    def _acknowledge(self, props: GroundTruthStreamProps) -> None:
        service_role = self.stream.node.find_child("Service Role")
        acknowledge_wildcards(service_role.node.find_child("DefaultPolicy"), KMS_GRANT_ACTIONS,
                              "Firehose's grant to encrypt the stream with the platform key.")
        acknowledge_inline_policy(service_role)
        role = self.stream.node.try_find_child("S3 Destination Role")
        policy = role.node.try_find_child("DefaultPolicy") if role is not None else None
        if policy is not None:
            acknowledge_wildcards(
                policy, ["Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*",
                         "Action::s3:Abort*", "Action::s3:DeleteObject*",
                         "Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*",
                         f"Resource::arn:<AWS::Partition>:s3:::{props.bucket.bucket_name}/*"],
                "Firehose's S3 destination grant (read/write on the feedback bucket, with its key); "
                "it delivers under ground-truth/ and ground-truth-errors/ only.",
            )
            acknowledge_inline_policy(role)
