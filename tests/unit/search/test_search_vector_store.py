"""Vector stores: in memory (exact), S3 Vectors on moto (+ a Stubber for QueryVectors, which moto 5.2.5
does not implement), OpenSearch Serverless against a fake HTTP server on 127.0.0.1 (signed requests)."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.stub import Stubber
from mlops_runtime.adapters import vector_store as vs
from mlops_runtime.adapters.vector_store import (
    InMemoryVectorStore,
    OpenSearchLocation,
    OpenSearchServerlessStore,
    S3VectorsLocation,
    S3VectorsStore,
    VectorStoreError,
    VectorStoreThrottled,
    VectorStoreUnavailable,
    opensearch_distance,
    store_for,
)
from moto import mock_aws
from search_fixtures import REGION, index_settings, no_sleep

BUCKET = "test-vectors"


def random_vectors(count: int, dimension: int, seed: int = 1) -> list[list[float]]:
    rnd = random.Random(seed)
    return [[rnd.gauss(0, 1) for _ in range(dimension)] for _ in range(count)]


# --- in memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_in_memory_query_is_exact(metric):
    store = InMemoryVectorStore({"docs": metric})
    vectors = random_vectors(300, 16)
    store.upsert("docs", [(f"k{i:03d}", v, {"i": i}) for i, v in enumerate(vectors)])
    data = np.array(vectors)
    for query in random_vectors(10, 16, seed=2):
        q = np.array(query)
        if metric == "cosine":
            truth = 1 - data @ q / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))
        else:
            truth = np.linalg.norm(data - q, axis=1)
        expected = [f"k{i:03d}" for i in np.argsort(truth, kind="stable")[:10]]
        hits = store.query("docs", query, 10)
        assert [key for key, _, _ in hits] == expected
        for key, distance, metadata in hits:
            assert distance == pytest.approx(truth[metadata["i"]], abs=1e-9)


def test_in_memory_upsert_replaces_get_and_delete():
    store = InMemoryVectorStore()
    store.upsert("docs", [("a", [1, 0], {"v": 1, "tags": ["x"]}), ("b", [0, 1], {"v": 1})])
    store.upsert("docs", [("a", [1, 1], {"v": 2})])
    found = store.get("docs", ["a", "missing"])
    assert found == {"a": {"v": 2}}
    found["a"]["v"] = 99  # a copy
    assert store.get("docs", ["a"]) == {"a": {"v": 2}}
    store.delete("docs", ["a", "never-there"])
    assert store.keys("docs") == ["b"]
    assert store.get("other", ["a"]) == {} and store.query("other", [1, 0], 3) == []


def test_in_memory_filters_and_top_k():
    store = InMemoryVectorStore()
    store.upsert("docs", [
        ("a", [1, 0], {"category": "x", "tags": ["p", "q"]}),
        ("b", [0.9, 0.1], {"category": "y", "tags": ["q"]}),
        ("c", [0, 1], {"category": "x"}),
    ])
    assert [k for k, _, _ in store.query("docs", [1, 0], 10)] == ["a", "b", "c"]
    assert [k for k, _, _ in store.query("docs", [1, 0], 10, {"category": "x"})] == ["a", "c"]
    assert [k for k, _, _ in store.query("docs", [1, 0], 10, {"tags": "q"})] == ["a", "b"]
    assert [k for k, _, _ in store.query("docs", [1, 0], 10, {"category": {"$in": ["y", "z"]}})] == ["b"]
    assert [k for k, _, _ in store.query("docs", [1, 0], 1)] == ["a"]


def test_in_memory_ties_are_broken_by_key():
    store = InMemoryVectorStore()
    store.upsert("docs", [(k, [1, 0], {}) for k in ("c", "a", "b")])
    assert [k for k, _, _ in store.query("docs", [1, 0], 3)] == ["a", "b", "c"]


def test_in_memory_refuses_bad_vectors():
    store = InMemoryVectorStore()
    store.upsert("docs", [("a", [1, 0, 0], {})])
    with pytest.raises(VectorStoreError, match="dimensions"):
        store.upsert("docs", [("b", [1, 0], {})])
    with pytest.raises(VectorStoreError, match="zero vector"):
        store.upsert("docs", [("b", [0, 0, 0], {})])
    with pytest.raises(VectorStoreError, match="non-finite"):
        store.upsert("docs", [("b", [float("nan"), 0, 0], {})])
    assert store.keys("docs") == ["a"]  # a refused batch writes nothing
    fresh = InMemoryVectorStore()
    with pytest.raises(VectorStoreError, match="dimensions"):
        fresh.upsert("docs", [("a", [1, 0, 0], {}), ("b", [1, 0], {})])
    fresh.upsert("docs", [("c", [1, 0], {})])  # the refused batch fixed no dimension
    assert fresh.keys("docs") == ["c"]


def test_in_memory_is_thread_safe():
    store = InMemoryVectorStore()
    errors = []

    def writer(offset):
        try:
            for i in range(200):
                store.upsert("docs", [(f"w{offset}-{i}", [1.0, i + 1.0], {"i": i})])
                store.query("docs", [1.0, 0.5], 5)
                if i % 3 == 0:
                    store.delete("docs", [f"w{offset}-{i}"])
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.keys("docs")) == 6 * (200 - 67)


def test_store_for_memory_is_shared_and_sets_the_metric():
    euclidean = store_for(index_settings("euc", distance="euclidean"))
    assert euclidean is store_for(index_settings("other"))
    euclidean.upsert("euc", [("a", [3, 4], {})])
    assert euclidean.query("euc", [0, 0], 1)[0][1] == pytest.approx(5.0)
    euclidean.delete("euc", ["a"])


# --- S3 Vectors on moto -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3v_account():
    with mock_aws():
        client = boto3.client("s3vectors", region_name=REGION,
                              config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        client.create_vector_bucket(vectorBucketName=BUCKET)
        yield client


@pytest.fixture
def s3v(s3v_account):
    """A fresh index in the module's moto account (starting moto costs ~0.3 s), its store, and the calls made."""
    client = s3v_account
    client.create_index(vectorBucketName=BUCKET, indexName="docs-index", dataType="float32", dimension=8,
                        distanceMetric="cosine",
                        metadataConfiguration={"nonFilterableMetadataKeys": ["text", "chunk_count"]})
    calls: list[tuple[str, int]] = []

    def record(params, model, **_):
        size = len(params.get("vectors", params.get("keys", [])) or [])
        calls.append((model.name, size))

    client.meta.events.register("provide-client-params.s3vectors", record)
    store = S3VectorsStore({"docs": S3VectorsLocation(BUCKET, "docs-index")}, client=client, sleep=no_sleep)
    yield store, client, calls
    client.meta.events.unregister("provide-client-params.s3vectors", record)
    client.delete_index(vectorBucketName=BUCKET, indexName="docs-index")


