"""Replay dead-lettered feedback: an SQS-triggered Lambda, or a command line for operators.

The feedback API dead-letters what it could not finish (see ``domain.feedback.process_feedback``):
``store`` letters (look the prediction up, store and credit the feedback, write its ground truth if
still due) and ``ground_truth`` letters (deliver one ground-truth line). Replaying is idempotent: a
feedback stored in the meantime is a duplicate and is neither stored nor credited again. A letter
that still fails stays in the queue (it is not re-queued), so nothing is lost.

Lambda (event source mapping on the dead-letter queue with ``ReportBatchItemFailures``): each SQS
record is replayed; failures are returned as ``batchItemFailures`` (Powertools ``BatchProcessor``),
so only they come back. Give the queue a redrive policy (``maxReceiveCount``) to a parking queue, or
enable the mapping only while recovering, so a letter that cannot succeed does not loop forever.

Command line (credentials of an operator or a role with the same permissions)::

    python -m mlops_runtime.handlers.feedback_replay --queue-url URL [--max-messages N]
        [--visibility-timeout S] [--dry-run]

Tables, stream and queue come from the function's settings (``settings.FeedbackApiSettings`` in
``MLOPS_SETTINGS``: copy it from the replay function's configuration); ``--queue-url`` (e.g. the
parking queue) overrides the queue. Replayed messages are
deleted; the others become visible again after the visibility timeout (and are not retried within
the same run). Prints a JSON summary on stdout (logs go to stderr); exit
code 0 when every message read was replayed, 1 if any failed, 2 for bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from mlops_runtime.adapters.tracing import NEVER, entry_point, powertools
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.feedback import FeedbackApiSettings
from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore
from mlops_runtime.adapters.ground_truth import FirehoseGroundTruthWriter, SqsDeadLetterQueue
from mlops_runtime.domain.feedback import (
    ConfigurationError,
    FeedbackStore,
    GroundTruthSink,
    InvalidDeadLetter,
    Outcome,
    ReplayFailed,
    parse_dead_letter,
    replay_dead_letter,
)

SETTINGS_MODEL = FeedbackApiSettings  # what the stack passes in MLOPS_SETTINGS
logger, metrics = powertools()
processor = BatchProcessor(event_type=EventType.SQS)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Replayer:
    """Replays dead-letter message bodies against a store and a ground-truth sink."""

    def __init__(
        self, store: FeedbackStore, ground_truth: GroundTruthSink, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store = store
        self.ground_truth = ground_truth
        self.clock = clock

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Replayer:
        settings = SETTINGS_MODEL.from_env(environ)
        return cls(
            DynamoDBFeedbackStore(
                settings.predictions_table, settings.feedback_table, settings.statistics_table
            ),
            FirehoseGroundTruthWriter(settings.ground_truth_stream),
        )

    def replay(self, body: str) -> Outcome:
        """Replay one message body; raises :class:`InvalidDeadLetter` or :class:`ReplayFailed`."""
        letter = parse_dead_letter(body)
        outcome = replay_dead_letter(
            letter, store=self.store, ground_truth=self.ground_truth, now=self.clock()
        )
        logger.info(
            "Replayed dead letter",
            extra={"stage": letter.stage, "feedback_id": outcome.feedback_id, "status": outcome.status},
        )
        return outcome


replayer = Lazy(Replayer.from_env)
configure = replayer.set  # tests; None: rebuild from the environment on next use


def record_handler(record: Any) -> None:
    """One SQS record (Powertools ``SQSRecord``); raising marks it as a batch item failure."""
    try:
        outcome = replayer().replay(record.body)
    except (InvalidDeadLetter, ReplayFailed) as error:
        metrics.add_metric(name="FeedbackReplayFailed", unit=MetricUnit.Count, value=1)
        logger.warning(
            "Dead letter not replayed", extra={"message_id": record.message_id, "reason": str(error)}
        )
        raise
    metrics.add_metric(name="FeedbackReplayed", unit=MetricUnit.Count, value=1)
    if outcome.status == "duplicate":
        metrics.add_metric(name="FeedbackReplayDuplicate", unit=MetricUnit.Count, value=1)


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="FeedbackReplayBatches", unit=MetricUnit.Count, value=1)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


handler = entry_point(_handler, logger, metrics, tracing=NEVER, log_event=False)


# --- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_runtime.handlers.feedback_replay",
        description="Replay dead-lettered feedback from the SQS dead-letter queue.",
    )
    parser.add_argument(
        "--queue-url",
        default=None,
        help="dead-letter queue URL (default: the settings' dead_letter_queue_url)",
    )
    parser.add_argument("--max-messages", type=int, default=1000, help="stop after this many messages")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=120,
        help="seconds a message read stays hidden (a failed one reappears after it)",
    )
    parser.add_argument("--wait-seconds", type=int, default=1, help="long-poll wait per receive call")
    parser.add_argument("--dry-run", action="store_true", help="parse and count messages; replay nothing")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    replayer_: Replayer | None = None,
    queue: SqsDeadLetterQueue | None = None,
) -> int:
    args = _parser().parse_args(argv)
    stream_handler = logger.registered_handler
    if not isinstance(stream_handler, logging.StreamHandler):
        return _main(args, replayer_, queue)
    previous = stream_handler.setStream(sys.stderr)  # logs to stderr: stdout carries only the summary
    try:
        return _main(args, replayer_, queue)
    finally:
        if previous is not None:
            stream_handler.setStream(previous)


def _main(args: argparse.Namespace, replayer_: Replayer | None, queue: SqsDeadLetterQueue | None) -> int:
    if args.max_messages < 1:
        print("error: --max-messages must be at least 1", file=sys.stderr)
        return 2
    try:
        engine = replayer_ or Replayer.from_env()
        queue = queue or SqsDeadLetterQueue(args.queue_url or FeedbackApiSettings.from_env().dead_letter_queue_url)
    except (ConfigurationError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {
        "read": 0,
        "replayed": 0,
        "duplicates": 0,
        "failed": 0,
        "invalid": 0,
        "dry_run": args.dry_run,
        "failures": [],
    }
    seen: set[str | None] = set()
    while summary["read"] < args.max_messages:
        messages = queue.receive(
            max_messages=min(10, args.max_messages - summary["read"]),
            wait_seconds=args.wait_seconds,
            visibility_timeout=args.visibility_timeout,
        )
        fresh = [message for message in messages if message.get("MessageId") not in seen]
        if not fresh:  # empty, or only messages that already failed in this run and reappeared
            break
        done: list[str] = []
        for message in fresh:
            seen.add(message.get("MessageId"))
            summary["read"] += 1
            try:
                if args.dry_run:
                    parse_dead_letter(message["Body"])
                    continue
                outcome = engine.replay(message["Body"])
            except InvalidDeadLetter as error:
                summary["invalid"] += 1
                summary["failures"].append({"message_id": message.get("MessageId"), "reason": str(error)})
                continue
            except ReplayFailed as error:
                summary["failed"] += 1
                summary["failures"].append({"message_id": message.get("MessageId"), "reason": str(error)})
                continue
            summary["replayed"] += 1
            summary["duplicates"] += outcome.status == "duplicate"
            done.append(message["ReceiptHandle"])
        if done:
            for handle in queue.delete(done):
                summary["failures"].append({"receipt_handle": handle[:20], "reason": "could not delete"})
    summary["failures"] = summary["failures"][:50]
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] or summary["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
