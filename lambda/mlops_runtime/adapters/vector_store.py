"""Vector stores of the semantic-search indexes.

:class:`VectorStore` (``index`` is the logical index name, the key of the search settings' ``indexes``):

- ``upsert(index, [(key, vector, metadata), ...])`` writes (replaces) vectors by key;
- ``delete(index, keys)``; deleting a missing key is not an error;
- ``get(index, keys) -> {key: metadata}`` for the keys that exist;
- ``query(index, vector, top_k, filter) -> [(key, distance, metadata)]``, nearest first. ``filter`` is
  the canonical filter of ``domain.search.parse_filter``: ``{key: value}`` (equality; a list-valued
  metadata matches when any element does) or ``{key: {"$in": [values]}}``, keys ANDed.

Implementations:

- :class:`S3VectorsStore`: Amazon S3 Vectors (boto3 ``s3vectors``): ``PutVectors`` (at most 500 vectors
  and ~16 MiB a call), ``DeleteVectors`` (500 keys), ``GetVectors`` (100 keys, ``returnMetadata``),
  ``QueryVectors`` (``topK``, ``filter``, ``returnMetadata``, ``returnDistance``).
- :class:`InMemoryVectorStore`: exact brute force (cosine or euclidean), thread-safe; tests and local runs.
- :class:`OpenSearchServerlessStore`: an OpenSearch Serverless collection over HTTPS with only botocore
  (SigV4, service ``aoss``) and urllib3: ``_bulk``, ``_mget`` / ``_search``, and the k-NN query.

Throttling and transient failures are retried with bounded full-jitter back-off
(``adapters.retrying.Retrying``), then :class:`VectorStoreThrottled` / :class:`VectorStoreUnavailable`;
anything else is :class:`VectorStoreError`. boto3 and urllib3 are imported on first use.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_runtime.adapters.aws_errors import error_code_or_name, error_text
from mlops_runtime.adapters.retrying import Retrying
from mlops_runtime.domain.chunking import chunk_key, split_chunk_key
from mlops_runtime.domain.search import IndexSettings, filter_document, metadata_matches

VectorRecord = tuple[str, Sequence[float], Mapping[str, Any]]
Hit = tuple[str, float, dict[str, Any]]
Operation = tuple[dict[str, Any], dict[str, Any] | None]  # an OpenSearch _bulk action and its source

S3VECTORS_PUT_BATCH = 500
S3VECTORS_DELETE_BATCH = 500
S3VECTORS_GET_BATCH = 100
S3VECTORS_MAX_REQUEST_BYTES = 16 * 1024 * 1024  # the service takes 20 MiB: keep a margin for JSON overhead
OPENSEARCH_BULK_DOCUMENTS = 250
OPENSEARCH_MAX_BULK_BYTES = 8 * 1024 * 1024
OPENSEARCH_LOOKUP_BATCH = 100
OPENSEARCH_MAX_RESULT_WINDOW = 10_000

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
    }
)
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "SlowDown"})


class VectorStoreError(Exception):
    """A store call failed for good (refused, misconfigured, unexpected answer)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class VectorStoreThrottled(VectorStoreError):
    """Still throttled after the retries."""


class VectorStoreUnavailable(VectorStoreError):
    """Still failing (5xx, timeouts, connections) after the retries."""


class VectorStore(Protocol):
    def upsert(self, index: str, vectors: Sequence[VectorRecord]) -> None: ...

    def delete(self, index: str, keys: Sequence[str]) -> None: ...

    def get(self, index: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def query(
        self, index: str, vector: Sequence[float], top_k: int, filter: Mapping[str, Any] | None = None
    ) -> list[Hit]: ...


def _copy(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, list) else value for key, value in metadata.items()}


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- in memory ----------------------------------------------------------------------------------


