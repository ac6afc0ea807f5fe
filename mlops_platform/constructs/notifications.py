"""The environment's notification topic (approvals, deployments, alarms, budgets)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

# AWS services that publish to the topic. SNS with a customer-managed key needs each of them in
# the key policy: they cannot be given IAM grants.
PUBLISHING_SERVICES = ("events.amazonaws.com", "cloudwatch.amazonaws.com", "budgets.amazonaws.com")


@dataclass(frozen=True)
class NotificationsProps:
    topic_name: str
    key: kms.IKey
    emails: tuple[str, ...]


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: NotificationsProps) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic",
            topic_name=props.topic_name,
            display_name=props.topic_name,
            master_key=props.key,
            enforce_ssl=True,
        )
        for email in props.emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        for service in PUBLISHING_SERVICES:
            props.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Publish{service.split('.')[0].capitalize()}ToEncryptedTopics",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],  # in a key policy, "*" means this key
                )
            )
            self.topic.grant_publish(iam.ServicePrincipal(service))
