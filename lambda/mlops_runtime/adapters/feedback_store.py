"""DynamoDB side of the feedback API: prediction lookup, idempotent feedback writes, reward credits.

:class:`DynamoDBFeedbackStore` implements :class:`mlops_runtime.domain.feedback.FeedbackStore` over
three tables (formats in ``docs/feedback-api.md``):

- predictions (``inference_id``), written by the router, read here;
- feedback (``feedback_id``): one item per accepted feedback (the idempotency record) and one
  ``reward-credit#<inference id>`` marker per credited inference id;
- statistics (``experiment``, ``round_arm_hour``): ``ADD reward_sum, reward_sq_sum, feedback_count``
  on the row of the prediction's round, arm and served hour (``domain.rounds``).

**Lookup**: one ``BatchGetItem`` per 100 keys, strongly consistent, covering both the predictions and
the feedback ids (so duplicates are known before anything is written); unprocessed keys are retried.

**Write**: feedback is written in ``TransactWriteItems`` groups of at most 100 actions: for each
record a conditional ``Put`` (``attribute_not_exists(feedback_id)``) and, when it credits a reward, a
conditional ``Put`` of the inference id's credit marker; plus one ``Update ... ADD`` per arm with the
group's summed rewards. The idempotency record and its credit therefore commit together or not at
all: a crash, a timeout or a retry can neither credit twice nor lose a credit. When DynamoDB cancels
the transaction, the reasons say which action failed: ``ConditionalCheckFailed`` on a feedback put
is a duplicate (dropped from the group), on a marker means the inference id was already credited
(the record is stored without credit); conflicts and throttling are retried with full-jitter
back-off; anything else fails the group. Each attempt carries a ``ClientRequestToken`` derived from
its actions, kept for a retry after an ambiguous failure (timeout, 5xx), so a transaction that
succeeded but whose response was lost is not applied twice, and renewed after a refusal.

boto3 is imported when the client is first needed. :class:`InMemoryFeedbackStore` is a thread-safe
fake with the same semantics, for tests and local rehearsal.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from mlops_runtime.adapters.aws_errors import error_code_or_name, error_text
from mlops_runtime.adapters.retrying import Retrying
from mlops_runtime.domain.feedback import (
    ExistingFeedback,
    FeedbackWrite,
    Lookup,
    LookupFailed,
    Prediction,
    RetryBudget,
    WriteResult,
    aggregate_credits,
    credit_marker_id,
)
from mlops_runtime.domain.rounds import STATISTICS_SORT_KEY as STATISTICS_KEY

BATCH_GET_LIMIT = 100
TRANSACTION_LIMIT = 100

# Error codes worth another attempt (after botocore's own standard-mode retries).
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "TransactionConflictException",
    }
)
# Of those, the ones that say the request was certainly not applied.
REFUSED_ERROR_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
# Cancellation reasons of TransactWriteItems worth another attempt.
RETRYABLE_CANCELLATION_CODES = frozenset(
    {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"}
)

_STATISTICS_UPDATE = (
    "ADD reward_sum :reward_sum, reward_sq_sum :reward_sq_sum, feedback_count :feedback_count"
)
_NOT_EXISTS = "attribute_not_exists(feedback_id)"


# --- attribute values ---------------------------------------------------------------------------


def format_number(value: float) -> str:
    """A DynamoDB number string: the float's shortest repr, in positional notation below 1E21.

    Floats below 1E-100 in magnitude (DynamoDB's floor is 1E-130, and a squared reward can go below
    it) are stored as 0. Positional notation because some DynamoDB implementations (moto, for one)
    cannot add numbers written with an exponent.
    """
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers")
    if isinstance(value, int):
        return str(value)
    if value == 0 or abs(value) < 1e-100:
        return "0"
    number = Decimal(repr(value))
    return format(number, "f") if abs(value) < 1e21 else str(number)


def to_attribute(value: Any) -> dict[str, Any]:
    """A plain JSON-like value as a DynamoDB attribute value (S, N, BOOL, L, M, NULL)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float):
        return {"N": format_number(value)}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(item) for item in value]}
    if isinstance(value, Mapping):
        return {"M": {str(key): to_attribute(item) for key, item in value.items()}}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """The plain value of a DynamoDB attribute value (numbers as int when integral text, else float)."""
    ((kind, value),) = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "L":
        return [from_attribute(item) for item in value]
    if kind == "M":
        return {key: from_attribute(item) for key, item in value.items()}
    if kind in ("SS", "NS", "BS", "B"):
        return value
    raise ValueError(f"unknown attribute type {kind}")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: from_attribute(value) for name, value in item.items()}


