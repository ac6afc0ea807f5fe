"""The search API handler: contract, validation errors, backend failures, Bedrock/S3 Vectors wiring
(Stubbers), and a fuzz of malformed bodies (always 4xx, never 5xx)."""

from __future__ import annotations

import io
import json
import random

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlops_runtime.settings_env import SETTINGS_ENV
from mlops_runtime.adapters.embedders import (
    BedrockEmbedder,
    DeterministicEmbedder,
    EmbedderThrottled,
    EmbedderUnavailable,
    EmbeddingDimensionError,
)
from mlops_runtime.adapters.vector_store import (
    InMemoryVectorStore,
    S3VectorsStore,
    VectorStoreError,
    VectorStoreThrottled,
)
from mlops_runtime.domain.search import parse_index
from mlops_runtime.handlers import search_api
from mlops_runtime.search.indexing import index_lines
from lambda_context import LambdaContext
from search_fixtures import DIMENSION, REGION, api_event, corpus, index_settings

QUERY_CANARY = "zebra-canary-7731"


def build_runtime(store=None, embedder=None, **settings_overrides):
    docs = index_settings(**settings_overrides)
    euclid = index_settings("euclid", distance="euclidean")
    store = store if store is not None else InMemoryVectorStore({"euclid": "euclidean"})
    embedder = embedder or DeterministicEmbedder(DIMENSION)
    lines = [json.dumps(d) for d in corpus(60, words=20)]
    index_lines(lines, docs, embedder, store)
    index_lines(lines[:10], euclid, embedder, store)
    return search_api.Runtime({"docs": docs, "euclid": euclid}, embedder_factory=lambda s: embedder,
                              store_factory=lambda s: store)


@pytest.fixture
def api():
    runtime = build_runtime()
    search_api.configure(runtime)
    yield runtime
    search_api.configure(None)


def call(body, *, raw=False, **options):
    text = body if raw else json.dumps(body)
    response = search_api.handler(api_event(text, **options), LambdaContext())
    return response["statusCode"], json.loads(response["body"]), response.get("multiValueHeaders") or {}


def header(headers, name):
    values = headers.get(name) or []
    return values[0] if values else None


# --- the contract -------------------------------------------------------------------------------


