"""Builders and helpers of the feedback API tests: API Gateway events, records, fakes, a moto account.

Imported by name (``from feedback_fixtures import ...``): pytest puts this test directory on
``sys.path`` (no ``__init__.py``), and the name is unique across the suite.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore, InMemoryFeedbackStore
from mlops_runtime.adapters.ground_truth import (
    FirehoseGroundTruthWriter,
    InMemoryDeadLetters,
    InMemoryGroundTruth,
    SqsDeadLetterQueue,
)
from mlops_runtime.domain.feedback import FeedbackSettings
from mlops_runtime.handlers import feedback_api
from lambda_context import LambdaContext

NOW = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)
SOURCE_IP = "203.0.113.77"
USER_AGENT = "FeedbackTestAgent/9.9 (privacy-canary)"
SUBJECT_KEY = b"test-subject-key"

PREDICTIONS_TABLE = "predictions"
FEEDBACK_TABLE = "feedback"
STATISTICS_TABLE = "statistics"
STREAM = "ground-truth"
BUCKET = "feedback-bucket"
PREFIX = "ground-truth/"


def settings(**overrides: Any) -> FeedbackSettings:
    values: dict[str, Any] = {
        "predictions_table": PREDICTIONS_TABLE,
        "feedback_table": FEEDBACK_TABLE,
        "statistics_table": STATISTICS_TABLE,
        "ground_truth_stream": STREAM,
        "dead_letter_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/feedback-dlq",
        "subject_hash_key": SUBJECT_KEY,
    }
    values.update(overrides)
    return FeedbackSettings(**values)


def api_event(
    body: str | bytes | None,
    *,
    base64_encoded: bool = False,
    method: str = "POST",
    path: str = "/v1/feedback",
) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event, with a caller IP and user agent to keep private."""
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii")
        base64_encoded = True
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Forwarded-For": SOURCE_IP,
        },
        "multiValueHeaders": {
            "Content-Type": ["application/json"],
            "User-Agent": [USER_AGENT],
            "X-Forwarded-For": [SOURCE_IP],
        },
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "req-0001",
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "identity": {"sourceIp": SOURCE_IP, "userAgent": USER_AGENT},
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def invoke(body: Any, *, raw: bool = False, **event_options: Any) -> tuple[int, dict[str, Any]]:
    """Call the Lambda handler; ``body`` is JSON-encoded unless ``raw``. Returns (status, JSON body)."""
    text = body if raw else json.dumps(body)
    response = feedback_api.handler(api_event(text, **event_options), LambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else {}


def record(inference_id: str = "inf-1", **fields: Any) -> dict[str, Any]:
    return {"inference_id": inference_id, "feedback_type": "click", "reward": 1, **fields}


SERVED_AT = NOW - timedelta(minutes=5)  # when prediction() items were served


def row(experiment: str, arm: str, round_id: int = 1) -> tuple[str, str]:
    """(experiment, statistics sort key) of the row a prediction() of ``arm`` is credited to."""
    from mlops_runtime.domain.rounds import statistics_key

    return experiment, statistics_key(round_id, arm, SERVED_AT.timestamp())


def prediction(inference_id: str, endpoint: str = "churn", variant: str = "challenger", **extra: Any) -> dict:
    """A predictions-table item as the router writes it (plain values), served in round 1."""
    return {
        "inference_id": inference_id,
        "endpoint": endpoint,
        "variant": variant,
        "experiment": endpoint,
        "arm": f"{endpoint}/{variant}",
        "model_package_arn": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn/3",
        "subject_hash": "0" * 32,
        "created_at": int(SERVED_AT.timestamp()),
        "round": 1,
        "expires_at": int((NOW + timedelta(days=30)).timestamp()),
        **extra,
    }


@dataclass
class Fakes:
    store: InMemoryFeedbackStore = field(default_factory=InMemoryFeedbackStore)
    ground_truth: InMemoryGroundTruth = field(default_factory=InMemoryGroundTruth)
    dead_letters: InMemoryDeadLetters = field(default_factory=InMemoryDeadLetters)


# --- moto ---------------------------------------------------------------------------------------


def no_sleep(_seconds: float) -> None:
    return None


@dataclass
class Aws:
    dynamodb: Any
    s3: Any
    sqs: Any
    firehose: Any
    queue_url: str

    def put_prediction(self, item: dict[str, Any]) -> None:
        from mlops_runtime.adapters.feedback_store import to_attribute

        self.dynamodb.put_item(
            TableName=PREDICTIONS_TABLE, Item={key: to_attribute(value) for key, value in item.items()}
        )

    def put_predictions(self, items: list[dict[str, Any]]) -> None:
        from mlops_runtime.adapters.feedback_store import to_attribute

        for start in range(0, len(items), 25):
            self.dynamodb.batch_write_item(
                RequestItems={
                    PREDICTIONS_TABLE: [
                        {"PutRequest": {"Item": {key: to_attribute(value) for key, value in item.items()}}}
                        for item in items[start : start + 25]
                    ]
                }
            )

    def items(self, table: str) -> list[dict[str, Any]]:
        from mlops_runtime.adapters.feedback_store import from_item

        return [from_item(item) for item in self.dynamodb.scan(TableName=table)["Items"]]

    def statistics(self, experiment: str, arm: str, served_at: datetime = SERVED_AT) -> dict[str, Any] | None:
        """The round-1 statistics row of ``arm`` for predictions served at ``served_at``."""
        from mlops_runtime.adapters.feedback_store import from_item
        from mlops_runtime.domain.rounds import statistics_key

        key = {"experiment": {"S": experiment}, "round_arm_hour": {"S": statistics_key(1, arm, served_at.timestamp())}}
        item = self.dynamodb.get_item(TableName=STATISTICS_TABLE, Key=key).get("Item")
        return from_item(item) if item else None

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {
            obj["Key"]: self.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read() for obj in listing
        }

    def ground_truth_lines(self) -> list[dict[str, Any]]:
        lines = []
        for data in self.objects().values():
            lines += [json.loads(line) for line in data.decode("utf-8").splitlines()]
        return lines

    def queued(self) -> list[dict[str, Any]]:
        """Every message body in the dead-letter queue; the messages are left in it (made visible again)."""
        bodies: list[dict[str, Any]] = []
        handles: list[str] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                break
            bodies += [json.loads(message["Body"]) for message in batch]
            handles += [message["ReceiptHandle"] for message in batch]
        for start in range(0, len(handles), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(handles[start : start + 10])
                ],
            )
        return bodies

    def store(self, client: Any | None = None, **options: Any) -> DynamoDBFeedbackStore:
        return DynamoDBFeedbackStore(
            PREDICTIONS_TABLE,
            FEEDBACK_TABLE,
            STATISTICS_TABLE,
            client or self.dynamodb,
            sleep=no_sleep,
            **options,
        )

    def writer(self, client: Any | None = None, **options: Any) -> FirehoseGroundTruthWriter:
        return FirehoseGroundTruthWriter(STREAM, client or self.firehose, sleep=no_sleep, **options)

    def dead_letter_queue(self, client: Any | None = None, **options: Any) -> SqsDeadLetterQueue:
        return SqsDeadLetterQueue(self.queue_url, client or self.sqs, sleep=no_sleep, **options)

    def runtime(
        self, *, store=None, ground_truth=None, dead_letters=None, clock=lambda: NOW, budget=None, **overrides
    ):
        return feedback_api.Runtime(
            settings(dead_letter_queue_url=self.queue_url, **overrides),
            store or self.store(),
            ground_truth or self.writer(),
            dead_letters or self.dead_letter_queue(),
            clock=clock,
            budget=budget,
        )


