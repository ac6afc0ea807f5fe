"""Each function's settings model (``mlops_runtime.settings``), built from the validated config.

The stacks call these builders with their resources' names (CloudFormation tokens) and pass the
model to the function as one environment variable (``FunctionSettings.to_env``); the local rehearsal
calls them with its own names. :func:`check` builds every model from a config with placeholder
names while the config is loaded, so a value the function would refuse at run time stops
``make synth`` with the usual one line: file, config field, value, what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .config.loader import shown_value
from .config.models import ApiConfig, ControllerConfig, EndpointConfig, PlatformConfig, RemovalPolicy, Route
from .constructs.naming import EnvironmentNames, environment_bucket_name
from .runtime_tables import deployment_domain, runtime_settings, search_domain, variant_kinds

# Each function's settings module (mlops_runtime/settings/): the classes its handler validates.
deployer_settings = runtime_settings("deployer")
scaler_settings = runtime_settings("endpoint_scaler")
promotion_settings = runtime_settings("model_promotion")
teardown_settings = runtime_settings("endpoint_teardown")
experiment_settings = runtime_settings("experiments")
feedback_settings = runtime_settings("feedback")
monitoring_settings = runtime_settings("monitoring")
feature_settings = runtime_settings("features")
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
    notification_topic_arn: str | None = "notifications"  # None: the controller notifies nobody
    smoke_test_role: str | None = None


def endpoint_name(config: PlatformConfig, endpoint: str) -> str:
    return f"{config.name_prefix}-{endpoint}"  # as EnvironmentNames.endpoint_name


def experiments(config: PlatformConfig) -> dict[str, Any]:
    """The public endpoints of the inference API and their experiments, keyed by public name."""
    groups = {group.name: group for group in config.feature_store.feature_groups}
    result = {}
    for route in config.serving.routes():
        lookup = route.config.features
        result[route.name] = experiment_settings.ExperimentSettings(
            name=route.name,
            experiment=route.name,
            arms={arm.arm: experiment_settings.ArmTarget(arm=arm.arm, endpoint=endpoint_name(config, arm.endpoint),
                                              variant=arm.variant) for arm in route.arms},
            initial_weights={arm: float(weight) for arm, weight in route.initial_weights.items()},
            allow_variant_override=route.allow_variant_override,
            content_types=tuple(route.config.content_types),
            feature_group=None if lookup is None else experiment_settings.FeatureLookup(
                name=f"{config.name_prefix}-{lookup.feature_group}",
                features=tuple(lookup.features),
                record_identifier=groups[lookup.feature_group].record_identifier,
            ),
            salt=route.name,
        )
    return result


def inference(config: PlatformConfig, resources: ApiResources = ApiResources()) -> Any:
    api = config.serving.api
    return experiment_settings.InferenceSettings(
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
    return feedback_settings.FeedbackApiSettings(
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


# --- deployment: the deployer, the endpoint scaler, model promotion --------------------------------

GUARDRAIL_VARIANTS = ("champion", "challenger")  # the deployer's fixed variant names
CAPTURE_PREFIX = "capture"  # where the deployer's endpoints write data capture (read by monitoring)
ASYNC_OUTPUT_PREFIX = "async-inference"


@dataclass(frozen=True)
class ServingResources:
    """What the Serving stack's functions use besides the config: tokens in the stack (defaults:
    placeholders for :func:`check`)."""

    idempotency_table: str = "deployment-idempotency"
    subnet_ids: tuple[str, ...] = ("subnet-placeholder",)
    security_group_ids: tuple[str, ...] = ("sg-placeholder",)
    images: Mapping[str, str] = field(default_factory=dict)  # endpoint -> its image asset's URI


def _validated(model: Any, **fields: Any) -> Any:
    """``model`` validated from JSON, as the function reads it (strict JSON builds nested specs)."""
    return model.model_validate_json(json.dumps(fields))


def guardrail_alarm_names(config: PlatformConfig, endpoint: EndpointConfig) -> tuple[str, ...]:
    """The 5xx-rate and p99-latency alarms of each variant, which roll a blue/green update back."""
    name = endpoint_name(config, endpoint.name)
    return tuple(f"{name}-{variant}-{kind}" for variant in GUARDRAIL_VARIANTS for kind in ("5xx-rate", "p99-latency"))


def endpoint_spec(config: PlatformConfig, endpoint: EndpointConfig,
                  resources: ServingResources = ServingResources()) -> dict[str, Any]:
    """The spec the deployer plans against (``mlops_runtime.domain.deployment.EndpointSpec``)."""
    names = EnvironmentNames(config.account, config.region, config.name_prefix)
    name = endpoint_name(config, endpoint.name)
    capture_bucket = environment_bucket_name(config.name_prefix, config.account, config.region, "data-capture")
    topic, key = names.notifications_topic_arn, names.arn("kms", f"alias/{config.name_prefix}")
    variant = endpoint.variant
    context = variant_kinds().SpecContext(endpoint_name=name, notification_topic_arn=topic,
                                          results_prefix=f"s3://{capture_bucket}/{ASYNC_OUTPUT_PREFIX}/{name}")
    champion = endpoint.kind.spec_fields(variant, context)  # the kind's class maps its config to its spec
    guardrails = endpoint.guardrails
    spec: dict[str, Any] = {
        "name": name,
        "model_package_group": f"{config.name_prefix}-{endpoint.model_package_group}",
        "variants": {"champion": {k: v for k, v in champion.items() if v is not None}},
        "execution_role_arn": names.execution_role_arn,
        "challenger_initial_weight": endpoint.challenger_initial_weight,
        "shadow": endpoint.shadow,
        "kms_key_arn": key,
        "guardrails": {
            "mode": guardrails.mode,
            **({"canary_size_percent": guardrails.canary_size_percent} if guardrails.mode == "CANARY" else {}),
            **({"linear_step_percent": guardrails.linear_step_percent} if guardrails.mode == "LINEAR" else {}),
            "wait_interval_s": guardrails.wait_interval_s,
            "termination_wait_s": guardrails.termination_wait_s,
            "alarm_names": list(guardrail_alarm_names(config, endpoint)),
        },
        # The environment's cost tags (the budget filters on `environment`), and the deployer's
        # own `mlops:environment`, which scopes what it may delete.
        "tags": {**config.resource_tags, "mlops:environment": config.environment},
    }
    if endpoint.container is not None:
        spec["image_uri"] = resources.images.get(endpoint.name) or endpoint.container.image_uri or "image-asset"
    gpus = getattr(variant, "gpus", None)  # instance-based kinds only
    if gpus is not None:
        spec["gpu_layout"] = {"layout": gpus.layout, "model_memory_gib": gpus.model_memory_gib}
    capture = endpoint.data_capture
    if capture is not None and capture.enabled:
        spec["data_capture"] = {
            "enabled": True,
            "destination_s3_uri": f"s3://{capture_bucket}/{CAPTURE_PREFIX}",
            "sampling_percentage": capture.sampling_percentage,
            "kms_key_arn": key,
            "capture_content_types": {"json": list(capture.json_content_types),
                                      "csv": list(capture.csv_content_types)},
        }
    if config.vpc.enabled and endpoint.kind.vpc:
        spec["vpc"] = {"subnet_ids": list(resources.subnet_ids),
                       "security_group_ids": list(resources.security_group_ids)}
    return spec


def deployer(config: PlatformConfig, resources: ServingResources = ServingResources()) -> Any:
    names = EnvironmentNames(config.account, config.region, config.name_prefix)
    return _validated(
        deployer_settings.DeployerSettings,
        endpoints=[endpoint_spec(config, endpoint, resources) for endpoint in config.serving.endpoints],
        idempotency_table=resources.idempotency_table,
        notification_topic_arn=names.notifications_topic_arn,
        environment=config.environment,
    )


def scaling_entry(endpoint: EndpointConfig) -> dict[str, Any] | None:
    """The endpoint's ``domain.autoscaling.ScalingEntry`` (``None``: not scaled, e.g. serverless)."""
    variant = endpoint.variant
    scaling = getattr(variant, "autoscaling", None)  # kinds with a scaling dimension only
    if scaling is None:
        return None
    target = endpoint.kind.scaling.target_field  # one config field for every dimension's target
    return {"kind": variant.kind, "min_instances": scaling.min_instances, "max_instances": scaling.max_instances,
            target: scaling.target_invocations_per_instance, "scale_in_cooldown_s": scaling.scale_in_cooldown_s,
            "scale_out_cooldown_s": scaling.scale_out_cooldown_s}