def feedback_item(write: FeedbackWrite, *, credited: bool) -> dict[str, Any]:
    """The feedback-table item of a write, as DynamoDB attribute values."""
    feedback = write.feedback
    item: dict[str, Any] = {
        "feedback_id": {"S": feedback.feedback_id},
        "record_type": {"S": "feedback"},
        "inference_id": {"S": feedback.inference_id},
        "feedback_type": {"S": feedback.feedback_type},
        "joined": {"BOOL": write.joined},
        "credited": {"BOOL": credited},
        "received_at": {"N": format_number(feedback.received_at)},
        "expires_at": {"N": str(feedback.expires_at)},
    }
    if feedback.label is not None:
        item["label"] = to_attribute(feedback.label)
    if feedback.reward is not None:
        item["reward"] = {"N": format_number(feedback.reward)}
    if feedback.event_time is not None:
        item["event_time"] = {"S": feedback.event_time}
    if feedback.subject_hash is not None:
        item["subject_hash"] = {"S": feedback.subject_hash}
    if feedback.metadata:
        item["metadata"] = to_attribute(feedback.metadata)
    prediction = write.prediction
    if prediction is not None:
        item["experiment"] = {"S": prediction.experiment}
        item["arm"] = {"S": prediction.arm}
        item["endpoint"] = {"S": prediction.endpoint}
        item["variant"] = {"S": prediction.variant}
        if prediction.model_package_arn:
            item["model_package_arn"] = {"S": prediction.model_package_arn}
    return item


def credit_marker_item(write: FeedbackWrite) -> dict[str, Any]:
    """The item recording that ``write``'s inference id has been credited (once, ever)."""
    feedback, prediction = write.feedback, write.prediction
    assert prediction is not None
    return {
        "feedback_id": {"S": credit_marker_id(feedback.inference_id)},
        "record_type": {"S": "reward_credit"},
        "inference_id": {"S": feedback.inference_id},
        "credited_feedback_id": {"S": feedback.feedback_id},
        "experiment": {"S": prediction.experiment},
        "arm": {"S": prediction.arm},
        "received_at": {"N": format_number(feedback.received_at)},
        "expires_at": {"N": str(feedback.expires_at)},
    }


def _cancellation_text(error: Exception, roles: list[tuple[str, Any]]) -> str:
    """``TransactionCanceledException: ProvisionedThroughputExceeded (statistics), ...``."""
    reasons = (getattr(error, "response", None) or {}).get("CancellationReasons") or []
    seen: dict[str, None] = {}
    for (role, _), reason in zip(roles, reasons, strict=False):
        code = reason.get("Code") or "None"
        if code != "None":
            seen[f"{code} ({role})"] = None
    return "TransactionCanceledException: " + (", ".join(seen) if seen else "no reasons given")


def _is_transient(error: Exception) -> bool:
    """botocore connection and timeout errors (the request may not have reached DynamoDB)."""
    from botocore.exceptions import BotoCoreError

    return isinstance(error, BotoCoreError)


