"""Does a role of a synthesized environment have the right to make a call? Evaluated by moto's IAM engine.

Statements are matched by moto's access-control evaluator (``moto.iam.access_control.
IAMPolicyStatement``: Action/NotAction and Resource wildcards) and their conditions by moto's
condition classes (``moto.iam.policy_conditions``). This module only combines the statements'
verdicts the way AWS does (an explicit deny wins; otherwise any allow), across the role's identity
policies and, where the resource has one, its resource policy (a KMS key's policy must allow too),
and picks the statements whose Principal names the caller. moto evaluates only the
``StringEquals`` operator and ignores the others: the ones the platform's policies use are
registered into moto's operator table below, any other one fails the contract, and a statement
whose condition needs a context key the call does not carry does not apply (as in AWS, where a
missing key fails every operator without ``IfExists``).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from moto.iam import policy_conditions
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from .templates import Environment


def _like(expected: list[str] | str, actual: str) -> bool:
    patterns = [expected] if isinstance(expected, str) else expected
    return any(fnmatch.fnmatchcase(actual, p) for p in patterns)


def _equals(expected: list[str] | str, actual: str) -> bool:
    return actual in ([expected] if isinstance(expected, str) else expected)


def _bool(expected: list[str] | str, actual: str) -> bool:
    return str(actual).lower() in [str(e).lower() for e in ([expected] if isinstance(expected, (str, bool)) else expected)]


def _numeric_less_than(expected: Any, actual: str) -> bool:
    return float(actual) < float(expected)


# Operators the platform's policies use that moto does not evaluate (it ignores unknown ones).
policy_conditions.CONDITION_OPERATIONS.update({
    "StringLike": _like, "ArnLike": _like, "ArnEquals": _equals, "Bool": _bool,
    "NumericLessThan": _numeric_less_than,
})
SUPPORTED_OPERATORS = set(policy_conditions.CONDITION_OPERATIONS)


@dataclass(frozen=True)
class Principal:
    """Who calls: a role (``arn``) of ``account``, or an AWS service (``service``)."""

    account: str
    arn: str | None = None
    service: str | None = None


def statement_verdict(statement: dict, action: str, resource: str, context: dict[str, str],
                      principal: Principal | None = None) -> str | None:
    """"Allow", "Deny" or None (the statement does not apply)."""
    if principal is not None and not _principal_matches(statement.get("Principal"), principal):
        return None
    conditions = statement.get("Condition", {})
    for operator, keys in conditions.items():
        if operator not in SUPPORTED_OPERATORS:
            raise ValueError(f"condition operator {operator} is not evaluated (tests/aws_contract/iam.py)")
        if any(key not in context for key in keys):
            return None
    for condition in policy_conditions.TrustRelationShipConditions(conditions):
        if not condition.verify_condition([context[key] for key in condition.context_keys]):
            return None
    # Conditions decided above: moto answers DENIED for any statement whose condition fails.
    bare = {k: v for k, v in statement.items() if k not in ("Principal", "Condition")}
    result = IAMPolicyStatement(bare).is_action_permitted(action, resource)
    if result == PermissionResult.NEUTRAL:
        return None
    return "Allow" if result == PermissionResult.PERMITTED else "Deny"


def _principal_matches(principal_element: Any, principal: Principal) -> bool:
    if principal_element in (None, "*"):
        return principal_element == "*"
    values = []
    for kind, value in principal_element.items():
        values += [(kind, v) for v in ([value] if isinstance(value, str) else value)]
    for kind, value in values:
        if kind == "AWS" and (value == "*" or value in (principal.arn, f"arn:aws:iam::{principal.account}:root",
                                                       principal.account)) and principal.arn:
            return True
        if kind == "Service" and principal.service and value == principal.service:
            return True
    return False


def verdict(documents: list[dict], action: str, resource: str, context: dict[str, str],
            principal: Principal | None = None) -> str | None:
    verdicts = {statement_verdict(s, action, resource, context, principal)
                for d in documents for s in _statements(d)}
    return "Deny" if "Deny" in verdicts else "Allow" if "Allow" in verdicts else None


def _statements(document: dict) -> list[dict]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


class Roles:
    """The roles of one environment, each with its resolved identity policies."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.policies: dict[str, list[dict]] = {}  # role ARN -> policy documents
        self.managed: dict[str, list[str]] = {}  # role ARN -> managed policy ARNs (not evaluated)
        for stack, logical_id, role in environment.resources("AWS::IAM::Role"):
            arn = environment.arn(stack, logical_id)
            properties = role.get("Properties", {})
            self.policies[arn] = [environment.resolve(stack, p["PolicyDocument"]) for p in properties.get("Policies", [])]
            self.managed[arn] = [environment.resolve(stack, m) for m in properties.get("ManagedPolicyArns", [])]
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for stack, _, policy in environment.resources(kind):
                properties = policy["Properties"]
                document = environment.resolve(stack, properties["PolicyDocument"])
                for role_ref in properties.get("Roles", []):
                    target = environment.resource_by_ref(stack, role_ref)
                    arn = environment.arn(*target) if target else _role_arn(environment, environment.resolve(stack, role_ref))
                    self.policies.setdefault(arn, []).append(document)

    def allowed(self, role_arn: str, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        """May ``role_arn`` do ``action`` on ``resource``: its identity policies, and the resource's
        own policy where it has one (a KMS key's policy must allow too)."""
        context = {"aws:SecureTransport": "true", **(context or {})}
        principal = Principal(self.environment.account, arn=role_arn)
        identity = verdict(self.policies.get(role_arn, []), action, resource, context)
        resource_policies = self.resource_policies(resource)
        resource_verdict = verdict(resource_policies, action, resource, context, principal) if resource_policies else None
        if "Deny" in (identity, resource_verdict):
            return False
        if resource.startswith("arn:aws:kms:"):
            return resource_verdict == "Allow" and (identity == "Allow" or _trusts_role_itself(resource_policies, role_arn))
        return "Allow" in (identity, resource_verdict)

    def service_allowed(self, service: str, action: str, resource: str, context: dict[str, str]) -> bool:
        """May the AWS service principal do ``action`` on ``resource``, by the resource's policy."""
        context = {"aws:SecureTransport": "true", "aws:SourceAccount": self.environment.account, **context}
        principal = Principal(self.environment.account, service=service)
        return verdict(self.resource_policies(resource), action, resource, context, principal) == "Allow"

    def resource_policies(self, resource: str) -> list[dict]:
        """The policies written on the resource itself (queue, topic, bucket, key)."""
        found = []
        environment = self.environment
        for kind, targets in (("AWS::SQS::QueuePolicy", "Queues"), ("AWS::SNS::TopicPolicy", "Topics")):
            for stack, _, policy in environment.resources(kind):
                for target in policy["Properties"][targets]:
                    pointed = environment.resource_by_ref(stack, target)
                    if pointed and environment.arn(*pointed) == resource:
                        found.append(environment.resolve(stack, policy["Properties"]["PolicyDocument"]))
        for stack, _, policy in environment.resources("AWS::S3::BucketPolicy"):
            bucket = environment.resolve(stack, policy["Properties"]["Bucket"])
            if resource == f"arn:aws:s3:::{bucket}" or resource.startswith(f"arn:aws:s3:::{bucket}/"):
                found.append(environment.resolve(stack, policy["Properties"]["PolicyDocument"]))
        for stack, logical_id, key in environment.resources("AWS::KMS::Key"):
            if environment.arn(stack, logical_id) == resource:
                found.append(environment.resolve(stack, key["Properties"]["KeyPolicy"]))
        return found


def _trusts_role_itself(documents: list[dict], role_arn: str) -> bool:
    return any(json.dumps(s.get("Principal", "")).find(role_arn) >= 0 for d in documents for s in _statements(d))


def _role_arn(environment: Environment, name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:iam::{environment.account}:role/{name}"

