"""Typed, validated per-environment configuration.

One YAML file per environment (``config/<env>.yaml``) is parsed into :class:`PlatformConfig`
once, in ``app.py``, and passed down to stages, stacks and constructs as props. Every model
forbids unknown fields so that a typo is an error, not a silently ignored setting.

Defaults are part of the contract: each field's description says what the platform does when
the field is left out. ``docs/configuration.md`` is generated from these models.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from functools import lru_cache
from importlib.resources import files
from typing import Annotated, Any, ClassVar, Literal, Union

from monitoring.metrics import QUALITY_METRICS as MONITORING_QUALITY_METRICS
from monitoring.metrics import THRESHOLDS as MONITORING_THRESHOLD_TABLE
from ..paths import REPO_ROOT
from ..pipelines.images import DEFAULT_SKLEARN, DEFAULT_XGBOOST, image_python
from ..runtime_tables import instance_types as _instance_types
from ..runtime_tables import variant_kinds as _variant_kinds
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator,
                      model_validator)

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
_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
_SAGEMAKER_ENDPOINT_PREFIX = "api.sagemaker"
_TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{1,256}$", re.UNICODE)


@lru_cache(maxsize=1)
def sagemaker_regions() -> tuple[str, ...]:
    """Regions where SageMaker is offered, from botocore's bundled endpoint data (offline): the
    regional endpoints of ``api.sagemaker`` (SageMaker's endpoint prefix), as botocore's
    ``get_available_regions("sagemaker")`` lists them. Read directly: a botocore session would
    load SageMaker's whole service model to learn that prefix (~0.2 s of every synthesis)."""
    data = json.loads(files("botocore").joinpath("data", "endpoints.json").read_text(encoding="utf-8"))
    regions = {name for partition in data["partitions"] if partition["partition"] in _PARTITIONS
               for name in partition["services"].get(_SAGEMAKER_ENDPOINT_PREFIX, {}).get("endpoints", {})
               if name in partition["regions"]}
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


_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_FEATURE_NAME = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+ \S+ \S+ \S+ \S+ \S+\))$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_sagemaker_name(value: str) -> str:
    if not _SAGEMAKER_NAME.match(value):
        raise ValueError("must be 1-63 letters, digits and hyphens, starting and ending with a letter or digit")
    return value


def _check_instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ValueError("must be a SageMaker instance type such as ml.m5.xlarge")
    return value


def _check_schedule(value: str) -> str:
    if not _SCHEDULE.match(value):
        raise ValueError("must be an EventBridge Scheduler expression: rate(N unit) or cron(m h dom mon dow year)")
    return value


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    return value


def _check_feature_name(value: str) -> str:
    if not _FEATURE_NAME.match(value):
        raise ValueError("must be 1-64 letters, digits, '-' and '_', starting and ending with a letter or digit")
    return value


SageMakerName = Annotated[str, AfterValidator(_check_sagemaker_name)]
InstanceType = Annotated[str, AfterValidator(_check_instance_type)]
ScheduleExpression = Annotated[str, AfterValidator(_check_schedule)]
Email = Annotated[str, AfterValidator(_check_email)]
FeatureName = Annotated[str, AfterValidator(_check_feature_name)]
RelativePath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-/]+$")]


class BudgetConfig(StrictModel):
    """A monthly AWS Budgets cost budget for the environment, alerting the notifications topic."""

    monthly_limit_usd: float = Field(gt=0, description="Budgeted cost per month, in USD.")
    alert_at_percent: tuple[int, ...] = Field(
        default=(50, 80, 100), description="Alert when actual cost passes these shares of the limit."
    )
    forecast_alert_percent: int | None = Field(
        default=100, ge=1, le=1000, description="Alert when the month's forecast passes this share; off when null."
    )

    @field_validator("alert_at_percent")
    @classmethod
    def _sensible_thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 1 <= v <= 1000 for v in value) or len(set(value)) != len(value):
            raise ValueError("give distinct percentages from 1 to 1000")
        return tuple(sorted(value))


class NotificationsConfig(StrictModel):
    """The environment's SNS topic: model approvals, deployments, alarms, budgets."""

    emails: tuple[Email, ...] = Field(
        default=(), description="Subscribed by e-mail (each address confirms once). None: no subscription."
    )


class ApprovalStatus(str, Enum):
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"


class NewDataTrigger(StrictModel):
    """Start the pipeline when an object lands under a raw-data prefix."""

    prefix: RelativePath = Field(description="Key prefix in the raw-data bucket, e.g. `example/incoming/`.")
    suffix: str = Field(
        default="_SUCCESS",
        description="Only keys ending with this start a run: write a marker object after a complete "
        "drop so that a 1,000-file upload starts one run, not 1,000.",
    )


class PipelineCode(StrictModel):
    """Where the step code comes from (paths relative to the repository root)."""

    preprocess_script: RelativePath = Field(default="training/example_classifier/preprocess.py")
    evaluate_script: RelativePath = Field(default="training/example_classifier/evaluate.py")
    train_source_dir: RelativePath = Field(
        default="training/example_classifier",
        description="Directory packed as sourcedir.tar.gz for the XGBoost container's script mode.",
    )
    train_entry_point: str = Field(default="train.py", description="Script inside `train_source_dir`.")

    # Packaged as assets at synthesis: a path that is not there stops the config load, naming the field.
    @field_validator("preprocess_script", "evaluate_script")
    @classmethod
    def _script_in_repository(cls, value: str) -> str:
        if not (REPO_ROOT / value).is_file():
            raise ValueError("must be a file of the repository (a path relative to its root)")
        return value

    @field_validator("train_source_dir")
    @classmethod
    def _directory_in_repository(cls, value: str) -> str:
        if not (REPO_ROOT / value).is_dir():
            raise ValueError("must be a directory of the repository (a path relative to its root)")
        return value

    @model_validator(mode="after")
    def _entry_point_in_source_dir(self) -> PipelineCode:
        if not (REPO_ROOT / self.train_source_dir / self.train_entry_point).is_file():
            raise ValueError(f"train_entry_point '{self.train_entry_point}' is not a file of train_source_dir "
                             f"'{self.train_source_dir}'")
        return self