def scaler(config: PlatformConfig) -> Any:
    entries = {endpoint_name(config, e.name): scaling_entry(e) for e in config.serving.endpoints}
    return _validated(scaler_settings.ScalerSettings,
                      endpoints={name: entry for name, entry in entries.items() if entry is not None})


def teardown(config: PlatformConfig) -> Any:
    """The endpoint teardown custom resource's properties: delete this environment's endpoints when
    the stack is deleted, where the removal policy is ``destroy`` (dev)."""
    return teardown_settings.TeardownSettings(
        managed_by_tag=deployment_domain().MANAGED_BY_VALUE, environment=config.environment,
        delete_on_destroy=config.removal_policy is RemovalPolicy.DESTROY)


def model_package_groups(config: PlatformConfig) -> list[str]:
    """The environment's model package groups (without the name prefix)."""
    training = config.training
    return sorted({p.model_package_group for p in training.pipelines} | set(training.registry.additional_groups))


def promotion(config: PlatformConfig) -> Any | None:
    """The model promotion function's settings (``None``: this environment promotes from none)."""
    source = config.training.registry.promote_from
    if source is None:
        return None
    return _validated(promotion_settings.PromotionSettings, source_account=source.account, groups={
        f"{source.name_prefix}-{group}": f"{config.name_prefix}-{group}" for group in model_package_groups(config)})


