"""Ground-truth delivery (Kinesis Data Firehose) and the feedback dead-letter queue (SQS).

:class:`FirehoseGroundTruthWriter` implements ``GroundTruthSink``: ``PutRecordBatch`` in groups of at
most 500 records and 4 MiB; records the response reports as failed (``FailedPutCount`` > 0, per-record
``ErrorCode``) are sent again, and so are whole groups after throttling, service or connection
errors, up to ``max_attempts`` with full-jitter back-off. What still fails is returned with the
reason; the pipeline (``domain.feedback.process_feedback``) then dead-letters it with
:class:`SqsDeadLetterQueue`, which implements ``DeadLetterSink`` (``SendMessageBatch``, 10 messages
a call, retried the same way) and is also what the replay reads from.

Each Firehose record is one ground-truth JSON line ending in ``\\n``; the delivery stream buffers them
into the feedback bucket under ``<prefix>yyyy/mm/dd/hh/`` (UTC arrival hour, added by Firehose),
the layout SageMaker model-quality monitoring reads. boto3 is imported on first use.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlops_runtime.adapters.aws_errors import error_code_or_name, error_text
from mlops_runtime.adapters.retrying import Retrying

FIREHOSE_MAX_RECORDS = 500
FIREHOSE_MAX_BATCH_BYTES = 4 * 1024 * 1024
FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
SQS_MAX_BATCH = 10
SQS_MAX_BATCH_BYTES = 256 * 1024

RETRYABLE_FIREHOSE_CODES = frozenset(
    {"ServiceUnavailableException", "ThrottlingException", "InternalFailure", "LimitExceededException"}
)
RETRYABLE_SQS_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KmsThrottled",
        "KMS.ThrottlingException",
    }
)


def _retryable(error: Exception, codes: frozenset[str]) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        return error_code_or_name(error) in codes
    return isinstance(error, BotoCoreError)  # connection errors and timeouts


class FirehoseGroundTruthWriter(Retrying):
    """Ground-truth lines to a Firehose delivery stream (see the module docstring)."""

    def __init__(
        self,
        stream_name: str,
        client: Any | None = None,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        super().__init__(
            client,
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            sleep=sleep,
            jitter=jitter,
            budget=budget,
        )
        self.stream_name = stream_name

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client("firehose")
        return self._client

    def put(self, lines: Sequence[bytes]) -> dict[int, str]:
        failures: dict[int, str] = {}
        group: list[int] = []
        size = 0
        for index, line in enumerate(lines):
            if len(line) > FIREHOSE_MAX_RECORD_BYTES:
                failures[index] = (
                    f"record of {len(line)} bytes exceeds Firehose's {FIREHOSE_MAX_RECORD_BYTES}"
                )
                continue
            if group and (len(group) == FIREHOSE_MAX_RECORDS or size + len(line) > FIREHOSE_MAX_BATCH_BYTES):
                failures.update(self._put_group(lines, group))
                group, size = [], 0
            group.append(index)
            size += len(line)
        if group:
            failures.update(self._put_group(lines, group))
        return failures

    def _put_group(self, lines: Sequence[bytes], group: list[int]) -> dict[int, str]:
        pending = list(group)
        reasons: dict[int, str] = {}
        for attempt in range(self._max_attempts):
            try:
                response = self.client.put_record_batch(
                    DeliveryStreamName=self.stream_name, Records=[{"Data": lines[i]} for i in pending]
                )
            except Exception as error:
                if not _retryable(error, RETRYABLE_FIREHOSE_CODES):
                    from botocore.exceptions import ClientError

                    if not isinstance(error, ClientError):
                        raise
                    return dict.fromkeys(pending, error_text(error))
                reasons = dict.fromkeys(pending, error_text(error))
            else:
                if not response.get("FailedPutCount"):
                    return {}
                failed: list[int] = []
                reasons = {}
                for index, entry in zip(pending, response.get("RequestResponses", []), strict=False):
                    if entry.get("ErrorCode"):
                        failed.append(index)
                        reasons[index] = f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}".rstrip(": ")
                if not failed:  # a count without per-record detail: resend them all
                    failed = list(pending)
                    reasons = dict.fromkeys(pending, f"FailedPutCount {response.get('FailedPutCount')}")
                pending = failed
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                return {
                    index: f"{reasons.get(index, 'failed')} (out of time after {attempt + 1} attempt(s))"
                    for index in pending
                }
        return {
            index: f"{reasons.get(index, 'failed')} (after {self._max_attempts} attempts)"
            for index in pending
        }


class SqsDeadLetterQueue(Retrying):
    """The feedback dead-letter queue: :meth:`send` for the API, :meth:`receive`/:meth:`delete` for replay."""

    def __init__(
        self,
        queue_url: str,
        client: Any | None = None,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        super().__init__(
            client,
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            sleep=sleep,
            jitter=jitter,
            budget=budget,
        )
        self.queue_url = queue_url

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client("sqs")
        return self._client

    def send(self, messages: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        bodies = [json.dumps(message, separators=(",", ":")) for message in messages]
        failures: dict[int, str] = {}
        group: list[int] = []
        size = 0
        for index, body in enumerate(bodies):
            length = len(body.encode("utf-8"))
            if length > SQS_MAX_BATCH_BYTES:
                failures[index] = f"message of {length} bytes exceeds SQS's {SQS_MAX_BATCH_BYTES}"
                continue
            if group and (len(group) == SQS_MAX_BATCH or size + length > SQS_MAX_BATCH_BYTES):
                failures.update(self._send_group(bodies, group))
                group, size = [], 0
            group.append(index)
            size += length
        if group:
            failures.update(self._send_group(bodies, group))
        return failures

    def _send_group(self, bodies: list[str], group: list[int]) -> dict[int, str]:
        pending = list(group)
        final: dict[int, str] = {}  # refused for good (sender fault)
        reasons: dict[int, str] = {}
        for attempt in range(self._max_attempts):
            try:
                response = self.client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(index), "MessageBody": bodies[index]} for index in pending],
                )
            except Exception as error:
                if not _retryable(error, RETRYABLE_SQS_CODES):
                    from botocore.exceptions import ClientError

                    if not isinstance(error, ClientError):
                        raise
                    final.update(dict.fromkeys(pending, error_text(error)))
                    return final
                reasons = dict.fromkeys(pending, error_text(error))
            else:
                retry: list[int] = []
                for entry in response.get("Failed", []):
                    index = int(entry["Id"])
                    why = f"{entry.get('Code', 'Failed')}: {entry.get('Message', '')}".rstrip(": ")
                    if entry.get("SenderFault"):
                        final[index] = why
                    else:
                        retry.append(index)
                        reasons[index] = why
                pending = retry
                if not pending:
                    return final
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                break
        final.update({i: f"{reasons.get(i, 'failed')} (after {attempt + 1} attempt(s))" for i in pending})
        return final

    def receive(
        self, *, max_messages: int = 10, wait_seconds: int = 1, visibility_timeout: int | None = None
    ) -> list[dict[str, Any]]:
        """Up to ``max_messages`` (1-10) messages: ``[{"MessageId", "ReceiptHandle", "Body", ...}]``."""
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": wait_seconds,
        }
        if visibility_timeout is not None:
            request["VisibilityTimeout"] = visibility_timeout
        return list(self.client.receive_message(**request).get("Messages", []))

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        """Delete messages by receipt handle; returns the handles that could not be deleted."""
        failed: list[str] = []
        for start in range(0, len(receipt_handles), SQS_MAX_BATCH):
            chunk = list(receipt_handles[start : start + SQS_MAX_BATCH])
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)],
            )
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed


class InMemoryGroundTruth:
    """Thread-safe fake ``GroundTruthSink``: keeps the lines; ``fail_next`` makes puts fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[bytes] = []
        self.fail_next = 0
        self.calls = 0

    def put(self, lines: Sequence[bytes]) -> dict[int, str]:
        with self._lock:
            self.calls += 1
            if self.fail_next:
                self.fail_next -= 1
                return dict.fromkeys(range(len(lines)), "ServiceUnavailableException: injected")
            self.lines.extend(lines)
        return {}


class InMemoryDeadLetters:
    """Thread-safe fake ``DeadLetterSink``: keeps the messages; ``refuse`` makes sends fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.refuse = False

    def send(self, messages: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        if self.refuse:
            return dict.fromkeys(range(len(messages)), "AccessDenied: injected")
        with self._lock:
            # A JSON round trip, as through SQS.
            self.messages.extend(json.loads(json.dumps(message)) for message in messages)
        return {}