def test_search_returns_ranked_chunks(api):
    status, body, headers = call({"query": "cat kitten purr whiskers"})
    assert status == 200
    assert body["index"] == "docs" and isinstance(body["took_ms"], float)
    results = body["results"]
    assert len(results) == 10  # default top_k
    assert set(results[0]) == {"id", "chunk", "score", "distance", "metadata", "text"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(r["score"] == pytest.approx(1 - r["distance"]) for r in results)
    assert results[0]["metadata"]["category"] == "cats"
    assert set(results[0]["metadata"]) == {"category", "language"}  # internal keys removed
    assert results[0]["text"] and results[0]["id"].startswith("doc-")
    assert header(headers, "Cache-Control") == "no-store"


def test_top_k_and_filters(api):
    status, body, _ = call({"query": "rocket", "top_k": 3, "filter": {"category": "cooking", "language": {"$in": ["fr"]}}})
    assert status == 200 and len(body["results"]) == 3
    assert all(r["metadata"] == {"category": "cooking", "language": "fr"} for r in body["results"])
    status, body, _ = call({"query": "rocket", "top_k": 50, "filter": {"category": "nothing-like-this"}})
    assert (status, body["results"]) == (200, [])


def test_euclidean_scores_are_distances(api):
    _, body, _ = call({"query": "dog puppy"}, index="euclid")
    assert body["index"] == "euclid"
    assert all(r["score"] == r["distance"] for r in body["results"])
    assert [r["distance"] for r in body["results"]] == sorted(r["distance"] for r in body["results"])


def test_base64_bodies_are_accepted(api):
    response = search_api.handler(api_event(json.dumps({"query": "cat"}).encode()), LambdaContext())
    assert response["statusCode"] == 200


def test_the_query_is_not_logged(api, caplog, capsys):
    caplog.set_level("DEBUG")
    call({"query": f"cat {QUERY_CANARY}"})
    call({"query": f"cat {QUERY_CANARY}", "top_k": 0})
    assert [r.getMessage() for r in caplog.records] == ["Searched"]
    assert caplog.records[0].results == 10 and caplog.records[0].query_chars == len(QUERY_CANARY) + 4
    assert not any(QUERY_CANARY in repr(vars(record)) for record in caplog.records)
    output = capsys.readouterr()
    assert QUERY_CANARY not in output.out + output.err
    assert '"SearchRequests"' in output.out


# --- errors -------------------------------------------------------------------------------------


def test_unknown_index_is_404(api):
    status, body, _ = call({"query": "cat"}, index="nope")
    assert (status, body["error"], body["field"]) == (404, "unknown_index", "index")


@pytest.mark.parametrize(
    ("body", "raw", "field"),
    [
        (None, True, ""),
        ("", True, ""),
        ("{not json", True, ""),
        ("[1, 2]", True, ""),
        ('{"query": NaN}', True, ""),
        ({}, False, "query"),
        ({"query": ""}, False, "query"),
        ({"query": "q" * 2001}, False, "query"),
        ({"query": "cat", "top_k": 51}, False, "top_k"),
        ({"query": "cat", "top_k": "3"}, False, "top_k"),
        ({"query": "cat", "filter": {"colour": "red"}}, False, "filter.colour"),
        ({"query": "cat", "filter": {"category": {"$gt": 1}}}, False, "filter.category"),
        ({"query": "cat", "filter": {"category": {"$in": []}}}, False, "filter.category.$in"),
        ({"query": "cat", "extra": 1}, False, "extra"),
    ],
)
def test_invalid_bodies_are_400_with_the_field(api, body, raw, field):
    status, answer, _ = call(body, raw=raw)
    assert (status, answer["error"], answer["field"]) == (400, "invalid_request", field)
    assert answer["message"]


def test_lone_surrogates_in_the_query_are_400(api):
    status, body, _ = call('{"query": "cat \\ud800"}', raw=True)
    assert (status, body["field"]) == (400, "query")


def test_body_encoding_errors(api):
    response = search_api.handler(api_event("%%%not-base64", base64_encoded=True), LambdaContext())
    assert response["statusCode"] == 400 and "base64" in json.loads(response["body"])["message"]
    response = search_api.handler(api_event(b'{"query": "\xff"}'), LambdaContext())
    assert response["statusCode"] == 400 and "UTF-8" in json.loads(response["body"])["message"]
    big = json.dumps({"query": "x", "filter": {"category": "y" * 70_000}})
    status, answer, _ = call(big, raw=True)
    assert (status, answer["error"]) == (413, "body_too_large")
    response = search_api.handler(api_event(big.encode()), LambdaContext())
    assert response["statusCode"] == 413


def test_other_routes_and_methods_are_404(api):
    response = search_api.handler(api_event("{}", path="/v1/other"), LambdaContext())
    assert response["statusCode"] == 404
    response = search_api.handler(api_event(None, method="GET"), LambdaContext())
    assert response["statusCode"] in (404, 405)


class Failing:
    dimension = DIMENSION

    def __init__(self, error):
        self.error = error

    def embed(self, texts):
        raise self.error

    def query(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize(
    ("embedder_error", "store_error", "status", "code", "retry_after"),
    [
        (EmbedderThrottled("throttled"), None, 429, "throttled", "1"),
        (EmbedderUnavailable("down"), None, 503, "unavailable", "5"),
        (EmbeddingDimensionError("3 dimensions; the index has 64"), None, 503, "unavailable", "5"),
        (None, VectorStoreThrottled("slow down"), 429, "throttled", "1"),
        (None, VectorStoreError("AccessDenied"), 503, "unavailable", "5"),
    ],
)
def test_backend_failures(api, embedder_error, store_error, status, code, retry_after):
    if embedder_error:
        api.embedders["docs"] = Failing(embedder_error)
    if store_error:
        api.stores["docs"] = Failing(store_error)
    got, body, headers = call({"query": "cat"})
    assert (got, body["error"], header(headers, "Retry-After")) == (status, code, retry_after)


def test_misconfiguration_is_a_logged_500(monkeypatch, caplog):
    search_api.configure(None)
    monkeypatch.setenv(SETTINGS_ENV, '{"indexes": {"docs": {"dimension": 0}}}')
    status, body, _ = call({"query": "cat"})
    assert (status, body["error"]) == (500, "internal_error")
    (record,) = caplog.records
    assert (record.levelname, record.getMessage(), record.field) == (
        "ERROR", "Search function is misconfigured", "MLOPS_SETTINGS.indexes.docs.store")
    search_api.configure(None)


def test_runtime_from_the_environment_builds_adapters_per_index(monkeypatch):
    search_api.configure(None)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"indexes": {
        "docs": {"dimension": 1024, "store": {"kind": "s3vectors", "vector_bucket": "vb-1", "index": "docs"},
                 "embedder": {"kind": "bedrock", "model_id": "cohere.embed-english-v3", "batch_size": 8}}}}))
    runtime = search_api.runtime()
    embedder = runtime.embedder("docs")
    assert isinstance(embedder, BedrockEmbedder) and embedder.input_type == "search_query"
    assert embedder._max_attempts == 3 and embedder._client is None  # no client until the first call
    store = runtime.store("docs")
    assert isinstance(store, S3VectorsStore) and store._max_attempts == 3
    assert runtime.store("docs") is store
    search_api.configure(None)