def _endpoint_field(config: PlatformConfig, index: int, path: str) -> str:
    """The config field of an endpoint spec's field (``variants.champion.x`` -> ``variant.x``)."""
    where = f"serving.endpoints[{index}]"
    if path.startswith("tags"):  # the environment's tags, which every endpoint carries
        return "tags.extra"
    tags = "|".join(map(re.escape, variant_kinds().KINDS))
    path = re.sub(rf"^variants\.(champion|challenger)(\.({tags}))?", "variant", path)
    path = path.replace("capture_content_types.json", "json_content_types")
    path = path.replace("capture_content_types.csv", "csv_content_types")
    path = re.sub(r"(\.\d+|\[\d+\])$", "", path)  # an item of a list: the list's field
    path = {"image_uri": "container.image_uri", "guardrails.alarm_names": "name",
            "gpu_layout": "variant.gpus"}.get(path, path)
    return f"{where}.{path}" if path else where


def _deployment_field(config: PlatformConfig, function: str, loc: tuple[Any, ...], cause: Any) -> str | None:
    """The config field behind an error of a deployment function's settings, ``None`` if not theirs."""
    if function in ("endpoint-deployer", "endpoint-scaler") and loc == ("endpoints",):
        return "serving.endpoints"  # a rule across the endpoints (names)
    if function == "endpoint-deployer" and loc[:1] == ("endpoints",) and len(loc) > 1:
        path = ".".join(str(part) for part in loc[2:])
        if hasattr(cause, "field"):  # a rule of the spec's __post_init__ names its own field
            path = f"{path}.{cause.field}" if path else cause.field
        return _endpoint_field(config, int(loc[1]), path)
    if function == "endpoint-scaler" and loc[:1] == ("endpoints",) and len(loc) > 1:
        names = [endpoint_name(config, e.name) for e in config.serving.endpoints]
        index = names.index(loc[1]) if loc[1] in names else 0
        leaf = str(loc[-1]) if len(loc) > 2 and loc[-1] != "[key]" else "name"
        if leaf.startswith("target_"):
            leaf = "target_invocations_per_instance"  # one config field for every dimension's target
        return f"serving.endpoints[{index}]." + ("name" if leaf == "name" else f"variant.autoscaling.{leaf}")
    if function == "model-promotion":
        return "training.registry.promote_from" + (".account" if loc[:1] == ("source_account",) else ".name_prefix")
    return None