class TrainingPipelineConfig(StrictModel):
    """One SageMaker Pipeline: preprocess -> train -> evaluate -> condition -> register | fail."""

    name: SageMakerName = Field(description="Pipeline name suffix; the pipeline is `<name_prefix>-<name>`.")
    model_package_group: SageMakerName = Field(
        description="Registry group the pipeline registers into (created by the platform)."
    )
    input_prefix: RelativePath = Field(
        description="Default input: this prefix of the raw-data bucket (the InputDataUri parameter)."
    )
    feature_group: FeatureName | None = Field(
        default=None,
        description="Read training data from this feature group's offline store instead of `input_prefix`.",
    )
    target_column: str = Field(default="target", description="Label column (0/1) of the training data.")
    code: PipelineCode = Field(default_factory=PipelineCode)
    framework_version: str = Field(
        default=DEFAULT_XGBOOST,
        description="XGBoost container version (Python >= 3.10: `3.0-5` runs Python 3.10); the training "
        "requirements' wheels are packaged for its Python.")
    sklearn_version: str = Field(
        default=DEFAULT_SKLEARN,
        description="scikit-learn processing container version (Python >= 3.10: `1.4-2` runs 3.10, "
        "`1.4-2-py312` 3.12).")
    evaluate_image: Literal["xgboost", "sklearn"] = Field(
        default="xgboost",
        description="Container of the Evaluate step: `xgboost` (the training image; it also has "
        "scikit-learn and pandas) loads XGBoost models; `sklearn` for scikit-learn models.",
    )
    processing_instance_type: InstanceType = "ml.m5.large"
    processing_instance_count: int = Field(default=1, ge=1, le=20)
    training_instance_type: InstanceType = "ml.m5.xlarge"
    training_instance_count: int = Field(
        default=1, ge=1, le=64,
        description="Instances of the training job. More than one only helps when the training "
        "script distributes the work (the example's train.py trains on one instance).",
    )
    hyperparameters: dict[str, str | int | float] = Field(
        default_factory=lambda: {"max_depth": 5, "eta": 0.2, "num_round": 100, "objective": "binary:logistic"}
    )
    metric: str = Field(default="auc", description="Key under binary_classification_metrics in evaluation.json.")
    metric_threshold: float = Field(default=0.8, ge=0, le=1, description="Register only at or above this value.")
    approval_status: ApprovalStatus = Field(
        default=ApprovalStatus.PENDING,
        description="Approval status of registered models; `Approved` auto-approves (dev only).",
    )
    schedule: ScheduleExpression | None = Field(
        default=None, description="Run on this schedule (EventBridge Scheduler, UTC); none when not set."
    )
    new_data_trigger: NewDataTrigger | None = Field(default=None, description="Run when new data lands.")
    inference_instance_types: tuple[InstanceType, ...] = ("ml.m5.large",)

    @field_validator("framework_version")
    @classmethod
    def _xgboost_image_on_python_310_or_later(cls, value: str) -> str:
        image_python("xgboost", value)
        return value

    @field_validator("sklearn_version")
    @classmethod
    def _sklearn_image_on_python_310_or_later(cls, value: str) -> str:
        image_python("sklearn", value)
        return value


class PromotionSourceConfig(StrictModel):
    """The environment whose approved models are promoted into this one (e.g. staging for prod)."""

    account: AccountId = Field(description="Account of the source environment (may be this account).")
    name_prefix: NamePrefix = Field(description="`name_prefix` of the source environment.")


class RegistryConfig(StrictModel):
    """Model Registry settings shared by every model package group of the environment."""

    share_with_accounts: tuple[AccountId, ...] = Field(
        default=(),
        description="Accounts (e.g. prod's) that may read the registered models and their artifacts.",
    )
    additional_groups: tuple[SageMakerName, ...] = Field(
        default=(),
        description="Model package groups no pipeline of this environment registers into (models registered "
                    "from notebooks, or candidates A/B tested on their own endpoint).",
    )
    promote_from: PromotionSourceConfig | None = Field(
        default=None,
        description="A package approved in the source environment's group of the same name is registered in "
                    "this environment's group (same artifacts, PendingManualApproval); the source lists this "
                    "account in share_with_accounts (docs/deployment-flow.md).",
    )


class TrackingBackend(str, Enum):
    MLFLOW = "mlflow"
    WANDB = "wandb"
    NONE = "none"


class ExperimentTrackingConfig(StrictModel):
    """Where training runs are logged."""

    backend: TrackingBackend = Field(
        default=TrackingBackend.NONE,
        description="`mlflow`: a managed SageMaker MLflow tracking server; `wandb`: Weights & Biases "
        "with its API key in Secrets Manager; `none`: no tracking (costs nothing while idle).",
    )
    mlflow_size: Literal["Small", "Medium", "Large"] = "Small"
    mlflow_version: str | None = Field(default=None, description="MLflow version; SageMaker's default when not set.")
    mlflow_weekly_maintenance: str = Field(default="Sun:03:30", pattern=r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):\d{2}:\d{2}$")
    wandb_secret_name: str | None = Field(
        default=None, description="Secrets Manager secret holding the W&B API key (backend `wandb`)."
    )

    @model_validator(mode="after")
    def _wandb_needs_secret(self) -> ExperimentTrackingConfig:
        if self.backend is TrackingBackend.WANDB and not self.wandb_secret_name:
            raise ValueError("backend 'wandb' needs wandb_secret_name (the Secrets Manager secret with the API key)")
        return self


class FeatureType(str, Enum):
    INTEGRAL = "Integral"
    FRACTIONAL = "Fractional"
    STRING = "String"


class FeatureDefinitionConfig(StrictModel):
    name: FeatureName
    type: FeatureType


class FeatureGroupConfig(StrictModel):
    """One Feature Store feature group. Changing its name, identifier, event-time feature or store
    settings replaces the group (and loses its online data)."""

    name: FeatureName = Field(description="Group name suffix; the group is `<name_prefix>-<name>`.")
    description: str | None = None
    record_identifier: FeatureName
    event_time_feature: FeatureName
    features: tuple[FeatureDefinitionConfig, ...] = Field(min_length=2, max_length=2500)
    online: bool = Field(default=True, description="Online store for low-latency reads by the inference API.")
    offline: bool = Field(default=True, description="Offline store (Iceberg on S3, Glue table) for training.")
    online_storage_type: Literal["Standard", "InMemory"] = "Standard"
    online_ttl_days: int | None = Field(default=None, ge=1, le=3650, description="Expire online records; never when not set.")
    throughput_mode: Literal["OnDemand", "Provisioned"] = "OnDemand"

    @model_validator(mode="after")
    def _schema_is_consistent(self) -> FeatureGroupConfig:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features {duplicates} are declared more than once")
        types = {f.name: f.type for f in self.features}
        if self.record_identifier not in types:
            raise ValueError(f"record_identifier '{self.record_identifier}' is not among the features")
        if self.event_time_feature not in types:
            raise ValueError(f"event_time_feature '{self.event_time_feature}' is not among the features")
        if types[self.event_time_feature] is FeatureType.INTEGRAL:
            raise ValueError("event_time_feature must be Fractional (epoch seconds) or String (ISO 8601)")
        if not (self.online or self.offline):
            raise ValueError("a feature group needs an online store, an offline store, or both")
        if self.online_ttl_days and not self.online:
            raise ValueError("online_ttl_days needs online: true")
        return self