# --- wiring to Bedrock and S3 Vectors (Stubbers) ------------------------------------------------


def test_cohere_query_embedding_and_s3_vectors_query_are_wired():
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    bedrock = boto3.client("bedrock-runtime", region_name=REGION, config=config)
    s3vectors = boto3.client("s3vectors", region_name=REGION, config=config)
    settings_ = parse_index("docs", {
        "dimension": 1024, "filterable": ["category"],  # Cohere Embed v3's only size
        "store": {"kind": "s3vectors", "vector_bucket": "vb-1", "index": "docs-idx"},
        "embedder": {"kind": "bedrock", "model_id": "cohere.embed-english-v3"}, "max_top_k": 30})
    vector = [round(0.001 * i, 3) for i in range(1024)]

    def embedder_factory(s):
        embedder = search_api._query_embedder(s)
        embedder._client = bedrock
        return embedder

    def store_factory(s):
        store = search_api._store(s)
        store._client = s3vectors
        return store

    search_api.configure(search_api.Runtime({"docs": settings_}, embedder_factory=embedder_factory,
                                            store_factory=store_factory))
    answer = json.dumps({"embeddings": [vector]}).encode()
    with Stubber(bedrock) as bedrock_stub, Stubber(s3vectors) as s3v_stub:
        bedrock_stub.add_response(
            "invoke_model", {"body": StreamingBody(io.BytesIO(answer), len(answer)), "contentType": "application/json"},
            {"modelId": "cohere.embed-english-v3", "contentType": "application/json", "accept": "application/json",
             "body": json.dumps({"texts": ["red shoes"], "input_type": "search_query",
                                 "truncate": "END"}).encode()})
        s3v_stub.add_response(
            "query_vectors",
            {"vectors": [{"key": "p1#0000", "distance": 0.125,
                          "metadata": {"doc_id": "p1", "chunk": 0, "chunk_count": 1, "text": "Red shoes",
                                       "category": "shoes"}}], "distanceMetric": "cosine"},
            {"vectorBucketName": "vb-1", "indexName": "docs-idx", "topK": 30, "queryVector": {"float32": vector},
             "filter": {"category": "shoes"}, "returnMetadata": True, "returnDistance": True})
        status, body, _ = call({"query": "red shoes", "top_k": 30, "filter": {"category": "shoes"}})
    search_api.configure(None)
    assert status == 200
    assert body["results"] == [{"id": "p1", "chunk": 0, "score": 0.875, "distance": 0.125,
                                "metadata": {"category": "shoes"}, "text": "Red shoes"}]