def controller(config: PlatformConfig, resources: ApiResources = ApiResources(),
               rules: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """``rules``: each experiment's ``ControllerConfig.settings()`` (the stack's, defaults included)."""
    return experiment_settings.ControllerSettings(
        experiments=experiments(config),
        controllers={name: experiment_settings.ControllerRule(**rule) for name, rule in (rules or {}).items()},
        statistics_table=resources.statistics_table,
        state_table=resources.state_table,
        notification_topic_arn=resources.notification_topic_arn,
    )


# Where each settings field of the API's functions comes from in the config (for error lines), where its
# name differs from the field of serving.api it is built from (a field named as one of serving.api is
# that one); other fields come from the experiments (serving.experiments and serving.endpoints).
API_FUNCTIONS = ("inference-api", "feedback-api", "feedback-replay", "experiment-controller")
CONFIG_FIELDS: dict[str, str] = {
    "max_batch": "serving.api.feedback_max_batch",
    "max_age_days": "serving.api.feedback_max_age_days",
    "retention_days": "serving.api.feedback_retention_days",
}


# The config section of a function's settings whose error names no single config field.
DEFAULT_FIELDS = {"monitoring-launcher": "serving.endpoints", "retraining-trigger": "serving.endpoints"}


def _api_field(function: str, loc: tuple[Any, ...]) -> str:
    """The serving.api field behind an error of an API function's settings field ('' if none)."""
    name = str(loc[0]) if loc else ""
    if function not in API_FUNCTIONS or not name:
        return ""
    return CONFIG_FIELDS.get(name) or (f"serving.api.{name}" if name in ApiConfig.model_fields else "")


def _config_value(config: PlatformConfig, path: str) -> Any:
    value: Any = config
    for part in re.split(r"\.|(?=\[)", path):
        if part.startswith("["):
            value = value[int(part.strip("[]"))]
        elif isinstance(value, Mapping):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
    if isinstance(value, tuple) and value and all(hasattr(item, "name") for item in value):
        return [item.name for item in value]  # a list of sections: by name
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_defaults=True) or value.model_dump(mode="json")  # a section
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
        # the deployer first: it owns the endpoints, so its rule is the one reported for their names
        "endpoint-deployer": lambda: deployer(config),
        "endpoint-scaler": lambda: scaler(config),
        "model-promotion": lambda: promotion(config),
        "endpoint-teardown": lambda: teardown(config),
        "monitoring-launcher": lambda: monitoring_launcher(config),
        "retraining-trigger": lambda: retraining_trigger(config),
        **{f"{FEATURE_INGEST}{group.name}": (lambda group=group: feature_ingest(config, group))
           for group in config.feature_store.feature_groups},
        **({"search": lambda: search(config)} if config.search.indexes else {}),
        **{f"{MONITORING_JOB}{e.name}": (lambda e=e: monitoring_job(e)) for e in monitored(config)},
    }


def check(config: PlatformConfig, source: str) -> list[str]:
    """Error lines (``<source>: field '<config field>' = <value>: <rule>``) of every settings model
    that ``config`` cannot build; empty when all build."""
    lines: dict[str, str] = {}  # config field -> its first line: functions that share a field share its rule
    for function, build in builders(config).items():
        try:
            build()
        except _job_errors() as error:  # the monitoring job's own argument parser
            _, rule = _monitoring_job_problem(config, function, error)
            lines.setdefault(rule, f"{source}: {rule} (the {function} would refuse it)")
        except search_domain().ConfigurationError as error:  # the search functions' hand-written parser
            field = search_field(config, error.field)
            value = _config_value(config, field) if field else None
            rule = f"field '{field or 'search.indexes'}' = {value!r}: {error.reason}"
            lines.setdefault(rule, f"{source}: {rule} (the {function} functions would refuse it)")
        except ValidationError as error:
            for item in error.errors(include_url=False):
                loc = tuple(item["loc"])
                if item["type"] == "missing":  # the builder's omission, not the config's
                    path = ".".join(str(part) for part in loc)
                    lines.setdefault(path, f"{source}: the {function} function's settings need '{path}', which "
                                           "its builder in mlops_platform/function_settings.py does not set")
                    continue
                cause = (item.get("ctx") or {}).get("error")
                field, value = feature_field(config, function, loc) or (None, None)
                if field is None:
                    field = _deployment_field(config, function, loc, cause) or monitoring_field(config, loc) \
                        or _api_field(function, loc)
                    value = _config_value(config, field) if field else item["input"]
                message = cause.reason if hasattr(cause, "reason") else item["msg"].removeprefix("Value error, ")
                rule = f"field '{field or DEFAULT_FIELDS.get(function, 'serving.experiments')}' = {shown_value(value)}: {message}"
                lines.setdefault(field or rule, f"{source}: {rule} (the {function} function would refuse it)")
    return list(lines.values())


# --- monitoring: the monitoring launcher and the retraining trigger --------------------------------


