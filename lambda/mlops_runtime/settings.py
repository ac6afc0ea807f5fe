"""The settings of each function: one typed model shared by the stack, the handler and the rehearsal.

The stack builds a model from the validated platform config (``mlops_platform/function_settings.py``)
and passes it as ONE environment variable, :data:`SETTINGS_ENV`, holding the model's JSON; the
handler validates that JSON once, at cold start (:meth:`FunctionSettings.from_env` in a
``lazy.Lazy``); the local rehearsal builds the same objects. Every rule here therefore fails
``make synth`` with the config's one-line error before it could fail a request.

Resource names are CloudFormation tokens while the stack builds a model, so they are plain
non-empty strings here; the rules are about the values that come from the config.
"""

from __future__ import annotations

import os

# No pydantic plugins are used: skip their discovery, which scans the entry points of every installed
# distribution when the first model is built (tens of milliseconds of cold start). Set before the
# first model class is created; an explicit setting in the environment wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import functools  # noqa: E402
import math  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Annotated, Any, Literal, Self  # noqa: E402

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator  # noqa: E402

from mlops_runtime.settings_env import SETTINGS_ENV, settings_text  # noqa: E402  (one place)
DEFAULT_CONTENT_TYPES = ("application/json", "text/csv")

Name = Field(min_length=1)
# A JSON array read as a tuple: lax, since strict mode refuses a list once a before-validator ran.
Texts = Annotated[tuple[str, ...], Field(strict=False)]


class SettingsError(ValueError):
    """The function's settings are missing or invalid: a deployment error, never bad input."""


