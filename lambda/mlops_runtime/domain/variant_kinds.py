"""The kinds of endpoint variant (``kind`` of ``serving.endpoints[].variant``): one class each.

A kind's class is the deployer's sizing spec of a variant (a strict pydantic dataclass, like the
rest of ``domain.deployment``) and carries everything else that differs between kinds, so that the
config, the deployer, the scaler and the cost report ask the class instead of testing ``kind``:

- its fields and their rules (:meth:`VariantKind.check_sizing`, run by the spec and by the config);
- the user's shape (:attr:`VariantKind.config_fields`, from which ``mlops_platform.config.models``
  builds ``<Kind>VariantConfig``) and how it becomes the spec (:meth:`VariantKind.spec_fields`);
- what an endpoint of the kind may hold (a challenger, shadow, data capture, a VPC) and whether the
  inference API can invoke it (:attr:`VariantKind.routable`);
- its part of ``CreateEndpointConfig`` (:meth:`VariantKind.production_variant`,
  :meth:`VariantKind.endpoint_config`) and how it is recognised on a live endpoint
  (:meth:`VariantKind.recognises`);
- how it scales (:attr:`VariantKind.scaling`, a :class:`ScalingDimension` the scaler knows) and what
  it bills while idle (instance-hours of its instance type, or :meth:`VariantKind.idle_usage`).

A kind is registered with :func:`variant_kind`; the unions that parse ``kind`` (the deployer's
``VariantSpec``, the config's ``VariantConfig``, the scaler's ``ScalingEntry``) are built from
:data:`KINDS` when their modules are imported. Adding a kind that needs no new AWS resources is a
class here (and its price line in ``cost/prices.yaml`` if it bills by a new unit); see
docs/extending.md, "An endpoint type".

No boto3, no CDK, no ``mlops_platform``: this module ships with the deployer and the scaler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops_runtime.domain.instance_types import INSTANCE_TYPES, known_families
from mlops_runtime.domain.validation import OURS, int_between, matching


class InvalidEndpointSpec(ValueError):
    """An endpoint spec breaks a rule; ``field`` is its dotted path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def spec_dataclass(cls: type) -> Any:
    """A frozen pydantic dataclass with the strict config of the specs the stack writes."""
    return pydantic_dataclass(frozen=True, config=OURS)(cls)


# --- value types shared with domain.deployment ---------------------------------------------------

_S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/\S*)?$")
_SNS_ARN_RE = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[a-zA-Z0-9_.\-]{1,256}$")
S3Uri = matching(_S3_URI_RE, "an s3://bucket/prefix URI", max_length=512)
SnsTopicArn = matching(_SNS_ARN_RE, "an SNS topic ARN")
Timeout = int_between(60, 3600)


def _hosting_instance_type(value: str) -> str:
    """The config's rule (the line shows the value): a type of the instance table."""
    if value not in INSTANCE_TYPES:
        raise ValueError(f"must be a known SageMaker hosting instance type (families: {', '.join(known_families())})")
    return value


def _known_instance_type(value: str) -> str:
    """The spec's rule, the same with the value (the deployer's reasons do not show it otherwise)."""
    try:
        return _hosting_instance_type(value)
    except ValueError as problem:
        raise ValueError(f"unknown instance type {value!r}: {problem}") from None


InstanceTypeName = Annotated[str, AfterValidator(_known_instance_type)]
HostingInstanceType = Annotated[str, AfterValidator(_hosting_instance_type)]


# --- what the scaler and the config builder need to know ----------------------------------------


@dataclass(frozen=True)
class ScalingDimension:
    """What a kind's instance count tracks (``domain.autoscaling`` owns each dimension's policies).

    ``min_instances``: the fewest instances its target tracking can keep (0: the scaler adds a
    scale-out-from-zero policy); ``target_field``: the scaling entry's field holding the target.
    """

    name: str
    target_field: str
    min_instances: int


# Target tracking on SageMakerVariantInvocationsPerInstance (invocations per minute per instance).
INVOCATIONS = ScalingDimension("invocations", "target_invocations_per_instance", 1)
# Target tracking on ApproximateBacklogSizePerInstance (queued requests per instance), and a
# scale-out-from-zero policy when min_instances is 0.
BACKLOG = ScalingDimension("backlog", "target_backlog_per_instance", 0)


@dataclass(frozen=True)
class SpecContext:
    """What the stack knows about an endpoint that its config does not say (``function_settings``)."""

    endpoint_name: str
    results_prefix: str  # s3:// prefix the endpoint's role may write results to
    notification_topic_arn: str


# --- the kinds -----------------------------------------------------------------------------------

KINDS: dict[str, type[VariantKind]] = {}
"""Every registered kind by its ``kind`` tag, in registration order (the order errors list them)."""