@dataclass(frozen=True)
class MonitoringResources:
    """Where the monitoring functions' files are (defaults: placeholders for :func:`check`; the
    monitoring stack passes its buckets and the layout it grants)."""

    capture_bucket: str = "capture-bucket"
    feedback_bucket: str = "feedback-bucket"
    artifacts_bucket: str = "artifacts-bucket"
    notification_topic_arn: str = "notifications"
    capture_root: str = "capture"  # the deployer's data capture: <root>/<endpoint>/<variant>/yyyy/mm/dd/hh/
    ground_truth_prefix: str = "ground-truth/"  # the ground-truth stream's objects
    monitoring_root: str = "monitoring"  # manifests, reports and state: <root>/<endpoint>/
    retraining_root: str = "retraining"  # closed-loop production.csv files: <root>/<endpoint>/

    def production_records(self, endpoint: str) -> dict[str, str]:
        """Where an endpoint's captured requests and their ground truth are."""
        return {"capture_bucket": self.capture_bucket, "capture_prefix": f"{self.capture_root}/{endpoint}/",
                "ground_truth_bucket": self.feedback_bucket, "ground_truth_prefix": self.ground_truth_prefix}


def monitored(config: PlatformConfig) -> list[Any]:
    return [endpoint for endpoint in config.serving.endpoints if endpoint.monitoring is not None]


def monitoring_pipeline_name(config: PlatformConfig, endpoint: Any) -> str:
    return f"{endpoint_name(config, endpoint.name)}-monitoring"


def drift_alarm_name(config: PlatformConfig, endpoint: Any) -> str:
    return f"{endpoint_name(config, endpoint.name)}-drift"


def quality_alarm_name(config: PlatformConfig, endpoint: Any) -> str:
    return f"{endpoint_name(config, endpoint.name)}-quality"


def monitoring_alarm_names(config: PlatformConfig, endpoint: Any) -> tuple[str, ...]:
    """The endpoint's drift alarm, and its quality alarm when it has quality targets to page on."""
    quality = (quality_alarm_name(config, endpoint),) if endpoint.monitoring.quality_targets else ()
    return (drift_alarm_name(config, endpoint), *quality)


def training_pipelines_of(config: PlatformConfig, endpoint: Any) -> list[str]:
    """The training pipelines that register into the endpoint's model package group."""
    return [f"{config.name_prefix}-{p.name}" for p in config.training.pipelines
            if p.model_package_group == endpoint.model_package_group]


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_EVERY_N_HOURS = re.compile(r"^(?:\*|0)/(\d+)$")


def schedule_hours(expression: str) -> float | None:
    """Hours between two runs of an EventBridge Scheduler expression that runs at a fixed period
    (``rate(...)``; ``cron`` hourly, every N hours, daily or weekly); ``None`` for any other."""
    rate = _RATE.match(expression)
    if rate:
        count, unit = int(rate[1]), rate[2]
        return count / 60 if unit.startswith("minute") else count * (24 if unit.startswith("day") else 1)
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return None
    fields = expression[5:-1].split()
    if len(fields) != 6:
        return None
    minute, hour, day, month, weekday, year = fields
    if not minute.isdigit() or month != "*" or year != "*":
        return None
    if day in ("*", "?") and weekday in ("*", "?"):
        every = _EVERY_N_HOURS.match(hour)
        if hour == "*":
            return 1
        if every and 24 % int(every[1]) == 0:
            return int(every[1])
        return 24 if hour.isdigit() else None
    if day == "?" and re.fullmatch(r"[A-Z]{3}|[1-7]", weekday) and hour.isdigit():
        return 168
    return None


def monitoring_launcher(config: PlatformConfig, resources: MonitoringResources = MonitoringResources()) -> Any:
    monitors = {}
    for endpoint in monitored(config):
        name, monitoring = endpoint_name(config, endpoint.name), endpoint.monitoring
        monitors[name] = dict(  # validated by the outer model: errors carry the entry's key
            endpoint=name,
            pipeline_name=monitoring_pipeline_name(config, endpoint),
            window_hours=monitoring.window_hours,
            schedule_hours=schedule_hours(monitoring.schedule),
            ground_truth_lookback_hours=monitoring.ground_truth_lookback_hours,
            **resources.production_records(name),
            manifest_bucket=resources.artifacts_bucket,
            manifest_prefix=f"{resources.monitoring_root}/{name}/",
        )
    return monitoring_settings.MonitoringLauncherSettings(monitors=monitors)


