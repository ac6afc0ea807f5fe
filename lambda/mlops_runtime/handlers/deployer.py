"""Lambda: deploy a model package approved in the Model Registry to the endpoints it feeds, and keep
the winner of a decided experiment.

Events, from EventBridge, either directly (asynchronous invocation) or through an SQS queue (a
batch of ``Records`` whose bodies are the events; answered with ``batchItemFailures``):

- "SageMaker Model Package State Change" (the rule matches ``ModelApprovalStatus: Approved``;
  anything else that arrives is ignored with a log line): deploy the package;
- "Experiment Decided" from the experiment controller (``domain.promotion``): the kept model becomes
  the endpoint's sole champion at 100 % and the retired variant is removed
  (``domain.deployment.plan_promotion``).

Settings: ``settings.deployer.DeployerSettings`` (``MLOPS_SETTINGS``, validated at cold start): the endpoint
specs (``domain.deployment.EndpointSpec``; packages of groups not listed are ignored), the DynamoDB
table recording each event id (a redelivered event deploys once), the SNS topic told about every
deployment that cannot be planned or fails (endpoint, package, reason), and the environment's name
(messages and the metric dimension).

Per endpoint: read the package and the endpoint's state, plan (``domain.deployment.plan_deployment``),
apply. Retryable failures (the endpoint is Creating/Updating, throttling) are reported and then
raised, so the invocation fails and is retried; other failures (cannot plan, AWS refusals) are
reported and returned, not retried. Unexpected errors (bugs) are reported and raised.

Returns ``{"status": "ignored", "reason"}`` or ``{"status": "done", "event_id", "model_package_arn",
"results": [{"endpoint", "status": deployed|noop|failed, ...}]}`` (SQS: ``{"batchItemFailures": [...]}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.aws_errors import error_code, error_text, is_retryable
from mlops_runtime.adapters.sagemaker_endpoints import Boto3SageMakerEndpoints, SageMakerEndpoints
from mlops_runtime.adapters.sqs_batches import process_batch, sqs_batch_processor
from mlops_runtime.adapters.tracing import entry_point, powertools
from mlops_runtime.domain.deployment import (
    ApprovalEvent,
    CannotPlan,
    DeploymentPlan,
    EndpointSpec,
    EndpointState,
    InvalidEvent,
    failure_notification,
    plan_deployment,
    plan_promotion,
    specs_for_group,
)
from mlops_runtime.domain.promotion import InvalidPromotion, Promotion, is_promotion_event
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.deployer import DeployerSettings

SETTINGS_MODEL = DeployerSettings  # what the stack passes in MLOPS_SETTINGS
logger, metrics = powertools()

# Built on first use and kept for the life of the execution environment.
settings = Lazy(SETTINGS_MODEL.from_env)
sagemaker_endpoints: Lazy[SageMakerEndpoints] = Lazy(Boto3SageMakerEndpoints)
sns = Lazy(lambda: _client("sns"))
processor = Lazy(sqs_batch_processor)


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def _deploy_once() -> Any:
    """:func:`deploy_event` wrapped to run once per event id (the settings' idempotency table)."""
    from mlops_runtime.adapters.idempotency import once_per_event

    return once_per_event(deploy_event, table_name=settings().idempotency_table)


deploy_once = Lazy(_deploy_once)


class RetryLater(Exception):
    """A deployment failed for a reason that a later retry can fix; raised to fail the invocation."""


def endpoint_specs() -> tuple[EndpointSpec, ...]:
    return settings().endpoints


def suspend_endpoint_scaling(endpoint_name: str) -> None:
    """Deregister the endpoint's autoscaling (one Describe call when none is registered)."""
    from mlops_runtime.adapters.autoscaling import suspend_scaling  # lazy: keeps cold start lean

    suspend_scaling(endpoint_name)


def _ignored(reason: str, **fields: Any) -> dict[str, Any]:
    logger.info("Ignored event", extra={"reason": reason, **fields})
    metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
    return {"status": "ignored", "reason": reason}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_dimension(name="environment", value=settings().environment)
    specs = endpoint_specs()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return _handle_sqs_batch(event, context, specs)
    return _handle_event(event, context, specs)


handler = entry_point(_handler, logger, metrics)


def _handle_event(event: Any, context: Any, specs: tuple[EndpointSpec, ...]) -> dict[str, Any]:
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=1)
    logger.remove_keys(["event_id", "model_package_arn"])  # from the previous record of a batch
    if is_promotion_event(event):
        try:
            event_id, promotion = Promotion.from_eventbridge(event)
        except InvalidPromotion as error:
            logger.error("Malformed decision event", extra={"reason": str(error)})
            return _ignored(f"malformed decision event: {error}")
        logger.append_keys(event_id=event_id, model_package_arn=promotion.kept_model_package_arn)
        if not any(spec.name == promotion.endpoint_name for spec in specs):
            return _ignored(f"endpoint {promotion.endpoint_name} is not managed by this deployer")
        return deploy_once()(event, context)
    try:
        approval = ApprovalEvent.from_eventbridge(event)
    except InvalidEvent as error:
        logger.error("Malformed event", extra={"reason": str(error)})
        return _ignored(f"malformed event: {error}")
    fields = {"event_id": approval.event_id, "model_package_arn": approval.model_package_arn}
    logger.append_keys(**fields)
    if approval.approval_status != "Approved":
        return _ignored(f"model package is {approval.approval_status or 'of unknown status'}, not Approved")
    if not specs_for_group(specs, approval.group):
        return _ignored(f"no endpoint of this deployer is fed by model package group {approval.group}")
    return deploy_once()(event, context)


