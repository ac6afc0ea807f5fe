"""The least-privilege execution role SageMaker jobs and endpoints assume."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..compliance import (
    GRANT_READ_ACTIONS,
    GRANT_WRITE_ACTIONS,
    KMS_GRANT_ACTIONS,
    acknowledge,
    acknowledge_wildcards,
    objects_of,
    partition_arn,
)


@dataclass(frozen=True)
class SageMakerExecutionRoleProps:
    """What the role may touch.

    Data access is granted per bucket; ``network`` adds the ENI permissions SageMaker needs to
    place jobs and endpoints in the VPC's subnets.
    """

    role_name: str
    key: kms.IKey
    read_buckets: tuple[s3.IBucket, ...]
    read_write_buckets: tuple[s3.IBucket, ...]
    subnets: tuple[ec2.ISubnet, ...] = ()
    security_group: ec2.ISecurityGroup | None = None


class SageMakerExecutionRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: SageMakerExecutionRoleProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            role_name=props.role_name,
            description="Assumed by SageMaker processing, training and inference of this environment",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
        )
        for bucket in props.read_buckets:
            bucket.grant_read(self.role)
        for bucket in props.read_write_buckets:
            bucket.grant_read_write(self.role)
        # Jobs encrypt volumes and outputs with the environment key.
        props.key.grant_encrypt_decrypt(self.role)
        props.key.grant(self.role, "kms:CreateGrant", "kms:DescribeKey")

        log_groups = f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*"
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SageMakerJobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                         "logs:DescribeLogStreams"],
                resources=[log_groups, f"{log_groups}:log-stream:*"],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SageMakerJobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
            )
        )
        if props.security_group is not None:
            self._allow_network_interfaces(props, stack)
        self._acknowledge_wildcards(props, stack)

    def _allow_network_interfaces(self, props: SageMakerExecutionRoleProps, stack: Stack) -> None:
        subnet_arns = [
            f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:subnet/{subnet.subnet_id}"
            for subnet in props.subnets
        ]
        security_group_arn = (
            f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:security-group/"
            f"{props.security_group.security_group_id}"
        )
        eni_arn = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:network-interface/*"
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeNetwork",
                # Describe calls do not support resource-level permissions.
                actions=["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
                         "ec2:DescribeNetworkInterfaces", "ec2:DescribeDhcpOptions",
                         "ec2:DescribeVpcEndpoints"],
                resources=["*"],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PlaceJobsInPlatformSubnets",
                actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                         "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"],
                resources=[*subnet_arns, security_group_arn, eni_arn],
            )
        )

    def _acknowledge_wildcards(self, props: SageMakerExecutionRoleProps, stack: Stack) -> None:
        policy = self.role.node.find_child("DefaultPolicy")
        where = f"{stack.region}:{stack.account}"
        buckets = (*props.read_buckets, *props.read_write_buckets)
        acknowledge_wildcards(
            policy,
            [*GRANT_READ_ACTIONS, *(GRANT_WRITE_ACTIONS if props.read_write_buckets else ()),
             *KMS_GRANT_ACTIONS, *(objects_of(bucket) for bucket in buckets)],
            "CDK grants on the platform's own buckets and key: object-level actions on the "
            "objects of those buckets only.",
        )
        acknowledge_wildcards(
            policy,
            [partition_arn(f"logs:{where}:log-group:/aws/sagemaker/*"),
             partition_arn(f"logs:{where}:log-group:/aws/sagemaker/*:log-stream:*")],
            "SageMaker names its job and endpoint log groups itself, under /aws/sagemaker/.",
        )
        acknowledge_wildcards(
            policy, ["Resource::*"],
            "PutMetricData and EC2 Describe* support no resource-level permissions; "
            "PutMetricData is limited to SageMaker namespaces by condition.",
        )
        if props.security_group is not None:
            acknowledge_wildcards(
                policy, [partition_arn(f"ec2:{where}:network-interface/*")],
                "SageMaker creates the network interfaces of jobs and endpoints itself, only in "
                "the platform's subnets and security group (same statement).",
            )
        acknowledge(
            policy, "NIST.800.53.R5-IAMNoInlinePolicy",
            "CDK grants write this role's identity policy; it is attached to this one role and "
            "each wildcard in it is acknowledged separately above.",
        )