class DynamoDBFeedbackStore(Retrying):
    """:class:`~mlops_runtime.domain.feedback.FeedbackStore` over DynamoDB (see the module docstring).

    ``max_attempts`` bounds this class's own retries of throttling, conflicts and transient errors
    (each attempt also gets botocore's standard-mode retries); between attempts it sleeps a random
    delay in ``[0, min(max_delay, base_delay * 2**attempt))``. A ``budget`` (shared, moved by the
    handler per request) stops the retries early when the invocation's time is running out.
    """

    def __init__(
        self,
        predictions_table: str,
        feedback_table: str,
        statistics_table: str,
        client: Any | None = None,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.05,
        max_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: RetryBudget | None = None,
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
        self.predictions_table = predictions_table
        self.feedback_table = feedback_table
        self.statistics_table = statistics_table

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client("dynamodb")
        return self._client

    # --- lookup ---------------------------------------------------------------------------------

    def lookup(self, inference_ids: Sequence[str], feedback_ids: Sequence[str]) -> Lookup:
        keys: list[tuple[str, dict[str, Any]]] = [
            (self.predictions_table, {"inference_id": {"S": value}}) for value in dict.fromkeys(inference_ids)
        ]
        keys += [
            (self.feedback_table, {"feedback_id": {"S": value}}) for value in dict.fromkeys(feedback_ids)
        ]
        predictions: dict[str, Prediction] = {}
        existing: dict[str, ExistingFeedback] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            for table, item in self._batch_get(keys[start : start + BATCH_GET_LIMIT]):
                values = from_item(item)
                if table == self.predictions_table:
                    prediction = Prediction.from_item(values)
                    if prediction is not None:
                        predictions[prediction.inference_id] = prediction
                else:
                    existing[values["feedback_id"]] = ExistingFeedback(
                        joined=bool(values.get("joined")), credited=bool(values.get("credited"))
                    )
        return Lookup(predictions, existing)

    def _batch_get(self, keys: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
        from botocore.exceptions import ClientError

        request: dict[str, Any] = {}
        for table, key in keys:
            entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
            entry["Keys"].append(key)
        if self.feedback_table in request:
            request[self.feedback_table]["ProjectionExpression"] = "feedback_id, joined, credited"
        attempt = 0
        while request:
            try:
                response = self.client.batch_get_item(RequestItems=request)
            except ClientError as error:
                if error_code_or_name(error) not in RETRYABLE_ERROR_CODES or attempt + 1 >= self._max_attempts:
                    raise LookupFailed(error_text(error)) from error
            except Exception as error:
                if not _is_transient(error):
                    raise
                if attempt + 1 >= self._max_attempts:
                    raise LookupFailed(error_text(error)) from error
            else:
                for table, items in response.get("Responses", {}).items():
                    for item in items:
                        yield table, item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    return
                if attempt + 1 >= self._max_attempts:
                    count = sum(len(entry.get("Keys", ())) for entry in request.values())
                    raise LookupFailed(
                        f"{count} key(s) still unprocessed after {self._max_attempts} attempts"
                    )
            if not self._back_off(attempt):
                raise LookupFailed(f"out of time after {attempt + 1} attempt(s)")
            attempt += 1

    # --- write ----------------------------------------------------------------------------------

    def write(self, writes: Sequence[FeedbackWrite]) -> WriteResult:
        result = WriteResult()
        for group in self._groups(writes):
            self._write_group(group, result)
        return result

    @staticmethod
    def _groups(writes: Sequence[FeedbackWrite]) -> Iterator[list[FeedbackWrite]]:
        """Consecutive groups whose puts, markers and arm updates fit one transaction (100 actions)."""
        group: list[FeedbackWrite] = []
        actions = 0
        arms: set[tuple[str, str]] = set()
        for write in writes:
            arm = (
                (write.prediction.experiment, write.prediction.statistics_key)
                if write.credit and write.prediction
                else None
            )
            needed = 1 + (1 if arm else 0) + (1 if arm and arm not in arms else 0)
            if group and actions + len(arms) + needed > TRANSACTION_LIMIT:
                yield group
                group, actions, arms = [], 0, set()
            group.append(write)
            actions += 2 if arm else 1
            if arm:
                arms.add(arm)
        if group:
            yield group

    def _actions(
        self, active: list[FeedbackWrite], credit: dict[str, bool]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, FeedbackWrite | None]]]:
        actions: list[dict[str, Any]] = []
        roles: list[tuple[str, FeedbackWrite | None]] = []
        crediting: list[FeedbackWrite] = []
        for write in active:
            credited = credit[write.feedback.feedback_id]
            actions.append(
                {
                    "Put": {
                        "TableName": self.feedback_table,
                        "Item": feedback_item(write, credited=credited),
                        "ConditionExpression": _NOT_EXISTS,
                    }
                }
            )
            roles.append(("feedback", write))
            if credited:
                actions.append(
                    {
                        "Put": {
                            "TableName": self.feedback_table,
                            "Item": credit_marker_item(write),
                            "ConditionExpression": _NOT_EXISTS,
                        }
                    }
                )
                roles.append(("marker", write))
                crediting.append(write)
        for (experiment, row_key), (total, squares, count) in sorted(aggregate_credits(crediting).items()):
            actions.append(
                {
                    "Update": {
                        "TableName": self.statistics_table,
                        "Key": {"experiment": {"S": experiment}, STATISTICS_KEY: {"S": row_key}},
                        "UpdateExpression": _STATISTICS_UPDATE,
                        "ExpressionAttributeValues": {
                            ":reward_sum": {"N": format_number(total)},
                            ":reward_sq_sum": {"N": format_number(squares)},
                            ":feedback_count": {"N": str(count)},
                        },
                    }
                }
            )
            roles.append(("statistics", None))
        return actions, roles

    def _write_group(self, group: list[FeedbackWrite], result: WriteResult) -> None:
        from botocore.exceptions import ClientError

        active = list(group)
        credit = {write.feedback.feedback_id: write.credit for write in group}
        attempt = 0
        refused = 0  # attempts DynamoDB certainly did not apply (cancelled, throttled)
        while active:
            actions, roles = self._actions(active, credit)
            # The same token for a retry whose predecessor may have been applied (a timeout, a 5xx):
            # DynamoDB then answers success without applying it twice. A new one after a refusal.
            token = hashlib.sha256(f"{json.dumps(actions, sort_keys=True)}#{refused}".encode()).hexdigest()[
                :36
            ]
            try:
                self.client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
            except ClientError as error:
                code = error_code_or_name(error)
                if code == "TransactionCanceledException":
                    verdict = self._read_cancellation(error, roles, active, credit, result)
                    if verdict == "progress":
                        continue  # duplicates or already-credited markers removed: try the rest now
                    reason = _cancellation_text(error, roles)
                    if verdict == "fatal":
                        self._fail(active, reason, result)
                        return
                    refused += 1
                elif code not in RETRYABLE_ERROR_CODES:
                    self._fail(active, error_text(error), result)
                    return
                else:
                    reason = error_text(error)
                    refused += code in REFUSED_ERROR_CODES
            except Exception as error:
                if not _is_transient(error):
                    raise
                reason = error_text(error)
            else:
                for write in active:
                    result.stored[write.feedback.feedback_id] = credit[write.feedback.feedback_id]
                return
            attempt += 1
            if attempt >= self._max_attempts:
                self._fail(active, f"{reason} (after {attempt} attempts)", result)
                return
            if not self._back_off(attempt - 1):
                self._fail(active, f"{reason} (out of time after {attempt} attempt(s))", result)
                return

    @staticmethod
    def _read_cancellation(
        error: Exception,
        roles: list[tuple[str, FeedbackWrite | None]],
        active: list[FeedbackWrite],
        credit: dict[str, bool],
        result: WriteResult,
    ) -> str:
        """Apply the cancellation reasons: ``progress``, ``retry`` or ``fatal``."""
        reasons = (getattr(error, "response", None) or {}).get("CancellationReasons") or []
        if len(reasons) != len(roles):
            return "retry"  # reasons missing (should not happen): treat like a conflict
        duplicates: set[str] = set()
        progress, retry, fatal = False, False, False
        for (role, write), reason in zip(roles, reasons, strict=True):
            code = reason.get("Code") or "None"
            if code == "None":
                continue
            if code == "ConditionalCheckFailed" and write is not None:
                fid = write.feedback.feedback_id
                if role == "feedback":
                    duplicates.add(fid)
                elif credit.get(fid):
                    credit[fid] = False
                progress = True
            elif code in RETRYABLE_CANCELLATION_CODES:
                retry = True
            else:
                fatal = True
        if duplicates:
            result.duplicates.update(duplicates)
            active[:] = [write for write in active if write.feedback.feedback_id not in duplicates]
        if fatal:
            return "fatal"
        if progress:
            return "progress"
        return "retry" if retry else "fatal"

    @staticmethod
    def _fail(active: list[FeedbackWrite], reason: str, result: WriteResult) -> None:
        for write in active:
            result.failed[write.feedback.feedback_id] = reason


