"""Lambda: apply autoscaling to a deployer-managed endpoint each time it reaches InService.

Event: "SageMaker Endpoint State Change" from EventBridge (rule: source ``aws.sagemaker``,
detail-type ``SageMaker Endpoint State Change``, ``detail.EndpointStatus`` ``IN_SERVICE``, optionally
``detail.EndpointName`` in the endpoints of its settings), invoked directly (asynchronously) or
through an SQS queue (``Records`` whose bodies are the events; answered with ``batchItemFailures``,
Powertools ``BatchProcessor``). Other statuses, malformed events and endpoints not in its settings
are ignored with a log line.

Settings: ``settings.endpoint_scaler.ScalerSettings`` (``MLOPS_SETTINGS``, validated at cold start): per full
endpoint name, ``{"kind": "realtime"|"async", "min_instances", "max_instances",
"target_invocations_per_instance"`` (realtime) | ``"target_backlog_per_instance"`` (async),
``"scale_in_cooldown_s", "scale_out_cooldown_s"}`` (``domain.autoscaling.ScalingEntry``); an invalid
value is a deployment error (every invocation fails), and the config loader refuses it first.

Per event: describe the endpoint (DescribeEndpoint, DescribeEndpointConfig, ListTags) and its
registered targets, plan (``domain.autoscaling.plan_scaling``: pure), apply (register targets, put
policies, the async scale-out-from-zero alarm; deregister targets of variants gone). Why not
CloudFormation: the deployer creates the endpoint after the stack deployed, and a scalable target
needs its variant to exist. Safe to repeat: EventBridge may deliver the same event twice and
SageMaker may send several events per change.

AWS errors are raised after a log line, so the invocation fails and is retried (asynchronous
invocation: twice; SQS: per the queue's redrive policy): the plan is recomputed from the current
state each time.

Returns ``{"status": "ignored"|"skipped"|"applied", "endpoint", "reason", ...}`` (SQS:
``{"batchItemFailures": [...]}``).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from mlops_runtime.adapters.autoscaling import Boto3EndpointScaling, EndpointScaling
from mlops_runtime.adapters.aws_errors import error_text
from mlops_runtime.adapters.sqs_batches import process_batch, sqs_batch_processor
from mlops_runtime.adapters.tracing import entry_point
from mlops_runtime.domain.autoscaling import (
    APPLY,
    IGNORE,
    EndpointStateChange,
    InvalidEvent,
    ScalingSpec,
    plan_scaling,
)
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.endpoint_scaler import ScalerSettings

SETTINGS_MODEL = ScalerSettings  # what the stack passes in MLOPS_SETTINGS
logger = Logger()

# Built on first use and kept for the life of the execution environment.
settings = Lazy(SETTINGS_MODEL.from_env)
endpoint_scaling: Lazy[EndpointScaling] = Lazy(Boto3EndpointScaling)
processor = Lazy(sqs_batch_processor)


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    specs = settings()  # validated before any record: invalid settings fail the invocation, not each record
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return process_batch(event, _record_handler, processor(), context)
    return handle_event(event, specs, endpoint_scaling())


handler = entry_point(_handler, logger)


def _record_handler(record: Any) -> None:
    """One SQS record (Powertools ``SQSRecord``); raising leaves it on the queue."""
    try:
        event = json.loads(record.body)
    except (TypeError, ValueError):
        logger.error("Dropped an unreadable SQS record", extra={"message_id": record.message_id})
        return  # retrying cannot make it readable
    handle_event(event, settings(), endpoint_scaling())


def handle_event(event: Any, specs: ScalerSettings, scaling: EndpointScaling) -> dict[str, Any]:
    """One EventBridge event: ignore it, or scale the endpoint it names."""
    try:
        change = EndpointStateChange.from_eventbridge(event)
    except InvalidEvent as error:
        logger.warning("Ignored event", extra={"reason": f"malformed event: {error}"})
        return {"status": "ignored", "reason": f"malformed event: {error}"}
    fields = {"endpoint": change.endpoint_name, "event_id": change.event_id, "endpoint_status": change.status}
    if not change.in_service:
        reason = f"endpoint is {change.status}, not InService"
        logger.info("Ignored event", extra={**fields, "reason": reason})
        return {"status": "ignored", "endpoint": change.endpoint_name, "reason": reason}
    spec = specs.spec_for(change.endpoint_name)
    if spec is None:
        reason = "the endpoint is not in the scaler's settings: not scaled"
        logger.info("Ignored event", extra={**fields, "reason": reason})
        return {"status": "ignored", "endpoint": change.endpoint_name, "reason": reason}
    return scale_endpoint(spec, scaling)


def scale_endpoint(spec: ScalingSpec, scaling: EndpointScaling) -> dict[str, Any]:
    """Describe, plan and apply the scaling of ``spec``'s endpoint; AWS errors are logged and raised."""
    name = spec.endpoint_name
    try:
        description = scaling.describe_endpoint(name)
        plan = plan_scaling(description, spec, {}, endpoint_name=name)
        if plan.action != APPLY:  # skipped before reading the targets: nothing will be touched
            log = logger.info if plan.action == IGNORE else logger.warning
            log("Scaling not applied", extra={"endpoint": name, "reason": plan.reason})
            status = "ignored" if plan.action == IGNORE else "skipped"
            return {"status": status, "endpoint": name, "reason": plan.reason}
        plan = plan_scaling(description, spec, scaling.registered_targets(name), endpoint_name=name)
        applied = scaling.apply(plan)
    except Exception as error:
        logger.exception("Scaling failed (the invocation is retried)", extra={"endpoint": name,
                                                                          "error": error_text(error)})
        raise
    logger.info(
        "Scaling applied",
        extra={"endpoint": name, "plan": plan.to_dict(), "applied": [call.to_dict() for call in applied]},
    )
    return {
        "status": "applied",
        "endpoint": name,
        "reason": plan.reason,
        "targets": [target.resource_id for target in plan.targets],
        "deregistered": [item.resource_id for item in plan.deregister],
        "notes": list(plan.notes),
    }
