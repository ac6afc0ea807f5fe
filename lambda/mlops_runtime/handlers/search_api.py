"""Lambda: the search API, ``POST /v1/search/{index}`` (API Gateway REST API, Lambda proxy integration).

Body ``{"query": str, "top_k"?: int, "filter"?: {key: value | {"$in": [values]}}}``. The query is
embedded (Cohere: ``input_type`` ``search_query``), the index's store returns the ``top_k`` nearest
chunks, and the answer is 200 ``{"index", "results": [{"id", "chunk", "score", "distance",
"metadata", "text"}], "took_ms"}``. Contract and examples: ``docs/search.md``.

Errors, always ``{"error", "message", "field"}`` (``field`` may be empty):

- 404 ``unknown_index`` (or ``not_found`` for another route);
- 400 ``invalid_request`` (empty body, not base64/UTF-8/JSON, not an object, a bad field); 413
  ``body_too_large`` (over 64 KiB). Bad input never gets a 5xx;
- 429 ``throttled`` with ``Retry-After``: the embedder (or the store) is throttling after retries;
- 503 ``unavailable`` with ``Retry-After``: the embedder or the store failed after retries;
- 500 ``internal_error``: the function is misconfigured or hit a bug (logged).

AWS calls per request: one embedding call (InvokeModel or InvokeEndpoint) and one query (QueryVectors,
or one k-NN ``_search``). The query text is never logged. Settings: ``domain.search.SearchSettings``
(parsed by hand: this handler loads no pydantic), read on the first request. Tracing is opt-in
(``adapters.tracing.OPT_IN``): ``POWERTOOLS_TRACE_DISABLED=false`` creates an X-Ray Tracer on the
first request.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.embedders import Embedder, EmbedderError, EmbedderThrottled, embedder_for
from mlops_runtime.adapters.tracing import OPT_IN, entry_point, powertools
from mlops_runtime.adapters.vector_store import VectorStore, VectorStoreError, VectorStoreThrottled, store_for
from mlops_runtime.domain.search import (
    MAX_REQUEST_BYTES,
    ConfigurationError,
    IndexSettings,
    InvalidRequest,
    loads_strict,
    SearchSettings,
    parse_search_request,
    shape_results,
)
from mlops_runtime.lazy import Lazy
from mlops_runtime.search.adapter_cache import IndexAdapterCache

ROUTE = "/v1/search/<index>"
THROTTLED_RETRY_AFTER = "1"
UNAVAILABLE_RETRY_AFTER = "5"
# Short retries: the caller is waiting (API Gateway's integration timeout is 29 s).
EMBEDDER_OPTIONS = {"max_attempts": 3, "base_delay": 0.05, "max_delay": 0.5, "read_timeout": 10.0}
STORE_OPTIONS = {"max_attempts": 3, "base_delay": 0.05, "max_delay": 0.5}

logger, metrics = powertools()
# debug=False: POWERTOOLS_EVENT_HANDLER_DEBUG would otherwise print whole events (query included).
app = APIGatewayRestResolver(debug=False)


def _query_embedder(settings: IndexSettings) -> Embedder:
    options = {} if settings.embedder.kind == "deterministic" else EMBEDDER_OPTIONS
    return embedder_for(settings, input_type="search_query", **options)


def _store(settings: IndexSettings) -> VectorStore:
    if settings.store.kind == "memory":
        return store_for(settings)
    options = dict(STORE_OPTIONS)
    if settings.store.kind == "s3vectors":
        options["read_timeout"] = 10.0
    else:
        options["timeout"] = 10.0
    return store_for(settings, **options)


@dataclass
class Runtime(IndexAdapterCache):
    """Settings and adapters (built per index on first use), kept for the execution environment."""

    settings: dict[str, IndexSettings]
    embedder_factory: Callable[[IndexSettings], Embedder] = _query_embedder
    store_factory: Callable[[IndexSettings], VectorStore] = _store
    embedders: dict[str, Embedder] = field(default_factory=dict)
    stores: dict[str, VectorStore] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        return cls(SETTINGS_MODEL.from_env(environ).indexes)


SETTINGS_MODEL = SearchSettings
runtime = Lazy(Runtime.from_env)
configure = runtime.set  # tests, local runs; None: rebuild from the environment on next use


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload),
                    headers={"Cache-Control": "no-store", **(headers or {})})


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _body() -> Any:
    """The decoded JSON body; ApiError 400/413 otherwise."""
    event = app.current_event
    raw = event.body
    if raw is None or raw == "":
        raise ApiError(400, "invalid_request", "the body is empty: send {\"query\": ...}")
    if event.is_base64_encoded:
        if len(raw) > MAX_REQUEST_BYTES * 4 // 3 + 4:
            raise ApiError(413, "body_too_large", f"the body exceeds {MAX_REQUEST_BYTES} bytes")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            message = "the body is marked base64 but is not valid base64"
            raise ApiError(400, "invalid_request", message) from error
    else:
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_REQUEST_BYTES:
        raise ApiError(413, "body_too_large", f"the body exceeds {MAX_REQUEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, "invalid_request", "the body is not UTF-8") from error
    try:
        return loads_strict(text)
    except ValueError as error:
        raise ApiError(400, "invalid_request", f"the body is not JSON: {error}") from error


@app.post(ROUTE)
def search(index: str):  # no return annotation: Powertools would try to build a response model from it
    rt = runtime()
    started = rt.clock()
    settings = rt.settings.get(index)
    if settings is None:
        raise ApiError(404, "unknown_index", f"no search index named {index[:100]!r}", "index")
    try:
        request = parse_search_request(_body(), settings)
    except InvalidRequest as invalid:
        status = 413 if invalid.too_large else 400
        raise ApiError(status, "invalid_request", invalid.reason, invalid.field) from invalid
    try:
        (vector,) = rt.embedder(index).embed([request.query])
        hits = rt.store(index).query(index, vector, request.top_k, request.filter)
    except (EmbedderThrottled, VectorStoreThrottled) as error:
        _count("SearchThrottled")
        logger.warning("Search throttled", extra={"index": index, "reason": str(error)})
        raise ApiError(429, "throttled", "the search backend is throttling requests; retry later", "",
                       {"Retry-After": THROTTLED_RETRY_AFTER}) from error
    except (EmbedderError, VectorStoreError) as error:
        _count("SearchFailures")
        logger.error("Search backend failed", extra={"index": index, "error": type(error).__name__,
                                                      "reason": str(error)})
        raise ApiError(503, "unavailable", "the search backend is unavailable; retry later", "",
                       {"Retry-After": UNAVAILABLE_RETRY_AFTER}) from error
    results = shape_results(hits, settings.distance)
    took_ms = round((rt.clock() - started) * 1000.0, 1)
    logger.info("Searched", extra={"index": index, "top_k": request.top_k, "results": len(results),
                                   "filtered": request.filter is not None, "query_chars": len(request.query),
                                   "took_ms": took_ms})
    return _json(200, {"index": index, "results": results, "took_ms": took_ms})


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response:
    if 400 <= error.status < 500 and error.status != 429:
        _count("SearchRejected")
    return _json(error.status, {"error": error.code, "message": error.message, "field": error.field},
                 error.headers or None)


@app.not_found
def _not_found(_: Exception) -> Response:
    _count("SearchRejected")
    message = "no such route: POST /v1/search/{index}"
    return _json(404, {"error": "not_found", "message": message, "field": "path"})


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    if isinstance(error, ServiceError) and error.status_code < 500:
        _count("SearchRejected")
        return _json(error.status_code, {"error": "invalid_request", "message": str(error.msg), "field": ""})
    if isinstance(error, ConfigurationError):
        logger.error("Search function is misconfigured", extra={"field": error.field, "reason": error.reason})
    else:
        logger.exception("Unexpected error")
    _count("SearchFailures")
    return _json(500, {"error": "internal_error", "message": "internal error", "field": ""})


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _count("SearchRequests")
    return app.resolve(event, context)


# log_event=False: POWERTOOLS_LOGGER_LOG_EVENT must not make the logger print events (queries, caller IP).
handler = entry_point(_handler, logger, metrics, tracing=OPT_IN,
                      correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