def retraining_trigger(config: PlatformConfig, resources: MonitoringResources = MonitoringResources()) -> Any:
    """What each drift and quality alarm retrains (endpoints with ``retraining.enabled`` and a
    training pipeline registering into their group)."""
    retraining = {}
    for endpoint in monitored(config):
        policy, pipelines = endpoint.monitoring.retraining, training_pipelines_of(config, endpoint)
        if not policy.enabled or not pipelines:
            continue
        name = endpoint_name(config, endpoint.name)
        production = None if not policy.production_data else dict(
            model_package_group=f"{config.name_prefix}-{endpoint.model_package_group}",
            **resources.production_records(name),
            dataset_bucket=resources.artifacts_bucket,
            dataset_prefix=f"{resources.retraining_root}/{name}/",
            max_lookback_hours=policy.production_lookback_hours,
        )
        for alarm in monitoring_alarm_names(config, endpoint):
            retraining[alarm] = dict(
                alarm=alarm, pipelines=tuple(pipelines), alarm_period_hours=endpoint.monitoring.window_hours,
                cooldown_hours=policy.cooldown_hours, production=production)
    return monitoring_settings.RetrainingTriggerSettings(retraining=retraining,
                                              notification_topic_arn=resources.notification_topic_arn)


# An error of a keyed entry (loc ``(<mapping>, <key>, <field>, ...)``) -> the config field it comes from.
MONITOR_FIELDS = {
    "schedule_hours": "schedule",
    "window_hours": "window_hours",
    "ground_truth_lookback_hours": "ground_truth_lookback_hours",
    "cooldown_hours": "retraining.cooldown_hours",
    "alarm_period_hours": "window_hours",
    "max_lookback_hours": "retraining.production_lookback_hours",
}


def monitoring_field(config: PlatformConfig, loc: tuple[Any, ...]) -> str | None:
    """The config field behind an error of the monitoring functions' settings, if it is one."""
    if loc[:1] == ("monitors",) and len(loc) > 1 and loc[-1] in ("[key]", "endpoint"):  # its full name
        names = [endpoint_name(config, endpoint.name) for endpoint in config.serving.endpoints]
        return f"serving.endpoints[{names.index(loc[1])}].name" if loc[1] in names else None
    if len(loc) < 3 or loc[0] not in ("monitors", "retraining") or str(loc[-1]) not in MONITOR_FIELDS:
        return None
    key = str(loc[1])
    for index, endpoint in enumerate(config.serving.endpoints):
        name = endpoint_name(config, endpoint.name)
        if endpoint.monitoring is not None and (key == name or key in monitoring_alarm_names(config, endpoint)):
            return f"serving.endpoints[{index}].monitoring.{MONITOR_FIELDS[str(loc[-1])]}"
    return None


# --- features: each feature group's ingest function ------------------------------------------------


def feature_group_name(config: PlatformConfig, group: Any) -> str:
    return f"{config.name_prefix}-{group.name}"


def feature_ingest(config: PlatformConfig, group: Any) -> Any:
    """The ingest function of ``group`` (one of ``feature_store.feature_groups``)."""
    return feature_settings.FeatureIngestSettings(
        name=feature_group_name(config, group),
        record_identifier=group.record_identifier,
        event_time_feature=group.event_time_feature,
        features=tuple({"name": f.name, "type": f.type.value} for f in group.features),
    )


def feature_field(config: PlatformConfig, function: str, loc: tuple[Any, ...]) -> tuple[str, Any] | None:
    """The config field (and the value to show) behind an error of a feature group's ingest settings."""
    if not function.startswith(FEATURE_INGEST) or not loc:
        return None
    name = function.removeprefix(FEATURE_INGEST)
    index = next(i for i, group in enumerate(config.feature_store.feature_groups) if group.name == name)
    group = config.feature_store.feature_groups[index]
    if loc[0] == "features":
        return f"feature_store.feature_groups[{index}].features", [f.name for f in group.features]
    if loc[0] == "name":
        return f"feature_store.feature_groups[{index}].name", feature_group_name(config, group)
    return None


FEATURE_INGEST = "feature-ingest:"  # + the group's name: the builder's key