class InMemoryFeedbackStore:
    """Thread-safe in-memory :class:`~mlops_runtime.domain.feedback.FeedbackStore`.

    Each :meth:`write` record is applied atomically under a lock with the DynamoDB adapter's
    semantics (conditional put, one credit per inference id, ADD to the arm's statistics).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.predictions: dict[str, dict[str, Any]] = {}
        self.feedback: dict[str, dict[str, Any]] = {}
        self.credited: dict[str, str] = {}  # inference id -> feedback id that credited it
        self.statistics: dict[tuple[str, str], dict[str, float]] = {}
        self.lookups = 0
        self.writes = 0

    def put_prediction(self, item: Mapping[str, Any]) -> None:
        with self._lock:
            self.predictions[item["inference_id"]] = dict(item)

    def lookup(self, inference_ids: Sequence[str], feedback_ids: Sequence[str]) -> Lookup:
        with self._lock:
            self.lookups += 1
            predictions = {}
            for inference_id in inference_ids:
                item = self.predictions.get(inference_id)
                prediction = Prediction.from_item(item) if item else None
                if prediction is not None:
                    predictions[inference_id] = prediction
            existing = {
                fid: ExistingFeedback(self.feedback[fid]["joined"], self.feedback[fid]["credited"])
                for fid in feedback_ids
                if fid in self.feedback
            }
        return Lookup(predictions, existing)

    def write(self, writes: Sequence[FeedbackWrite]) -> WriteResult:
        result = WriteResult()
        for write in writes:
            feedback = write.feedback
            with self._lock:
                self.writes += 1
                if feedback.feedback_id in self.feedback:
                    result.duplicates.add(feedback.feedback_id)
                    continue
                credited = write.credit and feedback.inference_id not in self.credited
                self.feedback[feedback.feedback_id] = {
                    **feedback.to_dict(),
                    "joined": write.joined,
                    "credited": credited,
                }
                if credited and write.prediction is not None and feedback.reward is not None:
                    self.credited[feedback.inference_id] = feedback.feedback_id
                    key = (write.prediction.experiment, write.prediction.statistics_key)
                    stats = self.statistics.setdefault(
                        key, {"reward_sum": 0.0, "reward_sq_sum": 0.0, "feedback_count": 0}
                    )
                    stats["reward_sum"] += feedback.reward
                    stats["reward_sq_sum"] += feedback.reward * feedback.reward
                    stats["feedback_count"] += 1
                result.stored[feedback.feedback_id] = credited
        return result