class InMemoryVectorStore:
    """Exact nearest neighbours by brute force; indexes are created on first write.

    ``distances``: metric per index (``cosine`` when not given). Cosine vectors are kept normalised and
    compared by Euclidean distance (``1 - cos = |a - b|^2 / 2`` for unit vectors), which ``math.dist``
    computes in C. Every index keeps the dimension of its first vector; another is refused.
    """

    def __init__(self, distances: Mapping[str, str] | None = None) -> None:
        self._lock = threading.RLock()
        self._distances = dict(distances or {})
        self._vectors: dict[str, dict[str, tuple[tuple[float, ...], dict[str, Any]]]] = {}
        self._dimensions: dict[str, int] = {}
        self.calls: dict[str, int] = {"upsert": 0, "delete": 0, "get": 0, "query": 0}

    def set_distance(self, index: str, distance: str) -> None:
        with self._lock:
            self._distances[index] = distance

    def _metric(self, index: str) -> str:
        return self._distances.get(index, "cosine")

    def _prepare(self, index: str, vector: Sequence[float], dimension: int) -> tuple[float, ...]:
        values = tuple(map(float, vector))
        if len(values) != dimension:
            raise VectorStoreError(f"vector of {len(values)} dimensions; index {index!r} has {dimension}",
                                   "ValidationException")
        if not all(map(math.isfinite, values)):
            raise VectorStoreError("vector with a non-finite value", "ValidationException")
        if self._metric(index) == "cosine":
            norm = math.hypot(*values)
            if norm == 0.0:
                raise VectorStoreError("a zero vector has no cosine distance", "ValidationException")
            scale = 1.0 / norm
            values = tuple([v * scale for v in values])
        return values

    def upsert(self, index: str, vectors: Sequence[VectorRecord]) -> None:
        with self._lock:
            self.calls["upsert"] += 1
            if not vectors:
                return
            dimension = self._dimensions.get(index, len(vectors[0][1]))
            prepared = [(key, self._prepare(index, vector, dimension), _copy(metadata))
                        for key, vector, metadata in vectors]
            self._dimensions[index] = dimension
            store = self._vectors.setdefault(index, {})
            for key, values, metadata in prepared:
                store[key] = (values, metadata)

    def delete(self, index: str, keys: Sequence[str]) -> None:
        with self._lock:
            self.calls["delete"] += 1
            store = self._vectors.get(index, {})
            for key in keys:
                store.pop(key, None)

    def get(self, index: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            self.calls["get"] += 1
            store = self._vectors.get(index, {})
            return {key: _copy(store[key][1]) for key in keys if key in store}

    def query(
        self, index: str, vector: Sequence[float], top_k: int, filter: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        with self._lock:
            self.calls["query"] += 1
            store = self._vectors.get(index)
            if not store:
                return []
            query = self._prepare(index, vector, self._dimensions[index])
            cosine = self._metric(index) == "cosine"
            dist = math.dist
            candidates = (
                (dist(query, values), key, metadata)
                for key, (values, metadata) in store.items()
                if not filter or metadata_matches(metadata, filter)
            )
            nearest = heapq.nsmallest(top_k, candidates, key=lambda item: (item[0], item[1]))
            return [
                (key, (distance * distance / 2.0 if cosine else distance), _copy(metadata))
                for distance, key, metadata in nearest
            ]

    # --- inspection (tests, local runs) ---
    def keys(self, index: str) -> list[str]:
        with self._lock:
            return sorted(self._vectors.get(index, {}))

    def vector(self, index: str, key: str) -> tuple[float, ...]:
        with self._lock:
            return self._vectors[index][key][0]


# --- S3 Vectors ---------------------------------------------------------------------------------


def _retryable(error: Exception) -> tuple[bool, bool]:
    """(retry?, throttling?) for an exception of a botocore call."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        code = error_code_or_name(error)
        status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        throttled = code in THROTTLING_CODES or status == 429
        return throttled or code in RETRYABLE_CODES or (isinstance(status, int) and status >= 500), throttled
    return isinstance(error, BotoCoreError), False


@dataclass(frozen=True)
class S3VectorsLocation:
    vector_bucket: str
    index: str


class S3VectorsStore(Retrying):
    """Amazon S3 Vectors; ``locations`` maps a logical index name to its vector bucket and index."""

    def __init__(
        self,
        locations: Mapping[str, S3VectorsLocation],
        client: Any | None = None,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
        read_timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        super().__init__(client, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay,
                         sleep=sleep, jitter=jitter, budget=budget)
        self.locations = dict(locations)
        self.read_timeout = read_timeout

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3vectors",
                config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2,
                              read_timeout=self.read_timeout),
            )
        return self._client

    def _where(self, index: str) -> dict[str, str]:
        location = self.locations.get(index)
        if location is None:
            raise VectorStoreError(f"no S3 Vectors index configured for {index!r}")
        return {"vectorBucketName": location.vector_bucket, "indexName": location.index}

    def _call(self, operation: str, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        last: Exception | None = None
        throttled = False
        for attempt in range(self._max_attempts):
            try:
                return getattr(self.client, operation)(**request)
            except Exception as error:
                retry, throttled = _retryable(error)
                if not retry:
                    if isinstance(error, ClientError):
                        raise VectorStoreError(f"S3 Vectors {operation} failed: {error_text(error)}",
                                               error_code_or_name(error)) from error
                    raise
                last = error
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                break
        assert last is not None
        kind = VectorStoreThrottled if throttled else VectorStoreUnavailable
        raise kind(f"S3 Vectors {operation} failed after retries: {error_text(last)}",
                   error_code_or_name(last)) from last

    def upsert(self, index: str, vectors: Sequence[VectorRecord]) -> None:
        where = self._where(index)
        batch: list[dict[str, Any]] = []
        size = 0
        for key, vector, metadata in vectors:
            item = {"key": key, "data": {"float32": [float(v) for v in vector]}, "metadata": dict(metadata)}
            # JSON size estimate: ~20 bytes per float, the metadata, some framing.
            item_size = 20 * len(item["data"]["float32"]) + len(json.dumps(item["metadata"])) + len(key) + 64
            full = len(batch) == S3VECTORS_PUT_BATCH or size + item_size > S3VECTORS_MAX_REQUEST_BYTES
            if batch and full:
                self._call("put_vectors", **where, vectors=batch)
                batch, size = [], 0
            batch.append(item)
            size += item_size
        if batch:
            self._call("put_vectors", **where, vectors=batch)

    def delete(self, index: str, keys: Sequence[str]) -> None:
        where = self._where(index)
        for batch in _chunks(list(keys), S3VECTORS_DELETE_BATCH):
            self._call("delete_vectors", **where, keys=list(batch))

    def get(self, index: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        where = self._where(index)
        found: dict[str, dict[str, Any]] = {}
        for batch in _chunks(list(dict.fromkeys(keys)), S3VECTORS_GET_BATCH):
            response = self._call("get_vectors", **where, keys=list(batch), returnData=False,
                                  returnMetadata=True)
            for vector in response.get("vectors", []) or []:
                found[vector["key"]] = dict(vector.get("metadata") or {})
        return found

    def query(
        self, index: str, vector: Sequence[float], top_k: int, filter: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        request: dict[str, Any] = {
            **self._where(index),
            "topK": top_k,
            "queryVector": {"float32": [float(v) for v in vector]},
            "returnMetadata": True,
            "returnDistance": True,
        }
        document = filter_document(filter)
        if document is not None:
            request["filter"] = document
        response = self._call("query_vectors", **request)
        hits = [
            (item["key"], float(item.get("distance", 0.0)), dict(item.get("metadata") or {}))
            for item in response.get("vectors", []) or []
        ]
        return sorted(hits, key=lambda hit: (hit[1], hit[0]))


# --- OpenSearch Serverless ----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenSearchLocation:
    endpoint: str  # https://<collection id>.<region>.aoss.amazonaws.com
    index: str
    region: str
    distance: str = "cosine"
    # "field": VECTORSEARCH collections (server-generated _id); "document_id": _id = the chunk key
    id_mode: str = "field"


def opensearch_distance(score: float, metric: str) -> float:
    """The distance behind a k-NN ``_score``: cosinesimil ``(2 - d) / 2``, l2 ``1 / (1 + d^2)``."""
    if metric == "cosine":
        return max(0.0, 2.0 - 2.0 * score)
    return math.sqrt(max(0.0, 1.0 / score - 1.0)) if score > 0 else math.inf


def opensearch_filter(filter_: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A canonical filter as an OpenSearch ``bool`` filter of ``term`` / ``terms`` clauses."""
    if not filter_:
        return None
    clauses = [
        {"terms": {key: list(value["$in"])}} if isinstance(value, dict) else {"term": {key: value}}
        for key, value in filter_.items()
    ]
    return {"bool": {"filter": clauses}}


class OpenSearchServerlessStore(Retrying):
    """An OpenSearch Serverless k-NN index; each chunk is a document ``{"vector": [...], **metadata}``.

    VECTORSEARCH collections assign document ids themselves (a write naming ``_id`` is refused), so in
    ``field`` mode (the default) a chunk is found by its ``doc_id`` and ``chunk`` fields: a lookup is a
    ``_search`` on them, an upsert indexes the new document and deletes the ids found before, in one
    ``_bulk``. ``document_id`` mode (SEARCH collections, domains) uses ``_id = key`` and ``_mget``.
    Collections refresh every ~60 s, so a document written in field mode is found by lookups (and
    searches) only after that: re-indexing the same document twice within a minute can leave a stale
    copy, which searches de-duplicate by key and the next re-index removes.
    """

    def __init__(
        self,
        locations: Mapping[str, OpenSearchLocation],
        *,
        credentials: Any = None,
        http: Any = None,
        max_attempts: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        super().__init__(http, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay,
                         sleep=sleep, jitter=jitter, budget=budget)
        self.locations = dict(locations)
        self._credentials = credentials
        self.timeout = timeout

    @property
    def http(self) -> Any:
        if self._client is None:
            import urllib3

            self._client = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=2.0, read=self.timeout), retries=False, maxsize=4
            )
        return self._client

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session

            credentials = botocore.session.get_session().get_credentials()
            if credentials is None:
                raise VectorStoreError("no AWS credentials to sign OpenSearch requests with")
            self._credentials = credentials
        get = getattr(self._credentials, "get_frozen_credentials", None)
        return get() if callable(get) else self._credentials

    def _location(self, index: str) -> OpenSearchLocation:
        location = self.locations.get(index)
        if location is None:
            raise VectorStoreError(f"no OpenSearch index configured for {index!r}")
        return location

    def _signed_headers(
        self, method: str, url: str, body: bytes, region: str, content_type: str
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(
            method=method,
            url=url,
            data=body,
            headers={"Content-Type": content_type, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()},
        )
        SigV4Auth(self._frozen_credentials(), "aoss", region).add_auth(request)
        return dict(request.headers.items())

    def _request(
        self,
        location: OpenSearchLocation,
        method: str,
        path: str,
        payload: Any = None,
        *,
        ndjson: bytes | None = None,
    ) -> Any:
        """One signed request, retried on 429, 5xx and connection errors; the decoded JSON answer."""
        url = f"{location.endpoint}{path}"
        if ndjson is not None:
            body, content_type = ndjson, "application/x-ndjson"
        else:
            body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode("utf-8")
            content_type = "application/json"
        last = ""
        throttled = False
        for attempt in range(self._max_attempts):
            try:
                headers = self._signed_headers(method, url, body, location.region, content_type)
                response = self.http.request(method, url, body=body or None, headers=headers)
            except VectorStoreError:
                raise
            except Exception as error:  # urllib3 connection errors and timeouts
                last, throttled = f"{type(error).__name__}: {error}", False
            else:
                status = response.status
                text = response.data.decode("utf-8", "replace")
                if status < 300:
                    try:
                        return json.loads(text) if text else {}
                    except ValueError as error:
                        raise VectorStoreError(
                            f"OpenSearch answered {method} {path} with non-JSON"
                        ) from error
                if status != 429 and status < 500:
                    raise VectorStoreError(f"OpenSearch {method} {path} failed: HTTP {status}: {text[:300]}",
                                           str(status))
                last, throttled = f"HTTP {status}: {text[:300]}", status == 429
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                break
        kind = VectorStoreThrottled if throttled else VectorStoreUnavailable
        raise kind(f"OpenSearch {method} {path} failed after retries: {last}", "429" if throttled else None)

    def _bulk(self, location: OpenSearchLocation, operations: list[Operation]) -> None:
        """Send ``(action, source)`` pairs in ``_bulk`` requests; item failures are retried, then raised."""
        pending = operations
        for attempt in range(self._max_attempts):
            failed: list[Operation] = []
            reasons: list[str] = []
            retryable_only = True
            for batch in self._bulk_batches(pending):
                lines = []
                for action, source in batch:
                    lines.append(json.dumps(action, separators=(",", ":")))
                    if source is not None:
                        lines.append(json.dumps(source, separators=(",", ":")))
                body = ("\n".join(lines) + "\n").encode("utf-8")
                answer = self._request(location, "POST", "/_bulk", ndjson=body)
                if not answer.get("errors"):
                    continue
                for operation, item in zip(batch, answer.get("items", []), strict=False):
                    result = next(iter(item.values()), {}) if isinstance(item, dict) else {}
                    status = result.get("status", 500)
                    if status < 300 or (status == 404 and "delete" in operation[0]):
                        continue
                    failed.append(operation)
                    reasons.append(f"HTTP {status}: {json.dumps(result.get('error'))[:200]}")
                    retryable_only = retryable_only and (status == 429 or status >= 500)
            if not failed:
                return
            if not retryable_only:
                raise VectorStoreError(f"OpenSearch _bulk refused {len(failed)} operation(s): {reasons[0]}")
            pending = failed
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                break
        raise VectorStoreUnavailable(
            f"OpenSearch _bulk still failing for {len(pending)} operation(s) after retries"
        )

    @staticmethod
    def _bulk_batches(operations: list[Operation]) -> Iterable[list[Operation]]:
        batch: list[Operation] = []
        size = 0
        for operation in operations:
            operation_size = 64 + (len(json.dumps(operation[1])) if operation[1] is not None else 0)
            too_big = size + operation_size > OPENSEARCH_MAX_BULK_BYTES
            if batch and (len(batch) == OPENSEARCH_BULK_DOCUMENTS or too_big):
                yield batch
                batch, size = [], 0
            batch.append(operation)
            size += operation_size
        if batch:
            yield batch

    def _lookup(
        self, location: OpenSearchLocation, keys: Sequence[str]
    ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Field mode: ``key -> [(_id, source without the vector)]`` for the keys found."""
        wanted = set(keys)
        found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for batch in _chunks(sorted(wanted), OPENSEARCH_LOOKUP_BATCH):
            pairs = [split_chunk_key(key) for key in batch]
            body = {
                "size": OPENSEARCH_MAX_RESULT_WINDOW,
                "query": {"bool": {"filter": [
                    {"terms": {"doc_id": sorted({doc for doc, _ in pairs})}},
                    {"terms": {"chunk": sorted({number for _, number in pairs})}},
                ]}},
                "_source": {"excludes": ["vector"]},
            }
            answer = self._request(location, "POST", f"/{location.index}/_search", body)
            for hit in answer.get("hits", {}).get("hits", []):
                source = hit.get("_source") or {}
                if isinstance(source.get("doc_id"), str) and isinstance(source.get("chunk"), int):
                    key = chunk_key(source["doc_id"], source["chunk"])
                    if key in wanted:
                        found.setdefault(key, []).append((hit["_id"], source))
        return found

    def upsert(self, index: str, vectors: Sequence[VectorRecord]) -> None:
        location = self._location(index)
        documents = [
            (key, {"vector": [float(v) for v in vector], **metadata}) for key, vector, metadata in vectors
        ]
        if location.id_mode == "document_id":
            self._bulk(location, [({"index": {"_index": location.index, "_id": key}}, source)
                                  for key, source in documents])
            return
        previous = self._lookup(location, [key for key, _ in documents])
        operations: list[Operation] = [
            ({"index": {"_index": location.index}}, source) for _, source in documents
        ]
        operations += [
            ({"delete": {"_index": location.index, "_id": document_id}}, None)
            for key, _ in documents for document_id, _ in previous.get(key, [])
        ]
        self._bulk(location, operations)

    def delete(self, index: str, keys: Sequence[str]) -> None:
        location = self._location(index)
        if location.id_mode == "document_id":
            ids = list(keys)
        else:
            ids = [document_id for found in self._lookup(location, keys).values() for document_id, _ in found]
        if ids:
            self._bulk(location, [({"delete": {"_index": location.index, "_id": i}}, None) for i in ids])

    def get(self, index: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        location = self._location(index)
        if location.id_mode == "field":
            return {key: dict(found[0][1]) for key, found in self._lookup(location, keys).items()}
        result: dict[str, dict[str, Any]] = {}
        for batch in _chunks(list(dict.fromkeys(keys)), OPENSEARCH_LOOKUP_BATCH):
            answer = self._request(location, "POST", f"/{location.index}/_mget?_source_excludes=vector",
                                   {"ids": list(batch)})
            for document in answer.get("docs", []):
                if document.get("found"):
                    result[document["_id"]] = dict(document.get("_source") or {})
        return result

    def query(
        self, index: str, vector: Sequence[float], top_k: int, filter: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        location = self._location(index)
        knn: dict[str, Any] = {"vector": [float(v) for v in vector], "k": top_k}
        clause = opensearch_filter(filter)
        if clause is not None:
            knn["filter"] = clause
        body = {"size": top_k, "query": {"knn": {"vector": knn}}, "_source": {"excludes": ["vector"]}}
        answer = self._request(location, "POST", f"/{location.index}/_search", body)
        hits: dict[str, Hit] = {}
        for hit in answer.get("hits", {}).get("hits", []):
            source = dict(hit.get("_source") or {})
            if isinstance(source.get("doc_id"), str) and isinstance(source.get("chunk"), int):
                key = chunk_key(source["doc_id"], source["chunk"])
            else:
                key = str(hit.get("_id"))
            distance = opensearch_distance(float(hit.get("_score") or 0.0), location.distance)
            if key not in hits or distance < hits[key][1]:  # stale duplicates (field mode): keep the nearest
                hits[key] = (key, distance, source)
        return sorted(hits.values(), key=lambda hit: (hit[1], hit[0]))[:top_k]


# --- construction from settings -----------------------------------------------------------------

_shared_memory_store: InMemoryVectorStore | None = None
_shared_lock = threading.Lock()


def shared_memory_store() -> InMemoryVectorStore:
    """One in-memory store per process, shared by every ``memory`` index (indexer and API in a local run)."""
    global _shared_memory_store
    with _shared_lock:
        if _shared_memory_store is None:
            _shared_memory_store = InMemoryVectorStore()
        return _shared_memory_store


def store_for(settings: IndexSettings, **options: Any) -> VectorStore:
    """The store of an index, from its settings; ``options`` go to the AWS stores (``client``/``http``,
    ``max_attempts``, ``sleep``, ...)."""
    config = settings.store
    if config.kind == "s3vectors":
        assert config.vector_bucket and config.index
        location = S3VectorsLocation(config.vector_bucket, config.index)
        return S3VectorsStore({settings.name: location}, **options)
    if config.kind == "opensearch":
        assert config.endpoint and config.index and config.region
        found = OpenSearchLocation(config.endpoint, config.index, config.region, settings.distance,
                                   config.id_mode)
        return OpenSearchServerlessStore({settings.name: found}, **options)
    store = shared_memory_store()
    store.set_distance(settings.name, settings.distance)
    return store
