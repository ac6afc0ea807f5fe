"""Lambda: starts the training pipelines of an alarm when it goes into ALARM (drift, quality...).

Input: a "CloudWatch Alarm State Change" event from an EventBridge rule (``detail.alarmName``,
``detail.state.value``/``timestamp``/``reason``, ``detail.previousState.value``; a bare ``detail``
is accepted too). Only a transition INTO ``ALARM`` counts; anything else, and an alarm that is not
a key of the settings' ``retraining``, is ``ignored`` (logged).

Closed loop: with ``production`` in the alarm's entry, the first start joins the production
records inferred since the group's newest model package (at most ``max_lookback_hours``) with the
ground truth collected since (``domain.production_data``; ``ListModelPackages``,
``DescribeModelPackage`` and its baseline for the feature names, ``ListObjectsV2``/``GetObject``
of capture and ground truth), writes ``<dataset_prefix><window end>-<hash>/production.csv`` and
passes it with the window and the row count as the pipeline parameters ``ProductionDataUri``,
``ProductionWindowStart``, ``ProductionWindowEnd`` and ``ProductionRecords``; the pipeline
records them on the package it registers. Without a package with a baseline (so without the
features' names) the pipeline starts on its raw data alone and the decision says why.

For each pipeline of the alarm: ``ListPipelineExecutions`` (newest first, 10) -> ``domain.retraining.
decide`` (time read per call): ``running`` when one is Executing/Stopping, ``cooldown`` when the
newest started less than ``cooldown_hours`` ago, else ``StartPipelineExecution`` with a
``ClientRequestToken`` derived from the alarm name, the alarm state's timestamp and the pipeline
(a redelivered event starts one execution) and a display name naming the alarm. A pipeline whose
calls fail gets ``action`` ``error`` (the others still run). One SNS message summarises the
decisions when the settings name a notification topic (a failed publish is logged, not raised).

Settings: ``settings.RetrainingTriggerSettings`` (keyed by alarm name: the pipelines, the cooldown, the
production source; the notification topic), read once at cold start; ``POWERTOOLS_*``.

Returns ``{"status": "done", "decisions": [{"pipeline", "action": started|cooldown|running|error,
"execution_arn"?, "blocking_execution_arn"?, "reason"}]}``, ``{"status": "ignored", "reason"}`` or
``{"status": "error", "reason"}`` (bad event or configuration).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.tracing import entry_point, powertools
from mlops_runtime.adapters.aws_errors import error_text
from mlops_runtime.adapters.monitoring_inputs import S3Objects, SageMakerModels, SageMakerPipelines
from mlops_runtime.domain import monitoring_window as mw
from mlops_runtime.domain import production_data as production
from mlops_runtime.domain import retraining as domain
from mlops_runtime.domain.monitoring_window import as_utc
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.monitoring import ProductionSource, RetrainingSettings, RetrainingTriggerSettings

logger, metrics = powertools()

RECENT_EXECUTIONS = 10

SETTINGS_MODEL = RetrainingTriggerSettings
settings = Lazy(SETTINGS_MODEL.from_env)
pipelines: Lazy[SageMakerPipelines] = Lazy(SageMakerPipelines)
models: Lazy[SageMakerModels] = Lazy(lambda: SageMakerModels(pipelines().client))
s3: Lazy[S3Objects] = Lazy(S3Objects)
sns: Lazy[Any] = Lazy(lambda: _client("sns"))
clock: Lazy[Callable[[], datetime]] = Lazy(lambda: lambda: datetime.now(UTC))


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def configure(
    pipelines: SageMakerPipelines | None = None, sns: Any | None = None, clock: Callable[[], datetime] | None = None,
    models: SageMakerModels | None = None, s3: S3Objects | None = None,
    settings: RetrainingTriggerSettings | None = None,
) -> None:
    """Inject the adapters, an SNS client, a clock and settings (tests); ``None``: rebuilt on next use."""
    for lazy, value in zip(_LAZIES, (pipelines, sns, clock, models, s3, settings), strict=True):
        lazy.set(value)


def now() -> datetime:
    return as_utc(clock()())


def _notify(subject: str, message: Mapping[str, Any]) -> bool:
    """Publish to the settings' notification topic when set; a failed publish is logged, never raised."""
    topic = settings().notification_topic_arn
    if not topic:
        return False
    try:
        sns().publish(TopicArn=topic, Subject=subject[:100], Message=json.dumps(message, default=str))
        return True
    except Exception:
        logger.exception("Could not publish the notification", extra={"subject": subject})
        return False


