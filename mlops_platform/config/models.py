"""Typed, validated per-environment configuration.

One YAML file per environment (``config/<env>.yaml``) is parsed into :class:`PlatformConfig`
once, in ``app.py``, and passed down to stages, stacks and constructs as props. Every model
forbids unknown fields so that a typo is an error, not a silently ignored setting.

Defaults are part of the contract: each field's description says what the platform does when
the field is left out. ``docs/configuration.md`` is generated from these models.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)

_ENV_NAME = re.compile(r"^[a-z][a-z0-9]{1,9}$")
# The prefix starts SageMaker, Lambda and S3-derived names. SageMaker names allow
# [a-zA-Z0-9-] (no leading/trailing hyphen, max 63); S3 allows lower case only. 20
# characters leave room for the longest suffix the platform appends.
_NAME_PREFIX = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_NAME_PREFIX_MAX = 20
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{1,256}$", re.UNICODE)


@lru_cache(maxsize=1)
def sagemaker_regions() -> tuple[str, ...]:
    """Regions where SageMaker is offered, from botocore's bundled endpoint data (offline)."""
    import botocore.session  # local import: only validation needs it

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        regions.update(session.get_available_regions("sagemaker", partition_name=partition))
    return tuple(sorted(regions))


def _check_environment_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            "must be 2-10 characters, lower-case letters and digits, starting with a letter "
            "(e.g. dev, staging, prod)"
        )
    return value


def _check_account(value: str) -> str:
    if not _ACCOUNT.match(value):
        raise ValueError("must be a 12-digit AWS account id, quoted as a string (e.g. \"123456789012\")")
    return value


def _check_region(value: str) -> str:
    allowed = sagemaker_regions()
    if value not in allowed:
        raise ValueError(f"must be an AWS region where SageMaker is available: {', '.join(allowed)}")
    return value


def _check_name_prefix(value: str) -> str:
    if len(value) > _NAME_PREFIX_MAX or not _NAME_PREFIX.match(value):
        raise ValueError(
            f"must be at most {_NAME_PREFIX_MAX} characters of lower-case letters, digits and "
            "single hyphens, starting with a letter and not ending with a hyphen "
            "(it starts S3 and SageMaker resource names)"
        )
    return value


def _check_tag_value(value: str) -> str:
    if not _TAG_VALUE.match(value):
        raise ValueError(
            "must be 1-256 characters of letters, digits, spaces and . : / = + - @ _ "
            "(AWS tag value rules)"
        )
    return value


def _check_log_retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of the CloudWatch Logs retention periods: {LOG_RETENTION_DAYS}")
    return value


EnvironmentName = Annotated[str, AfterValidator(_check_environment_name)]
AccountId = Annotated[str, Field(strict=True), AfterValidator(_check_account)]
Region = Annotated[str, AfterValidator(_check_region)]
NamePrefix = Annotated[str, AfterValidator(_check_name_prefix)]
TagValue = Annotated[str, AfterValidator(_check_tag_value)]
LogRetentionDays = Annotated[int, AfterValidator(_check_log_retention)]
Days = Annotated[int, Field(ge=1, le=3650)]


class StrictModel(BaseModel):
    """Base for every config section: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RemovalPolicy(str, Enum):
    """What happens to stateful resources (buckets, keys, tables) when a stack is deleted."""

    RETAIN = "retain"
    DESTROY = "destroy"


class TagsConfig(StrictModel):
    """Cost-allocation and ownership tags applied to every resource of the environment."""

    project: TagValue = Field(description="Tag `project` on every resource.")
    cost_centre: TagValue = Field(description="Tag `cost-centre` on every resource; used by budgets.")
    owner: TagValue | None = Field(default=None, description="Tag `owner`; omitted when not set.")
    extra: dict[str, TagValue] = Field(
        default_factory=dict, description="Further tags, name to value, applied as given."
    )


class VpcConfig(StrictModel):
    """Network isolation. When enabled, SageMaker jobs, endpoints and Lambdas run inside the VPC."""

    enabled: bool = Field(
        default=False,
        description="Create a VPC with private isolated subnets and interface endpoints. "
        "Off: SageMaker uses its managed network (no NAT or endpoint hourly cost).",
    )
    cidr: str = Field(
        default="10.40.0.0/16",
        pattern=r"^([0-9]{1,3}\.){3}[0-9]{1,3}/(1[6-9]|2[0-4])$",
        description="IPv4 CIDR of the VPC, /16 to /24.",
    )
    max_azs: int = Field(
        default=2, ge=2, le=3,
        description="Availability zones; SageMaker endpoints in a VPC need subnets in at least two.",
    )
    availability_zones: tuple[str, ...] | None = Field(
        default=None,
        description="Zone names to use, in the environment's region. When not set: the region "
        "name followed by a, b, c (first `max_azs` of them). Explicit so synthesis needs no AWS "
        "lookup; set it where your account lacks one of those zones.",
    )
    flow_log_retention_days: LogRetentionDays = Field(
        default=90, description="Retention of the VPC flow-log group."
    )

    def zones_in(self, region: str) -> tuple[str, ...]:
        """The availability zones the VPC spans in ``region``."""
        return self.availability_zones or tuple(f"{region}{letter}" for letter in "abc"[: self.max_azs])


class StorageConfig(StrictModel):
    """Lifecycle of the platform's buckets."""

    data_capture_expiry_days: Days = Field(
        default=90, description="Endpoint data-capture objects are deleted after this many days."
    )
    noncurrent_version_expiry_days: Days = Field(
        default=30, description="Overwritten or deleted object versions are kept this many days."
    )
    access_log_expiry_days: Days = Field(
        default=365, description="S3 server access logs are kept this many days."
    )
    infrequent_access_after_days: Days | None = Field(
        default=None,
        description="Move raw data and artifacts to S3 Standard-IA after this many days; "
        "off when not set.",
    )


class PlatformConfig(StrictModel):
    """One environment of the platform (one CDK stage, one account/region)."""

    environment: EnvironmentName = Field(description="Environment name; the stage is named after it.")
    account: AccountId = Field(description="AWS account id the environment deploys to (quoted).")
    region: Region = Field(description="AWS region the environment deploys to.")
    name_prefix: NamePrefix = Field(description="Prefix of every physical name the platform sets.")
    removal_policy: RemovalPolicy = Field(
        description="`retain` keeps buckets, keys and tables when the stack is deleted; `destroy` "
        "deletes them with their contents (dev only; refused for prod)."
    )
    tags: TagsConfig
    log_retention_days: LogRetentionDays = Field(
        default=365, description="Retention of the platform's CloudWatch log groups."
    )
    vpc: VpcConfig = Field(default_factory=VpcConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @field_validator("vpc")
    @classmethod
    def _zones_in_region(cls, value: VpcConfig, info: ValidationInfo) -> VpcConfig:
        region = info.data.get("region")
        if value.availability_zones is not None and region:
            if len(value.availability_zones) != value.max_azs:
                raise ValueError(f"availability_zones must list exactly max_azs ({value.max_azs}) zones")
            strays = [zone for zone in value.availability_zones
                      if not re.fullmatch(rf"{re.escape(region)}[a-z]", zone)]
            if strays:
                raise ValueError(f"availability_zones {strays} are not zones of region {region}")
        return value

    @field_validator("removal_policy")
    @classmethod
    def _prod_keeps_its_data(cls, value: RemovalPolicy, info: ValidationInfo) -> RemovalPolicy:
        if info.data.get("environment") == "prod" and value is RemovalPolicy.DESTROY:
            raise ValueError("prod must keep its data: allowed is 'retain'")
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == "prod"
