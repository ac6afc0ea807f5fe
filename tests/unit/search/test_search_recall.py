"""Recall of the exact store: 2,000 generated documents indexed through the pipeline (deterministic
embedder), queries whose exact nearest neighbours are computed by brute force with numpy.

The in-memory store is exact, so recall@10 must be 1.0 (ties at the 10th distance are accepted in any
order). S3 Vectors cannot be measured here: moto 5.2.5 implements PutVectors/GetVectors/DeleteVectors
but not QueryVectors (the adapter's query is tested against a botocore Stubber instead), and the real
service is approximate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlops_runtime.adapters.embedders import DeterministicEmbedder
from mlops_runtime.adapters.vector_store import InMemoryVectorStore
from mlops_runtime.search.indexing import index_lines
from search_fixtures import TOPICS, corpus, index_settings, words_text

DIMENSION = 128
DOCUMENTS = 2000
K = 10
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def indexed():
    settings = index_settings(dimension=DIMENSION, chunk_size=40, chunk_overlap=8)
    documents = corpus(DOCUMENTS)
    store = InMemoryVectorStore()
    embedder = DeterministicEmbedder(DIMENSION)
    report = index_lines((json.dumps(d) for d in documents), settings, embedder, store)
    assert (report.documents, report.rejected) == (DOCUMENTS, 0)
    keys = store.keys("docs")
    metadata = store.get("docs", keys)
    # ground truth, computed independently: embeddings of the stored texts, cosine by matrix product
    matrix = np.array([embedder.embed_one(metadata[key]["text"]) for key in keys])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return settings, store, embedder, keys, metadata, matrix


def queries() -> list[str]:
    generated = [words_text(8, seed=1000 + i, topic=topic) for i, topic in enumerate(sorted(TOPICS) * 4)]
    return generated + ["cat", "rocket launch to the moon", "butter and sugar", "mortgage interest rate"]


def recall_at_k(hits, keys, distances, k=K) -> float:
    """Share of the exact top k found; a hit tied with the k-th exact distance counts as exact."""
    order = np.argsort(distances, kind="stable")
    kth = distances[order[k - 1]]
    exact = {keys[i] for i in order[:k]}
    found = 0
    for key, distance, _ in hits:
        true_distance = distances[keys.index(key)]
        assert distance == pytest.approx(true_distance, abs=1e-7)
        if key in exact or true_distance <= kth + TOLERANCE:
            found += 1
    return found / k


def test_recall_at_10_is_one_for_the_exact_store(indexed):
    settings, store, embedder, keys, _, matrix = indexed
    assert len(keys) == DOCUMENTS  # one chunk per document
    for query in queries():
        vector = np.array(embedder.embed_one(query))
        distances = 1.0 - matrix @ (vector / np.linalg.norm(vector))
        hits = store.query("docs", vector.tolist(), K)
        assert len(hits) == K
        assert recall_at_k(hits, keys, distances) == 1.0, query


def test_recall_with_a_filter(indexed):
    _, store, embedder, keys, metadata, matrix = indexed
    allowed = np.array([metadata[key]["category"] in ("cats", "space") and metadata[key]["language"] == "fr"
                        for key in keys])
    for query in queries()[:8]:
        vector = np.array(embedder.embed_one(query))
        distances = np.where(allowed, 1.0 - matrix @ (vector / np.linalg.norm(vector)), np.inf)
        hits = store.query("docs", vector.tolist(), K, {"category": {"$in": ["cats", "space"]}, "language": "fr"})
        assert all(h[2]["category"] in ("cats", "space") and h[2]["language"] == "fr" for h in hits)
        assert recall_at_k(hits, keys, distances) == 1.0


def test_the_deterministic_embedder_ranks_same_topic_documents_first(indexed):
    """Not exactness but usefulness: a query made of one topic's words finds mostly that topic."""
    _, store, embedder, _, _, _ = indexed
    for topic in TOPICS:
        hits = store.query("docs", embedder.embed_one(TOPICS[topic]), K)
        assert sum(h[2]["category"] == topic for h in hits) >= 8, topic