class NoProductionData(Exception):
    """Production data cannot be assembled (no model yet to say the features' names)."""


def _keys(bucket: str, prefixes: list[str], keep: Callable[[str], bool]) -> list[str]:
    return sorted({key for prefix in prefixes for key in s3().list_keys(bucket, prefix) if keep(key)})


def production_dataset(source: ProductionSource, occurrence: str) -> dict[str, Any]:
    """Join the production records since the last training with their ground truth, write
    ``production.csv`` and return the pipeline parameters and what went in (``domain.production_data``)."""
    at = now()
    newest = models().newest_package(source.model_package_group)
    window = production.training_window(at, newest[1] if newest else None, source.max_lookback_hours)
    baseline_uri = models().data_quality_statistics(newest[0]) if newest else None
    if baseline_uri is None:
        raise NoProductionData(f"no model package with a baseline in {source.model_package_group}: "
                               "the production features' names are unknown")
    feature_names, target = production.feature_layout(json.loads(s3().get_object(*mw.parse_s3_uri(baseline_uri))))
    join = production.ProductionJoin(feature_names, window, target)
    label_prefixes = [f"{source.ground_truth_prefix}{mw.hour_path(h)}" for h in window.label_hours(at)]
    for key in _keys(source.ground_truth_bucket, label_prefixes,
                     lambda k: mw.is_ground_truth_file(k, source.ground_truth_prefix)):
        join.add_labels(s3().get_object(source.ground_truth_bucket, key))
    variants = s3().list_folders(source.capture_bucket, source.capture_prefix)
    for key in _keys(source.capture_bucket, mw.capture_listing_prefixes(variants, window.capture_window),
                     lambda k: mw.is_capture_file(k, source.capture_prefix)):
        join.add_capture(s3().get_object(source.capture_bucket, key))
    folder = f"{source.dataset_prefix}{window.capture_window.label}-{mw.request_token(occurrence)[:12]}/"
    s3().put_object(source.dataset_bucket, folder + production.PRODUCTION_FILE, join.csv(), content_type="text/csv")
    uri = mw.s3_uri(source.dataset_bucket, folder + production.PRODUCTION_FILE)
    counts = join.counts()
    logger.info("Production data joined with its ground truth", extra={"uri": uri, "window": window.to_dict(), **counts})
    return {
        "uri": uri, "window": window.to_dict(), "counts": counts,
        "parameters": [
            {"Name": domain.PARAM_PRODUCTION_DATA, "Value": uri},
            {"Name": domain.PARAM_PRODUCTION_WINDOW_START, "Value": mw.iso(window.start)},
            {"Name": domain.PARAM_PRODUCTION_WINDOW_END, "Value": mw.iso(window.end)},
            {"Name": domain.PARAM_PRODUCTION_RECORDS, "Value": str(counts["rows"])},
        ],
    }


