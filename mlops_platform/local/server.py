"""The platform's API on a laptop: the real Lambda handlers behind a loopback HTTP server, AWS in moto.

    PORT=8080 python -m mlops_platform.local.server [--port N] [--access-log] [--emf]

Starts, on 127.0.0.1 only (never another interface):

1. a moto server (``moto.server.ThreadedMotoServer``) on a free loopback port, seeded with what the
   ``Api`` stack deploys: the four DynamoDB tables (predictions, statistics, experiment state,
   feedback, with the stack's keys), the feedback dead-letter and parking queues, the ground-truth
   Firehose stream delivering to an S3 bucket, the notifications topic, and the SageMaker endpoint
   ``local-local-churn`` (the stack's ``<name_prefix>-<endpoint>`` of the public endpoint ``local-churn``;
   model package group, two models, one endpoint config) with the production variants ``champion``
   and ``challenger`` at 0.5 / 0.5;
2. an HTTP server (werkzeug, as moto's) on ``PORT`` (default 8080; 0 picks a free port) whose URL map
   is the API stack's route table (``mlops_platform.api_routes``) plus the rehearsal's own routes; it
   turns each request into an API Gateway REST proxy event, runs the real handler in-process and
   writes its proxy response back:

   - ``POST /v1/endpoints/{endpoint}/invocations``, ``GET /v1/experiments/{endpoint}``:
     ``mlops_runtime.handlers.inference_api.handler``;
   - ``POST /v1/feedback``: ``mlops_runtime.handlers.feedback_api.handler``;
   - ``POST /v1/search/{index}``: ``mlops_runtime.handlers.search_api.handler`` (index ``local-docs``,
     30 documents, deterministic embedder, in-memory store);
   - local only: ``POST /local/controller/{endpoint}`` runs ``handlers.experiment_controller`` once
     (the deployed platform runs it on a schedule), ``GET /local/info`` describes the rehearsal,
     ``GET /local/notifications`` drains what the controller published to the topic.

The handlers get the settings models the stack gives them (``mlops_runtime.settings``), built by the
stack's builders (``mlops_platform.function_settings``) from ``config/dev.yaml`` as the rehearsal
changes it (:func:`rehearsal_config`) and the rehearsal's names (the subject-hash key in moto's
Secrets Manager), and the real boto3 adapters,
pointed at moto; only ``InvokeEndpoint`` is replaced (:class:`FakeModelRuntime`: moto has no model
containers), answering ``{"variant", "model", "score"}`` for the variant that served. No
authentication (the deployed API is IAM-authorised). One request at a time per process, as in one
Lambda execution environment. Ctrl-C or SIGTERM stops both servers; exit code 0.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import importlib
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from mlops_platform.api_routes import HANDLERS, ROUTES as API_ROUTES, ApiRoute
from mlops_platform.paths import RUNTIME_ROOT

if str(RUNTIME_ROOT) not in sys.path:
    sys.path.append(str(RUNTIME_ROOT))  # appended: never shadows an installed package

HOST = "127.0.0.1"  # the only address either server ever binds
DEFAULT_PORT = 8080
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
FAKE_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
STAGE = "local"
PREFIX = "local"

ENDPOINT = "local-churn"  # public name in the path, experiment id, and the endpoint's name in the config
VARIANTS = ("champion", "challenger")
INITIAL_WEIGHTS = {"champion": 0.5, "challenger": 0.5}
BASE_CONFIG = "dev"  # the environment (config/<name>.yaml) whose API the rehearsal stands in for
MODEL_PACKAGE_GROUP = "churn"  # the endpoint's group in the config (named <name_prefix>-churn, as deployed)
SEARCH_INDEX = "local-docs"
SEARCH_DIMENSION = 256

# The experiment's controller (serving.experiments[].controller, without interval_minutes: the rehearsal
# runs it on request), tuned for a rehearsal, not for production: the demo
# (rates of 30 % and more, batches of 100) shows the weights moving after the first batch; moves start
# after 50 invocations per arm and every arm keeps at least 20 % while the experiment runs, so that the
# losing arm's interval narrows too. The anytime-valid test's minimum effect is 10 points (deployed
# default: 0.5), so that a winner or "no meaningful difference" is reached within a few thousand requests.
CONTROLLER_SETTINGS: dict[str, Any] = {
    "strategy": "thompson",
    "epsilon": 0.1,
    "min_share": 0.2,
    "max_step": 0.2,
    "min_observations": 50,
    "min_change": 0.01,
    "stop": True,
    "alpha": 0.05,
    "min_effect": 0.1,
    "max_invocations": 20_000,
    "max_duration_days": None,
    "contender_share": 0.2,
    "feedback_delay_hours": 0,
}

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LAMBDA_TIMEOUT_MS = 28_000  # the stack's API functions: API Gateway stops waiting at 29 s
IDLE_CONNECTION_SECONDS = 30
EMF_PREFIX = '{"_aws"'  # CloudWatch embedded metric format documents
Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body of an HTTP response
HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True)
class Names:
    """What the seeded resources are called (the stack's names with the ``local`` prefix); the
    SageMaker names come from the rehearsal's config, as the stack derives them (:meth:`of`)."""

    endpoint: str  # the SageMaker endpoint: <name_prefix>-<endpoint's name>
    endpoint_config: str
    model_package_group: str
    predictions_table: str = f"{PREFIX}-predictions"
    statistics_table: str = f"{PREFIX}-statistics"
    state_table: str = f"{PREFIX}-experiment-state"
    feedback_table: str = f"{PREFIX}-feedback"
    dead_letter_queue: str = f"{PREFIX}-feedback-dead-letters"
    parking_queue: str = f"{PREFIX}-feedback-parked"
    feedback_bucket: str = f"{PREFIX}-feedback"
    ground_truth_stream: str = f"{PREFIX}-ground-truth"
    ground_truth_prefix: str = "ground-truth/"
    topic: str = f"{PREFIX}-notifications"
    notifications_queue: str = f"{PREFIX}-notifications-inbox"
    subject_hash_secret: str = f"{PREFIX}/subject-hash-key"
    subject_hash_key: str = "local-subject-hash-key-not-a-secret"
    smoke_test_role: str = f"{PREFIX}-api-smoke-test"  # as ApiStack.smoke_test_role_name

    @classmethod
    def of(cls, config: Any) -> Names:
        """The names of the config's one endpoint, as the stack derives them (``<name_prefix>-<name>``)."""
        from mlops_platform.function_settings import endpoint_name

        (endpoint,) = config.serving.endpoints
        name = endpoint_name(config, endpoint.name)
        return cls(endpoint=name, endpoint_config=f"{name}-config-1",
                   model_package_group=f"{config.name_prefix}-{endpoint.model_package_group}")


# --- the faked model container --------------------------------------------------------------------


class FakeModelRuntime:
    """Stands in for ``InvokeEndpoint`` (``adapters.model_runtime.ModelRuntime``): each seeded variant
    answers JSON naming itself, its model and a score from its own (deterministic) scorer; unknown
    endpoints or variants fail as SageMaker does (``UnknownModelEndpoint``)."""

    def __init__(self, models: Mapping[str, Mapping[str, str]]) -> None:
        self.models = {endpoint: dict(variants) for endpoint, variants in models.items()}
        self.calls = 0

    def invoke(self, endpoint: str, variant: str | None, inference_id: str, content_type: str, body: bytes,
               accept: str | None = None) -> Any:
        from mlops_runtime.adapters.model_runtime import InvocationResult, UnknownModelEndpoint

        self.calls += 1
        variants = self.models.get(endpoint)
        if variants is None:
            raise UnknownModelEndpoint(f"Endpoint {endpoint} of account {ACCOUNT} not found.",
                                       "ValidationError")
        if variant is None:
            variant = next(iter(variants))
        if variant not in variants:
            raise UnknownModelEndpoint(f"Variant {variant} not found for endpoint {endpoint}.",
                                       "ValidationError")
        digest = hashlib.sha256(variant.encode() + b"\0" + body).digest()
        offset = 0.1 * list(variants).index(variant)  # the variants' scorers differ
        score = round(min(1.0, offset + int.from_bytes(digest[:4], "big") / 2**32 * 0.9), 4)
        payload = {"variant": variant, "model": variants[variant], "score": score}
        return InvocationResult(json.dumps(payload).encode(), "application/json", variant)


# --- documents of the search index ----------------------------------------------------------------

DOCUMENTS: tuple[tuple[str, str, str], ...] = (  # id, category (filterable), text
    ("kb-001", "account",
     "To reset your password, open Settings, choose Security and follow the reset link we email you."),
    ("kb-002", "account", "Two-factor authentication adds a one-time code from your phone to every sign-in."),
    ("kb-003", "account",
     "Change the email address of your account under Settings, Profile; we confirm the new address."),
    ("kb-004", "account",
     "Delete your account from Settings, Privacy; your data is removed within thirty days."),
    ("kb-005", "account", "Invite team members from the Team page; each member gets their own sign-in."),
    ("kb-006", "billing",
     "Invoices are emailed on the first day of each month and can be downloaded as PDF."),
    ("kb-007", "billing",
     "Update your credit card under Billing, Payment methods; the next invoice uses the new card."),
    ("kb-008", "billing", "Annual plans are billed once a year and cost two months less than monthly plans."),
    ("kb-009", "billing", "Refunds for unused months of an annual plan are issued within ten business days."),
    ("kb-010", "billing", "Sales tax and VAT are added to invoices according to your billing address."),
    ("kb-011", "plans",
     "The Starter plan includes five projects, one gigabyte of storage and email support."),
    ("kb-012", "plans", "The Pro plan adds unlimited projects, priority support and single sign-on."),
    ("kb-013", "plans",
     "Upgrade or downgrade your plan at any time; changes are prorated on the next invoice."),
    ("kb-014", "plans",
     "Cancel your subscription from Billing; you keep access until the end of the paid period."),
    ("kb-015", "plans", "A free trial lasts fourteen days and needs no credit card."),
    ("kb-016", "churn",
     "Customers who stop using the product for thirty days are likely to cancel their subscription."),
    ("kb-017", "churn",
     "A retention offer of one free month reduces cancellations among long-tenure customers."),
    ("kb-018", "churn",
     "The churn model scores each customer from tenure, monthly spend and support tickets."),
    ("kb-019", "churn", "High churn scores trigger a call from the customer success team within a week."),
    ("kb-020", "churn", "Churn is measured as the share of subscriptions cancelled in a calendar month."),
    ("kb-021", "data",
     "Export your projects as CSV or JSON from the Data page; large exports arrive by email."),
    ("kb-022", "data", "Imports accept CSV files up to one hundred megabytes with a header row."),
    ("kb-023", "data", "Backups are taken every night and kept for thirty-five days."),
    ("kb-024", "data", "Data is stored encrypted in the region you chose when you created the workspace."),
    ("kb-025", "data", "The API returns JSON and accepts requests signed with your personal access token."),
    ("kb-026", "support", "Support is available by email around the clock and by phone on business days."),
    ("kb-027", "support", "Priority support answers Pro customers within one hour during business days."),
    ("kb-028", "support",
     "Report a bug from the Help menu; attach a screenshot and the steps to reproduce it."),
    ("kb-029", "support",
     "The status page shows incidents, maintenance windows and the uptime of each service."),
    ("kb-030", "support", "Feature requests are collected on the roadmap board where customers can vote."),
)


def document_lines() -> list[str]:
    return [json.dumps({"id": doc_id, "text": text, "metadata": {"category": category}})
            for doc_id, category, text in DOCUMENTS]


# --- configuration: what the stack gives the functions ---------------------------------------------


def rehearsal_config(controller: Mapping[str, Any] = CONTROLLER_SETTINGS) -> Any:
    """The environment the rehearsal stands in for: ``config/dev.yaml`` with moto's account, the
    ``local`` name prefix and one real-time endpoint ``local-churn`` in place of dev's endpoints (its
    experiment: :data:`INITIAL_WEIGHTS`, X-Target-Arm allowed, ``controller``), validated as any
    config file. The functions' settings are built from it by the stack's builders
    (``configs.api_settings``); dev's ``serving.api`` (TTLs, limits, caching) is the rehearsal's."""
    from mlops_platform.local.configs import with_one_endpoint

    return with_one_endpoint(
        BASE_CONFIG,
        endpoint={
            "name": ENDPOINT, "model_package_group": MODEL_PACKAGE_GROUP,
            "variant": {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 1},
            "data_capture": None,  # moto's endpoint captures nothing
        },
        experiment={
            "name": ENDPOINT,
            "initial_weights": dict(INITIAL_WEIGHTS),
            "allow_variant_override": True,  # lets you try one arm with X-Target-Arm
            "controller": dict(controller),
        },
        account=ACCOUNT, region=REGION, name_prefix=PREFIX,
    )


def api_resources(names: Names, queue_url: str, topic_arn: str, secret_arn: str) -> Any:
    """What the API stack passes the builders (``function_settings.ApiResources``): the seeded names."""
    from mlops_platform.function_settings import ApiResources

    return ApiResources(
        predictions_table=names.predictions_table, statistics_table=names.statistics_table,
        state_table=names.state_table, feedback_table=names.feedback_table,
        ground_truth_stream=names.ground_truth_stream, dead_letter_queue_url=queue_url,
        subject_hash_secret=secret_arn, notification_topic_arn=topic_arn, smoke_test_role=names.smoke_test_role,
    )


def search_settings() -> Any:
    """The search API's settings (``domain.search.SearchSettings``): an in-memory store and the
    deterministic embedder, which no deployed config can name, so not built from a config."""
    from mlops_runtime.domain.search import SearchSettings

    return SearchSettings.parse({"indexes": {
        SEARCH_INDEX: {
            "dimension": SEARCH_DIMENSION,
            "distance": "cosine",
            "filterable": ["category"],
            "store": {"kind": "memory"},
            "embedder": {"kind": "deterministic"},
            "chunk_size": 60,
            "chunk_overlap": 10,
            "max_top_k": 10,
        }
    }})


def function_environment(moto_url: str) -> dict[str, str]:
    """What points boto3 at moto (fake credentials, region, ``AWS_ENDPOINT_URL``, no shared config) and
    Powertools' variables. The functions' settings are objects (``configs.api_settings``,
    :func:`search_settings`), given to each handler: one process runs them all, so the one settings
    variable of a deployed function cannot be set here."""
    return {
        # boto3 >= 1.28: every client without an explicit endpoint goes to moto
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # Powertools: no X-Ray, warnings and errors only (unless set); metrics are printed as EMF
        # documents, as in Lambda (the command line hides them unless --emf)
        "POWERTOOLS_SERVICE_NAME": "mlops-local",
        "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Local",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
    }


class _Environment:
    """Sets variables and puts back exactly what was there before (``AWS_PROFILE`` is removed)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def apply(self, values: Mapping[str, str],
              remove: Iterable[str] = ("AWS_PROFILE", "AWS_SESSION_TOKEN")) -> None:
        for name in [*values, *remove]:
            self._saved.setdefault(name, os.environ.get(name))
        for name in remove:
            os.environ.pop(name, None)
        os.environ.update(values)

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


# --- API Gateway REST proxy: events in, responses out ----------------------------------------------


@dataclass(frozen=True)
class LocalRoute:
    """A route of the rehearsal only (the deployed platform runs the controller on a schedule)."""

    method: str
    path: str
    function: str  # controller | info | notifications


LOCAL_ROUTES: tuple[LocalRoute, ...] = (
    LocalRoute("POST", "/local/controller/{endpoint}", "controller"),
    LocalRoute("GET", "/local/info", "info"),
    LocalRoute("GET", "/local/notifications", "notifications"),
)


def _rule(route: ApiRoute | LocalRoute) -> Rule:
    """A werkzeug rule for a route; the route itself is the rule's endpoint."""
    return Rule(re.sub(r"\{(\w+)\}", r"<\1>", route.path), methods=[route.method], endpoint=route)


# The API's routes (api_routes.ROUTES, as the stack deploys them) and the rehearsal's own.
URL_MAP = Map([_rule(route) for route in (*API_ROUTES, *LOCAL_ROUTES)], strict_slashes=False,
              merge_slashes=False)


def route_table() -> list[tuple[str, str]]:
    """(method, path) of every route the rehearsal serves, read from its URL map."""
    return [(method, route.path) for rule in URL_MAP.iter_rules() for route in [rule.endpoint]
            for method in sorted(rule.methods or ()) if method == route.method]


class LambdaContext:
    """What the handlers read from Lambda's context object."""

    def __init__(self, function_name: str, timeout_ms: int = LAMBDA_TIMEOUT_MS) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def proxy_event(method: str, path: str, resource: str, path_parameters: Mapping[str, str] | None,
                headers: Sequence[tuple[str, str]], query: str, body: bytes,
                source_ip: str = HOST) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event. A body that is not UTF-8 is sent base64-encoded
    with ``isBase64Encoded`` (as API Gateway does for binary media types)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # API Gateway keeps the last value
        multi.setdefault(name, []).append(value)
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for name, value in pairs:
        multi_query.setdefault(name, []).append(value)
    text: str | None
    encoded = False
    if not body:
        text = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    user_agent = next((v for k, v in reversed(headers) if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def proxy_response(result: Any) -> Answer:
    """Status, headers and body of a Lambda proxy response, merged as API Gateway does (a header in
    both ``headers`` and ``multiValueHeaders`` takes the latter's values). A malformed response is
    API Gateway's 502."""
    if not isinstance(result, Mapping) or not isinstance(result.get("statusCode"), int):
        return _json_answer(502, {"message": "Internal server error"})
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in (result.get("headers") or {}).items():
        merged[name.lower()] = (name, [str(value)])
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = (name, [str(v) for v in (values or [])])
    headers = [(name, value) for key, (name, values) in merged.items() if key not in HOP_BY_HOP
               for value in values]
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw)
        except (binascii.Error, ValueError):
            return _json_answer(502, {"message": "Internal server error"})
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    return result["statusCode"], headers, body


def _json_answer(status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> Answer:
    return status, [("Content-Type", "application/json"), *headers], json.dumps(payload).encode("utf-8")


# --- moto: transactions in time independent of table size ------------------------------------------


class TransactionBackups:
    """Makes moto's ``TransactWriteItems`` cost independent of the size of the tables it touches.

    moto backs up every table a transaction touches with ``copy.deepcopy`` before applying it (to roll
    back a cancelled one), so each transaction costs time proportional to the table: the predictions
    table grows by one item per invocation, and a rehearsal of a few thousand requests would slow to
    seconds per request. While installed, a backup copies the table's item index (shallow) and deep-
    copies only the items the transaction names (the only ones it can change in place); the others
    are shared, unchanged. Rollback semantics are moto's own. Installed only if moto's internals look
    as expected (``installed`` tells); otherwise moto runs unchanged, just slower.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._restore: Callable[[], None] | None = None

    @property
    def installed(self) -> bool:
        return self._restore is not None

    def install(self) -> bool:
        import copy

        try:
            import moto.dynamodb.models as models
            from moto.dynamodb.models.dynamo_type import DynamoType
            from moto.dynamodb.models.table import Table
        except ImportError:
            return False
        backend = getattr(models, "DynamoDBBackend", None)
        original = getattr(backend, "transact_write_items", None)
        if self._restore is not None or getattr(models, "copy", None) is not copy or original is None:
            return False
        local = self._local

        def snapshot(table: Any, transact_items: Sequence[Mapping[str, Any]]) -> Any:
            backup = copy.copy(table)
            ranged = table.range_key_attr is not None
            items = type(table.items)(dict) if isinstance(table.items, dict) else {}
            items.update({h: dict(r) for h, r in table.items.items()} if ranged else table.items)
            for entry in transact_items:
                _, op = next(iter(entry.items()))
                key = op.get("Key") or op.get("Item") or {}
                if op.get("TableName") != table.name or table.hash_key_attr not in key:
                    continue
                hash_value = DynamoType(key[table.hash_key_attr])
                if ranged:
                    inner = items.get(hash_value)
                    range_key = key.get(table.range_key_attr)
                    range_value = DynamoType(range_key) if range_key is not None else None
                    if inner is not None and range_value is not None and range_value in inner:
                        inner[range_value] = copy.deepcopy(inner[range_value])
                elif hash_value in items:
                    items[hash_value] = copy.deepcopy(items[hash_value])
            backup.items = items
            return backup

        class CopyModule:
            """moto's ``copy`` module, with table backups taken by ``snapshot`` inside a transaction."""

            def __getattr__(self, name: str) -> Any:
                return getattr(copy, name)

            @staticmethod
            def deepcopy(value: Any, memo: Any = None) -> Any:
                transact_items = getattr(local, "transact_items", None)
                if transact_items is not None and isinstance(value, Table):
                    return snapshot(value, transact_items)
                return copy.deepcopy(value, memo)

        def transact_write_items(self: Any, transact_items: Any, *args: Any, **kwargs: Any) -> Any:
            local.transact_items = transact_items
            try:
                return original(self, transact_items, *args, **kwargs)
            finally:
                local.transact_items = None

        models.copy = CopyModule()
        backend.transact_write_items = transact_write_items

        def restore() -> None:
            models.copy = copy
            backend.transact_write_items = original

        self._restore = restore
        return True

    def uninstall(self) -> None:
        restore, self._restore = self._restore, None
        if restore is not None:
            restore()


# --- the HTTP server (werkzeug) --------------------------------------------------------------------


class _RequestHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients may reuse a connection
    server_version = "mlops-local"
    sys_version = ""
    timeout = IDLE_CONNECTION_SECONDS  # an idle kept-alive connection is closed after this
    disable_nagle_algorithm = True  # no 40 ms wait for a delayed ACK between two writes

    server: _HttpServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {self.requestline} {code} {size}\n")


class _HttpServer(ThreadedWSGIServer):
    """werkzeug's threaded server; on close, open connections are cut and their threads joined."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, port: int, platform: LocalPlatform, access_log: bool) -> None:
        self.platform = platform
        self.access_log = access_log
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(HOST, port, platform.wsgi, handler=_RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Wake the threads blocked reading kept-alive connections (a browser, a paused client)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.platform.stopping:  # a connection cut while stopping is expected
            super().handle_error(request, client_address)


# --- the platform ----------------------------------------------------------------------------------


_boto3_session: Any = None
_session_lock = threading.Lock()


def _session() -> Any:
    """One boto3 session per process: it caches the service models, which take most of the time of
    creating a client (SageMaker's alone takes hundreds of milliseconds)."""
    global _boto3_session
    with _session_lock:
        if _boto3_session is None:
            import boto3

            _boto3_session = boto3.session.Session(region_name=REGION, **FAKE_CREDENTIALS)
        return _boto3_session


def _wake_to_stop(server: Any) -> None:
    """Have a socketserver's ``serve_forever`` (moto's werkzeug server polls every 0.5 s) return now:
    its shutdown flag set, then a connection to wake its ``select``; ``shutdown()`` then finds it
    stopped instead of waiting up to half a second. Without the flag (another Python) nothing is done."""
    if not hasattr(server, "_BaseServer__shutdown_request"):
        return
    server._BaseServer__shutdown_request = True
    try:
        socket.create_connection(server.server_address[:2], timeout=1).close()
    except OSError:
        pass  # it stops at its next poll


def _queue_arn(sqs: Any, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


class LocalPlatform:
    """moto + the HTTP front of the real handlers; ``start()``, ``stop()`` or a ``with`` block.

    ``port``: the HTTP port on 127.0.0.1 (0: a free one; see ``port`` after ``start()``). The handler
    modules' runtimes and the process environment are restored on ``stop()``.
    """

    def __init__(self, port: int = DEFAULT_PORT, *, controller: Mapping[str, Any] | None = None,
                 access_log: bool = False) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65_535:
            raise ValueError(f"port must be 0-65535, got {port!r}")
        self.requested_port = port
        self.controller = dict(CONTROLLER_SETTINGS if controller is None else controller)
        self.access_log = access_log
        self.config = rehearsal_config(self.controller)
        self.names = Names.of(self.config)
        self.stopping = False
        self.model = FakeModelRuntime({self.names.endpoint: {variant: f"{ENDPOINT}-{variant}" for variant in VARIANTS}})
        self.vector_store: Any = None
        self.environment: dict[str, str] = {}
        self.resources: dict[str, str] = {}
        self._env = _Environment()
        self._moto: Any = None
        self._http: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self.api_resources: Any = None  # function_settings.ApiResources, once seeded
        self.settings: Any = None  # configs.ApiSettings: each API function's settings model
        self._saved_handlers: list[tuple[Any, Any]] = []  # each handler's lazy runtime and its value before
        self._lock = threading.Lock()  # one request at a time, as in one Lambda execution environment
        self._started = False
        self._werkzeug_level: int | None = None
        self.transaction_backups = TransactionBackups()

    # --- addresses ---
    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("not started")
        return self._http.server_address[1]

    @property
    def address(self) -> tuple[str, int]:
        if self._http is None:
            raise RuntimeError("not started")
        return self._http.server_address[:2]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def moto_address(self) -> tuple[str, int]:
        if self._moto is None:
            raise RuntimeError("not started")
        return self._moto.get_host_and_port()

    @property
    def moto_url(self) -> str:
        host, port = self.moto_address
        return f"http://{host}:{port}"

    # --- lifecycle ---
    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> LocalPlatform:
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        # Loopback never goes through a proxy configured for the machine (boto3 reads HTTP(S)_PROXY).
        existing = os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
        no_proxy = ",".join(filter(None, [existing, HOST, "localhost"]))
        self._env.apply({"NO_PROXY": no_proxy, "no_proxy": no_proxy}, remove=())
        try:
            # Bind the HTTP port first: a port in use fails before anything else starts.
            self._http = _HttpServer(self.requested_port, self, self.access_log)
            self._start_moto()
            self._seed()
            self._configure_handlers()
            self._http_thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="mlops-local-http"
            )
            self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        if not self.transaction_backups.install():
            print("note: moto's DynamoDB transactions will slow down as the tables grow "
                  "(unexpected moto internals)", file=sys.stderr)
        # Werkzeug (moto's server) logs every request at INFO: keep its level while running.
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)

        self._moto = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
        self._moto.start()

    def client(self, service: str) -> Any:
        """A boto3 client of the moto server (fake credentials), closed on ``stop()``."""
        if service not in self._clients:
            from botocore.config import Config

            self._clients[service] = _session().client(
                service, endpoint_url=self.moto_url, **FAKE_CREDENTIALS,
                config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2,
                              read_timeout=10),
            )
        return self._clients[service]

    def stop(self) -> None:
        """Stop both servers, close every connection and client, put the handlers' runtimes and the
        environment back. Safe to call twice."""
        self.stopping = True
        http, self._http = self._http, None
        if http is not None:
            if self._http_thread is not None:
                http.shutdown()  # serve_forever returns
                self._http_thread.join()
                self._http_thread = None
            http.cut_connections()
            http.server_close()  # closes the port, joins the request threads
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._clients.clear()
        self._restore_handlers()
        self._env.restore()
        moto, self._moto = self._moto, None
        if moto is not None:
            if moto._server is not None:  # noqa: SLF001 - moto keeps the server private
                host, port = moto.get_host_and_port()
                self._reset_moto(f"http://{host}:{port}")
                _wake_to_stop(moto._server)  # noqa: SLF001
            moto.stop()
            server = getattr(moto, "_server", None)
            if server is not None:
                server.server_close()  # ThreadedMotoServer.stop() leaves the port open
        self.transaction_backups.uninstall()
        if self._werkzeug_level is not None:
            import logging

            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
            self._werkzeug_level = None

    @staticmethod
    def _reset_moto(url: str) -> None:
        """Empty moto's backends (they are global to the process) so nothing leaks past this run."""
        request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"",
                                         headers={"Connection": "close"})
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=5) as answer:
                answer.read()
        except OSError:
            pass

    # --- seeding ---
    def _seed(self) -> None:
        names = self.names
        ddb = self.client("dynamodb")
        tables = (
            (names.predictions_table, [("inference_id", "HASH")], "expires_at"),
            (names.statistics_table, [("experiment", "HASH"), ("round_arm_hour", "RANGE")], None),
            (names.state_table, [("experiment", "HASH")], None),
            (names.feedback_table, [("feedback_id", "HASH")], "expires_at"),
        )
        for table, keys, ttl in tables:
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
                BillingMode="PAY_PER_REQUEST",
            )
            if ttl:
                ddb.update_time_to_live(TableName=table,
                                        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})

        sqs = self.client("sqs")
        parked = sqs.create_queue(QueueName=names.parking_queue)["QueueUrl"]
        parked_arn = _queue_arn(sqs, parked)
        queue_url = sqs.create_queue(QueueName=names.dead_letter_queue, Attributes={
            "VisibilityTimeout": "360",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": parked_arn, "maxReceiveCount": 5}),
        })["QueueUrl"]

        s3 = self.client("s3")
        s3.create_bucket(Bucket=names.feedback_bucket,
                         CreateBucketConfiguration={"LocationConstraint": REGION})
        self.client("firehose").create_delivery_stream(
            DeliveryStreamName=names.ground_truth_stream,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-ground-truth-delivery",
                "BucketARN": f"arn:aws:s3:::{names.feedback_bucket}",
                "Prefix": names.ground_truth_prefix,
                "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
                "CompressionFormat": "UNCOMPRESSED",
            },
        )

        sns = self.client("sns")
        topic_arn = sns.create_topic(Name=names.topic)["TopicArn"]
        inbox = sqs.create_queue(QueueName=names.notifications_queue)["QueueUrl"]
        inbox_arn = _queue_arn(sqs, inbox)
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn,
                      Attributes={"RawMessageDelivery": "true"})

        sm = self.client("sagemaker")
        sm.create_model_package_group(ModelPackageGroupName=names.model_package_group,
                                      ModelPackageGroupDescription="local rehearsal")
        image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PREFIX}-churn:1"
        packages = {}
        for variant in VARIANTS:
            packages[variant] = sm.create_model_package(
                ModelPackageGroupName=names.model_package_group,
                ModelPackageDescription=f"{variant} of the local rehearsal",
                ModelApprovalStatus="Approved",
                InferenceSpecification={"Containers": [{"Image": image}],
                                        "SupportedContentTypes": ["application/json", "text/csv"],
                                        "SupportedResponseMIMETypes": ["application/json"]},
            )["ModelPackageArn"]
            sm.create_model(
                ModelName=f"{ENDPOINT}-{variant}",
                ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-sagemaker-execution",
                PrimaryContainer={"Image": image},
                Tags=[{"Key": "mlops:model-package-arn", "Value": packages[variant]}],
            )
        (endpoint,) = self.config.serving.endpoints  # the deployer's variants: the config's instances
        sm.create_endpoint_config(EndpointConfigName=names.endpoint_config, ProductionVariants=[
            {"VariantName": variant, "ModelName": f"{ENDPOINT}-{variant}",
             "InitialInstanceCount": endpoint.variant.initial_instance_count,
             "InstanceType": endpoint.variant.instance_type, "InitialVariantWeight": INITIAL_WEIGHTS[variant]}
            for variant in VARIANTS
        ])
        sm.create_endpoint(EndpointName=names.endpoint, EndpointConfigName=names.endpoint_config)

        self.resources = {
            "dead_letter_queue_url": queue_url,
            "parking_queue_url": parked,
            "notifications_queue_url": inbox,
            "topic_arn": topic_arn,
            **{f"model_package_{variant}": arn for variant, arn in packages.items()},
        }
        # the subject-hash key, read by the handlers with Powertools parameters as deployed
        secret_arn = self.client("secretsmanager").create_secret(
            Name=names.subject_hash_secret, SecretString=names.subject_hash_key)["ARN"]
        from mlops_platform.local.configs import api_settings

        self.api_resources = api_resources(names, queue_url, topic_arn, secret_arn)
        self.settings = api_settings(self.config, self.api_resources)
        self.environment = function_environment(self.moto_url)
        self._env.apply(self.environment)

    # --- the handlers ---
    def _configure_handlers(self) -> None:
        """The real handlers over the real adapters, each given its settings and its own moto client."""
        from mlops_runtime.adapters.embedders import embedder_for
        from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
        from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore
        from mlops_runtime.adapters.ground_truth import FirehoseGroundTruthWriter, SqsDeadLetterQueue
        from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
        from mlops_runtime.adapters.secrets import subject_hash_key
        from mlops_runtime.adapters.vector_store import InMemoryVectorStore
        from mlops_runtime.domain.feedback import RetryBudget
        from mlops_runtime.handlers import experiment_controller, feedback_api, inference_api, search_api
        from mlops_runtime.search.indexing import index_lines

        self._saved_handlers = [(lazy, lazy.current) for lazy in (
            inference_api.runtime, feedback_api.runtime, search_api.runtime, *experiment_controller.lazies)]
        names = self.names
        ddb = self.client("dynamodb")
        # inference API: built from its settings, as deployed; the model container is faked
        inference = inference_api.runtime_from_settings(self.settings.inference, self.client("secretsmanager"))
        inference_api.configure(dataclasses.replace(
            inference,
            store=DynamoDBExperimentsStore(names.predictions_table, names.statistics_table, names.state_table,
                                           ddb),
            model=self.model,
            endpoints=Boto3EndpointControl(self.client("sagemaker")),
        ))
        # feedback API: Runtime.from_env's adapters, with the moto clients
        settings = self.settings.feedback.limits(
            subject_hash_key(self.settings.feedback.subject_hash_secret, self.client("secretsmanager")))
        budget = RetryBudget(time.monotonic)
        feedback_api.configure(feedback_api.Runtime(
            settings=settings,
            store=DynamoDBFeedbackStore(settings.predictions_table, settings.feedback_table,
                                        settings.statistics_table, ddb, budget=budget),
            ground_truth=FirehoseGroundTruthWriter(settings.ground_truth_stream, self.client("firehose"),
                                                   budget=budget),
            dead_letters=SqsDeadLetterQueue(settings.dead_letter_queue_url, self.client("sqs")),
            budget=budget,
        ))
        # controller: its settings, adapters over moto
        experiment_controller.configure(
            store=DynamoDBExperimentsStore(None, names.statistics_table, names.state_table, ddb),
            endpoints=Boto3EndpointControl(self.client("sagemaker")),
            sns=self.client("sns"),
            events=self.client("events"),  # the decision's hand-over to the deployer (none runs locally)
            settings=self.settings.controller,
        )
        # search API: its settings; a store of this run's own, seeded here
        indexes = search_settings().indexes
        self.vector_store = InMemoryVectorStore({name: s.distance for name, s in indexes.items()})
        search = search_api.Runtime(settings=indexes, store_factory=lambda _settings: self.vector_store)
        report = index_lines(document_lines(), indexes[SEARCH_INDEX], embedder_for(indexes[SEARCH_INDEX]),
                             self.vector_store)
        if report.rejected:
            raise RuntimeError(f"seed documents rejected: {report.errors}")
        search_api.configure(search)

    def _restore_handlers(self) -> None:
        for lazy, value in reversed(self._saved_handlers):
            lazy.set(value)
        self._saved_handlers.clear()

    # --- requests ---
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        """The WSGI application: one HTTP request -> the route's handler -> its proxy response."""
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES  # API Gateway's payload limit
        try:
            route, parameters = URL_MAP.bind_to_environ(environ).match()
            body = request.get_data()
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(set(error.valid_methods or ()) - {"HEAD"}))
            status, headers, payload = _json_answer(
                405, {"error": "method_not_allowed", "message": f"use {allowed}"}, [("Allow", allowed)])
        except NotFound:
            status, headers, payload = _json_answer(
                404, {"error": "not_found", "message": f"no route {request.method} {request.path}"})
        except HTTPException as error:  # 413 (body over the limit), 400 (a malformed request)
            status, headers, payload = _json_answer(error.code or 400, {"message": error.description})
        else:
            with self._lock:
                status, headers, payload = self._call(
                    route, request.path, parameters, list(request.headers.items()),
                    request.query_string.decode("latin-1"), body, request.remote_addr or HOST)
        response = Response(payload, status=status, headers=headers)
        if self.stopping:
            response.headers["Connection"] = "close"
        return response(environ, start_response)

    def _call(self, route: ApiRoute | LocalRoute, path: str, parameters: dict[str, str],
              headers: Sequence[tuple[str, str]], query: str, body: bytes, source_ip: str) -> Answer:
        if route.function == "info":
            return _json_answer(200, self.info())
        if route.function == "notifications":
            return _json_answer(200, {"messages": self.notifications()})
        if route.function == "controller":
            return self._run_controller(parameters["endpoint"])
        handler = self._handler(route.function)
        event = proxy_event(route.method, path, route.path, parameters, headers, query, body, source_ip)
        try:
            result = handler(event, LambdaContext(f"{PREFIX}-{route.function}-api"))
        except Exception:  # a crashed function: API Gateway answers 502
            traceback.print_exc()
            return _json_answer(502, {"message": "Internal server error"})
        return proxy_response(result)

    @staticmethod
    def _handler(function: str) -> Callable[[dict[str, Any], Any], Any]:
        """The function's handler, as api_routes.HANDLERS names it for the stack."""
        module, name = HANDLERS[function].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)

    def _run_controller(self, endpoint: str) -> Answer:
        from mlops_runtime.handlers import experiment_controller

        if endpoint not in self.settings.controller.experiments:
            return _json_answer(404, {"error": "unknown_endpoint",
                                      "message": f"no endpoint named {endpoint!r}"})
        from mlops_runtime.handlers import inference_api

        try:
            result = experiment_controller.handler({"experiment": endpoint},
                                                   LambdaContext(f"{PREFIX}-experiment-controller", 60_000))
        except Exception as error:  # the scheduled Lambda would fail and be retried
            traceback.print_exc()
            return _json_answer(500, {"status": "failed", "reason": repr(error)})
        # Deployed, the controller runs every 15 minutes or more and the API keeps weights for 30 s, so
        # nearly all traffic of a period sees the period's weights. The demo compresses a period into a
        # few seconds: expire the API's weight cache here to keep that proportion.
        inference_api.runtime().weights_cache.clear()
        return _json_answer(200, result)

    def info(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "moto_url": self.moto_url,
            "endpoint": ENDPOINT,
            "sagemaker_endpoint": self.names.endpoint,
            "variants": list(VARIANTS),
            "search_index": SEARCH_INDEX,
            "documents": len(DOCUMENTS),
            "controller": self.controller,
            "routes": [f"{method} {path}" for method, path in route_table()],
        }

    def notifications(self) -> list[dict[str, Any]]:
        """Drains the SNS topic's subscribed queue: the controller's winner (and error) messages."""
        sqs = self.client("sqs")
        queue = self.resources["notifications_queue_url"]
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                        WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                try:
                    messages.append(json.loads(message["Body"]))
                except ValueError:
                    messages.append({"raw": message["Body"]})
            sqs.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])


