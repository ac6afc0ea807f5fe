"""Approval-driven endpoint deployments: endpoint specs, endpoint state and the pure planner.

No boto3, no I/O; the specs are pydantic dataclasses, parsed strictly (``domain.validation``). The deployer Lambda reads the approved package and the
endpoint's current state through an adapter, calls :func:`plan_deployment`, and hands the
:class:`DeploymentPlan` (a list of SageMaker API calls with their exact request parameters) back to
the adapter to apply.

Layout of an endpoint the deployer manages (variant names are fixed, so guardrails can compare
configs and autoscaling targets survive updates):

- ``champion``: the production variant serving most traffic;
- ``challenger``: the newest approved package, either a live production variant at
  ``challenger_initial_weight`` of the traffic, or (``shadow``) a shadow variant receiving a copy of
  that share of the requests, whose responses are discarded.

Outcomes of :func:`plan_deployment`:

===========================================  ============================================================
situation                                    plan
===========================================  ============================================================
no endpoint                                  CreateModel, CreateEndpointConfig (champion, weight 1),
                                             CreateEndpoint
champion only, weight > 0                    CreateModel, CreateEndpointConfig (champion unchanged +
                                             challenger), UpdateEndpoint (no DeploymentConfig: the
                                             variant names change, which SageMaker guardrails refuse)
champion + older challenger                  the same with the newer challenger; the names are unchanged
                                             so UpdateEndpoint carries the blue/green DeploymentConfig
champion at 0 + challenger carrying 100 %    the challenger won: its model is the champion the new
                                             package is tried against (the former champion is dropped)
weight 0, serverless or async                the package replaces the champion (sole variant);
                                             DeploymentConfig whenever the variant names are unchanged
package already on the endpoint              no-op ("already deployed")
a newer version of the group deployed        no-op ("superseded")
endpoint Creating/Updating/RollingBack/...   :class:`EndpointBusy` (retryable)
anything else that cannot be planned         :class:`CannotPlan` with the reason
===========================================  ============================================================

:func:`plan_promotion` acts on a decided experiment (``domain.promotion``): the kept model becomes
the sole ``champion`` at 100 % and the retired variant is removed (CreateEndpointConfig,
UpdateEndpoint); a no-op when that is done already or a newer experiment runs.

Resource names are deterministic (see :func:`resource_name`), so a retried event plans the same
names and the adapter's create-if-absent makes re-applying a plan harmless.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, Field

from mlops_runtime.domain.instance_types import (
    GPU_LAYOUTS,
    INSTANCE_TYPES,
    gpu_layout_problem,
    gpu_model_server_workers,
)
from mlops_runtime.domain.validation import (
    AWS,
    count_between,
    dump,
    int_between,
    matching,
    parse,
    parse_event,
)
from mlops_runtime.domain.variant_kinds import (  # noqa: F401  (the kinds are part of this module's API)
    KINDS,
    AsyncVariantSpec,
    InstanceTypeName,
    InstanceVariant,
    InvalidEndpointSpec,
    RealtimeVariantSpec,
    S3Uri,
    ServerlessVariantSpec,
    SnsTopicArn,
    Timeout,
    VariantKind,
    article,
    kind_of_endpoint,
)
from mlops_runtime.domain.variant_kinds import spec_dataclass as _spec

CHAMPION = "champion"
CHALLENGER = "challenger"

MANAGED_BY_TAG = "mlops:managed-by"
MANAGED_BY_VALUE = "endpoint-deployer"
ENDPOINT_TAG = "mlops:endpoint"
PACKAGE_ARN_TAG = "mlops:model-package-arn"
RESERVED_TAG_KEYS = frozenset({MANAGED_BY_TAG, ENDPOINT_TAG, PACKAGE_ARN_TAG})
MAX_TAGS = 50  # SageMaker's limit per resource, the deployer's own tags included

MAX_NAME_LENGTH = 63
MAX_VARIANTS = 10

# Statuses (DescribeEndpoint.EndpointStatus) after which a retry can succeed by itself.
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
IN_SERVICE = "InService"

ACTION_CREATE = "create-endpoint"
ACTION_ADD_CHALLENGER = "add-challenger"
ACTION_REPLACE_CHALLENGER = "replace-challenger"
ACTION_REPLACE_CHAMPION = "replace-champion"
ACTION_PROMOTE = "promote"
ACTION_NOOP = "noop"


_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-/]+$")
_KMS_ARN_RE = re.compile(r"^arn:aws[a-z\-]*:kms:[a-z0-9\-]+:\d{12}:(key|alias)/[a-zA-Z0-9/_\-]+$")
ECR_IMAGE_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+([:@][A-Za-z0-9._:-]+)?$")
_CONTENT_TYPE_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*/[a-zA-Z0-9](-*[a-zA-Z0-9.])*$")
_PACKAGE_ARN_RE = re.compile(
    r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:model-package/"
    r"(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>[0-9]{1,9})$"
)
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


# --- errors -------------------------------------------------------------------------------------


class CannotPlan(Exception):
    """No deployment can be planned for this package on this endpoint; retrying will not help."""

    retryable: ClassVar[bool] = False

    def __init__(self, endpoint_name: str, reason: str) -> None:
        self.endpoint_name = endpoint_name
        self.reason = reason
        super().__init__(f"endpoint {endpoint_name}: {reason}")


class EndpointBusy(CannotPlan):
    """The endpoint is in a transient state (Creating, Updating, ...); retry later."""

    retryable: ClassVar[bool] = True


class InvalidEvent(ValueError):
    """The event is not a well-formed "SageMaker Model Package State Change" event."""


# --- value types --------------------------------------------------------------------------------

_NAME = "1-63 letters, digits and hyphens, starting and ending with a letter or digit"
Name = matching(_NAME_RE, _NAME)
KmsKeyArn = matching(_KMS_ARN_RE, "a KMS key or alias ARN")
ContentType = matching(_CONTENT_TYPE_RE, "a MIME type such as application/json")
AlarmName = Annotated[str, Field(min_length=1, max_length=255)]
# Ids of resources the stacks create (subnets, security groups, image assets): CloudFormation tokens
# while the stack builds the deployer's settings, so only "non-empty" is checked; the values that
# come from the config are checked by it (``ContainerConfig.image_uri`` against :data:`ECR_IMAGE_RE`).
ResourceId = Annotated[str, Field(min_length=1)]


def _tag_text_ok(text: str) -> bool:
    return all(char.isalnum() or char.isspace() or char in _TAG_PUNCTUATION for char in text)


# --- the endpoint spec --------------------------------------------------------------------------


# The kinds of ``domain.variant_kinds`` registered when this module is imported, tagged by ``kind``.
VariantSpec = Annotated[Union[tuple(KINDS.values())], Field(discriminator="kind")]  # noqa: UP007


def variant_spec_from_dict(data: object) -> VariantKind:
    """A variant spec; ``kind`` (a tag of :data:`KINDS`) picks the type."""
    return parse(VariantSpec, data, InvalidEndpointSpec)


@_spec
class VariantLayout:
    """The champion's sizing and, optionally, a different sizing for a challenger (same kind)."""

    champion: VariantSpec
    challenger: VariantSpec | None = None

    def __post_init__(self) -> None:
        if self.challenger is not None and self.challenger.kind != self.champion.kind:
            raise InvalidEndpointSpec(
                "challenger.kind",
                f"must match the champion's kind {self.champion.kind!r}: an endpoint is "
                + " or ".join(f"all {tag}" for tag in KINDS),
            )

    @property
    def kind(self) -> str:
        return self.champion.kind

    @property
    def challenger_sizing(self) -> VariantKind:
        """The challenger's sizing: its own, else the champion's."""
        return self.challenger if self.challenger is not None else self.champion


