"""The retraining trigger's pure logic: the alarm event, the configuration, the cooldown decision.

No boto3, no I/O; ``handlers.retraining_trigger`` does the calls; its settings are
``settings.RetrainingTriggerSettings``.

An EventBridge rule sends "CloudWatch Alarm State Change" events (``source`` ``aws.cloudwatch``;
``detail.alarmName``, ``detail.state.{value,timestamp,reason}``, ``detail.previousState.value``;
the state timestamp looks like ``2019-10-02T17:20:48.551+0000``). Only a transition **into**
``ALARM`` counts (:attr:`AlarmTransition.entered_alarm`).

For each training pipeline configured for the alarm, :func:`decide` reads the pipeline's latest
executions (``ListPipelineExecutions``, newest first, at most 10):

- ``running``: one of them is ``Executing`` or ``Stopping`` (nothing is started on top of it);
- ``cooldown``: the newest one started less than ``cooldown_hours`` ago, whatever its status
  (``now - start < cooldown``; at exactly ``cooldown_hours`` a new run starts); an execution
  without a start time is not counted;
- ``start`` otherwise (no execution at all included).

With ``production`` configured (closed-loop retraining), a start passes the production records
joined with their ground truth since the last training (``domain.production_data``) as the
pipeline parameters ``ProductionDataUri``, ``ProductionWindowStart``, ``ProductionWindowEnd`` and
``ProductionRecords``; the pipeline records them on the model package it registers.

The ``ClientRequestToken`` of the start is a hash of the alarm name, the alarm state's timestamp
and the pipeline (:func:`retraining_token`): a redelivered event starts one execution per pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_runtime.domain.monitoring_window import as_utc, display_name, request_token

ALARM = "ALARM"
RUNNING_STATUSES = frozenset({"Executing", "Stopping"})
START, STARTED, COOLDOWN, RUNNING, ERROR = "start", "started", "cooldown", "running", "error"
# Training pipeline parameters of closed-loop retraining (pipelines/training_definition.py).
PARAM_PRODUCTION_DATA = "ProductionDataUri"
PARAM_PRODUCTION_WINDOW_START = "ProductionWindowStart"
PARAM_PRODUCTION_WINDOW_END = "ProductionWindowEnd"
PARAM_PRODUCTION_RECORDS = "ProductionRecords"
_NEVER = datetime.min.replace(tzinfo=UTC)


class InvalidAlarmEvent(ValueError):
    """The event is not an alarm state change (no ``detail.alarmName``)."""


# --- the event ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmTransition:
    alarm_name: str
    state: str | None
    previous_state: str | None
    state_timestamp: str | None
    reason: str | None = None
    event_time: str | None = None
    event_id: str | None = None

    @property
    def entered_alarm(self) -> bool:
        """A change INTO ``ALARM`` (an unknown previous state counts; ALARM -> ALARM does not)."""
        return self.state == ALARM and self.previous_state != ALARM

    @property
    def occurrence(self) -> str | None:
        """What identifies this transition for idempotency: the state's timestamp, else the event's
        time, else its id."""
        return self.state_timestamp or self.event_time or self.event_id


def _state(value: Any) -> tuple[str | None, str | None, str | None]:
    """``(value, timestamp, reason)`` of a ``state``/``previousState`` object (a bare string: the value)."""
    if isinstance(value, str):
        return value, None, None
    if not isinstance(value, Mapping):
        return None, None, None

    def text(key: str) -> str | None:
        item = value.get(key)
        return str(item) if isinstance(item, str | int | float) and not isinstance(item, bool) else None

    return text("value"), text("timestamp"), text("reason")


def parse_alarm_event(event: Any) -> AlarmTransition:
    """The transition in an alarm state-change event (or in its bare ``detail``)."""
    if not isinstance(event, Mapping):
        raise InvalidAlarmEvent("the event must be a JSON object")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        detail = event if "alarmName" in event else None
    if detail is None:
        raise InvalidAlarmEvent("the event has no detail.alarmName (not a CloudWatch Alarm State Change)")
    name = detail.get("alarmName")
    if not isinstance(name, str) or not name:
        raise InvalidAlarmEvent("the event has no detail.alarmName (not a CloudWatch Alarm State Change)")
    state, timestamp, reason = _state(detail.get("state"))
    previous, _, _ = _state(detail.get("previousState"))
    event_time = event.get("time") if isinstance(event.get("time"), str) else None
    event_id = event.get("id") if isinstance(event.get("id"), str) else None
    return AlarmTransition(name, state, previous, timestamp, reason, event_time, event_id)


# --- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    arn: str
    status: str
    start_time: datetime | None


@dataclass(frozen=True)
class Verdict:
    action: str  # START | COOLDOWN | RUNNING
    reason: str
    blocking_execution_arn: str | None = None


def decide(now: datetime, executions: Sequence[Execution], cooldown_hours: float) -> Verdict:
    """Whether to start the pipeline now (see the module docstring); order of ``executions`` is free."""
    if cooldown_hours < 0 or not math.isfinite(cooldown_hours):
        raise ValueError(f"cooldown_hours must be a finite non-negative number, not {cooldown_hours!r}")
    now = as_utc(now)
    running = [e for e in executions if e.status in RUNNING_STATUSES]
    if running:
        latest = max(running, key=lambda e: as_utc(e.start_time) if e.start_time else _NEVER)
        return Verdict(RUNNING, f"execution {latest.arn} is {latest.status}", latest.arn)
    dated = [e for e in executions if e.start_time is not None]
    if not dated:
        return Verdict(START, "no previous execution")
    newest = max(dated, key=lambda e: as_utc(e.start_time))
    age = now - as_utc(newest.start_time)
    hours = age / timedelta(hours=1)
    if age < timedelta(hours=cooldown_hours):
        return Verdict(
            COOLDOWN,
            f"the newest execution ({newest.status}) started {hours:.2f} h ago, within the {cooldown_hours:g} h cooldown",
            newest.arn,
        )
    return Verdict(
        START, f"the newest execution ({newest.status}) started {hours:.2f} h ago, after the {cooldown_hours:g} h cooldown"
    )


def retraining_token(alarm: str, occurrence: str, pipeline: str) -> str:
    return request_token("retraining", alarm, occurrence, pipeline)


def retraining_display_name(alarm: str) -> str:
    return display_name(f"retrain-{alarm}")  # one part: a long alarm name is cut at the end
