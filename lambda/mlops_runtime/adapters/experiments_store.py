"""DynamoDB adapter of the inference API and the experiment controller.

Tables (formats shared with the feedback API):

- predictions (pk ``inference_id``): one item per served prediction;
- statistics (pk ``experiment``, sk ``round_arm_hour`` = ``<round>#<arm>#<yyyy-mm-ddThh>``, see
  ``domain.rounds``): ``invocations`` (added here when a prediction is served), ``reward_sum``,
  ``reward_sq_sum``, ``feedback_count`` (added by the feedback API to the row of the prediction's
  round, arm and served hour), and ``round``, ``arm``, ``served_hour`` for people reading the table;
- experiment state (pk ``experiment``): the controller's state, its ``weights``, ``updated_at``,
  the ``decision`` once a winner is declared, and ``version`` (optimistic locking).

:meth:`DynamoDBExperimentsStore.record_prediction` is the inference API's only write: ONE
``TransactWriteItems`` that puts the prediction (unless its inference id is already stored) and adds
1 to its row's ``invocations``, so the count and the joinable records never disagree (a smoke-test
prediction is put alone: it counts nowhere). :meth:`DynamoDBExperimentsStore.arm_counts` sums one
round's rows per arm, optionally only the hours served before a time.

The low-level client is used with a small local (de)serializer (no ``boto3.dynamodb.types`` import,
floats accepted and written as numbers).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mlops_runtime.domain.rounds import STATISTICS_SORT_KEY as STATISTICS_KEY
from mlops_runtime.domain.rounds import ArmCounts, parse_statistics_key, round_prefix, sum_rows

if TYPE_CHECKING:  # the settings model (pydantic) is the handlers' import, not this adapter's
    from mlops_runtime.settings.experiments import ExperimentSettings


# Attempts of the per-request transaction when it conflicts with a concurrent feedback credit.
CONFLICT_ATTEMPTS = 3


class StateConflict(Exception):
    """The experiment state changed since it was read (version check failed)."""


class DuplicateInferenceId(Exception):
    """A prediction with this inference id is already stored; nothing was written."""


class ExperimentsStore(Protocol):
    def record_prediction(self, item: Mapping[str, Any], experiment: str, row_key: str | None) -> None: ...

    def arm_counts(self, experiment: str, round_id: int, served_before: float | None = None
                   ) -> dict[str, ArmCounts]: ...

    def read_state(self, experiment: str) -> dict[str, Any] | None: ...

    def write_state(self, experiment: str, state: Mapping[str, Any], expected_version: int) -> int: ...


# --- (de)serialisation ---------------------------------------------------------------------------


def to_attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store {value!r}")
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB: {value!r}")


def to_item(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): to_attribute(v) for k, v in values.items()}


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    (kind, value), = attribute.items()
    if kind == "N":
        number = float(value)
        if number.is_integer() and not any(c in value for c in ".eE"):
            return int(value)
        return number
    if kind in ("S", "BOOL"):
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    if kind == "B":
        return value
    if kind in ("SS", "BS"):
        return set(value)
    if kind == "NS":
        return {float(v) for v in value}
    raise TypeError(f"unknown DynamoDB attribute type {kind}")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attribute(v) for k, v in item.items()}


# --- adapter -------------------------------------------------------------------------------------


class DynamoDBExperimentsStore:
    """:class:`ExperimentsStore` over the DynamoDB low-level client (created lazily, or injected)."""

    def __init__(
        self,
        predictions_table: str | None,
        statistics_table: str,
        state_table: str,
        client: Any | None = None,
    ) -> None:
        self.predictions_table = predictions_table
        self.statistics_table = statistics_table
        self.state_table = state_table
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "dynamodb",
                config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=1, read_timeout=3),
            )
        return self._client

    def record_prediction(self, item: Mapping[str, Any], experiment: str, row_key: str | None) -> None:
        """Put the prediction and ``ADD invocations :one`` on its statistics row ``row_key``
        (``domain.rounds.statistics_key``), in one transaction; ``row_key=None`` (smoke-test traffic)
        puts the prediction only.

        Raises :class:`DuplicateInferenceId` (nothing written) when the inference id is already
        stored; any other failure is botocore's ``ClientError``.
        """
        if not self.predictions_table:
            raise RuntimeError("no predictions table configured")
        from botocore.exceptions import ClientError

        put = {
            "TableName": self.predictions_table,
            "Item": to_item(item),
            "ConditionExpression": "attribute_not_exists(inference_id)",
        }
        if row_key is None:
            try:
                self.client.put_item(**put)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    raise DuplicateInferenceId(item.get("inference_id")) from error
                raise
            return
        round_id, arm, hour = parse_statistics_key(row_key)
        request = {
            "TransactItems": [
                {"Put": put},
                {
                    "Update": {
                        "TableName": self.statistics_table,
                        "Key": {"experiment": {"S": experiment}, STATISTICS_KEY: {"S": row_key}},
                        "UpdateExpression": "SET #round = :round, arm = :arm, served_hour = :hour "
                                            "ADD invocations :one",
                        "ExpressionAttributeNames": {"#round": "round"},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"}, ":round": {"N": str(round_id)}, ":arm": {"S": arm},
                            ":hour": {"S": hour},
                        },
                    }
                },
            ]
        }
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                self.client.transact_write_items(**request)
                return
            except ClientError as error:
                codes = [(reason or {}).get("Code") for reason in error.response.get("CancellationReasons") or []]
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise DuplicateInferenceId(item.get("inference_id")) from error
                # The feedback API credits the same statistics item in its own transactions: a
                # conflict is transient, so try again a few times, briefly (this is the request path).
                if "TransactionConflict" not in codes or attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1) * (1 + random.random()))

    def arm_counts(self, experiment: str, round_id: int, served_before: float | None = None
                   ) -> dict[str, ArmCounts]:
        """Per-arm evidence of round ``round_id``: the sum of its rows whose served hour ended at or
        before ``served_before`` (epoch seconds; ``None``: every hour so far). Arms without a row
        are absent. Earlier rounds' rows stay in the table for reporting (this, with their round).
        One consistent Query on the round's key prefix (all pages)."""
        rows: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.statistics_table,
            "KeyConditionExpression": f"experiment = :experiment AND begins_with({STATISTICS_KEY}, :prefix)",
            "ExpressionAttributeValues": {":experiment": {"S": experiment}, ":prefix": {"S": round_prefix(round_id)}},
            "ConsistentRead": True,
        }
        while True:
            response = self.client.query(**request)
            rows.extend(from_item(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return sum_rows(((row[STATISTICS_KEY], row) for row in rows), round_id, served_before)
            request["ExclusiveStartKey"] = last

    def read_state(self, experiment: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.state_table, Key={"experiment": {"S": experiment}}, ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def write_state(self, experiment: str, state: Mapping[str, Any], expected_version: int) -> int:
        """Write ``state`` as version ``expected_version + 1`` if the stored version is still
        ``expected_version`` (0: no item yet); returns the new version, else :class:`StateConflict`."""
        from botocore.exceptions import ClientError

        version = int(expected_version) + 1
        values = {**state, "experiment": experiment, "version": version}
        request: dict[str, Any] = {"TableName": self.state_table, "Item": to_item(values)}
        if expected_version:
            request["ConditionExpression"] = "version = :expected"
            request["ExpressionAttributeValues"] = {":expected": {"N": str(int(expected_version))}}
        else:
            request["ConditionExpression"] = "attribute_not_exists(experiment)"
        try:
            self.client.put_item(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflict(f"experiment {experiment!r} state is no longer version {expected_version}") from error
            raise
        return version


def current_weights(config: ExperimentSettings, state: Mapping[str, Any] | None) -> dict[str, float]:
    """The weights of the state item restricted to the configured arms, else ``initial_weights``."""
    weights = (state or {}).get("weights")
    if isinstance(weights, Mapping):
        clean = {
            arm: float(weights.get(arm, 0.0))
            for arm in config.arms
            if isinstance(weights.get(arm, 0.0), (int, float)) and math.isfinite(float(weights.get(arm, 0.0)))
        }
        if len(clean) == len(config.arms) and all(w >= 0 for w in clean.values()) and sum(clean.values()) > 0:
            return clean
    return dict(config.initial_weights)


def round_start_weights(config: ExperimentSettings, live: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The split a new round starts from (the controller's restart, and the inference API until
    then): for one endpoint, the weights the deployer gave its variants (``live``: endpoint ->
    variant -> weight; an arm whose variant is not deployed gets 0); else ``initial_weights``."""
    if len(config.endpoints) == 1:
        variants = live.get(config.endpoints[0], {})
        weights = {arm: float(variants.get(target.variant, 0.0)) for arm, target in config.arms.items()}
        if sum(weights.values()) > 0:
            return weights
    return dict(config.initial_weights)