class TrainingConfig(StrictModel):
    pipelines: tuple[TrainingPipelineConfig, ...] = ()
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    experiment_tracking: ExperimentTrackingConfig = Field(default_factory=ExperimentTrackingConfig)

    @model_validator(mode="after")
    def _unique_pipelines(self) -> TrainingConfig:
        names = [p.name for p in self.pipelines]
        if len(names) != len(set(names)):
            raise ValueError(f"pipeline names must be unique, got {names}")
        return self


class FeatureStoreConfig(StrictModel):
    feature_groups: tuple[FeatureGroupConfig, ...] = ()


class LambdaConfig(StrictModel):
    """Settings shared by the platform's Lambda functions."""

    architecture: Literal["arm64", "x86_64"] = Field(default="arm64", description="Graviton is ~20% cheaper.")
    powertools_layer_version: int = Field(
        default=27, ge=1,
        description="Version of the public Powertools for AWS Lambda (Python) v3 layer "
        "(arn:aws:lambda:<region>:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-<arch>).",
    )


GPU_LAYOUTS = _instance_types().GPU_LAYOUTS  # the deployer's names


class GpuServingConfig(StrictModel):
    """How the model uses the GPUs of its instance (checked against the instance type table's GPU count
    and memory; the deployer passes it to the container as environment variables, docs/scaling.md)."""

    layout: Literal[GPU_LAYOUTS] = Field(
        description="worker_per_gpu: one model-server worker per GPU, each pinned to its device, each with a "
                    "whole copy; split_model: one worker, the model's layers spread over every GPU (a model "
                    "too big for one).",
    )
    model_memory_gib: float = Field(
        gt=0, le=4096,
        description="GPU memory one copy of the model needs at its largest batch (weights + activations); "
                    "90% of a GPU's memory is usable (the CUDA context takes the rest).",
    )


def _check_gpu_layout(instance_type: str, gpus: GpuServingConfig | None) -> None:
    if gpus is None:
        return
    # the deployer's table and rule
    problem = _instance_types().gpu_layout_problem(instance_type, gpus.layout, gpus.model_memory_gib)
    if problem:
        raise ValueError(f"gpus: {problem}")


GPUS_DESCRIPTION = "Multi-GPU serving: how the model uses the instance's GPUs (GPU instance types only)."


class AutoscalingConfig(StrictModel):
    """Target tracking on invocations per instance, applied by the deployer after each rollout."""

    min_instances: int = Field(default=1, ge=0, le=100, description="0 is allowed for async variants only.")
    max_instances: int = Field(default=2, ge=1, le=100)
    target_invocations_per_instance: int = Field(
        default=100, ge=1, description="SageMakerVariantInvocationsPerInstance per minute to hold."
    )
    scale_in_cooldown_s: int = Field(default=300, ge=0, le=3600)
    scale_out_cooldown_s: int = Field(default=60, ge=0, le=3600)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) exceeds max_instances ({self.max_instances})")
        return self


class VariantConfigBase(StrictModel):
    """A kind's ``serving.endpoints[].variant``, built from its class in the runtime (``spec_kind``,
    ``mlops_runtime.domain.variant_kinds``): its fields, then ``autoscaling`` when the kind scales and
    ``gpus`` when it runs on instances; its rules are the kind's own (``check_sizing``)."""

    spec_kind: ClassVar[type]

    @model_validator(mode="after")
    def _kind_rules(self) -> VariantConfigBase:
        kind = self.spec_kind
        _check_gpu_layout(getattr(self, "instance_type", ""), getattr(self, "gpus", None))
        kind.check_sizing(self)  # raises the deployer's InvalidEndpointSpec, naming the field
        scaling = getattr(self, "autoscaling", None)
        if scaling is not None and scaling.min_instances < kind.scaling.min_instances:
            floor = kind.scaling.min_instances
            raise ValueError(f"{self.kind} variants keep at least {'one' if floor == 1 else floor} instance: "
                             f"autoscaling.min_instances >= {floor}")
        return self


def _variant_config(kind: type) -> type[VariantConfigBase]:
    """``<Kind>VariantConfig`` of a kind's class (``RealtimeVariantSpec`` -> ``RealtimeVariantConfig``)."""
    tag = kind.kind_tag()
    fields: dict[str, Any] = {"kind": (Literal[tag], ...), **kind.config_fields}
    if kind.scaling is not None:
        default, doc = kind.default_autoscaling, kind.autoscaling_doc
        fields["autoscaling"] = (AutoscalingConfig | None, Field(default=None, description=doc) if default is None
                                 else Field(default_factory=lambda: AutoscalingConfig(**default), description=doc))
    if kind.instance_based:
        fields["gpus"] = (GpuServingConfig | None, Field(default=None, description=GPUS_DESCRIPTION))
    name = kind.__name__.removesuffix("Spec") + "Config"
    model = create_model(name, __base__=VariantConfigBase, __doc__=kind.config_doc, __module__=__name__, **fields)
    model.spec_kind = kind
    return model


VARIANT_CONFIGS = {tag: _variant_config(kind) for tag, kind in _variant_kinds().KINDS.items()}
globals().update({model.__name__: model for model in VARIANT_CONFIGS.values()})  # RealtimeVariantConfig, ...
VariantConfig = Annotated[Union[tuple(VARIANT_CONFIGS.values())], Field(discriminator="kind")]  # noqa: UP007


class DataCaptureConfig(StrictModel):
    """Request/response capture to the data-capture bucket (KMS), read by monitoring."""

    enabled: bool = True
    sampling_percentage: int = Field(default=100, ge=0, le=100)
    capture_input: bool = True
    capture_output: bool = True
    json_content_types: tuple[str, ...] = ("application/json",)
    csv_content_types: tuple[str, ...] = ("text/csv",)


class GuardrailsConfig(StrictModel):
    """Blue/green rollout of every deployment with automatic rollback on alarms."""

    mode: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = Field(
        default="ALL_AT_ONCE",
        description="ALL_AT_ONCE shifts traffic to the new fleet in one step, then bakes; CANARY and "
        "LINEAR shift in steps and need at least two instances per variant (serverless: ALL_AT_ONCE only).",
    )
    canary_size_percent: int = Field(default=10, ge=1, le=50)
    linear_step_percent: int = Field(default=20, ge=5, le=50)
    wait_interval_s: int = Field(default=300, ge=0, le=3600, description="Bake time per traffic step.")
    termination_wait_s: int = Field(default=120, ge=0, le=3600, description="Old fleet kept this long after.")
    max_5xx_rate_percent: float = Field(default=1.0, gt=0, le=100, description="Rollback above this error rate.")
    max_p99_latency_ms: int = Field(default=1000, ge=1, description="Rollback above this model latency (p99).")


