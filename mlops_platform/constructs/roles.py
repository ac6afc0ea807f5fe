"""Roles that AWS services assume on the platform's behalf."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct


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
