"""SQS batches of an event source mapping with ``ReportBatchItemFailures``: Powertools' ``BatchProcessor``.

A record whose handler raises is listed in ``batchItemFailures`` and stays on the queue; the others
are deleted. A batch whose records all fail is answered the same way (every record listed) rather
than raised, so the invocation's outcome does not depend on the batch size. The batch utility
imports asyncio and Powertools' event data classes (about a third of ``import boto3``): it is
imported with the first batch, not with the handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def sqs_batch_processor() -> Any:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def process_batch(event: dict[str, Any], record_handler: Callable[[Any], Any], processor: Any,
                  context: Any) -> dict[str, Any]:
    """``{"batchItemFailures": [...]}``; ``record_handler`` gets each record as a Powertools ``SQSRecord``."""
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