@_spec
class CaptureContentTypes:
    json: count_between(ContentType, 0, 10, "content types") = ()
    csv: count_between(ContentType, 0, 10, "content types") = ()


@_spec
class DataCaptureSpec:
    enabled: bool
    destination_s3_uri: S3Uri
    sampling_percentage: int_between(0, 100) = 100
    kms_key_arn: KmsKeyArn | None = None
    capture_content_types: CaptureContentTypes = field(default_factory=CaptureContentTypes)

    @property
    def json_content_types(self) -> tuple[str, ...]:
        return self.capture_content_types.json

    @property
    def csv_content_types(self) -> tuple[str, ...]:
        return self.capture_content_types.csv


@_spec
class VpcSpec:
    subnet_ids: count_between(ResourceId, 1, 16, "subnets")
    security_group_ids: count_between(ResourceId, 1, 5, "security groups")


@_spec
class GuardrailSpec:
    """Blue/green traffic shifting and alarm-driven auto-rollback of ``UpdateEndpoint``."""

    mode: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = "ALL_AT_ONCE"
    canary_size_percent: int_between(1, 50) | None = None
    linear_step_percent: int_between(10, 50) | None = None
    wait_interval_s: int_between(0, 3600) = 300
    termination_wait_s: int_between(0, 3600) = 0
    max_execution_timeout_s: int_between(600, 28800) | None = None
    alarm_names: count_between(AlarmName, 0, 10, "alarms", distinct=True) = ()

    def __post_init__(self) -> None:
        for mode, size in (("CANARY", "canary_size_percent"), ("LINEAR", "linear_step_percent")):
            if self.mode == mode and getattr(self, size) is None:
                raise InvalidEndpointSpec(size, f"is required when mode is {mode}")
            if self.mode != mode and getattr(self, size) is not None:
                raise InvalidEndpointSpec(size, f"only applies to mode {mode}, not {self.mode}")

    def deployment_config(self) -> dict[str, Any]:
        """``UpdateEndpoint.DeploymentConfig``: blue/green traffic routing and auto-rollback alarms."""
        routing: dict[str, Any] = {"Type": self.mode, "WaitIntervalInSeconds": self.wait_interval_s}
        if self.mode == "CANARY":
            routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": self.canary_size_percent}
        if self.mode == "LINEAR":
            routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": self.linear_step_percent}
        policy: dict[str, Any] = {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": self.termination_wait_s,
        }
        if self.max_execution_timeout_s is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = self.max_execution_timeout_s
        config: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
        if self.alarm_names:
            config["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": name} for name in self.alarm_names]
            }
        return config


# The serving container's view of its GPU layout, set on the model (CreateModel ``Environment``).
# SAGEMAKER_MODEL_SERVER_WORKERS is also what SageMaker's own inference toolkits (the PyTorch/MMS and
# TorchServe images) read for their worker count; the GNN example's serve.py reads all three.
ENV_MODEL_SERVER_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
ENV_GPU_LAYOUT = "MLOPS_GPU_LAYOUT"
ENV_GPU_DEVICES = "MLOPS_GPU_DEVICES"


@_spec
class GpuLayoutSpec:
    """How the model uses its instance's GPUs (``instance_types.GPU_LAYOUTS``)."""

    layout: Literal[GPU_LAYOUTS]
    model_memory_gib: Annotated[float, Field(gt=0, le=4096)]

    def environment(self, instance_type: str) -> dict[str, str]:
        """The container variables that carry the layout: workers, layout and the devices to use."""
        gpus = INSTANCE_TYPES[instance_type].gpus
        return {
            ENV_MODEL_SERVER_WORKERS: str(gpu_model_server_workers(instance_type, self.layout)),
            ENV_GPU_LAYOUT: self.layout,
            ENV_GPU_DEVICES: ",".join(str(device) for device in range(gpus)),
        }


