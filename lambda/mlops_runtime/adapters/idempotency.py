"""Run a function at most once per EventBridge event id, recorded in DynamoDB (Powertools Idempotency).

Why Powertools rather than a hand-written conditional put: it already implements the protocol a
redelivery-safe handler needs, and implements it as documented and tested upstream:

- an ``INPROGRESS`` record written with a conditional put before the work starts, so a concurrent
  duplicate delivery fails fast (``IdempotencyAlreadyInProgressError``) and is retried later
  instead of deploying twice; the in-progress lock expires with the Lambda's remaining time, so a
  timed-out invocation does not block the event for good;
- the result stored as ``COMPLETED``: a redelivery returns the first result without side effects;
- the record deleted when the function raises, so a retryable failure (``EndpointBusy``,
  throttling) is retried by Lambda/EventBridge as if it had never run;
- records expire through the table's TTL attribute.

The table (the deployer's ``idempotency_table`` setting) has a string partition key ``id`` and a TTL attribute
``expiration`` (Powertools' defaults). Powertools and boto3 are imported when the wrapper is
built, on the first invocation, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# EventBridge retries an event for up to 24 hours; keep the record longer than that so a late
# redelivery is still recognised. (A redelivery after expiry re-plans: the planner then answers
# "already deployed" or "superseded", so it still does not deploy twice.)
DEFAULT_EXPIRY_SECONDS = 48 * 3600
KEY_PREFIX = "endpoint-deployer"


def once_per_event(
    function: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    table_name: str,
    expires_after_seconds: int = DEFAULT_EXPIRY_SECONDS,
    boto3_client: Any | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Wrap ``function(event) -> JSON-serialisable dict`` so it runs once per ``event["id"]``.

    The returned callable takes ``(event, lambda_context)``. An event without an id raises
    (``IdempotencyKeyError``) rather than running unprotected.
    """
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=boto3_client)
    config = IdempotencyConfig(
        event_key_jmespath="id",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
    )

    @idempotent_function(
        data_keyword_argument="event", persistence_store=persistence, config=config, key_prefix=KEY_PREFIX
    )
    def run(event: dict[str, Any]) -> dict[str, Any]:
        return function(event)

    def call(event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        config.register_lambda_context(lambda_context)
        return run(event=event)

    return call
