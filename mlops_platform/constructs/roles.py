"""Roles that AWS services assume on the platform's behalf."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from ..compliance import acknowledge_inline_policy, acknowledge_wildcards


def service_role(scope: Construct, construct_id: str, service: str, description: str) -> iam.Role:
    """A role only ``service`` (e.g. ``sagemaker.amazonaws.com``) can assume, and only on behalf
    of this account (``aws:SourceAccount``), which closes the confused-deputy path."""
    return iam.Role(
        scope, construct_id,
        description=description,
        assumed_by=iam.ServicePrincipal(
            service, conditions={"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}}
        ),
    )


def scheduler_invoke_role(scope: Construct, construct_id: str, function: lambda_.IFunction,
                          description: str) -> iam.Role:
    """The role EventBridge Scheduler assumes to invoke ``function`` (any of its versions, only it)."""
    role = service_role(scope, construct_id, "scheduler.amazonaws.com", description)
    function.grant_invoke(role)
    acknowledge_wildcards(
        role.node.find_child("DefaultPolicy"),
        [f"Resource::<{Stack.of(scope).get_logical_id(function.node.default_child)}.Arn>:*"],
        "Lets the schedules invoke any version of this one function, and only it.",
    )
    acknowledge_inline_policy(role)
    return role


def processing_pipeline_role(scope: Construct, construct_id: str, description: str, *, jobs_arn: str,
                             job_role: iam.IRole) -> iam.Role:
    """The role SageMaker Pipelines uses to run processing steps (``jobs_arn``:
    ``processing-job/pipelines-*`` of the account) as ``job_role``."""
    role = service_role(scope, construct_id, "sagemaker.amazonaws.com", description)
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="RunProcessingSteps",
        actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                 "sagemaker:StopProcessingJob", "sagemaker:AddTags"],
        resources=[jobs_arn],
    ))
    job_role.grant_pass_role(role)
    acknowledge_wildcards(
        role.node.find_child("DefaultPolicy"), [f"Resource::{jobs_arn}"],
        "SageMaker Pipelines names step jobs pipelines-<execution>-<step>-<suffix> at run time.",
    )
    acknowledge_inline_policy(role)
    return role


def read_code_assets(sid: str, assets: tuple[s3_assets.Asset, ...]) -> list[iam.PolicyStatement]:
    """A job's code assets for the SageMaker execution role: each object, and listing exactly their
    keys (SageMaker lists an ``S3Prefix`` input under its key before it downloads it)."""
    return [
        iam.PolicyStatement(sid=sid, actions=["s3:GetObject"],
                            resources=[asset.bucket.arn_for_objects(asset.s3_object_key) for asset in assets]),
        iam.PolicyStatement(sid=f"{sid}Keys", actions=["s3:ListBucket"], resources=[assets[0].bucket.bucket_arn],
                            conditions={"StringEquals": {"s3:prefix": [asset.s3_object_key for asset in assets]}}),
    ]