@_spec
class EndpointSpec:
    """One endpoint the deployer owns, fed by one model package group (``settings.deployer.DeployerSettings``
    holds the list)."""

    name: Name
    model_package_group: Name
    variants: VariantLayout
    execution_role_arn: matching(_ROLE_ARN_RE, "an IAM role ARN")
    challenger_initial_weight: float = 0.0
    shadow: bool = False
    data_capture: DataCaptureSpec | None = None
    kms_key_arn: KmsKeyArn | None = None
    vpc: VpcSpec | None = None
    guardrails: GuardrailSpec = field(default_factory=GuardrailSpec)
    tags: dict[str, Any] = field(default_factory=dict)
    # Serve with this image instead of the package's (custom serving stacks, e.g. graph neural
    # networks); the package still provides the model artifacts and environment. An ECR URI
    # (ECR_IMAGE_RE, checked by the config) or an image asset's (a token at synthesis).
    image_uri: ResourceId | None = None
    # Multi-GPU serving: the layout's variables go into the model's container environment.
    gpu_layout: GpuLayoutSpec | None = None

    def __post_init__(self) -> None:
        weight = self.challenger_initial_weight
        if not 0.0 <= weight <= 1.0:
            raise InvalidEndpointSpec(
                "challenger_initial_weight", f"must be a number from 0 to 1, got {weight!r}"
            )
        self._check_layout()
        self._check_guardrails()
        self._check_tags()
        self._check_gpu_layout()

    @property
    def gpu_instance_type(self) -> str:
        """The champion's instance type, whose GPUs the layout's variables describe."""
        return self.variants.champion.instance_type

    def _check_gpu_layout(self) -> None:
        gpu = self.gpu_layout
        if gpu is None:
            return
        if not self.variants.champion.instance_based:
            raise InvalidEndpointSpec("gpu_layout", f"{self.variants.kind} endpoints have no GPUs")
        sizings = [("champion", self.variants.champion), ("challenger", self.variants.challenger_sizing)]
        for role, sizing in sizings:
            problem = gpu_layout_problem(sizing.instance_type, gpu.layout, gpu.model_memory_gib)
            if problem:
                raise InvalidEndpointSpec("gpu_layout", f"the {role}: {problem}")
        # A model's environment is fixed when it is created, and a challenger's model can become the
        # champion's (promotion): both sizings must offer the same devices.
        counts = {INSTANCE_TYPES[sizing.instance_type].gpus for _, sizing in sizings}
        if len(counts) > 1:
            raise InvalidEndpointSpec(
                "gpu_layout",
                f"the champion ({self.variants.champion.instance_type}) and challenger "
                f"({self.variants.challenger_sizing.instance_type}) must have the same number of GPUs",
            )

    @classmethod
    def from_dict(cls, data: object) -> EndpointSpec:
        """Strict: unknown keys, missing keys, wrong types (a JSON ``true`` is not a count) are errors."""
        return parse(cls, data, InvalidEndpointSpec)

    def to_dict(self) -> dict[str, Any]:
        return dump(self)

    def _check_layout(self) -> None:
        kind, weight = self.variants.champion, self.challenger_initial_weight
        tag = kind.kind
        if not kind.live_challenger:
            rule = kind.one_variant_rule
            if self.variants.challenger is not None:
                raise InvalidEndpointSpec("variants.challenger", f"not allowed: {rule}")
            if weight != 0:
                raise InvalidEndpointSpec(
                    "challenger_initial_weight",
                    f"must be 0 for {article(tag)} {tag} endpoint (a new package replaces it): {rule}",
                )
            if self.shadow:
                raise InvalidEndpointSpec("shadow", f"not allowed: {rule}")
        if not kind.data_capture and self.data_capture is not None and self.data_capture.enabled:
            raise InvalidEndpointSpec(
                "data_capture", f"{tag} variants do not support data capture: set data_capture: null (or enabled: false)"
            )
        if not kind.vpc and self.vpc is not None:
            raise InvalidEndpointSpec("vpc", f"{tag} endpoints do not support a VPC configuration")
        if self.shadow:
            if weight == 0:
                raise InvalidEndpointSpec(
                    "challenger_initial_weight",
                    "must be above 0 with shadow: it is the share of requests copied to the shadow "
                    "challenger",
                )
        elif weight >= 1:
            raise InvalidEndpointSpec(
                "challenger_initial_weight",
                "must be below 1 for a live split (the champion keeps 1 - weight); use 0 to replace the "
                "champion directly",
            )
        if weight == 0 and self.variants.challenger is not None:
            raise InvalidEndpointSpec(
                "variants.challenger",
                "is never used: challenger_initial_weight 0 replaces the champion directly",
            )

    def _check_guardrails(self) -> None:
        mode = self.guardrails.mode
        if mode == "ALL_AT_ONCE":
            return
        if not self.variants.champion.instance_based:
            raise InvalidEndpointSpec(
                "guardrails.mode",
                f"{mode} shifts traffic by share of the instance fleet, which {article(self.variants.kind)} "
                f"{self.variants.kind} endpoint does not have; use ALL_AT_ONCE (the baking period and alarms "
                "still apply)",
            )
        sizings = [("champion", self.variants.champion)]
        if self.challenger_initial_weight > 0:
            sizings.append(("challenger", self.variants.challenger_sizing))
        for role, sizing in sizings:
            count = getattr(sizing, "initial_instance_count", 0)
            if count < 2:
                raise InvalidEndpointSpec(
                    "guardrails.mode",
                    f"{mode} needs at least 2 instances per variant (the first step is at most 50% of the "
                    f"variant's instances); the {role} has {count}",
                )

    def _check_tags(self) -> None:
        limit = MAX_TAGS - len(RESERVED_TAG_KEYS)
        if len(self.tags) > limit:
            raise InvalidEndpointSpec(
                "tags", f"at most {limit} tags (the deployer adds {len(RESERVED_TAG_KEYS)})"
            )
        for key, value in self.tags.items():
            if not 1 <= len(key) <= 128 or not _tag_text_ok(key):
                raise InvalidEndpointSpec(
                    f"tags.{key}", "tag keys are 1-128 letters, digits, spaces and _.:/=+-@"
                )
            if key.lower().startswith("aws:"):
                raise InvalidEndpointSpec(f"tags.{key}", "the aws: prefix is reserved by AWS")
            if key in RESERVED_TAG_KEYS:
                raise InvalidEndpointSpec(f"tags.{key}", "is set by the deployer itself")
            if not isinstance(value, str) or len(value) > 256 or not _tag_text_ok(value):
                raise InvalidEndpointSpec(
                    f"tags.{key}",
                    "tag values are strings of at most 256 letters, digits, spaces and _.:/=+-@",
                )


def specs_for_group(specs: Iterable[EndpointSpec], group: str) -> tuple[EndpointSpec, ...]:
    """The specs fed by ``group`` (SageMaker lower-cases group names in ARNs: compare case-insensitively)."""
    return tuple(spec for spec in specs if spec.model_package_group.lower() == group.lower())


# --- the approved package and the approval event ------------------------------------------------


@dataclass(frozen=True)
class PackageContainer:
    image: str
    model_data_url: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    model_data_source: Mapping[str, Any] | None = None

    def request(self) -> dict[str, Any]:
        """The ``ContainerDefinition`` of CreateModel."""
        container: dict[str, Any] = {"Image": self.image}
        if self.model_data_url:
            container["ModelDataUrl"] = self.model_data_url
        if self.model_data_source:
            container["ModelDataSource"] = _plain(self.model_data_source)
        if self.environment:
            container["Environment"] = dict(sorted(self.environment.items()))
        return container