# --- fuzz ---------------------------------------------------------------------------------------

FIELD_NAMES = ["query", "top_k", "filter", "Query", "topk", "filters", "", "q"]


def _scalar(rnd: random.Random):
    return rnd.choice([None, True, False, 0, -1, 51, 10**20, 1.5, float("nan"), "", " ", "x" * rnd.randint(0, 3000),
                       "cat", "é漢字", [], {}, [1], {"$in": []}])


def _malformed(rnd: random.Random) -> tuple[str | bytes, int]:
    """A body that is certainly invalid (bytes: sent base64-encoded), and its kind."""
    kind = rnd.randrange(9)
    if kind == 0:  # not JSON
        return rnd.choice(["", "{", "}", "nul", "{'query': 'x'}", "query=cat", "\x00", '{"query": "x",}']), kind
    if kind == 1:  # JSON but not an object
        return json.dumps(rnd.choice([[], [{"query": "cat"}], "cat", 5, None, True])), kind
    if kind == 2:  # missing or bad query
        body = {"query": rnd.choice([None, 5, "", "   ", "q" * 2001, ["cat"], {"q": 1}])}
        if body["query"] is None:
            del body["query"]
        return json.dumps(body), kind
    if kind == 3:  # bad top_k
        return json.dumps({"query": "cat", "top_k": rnd.choice([0, -3, 51, 10**9, 2.5, "5", True, None, [5]])
                           if rnd.random() < 0.9 else "ten"}).replace('"top_k": null', '"top_k": "x"'), kind
    if kind == 4:  # bad filter
        bad = rnd.choice([
            [], "category", 5, {"colour": "red"}, {"category": None}, {"category": [1]}, {"category": {"$in": []}},
            {"category": {"$in": "cats"}}, {"category": {"$nin": ["a"]}}, {"category": {"$in": [{"a": 1}]}},
            {"category": "x" * 300}, {"text": "a"}, {f"k{i}": 1 for i in range(rnd.randint(11, 15))},
        ])
        return json.dumps({"query": "cat", "filter": bad}), kind
    if kind == 5:  # unknown fields
        return json.dumps({"query": "cat", rnd.choice(FIELD_NAMES[3:]) or "zz": _scalar(rnd)}), kind
    if kind == 6:  # random bytes, base64
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 64))) + b"\xff", kind
    if kind == 7:  # deep nesting
        depth = rnd.randint(50, 5000)
        return '{"query": "cat", "filter": ' + "[" * depth + "]" * depth + "}", kind
    # NaN / Infinity, or a huge body
    return rnd.choice(['{"query": "cat", "top_k": NaN}', '{"query": Infinity}',
                       json.dumps({"query": "cat", "filter": {"category": "y" * 70_000}})]), kind


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_fuzz_malformed_bodies_are_always_4xx(api, rnd):
    body, _ = _malformed(rnd)
    event = api_event(body)  # bytes are sent base64-encoded
    response = search_api.handler(event, LambdaContext())
    assert response["statusCode"] in (400, 413), (body[:200], response["body"][:300])
    answer = json.loads(response["body"])
    assert set(answer) == {"error", "message", "field"}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES + ["category", "$in"]),
                                                                inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_fuzz_any_json_never_gets_a_5xx(api, value):
    response = search_api.handler(api_event(json.dumps(value)), LambdaContext())
    assert response["statusCode"] in (200, 400, 413)
    if response["statusCode"] == 200:
        assert isinstance(value, dict) and isinstance(value.get("query"), str)
