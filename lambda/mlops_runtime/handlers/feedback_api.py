"""Lambda: the feedback API, ``POST /v1/feedback`` (API Gateway REST API, Lambda proxy integration).

Body: one feedback record, or ``{"records": [...]}`` with up to ``FEEDBACK_MAX_BATCH`` records. Each
valid record is joined to its prediction, written once (idempotency key ``feedback_id``), credited
to the arm that served the prediction and, when it has a label, written as SageMaker ground truth.
Contract, semantics and failure handling: ``docs/feedback-api.md``.

Responses (JSON):

- one record: 202 ``{"feedback_id", "status": "accepted", "joined", "credited", "queued"}``; 200 with
  ``"status": "duplicate"``; 422 ``{"errors": [{"field", "reason"}]}``; 503 ``"status": "failed"``;
- a batch: 202 ``{"results": [{"index", "status", "feedback_id", "joined", "credited", "queued",
  "errors"}], "received", "accepted", "stored", "dead_lettered", "duplicates", "invalid", "failed"}``
  (``accepted = stored + dead_lettered``); 422 with the same body when no record is valid; 503 when a
  record could be neither stored nor queued (send the batch again: it is idempotent);
- the whole request: 400 (empty, not base64/UTF-8/JSON, not an object, bad ``records``), 413 (body
  over 1 MiB or too many records). Bad input never gets a 5xx.

Settings: ``settings.FeedbackApiSettings`` (tables, stream, dead-letter queue, the subject-hash secret
read with Powertools parameters, batch size, age and retention limits); Powertools'
``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``. Read on the
first request, not at import.

Nothing about the caller (source IP, user agent, headers) is read, logged or stored; subject ids are
stored only as keyed hashes. No Tracer: X-Ray instrumentation would cost about 150 ms of cold start;
enable Lambda's active tracing for the invocation segment if needed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.tracing import NEVER, entry_point, powertools
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.feedback import FeedbackApiSettings
from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore
from mlops_runtime.adapters.ground_truth import FirehoseGroundTruthWriter, SqsDeadLetterQueue
from mlops_runtime.adapters.secrets import subject_hash_key
from mlops_runtime.domain.feedback import (
    ConfigurationError,
    DeadLetterSink,
    Feedback,
    FeedbackSettings,
    FeedbackStore,
    GroundTruthSink,
    InvalidFeedback,
    Outcome,
    RequestRejected,
    RetryBudget,
    build_feedback,
    parse_body,
    process_feedback,
    split_records,
    validate_record,
)

ROUTE = "/v1/feedback"
RETRY_AFTER_SECONDS = "5"
# Retries of DynamoDB and Firehose stop this long before the invocation's deadline, leaving time to
# dead-letter what still fails (SQS calls: 1 s connect + 3 s read timeouts, a few attempts).
DEAD_LETTER_RESERVE_SECONDS = 6.0

SETTINGS_MODEL = FeedbackApiSettings  # what the stack passes in MLOPS_SETTINGS
logger, metrics = powertools()
# debug=False: POWERTOOLS_EVENT_HANDLER_DEBUG would otherwise print whole events (caller IP included).
app = APIGatewayRestResolver(enable_validation=True, debug=False)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Settings, adapters and clock of the function, built on the first request."""

    settings: FeedbackSettings
    store: FeedbackStore
    ground_truth: GroundTruthSink
    dead_letters: DeadLetterSink
    clock: Callable[[], datetime] = utc_now
    budget: RetryBudget | None = None  # shared with the store and the ground-truth writer

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Runtime:
        function = SETTINGS_MODEL.from_env(environ)
        if function.subject_hash_secret is None:
            raise ConfigurationError("the feedback API needs subject_hash_secret: subject ids are stored hashed")
        settings = function.limits(subject_hash_key(function.subject_hash_secret))
        budget = RetryBudget(time.monotonic)
        return cls(
            settings=settings,
            store=DynamoDBFeedbackStore(
                settings.predictions_table, settings.feedback_table, settings.statistics_table, budget=budget
            ),
            ground_truth=FirehoseGroundTruthWriter(settings.ground_truth_stream, budget=budget),
            dead_letters=SqsDeadLetterQueue(settings.dead_letter_queue_url),
            budget=budget,
        )

    def start_request(self, context: Any) -> None:
        """Let retries run until DEAD_LETTER_RESERVE_SECONDS before the invocation times out."""
        if self.budget is None:
            return
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        self.budget.until = (
            self.budget.clock() + remaining() / 1000 - DEAD_LETTER_RESERVE_SECONDS
            if callable(remaining)
            else math.inf
        )


runtime = Lazy(Runtime.from_env)  # built from the environment on first use, kept for the execution environment
configure = runtime.set  # tests, local runs; None: rebuild from the environment on next use


def _json(status: int, payload: dict[str, Any], *, retry_after: bool = False) -> Response:
    headers = {"Cache-Control": "no-store"}
    if retry_after:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    return Response(
        status_code=status, content_type="application/json", body=json.dumps(payload), headers=headers
    )


def _public_status(outcome: Outcome) -> str:
    return "accepted" if outcome.accepted else outcome.status  # duplicate | failed


