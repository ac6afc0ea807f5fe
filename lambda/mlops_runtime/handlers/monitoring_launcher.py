"""Lambda: starts the monitoring pipeline over one time window of an endpoint, on a schedule.

Input (EventBridge Scheduler): ``{"endpoint": "<SageMaker endpoint name>"}`` (a key of ``MONITORS``).

Each run (the clock read per call):

1. the window: ``end`` = now floored to the hour (UTC), ``start`` = ``end - window_hours``;
2. the endpoint must exist (``DescribeEndpoint``; else ``skipped``, "not deployed"); the baseline is
   ``baseline_s3_uri`` when configured, else the ``ModelMetrics.ModelDataQuality.Statistics.S3Uri``
   of the model package behind the ``champion`` variant (else the first production variant);
   none: ``skipped`` (metric ``MonitoringSkipped``);
3. the capture files: the variant folders below ``capture_prefix`` (``ListObjectsV2``, delimiter
   ``/``), then each variant's hour folders ``yyyy/mm/dd/hh/`` for the hours
   ``[start - 1h, end + 1h)``; only ``*.jsonl`` files;
4. the ground-truth objects of the label hours from ``start`` up to
   ``min(now, start + ground_truth_lookback_hours)``;
5. late labels: for the earlier windows whose label checkpoint is this run (1, 2, 4, ... windows
   after their end, and once when their lookback has closed) and which received labels since the
   previous checkpoint, the pipeline again over that window with every label collected so far,
   parameters ``MetricScope=quality`` and ``MetricTime=<now>``: the job then publishes only the
   quality metrics, timestamped now, so the quality alarm fires however late the labels came;
   manifests under ``.../<window>/labels-<age>h/``, token from the window and the age
   (``label_rechecks`` in the result);
6. no capture file in the window that just ended: no job for it; ``RecordCount`` = 0 (``Endpoint``, ``Variant=_all``, namespace
   ``MlopsPlatform/Monitoring``, timestamp = window end, as the job itself would publish) and
   ``empty_window``. No manifest is written then;
7. otherwise the manifests ``<manifest_prefix><YYYYMMDDTHHMMZ of end>/capture.manifest`` and
   ``.../ground_truth.manifest`` (without ground truth: the hidden marker
   ``.../no-ground-truth/.empty``) and ``StartPipelineExecution`` with the parameters
   ``WindowStart``, ``WindowEnd``, ``BaselineS3Uri``, ``CaptureManifestS3Uri``,
   ``GroundTruthManifestS3Uri``, ``MetricScope=all``, ``MetricTime=""``; the ``ClientRequestToken`` is a hash of the pipeline, the endpoint
   and the window end, so a retried invocation starts one execution.

Settings: ``settings.monitoring.MonitoringLauncherSettings`` (the monitored endpoints, keyed by endpoint name;
``docs/monitoring-launcher.md``), read once at cold start; ``POWERTOOLS_*``. A bad event or configuration is logged and
returned as ``{"status": "error", "reason": ...}``; AWS errors other than "not found" are raised
(the scheduler's retry policy tries again; the token keeps that idempotent).

Returns ``{"status": started|empty_window|skipped|error, ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from mlops_runtime.adapters.tracing import entry_point, metrics_namespace
from mlops_runtime.adapters.monitoring_inputs import CloudWatchMetrics, S3Objects, SageMakerModels, SageMakerPipelines
from mlops_runtime.domain import monitoring_window as mw
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.monitoring import MonitorSettings, MonitoringLauncherSettings

MONITORING_NAMESPACE = "MlopsPlatform/Monitoring"
ALL_VARIANTS = "_all"
CHAMPION = "champion"

logger = Logger()

SETTINGS_MODEL = MonitoringLauncherSettings
settings = Lazy(SETTINGS_MODEL.from_env)
s3: Lazy[S3Objects] = Lazy(S3Objects)
models: Lazy[SageMakerModels] = Lazy(SageMakerModels)
pipelines: Lazy[SageMakerPipelines] = Lazy(lambda: SageMakerPipelines(models().client))
cloudwatch: Lazy[CloudWatchMetrics] = Lazy(CloudWatchMetrics)
clock: Lazy[Callable[[], datetime]] = Lazy(lambda: lambda: datetime.now(UTC))


def configure(
    s3: S3Objects | None = None,
    models: SageMakerModels | None = None,
    pipelines: SageMakerPipelines | None = None,
    cloudwatch: CloudWatchMetrics | None = None,
    clock: Callable[[], datetime] | None = None,
    settings: MonitoringLauncherSettings | None = None,
) -> None:
    """Inject adapters, a clock and settings (tests); ``None``: rebuilt from the environment on next use."""
    for lazy, value in zip(_LAZIES, (s3, models, pipelines, cloudwatch, clock, settings), strict=True):
        lazy.set(value)


def now() -> datetime:
    return mw.as_utc(clock()())


def _count(name: str, endpoint: str) -> None:
    """One EMF count in the function's namespace, with an ``Endpoint`` dimension."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics_namespace()) as metric:
        metric.add_dimension(name="Endpoint", value=endpoint)


