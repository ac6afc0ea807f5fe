"""Construct-id helpers."""

from __future__ import annotations


def pascal(name: str) -> str:
    """``example-classifier`` -> ``ExampleClassifier``, for construct ids derived from config names."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def environment_bucket_name(name_prefix: str, account: str, region: str, purpose: str) -> str:
    """The bucket name of any environment (``stacks.foundation.bucket_name``), e.g. the one models are
    promoted from: deterministic and globally unique, so stacks refer to buckets by name."""
    return f"{name_prefix}-{purpose}-{account}-{region}"


def partition_of(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


class EnvironmentNames:
    """Concrete ARNs of one environment's resources whose names the platform sets, so stacks can
    refer to each other's resources by name instead of by cross-stack reference."""

    def __init__(self, account: str, region: str, name_prefix: str) -> None:
        self.account, self.region, self.prefix = account, region, name_prefix
        self.partition = partition_of(region)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    @property
    def notifications_topic_arn(self) -> str:
        return self.arn("sns", f"{self.prefix}-notifications")

    @property
    def execution_role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{self.prefix}-sagemaker-execution"

    def endpoint_name(self, endpoint: str) -> str:
        return f"{self.prefix}-{endpoint}"
