"""The monitoring launcher's and the retraining trigger's settings.

Types and limits are the launcher's own (``domain.monitoring_window``): one definition of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from mlops_runtime.domain import monitoring_window as _window
from mlops_runtime.domain.validation import matching
from mlops_runtime.settings.base import FunctionSettings, Name, Texts

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
