"""cdk-nag rule packs and narrow, reasoned acknowledgements.

The packs run through CDK's Validations API (cdk-nag 3): any finding that is not acknowledged
fails synthesis. Acknowledge on the smallest construct that produces the finding, one rule at a
time, with the reason a reviewer needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import jsii
from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from constructs import IConstruct, IValidation

AWS_SOLUTIONS = "AwsSolutions"
NIST_800_53_R5 = "NIST.800.53.R5"

# Acknowledgments wait here, per construct, and are recorded in one call per construct: each jsii
# call is a round trip to the node process, and one by one they were a quarter of all the app's
# calls (626 acknowledgments on 279 constructs). Recorded when the checks are added and, for any
# added later, when the app validates (before the packs run, which happens after synthesis).
_pending: dict[IConstruct, list[Acknowledgment]] = {}


def record_acknowledgments() -> None:
    """Record every waiting acknowledgment on its construct."""
    while _pending:
        scope, acknowledgments = _pending.popitem()
        Validations.of(scope).acknowledge(*acknowledgments)


@jsii.implements(IValidation)
class _RecordAcknowledgments:
    def validate(self) -> list[str]:
        record_acknowledgments()
        return []


def add_compliance_checks(scope: IConstruct) -> None:
    """Run the AWS Solutions and NIST 800-53 rev 5 packs over every stack under ``scope``."""
    record_acknowledgments()
    scope.node.add_validation(_RecordAcknowledgments())
    Validations.of(scope).add_plugins(AwsSolutionsChecks(scope), NIST80053R5Checks(scope))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one finding on ``scope``.

    ``rule`` is the rule name as cdk-nag reports it, e.g. ``AwsSolutions-S1`` or
    ``NIST.800.53.R5-S3BucketReplicationEnabled``; a wildcard finding adds its detail in
    brackets, e.g. ``AwsSolutions-IAM5[Resource::*]``.
    """
    if not reason or len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a real reason, got {reason!r}")
    pack = NIST_800_53_R5 if rule.startswith(NIST_800_53_R5) else rule.split("-", 1)[0]
    _pending.setdefault(scope, []).append(Acknowledgment(id=f"{pack}::{rule}", reason=reason))


def acknowledge_inline_policy(role: IConstruct, reason: str | None = None) -> None:
    """Acknowledge NIST IAMNoInlinePolicy on a role's CDK-written default policy."""
    acknowledge(
        role.node.find_child("DefaultPolicy"), "NIST.800.53.R5-IAMNoInlinePolicy",
        reason or "CDK grants write this role's identity policy; it is attached to this one role.",
    )


def acknowledge_wildcards(scope: IConstruct, findings: Iterable[str], reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for exactly the listed wildcards of one policy.

    ``findings`` are cdk-nag's finding details, e.g. ``Action::s3:GetObject*`` or
    ``Resource::<RawDataBucket46CFA8FB.Arn>/*`` (build them with :func:`objects_of` and
    :func:`partition_arn`). Any wildcard not listed still fails synthesis.
    """
    for finding in findings:
        acknowledge(scope, f"AwsSolutions-IAM5[{finding}]", reason)


def logical_id(element: IConstruct) -> str:
    """The resolved logical id of a construct's CloudFormation resource."""
    cfn = element.node.default_child if not isinstance(element, CfnElement) else element
    stack = Stack.of(element)
    return stack.resolve(stack.get_logical_id(cfn))


def objects_of(resource: IConstruct, attribute: str = "Arn") -> str:
    """cdk-nag's finding detail for ``<resource ARN>/*`` (all objects of a bucket, say)."""
    return f"Resource::<{logical_id(resource)}.{attribute}>/*"


def objects_under(bucket_name: str, prefix: str = "") -> str:
    """cdk-nag's finding detail for objects of a bucket referenced by name (``name/prefix*``)."""
    return partition_arn(f"s3:::{bucket_name}/{prefix}*")


def partition_arn(arn_after_partition: str) -> str:
    """cdk-nag's finding detail for ``arn:${AWS::Partition}:<rest>``."""
    return f"Resource::arn:<AWS::Partition>:{arn_after_partition}"


# Wildcard actions that CDK's grant methods write; acknowledged together with the grant.
GRANT_READ_ACTIONS = ("Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*")
GRANT_WRITE_ACTIONS = ("Action::s3:Abort*", "Action::s3:DeleteObject*")
KMS_GRANT_ACTIONS = ("Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*")