def test_s3_vectors_round_trip_on_moto(s3v):
    store, _, calls = s3v
    metadata = {"doc_id": "a", "chunk": 0, "chunk_count": 1, "text": "hello", "tags": ["x", "y"], "n": 1.5,
                "ok": True}
    store.upsert("docs", [("a#0000", [0.5] * 8, metadata), ("b#0000", [0.1] * 8, {"doc_id": "b"})])
    assert store.get("docs", ["a#0000", "b#0000", "c#0000"]) == {"a#0000": metadata, "b#0000": {"doc_id": "b"}}
    store.delete("docs", ["a#0000", "c#0000"])
    assert store.get("docs", ["a#0000", "b#0000"]) == {"b#0000": {"doc_id": "b"}}
    assert [name for name, _ in calls] == ["PutVectors", "GetVectors", "DeleteVectors", "GetVectors"]


def test_s3_vectors_batches_puts_gets_and_deletes(s3v):
    store, _, calls = s3v
    keys = [f"d{i}#0000" for i in range(1201)]
    store.upsert("docs", [(key, [1.0] * 8, {"doc_id": key[:-5]}) for key in keys])
    assert calls == [("PutVectors", 500), ("PutVectors", 500), ("PutVectors", 201)]
    calls.clear()
    assert len(store.get("docs", keys[:250] + keys[:10])) == 250  # duplicates asked once
    assert calls == [("GetVectors", 100), ("GetVectors", 100), ("GetVectors", 50)]
    calls.clear()
    store.delete("docs", keys)
    assert calls == [("DeleteVectors", 500), ("DeleteVectors", 500), ("DeleteVectors", 201)]
    assert store.get("docs", keys[:5]) == {}


