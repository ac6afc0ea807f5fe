"""Each function's settings model (``mlops_runtime.settings``), built from the validated config.

The stacks call these builders with their resources' names (CloudFormation tokens) and pass the
model to the function as one environment variable (``FunctionSettings.to_env``); the local rehearsal
calls them with its own names. :func:`check` builds every model from a config with placeholder
names while the config is loaded, so a value the function would refuse at run time stops
``make synth`` with the usual one line: file, config field, value, what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .config.models import ControllerConfig, PlatformConfig, Route
from .runtime_tables import runtime_settings

settings = runtime_settings()
BOOKKEEPING = ControllerConfig(strategy="fixed", stop=False, min_share=0, interval_minutes=15)


@dataclass(frozen=True)
class ApiResources:
    """Names of what the API's functions use (defaults: placeholders for :func:`check`)."""

    predictions_table: str = "predictions"
    statistics_table: str = "statistics"
    state_table: str = "experiment-state"
    feedback_table: str = "feedback"
    ground_truth_stream: str = "ground-truth"
    dead_letter_queue_url: str = "dead-letters"
    subject_hash_secret: str = "subject-hash-key"
    notification_topic_arn: str = "notifications"
    smoke_test_role: str | None = None


def endpoint_name(config: PlatformConfig, endpoint: str) -> str:
    return f"{config.name_prefix}-{endpoint}"  # as EnvironmentNames.endpoint_name


def experiments(config: PlatformConfig) -> dict[str, Any]:
    """The public endpoints of the inference API and their experiments, keyed by public name."""
    groups = {group.name: group for group in config.feature_store.feature_groups}
    result = {}
    for route in config.serving.routes():
        lookup = route.config.features
        result[route.name] = settings.ExperimentSettings(
            name=route.name,
            experiment=route.name,
            arms={arm.arm: settings.ArmTarget(arm=arm.arm, endpoint=endpoint_name(config, arm.endpoint),
                                              variant=arm.variant) for arm in route.arms},
            initial_weights={arm: float(weight) for arm, weight in route.initial_weights.items()},
            allow_variant_override=route.allow_variant_override,
            content_types=tuple(route.config.content_types),
            feature_group=None if lookup is None else settings.FeatureLookup(
                name=f"{config.name_prefix}-{lookup.feature_group}",
                features=tuple(lookup.features),
                record_identifier=groups[lookup.feature_group].record_identifier,
            ),
            salt=route.name,
        )
    return result


def inference(config: PlatformConfig, resources: ApiResources = ApiResources()) -> Any:
    api = config.serving.api
    return settings.InferenceSettings(
        experiments=experiments(config),
        predictions_table=resources.predictions_table,
        statistics_table=resources.statistics_table,
        state_table=resources.state_table,
        subject_hash_secret=resources.subject_hash_secret,
        prediction_ttl_days=api.prediction_ttl_days,
        allocation_cache_seconds=api.allocation_cache_seconds,
        smoke_test_role=resources.smoke_test_role,
    )


def feedback(config: PlatformConfig, resources: ApiResources = ApiResources(), *, replay: bool = False) -> Any:
    """The feedback API's settings; ``replay``: its dead-letter replay's (no subject-hash key)."""
    api = config.serving.api
    return settings.FeedbackApiSettings(
        predictions_table=resources.predictions_table,
        feedback_table=resources.feedback_table,
        statistics_table=resources.statistics_table,
        ground_truth_stream=resources.ground_truth_stream,
        dead_letter_queue_url=resources.dead_letter_queue_url,
        subject_hash_secret=None if replay else resources.subject_hash_secret,
        max_batch=api.feedback_max_batch,
        max_age_days=api.feedback_max_age_days,
        prediction_ttl_days=api.prediction_ttl_days,
        retention_days=api.feedback_retention_days,
    )


def controller(config: PlatformConfig, resources: ApiResources = ApiResources(),
               rules: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """``rules``: each experiment's ``ControllerConfig.settings()`` (the stack's, defaults included)."""
    return settings.ControllerSettings(
        experiments=experiments(config),
        controllers={name: settings.ControllerRule(**rule) for name, rule in (rules or {}).items()},
        statistics_table=resources.statistics_table,
        state_table=resources.state_table,
        notification_topic_arn=resources.notification_topic_arn,
    )


# Where each settings field comes from in the config (for error lines); fields not listed come from
# the experiments (serving.experiments and serving.endpoints).
CONFIG_FIELDS: dict[str, str] = {
    "prediction_ttl_days": "serving.api.prediction_ttl_days",
    "allocation_cache_seconds": "serving.api.allocation_cache_seconds",
    "max_batch": "serving.api.feedback_max_batch",
    "max_age_days": "serving.api.feedback_max_age_days",
    "retention_days": "serving.api.feedback_retention_days",
}


def _config_value(config: PlatformConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def controller_of(route: Route) -> ControllerConfig:
    """The route's controller; without one, bookkeeping only: the split stays fixed, but each
    run still records the deployed model packages and starts a new round on a new deployment."""
    return route.config.controller or BOOKKEEPING


def controller_rules(config: PlatformConfig) -> dict[str, dict[str, Any]]:
    return {route.name: controller_of(route).settings() for route in config.serving.routes()}


def builders(config: PlatformConfig) -> dict[str, Callable[[], Any]]:
    """Every function's settings builder, by function (placeholders for resource names)."""
    rules = controller_rules(config)
    return {
        "inference-api": lambda: inference(config),
        "feedback-api": lambda: feedback(config),
        "feedback-replay": lambda: feedback(config, replay=True),
        "experiment-controller": lambda: controller(config, rules=rules),
    }


def check(config: PlatformConfig, source: str) -> list[str]:
    """Error lines (``<source>: field '<config field>' = <value>: <rule>``) of every settings model
    that ``config`` cannot build; empty when all build."""
    lines: dict[str, str] = {}  # rule -> line: the feedback API and its replay share their rules
    for function, build in builders(config).items():
        try:
            build()
        except ValidationError as error:
            for item in error.errors(include_url=False):
                field = CONFIG_FIELDS.get(str(item["loc"][0]) if item["loc"] else "", "")
                value = _config_value(config, field) if field else item["input"]
                rule = f"field '{field or 'serving.experiments'}' = {value!r}: " \
                       f"{item['msg'].removeprefix('Value error, ')}"
                lines.setdefault(rule, f"{source}: {rule} (the {function} function would refuse it)")
    return list(lines.values())