class FunctionSettings(BaseModel):
    """Base of every function's settings: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

    def to_env(self) -> dict[str, str]:
        """The function's environment entry (what the stack and the rehearsal set)."""
        return {SETTINGS_ENV: self.model_dump_json(exclude_defaults=False)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        raw = settings_text(environ)
        if not raw:
            raise SettingsError(f"environment variable {SETTINGS_ENV} is not set")
        try:
            return cls.model_validate_json(raw)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise SettingsError(f"{SETTINGS_ENV} is not valid {cls.__name__}: {error}") from None


# --- deployment: the deployer, the endpoint scaler, model promotion, the endpoint teardown -----------
# Their models hold the deployment domain's types (``domain.deployment``, ``domain.autoscaling``,
# ``domain.registry_promotion``), whose import costs up to a third of ``import boto3``: each model is
# built when its name is first used (the module's ``__getattr__``) and imports only its own domain,
# so a function pays for its own model alone, and the API functions for none of them.


def __getattr__(name: str) -> Any:
    build = _DEPLOYMENT_MODELS.get(name)
    if build is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    model = build()
    model.__qualname__ = name
    globals()[name] = model
    return model


def _deployer_settings() -> type[FunctionSettings]:
    from mlops_runtime.domain.deployment import EndpointSpec

    class DeployerSettings(FunctionSettings):
        """``handlers.deployer``: the endpoints it owns (packages of other groups are ignored), the
        idempotency table (partition key ``id``, TTL ``expiration``), the topic told about every
        deployment that cannot be planned or fails, and the environment's name (messages, metrics)."""

        endpoints: tuple[EndpointSpec, ...]
        idempotency_table: str = Name
        notification_topic_arn: str | None = Field(default=None, min_length=1)
        environment: str = Name

        @field_validator("endpoints")
        @classmethod
        def _unique(cls, endpoints: tuple[EndpointSpec, ...]) -> tuple[EndpointSpec, ...]:
            seen: set[str] = set()
            for spec in endpoints:  # SageMaker endpoint names are unique regardless of case
                if spec.name.lower() in seen:
                    raise ValueError(f"endpoint {spec.name!r} is listed twice (names ignore case)")
                seen.add(spec.name.lower())
            return endpoints

    return DeployerSettings


def _scaler_settings() -> type[FunctionSettings]:
    from mlops_runtime.domain.autoscaling import EndpointName, ScalingEntry, ScalingSpec, spec_for

    class ScalerSettings(FunctionSettings):
        """``handlers.endpoint_scaler``: how each endpoint scales, keyed by its full name (endpoints
        not listed, e.g. serverless ones, are left alone)."""

        endpoints: dict[EndpointName, ScalingEntry]

        @field_validator("endpoints")
        @classmethod
        def _unique(cls, endpoints: dict[str, Any]) -> dict[str, Any]:
            lowered: dict[str, str] = {}
            for name in endpoints:  # SageMaker endpoint names are unique regardless of case
                if name.lower() in lowered:
                    raise ValueError(f"{name} is the same endpoint as {lowered[name.lower()]} (names ignore case)")
                lowered[name.lower()] = name
            return endpoints

        def spec_for(self, endpoint_name: str) -> ScalingSpec | None:
            """The spec of ``endpoint_name``: exact match, else ignoring case (names from ARNs are lowercase)."""
            return spec_for({name: ScalingSpec.of(name, entry) for name, entry in self.endpoints.items()},
                            endpoint_name)

    return ScalerSettings


def _promotion_settings() -> type[FunctionSettings]:
    from mlops_runtime.domain.registry_promotion import AccountId, GroupName

    class PromotionSettings(FunctionSettings):
        """``handlers.model_promotion``: approvals of ``source_account`` only (others are refused),
        each source model package group mapped to this environment's group."""

        source_account: AccountId
        groups: dict[GroupName, GroupName]

    return PromotionSettings




def _cloudformation_text(value: Any, info: ValidationInfo) -> Any:
    """CloudFormation passes every resource property as a string: a non-empty one, stripped."""
    if not isinstance(value, str) or not value.strip():
        name = _TEARDOWN_PROPERTIES.get(info.field_name or "", info.field_name)
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _teardown_settings() -> type[FunctionSettings]:
    class TeardownSettings(FunctionSettings):
        """``handlers.endpoint_teardown``, a custom resource: its settings are the resource's properties
        (a Delete carries the properties the resource was created or last updated with), in their
        PascalCase names (:meth:`to_properties`, :meth:`from_properties`)."""

        model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

        managed_by_tag: str = Field(alias="ManagedByTag")  # the deployer's mlops:managed-by value
        environment: str = Field(alias="Environment")  # this environment's value of environment_tag_key
        delete_on_destroy: bool = Field(alias="DeleteOnDestroy")  # false: the endpoints outlive the stack
        environment_tag_key: str = Field(default="mlops:environment", alias="EnvironmentTagKey")

        _texts = field_validator("managed_by_tag", "environment", "environment_tag_key", mode="before")(
            classmethod(lambda cls, value, info: _cloudformation_text(value, info)))

        @field_validator("delete_on_destroy", mode="before")
        @classmethod
        def _flag(cls, value: Any) -> Any:
            if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
                return value.strip().lower() == "true"
            if isinstance(value, bool):
                return value
            raise ValueError(f'DeleteOnDestroy must be "true" or "false", got {value!r}')

        def to_properties(self) -> dict[str, str]:
            """The custom resource's properties (strings, as CloudFormation passes them back)."""
            values = self.model_dump(by_alias=True)
            return {key: str(value).lower() if isinstance(value, bool) else value
                    for key, value in values.items()}

        @classmethod
        def from_properties(cls, properties: Mapping[str, Any]) -> tuple[Self, list[str]]:
            """The settings and the names of unknown properties (ignored; ``ServiceToken`` is the
            Provider's)."""
            if not isinstance(properties, Mapping):
                raise SettingsError("ResourceProperties must be an object")
            known = set(_TEARDOWN_PROPERTIES.values())
            unknown = sorted(str(key) for key in properties if key not in known and key != "ServiceToken")
            try:
                given = {key: value for key, value in properties.items() if key in known}
                return cls.model_validate(given), unknown
            except ValueError as error:
                problems = [item["msg"].removeprefix("Value error, ") if item["type"] == "value_error"
                            else f"{item['loc'][0]} is required" if item["type"] == "missing" else item["msg"]
                            for item in error.errors(include_url=False)]
                raise SettingsError("; ".join(problems)) from None

        @property
        def required_tags(self) -> dict[str, str]:
            """The tags an endpoint carries when it is this environment's and the deployer made it."""
            from mlops_runtime.domain.deployment import MANAGED_BY_TAG

            return {MANAGED_BY_TAG: self.managed_by_tag, self.environment_tag_key: self.environment}

        @property
        def physical_id(self) -> str:
            return f"endpoint-teardown:{self.managed_by_tag}:{self.environment}"

    _TEARDOWN_PROPERTIES.update({name: field.alias for name, field in TeardownSettings.model_fields.items()})
    return TeardownSettings


_TEARDOWN_PROPERTIES: dict[str, str] = {}  # field name -> its property name, filled with the model


_DEPLOYMENT_MODELS = {"DeployerSettings": _deployer_settings, "ScalerSettings": _scaler_settings,
                      "PromotionSettings": _promotion_settings, "TeardownSettings": _teardown_settings}


# --- experiments: the inference API and the controller ---------------------------------------------


class ArmTarget(FunctionSettings):
    """Where an arm's traffic goes: a SageMaker endpoint and one of its production variants."""

    arm: str = Name
    endpoint: str = Name
    variant: str = Name
    model_package_arn: str | None = None


class FeatureLookup(FunctionSettings):
    """The online features that make the model input (one CSV row, in ``features`` order)."""

    name: str = Name
    features: Texts = Field(min_length=1)
    record_identifier: str | None = None


class ExperimentSettings(FunctionSettings):
    """One public endpoint: its experiment id, arms, initial weights and request options."""

    name: str = Name
    experiment: str = ""  # "" means: the public name
    arms: dict[str, ArmTarget] = Field(min_length=1)
    initial_weights: dict[str, float] = Field(default_factory=dict)  # empty means: equal weights
    allow_variant_override: bool = False
    content_types: Texts = DEFAULT_CONTENT_TYPES
    feature_group: FeatureLookup | None = None
    salt: str = ""  # "" means: the experiment id

    @field_validator("arms", mode="before")
    @classmethod
    def _arms_by_name(cls, value: Any) -> Any:
        """A list of arms (as the config writes them) is keyed by arm name; duplicates are refused."""
        if isinstance(value, list | tuple):
            names = [entry.get("arm") if isinstance(entry, Mapping) else getattr(entry, "arm", None)
                     for entry in value]
            if len(set(names)) != len(names):
                raise ValueError(f"arm names must be unique, got {names}")
            return dict(zip(names, value, strict=True))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for key, target in self.arms.items():
            if key != target.arm:
                raise ValueError(f"arm {key!r} is keyed under another name than its own ({target.arm!r})")
        weights = self.initial_weights or {arm: 1.0 for arm in self.arms}
        if set(weights) != set(self.arms) or not all(math.isfinite(w) and w >= 0 for w in weights.values()) \
                or sum(weights.values()) <= 0:
            raise ValueError(f"initial_weights must give every arm of {sorted(self.arms)} a weight >= 0, "
                             f"summing to more than 0: {weights}")
        # frozen: fill the defaults that depend on other fields once, here
        object.__setattr__(self, "initial_weights", {arm: float(weights[arm]) for arm in self.arms})
        object.__setattr__(self, "experiment", self.experiment or self.name)
        object.__setattr__(self, "salt", self.salt or self.experiment)
        object.__setattr__(self, "content_types", tuple(c.lower() for c in self.content_types))
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The distinct SageMaker endpoints of the arms, in arm order."""
        return tuple(dict.fromkeys(target.endpoint for target in self.arms.values()))


def _name_experiments(value: Any) -> Any:
    """Experiments are keyed by public name; each entry's ``name`` is that key."""
    if isinstance(value, Mapping):
        return {key: ({**entry, "name": entry.get("name", key)} if isinstance(entry, Mapping) else entry)
                for key, entry in value.items()}
    return value


class InferenceSettings(FunctionSettings):
    """``handlers.inference_api``."""

    experiments: dict[str, ExperimentSettings]
    predictions_table: str = Name
    statistics_table: str = Name
    state_table: str = Name
    subject_hash_secret: str = Field(min_length=1, description="Secrets Manager id of the subject-hash key")
    prediction_ttl_days: int = Field(default=30, ge=1, le=3650)
    allocation_cache_seconds: int = Field(default=30, ge=1, le=600)
    smoke_test_role: str | None = None

    _experiments_named = field_validator("experiments", mode="before")(classmethod(
        lambda cls, value: _name_experiments(value)))


class ControllerRule(FunctionSettings):
    """How the controller moves and decides one experiment (``ControllerConfig.settings()``).

    ``None`` means the domain's default (``domain.experiments.Guardrails``,
    ``domain.sequential_test.SequentialTest``); the bounds are the domain's own, so a value it would
    refuse fails here, at synthesis."""

    strategy: Literal["thompson", "epsilon_greedy", "ucb1", "fixed"] = "thompson"
    epsilon: float | None = Field(default=None, ge=0, le=1)
    min_share: float | None = Field(default=None, ge=0, lt=1)
    max_step: float | None = Field(default=None, gt=0, le=1)
    min_observations: int | None = Field(default=None, ge=0)
    min_change: float | None = Field(default=None, ge=0, lt=1)
    stop: bool = True  # false: keep adapting, never decide
    alpha: float | None = Field(default=None, gt=0, lt=1)
    min_effect: float | None = Field(default=None, ge=0, lt=1)
    max_invocations: int | None = Field(default=None, ge=1)
    max_duration_days: float | None = Field(default=None, gt=0)
    feedback_delay_hours: float = Field(default=0, ge=0)
    contender_share: float = Field(default=0.2, ge=0, lt=1)  # floor of arms the running test still needs
    weights: dict[str, float] | None = None  # fixed strategy: the split (default: initial weights)

    @model_validator(mode="after")
    def _limits_leave_matured_feedback(self) -> Self:
        if self.max_duration_days is not None and self.max_duration_days * 24 <= self.feedback_delay_hours:
            raise ValueError(f"max_duration_days {self.max_duration_days:g} must be longer than "
                             f"feedback_delay_hours {self.feedback_delay_hours:g} / 24, or no feedback matures "
                             "before the test stops")
        return self


class ControllerSettings(FunctionSettings):
    """``handlers.experiment_controller``."""

    experiments: dict[str, ExperimentSettings]
    controllers: dict[str, ControllerRule] = Field(default_factory=dict)
    statistics_table: str = Name
    state_table: str = Name
    notification_topic_arn: str | None = None

    _experiments_named = field_validator("experiments", mode="before")(classmethod(
        lambda cls, value: _name_experiments(value)))

    @field_validator("controllers")
    @classmethod
    def _fit_their_experiments(cls, controllers: dict[str, ControllerRule],
                               info: ValidationInfo) -> dict[str, ControllerRule]:
        experiments = info.data.get("experiments") or {}
        for name, rule in controllers.items():
            experiment = experiments.get(name)
            if experiment is None:
                raise ValueError(f"controller for an unknown experiment {name!r} "
                                 f"(experiments: {sorted(experiments)})")
            arms = len(experiment.arms)
            if rule.min_share is not None and arms * rule.min_share > 1:
                raise ValueError(f"{name}: min_share {rule.min_share} is impossible for {arms} arms "
                                 f"(every arm keeps min_share: at most {1 / arms:.3g})")
            if rule.weights is not None and set(rule.weights) != set(experiment.arms):
                raise ValueError(f"{name}: fixed weights {sorted(rule.weights)} must name the arms "
                                 f"{sorted(experiment.arms)}")
        return controllers

    def rule(self, name: str) -> ControllerRule:
        return self.controllers.get(name) or ControllerRule()


# --- feedback: the feedback API and its dead-letter replay ------------------------------------------


class FeedbackApiSettings(FunctionSettings):
    """``handlers.feedback_api`` and ``handlers.feedback_replay`` (which needs no subject-hash key:
    it only sees hashed subjects).

    Field order matters: each cross-field rule sits on the later field, so an error names the field
    (and the config field it comes from) that has to change."""

    predictions_table: str = Name
    feedback_table: str = Name
    statistics_table: str = Name
    ground_truth_stream: str = Name
    dead_letter_queue_url: str = Name
    subject_hash_secret: str | None = Field(default=None, min_length=1)
    max_batch: int = Field(default=500, ge=1, le=10_000)
    max_age_days: int = Field(default=30, ge=1, le=3650)
    prediction_ttl_days: int = Field(default=30, ge=1, le=3650)
    retention_days: int = Field(default=90, ge=1, le=36500)

    @field_validator("retention_days")
    @classmethod
    def _outlives_what_it_guards(cls, retention: int, info: ValidationInfo) -> int:
        max_age = info.data.get("max_age_days")
        if max_age is not None and retention <= max_age:
            raise ValueError(f"must exceed feedback_max_age_days ({max_age}): idempotency records must "
                             "outlive the oldest feedback still accepted")
        ttl = info.data.get("prediction_ttl_days")
        if ttl is not None and retention < ttl:
            raise ValueError(f"must be at least prediction_ttl_days ({ttl}): a prediction's credit marker must "
                             "outlive the prediction, or a late second feedback credits its arm twice")
        return retention

    def limits(self, subject_hash_key: bytes | None) -> Any:
        """The handlers' ``domain.feedback.FeedbackSettings``, with the key read from the secret."""
        from datetime import timedelta

        from mlops_runtime.domain.feedback import FeedbackSettings

        return FeedbackSettings(
            predictions_table=self.predictions_table,
            feedback_table=self.feedback_table,
            statistics_table=self.statistics_table,
            ground_truth_stream=self.ground_truth_stream,
            dead_letter_queue_url=self.dead_letter_queue_url,
            subject_hash_key=subject_hash_key,
            max_batch=self.max_batch,
            max_age=timedelta(days=self.max_age_days),
            retention=timedelta(days=self.retention_days),
        )


# --- monitoring: the monitoring launcher and the retraining trigger --------------------------------
# Types and limits are the launcher's own (``domain.monitoring_window``): one definition of each.

from mlops_runtime.domain import monitoring_window as _window  # noqa: E402
from mlops_runtime.domain.validation import matching  # noqa: E402
from pydantic import AfterValidator  # noqa: E402

EndpointName = matching(_window.ENDPOINT_NAME, "a SageMaker endpoint name")
PipelineName = matching(_window.PIPELINE_NAME, "a pipeline name")
BaselineUri = Annotated[str, AfterValidator(_window.check_baseline_uri)]


def _keyed(field: str) -> Any:
    """A ``before`` validator of a mapping of entries: each entry is named by its key (its ``field``
    is the key, as experiments are named by theirs); an entry that names another key is refused."""

    def name_entries(cls: Any, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        named = {}
        for key, entry in value.items():
            own = entry.get(field, key) if isinstance(entry, Mapping) else getattr(entry, field, key)
            if own != key:
                raise ValueError(f"{key!r} holds the entry of {own!r}")
            named[key] = {**entry, field: key} if isinstance(entry, Mapping) else entry
        return named

    return classmethod(name_entries)


class MonitorSettings(FunctionSettings):
    """One monitored endpoint: its pipeline, window, label lookback and where its files are.

    ``schedule_hours`` is how often the launcher's schedule runs it (``None``: a schedule whose
    period the builder cannot tell). The launcher analyses the ``window_hours`` before each run and
    rechecks late labels at multiples of the window, so it must run exactly once per window: more
    often analyses overlapping windows (and pages on each), less often leaves windows and rechecks
    unanalysed."""

    endpoint: EndpointName
    pipeline_name: PipelineName
    window_hours: int = Field(ge=_window.MIN_WINDOW_HOURS, le=_window.MAX_WINDOW_HOURS)
    schedule_hours: float | None = Field(default=None, gt=0)
    ground_truth_lookback_hours: int = Field(ge=0, le=_window.MAX_LOOKBACK_HOURS)
    capture_bucket: _window.Bucket
    capture_prefix: _window.KeyPrefix
    ground_truth_bucket: _window.Bucket
    ground_truth_prefix: _window.KeyPrefix
    manifest_bucket: _window.Bucket
    manifest_prefix: _window.KeyPrefix
    baseline_s3_uri: BaselineUri | None = None

    @field_validator("schedule_hours")
    @classmethod
    def _runs_once_per_window(cls, hours: float | None, info: ValidationInfo) -> float | None:
        window = info.data.get("window_hours")
        if hours is not None and window is not None and hours != window:
            raise ValueError(f"runs every {hours:g} h but window_hours is {window}: the launcher analyses the "
                             "window before each run, so it must run once per window (more often analyses "
                             "overlapping windows, less often leaves windows unmonitored)")
        return hours


class MonitoringLauncherSettings(FunctionSettings):
    """``handlers.monitoring_launcher``: the monitored endpoints, keyed by endpoint name."""

    monitors: dict[str, MonitorSettings]

    _named = field_validator("monitors", mode="before")(_keyed("endpoint"))


class ProductionSource(FunctionSettings):
    """Where an alarm's closed-loop retraining finds production data (``domain.production_data``)."""

    model_package_group: PipelineName  # its newest package: the last training
    capture_bucket: _window.Bucket
    capture_prefix: _window.KeyPrefix  # <capture>/<endpoint>/, holding <variant>/yyyy/mm/dd/hh/
    ground_truth_bucket: _window.Bucket
    ground_truth_prefix: _window.KeyPrefix
    dataset_bucket: _window.Bucket  # where the joined production.csv is written for the pipeline
    dataset_prefix: _window.KeyPrefix
    max_lookback_hours: int = Field(ge=1, le=8760)


class RetrainingSettings(FunctionSettings):
    """What one alarm retrains: its training pipelines, the cooldown, closed-loop production data.

    ``alarm_period_hours`` is how often the alarm is evaluated (the monitoring window): it can go
    back into ALARM at most once per period, so a shorter cooldown never holds a retraining back."""

    alarm: str = Name
    pipelines: Texts = Field(min_length=1, max_length=100)
    alarm_period_hours: int | None = Field(default=None, ge=1)
    cooldown_hours: float = Field(ge=0, le=8760, allow_inf_nan=False)
    production: ProductionSource | None = None

    @field_validator("pipelines")
    @classmethod
    def _pipeline_names(cls, pipelines: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(pipelines)) != len(pipelines):
            raise ValueError(f"lists a pipeline twice: {list(pipelines)}")
        for name in pipelines:
            if not _window.PIPELINE_NAME.match(name):
                raise ValueError(f"{name!r} is not a pipeline name")
        return pipelines

    @field_validator("cooldown_hours")
    @classmethod
    def _outlasts_an_alarm_period(cls, hours: float, info: ValidationInfo) -> float:
        period = info.data.get("alarm_period_hours")
        if period is not None and hours < period:
            raise ValueError(f"must be at least the alarm's period, the monitoring window ({period} h): the alarm "
                             "re-enters ALARM at most once per period, so a shorter cooldown holds nothing back")
        return hours


class RetrainingTriggerSettings(FunctionSettings):
    """``handlers.retraining_trigger``: what each alarm retrains, keyed by alarm name."""

    retraining: dict[str, RetrainingSettings]
    notification_topic_arn: str | None = Field(default=None, min_length=1)

    _named = field_validator("retraining", mode="before")(_keyed("alarm"))


# --- features: a feature group's ingest function ---------------------------------------------------


class FeatureColumn(FunctionSettings):
    name: str
    type: str  # Integral | Fractional | String: checked by features.schema with the other rules


class FeatureIngestSettings(FunctionSettings):
    """``handlers.feature_ingest`` (and the ``features.ingest`` command): the feature group that
    records are validated against. Its rules are ``features.schema``'s (names, reserved names,
    duplicates ignoring case as the offline store's columns, identifier and event-time features),
    checked here so that a group the function would refuse fails ``make synth``."""

    name: str
    record_identifier: str
    event_time_feature: str
    features: Annotated[tuple[FeatureColumn, ...], Field(strict=False)]

    @field_validator("name")
    @classmethod
    def _a_feature_store_name(cls, name: str) -> str:
        from mlops_runtime.features.schema import check_name

        check_name("feature group name", name)
        return name

    @field_validator("features")
    @classmethod
    def _a_valid_group(cls, features: tuple[FeatureColumn, ...], info: ValidationInfo) -> tuple[FeatureColumn, ...]:
        if "name" in info.data:  # else the name's own error is reported
            cls._schema_of(info.data["name"], info.data.get("record_identifier"),
                           info.data.get("event_time_feature"), features)
        return features

    @staticmethod
    def _schema_of(name: str, record_identifier: Any, event_time_feature: Any,
                   features: tuple[FeatureColumn, ...]) -> Any:
        from mlops_runtime.features.schema import FeatureDefinition, FeatureGroupSchema

        return FeatureGroupSchema(name, record_identifier, event_time_feature,
                                  tuple(FeatureDefinition(f.name, f.type) for f in features))  # type: ignore[arg-type]

    @functools.cached_property
    def schema(self) -> Any:
        """The group as ``features.schema.FeatureGroupSchema`` (what records are validated with)."""
        return self._schema_of(self.name, self.record_identifier, self.event_time_feature, self.features)