def test_s3_vectors_batches_by_request_size(s3v, monkeypatch):
    store, _, calls = s3v
    monkeypatch.setattr(vs, "S3VECTORS_MAX_REQUEST_BYTES", 10_000)
    store.upsert("docs", [(f"k{i}", [1.0] * 8, {"text": "x" * 3000}) for i in range(7)])
    assert calls == [("PutVectors", 3), ("PutVectors", 3), ("PutVectors", 1)]


def test_s3_vectors_errors(s3v):
    store, _, _ = s3v
    with pytest.raises(VectorStoreError, match="length 8"):
        store.upsert("docs", [("a", [1.0] * 3, {})])
    with pytest.raises(VectorStoreError, match="no S3 Vectors index"):
        store.get("nope", ["a"])
    missing = S3VectorsStore({"docs": S3VectorsLocation(BUCKET, "no-such-index")}, client=store.client)
    with pytest.raises(VectorStoreError) as caught:
        missing.get("docs", ["a"])
    assert type(caught.value) is VectorStoreError and caught.value.code


def stubbed_s3_vectors(**options):
    client = boto3.client("s3vectors", region_name=REGION,
                          config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    sleeps: list[float] = []
    store = S3VectorsStore({"docs": S3VectorsLocation(BUCKET, "docs-index")}, client=client,
                           sleep=sleeps.append, jitter=lambda: 1.0, **options)
    return store, Stubber(client), sleeps


def test_s3_vectors_query_request_and_answer():
    store, stubber, _ = stubbed_s3_vectors()
    stubber.add_response(
        "query_vectors",
        {"vectors": [
            {"key": "b#0001", "distance": 0.3, "metadata": {"doc_id": "b", "chunk": 1, "text": "bee"}},
            {"key": "a#0000", "distance": 0.1, "metadata": {"doc_id": "a", "chunk": 0, "text": "ay"}},
        ], "distanceMetric": "cosine"},
        {"vectorBucketName": BUCKET, "indexName": "docs-index", "topK": 5, "queryVector": {"float32": [1.0, 0.0]},
         "filter": {"$and": [{"category": "x"}, {"year": {"$in": [2024, 2025]}}]},
         "returnMetadata": True, "returnDistance": True},
    )
    stubber.add_response(
        "query_vectors", {"vectors": [], "distanceMetric": "cosine"},
        {"vectorBucketName": BUCKET, "indexName": "docs-index", "topK": 1, "queryVector": {"float32": [1.0, 0.0]},
         "filter": {"category": "x"}, "returnMetadata": True, "returnDistance": True},
    )
    stubber.add_response(
        "query_vectors", {"vectors": [], "distanceMetric": "cosine"},
        {"vectorBucketName": BUCKET, "indexName": "docs-index", "topK": 1, "queryVector": {"float32": [1.0, 0.0]},
         "returnMetadata": True, "returnDistance": True},
    )
    with stubber:
        hits = store.query("docs", [1, 0], 5, {"category": "x", "year": {"$in": [2024, 2025]}})
        assert hits == [("a#0000", 0.1, {"doc_id": "a", "chunk": 0, "text": "ay"}),
                        ("b#0001", 0.3, {"doc_id": "b", "chunk": 1, "text": "bee"})]
        assert store.query("docs", [1, 0], 1, {"category": "x"}) == []
        assert store.query("docs", [1, 0], 1) == []
    stubber.assert_no_pending_responses()


def test_s3_vectors_retries_throttling_then_gives_up():
    store, stubber, sleeps = stubbed_s3_vectors(max_attempts=3, base_delay=0.1)
    stubber.add_client_error("put_vectors", service_error_code="TooManyRequestsException", http_status_code=429)
    stubber.add_response("put_vectors", {})
    for _ in range(3):
        stubber.add_client_error("query_vectors", service_error_code="ServiceUnavailableException",
                                 http_status_code=503)
    for _ in range(3):
        stubber.add_client_error("get_vectors", service_error_code="ThrottlingException", http_status_code=429)
    stubber.add_client_error("delete_vectors", service_error_code="AccessDeniedException", http_status_code=403)
    with stubber:
        store.upsert("docs", [("a", [1.0, 0.0], {})])
        assert sleeps == [0.1]
        with pytest.raises(VectorStoreUnavailable):
            store.query("docs", [1.0, 0.0], 3)
        with pytest.raises(VectorStoreThrottled):
            store.get("docs", ["a"])
        with pytest.raises(VectorStoreError) as caught:
            store.delete("docs", ["a"])
        assert type(caught.value) is VectorStoreError and caught.value.code == "AccessDeniedException"
    assert sleeps == [0.1, 0.1, 0.2, 0.1, 0.2]


# --- OpenSearch Serverless, against a fake server ----------------------------------------------

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")


class FakeOpenSearch:
    """Records requests; answers with ``route(method, path, body) -> (status, payload)``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.route = lambda method, path, body: (200, {})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, payload = fake.route(self.command, self.path, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = _serve

            def log_message(self, *args):  # quiet
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def json_bodies(self):
        return [json.loads(r["body"]) if r["body"] and not r["path"].startswith("/_bulk") else None
                for r in self.requests]


@pytest.fixture
def fake_os():
    fake = FakeOpenSearch()
    yield fake
    fake.close()


def os_store(fake, *, id_mode="document_id", distance="cosine", **options):
    location = OpenSearchLocation(fake.endpoint, "kb", REGION, distance, id_mode)
    sleeps: list[float] = []
    store = OpenSearchServerlessStore({"kb": location}, credentials=CREDENTIALS, sleep=sleeps.append,
                                      jitter=lambda: 1.0, **options)
    return store, sleeps


def ndjson(body: bytes) -> list[dict]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.decode().splitlines()]


def expected_signature(fake, request) -> str:
    headers = request["headers"]
    aws = AWSRequest(method=request["method"], url=f"{fake.endpoint}{request['path']}", data=request["body"],
                     headers={"Content-Type": headers["content-type"],
                              "X-Amz-Content-SHA256": headers["x-amz-content-sha256"],
                              "X-Amz-Date": headers["x-amz-date"],
                              "X-Amz-Security-Token": headers["x-amz-security-token"]})
    auth = SigV4Auth(CREDENTIALS, "aoss", REGION)
    aws.context["timestamp"] = headers["x-amz-date"]
    return auth.signature(auth.string_to_sign(aws, auth.canonical_request(aws)), aws)


def test_opensearch_requests_are_sigv4_signed_for_aoss(fake_os):
    store, _ = os_store(fake_os)
    fake_os.route = lambda m, p, b: (200, {"errors": False, "items": [{"index": {"status": 201}}]})
    store.upsert("kb", [("a#0000", [0.5, 0.25], {"doc_id": "a", "chunk": 0, "text": "hello"})])
    (request,) = fake_os.requests
    headers = request["headers"]
    assert headers["x-amz-content-sha256"] == hashlib.sha256(request["body"]).hexdigest()
    assert headers["x-amz-security-token"] == "session-token"
    authorization = headers["authorization"]
    date = headers["x-amz-date"][:8]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/{REGION}/aoss/aws4_request, ")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed)
    assert authorization.endswith(f"Signature={expected_signature(fake_os, request)}")


def test_opensearch_document_id_mode_bulk_mget_and_knn_query(fake_os):
    store, _ = os_store(fake_os)

    def route(method, path, body):
        if path == "/_bulk":
            return 200, {"errors": False, "items": []}
        if path.startswith("/kb/_mget"):
            return 200, {"docs": [{"_id": "a#0000", "found": True, "_source": {"doc_id": "a", "chunk": 0}},
                                  {"_id": "z#0000", "found": False}]}
        return 200, {"hits": {"hits": [
            {"_id": "x1", "_score": 0.9, "_source": {"doc_id": "a", "chunk": 0, "text": "t", "category": "c"}},
            {"_id": "x2", "_score": 0.6, "_source": {"doc_id": "b", "chunk": 2, "text": "u"}},
        ]}}

    fake_os.route = route
    store.upsert("kb", [("a#0000", [1, 0], {"doc_id": "a", "chunk": 0}), ("b#0002", [0, 1], {"doc_id": "b", "chunk": 2})])
    store.delete("kb", ["a#0000"])
    assert store.get("kb", ["a#0000", "z#0000"]) == {"a#0000": {"doc_id": "a", "chunk": 0}}
    hits = store.query("kb", [1, 0], 2, {"category": "c", "year": {"$in": [1, 2]}})
    assert [(k, round(d, 6)) for k, d, _ in hits] == [("a#0000", 0.2), ("b#0002", 0.8)]
    assert hits[0][2]["category"] == "c"

    bulk, delete, mget, search = fake_os.requests
    assert (bulk["method"], bulk["path"], bulk["headers"]["content-type"]) == ("POST", "/_bulk", "application/x-ndjson")
    assert ndjson(bulk["body"]) == [
        {"index": {"_index": "kb", "_id": "a#0000"}}, {"vector": [1.0, 0.0], "doc_id": "a", "chunk": 0},
        {"index": {"_index": "kb", "_id": "b#0002"}}, {"vector": [0.0, 1.0], "doc_id": "b", "chunk": 2},
    ]
    assert ndjson(delete["body"]) == [{"delete": {"_index": "kb", "_id": "a#0000"}}]
    assert (mget["path"], json.loads(mget["body"])) == ("/kb/_mget?_source_excludes=vector",
                                                        {"ids": ["a#0000", "z#0000"]})
    assert search["path"] == "/kb/_search"
    assert json.loads(search["body"]) == {
        "size": 2,
        "query": {"knn": {"vector": {"vector": [1.0, 0.0], "k": 2, "filter": {"bool": {"filter": [
            {"term": {"category": "c"}}, {"terms": {"year": [1, 2]}}]}}}}},
        "_source": {"excludes": ["vector"]},
    }


def test_opensearch_field_mode_finds_server_ids_by_doc_id_and_chunk(fake_os):
    store, _ = os_store(fake_os, id_mode="field")
    existing = {"hits": {"hits": [
        {"_id": "srv-1", "_score": 0.0, "_source": {"doc_id": "a", "chunk": 0, "chunk_count": 3}},
        {"_id": "srv-2", "_score": 0.0, "_source": {"doc_id": "a", "chunk": 0, "chunk_count": 3}},  # stale copy
        {"_id": "srv-3", "_score": 0.0, "_source": {"doc_id": "b", "chunk": 1}},  # not asked for
    ]}}

    def route(method, path, body):
        if path == "/_bulk":
            return 200, {"errors": False, "items": []}
        return 200, existing

    fake_os.route = route
    assert store.get("kb", ["a#0000", "b#0000"]) == {"a#0000": {"doc_id": "a", "chunk": 0, "chunk_count": 3}}
    store.upsert("kb", [("a#0000", [1, 0], {"doc_id": "a", "chunk": 0, "chunk_count": 1})])
    store.delete("kb", ["a#0000"])
    lookup, lookup2, bulk, lookup3, delete = fake_os.requests
    assert json.loads(lookup["body"])["query"] == {"bool": {"filter": [
        {"terms": {"doc_id": ["a", "b"]}}, {"terms": {"chunk": [0]}}]}}
    assert json.loads(lookup2["body"])["query"] == {"bool": {"filter": [
        {"terms": {"doc_id": ["a"]}}, {"terms": {"chunk": [0]}}]}}
    assert ndjson(bulk["body"]) == [
        {"index": {"_index": "kb"}}, {"vector": [1.0, 0.0], "doc_id": "a", "chunk": 0, "chunk_count": 1},
        {"delete": {"_index": "kb", "_id": "srv-1"}}, {"delete": {"_index": "kb", "_id": "srv-2"}},
    ]
    assert lookup3["path"] == "/kb/_search"
    assert ndjson(delete["body"]) == [{"delete": {"_index": "kb", "_id": "srv-1"}},
                                      {"delete": {"_index": "kb", "_id": "srv-2"}}]


def test_opensearch_query_deduplicates_stale_copies_and_converts_l2_scores(fake_os):
    store, _ = os_store(fake_os, id_mode="field", distance="euclidean")
    fake_os.route = lambda m, p, b: (200, {"hits": {"hits": [
        {"_id": "1", "_score": 0.5, "_source": {"doc_id": "a", "chunk": 0}},
        {"_id": "2", "_score": 0.2, "_source": {"doc_id": "a", "chunk": 0}},
        {"_id": "3", "_score": 0.2, "_source": {"doc_id": "b", "chunk": 0}},
    ]}})
    hits = store.query("kb", [1, 0], 3)
    assert [(k, round(d, 6)) for k, d, _ in hits] == [("a#0000", 1.0), ("b#0000", 2.0)]


def test_opensearch_retries_429_and_5xx_but_not_403(fake_os):
    store, sleeps = os_store(fake_os, max_attempts=3, base_delay=0.1)
    answers = [(429, {"error": "slow down"}), (503, {"error": "busy"}), (200, {"docs": []})]
    fake_os.route = lambda m, p, b: answers.pop(0)
    assert store.get("kb", ["a"]) == {}
    assert sleeps == [0.1, 0.2]
    fake_os.route = lambda m, p, b: (429, {"error": "slow down"})
    with pytest.raises(VectorStoreThrottled):
        store.get("kb", ["a"])
    fake_os.route = lambda m, p, b: (500, b"oops")
    with pytest.raises(VectorStoreUnavailable):
        store.get("kb", ["a"])
    count = len(fake_os.requests)
    fake_os.route = lambda m, p, b: (403, {"message": "User does not have permissions"})
    with pytest.raises(VectorStoreError, match="HTTP 403") as caught:
        store.get("kb", ["a"])
    assert type(caught.value) is VectorStoreError and len(fake_os.requests) == count + 1


def test_opensearch_bulk_item_failures(fake_os):
    store, _ = os_store(fake_os, max_attempts=3)
    answers = [
        (200, {"errors": True, "items": [{"index": {"status": 201}}, {"index": {"status": 429, "error": "busy"}}]}),
        (200, {"errors": False, "items": [{"index": {"status": 201}}]}),
    ]
    fake_os.route = lambda m, p, b: answers.pop(0)
    store.upsert("kb", [("a#0000", [1, 0], {"doc_id": "a"}), ("b#0000", [0, 1], {"doc_id": "b"})])
    assert [line.get("index", {}).get("_id") for line in ndjson(fake_os.requests[-1]["body"])][0] == "b#0000"
    fake_os.route = lambda m, p, b: (200, {"errors": True, "items": [
        {"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}]})
    with pytest.raises(VectorStoreError, match="mapper_parsing_exception"):
        store.upsert("kb", [("a#0000", [1, 0], {"doc_id": "a"})])
    # a delete of a missing document is not a failure
    fake_os.route = lambda m, p, b: (200, {"errors": True, "items": [{"delete": {"status": 404}}]})
    store.delete("kb", ["gone#0000"])


def test_opensearch_connection_errors_are_unavailable():
    location = OpenSearchLocation("http://127.0.0.1:9", "kb", REGION)  # the discard port: refused
    store = OpenSearchServerlessStore({"kb": location}, credentials=CREDENTIALS, sleep=no_sleep, max_attempts=2)
    with pytest.raises(VectorStoreUnavailable):
        store.query("kb", [1.0], 1)


def test_opensearch_distance_conversion():
    assert opensearch_distance(1.0, "cosine") == 0.0
    assert opensearch_distance(0.5, "cosine") == 1.0
    assert opensearch_distance(1.0, "euclidean") == 0.0
    assert opensearch_distance(0.2, "euclidean") == pytest.approx(2.0)


def test_store_for_aws_kinds():
    s3 = store_for(index_settings(store={"kind": "s3vectors", "vector_bucket": "vb-1", "index": "docs-idx"}))
    assert isinstance(s3, S3VectorsStore) and s3.locations == {"docs": S3VectorsLocation("vb-1", "docs-idx")}
    aoss = store_for(index_settings(distance="euclidean", store={
        "kind": "opensearch", "endpoint": "https://abc.eu-west-1.aoss.amazonaws.com", "index": "kb",
        "region": "eu-west-1"}))
    assert isinstance(aoss, OpenSearchServerlessStore)
    assert aoss.locations["docs"] == OpenSearchLocation("https://abc.eu-west-1.aoss.amazonaws.com", "kb",
                                                        "eu-west-1", "euclidean", "field")