@dataclass(frozen=True)
class ApprovedPackage:
    """A model package version as DescribeModelPackage returns it (the parts deployment needs)."""

    arn: str
    group: str
    version: int
    containers: tuple[PackageContainer, ...]
    approval_status: str = "Approved"
    supported_realtime_instance_types: tuple[str, ...] = ()
    supported_content_types: tuple[str, ...] = ()
    supported_response_mime_types: tuple[str, ...] = ()

    @property
    def image_uri(self) -> str:
        return self.containers[0].image

    @property
    def model_data_url(self) -> str | None:
        return self.containers[0].model_data_url

    @property
    def environment(self) -> Mapping[str, str]:
        return self.containers[0].environment

    @classmethod
    def from_describe_response(cls, response: Mapping[str, Any]) -> ApprovedPackage:
        """Build from a ``DescribeModelPackage`` response; ``ValueError`` if it cannot be deployed."""
        arn = response.get("ModelPackageArn")
        if not arn or not isinstance(arn, str):
            raise ValueError("DescribeModelPackage response has no ModelPackageArn")
        parsed = parse_model_package_arn(arn)
        group = response.get("ModelPackageGroupName") or (parsed[0] if parsed else None)
        version = response.get("ModelPackageVersion") or (parsed[1] if parsed else None)
        if not group or not isinstance(version, int):
            raise ValueError(f"{arn} is not a versioned model package (no group and version)")
        spec = response.get("InferenceSpecification") or {}
        containers = tuple(
            PackageContainer(
                image=container["Image"],
                model_data_url=container.get("ModelDataUrl"),
                environment=dict(container.get("Environment") or {}),
                model_data_source=container.get("ModelDataSource"),
            )
            for container in spec.get("Containers") or ()
            if container.get("Image")
        )
        if not containers:
            raise ValueError(f"{arn} has no inference container image")
        return cls(
            arn=arn,
            group=group,
            version=version,
            containers=containers,
            approval_status=response.get("ModelApprovalStatus") or "PendingManualApproval",
            supported_realtime_instance_types=tuple(
                spec.get("SupportedRealtimeInferenceInstanceTypes") or ()
            ),
            supported_content_types=tuple(spec.get("SupportedContentTypes") or ()),
            supported_response_mime_types=tuple(spec.get("SupportedResponseMIMETypes") or ()),
        )


def parse_model_package_arn(arn: str) -> tuple[str, int] | None:
    """``(group, version)`` of a versioned model package ARN (group as in the ARN: lower case)."""
    match = _PACKAGE_ARN_RE.match(arn or "")
    if not match:
        return None
    return match.group("group"), int(match.group("version"))


class _PackageDetail(BaseModel):
    model_config = AWS

    ModelPackageArn: str = Field(min_length=1)
    ModelPackageGroupName: str | None = None
    ModelPackageVersion: int | None = None
    ModelApprovalStatus: str | None = None


class _PackageStateChange(BaseModel):
    model_config = AWS

    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    id: str = Field(min_length=1)
    detail: _PackageDetail


@dataclass(frozen=True)
class ApprovalEvent:
    """The parts of a "SageMaker Model Package State Change" event the deployer uses."""

    event_id: str
    model_package_arn: str
    group: str
    version: int | None
    approval_status: str

    @classmethod
    def from_eventbridge(cls, event: object) -> ApprovalEvent:
        """Group and version come from the ARN when the detail lacks them."""
        change = parse_event(_PackageStateChange, event, InvalidEvent)
        detail = change.detail
        parsed = parse_model_package_arn(detail.ModelPackageArn)
        group = detail.ModelPackageGroupName or (parsed[0] if parsed else None)
        if not group:
            raise InvalidEvent("detail.ModelPackageGroupName is missing and the ARN is not versioned")
        version = detail.ModelPackageVersion if detail.ModelPackageVersion is not None else (
            parsed[1] if parsed else None
        )
        return cls(change.id, detail.ModelPackageArn, group, version, detail.ModelApprovalStatus or "")


# --- the current state of an endpoint -----------------------------------------------------------


@dataclass(frozen=True)
class DeployedVariant:
    name: str
    model_name: str
    model_package_arn: str | None
    weight: float
    instance_type: str | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint, DescribeEndpointConfig and the models' tags say about an endpoint."""

    name: str
    status: str
    config_name: str
    variants: tuple[DeployedVariant, ...]
    shadow_variants: tuple[DeployedVariant, ...] = ()
    kind: str = "realtime"  # the tag of the kind that recognises it (variant_kinds.kind_of_endpoint)
    managed: bool = True
    failure_reason: str | None = None

    def variant(self, name: str) -> DeployedVariant | None:
        """The production or shadow variant called ``name``."""
        return next((v for v in (*self.variants, *self.shadow_variants) if v.name == name), None)

    @property
    def layout(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(production variant names, shadow variant names), each sorted."""
        return tuple(sorted(v.name for v in self.variants)), tuple(
            sorted(v.name for v in self.shadow_variants)
        )

    @classmethod
    def from_descriptions(
        cls,
        endpoint: Mapping[str, Any],
        config: Mapping[str, Any],
        model_package_arns: Mapping[str, str | None],
        endpoint_tags: Mapping[str, str],
    ) -> EndpointState:
        """Combine DescribeEndpoint, DescribeEndpointConfig, each model's package ARN and the endpoint's tags.

        Live weights and instance counts come from the endpoint (they change with
        UpdateEndpointWeightsAndCapacities and autoscaling); model names and sizing from the config.
        """

        def variants(key: str) -> tuple[DeployedVariant, ...]:
            live = {v.get("VariantName"): v for v in endpoint.get(key) or ()}
            result = []
            for configured in config.get(key) or ():
                name = configured["VariantName"]
                current = live.get(name, {})
                model_name = configured.get("ModelName", "")
                result.append(
                    DeployedVariant(
                        name=name,
                        model_name=model_name,
                        model_package_arn=model_package_arns.get(model_name),
                        weight=float(
                            current.get("CurrentWeight", configured.get("InitialVariantWeight", 1.0))
                        ),
                        instance_type=configured.get("InstanceType"),
                        instance_count=current.get(
                            "CurrentInstanceCount", configured.get("InitialInstanceCount")
                        ),
                    )
                )
            return tuple(result)

        return cls(
            name=endpoint["EndpointName"],
            status=endpoint.get("EndpointStatus", ""),
            config_name=endpoint.get("EndpointConfigName", config.get("EndpointConfigName", "")),
            variants=variants("ProductionVariants"),
            shadow_variants=variants("ShadowProductionVariants"),
            kind=kind_of_endpoint({}, config),
            managed=endpoint_tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE,
            failure_reason=endpoint.get("FailureReason"),
        )


def model_package_arn_of(model: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
    """The package a model was created from: the deployer's tag, else a container's ModelPackageName ARN."""
    if tags.get(PACKAGE_ARN_TAG):
        return tags[PACKAGE_ARN_TAG]
    containers = [model.get("PrimaryContainer") or {}, *(model.get("Containers") or ())]
    for container in containers:
        name = container.get("ModelPackageName")
        if isinstance(name, str) and parse_model_package_arn(name):
            return name
    return None


def previous_config_name(state: EndpointState | None) -> str | None:
    """The config to roll back to after a deployment: the one the endpoint runs before it."""
    return None if state is None else state.config_name


def rollback_command(endpoint_name: str, config_name: str) -> str:
    """The one-line manual rollback to ``config_name`` (keeps the live weights and instance counts)."""
    return (
        f"aws sagemaker update-endpoint --endpoint-name {endpoint_name} "
        f"--endpoint-config-name {config_name} --retain-all-variant-properties"
    )


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One SageMaker API call: the operation name and its exact request parameters (boto3 kwargs)."""

    operation: str
    params: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "params": _plain(self.params)}