# --- command line ----------------------------------------------------------------------------------


def _port_from_env() -> int:
    raw = os.environ.get("PORT", "")
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"PORT must be a number, got {raw!r}") from None


def banner(platform: LocalPlatform) -> str:
    routes = "\n".join(f"  {method:4} {path}" for method, path in route_table())
    return (
        "MLOps platform, local rehearsal (moto; nothing reaches AWS)\n"
        f"base url: {platform.base_url}\n"
        f"endpoint: {ENDPOINT}\n"
        f"search index: {SEARCH_INDEX}\n"
        f"moto: {platform.moto_url}\n"
        f"routes:\n{routes}\n"
        f"try: curl -s -X POST -H 'Content-Type: application/json' -H 'X-Subject-Id: customer-1' "
        f"-d '{{\"instances\": [[41, 3.5, 1]]}}' {platform.base_url}/v1/endpoints/{ENDPOINT}/invocations -i\n"
        "Ctrl-C stops."
    )


class _WithoutEmf(io.TextIOBase):
    """stdout without the handlers' CloudWatch EMF documents (one JSON line per request)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if not line.startswith(EMF_PREFIX):
                self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_platform.local.server",
                                     description="The platform's API on 127.0.0.1, AWS in moto.")
    parser.add_argument("--port", type=int, default=None,
                        help=f"HTTP port on {HOST} (default: $PORT or {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--access-log", action="store_true", help="print one line per request on stderr")
    parser.add_argument("--emf", action="store_true",
                        help="keep the handlers' EMF metric documents on stdout")
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else _port_from_env()
    # Powertools warns once when a controller run adds no metric (as in Lambda's log): noise here.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    stdout = sys.stdout
    if not args.emf:
        sys.stdout = _WithoutEmf(stdout)
    try:
        return _serve(port, args.access_log)
    finally:
        sys.stdout = stdout


def _serve(port: int, access_log: bool) -> int:
    """Run until SIGINT or SIGTERM; both stop the servers cleanly (exit code 0)."""
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    platform = LocalPlatform(port, access_log=access_log)
    try:
        try:
            platform.start()
        except OSError as error:
            print(f"cannot start on {HOST}:{port}: {error}", file=sys.stderr)
            return 2
        print(banner(platform), flush=True)
        while not stop.wait(0.2):
            pass
        print("stopping...", flush=True)
    finally:
        platform.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