def _decide_and_start(config: RetrainingSettings, transition: domain.AlarmTransition, pipeline: str,
                      data: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The decision for ``pipeline`` and the production data (joined here when first needed)."""
    try:
        executions = pipelines().recent_executions(pipeline, RECENT_EXECUTIONS)
        verdict = domain.decide(now(), executions, config.cooldown_hours)
        if verdict.action != domain.START:
            return {"pipeline": pipeline, "action": verdict.action, "reason": verdict.reason,
                    "blocking_execution_arn": verdict.blocking_execution_arn}, data
        token_key = transition.occurrence
        if token_key is None:  # no timestamp, time nor id in the event: botocore generates a token
            logger.warning("Alarm event without a timestamp: the start is not idempotent", extra={"pipeline": pipeline})
        if config.production is not None and data is None:
            try:
                data = production_dataset(config.production, token_key or now().isoformat())
            except NoProductionData as missing:  # retrain on the raw data alone rather than not at all
                logger.warning("Retraining without production data", extra={"reason": str(missing)})
                data = {"parameters": [], "without_production_data": str(missing)}
        arn = pipelines().start(
            pipeline,
            display_name=domain.retraining_display_name(transition.alarm_name),
            token=domain.retraining_token(transition.alarm_name, token_key or now().isoformat(), pipeline),
            parameters=data["parameters"] if data else (),
            description=f"Retraining started by alarm {transition.alarm_name} "
                        f"(ALARM at {transition.state_timestamp or transition.event_time or 'unknown time'}): "
                        f"{transition.reason or 'no reason given'}",
        )
        started = {"pipeline": pipeline, "action": domain.STARTED, "execution_arn": arn, "reason": verdict.reason}
        if data:
            started["production"] = {key: data[key] for key in ("uri", "window", "counts", "without_production_data")
                                     if key in data}
        return started, data
    except Exception as error:  # one pipeline's failure does not stop the others
        logger.exception("Could not decide or start the retraining", extra={"pipeline": pipeline})
        return {"pipeline": pipeline, "action": domain.ERROR, "reason": error_text(error)}, data


def run(config: RetrainingSettings, transition: domain.AlarmTransition) -> dict[str, Any]:
    decisions = []
    data: dict[str, Any] | None = None  # joined once, shared by the alarm's pipelines (one group)
    for pipeline in config.pipelines:
        decision, data = _decide_and_start(config, transition, pipeline, data)
        decisions.append({k: v for k, v in decision.items() if v is not None})
    for decision in decisions:
        logger.info("Retraining decision", extra=decision)
    started = [d for d in decisions if d["action"] == domain.STARTED]
    errors = [d for d in decisions if d["action"] == domain.ERROR]
    metrics.add_metric(name="RetrainingStarted", unit=MetricUnit.Count, value=len(started))
    metrics.add_metric(name="RetrainingSkipped", unit=MetricUnit.Count,
                       value=len(decisions) - len(started) - len(errors))
    if errors:
        metrics.add_metric(name="RetrainingErrors", unit=MetricUnit.Count, value=len(errors))
    summary = ", ".join(f"{d['pipeline']}: {d['action']}" for d in decisions)
    _notify(
        f"Retraining ({len(started)} started) after alarm {transition.alarm_name}",
        {
            "alarm": transition.alarm_name,
            "state": transition.state,
            "previous_state": transition.previous_state,
            "state_timestamp": transition.state_timestamp,
            "alarm_reason": transition.reason,
            "summary": summary,
            "decisions": decisions,
        },
    )
    return {"status": "done", "decisions": decisions}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        transition = domain.parse_alarm_event(event)
    except domain.InvalidAlarmEvent as error:
        logger.error("Not an alarm state-change event", extra={"reason": str(error), "event": repr(event)[:500]})
        metrics.add_metric(name="RetrainingEventErrors", unit=MetricUnit.Count, value=1)
        return {"status": "error", "reason": str(error)}
    logger.append_keys(alarm=transition.alarm_name)
    if not transition.entered_alarm:
        reason = f"not a transition into ALARM ({transition.previous_state} -> {transition.state})"
        logger.info("Alarm state change ignored", extra={"reason": reason})
        metrics.add_metric(name="RetrainingEventsIgnored", unit=MetricUnit.Count, value=1)
        return {"status": "ignored", "reason": reason}
    try:
        configs = settings().retraining
    except SettingsError as error:
        logger.error("Bad settings", extra={"reason": str(error)})
        metrics.add_metric(name="RetrainingEventErrors", unit=MetricUnit.Count, value=1)
        return {"status": "error", "reason": f"bad settings: {error}"}
    config = configs.get(transition.alarm_name)
    if config is None:
        reason = f"no retraining configured for alarm {transition.alarm_name!r}"
        logger.info("Alarm ignored", extra={"reason": reason, "configured": sorted(configs)})
        metrics.add_metric(name="RetrainingEventsIgnored", unit=MetricUnit.Count, value=1)
        return {"status": "ignored", "reason": reason}
    return run(config, transition)


handler = entry_point(_handler, logger, metrics)
_LAZIES = (pipelines, sns, clock, models, s3, settings)