def variant_kind(cls: type) -> Any:
    """Register a kind's class (its ``kind`` field's default is the tag) as a spec dataclass.

    Refused at import (so ``make synth`` stops): a tag registered twice, and a kind that does not say
    how SageMaker sizes it (``production_variant``)."""
    built = spec_dataclass(cls)
    tag = built.kind_tag()
    if tag in KINDS:
        raise TypeError(f"variant kind {tag!r} is registered twice ({KINDS[tag].__name__}, {cls.__name__})")
    if built.production_variant is VariantKind.production_variant:
        raise TypeError(f"variant kind {tag!r} ({cls.__name__}) must define production_variant (its sizing keys "
                        "of CreateEndpointConfig's ProductionVariants)")
    if not built.title:
        built.title = tag
    KINDS[tag] = built
    return built


class VariantKind:
    """The interface of a kind (class attributes and hooks); a kind subclasses this or
    :class:`InstanceVariant` and is decorated with :func:`variant_kind`."""

    # Each kind has a field `kind: Literal["<tag>"] = "<tag>"`: the tag the registry and the unions use.
    title: ClassVar[str] = ""  # in messages and the cost report: "real-time", "asynchronous"
    config_doc: ClassVar[str] = ""  # the docstring of the config's <Kind>VariantConfig
    # Fields of serving.endpoints[].variant besides kind: name -> (type, pydantic Field); the config
    # adds `autoscaling` when the kind scales and `gpus` when it runs on instances.
    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {}
    live_challenger: ClassVar[bool] = True  # can hold a challenger (live or shadow) next to the champion
    one_variant_rule: ClassVar[str] = ""  # why not, when it cannot
    routable: ClassVar[bool] = True  # the inference API invokes it synchronously
    data_capture: ClassVar[bool] = True
    vpc: ClassVar[bool] = True
    scaling: ClassVar[ScalingDimension | None] = None
    default_autoscaling: ClassVar[Mapping[str, Any] | None] = None  # the config's default (None: none)
    autoscaling_doc: ClassVar[str | None] = None
    fallback: ClassVar[bool] = False  # the kind of a live endpoint no other kind recognises
    instance_based: ClassVar[bool] = False  # an InstanceVariant: billed per instance-hour, has a fleet

    @classmethod
    def check_sizing(cls, variant: Any) -> None:
        """Raise :class:`InvalidEndpointSpec` for a rule across fields (``variant``: the spec or the config)."""

    @classmethod
    def spec_fields(cls, variant: Any, context: SpecContext) -> dict[str, Any]:
        """The spec of a config's variant: its fields of the same name (unset ones left out)."""
        names = [name for name in cls.__dataclass_fields__ if name != "kind"]  # type: ignore[attr-defined]
        fields = {name: getattr(variant, name, None) for name in names}
        return {"kind": cls.kind_tag(), **{name: value for name, value in fields.items() if value is not None}}

    @classmethod
    def kind_tag(cls) -> str:
        return cls.__dataclass_fields__["kind"].default  # type: ignore[attr-defined]

    @classmethod
    def recognises(cls, endpoint: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        """Whether a live endpoint (DescribeEndpoint, DescribeEndpointConfig) is of this kind."""
        return False

    def production_variant(self, variant: dict[str, Any], live_count: int | None,
                           note: Callable[[str], None]) -> dict[str, Any]:
        """``variant`` (name, model, weight) completed with this kind's sizing; ``live_count``: the
        instances the variant runs now when the update keeps its capacity."""
        raise NotImplementedError  # every registered kind has its own (variant_kind checks)

    def endpoint_config(self, kms_key_arn: str | None) -> dict[str, Any]:
        """Keys of ``CreateEndpointConfig`` this kind adds (the champion's)."""
        return {}

    @classmethod
    def idle_usage(cls, endpoint: str, variant: Any) -> tuple[list[str], list[str]]:
        """(billed per use, idle cost the price table cannot price) of a kind not billed per instance-hour."""
        return ([f"SageMaker {cls.title} endpoint '{endpoint}': per use"],
                [f"{cls.kind_tag()} endpoint '{endpoint}': the cost report knows no idle price for this kind"])


@spec_dataclass
class InstanceVariant(VariantKind):
    """The sizing shared by the instance-based kinds (real-time and async): billed per instance-hour
    of ``instance_type`` while it runs, shifts traffic by share of the fleet, can run a GPU layout."""

    instance_type: InstanceTypeName
    initial_instance_count: int_between(1, 1000)
    volume_size_gb: int_between(1, 512) | None = None
    model_data_download_timeout_s: Timeout | None = None
    container_startup_health_check_timeout_s: Timeout | None = None

    instance_based: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.check_sizing(self)

    @classmethod
    def check_sizing(cls, variant: Any) -> None:
        entry = INSTANCE_TYPES.get(variant.instance_type)
        if getattr(variant, "volume_size_gb", None) is not None and entry is not None and not entry.supports_volume_size:
            raise InvalidEndpointSpec(
                "volume_size_gb",
                f"{entry.name} has local NVMe storage: volume_size_gb cannot be set (no EBS volume, so SageMaker "
                "rejects VolumeSizeInGB); leave it unset",
            )

    def production_variant(self, variant: dict[str, Any], live_count: int | None,
                           note: Callable[[str], None]) -> dict[str, Any]:
        count = self.initial_instance_count
        if live_count is not None and live_count > count:
            note(f"the {variant['VariantName']} keeps its current {live_count} instances (spec: {count}) so the "
                 "update does not shrink a scaled-out fleet")
            count = live_count
        variant["InstanceType"] = self.instance_type
        variant["InitialInstanceCount"] = count
        if self.volume_size_gb is not None:
            variant["VolumeSizeInGB"] = self.volume_size_gb
        if self.model_data_download_timeout_s is not None:
            variant["ModelDataDownloadTimeoutInSeconds"] = self.model_data_download_timeout_s
        if self.container_startup_health_check_timeout_s is not None:
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = self.container_startup_health_check_timeout_s
        return variant


# The config fields of every instance-based kind (the config caps the count lower than SageMaker).
INSTANCE_CONFIG_FIELDS: Mapping[str, tuple[Any, Any]] = {
    "instance_type": (HostingInstanceType, Field()),
    "initial_instance_count": (int, Field(default=1, ge=1, le=100)),
}


@variant_kind
class RealtimeVariantSpec(InstanceVariant):
    """Instance-based real-time variant."""

    kind: Literal["realtime"] = "realtime"

    title: ClassVar[str] = "real-time"
    config_doc: ClassVar[str] = "Always-on instances (CPU, single- or multi-GPU)."
    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {
        **INSTANCE_CONFIG_FIELDS,
        "volume_size_gb": (int | None, Field(default=None, ge=1, le=512,
                                             description="EBS volume for large models (not on NVMe types like g5).")),
        "model_data_download_timeout_s": (int | None, Field(default=None, ge=60, le=3600)),
        "container_startup_health_check_timeout_s": (int | None, Field(default=None, ge=60, le=3600)),
    }
    scaling: ClassVar[ScalingDimension | None] = INVOCATIONS
    fallback: ClassVar[bool] = True  # neither serverless nor async


def _memory_in_steps(value: int) -> int:
    if value % 1024 or not 1024 <= value <= 6144:
        raise ValueError("must be a multiple of 1024, i.e. 1024-6144 MB in steps of 1024")
    return value


@variant_kind
class ServerlessVariantSpec(VariantKind):
    """Serverless variant: memory 1024-6144 MB in 1024 steps, concurrency 1-200."""

    memory_mb: int_between(1024, 6144)
    max_concurrency: int_between(1, 200)
    provisioned_concurrency: int_between(1, 200) | None = None
    kind: Literal["serverless"] = "serverless"

    title: ClassVar[str] = "serverless"
    config_doc: ClassVar[str] = ("Pay per request, no idle cost (dev default). No GPUs, data capture, VPC or "
                                 "second variant.")
    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {
        "memory_mb": (Annotated[int, AfterValidator(_memory_in_steps)],
                      Field(default=2048, description="1024-6144 in steps of 1024.")),
        "max_concurrency": (int, Field(default=5, ge=1, le=200)),
        "provisioned_concurrency": (int | None, Field(default=None, ge=1, le=200)),
    }
    live_challenger: ClassVar[bool] = False
    one_variant_rule: ClassVar[str] = ("serverless endpoints cannot hold more than one production variant nor a "
                                       "shadow variant: A/B test across two endpoints (each can hold one "
                                       "production variant)")
    data_capture: ClassVar[bool] = False
    vpc: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.check_sizing(self)

    @classmethod
    def check_sizing(cls, variant: Any) -> None:
        try:
            _memory_in_steps(variant.memory_mb)
        except ValueError as problem:
            raise InvalidEndpointSpec("memory_mb", f"{problem}, got {variant.memory_mb}") from None
        provisioned = variant.provisioned_concurrency
        if provisioned is not None and provisioned > variant.max_concurrency:
            raise InvalidEndpointSpec(
                "provisioned_concurrency",
                f"must not exceed max_concurrency ({provisioned} > {variant.max_concurrency})",
            )

    @classmethod
    def recognises(cls, endpoint: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        variants = [*(endpoint.get("ProductionVariants") or ()), *(config.get("ProductionVariants") or ())]
        keys = ("ServerlessConfig", "CurrentServerlessConfig", "DesiredServerlessConfig")
        return any(variant.get(key) for variant in variants for key in keys)

    def production_variant(self, variant: dict[str, Any], live_count: int | None,
                           note: Callable[[str], None]) -> dict[str, Any]:
        serverless = {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            serverless["ProvisionedConcurrency"] = self.provisioned_concurrency
        variant["ServerlessConfig"] = serverless
        return variant

    @classmethod
    def idle_usage(cls, endpoint: str, variant: Any) -> tuple[list[str], list[str]]:
        not_priced = []
        if variant.provisioned_concurrency:
            not_priced.append(
                f"serverless endpoint '{endpoint}': provisioned concurrency {variant.provisioned_concurrency} x "
                f"{variant.memory_mb} MB bills per hour while idle (no price in the table)")
        usage = [f"SageMaker serverless endpoint '{endpoint}' ({variant.memory_mb} MB): per GB-second of "
                 "inference and per GB processed"]
        return usage, not_priced


@variant_kind
class AsyncVariantSpec(InstanceVariant):
    """Instance-based asynchronous-inference variant; results go to S3 (and optionally SNS)."""

    _: KW_ONLY
    output_s3_uri: S3Uri
    failure_s3_uri: S3Uri
    success_topic_arn: SnsTopicArn | None = None
    error_topic_arn: SnsTopicArn | None = None
    max_concurrent_invocations_per_instance: int_between(1, 1000) | None = None
    kind: Literal["async"] = "async"

    title: ClassVar[str] = "asynchronous"
    config_doc: ClassVar[str] = "Queued requests with results in S3; scales to zero instances when idle."
    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {
        **INSTANCE_CONFIG_FIELDS,
        "max_concurrent_invocations_per_instance": (int | None, Field(default=None, ge=1, le=1000)),
        "notify": (bool, Field(default=True, description="Publish success/error to the notifications topic.")),
    }
    live_challenger: ClassVar[bool] = False
    one_variant_rule: ClassVar[str] = ("the deployer keeps async endpoints to one variant (shadow tests exclude "
                                       "async inference)")
    routable: ClassVar[bool] = False
    scaling: ClassVar[ScalingDimension | None] = BACKLOG
    default_autoscaling: ClassVar[Mapping[str, Any] | None] = {
        "min_instances": 0, "max_instances": 2, "target_invocations_per_instance": 5}
    autoscaling_doc: ClassVar[str | None] = (
        "Backlog-based scaling; min 0 means no instance (and no cost) while the queue is empty.")

    @classmethod
    def spec_fields(cls, variant: Any, context: SpecContext) -> dict[str, Any]:
        topic = context.notification_topic_arn if variant.notify else None
        return {**super().spec_fields(variant, context),
                "output_s3_uri": f"{context.results_prefix}/output",
                "failure_s3_uri": f"{context.results_prefix}/failures",
                **({"success_topic_arn": topic, "error_topic_arn": topic} if topic else {})}

    @classmethod
    def recognises(cls, endpoint: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        return bool(endpoint.get("AsyncInferenceConfig") or config.get("AsyncInferenceConfig"))

    def endpoint_config(self, kms_key_arn: str | None) -> dict[str, Any]:
        output: dict[str, Any] = {"S3OutputPath": self.output_s3_uri, "S3FailurePath": self.failure_s3_uri}
        if kms_key_arn:
            output["KmsKeyId"] = kms_key_arn
        topics = {"SuccessTopic": self.success_topic_arn, "ErrorTopic": self.error_topic_arn}
        topics = {key: value for key, value in topics.items() if value}
        if topics:
            output["NotificationConfig"] = topics
        async_config: dict[str, Any] = {"OutputConfig": output}
        if self.max_concurrent_invocations_per_instance is not None:
            async_config["ClientConfig"] = {
                "MaxConcurrentInvocationsPerInstance": self.max_concurrent_invocations_per_instance
            }
        return {"AsyncInferenceConfig": async_config}


# --- lookups -------------------------------------------------------------------------------------


def kind_of_endpoint(endpoint: Mapping[str, Any], config: Mapping[str, Any] | None) -> str:
    """The kind of a live endpoint: the first kind that recognises it, else the fallback kind."""
    config = config or {}
    for tag, cls in KINDS.items():
        if not cls.fallback and cls.recognises(endpoint, config):
            return tag
    return next(tag for tag, cls in KINDS.items() if cls.fallback)


def article(tag: str) -> str:
    """"an" or "a", for messages about a kind ("an async endpoint", "a serverless endpoint")."""
    return "an" if tag[:1].lower() in "aeiou" else "a"