def _handle_sqs_batch(event: dict[str, Any], context: Any, specs: tuple[EndpointSpec, ...]) -> dict[str, Any]:
    """EventBridge events delivered through SQS (ReportBatchItemFailures): failed ones stay on the queue.

    With the rule targeting a queue, a busy endpoint is retried every visibility timeout for as
    long as ``maxReceiveCount`` allows (hours), instead of Lambda's two asynchronous retries within
    about three minutes, shorter than an endpoint update.
    """

    def record_handler(record: Any) -> None:  # raising leaves the record on the queue
        try:
            body = json.loads(record.body)
        except (TypeError, ValueError):
            logger.error("Dropped an unreadable SQS record", extra={"message_id": record.message_id})
            return  # retrying cannot make it readable
        try:
            _handle_event(body, context, specs)
        except Exception:
            logger.exception("Event left on the queue for a retry", extra={"message_id": record.message_id})
            raise

    return process_batch(event, record_handler, processor(), context)


def deploy_event(event: dict[str, Any]) -> dict[str, Any]:
    """Deploy the event's package to each endpoint fed by its group, or promote the kept model of a
    decided experiment (runs once per event id)."""
    if is_promotion_event(event):
        return promote_event(event)
    approval = ApprovalEvent.from_eventbridge(event)
    targets = specs_for_group(endpoint_specs(), approval.group)
    endpoints = sagemaker_endpoints()
    try:
        package = endpoints.describe_model_package(approval.model_package_arn)
    except ValueError as error:  # not a deployable package: report once per endpoint, do not retry
        return _done(
            approval, [_failed(spec.name, approval.event_id, approval.model_package_arn, str(error),
                               retryable=False) for spec in targets]
        )
    except Exception as error:
        if error_code(error) is None:  # a bug, not an AWS answer: report and fail loudly
            _failed(None, approval.event_id, approval.model_package_arn,
                    f"DescribeModelPackage failed: {error!r}", retryable=False)
            raise
        reason = f"DescribeModelPackage failed: {error_text(error)}"
        result = _failed(None, approval.event_id, approval.model_package_arn, reason,
                         retryable=is_retryable(error))
        if is_retryable(error):
            raise RetryLater(reason) from error
        return _done(approval, [result])
    if package.approval_status != "Approved":
        return _ignored(f"model package is now {package.approval_status}, no longer Approved")

    results, retry = [], []
    for spec in targets:
        result = _plan_and_apply(
            spec, approval.event_id, package.arn, endpoints,
            lambda current, spec=spec: plan_deployment(current, package, spec, datetime.now(UTC)),
        )
        results.append(result)
        if result["status"] == "retrying":
            retry.append(f"{spec.name}: {result['reason']}")
    if retry:
        # Fail the invocation: the idempotency record is released and the event is retried; endpoints
        # already deployed by this attempt plan as "already deployed" next time.
        raise RetryLater("; ".join(retry))
    return _done(approval, results)