@dataclass(frozen=True)
class DeploymentPlan:
    endpoint_name: str
    model_package_arn: str
    action: str
    reason: str
    calls: tuple[ApiCall, ...] = ()
    previous_config_name: str | None = None
    new_config_name: str | None = None
    guardrails: bool = False
    shadow: bool = False
    notes: tuple[str, ...] = ()
    planned_at: str = ""

    @property
    def is_noop(self) -> bool:
        return self.action == ACTION_NOOP

    def call(self, operation: str) -> ApiCall | None:
        """The first call of ``operation``, if any."""
        return next((call for call in self.calls if call.operation == operation), None)

    @property
    def rollback(self) -> str | None:
        """The manual rollback command for this deployment (``None`` for a new endpoint or a no-op)."""
        if self.is_noop or not self.previous_config_name:
            return None
        return rollback_command(self.endpoint_name, self.previous_config_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint_name,
            "model_package_arn": self.model_package_arn,
            "action": self.action,
            "reason": self.reason,
            "calls": [call.to_dict() for call in self.calls],
            "previous_config_name": self.previous_config_name,
            "new_config_name": self.new_config_name,
            "guardrails": self.guardrails,
            "shadow": self.shadow,
            "notes": list(self.notes),
            "planned_at": self.planned_at,
            "rollback": self.rollback,
        }


def resource_name(endpoint_name: str, version: int, kind: str, payload: Mapping[str, Any]) -> str:
    """A deterministic SageMaker name (<= 63 characters): ``<endpoint>-v<version>-<kind><hash8>``.

    ``kind`` is ``"m"`` (model) or ``"c"`` (endpoint config); the hash is the first 8 hex digits of
    SHA-256 over the endpoint name, the kind and the canonical JSON of ``payload`` (the request
    without its name and tags). The same inputs give the same name, so a retried event creates
    nothing new; any change of the request (image, sizing, weights, champion...) gives a new name,
    because SageMaker models and endpoint configs are immutable. The endpoint name is cut to fit
    (the hash keeps truncated names of different endpoints apart).
    """
    digest = hashlib.sha256(
        _canonical_json({"endpoint": endpoint_name, "kind": kind, "request": payload}).encode()
    ).hexdigest()[:8]
    suffix = f"-v{version}-{kind}{digest}"
    base = endpoint_name[: MAX_NAME_LENGTH - len(suffix)].rstrip("-")
    return f"{base}{suffix}"


_GPU_IMAGE_RE = re.compile(
    r"(?:^|[-_:/.])(?:gpu|cu\d{2,3}|tgi|tensorrt|trtllm)(?=$|[-_:/.\d])", re.IGNORECASE
)
_NEURON_IMAGE_RE = re.compile(r"neuron", re.IGNORECASE)


def image_accelerator(image: str) -> str | None:
    """``"gpu"`` or ``"neuron"`` when the image name or tag says it needs one, else ``None``.

    A heuristic over the repository and tag (the registry host is ignored): Deep Learning Container
    tags carry ``gpu``/``cuNNN``, TGI and TensorRT-LLM images are GPU-only, and Neuron images say
    ``neuron``/``neuronx``. An image that does not say so may still need a GPU; this only catches
    the evident mismatches before SageMaker spends 10 minutes failing the endpoint.
    """
    path = image.split("/", 1)[1] if "/" in image else image
    if _NEURON_IMAGE_RE.search(path):
        return "neuron"
    if _GPU_IMAGE_RE.search(path):
        return "gpu"
    return None


def plan_deployment(
    current: EndpointState | None, package: ApprovedPackage, spec: EndpointSpec, now: datetime
) -> DeploymentPlan:
    """The deployment of ``package`` on ``spec``'s endpoint given its ``current`` state (``None``: absent).

    Raises :class:`EndpointBusy` (retryable) when the endpoint is in a transient state and
    :class:`CannotPlan` for every other combination that cannot be deployed. ``now`` only stamps
    the plan; it never enters names or requests, so a retry plans the same calls.
    """
    planned_at = _iso(now)
    endpoint = spec.name
    if package.approval_status != "Approved":
        raise CannotPlan(endpoint, f"model package {package.arn} is {package.approval_status}, not Approved")
    if package.group.lower() != spec.model_package_group.lower():
        raise CannotPlan(
            endpoint,
            f"model package group {package.group} does not feed this endpoint ({spec.model_package_group})",
        )

    if current is not None:
        _check_endpoint_can_change(current, spec)
        skip = _already_done(current, package)
        if skip is not None:
            return DeploymentPlan(
                endpoint,
                package.arn,
                ACTION_NOOP,
                skip,
                previous_config_name=current.config_name,
                planned_at=planned_at,
            )

    builder = _PlanBuilder(current, package, spec)
    return builder.build(planned_at)


