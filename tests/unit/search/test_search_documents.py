"""Pure search domain: settings, document lines, search requests, the filter language, result shaping."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlops_runtime.domain import search as domain
from mlops_runtime.domain.search import (
    ConfigurationError,
    Deletion,
    Document,
    InvalidDocument,
    InvalidRequest,
    bedrock_family,
    filter_document,
    metadata_matches,
    parse_document,
    parse_search_request,
    SearchSettings,
    index_json,
    shape_results,
)
from search_fixtures import index_settings

S3_INDEX = {
    "dimension": 1024,
    "distance": "cosine",
    "filterable": ["category", "language"],
    "store": {"kind": "s3vectors", "vector_bucket": "mlops-dev-vectors", "index": "product-docs"},
    "embedder": {"kind": "bedrock", "model_id": "amazon.titan-embed-text-v2:0", "batch_size": 16},
    "chunk_size": 200,
    "chunk_overlap": 40,
    "max_top_k": 20,
}


# --- settings -----------------------------------------------------------------------------------


def parse_settings(raw):
    """The indexes of settings whose ``indexes`` are ``raw`` (a JSON text is the whole settings)."""
    return SearchSettings.parse(raw if raw is None or isinstance(raw, str) else {"indexes": raw}).indexes


def test_settings_of_every_store_and_embedder_kind():
    raw = {
        "product-docs": S3_INDEX,
        "kb": {
            "dimension": 384,
            "distance": "euclidean",
            "store": {"kind": "opensearch", "endpoint": "https://abc123.eu-west-1.aoss.amazonaws.com/",
                      "index": "kb", "region": "eu-west-1"},
            "embedder": {"kind": "sagemaker", "endpoint": "mlops-dev-embedder", "batch_size": 32},
        },
        "local": {"dimension": 8, "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"}},
    }
    settings = SearchSettings.parse(json.dumps({"indexes": raw}))
    parsed = settings.indexes
    # what the stack writes (the JSON form) reads back as the same settings
    assert SearchSettings.parse(json.loads(next(iter(settings.to_env().values())))) == settings
    assert {name: index_json(index) for name, index in parsed.items()}["local"] == {
        "dimension": 8, "distance": "cosine", "filterable": [], "store": {"kind": "memory"},
        "embedder": {"batch_size": 16, "kind": "deterministic"}, "chunk_size": 200, "chunk_overlap": 40,
        "max_top_k": 20}
    docs = parsed["product-docs"]
    assert (docs.dimension, docs.distance, docs.filterable, docs.chunk_size, docs.chunk_overlap, docs.max_top_k) == (
        1024, "cosine", ("category", "language"), 200, 40, 20)
    assert (docs.store.kind, docs.store.vector_bucket, docs.store.index) == ("s3vectors", "mlops-dev-vectors",
                                                                             "product-docs")
    assert (docs.embedder.kind, docs.embedder.model_id, docs.embedder.batch_size) == (
        "bedrock", "amazon.titan-embed-text-v2:0", 16)
    kb = parsed["kb"]
    assert kb.store.endpoint == "https://abc123.eu-west-1.aoss.amazonaws.com"  # trailing slash dropped
    assert (kb.store.region, kb.store.id_mode, kb.embedder.endpoint, kb.embedder.batch_size) == (
        "eu-west-1", "field", "mlops-dev-embedder", 32)
    local = parsed["local"]
    # defaults
    assert (local.distance, local.filterable, local.chunk_size, local.chunk_overlap, local.max_top_k,
            local.default_top_k) == ("cosine", (), 200, 40, 20, 10)


def test_default_top_k_never_exceeds_max_top_k():
    assert index_settings(max_top_k=3).default_top_k == 3


def _with(path: str, value):
    raw = json.loads(json.dumps(S3_INDEX))
    *parents, last = path.split(".")
    target = raw
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return {"product-docs": raw}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (None, ""),
        ("", ""),
        ("{not json", ""),
        ("[1, 2]", ""),
        ('{"indexes": [1]}', "indexes"),
        ('{"indexes": {}, "report_bucket": ""}', "report_bucket"),
        ('{"indexes": {}, "index": {}}', "index"),
        ({"Bad_Name": S3_INDEX}, "indexes.Bad_Name"),
        ({"docs": []}, "indexes.docs"),
        (_with("dimension", KeyError), "indexes.product-docs.dimension"),
        (_with("dimension", 5000), "indexes.product-docs.dimension"),
        (_with("dimension", 512.0), "indexes.product-docs.dimension"),
        (_with("dimension", 768), "indexes.product-docs.embedder.model_id"),  # Titan v2: 256/512/1024
        (_with("distance", "dot"), "indexes.product-docs.distance"),
        (_with("filterable", ["text"]), "indexes.product-docs.filterable"),
        (_with("filterable", ["a", "a"]), "indexes.product-docs.filterable"),
        (_with("filterable", ["bad key"]), "indexes.product-docs.filterable"),
        (_with("filterable", [f"k{i}" for i in range(11)]), "indexes.product-docs.filterable"),
        (_with("store.kind", "pinecone"), "indexes.product-docs.store.kind"),
        (_with("store.vector_bucket", KeyError), "indexes.product-docs.store.vector_bucket"),
        (_with("store.extra", 1), "indexes.product-docs.store.extra"),
        (_with("embedder.kind", "openai"), "indexes.product-docs.embedder.kind"),
        (_with("embedder.model_id", "anthropic.claude-v2"), "indexes.product-docs.embedder.model_id"),
        (_with("embedder.batch_size", 0), "indexes.product-docs.embedder.batch_size"),
        (_with("chunk_size", 0), "indexes.product-docs.chunk_size"),
        (_with("chunk_overlap", 200), "indexes.product-docs.chunk_overlap"),
        (_with("max_top_k", 101), "indexes.product-docs.max_top_k"),
        (_with("chunk_sise", 10), "indexes.product-docs.chunk_sise"),  # typos are errors
    ],
)
def test_unusable_settings_name_the_field(raw, field):
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(raw)
    assert caught.value.field == field
    assert caught.value.reason


def test_opensearch_settings_need_https_and_a_region():
    base = {"dimension": 8, "embedder": {"kind": "deterministic"}}
    for store, field in [
        ({"kind": "opensearch", "endpoint": "http://x.aoss.amazonaws.com", "index": "i", "region": "eu-west-1"},
         "endpoint"),
        ({"kind": "opensearch", "endpoint": "https://x.aoss.amazonaws.com", "index": "i", "region": "Europe"},
         "region"),
        ({"kind": "opensearch", "endpoint": "https://x.aoss.amazonaws.com", "index": "I", "region": "eu-west-1"},
         "index"),
        ({"kind": "opensearch", "endpoint": "https://x.aoss.amazonaws.com", "index": "i", "region": "eu-west-1",
          "id_mode": "random"}, "id_mode"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            parse_settings({"kb": {**base, "store": store}})
        assert caught.value.field == f"indexes.kb.store.{field}"


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("amazon.titan-embed-text-v2:0", "titan-v2"),
        ("arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0", "titan-v2"),
        ("amazon.titan-embed-text-v1", "titan-v1"),
        ("amazon.titan-embed-g1-text-02", "titan-v1"),
        ("cohere.embed-english-v3", "cohere-v3"),
        ("cohere.embed-multilingual-v3", "cohere-v3"),
        ("eu.cohere.embed-v4:0", "cohere-v4"),
        ("global.cohere.embed-v4:0", "cohere-v4"),
        ("amazon.titan-embed-image-v1", None),
        ("anthropic.claude-3-haiku", None),
    ],
)
def test_bedrock_model_families(model_id, family):
    assert bedrock_family(model_id) == family


# --- documents ----------------------------------------------------------------------------------


def test_document_and_deletion_lines():
    assert parse_document('{"id": "a", "text": "Hello", "metadata": {"category": "x", "n": 2, "ok": true, '
                          '"tags": ["p", "q"], "score": 0.5}}', 1) == Document(
        "a", "Hello", {"category": "x", "n": 2, "ok": True, "tags": ["p", "q"], "score": 0.5})
    assert parse_document(b'{"id": "a", "text": "Hello"}', 1) == Document("a", "Hello", {})
    assert parse_document('{"id": "a", "deleted": true}', 1) == Deletion("a")
    # a deletion needs nothing else; other fields are ignored
    assert parse_document('{"id": "a", "deleted": true, "text": ""}', 1) == Deletion("a")
    assert parse_document('{"id": "a", "deleted": false, "text": "t"}', 1) == Document("a", "t", {})
    assert parse_document("\ufeff" + '{"id": "a", "text": "t"}', 1) == Document("a", "t", {})


@pytest.mark.parametrize("line", ["", "   ", "\t", b"", b"\r"])
def test_blank_lines_are_skipped(line):
    assert parse_document(line, 3) is None


LONG = "x" * (domain.MAX_TEXT_CHARS + 1)


@pytest.mark.parametrize(
    ("line", "field", "document_id", "reason_part"),
    [
        ("not json", "", None, "not valid JSON"),
        ('{"id": "a", "text": "t"', "", None, "not valid JSON"),
        ("[1, 2]", "", None, "JSON object"),
        ('"just a string"', "", None, "JSON object"),
        ('{"id": "a", "text": NaN}', "", None, "NaN"),
        ("[" * 100_000 + "]" * 100_000, "", None, "not valid JSON"),
        ('{"text": "t"}', "id", None, "required"),
        ('{"id": 5, "text": "t"}', "id", None, "string"),
        ('{"id": "", "text": "t"}', "id", None, "1-200"),
        (json.dumps({"id": "x" * 201, "text": "t"}), "id", "x" * 200, "1-200"),
        ('{"id": "a\\nb", "text": "t"}', "id", "a\nb", "printable"),
        ('{"id": " a", "text": "t"}', "id", " a", "whitespace"),
        ('{"id": "a"}', "text", "a", "required"),
        ('{"id": "a", "text": 5}', "text", "a", "string"),
        ('{"id": "a", "text": "  \\n "}', "text", "a", "empty"),
        (json.dumps({"id": "a", "text": LONG}), "text", "a", "at most"),
        ('{"id": "a", "text": "t", "meta": {}}', "meta", "a", "unknown field"),
        ('{"id": "a", "deleted": "yes"}', "deleted", "a", "true or false"),
        ('{"id": "a", "text": "t", "metadata": []}', "metadata", "a", "object"),
        ('{"id": "a", "text": "t", "metadata": null}', "metadata", "a", "object"),
        ('{"id": "a", "text": "t", "metadata": {"nested": {"x": 1}}}', "metadata.nested", "a", "flat"),
        ('{"id": "a", "text": "t", "metadata": {"n": null}}', "metadata.n", "a", "flat"),
        ('{"id": "a", "text": "t", "metadata": {"l": [1, 2]}}', "metadata.l", "a", "strings"),
        ('{"id": "a", "text": "t", "metadata": {"l": []}}', "metadata.l", "a", "1-20"),
        ('{"id": "a", "text": "t", "metadata": {"big": 1e999}}', "metadata.big", "a", "finite"),
        ('{"id": "a", "text": "t", "metadata": {"big": 9007199254740993}}', "metadata.big", "a", "finite"),
        ('{"id": "a", "text": "t", "metadata": {"text": "x"}}', "metadata.text", "a", "reserved"),
        ('{"id": "a", "text": "t", "metadata": {"vector": "x"}}', "metadata.vector", "a", "reserved"),
        ('{"id": "a", "text": "t", "metadata": {"bad key": "x"}}', "metadata.bad key", "a", "keys are"),
        (json.dumps({"id": "a", "text": "t", "metadata": {"s": "y" * 257}}), "metadata.s", "a", "256"),
        (json.dumps({"id": "a", "text": "t", "metadata": {f"k{i}": 1 for i in range(21)}}), "metadata", "a",
         "more than 20"),
        (json.dumps({"id": "a", "text": "t", "metadata": {f"k{i}": "v" * 100 for i in range(12)}}), "metadata",
         "a", "bytes as JSON"),
    ],
)
def test_bad_lines_name_line_field_and_id(line, field, document_id, reason_part):
    with pytest.raises(InvalidDocument) as caught:
        parse_document(line, 7)
    error = caught.value
    assert (error.line, error.field, error.document_id) == (7, field, document_id)
    assert reason_part in error.reason
    entry = error.as_dict()
    assert entry["line"] == 7 and entry["reason"] == error.reason
    assert ("id" in entry) == (document_id is not None)


@pytest.mark.parametrize(
    ("line", "field", "document_id"),
    [
        ('{"id": "a\\ud800", "text": "t"}', "id", "a\\ud800"),  # shown escaped, safe in a UTF-8 report
        ('{"id": "a", "text": "bad \\udfff text"}', "text", "a"),
        ('{"id": "a", "text": "t", "metadata": {"k": "\\ud83d"}}', "metadata.k", "a"),
        ('{"id": "a", "text": "t", "metadata": {"k": ["ok", "\\ud83d"]}}', "metadata.k", "a"),
        ('{"id": "a", "text": "t", "x\\ud800": 1}', "x\\ud800", "a"),
    ],
)
def test_lone_surrogates_are_refused_and_reported_safely(line, field, document_id):
    with pytest.raises(InvalidDocument) as caught:
        parse_document(line, 1)
    assert (caught.value.field, caught.value.document_id) == (field, document_id)
    json.dumps(caught.value.as_dict(), ensure_ascii=False).encode("utf-8")  # a report can hold it
    # a valid pair (an emoji) is fine
    assert parse_document('{"id": "a", "text": "\\ud83d\\ude00"}', 1) == Document("a", "\U0001F600", {})


def test_undecodable_and_oversized_byte_lines():
    with pytest.raises(InvalidDocument, match="not UTF-8"):
        parse_document(b'{"id": "\xff"}', 2)
    with pytest.raises(InvalidDocument, match="bytes; at most"):
        parse_document(b"x" * (domain.MAX_LINE_BYTES + 1), 2)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=4),
                              max_leaves=12).map(json.dumps)))
def test_any_line_parses_or_is_rejected_with_a_reason(line):
    try:
        parse_document(line, 1)
    except InvalidDocument as error:
        assert error.reason and error.line == 1


def test_chunk_metadata_adds_the_platform_keys():
    document = Document("a", "t", {"category": "x"})
    assert domain.chunk_metadata(document, 2, 5, "chunk text") == {
        "category": "x", "doc_id": "a", "chunk": 2, "chunk_count": 5, "text": "chunk text"}


# --- search requests ----------------------------------------------------------------------------

SETTINGS = index_settings(filterable=["category", "year", "tags", "public"], max_top_k=20)


def test_minimal_and_full_requests():
    request = parse_search_request({"query": "cats"}, SETTINGS)
    assert (request.query, request.top_k, request.filter) == ("cats", 10, None)
    request = parse_search_request(
        {"query": "cats", "top_k": 20, "filter": {"category": "pets", "year": {"$in": [2024, 2025]}, "public": True}},
        SETTINGS,
    )
    assert request.top_k == 20
    assert request.filter == {"category": "pets", "year": {"$in": [2024, 2025]}, "public": True}
    assert parse_search_request({"query": "x", "filter": {}}, SETTINGS).filter is None
    assert parse_search_request({"query": "x", "filter": None}, SETTINGS).filter is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], ""),
        ("query", ""),
        (None, ""),
        ({}, "query"),
        ({"query": None}, "query"),
        ({"query": 5}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "q" * 2001}, "query"),
        ({"query": "q", "top_k": 0}, "top_k"),
        ({"query": "q", "top_k": 21}, "top_k"),
        ({"query": "q", "top_k": 5.0}, "top_k"),
        ({"query": "q", "top_k": True}, "top_k"),
        ({"query": "q", "top_k": "5"}, "top_k"),
        ({"query": "q", "limit": 5}, "limit"),
        ({"query": "q", "filter": []}, "filter"),
        ({"query": "q", "filter": "category=pets"}, "filter"),
        ({"query": "q", "filter": {"colour": "red"}}, "filter.colour"),
        ({"query": "q", "filter": {"text": "x"}}, "filter.text"),
        ({"query": "q", "filter": {"category": None}}, "filter.category"),
        ({"query": "q", "filter": {"category": ["a"]}}, "filter.category"),
        ({"query": "q", "filter": {"category": {"$eq": "a"}}}, "filter.category"),
        ({"query": "q", "filter": {"category": {"$in": "a"}}}, "filter.category.$in"),
        ({"query": "q", "filter": {"category": {"$in": []}}}, "filter.category.$in"),
        ({"query": "q", "filter": {"category": {"$in": list(range(51))}}}, "filter.category.$in"),
        ({"query": "q", "filter": {"category": {"$in": [{"x": 1}]}}}, "filter.category.$in"),
        ({"query": "q", "filter": {"category": {"$in": ["a"], "$nin": ["b"]}}}, "filter.category"),
        ({"query": "q", "filter": {"year": float("inf")}}, "filter.year"),
        ({"query": "q", "filter": {"category": "c" * 257}}, "filter.category"),
        ({"query": "lone \ud800 surrogate"}, "query"),
        ({"query": "q", "filter": {"category": "\udc00"}}, "filter.category"),
    ],
)
def test_invalid_requests_name_the_field(body, field):
    with pytest.raises(InvalidRequest) as caught:
        parse_search_request(body, SETTINGS)
    assert caught.value.field == field
    assert caught.value.reason


def test_too_many_filter_keys():
    settings_ = index_settings(filterable=[f"k{i}" for i in range(10)])
    parse_search_request({"query": "q", "filter": {f"k{i}": 1 for i in range(10)}}, settings_)
    with pytest.raises(InvalidRequest, match="more than 10 keys"):
        parse_search_request({"query": "q", "filter": {f"k{i}": 1 for i in range(11)}}, settings_)


# --- the filter language ------------------------------------------------------------------------


def test_filter_document_for_s3_vectors():
    assert filter_document(None) is None and filter_document({}) is None
    assert filter_document({"a": 1}) == {"a": 1}
    assert filter_document({"a": 1, "b": {"$in": ["x"]}}) == {"$and": [{"a": 1}, {"b": {"$in": ["x"]}}]}


@pytest.mark.parametrize(
    ("metadata", "filter_", "expected"),
    [
        ({"category": "pets"}, None, True),
        ({"category": "pets"}, {"category": "pets"}, True),
        ({"category": "pets"}, {"category": "cars"}, False),
        ({}, {"category": "pets"}, False),
        ({"category": "pets", "year": 2024}, {"category": "pets", "year": 2023}, False),
        ({"year": 2024}, {"year": 2024.0}, True),
        ({"year": 2024}, {"year": {"$in": [2023, 2024]}}, True),
        ({"year": 2022}, {"year": {"$in": [2023, 2024]}}, False),
        ({"tags": ["a", "b"]}, {"tags": "b"}, True),  # list metadata: any element
        ({"tags": ["a", "b"]}, {"tags": {"$in": ["c", "a"]}}, True),
        ({"tags": ["a", "b"]}, {"tags": "c"}, False),
        ({"public": True}, {"public": 1}, False),  # booleans equal only booleans
        ({"public": 1}, {"public": True}, False),
        ({"year": "2024"}, {"year": 2024}, False),  # no type coercion
    ],
)
def test_metadata_matches(metadata, filter_, expected):
    assert metadata_matches(metadata, filter_) is expected


# --- results ------------------------------------------------------------------------------------


def test_shape_results_cosine_and_euclidean():
    hits = [
        ("b#0001", 0.5, {"doc_id": "b", "chunk": 1, "chunk_count": 2, "text": "second", "category": "x"}),
        ("a#0000", 0.25, {"doc_id": "a", "chunk": 0, "chunk_count": 1, "text": "first"}),
    ]
    assert shape_results(hits, "cosine") == [
        {"id": "a", "chunk": 0, "score": 0.75, "distance": 0.25, "metadata": {}, "text": "first"},
        {"id": "b", "chunk": 1, "score": 0.5, "distance": 0.5, "metadata": {"category": "x"}, "text": "second"},
    ]
    euclidean = shape_results(hits, "euclidean")
    assert [(r["id"], r["score"], r["distance"]) for r in euclidean] == [("a", 0.25, 0.25), ("b", 0.5, 0.5)]


def test_shape_results_falls_back_to_the_key():
    (result,) = shape_results([("x#y#0003", 0.1, {})], "cosine")
    assert (result["id"], result["chunk"], result["text"], result["metadata"]) == ("x#y", 3, None, {})
    (result,) = shape_results([("odd-key", 0.1, None)], "cosine")
    assert (result["id"], result["chunk"]) == ("odd-key", 0)