def find_baseline(config: MonitorSettings) -> tuple[str | None, str | None]:
    """``(baseline URI, None)``, or ``(None, skip reason)``; raises on AWS errors other than not-found."""
    variants = models().endpoint_variants(config.endpoint)
    if variants is None:
        return None, f"endpoint {config.endpoint} is not deployed"
    if config.baseline_s3_uri:
        return config.baseline_s3_uri, None
    if not variants:
        return None, f"no baseline: endpoint {config.endpoint} has no production variant"
    variant = CHAMPION if CHAMPION in variants else variants[0]
    package = models().model_package_arn(config.endpoint, variant)
    if not package:
        return None, f"no baseline: no model package known behind {config.endpoint}/{variant}"
    uri = models().data_quality_statistics(package)
    if not uri:
        return None, f"no baseline: model package {package} has no ModelMetrics.ModelDataQuality.Statistics"
    logger.info("Baseline from the champion's model package", extra={"variant": variant, "model_package_arn": package})
    return uri, None


def list_capture(config: MonitorSettings, window: mw.Window) -> list[str]:
    variants = s3().list_folders(config.capture_bucket, config.capture_prefix)
    keys: list[str] = []
    for prefix in mw.capture_listing_prefixes(variants, window):
        keys.extend(k for k in s3().list_keys(config.capture_bucket, prefix) if mw.is_capture_file(k, config.capture_prefix))
    return sorted(set(keys))


class LabelListing:
    """The ground-truth objects per label hour, each hour listed at most once per run (the current
    window and its rechecks share most of their label hours)."""

    def __init__(self, config: MonitorSettings) -> None:
        self.config = config
        self._hours: dict[datetime, list[str]] = {}

    def hour(self, hour: datetime) -> list[str]:
        if hour not in self._hours:
            config = self.config
            prefix = f"{config.ground_truth_prefix}{mw.hour_path(hour)}"
            self._hours[hour] = [k for k in s3().list_keys(config.ground_truth_bucket, prefix)
                                 if mw.is_ground_truth_file(k, config.ground_truth_prefix)]
        return self._hours[hour]

    def keys(self, hours: list[datetime]) -> list[str]:
        return sorted({key for hour in hours for key in self.hour(hour)})


def list_ground_truth(config: MonitorSettings, window: mw.Window, at: datetime,
                      labels: LabelListing | None = None) -> list[str]:
    labels = labels or LabelListing(config)
    return labels.keys(mw.ground_truth_hours(window, at, config.ground_truth_lookback_hours))


def write_manifests(config: MonitorSettings, window: mw.Window, capture: list[str],
                    ground_truth: list[str], recheck: mw.LabelRecheck | None = None) -> mw.ManifestLocations:
    locations = mw.manifest_locations(config.manifest_bucket, config.manifest_prefix, window, recheck)
    capture_manifest = mw.build_manifest(config.capture_bucket, config.capture_prefix, capture)
    if ground_truth:
        truth_manifest = mw.build_manifest(config.ground_truth_bucket, config.ground_truth_prefix, ground_truth)
    else:
        s3().put_object(locations.bucket, locations.marker_key, b"", content_type="application/octet-stream")
        truth_manifest = mw.empty_ground_truth_manifest(locations)
    s3().put_object(locations.bucket, locations.capture_key, mw.manifest_body(capture_manifest))
    s3().put_object(locations.bucket, locations.ground_truth_key, mw.manifest_body(truth_manifest))
    return locations