def promote_event(event: dict[str, Any]) -> dict[str, Any]:
    """Keep the decided experiment's model as the endpoint's sole champion, retire the other."""
    event_id, promotion = Promotion.from_eventbridge(event)
    (spec,) = (spec for spec in endpoint_specs() if spec.name == promotion.endpoint_name)
    endpoints = sagemaker_endpoints()
    kept = promotion.kept_model_package_arn
    done = {"status": "done", "event_id": event_id, "model_package_arn": kept, "outcome": promotion.outcome}
    try:
        package = endpoints.describe_model_package(kept)
    except ValueError as error:  # not a deployable package: report, do not retry
        return {**done, "results": [_failed(spec.name, event_id, kept, str(error), retryable=False)]}
    except Exception as error:
        if error_code(error) is None:  # a bug, not an AWS answer
            raise
        reason = f"DescribeModelPackage failed: {error_text(error)}"
        result = _failed(spec.name, event_id, kept, reason, retryable=is_retryable(error))
        if is_retryable(error):
            raise RetryLater(reason) from error
        return {**done, "results": [result]}
    result = _plan_and_apply(
        spec, event_id, kept, endpoints,
        lambda current: plan_promotion(current, package, promotion.retired_model_package_arn, spec,
                                       datetime.now(UTC)),
    )
    if result["status"] == "retrying":
        raise RetryLater(f"{spec.name}: {result['reason']}")
    return {**done, "results": [result]}


def _plan_and_apply(
    spec: EndpointSpec, event_id: str, package_arn: str, endpoints: SageMakerEndpoints,
    planner: Callable[[EndpointState | None], DeploymentPlan],
) -> dict[str, Any]:
    try:
        current = endpoints.describe_endpoint_state(spec.name)
        plan = planner(current)
        if plan.is_noop:
            logger.info("Nothing to deploy", extra={"endpoint": spec.name, "reason": plan.reason})
            metrics.add_metric(name="DeploymentsSkipped", unit=MetricUnit.Count, value=1)
            return {"endpoint": spec.name, "status": "noop", "reason": plan.reason}
        logger.info(
            "Applying deployment plan", extra={"endpoint": spec.name, "plan": _loggable(plan.to_dict())}
        )
        # SageMaker refuses to update variants registered for autoscaling; the scaler Lambda
        # registers them again once the endpoint is back InService.
        suspend_endpoint_scaling(spec.name)
        applied = endpoints.apply(plan)
    except CannotPlan as error:  # EndpointBusy is the retryable kind
        return _failed(spec.name, event_id, package_arn, error.reason, retryable=error.retryable)
    except Exception as error:
        if error_code(error) is None:  # a bug, not an AWS answer: report and fail loudly
            _failed(spec.name, event_id, package_arn, f"unexpected error: {error!r}", retryable=False)
            raise
        return _failed(spec.name, event_id, package_arn, error_text(error), retryable=is_retryable(error))
    metrics.add_metric(name="DeploymentsApplied", unit=MetricUnit.Count, value=1)
    logger.info(
        "Deployment started",
        extra={
            "endpoint": spec.name,
            "action": plan.action,
            "config": plan.new_config_name,
            "guardrails": plan.guardrails,
            "applied": [call.to_dict() for call in applied],
            "rollback": plan.rollback,
        },
    )
    return {
        "endpoint": spec.name,
        "status": "deployed",
        "action": plan.action,
        "endpoint_config": plan.new_config_name,
        "guardrails": plan.guardrails,
        "notes": list(plan.notes),
        "rollback": plan.rollback,
    }


def _failed(endpoint: str | None, event_id: str, model_package_arn: str, reason: str, *, retryable: bool
            ) -> dict[str, Any]:
    log = logger.warning if retryable else logger.error
    log("Deployment not done", extra={"endpoint": endpoint, "reason": reason, "retryable": retryable})
    metrics.add_metric(
        name="DeploymentRetries" if retryable else "DeploymentFailures", unit=MetricUnit.Count, value=1
    )
    subject, message = failure_notification(
        environment=settings().environment,
        endpoint_name=endpoint,
        model_package_arn=model_package_arn,
        reason=reason,
        retryable=retryable,
        event_id=event_id,
    )
    _notify(subject, message)
    return {"endpoint": endpoint, "status": "retrying" if retryable else "failed", "reason": reason}


def _notify(subject: str, message: str) -> None:
    """Publish to the settings' topic; a failed publish is logged, never raised over the real error."""
    topic = settings().notification_topic_arn
    if not topic:
        logger.warning("No notification topic configured", extra={"subject": subject})
        return
    try:
        sns().publish(TopicArn=topic, Subject=subject, Message=message)
    except Exception:
        logger.exception("Could not publish the notification", extra={"subject": subject})


def _loggable(value: Any) -> Any:
    """The plan for the log, with container environment values masked (they may hold credentials)."""
    if isinstance(value, dict):
        return {
            key: {name: "***" for name in item}
            if key == "Environment" and isinstance(item, dict)
            else _loggable(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_loggable(item) for item in value]
    return value


def _done(approval: ApprovalEvent, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": "done",
        "event_id": approval.event_id,
        "model_package_arn": approval.model_package_arn,
        "results": results,
    }