class _Clients:
    """boto3 clients built once per session (building one costs tens of milliseconds); moto intercepts
    requests through botocore's event system, so they serve every test's own ``mock_aws()``."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session(region_name="eu-west-1").client(service)
        return self._clients[service]


clients = _Clients()


def create_account() -> Aws:
    """Create the tables, bucket, delivery stream and queue in the active ``mock_aws()``."""
    dynamodb = clients("dynamodb")
    for name, keys in (
        (PREDICTIONS_TABLE, [("inference_id", "HASH")]),
        (FEEDBACK_TABLE, [("feedback_id", "HASH")]),
        (STATISTICS_TABLE, [("experiment", "HASH"), ("round_arm_hour", "RANGE")]),
    ):
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
    s3 = clients("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    firehose = clients("firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose-delivery",
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": PREFIX,
        },
    )
    sqs = clients("sqs")
    queue_url = sqs.create_queue(QueueName="feedback-dlq")["QueueUrl"]
    return Aws(dynamodb, s3, sqs, firehose, queue_url)


# --- fault injection ----------------------------------------------------------------------------


def client_error(code: str, message: str = "injected", operation: str = "Operation", **extra: Any):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}, **extra}, operation)


def cancelled(kwargs: dict[str, Any], reason_of) -> Exception:
    """A TransactionCanceledException whose reasons are ``reason_of(action)`` per action ("None": fine)."""
    reasons = []
    for action in kwargs["TransactItems"]:
        code = reason_of(action)
        reasons.append({"Code": code} if code == "None" else {"Code": code, "Message": "injected"})
    return client_error(
        "TransactionCanceledException",
        "Transaction cancelled",
        "TransactWriteItems",
        CancellationReasons=reasons,
    )


def statistics_throttled(kwargs: dict[str, Any]) -> Exception:
    """The statistics table is throttled: its Update fails, the rest of the transaction is fine."""
    return cancelled(
        kwargs,
        lambda action: (
            "ProvisionedThroughputExceeded"
            if action.get("Update", {}).get("TableName") == STATISTICS_TABLE
            else "None"
        ),
    )


class Faulty:
    """A boto3 client wrapper that fails scripted calls.

    ``script[operation]`` is a list of steps, one per call (then calls pass through); ``always[operation]``
    applies to every call. A step is ``None`` (pass through), an exception or a callable
    ``(kwargs) -> exception`` to raise, or a callable returning ``("return", response)``. Every call's
    arguments are recorded in ``calls[operation]``. ``lock`` (optional) serialises the named
    operations, as DynamoDB serialises conflicting transactions.
    """

    def __init__(self, client: Any, *, script=None, always=None, lock=None, serialise=(), after=None) -> None:
        self._client = client
        self.script = {name: list(steps) for name, steps in (script or {}).items()}
        self.always = dict(always or {})
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self._lock = lock
        self._serialise = set(serialise)
        self._after = after or {}

    def _step(self, name: str):
        steps = self.script.get(name)
        if steps:
            return steps.pop(0)
        return self.always.get(name)

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(**kwargs: Any):
            self.calls.setdefault(name, []).append(kwargs)
            step = self._step(name)
            if isinstance(step, Exception):
                raise step
            if callable(step):
                outcome = step(kwargs)
                if isinstance(outcome, Exception):
                    raise outcome
                if isinstance(outcome, tuple) and outcome[0] == "return":
                    return outcome[1]
            if self._lock is not None and name in self._serialise:
                with self._lock:
                    result = method(**kwargs)
            else:
                result = method(**kwargs)
            if name in self._after:
                self._after[name]()
            return result

        return call