def _check_ecr_image(value: str) -> str:
    from ..runtime_tables import deployment_domain  # the deployer's own rule

    if not deployment_domain().ECR_IMAGE_RE.match(value):
        raise ValueError("must be an ECR image URI: <account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag|@digest] "
                         "(repository in lower case)")
    return value


EcrImageUri = Annotated[str, AfterValidator(_check_ecr_image)]


class ContainerConfig(StrictModel):
    """Serve with this container instead of the model package's image (e.g. for GNN stacks)."""

    image_uri: EcrImageUri | None = None
    dockerfile_dir: RelativePath | None = Field(
        default=None, description="Folder with a Dockerfile, built as an image asset by `cdk deploy`."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ContainerConfig:
        if (self.image_uri is None) == (self.dockerfile_dir is None):
            raise ValueError("give exactly one of image_uri or dockerfile_dir")
        return self


MONITORING_THRESHOLDS = tuple(MONITORING_THRESHOLD_TABLE)  # the one table: monitoring/metrics.py


class PageBudgetConfig(StrictModel):
    """How many false pages the endpoint may send per period: the drift and quality tests of each
    window share ``false_pages / windows per period`` (docs/monitoring.md)."""

    false_pages: float = Field(default=1, gt=0, le=100, description="False pages allowed per period.")
    per_days: float = Field(default=30, gt=0, le=365, description="The period, in days.")


class DriftPolicyConfig(StrictModel):
    """The calibrated drift decision (monitoring/decision.py): an interval-null test per feature,
    score and predicted class, Holm over the window at the page budget, small windows accumulated."""

    min_effect: float = Field(
        default=0.002, gt=0, le=1,
        description="Smallest drift worth a page, in PSI units (0.002 ~ a 0.05 sd mean shift, ~ a 2-point move "
                    "between two common categories); smaller shifts never page, whatever the window size.",
    )
    page_budget: PageBudgetConfig = Field(default_factory=PageBudgetConfig)
    min_rows: int = Field(
        default=1000, ge=20, le=10_000_000,
        description="Windows with fewer rows are accumulated with the next ones before they are judged.",
    )
    max_accumulated_windows: int = Field(
        default=24, ge=1, le=720, description="Judge what has accumulated after this many windows even below min_rows.")
    persistence_windows: int = Field(
        default=1, ge=1, le=24,
        description="The drift alarm needs this many consecutive drifted windows (1: the first one pages).",
    )

    def job_policy(self, window_hours: int, quality_looks: int) -> dict[str, float]:
        """The job's ``--drift-policy`` (monitoring/decision.py DEFAULT_POLICY keys)."""
        return {"min_effect": self.min_effect, "false_pages": self.page_budget.false_pages,
                "per_days": self.page_budget.per_days, "window_hours": float(window_hours),
                "min_rows": self.min_rows, "max_accumulated_windows": self.max_accumulated_windows,
                "quality_looks": quality_looks}


class RetrainingConfig(StrictModel):
    """Start the training pipelines of the endpoint's model package group when a drift or quality
    alarm fires (one alarm episode starts at most one retraining per cooldown)."""

    enabled: bool = Field(default=False, description="Retrain automatically on a drift or quality alarm.")
    cooldown_hours: float = Field(default=24, ge=1, le=720, description="No new retraining within this time.")
    production_data: bool = Field(
        default=True,
        description="Closed loop: train on the raw data plus the production records joined with their ground truth "
                    "since the last training (features from data capture, labels from the feedback API).",
    )
    production_lookback_hours: int = Field(
        default=720, ge=1, le=8760,
        description="Production records at most this old go into a retraining run (also bounded by the last "
                    "training and the data capture's expiry).",
    )


class MonitoringConfig(StrictModel):
    """The endpoint's scheduled monitoring job: data and prediction drift against the training
    baseline, and model quality from the feedback API's ground truth (``monitoring/README.md``)."""

    schedule: ScheduleExpression = Field(
        default="cron(15 * * * ? *)",
        description="When the launcher runs (default a quarter past each hour, once the last hour's capture "
                    "files are flushed).",
    )
    window_hours: int = Field(default=1, ge=1, le=168, description="Capture window each run analyses.")
    ground_truth_lookback_hours: int = Field(
        default=72, ge=1, le=720, description="Labels collected up to this many hours after a window's start are joined to it: its quality "
        "is recomputed as they arrive (docs/monitoring-launcher.md, how late is too late); later ones never are."
    )
    problem_type: Literal["binary", "regression"] = "binary"
    thresholds: dict[str, float | None] = Field(
        default_factory=lambda: {"auc_min": 0.8},
        description=f"Quality targets ({', '.join(MONITORING_QUALITY_METRICS)}), "
                    "paged when a test shows the metric is worse; drift keys (psi, js_distance, ...) are only "
                    "reported as crossings (monitoring/metrics.py THRESHOLDS).",
    )
    drift: DriftPolicyConfig = Field(default_factory=DriftPolicyConfig)
    min_labels: int = Field(default=100, ge=1, description="Fewer joined labels: quality is insufficient_data.")
    text_features: tuple[str, ...] = Field(
        default=(),
        description="Free-text features of the model's input (columns of its rows, or the whole request for a model "
                    "whose one input is text): the training pipelines of the endpoint's group describe them in the "
                    "baseline (vocabulary, out-of-vocabulary share, length) and the job tests their drift with the "
                    "other tests, at the same page budget (docs/monitoring.md).",
    )
    instance_type: InstanceType = "ml.m5.large"
    instance_count: int = Field(
        default=1, ge=1, le=100,
        description="Processing instances reading one window's capture files (ShardedByS3Key); above 1, a one-instance "
                    "merge step builds the report from their partial statistics. Rule of thumb in docs/scaling.md.",
    )
    max_runtime_minutes: int = Field(default=60, ge=5, le=1440)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        unknown = sorted(set(value) - set(MONITORING_THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown thresholds {unknown}; allowed: {', '.join(MONITORING_THRESHOLDS)}")
        return value

    @field_validator("text_features")
    @classmethod
    def _text_feature_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name.strip() or "," in name or name != name.strip():
                raise ValueError(f"{name!r} is not a feature name (non-empty, no comma, no surrounding spaces)")
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"{duplicates} are listed more than once")
        return value

    @property
    def quality_threshold(self) -> tuple[str, str, float] | None:
        """(metric name, comparison, value) of the first quality target, drawn on the dashboard."""
        for key, metric in MONITORING_QUALITY_METRICS.items():
            if self.thresholds.get(key) is not None:
                return metric, MONITORING_THRESHOLD_TABLE[key][2], float(self.thresholds[key])
        return None

    @property
    def job_policy(self) -> dict[str, float]:
        """The job's decision policy; a window's quality is tested once per run plus once per
        late-label recheck, and each look spends its share of the page budget."""
        from ..runtime_tables import monitoring_window  # the launcher's own recheck schedule

        rechecks = monitoring_window().recheck_ages(self.window_hours, self.ground_truth_lookback_hours)
        return self.drift.job_policy(self.window_hours, 1 + len(rechecks))

    @property
    def quality_targets(self) -> dict[str, float]:
        """The quality targets the job tests (the quality alarm pages on them)."""
        return {key: float(value) for key, value in self.thresholds.items()
                if key in MONITORING_QUALITY_METRICS and value is not None}


class EndpointConfig(StrictModel):
    """One SageMaker endpoint, deployed by the platform when a model of its group is approved."""

    name: SageMakerName = Field(description="Endpoint name suffix; the endpoint is `<name_prefix>-<name>`.")
    model_package_group: SageMakerName = Field(description="Approvals in this group deploy here.")
    variant: VariantConfig
    challenger_initial_weight: float = Field(
        default=0.1, ge=0, le=1,
        description="Traffic share of a newly approved model next to the current champion (below 1); 0 replaces "
        "the champion directly (through the guardrails). With shadow: the share of requests copied to it.",
    )
    shadow: bool = Field(default=False, description="Run the challenger as a shadow variant: it answers a copy of "
                         "challenger_initial_weight of the requests, and no caller sees its responses.")
    data_capture: DataCaptureConfig | None = Field(default_factory=DataCaptureConfig)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    container: ContainerConfig | None = None
    allow_variant_override: bool = Field(
        default=False, description="Let API callers pick the variant explicitly (QA); off in production."
    )
    monitoring: MonitoringConfig | None = Field(
        default=None, description="Scheduled drift and quality monitoring (needs data capture)."
    )

    # What an endpoint of each kind may hold (a challenger, shadow, data capture, a VPC, guardrail modes)
    # is the deployer's rule (EndpointSpec._check_layout, from the kind's class): `function_settings.check`
    # applies it when the config loads, naming the field here.
    @model_validator(mode="after")
    def _monitoring_reads_capture(self) -> EndpointConfig:
        if self.monitoring is not None and (self.data_capture is None or not self.data_capture.enabled):
            raise ValueError("monitoring reads the endpoint's data capture: enable data_capture (serverless "
                             "endpoints cannot capture)")
        return self

    @property
    def kind(self) -> Any:
        """The runtime's class of the variant's kind (``mlops_runtime.domain.variant_kinds``)."""
        return self.variant.spec_kind

    @property
    def live_challenger(self) -> bool:
        """A newly approved model runs as a live challenger next to the champion (not shadow, not a
        kind of a single variant)."""
        return self.kind.live_challenger and not self.shadow


_PUBLIC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ARM_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def _check_public_name(value: str) -> str:
    if not _PUBLIC_NAME.match(value):
        raise ValueError("must be 1-63 lower-case letters, digits and hyphens, starting and ending with a letter "
                         "or digit (it is a path segment of the API)")
    return value


def _check_arm_name(value: str) -> str:
    if not _ARM_NAME.match(value):
        raise ValueError("must be 1-63 letters, digits, '-' and '_', starting and ending with a letter or digit")
    return value


def _check_media_type(value: str) -> str:
    if not _MEDIA_TYPE.match(value):
        raise ValueError("must be a lower-case media type such as application/json or text/csv")
    return value


PublicName = Annotated[str, AfterValidator(_check_public_name)]
ArmName = Annotated[str, AfterValidator(_check_arm_name)]
MediaType = Annotated[str, AfterValidator(_check_media_type)]


class ControllerConfig(StrictModel):
    """The experiment controller: a scheduled Lambda that moves traffic between an experiment's arms."""

    strategy: Literal["thompson", "epsilon_greedy", "ucb1", "fixed"] = Field(
        default="thompson",
        description="thompson: weight = probability of being best; epsilon_greedy; ucb1; fixed: keep initial_weights.",
    )
    interval_minutes: int = Field(default=15, ge=1, le=1440, description="How often the controller runs.")
    epsilon: float = Field(default=0.1, ge=0, le=1, description="Exploration share of epsilon_greedy.")
    min_share: float = Field(default=0.05, ge=0, lt=0.5, description="Every live arm keeps at least this share.")
    max_step: float = Field(default=0.2, gt=0, le=1, description="Largest change of one arm's share per run.")
    min_observations: int = Field(default=200, ge=0, le=100_000_000,
                                  description="Invocations every arm needs before traffic moves.")
    min_change: float = Field(default=0.01, ge=0, lt=1, description="Smaller moves are skipped (no endpoint update).")
    stop: bool = Field(default=True, description="Decide the experiment (anytime-valid test); false: keep adapting forever.")
    alpha: float = Field(default=0.05, gt=0, le=0.2,
                         description="Error rate of a decision (wrong winner, or a difference missed) at any number of looks.")
    min_effect: float = Field(default=0.005, ge=0, lt=1,
                              description="Smallest difference of mean reward worth acting on (absolute: 0.005 = "
                                          "0.5 percentage points of conversion); a winner beats every other arm by "
                                          "more, no meaningful difference means all arms are within it.")
    max_invocations: int | None = Field(default=None, ge=100, le=10_000_000_000,
                                        description="Matured predictions (all arms) after which an undecided test "
                                                    "stops and keeps the champion; none: no limit.")
    max_duration_days: float | None = Field(default=None, gt=0, le=365,
                                            description="Days after which an undecided test stops and keeps the "
                                                        "champion; none: no limit.")
    contender_share: float = Field(default=0.2, ge=0, lt=0.5,
                                   description="While the test runs, every arm it still needs (not yet shown worse "
                                               "than the leader by min_effect) keeps at least this share; 0: the "
                                               "strategy alone within min_share.")
    feedback_delay_hours: float = Field(default=0, ge=0, le=24 * 90,
                                        description="How long feedback can take to arrive: a decision counts only "
                                                    "predictions served at least this long ago; 0: all so far.")

    @model_validator(mode="after")
    def _limits_leave_matured_feedback(self) -> ControllerConfig:
        if self.max_duration_days is not None and self.max_duration_days * 24 <= self.feedback_delay_hours:
            raise ValueError(f"max_duration_days {self.max_duration_days:g} must be longer than feedback_delay_hours "
                             f"{self.feedback_delay_hours:g} / 24, or no feedback matures before the test stops")
        return self

    def settings(self) -> dict:
        """The controller function's rule for this experiment (``settings.ControllerRule``)."""
        return self.model_dump(exclude={"interval_minutes"})


class ArmConfig(StrictModel):
    """One arm of an experiment: a production variant of one of this environment's endpoints."""

    arm: ArmName = Field(description="Arm name, reported by the API (X-Variant) and in the statistics.")
    endpoint: SageMakerName = Field(description="Name of an endpoint in serving.endpoints.")
    variant: Literal["champion", "challenger"] = Field(
        default="champion", description="The deployer's variant of that endpoint that serves this arm."
    )


class FeatureLookupConfig(StrictModel):
    """Build the model input from the subject's online features instead of the request body."""

    feature_group: FeatureName = Field(description="Name of a feature group in feature_store.feature_groups.")
    features: tuple[FeatureName, ...] = Field(
        min_length=1, description="Features sent to the model, as one CSV row, in this order."
    )


class ExperimentConfig(StrictModel):
    """A public endpoint of the inference API (``/v1/endpoints/<name>/invocations``) and its experiment.

    Every real-time or serverless endpoint is published under its own name with the arms
    ``champion`` (and ``challenger`` unless serverless or shadow); an experiment with the same
    name replaces those defaults. An experiment with its own ``arms`` can span endpoints, e.g. two
    serverless endpoints, which hold one variant each.
    """

    name: PublicName = Field(description="Public name: the API path segment and the experiment id.")
    arms: tuple[ArmConfig, ...] | None = Field(
        default=None, min_length=1, max_length=10,
        description="Arms; when not set, the champion and challenger of the endpoint called `name`.",
    )
    initial_weights: dict[ArmName, float] | None = Field(
        default=None,
        description="Traffic share per arm before the controller moves it; default: the endpoint's "
                    "challenger_initial_weight, or an even split across endpoints.",
    )
    allow_variant_override: bool | None = Field(
        default=None, description="Allow X-Target-Arm (QA); default: the first arm's endpoint setting."
    )
    content_types: tuple[MediaType, ...] = Field(
        default=("application/json", "text/csv"), description="Accepted request Content-Types (at least one)."
    )
    features: FeatureLookupConfig | None = Field(
        default=None, description="Look the subject's features up in the online store and send those."
    )
    controller: ControllerConfig | None = Field(
        default=None, description="Move traffic automatically (bandit); fixed initial weights when not set."
    )

    @model_validator(mode="after")
    def _weights_match_arms(self) -> ExperimentConfig:
        if not self.content_types:
            raise ValueError("content_types needs at least one media type")
        if self.arms is not None:
            names = [a.arm for a in self.arms]
            if len(names) != len(set(names)):
                raise ValueError(f"arm names must be unique, got {names}")
            targets = [(a.endpoint, a.variant) for a in self.arms]
            if len(targets) != len(set(targets)):
                raise ValueError("two arms serve from the same endpoint variant")
        if self.initial_weights is not None:
            if any(w < 0 or w != w for w in self.initial_weights.values()) or sum(self.initial_weights.values()) <= 0:
                raise ValueError("initial_weights must be >= 0 and not all 0")
        return self


class ApiConfig(StrictModel):
    """The platform's REST API (API Gateway): inference, experiments and feedback routes."""

    authorization: Literal["iam", "api_key"] = Field(
        default="iam",
        description="iam: callers sign with SigV4 (execute-api:Invoke); api_key: an API key with a usage plan.",
    )
    stage_name: SageMakerName = Field(default="live", description="API Gateway stage name (first path segment).")
    rate_limit: float = Field(default=100, gt=0, le=10_000, description="Steady-state requests per second (stage).")
    burst_limit: int = Field(default=200, ge=1, le=5_000, description="Burst of requests (stage).")
    daily_quota: int | None = Field(
        default=None, ge=1, description="Requests per day per API key (api_key authorization only)."
    )
    prediction_ttl_days: int = Field(default=30, ge=1, le=3650,
                                     description="Prediction records expire after this (feedback joins until then).")
    allocation_cache_seconds: int = Field(default=30, ge=1, le=600,
                                          description="How long the API keeps an experiment's weights between reads.")
    feedback_max_batch: int = Field(default=500, ge=1, le=500, description="Records per feedback request.")
    feedback_max_age_days: int = Field(default=30, ge=1, le=365,
                                       description="Oldest accepted feedback event_time.")
    feedback_retention_days: int = Field(default=90, ge=1, le=3650,
                                         description="Stored feedback records (idempotency) expire after this.")
    inference_memory_mb: int = Field(default=512, ge=128, le=10240)
    inference_reserved_concurrency: int = Field(default=50, ge=1, le=1000)

    @model_validator(mode="after")
    def _quota_needs_keys(self) -> ApiConfig:
        if self.daily_quota is not None and self.authorization != "api_key":
            raise ValueError("daily_quota needs authorization: api_key (quotas are per API key)")
        return self


class ServingConfig(StrictModel):
    endpoints: tuple[EndpointConfig, ...] = ()
    api: ApiConfig = Field(default_factory=ApiConfig)
    experiments: tuple[ExperimentConfig, ...] = Field(
        default=(), description="Public endpoints and experiments beyond each endpoint's default one."
    )

    @model_validator(mode="after")
    def _unique(self) -> ServingConfig:
        names = [e.name for e in self.endpoints]
        if len(names) != len(set(names)):
            raise ValueError(f"endpoint names must be unique, got {names}")
        experiment_names = [e.name for e in self.experiments]
        if len(experiment_names) != len(set(experiment_names)):
            raise ValueError(f"experiment names must be unique, got {experiment_names}")
        endpoints = {e.name: e for e in self.endpoints}
        for index, experiment in enumerate(self.experiments):
            where = f"experiments[{index}]"
            if experiment.arms is None and experiment.name not in endpoints:
                raise ValueError(f"{where} '{experiment.name}' has no arms and no endpoint of that name "
                                 f"(endpoints: {sorted(endpoints) or 'none'})")
            for arm in experiment.arms or ():
                endpoint = endpoints.get(arm.endpoint)
                if endpoint is None:
                    raise ValueError(f"{where}.arms: endpoint '{arm.endpoint}' is not in serving.endpoints "
                                     f"(endpoints: {sorted(endpoints) or 'none'})")
                if not endpoint.kind.routable:
                    served = " and ".join(kind.title for kind in _variant_kinds().KINDS.values() if kind.routable)
                    raise ValueError(f"{where}.arms: endpoint '{arm.endpoint}' is {endpoint.kind.title}; the inference "
                                     f"API serves {served} endpoints")
                if arm.variant == "challenger" and not endpoint.live_challenger:
                    raise ValueError(f"{where}.arms: endpoint '{arm.endpoint}' has no live challenger variant "
                                     f"({'shadow' if endpoint.shadow else endpoint.variant.kind})")
            arms = [a.arm for a in experiment.arms] if experiment.arms else None
            if experiment.initial_weights is not None and arms is not None and set(experiment.initial_weights) != set(arms):
                raise ValueError(f"{where}.initial_weights must name exactly the arms {arms}")
        for index, route in enumerate(self.routes()):
            experiment = route.config
            arms = [a.arm for a in route.arms]
            where = f"experiments[{[e.name for e in self.experiments].index(route.name)}]" \
                if route.name in experiment_names else f"endpoints '{route.name}'"
            if experiment.initial_weights is not None and set(experiment.initial_weights) != set(arms):
                raise ValueError(f"{where}.initial_weights must name exactly the arms {arms}")
            if experiment.controller is not None and experiment.controller.min_share * len(arms) >= 1:
                raise ValueError(f"{where}.controller.min_share x {len(arms)} arms must stay below 1")
        return self

    def routes(self) -> tuple[Route, ...]:
        """Every public endpoint of the inference API, resolved: each real-time or serverless
        endpoint under its own name (champion, plus challenger when it can take live traffic),
        replaced or joined by the configured experiments."""
        endpoints = {e.name: e for e in self.endpoints}
        configured = {e.name: e for e in self.experiments}
        routes = []
        names = [e.name for e in self.endpoints if e.kind.routable]
        names += [n for n in configured if n not in names]
        for name in names:
            experiment = configured.get(name) or ExperimentConfig(name=name)
            if experiment.arms is not None:
                arms = experiment.arms
                weights = experiment.initial_weights or {a.arm: 1.0 / len(arms) for a in arms}
            else:
                endpoint = endpoints[name]
                live_challenger = endpoint.live_challenger
                arms = (ArmConfig(arm="champion", endpoint=name),) + (
                    (ArmConfig(arm="challenger", endpoint=name, variant="challenger"),) if live_challenger else ())
                share = endpoint.challenger_initial_weight if live_challenger else 0.0
                weights = experiment.initial_weights or (
                    {"champion": 1.0 - share, "challenger": share} if live_challenger else {"champion": 1.0})
            first = endpoints[arms[0].endpoint]
            override = experiment.allow_variant_override
            routes.append(Route(
                name=name, arms=arms, initial_weights=weights, config=experiment,
                allow_variant_override=first.allow_variant_override if override is None else override,
            ))
        return tuple(routes)


class Route(BaseModel):
    """A resolved public endpoint (see :meth:`ServingConfig.routes`)."""

    model_config = ConfigDict(frozen=True)
    name: str
    arms: tuple[ArmConfig, ...]
    initial_weights: dict[str, float]
    allow_variant_override: bool
    config: ExperimentConfig


_INDEX_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{1,61})[a-z0-9]$")
# Amazon Titan Text Embeddings V2 produces only these sizes; Cohere Embed v3 models produce 1024.
def _check_index_name(value: str) -> str:
    if not _INDEX_NAME.match(value):
        raise ValueError("must be 3-63 lower-case letters, digits and hyphens, starting and ending with a letter "
                         "or digit (an S3 Vectors index name and an API path segment)")
    return value


IndexName = Annotated[str, AfterValidator(_check_index_name)]


class EmbedderConfig(StrictModel):
    """Where embeddings come from: an Amazon Bedrock model, or one of this environment's endpoints."""

    kind: Literal["bedrock", "sagemaker"]
    model_id: str | None = Field(default=None, pattern=r"^[a-z0-9.:-]{3,100}$",
                                 description="Bedrock model id, e.g. amazon.titan-embed-text-v2:0 (bedrock).")
    endpoint: SageMakerName | None = Field(default=None, description="Name of an endpoint in serving.endpoints "
                                                                      "(sagemaker), e.g. a sentence-embedding model.")
    batch_size: int = Field(default=16, ge=1, le=256, description="Texts per embedding call.")

    @model_validator(mode="after")
    def _one_source(self) -> EmbedderConfig:
        if self.kind == "bedrock" and (not self.model_id or self.endpoint):
            raise ValueError("a bedrock embedder needs model_id (and no endpoint)")
        if self.kind == "sagemaker" and (not self.endpoint or self.model_id):
            raise ValueError("a sagemaker embedder needs endpoint (and no model_id)")
        return self


class SearchIndexConfig(StrictModel):
    """A semantic-search index: documents dropped under ``search/<name>/`` in the raw-data bucket are
    chunked, embedded and indexed; ``POST /v1/search/<name>`` queries it."""

    name: IndexName
    dimension: int = Field(ge=1, le=4096, description="Embedding size; must match the embedder.")
    distance: Literal["cosine", "euclidean"] = "cosine"
    filterable_metadata: tuple[FeatureName, ...] = Field(
        default=(), max_length=10, description="Document metadata keys a search can filter on."
    )
    embedder: EmbedderConfig
    store: Literal["s3vectors", "opensearch"] = Field(
        default="s3vectors",
        description="s3vectors: Amazon S3 Vectors (near-zero idle cost); opensearch: an OpenSearch Serverless "
                    "vector collection (lower latency, hybrid search; bills OCUs while idle).",
    )
    chunk_size: int = Field(default=200, ge=16, le=2000, description="Words per chunk.")
    chunk_overlap: int = Field(default=40, ge=0, description="Words shared by consecutive chunks.")
    max_top_k: int = Field(default=20, ge=1, le=100, description="Largest top_k a search may ask for.")
    bulk_instance_type: InstanceType = Field(default="ml.m5.large", description="Bulk indexing job instance.")
    bulk_instance_count: int = Field(
        default=1, ge=1, le=20,
        description="Instances of the bulk indexing job (the pipeline's InstanceCount default): each indexes "
                    "the objects whose key hashes to it. Rule of thumb in docs/scaling.md.",
    )
    # chunking, the embedder's vector sizes and the reserved metadata keys are the search functions' own
    # rules (mlops_runtime.domain.search), applied when the config loads (function_settings.check)


class SearchConfig(StrictModel):
    indexes: tuple[SearchIndexConfig, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> SearchConfig:
        names = [i.name for i in self.indexes]
        if len(names) != len(set(names)):
            raise ValueError(f"index names must be unique, got {names}")
        return self


# The tag the budget filters on; every resource of an environment carries it, those CloudFormation
# creates (stage tags) and those the platform's functions create at run time (the deployer's
# endpoints, configs and models; the pipelines' jobs). Activate it as a cost allocation tag once per
# account (docs/cost.md).
COST_ALLOCATION_TAG = "environment"


def _text_features_in_schema(where: str, endpoint: EndpointConfig, training: TrainingConfig,
                             feature_groups: dict[str, FeatureGroupConfig]) -> None:
    """A monitored text feature must be an input of the models the endpoint serves, where the
    config knows their schema: not a pipeline's label column, and a String feature (not the record
    identifier or event time) of the feature group a pipeline trains from."""
    for pipeline in training.pipelines:
        if pipeline.model_package_group != endpoint.model_package_group:
            continue
        for name in endpoint.monitoring.text_features:
            if name == pipeline.target_column:
                raise ValueError(f"{where} '{name}' is the label column (target_column) of pipeline '{pipeline.name}'")
        group = feature_groups.get(pipeline.feature_group) if pipeline.feature_group else None
        if group is None:
            continue  # CSV input: its columns are known only when the pipeline runs (preprocess checks them)
        inputs = sorted(f.name for f in group.features if f.type is FeatureType.STRING
                        and f.name not in (group.record_identifier, group.event_time_feature))
        unknown = [name for name in endpoint.monitoring.text_features if name not in inputs]
        if unknown:
            raise ValueError(f"{where} {unknown} are not String input features of feature group '{group.name}' that "
                             f"pipeline '{pipeline.name}' trains from (String inputs: {inputs or 'none'})")


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
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    budget: BudgetConfig | None = Field(
        default=None,
        description="Monthly cost budget, filtered to this environment's `environment` tag (activate it "
        "as a cost allocation tag in Billing once per account); no budget when not set.",
    )
    lambdas: LambdaConfig = Field(default_factory=LambdaConfig)
    feature_store: FeatureStoreConfig = Field(default_factory=FeatureStoreConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)

    @property
    def resource_tags(self) -> dict[str, str]:
        """The tags every resource of the environment carries, the cost allocation tag first."""
        return {
            COST_ALLOCATION_TAG: self.environment,
            "project": self.tags.project,
            "cost-centre": self.tags.cost_centre,
            **({"owner": self.tags.owner} if self.tags.owner else {}),
            **self.tags.extra,
        }

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

    @field_validator("training")
    @classmethod
    def _training_fits_environment(cls, value: TrainingConfig, info: ValidationInfo) -> TrainingConfig:
        feature_store = info.data.get("feature_store")
        groups = {g.name: g for g in feature_store.feature_groups} if feature_store else {}
        for index, pipeline in enumerate(value.pipelines):
            where = f"pipelines[{index}]"
            if pipeline.feature_group is not None:
                group = groups.get(pipeline.feature_group)
                if group is None:
                    raise ValueError(f"{where}.feature_group '{pipeline.feature_group}' is not declared in "
                                     f"feature_store.feature_groups (declared: {sorted(groups) or 'none'})")
                if not group.offline:
                    raise ValueError(f"{where}.feature_group '{group.name}' has no offline store to train from")
            if info.data.get("environment") == "prod" and pipeline.approval_status is ApprovalStatus.APPROVED:
                raise ValueError(f"{where}.approval_status 'Approved' is not allowed in prod: models "
                                 "promoted to prod need a human approval (PendingManualApproval)")
        source = value.registry.promote_from
        if source is not None and source.name_prefix == info.data.get("name_prefix"):
            raise ValueError(f"registry.promote_from.name_prefix '{source.name_prefix}' is this environment's own: "
                             "promotion copies from another environment's groups")
        vpc = info.data.get("vpc")
        if vpc is not None and vpc.enabled and value.experiment_tracking.backend is TrackingBackend.WANDB:
            raise ValueError("experiment_tracking.backend 'wandb' needs the internet (api.wandb.ai) from the "
                             "training jobs, and vpc.enabled puts them in subnets without NAT: use 'mlflow' "
                             "(reached through a VPC endpoint) or 'none', or turn the VPC off")
        return value

    @field_validator("serving")
    @classmethod
    def _endpoints_serve_registered_models(cls, value: ServingConfig, info: ValidationInfo) -> ServingConfig:
        training = info.data.get("training")  # None when training is invalid: its own error is reported
        groups = sorted({p.model_package_group for p in training.pipelines}
                        | set(training.registry.additional_groups)) if training else []
        for index, endpoint in enumerate(value.endpoints):
            if training is not None and endpoint.model_package_group not in groups:
                raise ValueError(f"endpoints[{index}].model_package_group '{endpoint.model_package_group}' is not "
                                 f"a group of this environment's registry (groups: {groups or 'none'}; add it "
                                 "to training.registry.additional_groups if no pipeline registers into it)")
        feature_store = info.data.get("feature_store")
        feature_groups = {g.name: g for g in feature_store.feature_groups} if feature_store else {}
        for index, endpoint in enumerate(value.endpoints):
            if endpoint.monitoring is not None and training is not None:
                _text_features_in_schema(f"endpoints[{index}].monitoring.text_features", endpoint, training,
                                         feature_groups)
        for index, experiment in enumerate(value.experiments):
            lookup = experiment.features
            if lookup is None:
                continue
            group = feature_groups.get(lookup.feature_group)
            if group is None:
                raise ValueError(f"experiments[{index}].features.feature_group '{lookup.feature_group}' is not "
                                 f"declared in feature_store.feature_groups (declared: {sorted(feature_groups) or 'none'})")
            if not group.online:
                raise ValueError(f"experiments[{index}].features.feature_group '{group.name}' has no online store")
            declared = {f.name for f in group.features}
            unknown = [name for name in lookup.features if name not in declared]
            if unknown:
                raise ValueError(f"experiments[{index}].features.features {unknown} are not features of "
                                 f"'{group.name}'")
        return value

    @field_validator("search")
    @classmethod
    def _embedders_exist(cls, value: SearchConfig, info: ValidationInfo) -> SearchConfig:
        serving = info.data.get("serving")
        endpoints = {e.name: e for e in serving.endpoints} if serving else {}
        for index, search_index in enumerate(value.indexes):
            endpoint = search_index.embedder.endpoint
            if endpoint is not None:
                if endpoint not in endpoints:
                    raise ValueError(f"indexes[{index}].embedder.endpoint '{endpoint}' is not in serving.endpoints "
                                     f"(endpoints: {sorted(endpoints) or 'none'})")
                if not endpoints[endpoint].kind.routable:
                    raise ValueError(f"indexes[{index}].embedder.endpoint '{endpoint}' is {endpoints[endpoint].kind.title}")
        return value

    @field_validator("removal_policy")
    @classmethod
    def _prod_keeps_its_data(cls, value: RemovalPolicy, info: ValidationInfo) -> RemovalPolicy:
        if info.data.get("environment") == "prod" and value is RemovalPolicy.DESTROY:
            raise ValueError("prod must keep its data: allowed is 'retain'")
        return value

    def text_features_of_group(self, model_package_group: str) -> tuple[str, ...]:
        """The text features the monitored endpoints of a model package group declare: its training
        pipelines describe them in the baseline they register."""
        names: dict[str, None] = {}
        for endpoint in self.serving.endpoints:
            if endpoint.model_package_group == model_package_group and endpoint.monitoring is not None:
                names.update(dict.fromkeys(endpoint.monitoring.text_features))
        return tuple(names)

    @property
    def is_production(self) -> bool:
        return self.environment == "prod"