def plan_promotion(
    current: EndpointState | None,
    kept: ApprovedPackage,
    retired_model_package_arn: str | None,
    spec: EndpointSpec,
    now: datetime,
) -> DeploymentPlan:
    """After a decided experiment: ``kept``'s model becomes the sole ``champion`` at 100 % and every
    other variant (the retired one) is removed from the endpoint, with the spec's champion sizing.

    No-op when the endpoint already runs ``kept`` alone, when ``kept`` is no longer on the endpoint,
    or when the challenger slot now holds another package than ``retired_model_package_arn`` (a
    later approval started a new experiment: it is not retired). The rollback command returns to
    the config before the promotion, i.e. the previous champion as the champion.
    """
    planned_at = _iso(now)
    if current is None:
        raise CannotPlan(spec.name, "the endpoint does not exist: there is nothing to promote")
    _check_endpoint_can_change(current, spec)

    def noop(reason: str) -> DeploymentPlan:
        return DeploymentPlan(spec.name, kept.arn, ACTION_NOOP, reason, previous_config_name=current.config_name,
                              planned_at=planned_at)

    everything = (*current.variants, *current.shadow_variants)
    kept_variant = next((v for v in everything if v.model_package_arn == kept.arn), None)
    if kept_variant is None:
        return noop(f"superseded: {kept.arn} is no longer deployed on {spec.name}")
    others = [v for v in everything if v is not kept_variant]
    if not others and kept_variant.name == CHAMPION:
        return noop(f"already promoted: {kept.arn} is the sole champion of {spec.name}")
    if any(v.model_package_arn != retired_model_package_arn for v in others):
        return noop(
            f"a newer experiment runs on {spec.name} ("
            + ", ".join(f"{v.name} {v.model_package_arn or v.model_name}" for v in others)
            + f"): {retired_model_package_arn or 'the decided challenger'} is no longer there to retire"
        )
    return _PlanBuilder(current, kept, spec).promotion(kept_variant, planned_at)


def _check_endpoint_can_change(current: EndpointState, spec: EndpointSpec) -> None:
    name = current.name
    if current.status in BUSY_STATUSES:
        raise EndpointBusy(
            name, f"the endpoint is {current.status}; the deployment is retried once it settles"
        )
    if current.status != IN_SERVICE:
        advice = {
            "Failed": "delete the endpoint (aws sagemaker delete-endpoint) and approve the package again",
            "UpdateRollbackFailed": (
                "the last update could not be rolled back; fix the endpoint by hand first"
            ),
            "OutOfService": "the endpoint is out of service; bring it back or delete it first",
            "Deleting": "the endpoint is being deleted; approve the package again once it is gone",
        }.get(current.status, "only an InService endpoint can be updated")
        detail = f" ({current.failure_reason})" if current.failure_reason else ""
        raise CannotPlan(name, f"the endpoint is {current.status or 'in an unknown state'}{detail}: {advice}")
    if not current.managed:
        raise CannotPlan(
            name,
            f"the endpoint exists but was not created by the deployer (no {MANAGED_BY_TAG}="
            f"{MANAGED_BY_VALUE} tag); delete it, rename the spec, or tag it to hand it over",
        )
    production, shadow = current.layout
    if (
        CHAMPION not in production
        or not set(production) <= {CHAMPION, CHALLENGER}
        or not set(shadow) <= {CHALLENGER}
    ):
        raise CannotPlan(
            name,
            f"unexpected variant layout (production {list(production)}, shadow {list(shadow)}); the deployer "
            f"manages '{CHAMPION}' and '{CHALLENGER}' only",
        )
    if current.kind != spec.variants.kind:
        raise CannotPlan(
            name,
            f"the endpoint is {current.kind} but the spec asks for {spec.variants.kind}; the deployer "
            "does not convert an endpoint between kinds: delete it (or use a new name) and approve the "
            "package again",
        )


def _already_done(current: EndpointState, package: ApprovedPackage) -> str | None:
    for variant in (*current.variants, *current.shadow_variants):
        if variant.model_package_arn == package.arn:
            role = "shadow challenger" if variant in current.shadow_variants else variant.name
            return (
                f"already deployed: {package.arn} is the {role} of {current.name} "
                f"(config {current.config_name})"
            )
    newer = []
    for variant in (*current.variants, *current.shadow_variants):
        parsed = parse_model_package_arn(variant.model_package_arn or "")
        if parsed and parsed[0].lower() == package.group.lower() and parsed[1] > package.version:
            newer.append((parsed[1], variant.name))
    if newer:
        version, role = max(newer)
        return (
            f"superseded: version {version} of {package.group} is already deployed as the {role}; "
            f"version {package.version} is older and is not deployed"
        )
    return None