# --- search: the indexer, the search API and the bulk indexing job ----------------------------------


@dataclass(frozen=True)
class SearchResources:
    """What the search functions' settings name (defaults: placeholders for :func:`check`; the
    search construct passes its stores, whose OpenSearch endpoints are CloudFormation tokens)."""

    report_bucket: str | None = "artifacts-bucket"  # the indexer's; the API and the bulk job need none
    report_prefix: str = "search-reports/"
    vector_bucket: str = "search-vectors"
    opensearch_endpoints: Mapping[str, str] | None = None  # index name -> collection endpoint
    opensearch_region: str = "eu-west-1"


def search_json(config: PlatformConfig, resources: SearchResources = SearchResources()) -> dict[str, Any]:
    """The search functions' settings as the functions read them (``domain.search.SearchSettings``)."""
    indexes = {}
    for index in config.search.indexes:
        embedder = index.embedder
        if index.store == "s3vectors":
            store = {"kind": "s3vectors", "vector_bucket": resources.vector_bucket, "index": index.name}
        else:
            endpoint = (resources.opensearch_endpoints or {}).get(index.name,
                                                                  f"https://{index.name}.aoss.amazonaws.com")
            store = {"kind": "opensearch", "endpoint": endpoint, "index": index.name,
                     "region": resources.opensearch_region}
        indexes[index.name] = {
            "dimension": index.dimension,
            "distance": index.distance,
            "filterable": list(index.filterable_metadata),
            "store": store,
            "embedder": {"kind": "bedrock", "model_id": embedder.model_id, "batch_size": embedder.batch_size}
            if embedder.kind == "bedrock" else
            {"kind": "sagemaker", "endpoint": endpoint_name(config, embedder.endpoint), "batch_size": embedder.batch_size},
            "chunk_size": index.chunk_size,
            "chunk_overlap": index.chunk_overlap,
            "max_top_k": index.max_top_k,
        }
    return {"indexes": indexes, "report_bucket": resources.report_bucket, "report_prefix": resources.report_prefix}


def search(config: PlatformConfig, resources: SearchResources = SearchResources()) -> Any:
    """The search functions' settings, validated by their own (hand-written) parser."""
    return search_domain().SearchSettings.parse(search_json(config, resources))


# A search settings field (after ``indexes.<index>.``) -> its config field (after ``search.indexes[i].``).
SEARCH_FIELDS = {"filterable": "filterable_metadata", "store": "store", "embedder": "embedder"}


def search_field(config: PlatformConfig, field: str) -> str | None:
    parts = field.split(".")
    if len(parts) < 3 or parts[0] != "indexes":
        return None
    names = [index.name for index in config.search.indexes]
    if parts[1] not in names:
        return None
    rest = SEARCH_FIELDS.get(parts[2], parts[2]) if parts[2] != "embedder" else ".".join(parts[2:4])
    return f"search.indexes[{names.index(parts[1])}].{rest}"


# --- the monitoring job (a processing step; plain arguments, its --thresholds parsed by the job) ----

MONITORING_JOB = "monitoring-job:"  # + the endpoint's name: the builder's key


def monitoring_job(endpoint: Any) -> None:
    """Reads the endpoint's ``--thresholds`` as the monitoring job does (``monitoring/report.py``), so
    that a value the job would refuse (a non-finite number) fails when the config loads. Nothing to
    build: the job takes plain arguments (``pipelines/monitoring_definition.py``), not a settings model."""
    from monitoring.metrics import parse_thresholds  # the job's own parser, without numpy

    parse_thresholds(json.dumps(dict(endpoint.monitoring.thresholds)))


def _monitoring_job_problem(config: PlatformConfig, function: str, error: Exception) -> tuple[str, str] | None:
    from monitoring.metrics import ThresholdError

    if not function.startswith(MONITORING_JOB) or not isinstance(error, ThresholdError):
        return None
    name = function.removeprefix(MONITORING_JOB)
    index = next(i for i, e in enumerate(config.serving.endpoints) if e.name == name)
    field = f"serving.endpoints[{index}].monitoring.thresholds"
    reason = str(error).split(": ", 1)[-1]
    return field, f"field '{field}' = {dict(config.serving.endpoints[index].monitoring.thresholds)!r}: {reason}"


def _job_errors() -> type[Exception]:
    from monitoring.metrics import ThresholdError

    return ThresholdError
