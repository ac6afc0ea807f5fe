"""Lambda: apply autoscaling to a deployer-managed endpoint each time it reaches InService.

Event: "SageMaker Endpoint State Change" from EventBridge (rule: source ``aws.sagemaker``,
detail-type ``SageMaker Endpoint State Change``, ``detail.EndpointStatus`` ``IN_SERVICE``, optionally
``detail.EndpointName`` in the endpoints of ``SCALING``), invoked directly (asynchronously) or through
an SQS queue (``Records`` whose bodies are the events; answered with ``batchItemFailures``). Other
statuses, malformed events and endpoints not in ``SCALING`` are ignored with a log line.

Environment:

- ``SCALING``: JSON object keyed by full endpoint name, ``{"kind": "realtime"|"async",
  "min_instances", "max_instances", "target_invocations_per_instance"`` (realtime) |
  ``"target_backlog_per_instance"`` (async), ``"scale_in_cooldown_s", "scale_out_cooldown_s"}``
  (``domain.autoscaling.ScalingSpec``); an invalid value is a deployment error (every invocation fails).

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
import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from mlops_runtime.adapters.autoscaling import Boto3EndpointScaling, EndpointScaling
from mlops_runtime.adapters.sagemaker_endpoints import error_code, error_message
from mlops_runtime.domain.autoscaling import (
    APPLY,
    IGNORE,
    EndpointStateChange,
    InvalidEvent,
    InvalidScalingSpec,
    ScalingSpec,
    parse_scaling_specs,
    plan_scaling,
    spec_for,
)

SCALING_ENV_VAR = "SCALING"

logger = Logger()

# Built on first use and kept for the life of the execution environment.
_tracer: Tracer | None = None
_traced: Any | None = None
_specs: dict[str, ScalingSpec] | None = None
_scaling: EndpointScaling | None = None


def scaling_specs() -> dict[str, ScalingSpec]:
    """The specs from ``SCALING``, parsed once; a missing or invalid value is a deployment error."""
    global _specs
    if _specs is None:
        raw = os.environ.get(SCALING_ENV_VAR)
        if raw is None:
            raise RuntimeError(f"environment variable {SCALING_ENV_VAR} is not set")
        try:
            _specs = parse_scaling_specs(json.loads(raw))
        except (json.JSONDecodeError, InvalidScalingSpec) as error:
            raise RuntimeError(f"{SCALING_ENV_VAR} is not a valid scaling configuration: {error}") from error
    return _specs


def endpoint_scaling() -> EndpointScaling:
    """The adapter; its boto3 clients are created on first use."""
    global _scaling
    if _scaling is None:
        _scaling = Boto3EndpointScaling()
    return _scaling


def tracer() -> Tracer:
    """The X-Ray tracer, created on the first invocation (see ``handlers.deployer.tracer``)."""
    global _tracer
    if _tracer is None:
        _tracer = Tracer(patch_modules=("botocore",))
    return _tracer


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _traced
    if _traced is None:
        _traced = tracer().capture_lambda_handler(_handler, capture_response=False)
    return _traced(event, context)


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    specs = scaling_specs()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return _handle_sqs_batch(event["Records"], specs)
    return handle_event(event, specs, endpoint_scaling())


def _handle_sqs_batch(records: list[Any], specs: dict[str, ScalingSpec]) -> dict[str, Any]:
    failures = []
    for record in records:
        message_id = record.get("messageId") if isinstance(record, dict) else None
        try:
            event = json.loads(record["body"])
        except (KeyError, TypeError, ValueError):
            logger.error("Dropped an unreadable SQS record", extra={"message_id": message_id})
            continue  # retrying cannot make it readable
        try:
            handle_event(event, specs, endpoint_scaling())
        except Exception:
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def handle_event(event: Any, specs: dict[str, ScalingSpec], scaling: EndpointScaling) -> dict[str, Any]:
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
    spec = spec_for(specs, change.endpoint_name)
    if spec is None:
        reason = "the endpoint is not in SCALING: not scaled"
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
        code = error_code(error)
        logger.exception(
            "Scaling failed (the invocation is retried)",
            extra={"endpoint": name, "error": f"{code}: {error_message(error)}" if code else repr(error)},
        )
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