def _count(name: str, value: int) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _record_metrics(received: int, invalid: int, outcomes: list[Outcome]) -> dict[str, int]:
    totals = {
        "received": received,
        "accepted": sum(1 for o in outcomes if o.accepted),
        "stored": sum(1 for o in outcomes if o.status == "stored"),
        "dead_lettered": sum(1 for o in outcomes if o.status == "dead_lettered"),
        "duplicates": sum(1 for o in outcomes if o.status == "duplicate"),
        "invalid": invalid,
        "failed": sum(1 for o in outcomes if o.status == "failed"),
    }
    joined = sum(1 for o in outcomes if o.accepted and o.joined)
    credited = sum(1 for o in outcomes if o.credited)
    lines_written = sum(1 for o in outcomes if o.ground_truth == "written")
    lines_queued = sum(1 for o in outcomes if o.ground_truth == "dead_lettered")
    # Zero counts are left out (an alarm treats missing data as zero); FeedbackReceived is always sent.
    _count("FeedbackReceived", received)
    for name, value in (
        ("FeedbackAccepted", totals["accepted"]),
        ("FeedbackStored", totals["stored"]),
        ("FeedbackDeadLettered", totals["dead_lettered"]),
        ("FeedbackDuplicate", totals["duplicates"]),
        ("FeedbackInvalid", invalid),
        ("FeedbackFailed", totals["failed"]),
        ("FeedbackJoined", joined),
        ("FeedbackCredited", credited),
        ("GroundTruthWritten", lines_written),
        ("GroundTruthDeadLettered", lines_queued),
    ):
        if value:
            _count(name, value)
    problems = [(o.status, o.reason) for o in outcomes if o.reason][:10]
    log = logger.warning if problems else logger.info
    log("Feedback processed", extra={**totals, "joined": joined, "credited": credited, "problems": problems})
    return totals


@app.post(ROUTE)
def post_feedback():  # no return annotation: Powertools would try to build a response model from it
    current = runtime()
    current.start_request(app.lambda_context)
    settings = current.settings
    now = current.clock()
    event = app.current_event
    try:
        document = parse_body(event.body, bool(event.is_base64_encoded), max_bytes=settings.max_body_bytes)
        is_batch, raw_records = split_records(document, max_batch=settings.max_batch)
    except RequestRejected as rejected:
        _count("FeedbackRequestsRejected", 1)
        logger.info("Rejected feedback request", extra={"status": rejected.status, "errors": rejected.errors})
        return _json(rejected.status, {"errors": rejected.errors})

    results: list[dict[str, Any] | None] = [None] * len(raw_records)
    feedbacks: list[Feedback] = []
    positions: list[int] = []
    for index, raw in enumerate(raw_records):
        try:
            record = validate_record(raw, now=now, max_age=settings.max_age, skew=settings.clock_skew)
            feedback = build_feedback(
                record, now=now, retention=settings.retention, subject_hash_key=settings.subject_hash_key
            )
        except InvalidFeedback as invalid:
            results[index] = {
                "index": index,
                "status": "invalid",
                "feedback_id": None,
                "joined": False,
                "credited": False,
                "queued": False,
                "errors": invalid.errors,
            }
            continue
        feedbacks.append(feedback)
        positions.append(index)
    invalid_count = len(raw_records) - len(feedbacks)

    if not is_batch and not feedbacks:
        _record_metrics(1, 1, [])
        return _json(422, {"errors": results[0]["errors"]})  # type: ignore[index]

    outcomes = (
        process_feedback(
            feedbacks,
            store=current.store,
            ground_truth=current.ground_truth,
            dead_letters=current.dead_letters,
            now=now,
        )
        if feedbacks
        else []
    )
    totals = _record_metrics(len(raw_records), invalid_count, outcomes)
    for index, outcome in zip(positions, outcomes, strict=True):
        results[index] = {
            "index": index,
            "status": _public_status(outcome),
            "feedback_id": outcome.feedback_id,
            "joined": outcome.joined,
            "credited": outcome.credited,
            "queued": outcome.status == "dead_lettered",
            "errors": [],
        }

    if not is_batch:
        (result,) = results
        assert result is not None
        body = {key: result[key] for key in ("feedback_id", "status", "joined", "credited", "queued")}
        status = {"accepted": 202, "duplicate": 200}.get(result["status"], 503)
        return _json(status, body, retry_after=status == 503)

    body = {"results": results, **totals}
    if totals["failed"]:
        return _json(503, body, retry_after=True)
    if not feedbacks:
        return _json(422, body)
    return _json(202, body)


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    if isinstance(error, ServiceError) and error.status_code < 500:  # unknown route or method
        return _json(error.status_code, {"errors": [{"field": "path", "reason": str(error.msg)}]})
    if isinstance(error, ConfigurationError | SettingsError):
        logger.error("Feedback function is misconfigured", extra={"error": str(error)})
    else:
        logger.exception("Unexpected error handling feedback")
    return _json(
        500, {"errors": [{"field": "", "reason": "internal error; please retry later"}]}, retry_after=True
    )


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _count("FeedbackRequests", 1)
    return app.resolve(event, context)


# log_event=False: POWERTOOLS_LOGGER_LOG_EVENT must not make the logger print events (caller IP).
handler = entry_point(_handler, logger, metrics, tracing=NEVER,
                      correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
