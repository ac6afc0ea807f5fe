"""Promotion of approved models from a source environment's registry (staging) to this one (prod).

Source side (:class:`ApprovalForwarding`, in the environment that shares its models): approvals in
its groups are forwarded to each consumer account's default event bus. The groups' resource policy
(``stacks/training.py``) lets the consumer describe the packages, and the artifacts bucket and key
policies (``stacks/foundation.py``) let it read and decrypt the artifacts.

Target side (:class:`ModelPromotion`, in the environment with ``registry.promote_from``): a rule on
the default bus for approvals of the source groups, the promotion function
(``handlers.model_promotion``) registering each approved package in this environment's group of the
same name (same artifacts, ``PendingManualApproval``), the bus policy that lets the source account
put its events here, and read access of this environment's SageMaker execution role to the source
artifacts (the endpoints load the model from there). With one account for all environments, the
approval is already on the bus: no forwarding and no bus policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from ..compliance import acknowledge_inline_policy, acknowledge_wildcards
from .naming import partition_of
from .roles import service_role
from .platform_function import PlatformFunction, PlatformFunctionProps

APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"
SOURCE_ARTIFACTS_PREFIX = "pipelines"  # where the source's pipelines write model artifacts and reports


def approvals_of(groups: list[str]) -> events.EventPattern:
    return events.EventPattern(source=["aws.sagemaker"], detail_type=[APPROVAL_DETAIL_TYPE],
                               detail={"ModelPackageGroupName": groups, "ModelApprovalStatus": ["Approved"]})


@dataclass(frozen=True)
class ApprovalForwardingProps:
    groups: tuple[str, ...]  # this environment's group names
    consumer_accounts: tuple[str, ...]  # accounts other than this one


class ApprovalForwarding(Construct):
    """Sends this environment's approvals to each consumer account's default event bus."""

    def __init__(self, scope: Construct, construct_id: str, props: ApprovalForwardingProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        partition = partition_of(stack.region)
        buses = [events.EventBus.from_event_bus_arn(
            self, f"Bus{account}", f"arn:{partition}:events:{stack.region}:{account}:event-bus/default")
            for account in props.consumer_accounts]
        role = service_role(self, "ForwardRole", "events.amazonaws.com",
                            "Puts this environment's model approvals on the consumer accounts' buses")
        self.rule = events.Rule(
            self, "ForwardApprovals",
            description="Approved model packages go to the consumer accounts, whose promotion function registers them",
            event_pattern=approvals_of(list(props.groups)),
            targets=[targets.EventBus(bus, role=role) for bus in buses],
        )
        acknowledge_inline_policy(role, "EventBridge's target role: PutEvents on the consumer accounts' default buses.")


@dataclass(frozen=True)
class ModelPromotionProps:
    function: PlatformFunctionProps  # name, handler and the environment's function settings
    source_account: str
    source_name_prefix: str
    groups: dict[str, str]  # source group name -> this environment's group name
    source_artifacts_bucket: str
    execution_role: iam.IRole  # this environment's SageMaker execution role


class ModelPromotion(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ModelPromotionProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        partition = partition_of(stack.region)  # concrete: the ARNs name nag acknowledgements
        self.function = PlatformFunction(self, "Function", props.function)
        role = self.function.role

        def sagemaker_arn(account: str, resource: str) -> str:
            return f"arn:{partition}:sagemaker:{stack.region}:{account}:{resource}"

        sources = [sagemaker_arn(props.source_account, f"model-package/{g}/*") for g in sorted(props.groups)]
        targets_ = sorted(props.groups.values())
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadTheApprovedSourcePackage", actions=["sagemaker:DescribeModelPackage"], resources=sources))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="RegisterItHere", actions=["sagemaker:CreateModelPackage"],
            resources=[*(sagemaker_arn(stack.account, f"model-package-group/{g}") for g in targets_),
                       *(sagemaker_arn(stack.account, f"model-package/{g}/*") for g in targets_)]))
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [f"Resource::{arn}" for arn in (*sources, *(sagemaker_arn(stack.account, f"model-package/{g}/*")
                                                        for g in targets_))],
            "Package versions are numbered at run time within the named groups.",
        )
        self.rule = events.Rule(
            self, "OnSourceApproval",
            description=f"A package approved in {props.source_name_prefix} is registered here, pending approval",
            event_pattern=approvals_of(sorted(props.groups)),
            targets=[targets.LambdaFunction(self.function.function, retry_attempts=2,
                                            dead_letter_queue=self.function.dead_letter_queue,
                                            max_event_age=Duration.hours(24))],
        )
        if props.source_account != stack.account:
            events.CfnEventBusPolicy(
                self, "SourceMayForwardApprovals",
                event_bus_name="default",
                statement_id=f"ModelApprovalsFrom{props.source_account}",
                statement={
                    "Effect": "Allow", "Principal": {"AWS": f"arn:{partition}:iam::{props.source_account}:root"},
                    "Action": "events:PutEvents",
                    "Resource": f"arn:{partition}:events:{stack.region}:{stack.account}:event-bus/default",
                    "Condition": {"StringEquals": {"events:source": "aws.sagemaker",
                                                   "events:detail-type": APPROVAL_DETAIL_TYPE}},
                },
            )
        # The endpoints here load the promoted model from the source's bucket, encrypted with its key.
        source_objects = f"arn:{partition}:s3:::{props.source_artifacts_bucket}/{SOURCE_ARTIFACTS_PREFIX}/*"
        source_keys = f"arn:{partition}:kms:{stack.region}:{props.source_account}:key/*"
        policy = iam.ManagedPolicy(self, "ReadPromotedArtifacts", roles=[props.execution_role], statements=[
            iam.PolicyStatement(sid="ReadPromotedArtifacts", actions=["s3:GetObject"], resources=[source_objects]),
            iam.PolicyStatement(sid="DecryptPromotedArtifacts", actions=["kms:Decrypt"], resources=[source_keys],
                                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}}),
        ])
        acknowledge_wildcards(
            policy, [f"Resource::{source_objects}", f"Resource::{source_keys}"],
            "Model artifacts of the source environment's pipelines; its key only through S3 (the key's own "
            "policy names this account).",
        )