def analyse_window(config: MonitorSettings, at: datetime, baseline: str, labels: LabelListing) -> dict[str, Any]:
    """The first analysis of the window that just ended: drift and the quality of the labels so far."""
    window = mw.window_for(at, config.window_hours)
    capture = list_capture(config, window)
    if not capture:
        cloudwatch().put_count(
            MONITORING_NAMESPACE, "RecordCount", 0, {"Endpoint": config.endpoint, "Variant": ALL_VARIANTS}, window.end
        )
        _count("MonitoringEmptyWindow", config.endpoint)
        logger.info("No capture file in the window: no monitoring job")
        return {"status": "empty_window", "window": window.to_dict()}

    ground_truth = list_ground_truth(config, window, at, labels)
    locations = write_manifests(config, window, capture, ground_truth)
    parameters = mw.pipeline_parameters(
        window, baseline, locations.uri(locations.capture_key), locations.uri(locations.ground_truth_key)
    )
    arn = pipelines().start(
        config.pipeline_name,
        display_name=mw.display_name("monitor", config.endpoint, window.label),
        token=mw.request_token("monitoring", config.pipeline_name, config.endpoint, mw.iso(window.end)),
        parameters=parameters,
        description=f"Monitoring of {config.endpoint} over [{mw.iso(window.start)}, {mw.iso(window.end)})",
    )
    _count("MonitoringStarted", config.endpoint)
    logger.info(
        "Monitoring pipeline started",
        extra={"execution_arn": arn, "capture_objects": len(capture), "ground_truth_objects": len(ground_truth)},
    )
    return {
        "status": "started",
        "execution_arn": arn,
        "window": window.to_dict(),
        "capture_objects": len(capture),
        "ground_truth_objects": len(ground_truth),
        "baseline": baseline,
    }


def recheck_labels(config: MonitorSettings, at: datetime, baseline: str, labels: LabelListing) -> list[dict[str, Any]]:
    """Recompute the quality of the earlier windows whose checkpoint is this run and which received
    labels since their previous one (``domain.monitoring_window``, "late labels")."""
    started = []
    lookback = config.ground_truth_lookback_hours
    for recheck in mw.label_rechecks(at, config.window_hours, lookback):
        window = recheck.window
        if not labels.keys(mw.new_label_hours(recheck, at, lookback)):
            continue
        capture = list_capture(config, window)
        if not capture:
            continue
        ground_truth = list_ground_truth(config, window, at, labels)
        locations = write_manifests(config, window, capture, ground_truth, recheck)
        arn = pipelines().start(
            config.pipeline_name,
            display_name=mw.display_name("labels", config.endpoint, f"{window.label}-{recheck.age_hours}h"),
            token=mw.request_token("labels", config.pipeline_name, config.endpoint, mw.iso(window.end),
                                   str(recheck.age_hours)),
            parameters=mw.pipeline_parameters(window, baseline, locations.uri(locations.capture_key),
                                              locations.uri(locations.ground_truth_key), recheck_at=at),
            description=f"Quality of {config.endpoint} over [{mw.iso(window.start)}, {mw.iso(window.end)}) "
                        f"with the labels collected up to {recheck.age_hours} h after it",
        )
        _count("MonitoringLabelRecheck", config.endpoint)
        logger.info("Late labels: quality recomputed",
                    extra={"execution_arn": arn, "recheck_window": window.to_dict(), "age_hours": recheck.age_hours,
                           "ground_truth_objects": len(ground_truth)})
        started.append({"execution_arn": arn, "window": window.to_dict(), "age_hours": recheck.age_hours,
                        "ground_truth_objects": len(ground_truth)})
    return started


def run(config: MonitorSettings) -> dict[str, Any]:
    """One launch for ``config``'s endpoint (see the module docstring)."""
    at = now()
    window = mw.window_for(at, config.window_hours)
    logger.append_keys(endpoint=config.endpoint, window_start=mw.iso(window.start), window_end=mw.iso(window.end))

    baseline, skip = find_baseline(config)
    if baseline is None:
        if skip and skip.startswith("no baseline"):
            _count("MonitoringSkipped", config.endpoint)
            logger.warning("No baseline: monitoring skipped", extra={"reason": skip})
        else:
            _count("EndpointNotDeployed", config.endpoint)
            logger.info("Endpoint not deployed: monitoring skipped", extra={"reason": skip})
        return {"status": "skipped", "reason": skip, "window": window.to_dict()}

    labels = LabelListing(config)
    result = analyse_window(config, at, baseline, labels)
    result["label_rechecks"] = recheck_labels(config, at, baseline, labels)
    return result


def _error(reason: str, **extra: Any) -> dict[str, Any]:
    logger.error(reason, extra=extra or None)
    return {"status": "error", "reason": reason}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    endpoint = event.get("endpoint") if isinstance(event, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        return _error('event must be {"endpoint": "<SageMaker endpoint name>"}', event=repr(event)[:500])
    try:
        monitors = settings().monitors
    except SettingsError as error:
        return _error(f"bad settings: {error}")
    config = monitors.get(endpoint)
    if config is None:
        return _error(f"no monitor configured for endpoint {endpoint!r}", configured=sorted(monitors))
    return run(config)


handler = entry_point(_handler, logger)
_LAZIES = (s3, models, pipelines, cloudwatch, clock, settings)