class _PlanBuilder:
    def __init__(self, current: EndpointState | None, package: ApprovedPackage, spec: EndpointSpec) -> None:
        self.current = current
        self.package = package
        self.spec = spec
        self.notes: list[str] = []

    def build(self, planned_at: str) -> DeploymentPlan:
        current, spec, package = self.current, self.spec, self.package
        weight = spec.challenger_initial_weight
        model_call = self._create_model()
        new_model = model_call.params["ModelName"]
        shadow: list[dict[str, Any]] = []

        if current is None:
            action, reason = ACTION_CREATE, f"create {spec.name} with {package.arn} as its champion"
            self._check_compatible(spec.variants.champion, "champion")
            production = [self._variant(CHAMPION, new_model, spec.variants.champion, 1.0)]
        elif not spec.variants.champion.live_challenger or weight == 0:
            action = ACTION_REPLACE_CHAMPION
            reason = f"replace the champion of {spec.name} with {package.arn}"
            self._check_compatible(spec.variants.champion, "champion")
            production = [self._variant(CHAMPION, new_model, spec.variants.champion, 1.0, keep_capacity=True)]
            dropped = current.variant(CHALLENGER)
            if dropped is not None:
                self.notes.append(f"the challenger ({dropped.model_name}) is removed with this deployment")
        else:
            previous = current.variant(CHALLENGER)
            incumbent = self._incumbent()
            if incumbent is not current.variant(CHAMPION):
                previous = None  # the challenger won: it is the champion the new package is tried against
            action = ACTION_REPLACE_CHALLENGER if previous else ACTION_ADD_CHALLENGER
            where = (
                f"shadow challenger receiving a copy of {weight:.0%} of the requests"
                if spec.shadow
                else f"challenger at {weight:.0%} of the traffic"
            )
            reason = f"deploy {package.arn} as the {where} of {spec.name}"
            if previous is not None:
                reason += f", replacing {previous.model_package_arn or previous.model_name}"
            self._check_compatible(spec.variants.challenger_sizing, "challenger")
            challenger_weight = round(weight, 6)
            champion_variant = self._variant(
                CHAMPION,
                incumbent.model_name,
                spec.variants.champion,
                1.0 if spec.shadow else round(1.0 - weight, 6),
                keep_capacity=True,
            )
            challenger_variant = self._variant(
                CHALLENGER, new_model, spec.variants.challenger_sizing, challenger_weight
            )
            production = [champion_variant]
            if spec.shadow:
                shadow = [challenger_variant]
            else:
                production.append(challenger_variant)

        if len(production) + len(shadow) > MAX_VARIANTS:
            raise CannotPlan(spec.name, f"an endpoint config holds at most {MAX_VARIANTS} variants")
        config_call = self._create_endpoint_config(production, shadow)
        config_name = config_call.params["EndpointConfigName"]
        calls = [model_call, config_call]
        guardrails = False
        if current is None:
            calls.append(
                ApiCall(
                    "CreateEndpoint",
                    {"EndpointName": spec.name, "EndpointConfigName": config_name, "Tags": self._tags()},
                )
            )
        else:
            update: dict[str, Any] = {"EndpointName": spec.name, "EndpointConfigName": config_name}
            new_layout = (
                tuple(sorted(v["VariantName"] for v in production)),
                tuple(sorted(v["VariantName"] for v in shadow)),
            )
            if new_layout != current.layout:
                self.notes.append(
                    "no DeploymentConfig: the variant names change "
                    f"({_layout_text(current.layout)} -> {_layout_text(new_layout)}) and SageMaker's "
                    "blue/green guardrails require the same variant names; the update shifts all at once"
                )
            elif shadow:
                self.notes.append(
                    "no DeploymentConfig: the shadow challenger serves no live traffic and the "
                    "champion's model is unchanged"
                )
            else:
                update["DeploymentConfig"] = spec.guardrails.deployment_config()
                guardrails = True
            calls.append(ApiCall("UpdateEndpoint", update))
        return DeploymentPlan(
            endpoint_name=spec.name,
            model_package_arn=package.arn,
            action=action,
            reason=reason,
            calls=tuple(calls),
            previous_config_name=previous_config_name(current),
            new_config_name=config_name,
            guardrails=guardrails,
            shadow=bool(shadow),
            notes=tuple(self.notes),
            planned_at=planned_at,
        )

    def _incumbent(self) -> DeployedVariant:
        """The variant a new challenger is tried against: the champion, unless the live challenger
        carries all the traffic and the champion none (a decided experiment whose promotion has not
        been applied yet, or a promotion by hand): then the challenger's model is the champion."""
        assert self.current is not None
        champion, challenger = self.current.variant(CHAMPION), self.current.variant(CHALLENGER)
        assert champion is not None  # checked by _check_endpoint_can_change
        if challenger is not None and challenger in self.current.variants and champion.weight == 0 < challenger.weight:
            self.notes.append(
                f"the challenger ({challenger.model_package_arn or challenger.model_name}) carries all the "
                "traffic: it is kept as the champion and the former champion is retired"
            )
            return challenger
        return champion

    def promotion(self, kept: DeployedVariant, planned_at: str) -> DeploymentPlan:
        """The champion-only config running ``kept``'s model at 100 % (see :func:`plan_promotion`)."""
        current, spec = self.current, self.spec
        assert current is not None
        retired = [v for v in (*current.variants, *current.shadow_variants) if v is not kept]
        production = [self._variant(CHAMPION, kept.model_name, spec.variants.champion, 1.0,
                                    keep_capacity=kept.name == CHAMPION)]
        config_call = self._create_endpoint_config(production, [])
        if kept.name != CHAMPION:
            self.notes.append(
                "no DeploymentConfig: the variant names change (the challenger's model moves to the "
                "champion variant, which SageMaker guardrails refuse); it already served all the traffic"
            )
        else:
            self.notes.append("no DeploymentConfig: the variant names change (the challenger is removed)")
        reason = (
            f"promote {self.package.arn} to the sole champion of {spec.name} at 100%, retiring "
            + ", ".join(f"the {v.name} ({v.model_package_arn or v.model_name})" for v in retired)
        )
        return DeploymentPlan(
            endpoint_name=spec.name,
            model_package_arn=self.package.arn,
            action=ACTION_PROMOTE,
            reason=reason,
            calls=(config_call, ApiCall("UpdateEndpoint", {"EndpointName": spec.name,
                                                           "EndpointConfigName": config_call.params["EndpointConfigName"]})),
            previous_config_name=current.config_name,
            new_config_name=config_call.params["EndpointConfigName"],
            notes=tuple(self.notes),
            planned_at=planned_at,
        )

    # -- compatibility of the package with where it goes
    def _check_compatible(self, sizing: VariantSpec, role: str) -> None:
        package, endpoint = self.package, self.spec.name
        accelerators = {image_accelerator(container.image) for container in package.containers} - {None}
        if not sizing.instance_based:
            if accelerators:
                raise CannotPlan(
                    endpoint,
                    f"{package.arn} uses a {'/'.join(sorted(accelerators))} image ({package.image_uri}) but "
                    f"{sizing.kind} endpoints have no accelerators",
                )
            return
        instance = INSTANCE_TYPES[sizing.instance_type]
        supported = package.supported_realtime_instance_types
        if supported and sizing.instance_type not in supported:
            raise CannotPlan(
                endpoint,
                f"the {role} runs on {sizing.instance_type} but {package.arn} supports only "
                f"{', '.join(supported)} for real-time inference",
            )
        if "gpu" in accelerators and not instance.has_gpu:
            raise CannotPlan(
                endpoint,
                f"{package.arn} uses a GPU image ({package.image_uri}) but the {role} runs on "
                f"{sizing.instance_type}, which has no GPU",
            )
        if "neuron" in accelerators and not instance.has_neuron:
            raise CannotPlan(
                endpoint,
                f"{package.arn} uses a Neuron image ({package.image_uri}) but the {role} runs on "
                f"{sizing.instance_type}, which has no Inferentia/Trainium chip",
            )
        if not accelerators and (instance.has_gpu or instance.has_neuron):
            self.notes.append(
                f"the {role} runs on accelerated {sizing.instance_type} but the image does not look like it "
                "uses the accelerator"
            )

    # -- requests
    def _create_model(self) -> ApiCall:
        spec, package = self.spec, self.package
        request: dict[str, Any] = {"ExecutionRoleArn": spec.execution_role_arn}
        containers = [container.request() for container in package.containers]

        def only_container(what: str) -> dict[str, Any]:
            if len(containers) != 1:
                raise CannotPlan(spec.name, f"{package.arn} has {len(containers)} containers; {what} "
                                            "single-container packages only")
            return containers[0]

        if spec.image_uri is not None:
            only_container("an image override (image_uri) replaces the image of")["Image"] = spec.image_uri
        if spec.gpu_layout is not None:
            container = only_container("a GPU layout describes the devices of")
            # The package's own variables stay; the layout's override any of the same name.
            environment = {**container.get("Environment", {}),
                           **spec.gpu_layout.environment(spec.gpu_instance_type)}
            container["Environment"] = dict(sorted(environment.items()))
        if len(containers) == 1:
            request["PrimaryContainer"] = containers[0]
        else:
            request["Containers"] = containers
        if spec.vpc is not None:
            request["VpcConfig"] = {
                "Subnets": list(spec.vpc.subnet_ids),
                "SecurityGroupIds": list(spec.vpc.security_group_ids),
            }
        name = resource_name(spec.name, package.version, "m", request)
        return ApiCall("CreateModel", {"ModelName": name, **request, "Tags": self._tags(package=True)})

    def _variant(
        self, name: str, model_name: str, sizing: VariantSpec, weight: float, keep_capacity: bool = False
    ) -> dict[str, Any]:
        variant: dict[str, Any] = {
            "VariantName": name,
            "ModelName": model_name,
            "InitialVariantWeight": weight,
        }
        live = self.current.variant(name) if (keep_capacity and self.current is not None) else None
        # The fleet a scaled-out variant runs now, kept when the update does not change its instance type.
        live_count = (
            live.instance_count
            if live is not None and live.instance_type == getattr(sizing, "instance_type", None)
            else None
        )
        return sizing.production_variant(variant, live_count, self.notes.append)

    def _create_endpoint_config(self, production: list[dict], shadow: list[dict]) -> ApiCall:
        spec = self.spec
        request: dict[str, Any] = {"ProductionVariants": production}
        if shadow:
            request["ShadowProductionVariants"] = shadow
        capture = spec.data_capture
        if capture is not None and capture.enabled:
            data_capture: dict[str, Any] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": capture.sampling_percentage,
                "DestinationS3Uri": capture.destination_s3_uri,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            }
            capture_key = capture.kms_key_arn or spec.kms_key_arn
            if capture_key:
                data_capture["KmsKeyId"] = capture_key
            header = {}
            if capture.csv_content_types:
                header["CsvContentTypes"] = list(capture.csv_content_types)
            if capture.json_content_types:
                header["JsonContentTypes"] = list(capture.json_content_types)
            if header:
                data_capture["CaptureContentTypeHeader"] = header
            request["DataCaptureConfig"] = data_capture
        champion = spec.variants.champion
        request.update(champion.endpoint_config(spec.kms_key_arn))
        if spec.kms_key_arn:
            nvme = sorted(
                {v["InstanceType"] for v in (*production, *shadow) if "InstanceType" in v}
                & {name for name, entry in INSTANCE_TYPES.items() if entry.local_nvme}
            )
            if not champion.instance_based:
                self.notes.append(
                    f"no KmsKeyId on the endpoint config: {champion.kind} variants have no ML storage volume"
                )
            elif nvme:
                self.notes.append(
                    f"no KmsKeyId on the endpoint config: {', '.join(nvme)} use local NVMe storage, "
                    "which SageMaker encrypts with a hardware module and for which it rejects a KMS key"
                )
            else:
                request["KmsKeyId"] = spec.kms_key_arn
        name = resource_name(spec.name, self.package.version, "c", request)
        return ApiCall(
            "CreateEndpointConfig", {"EndpointConfigName": name, **request, "Tags": self._tags(package=True)}
        )

    def _tags(self, package: bool = False) -> list[dict[str, str]]:
        tags = {**self.spec.tags, MANAGED_BY_TAG: MANAGED_BY_VALUE, ENDPOINT_TAG: self.spec.name}
        if package:
            tags[PACKAGE_ARN_TAG] = self.package.arn
        return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _layout_text(layout: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    production, shadow = layout
    text = "+".join(production)
    return f"{text} (shadow {'+'.join(shadow)})" if shadow else text


# --- notifications ------------------------------------------------------------------------------


def failure_notification(
    *,
    environment: str,
    endpoint_name: str | None,
    model_package_arn: str,
    reason: str,
    retryable: bool,
    event_id: str | None = None,
) -> tuple[str, str]:
    """``(subject, message)`` for the failure topic: what was deployed where, why it failed, what next."""
    target = endpoint_name or "(no endpoint)"
    subject = f"[{environment}] Deployment to {target} " + ("delayed (will retry)" if retryable else "failed")
    subject = _sns_subject(subject)
    lines = [
        f"Environment: {environment}",
        f"Endpoint: {target}",
        f"Model package: {model_package_arn}",
        f"Reason: {reason}",
    ]
    if retryable:
        lines.append("Next: the event is retried automatically; nothing to do unless this repeats.")
    else:
        lines.append("Next: not retried. Fix the cause, then approve the package again (or a newer version).")
    if event_id:
        lines.append(f"EventBridge event: {event_id}")
    return subject, "\n".join(lines)


def _sns_subject(text: str) -> str:
    """SNS subjects: printable ASCII, no line breaks, at most 100 characters."""
    cleaned = "".join(char if 32 <= ord(char) < 127 else "?" for char in text)
    return cleaned if len(cleaned) <= 100 else cleaned[:97] + "..."


# --- small helpers ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists (JSON-ready, safe to hand to boto3)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
