"""Builders of the semantic-search tests: settings, documents, corpora, API Gateway events.

Imported by name (``from search_fixtures import ...``): pytest puts this test directory on
``sys.path`` (no ``__init__.py``), and the name is unique across the suite.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from mlops_runtime.domain.search import IndexSettings, parse_index

REGION = "eu-west-1"
ACCOUNT = "123456789012"
DIMENSION = 64

TOPICS = {
    "cats": "cat kitten feline whiskers purr meow litter claws",
    "dogs": "dog puppy canine bark leash fetch kennel tail",
    "finance": "bank loan interest mortgage credit savings account rate",
    "space": "rocket orbit planet galaxy astronaut telescope launch moon",
    "cooking": "recipe oven flour butter sugar bake dough pan",
}
FILLER = "the a of and to in is it that for on with as by at this from".split()


def index_settings(name: str = "docs", **overrides: Any) -> IndexSettings:
    raw: dict[str, Any] = {
        "dimension": DIMENSION,
        "distance": "cosine",
        "filterable": ["category", "language", "tags"],
        "store": {"kind": "memory"},
        "embedder": {"kind": "deterministic"},
        "chunk_size": 40,
        "chunk_overlap": 8,
        "max_top_k": 50,
    }
    raw.update(overrides)
    return parse_index(name, raw)


def document(doc_id: str, text: str, **metadata: Any) -> str:
    return json.dumps({"id": doc_id, "text": text, **({"metadata": metadata} if metadata else {})})


def deletion(doc_id: str) -> str:
    return json.dumps({"id": doc_id, "deleted": True})


def words_text(count: int, seed: int = 0, topic: str | None = None) -> str:
    """``count`` words with sentence ends, about ``topic`` (or mixed)."""
    rnd = random.Random(seed)
    vocabulary = TOPICS[topic].split() if topic else [w for t in TOPICS.values() for w in t.split()]
    out = []
    for index in range(count):
        word = rnd.choice(vocabulary) if rnd.random() < 0.6 else rnd.choice(FILLER)
        if index % 12 == 11:
            word += "."
        out.append(word)
    return " ".join(out)


def corpus(size: int, seed: int = 7, words: int = 30) -> list[dict[str, Any]]:
    """``size`` short documents (one chunk each with the default settings), topic in the metadata."""
    rnd = random.Random(seed)
    topics = sorted(TOPICS)
    documents = []
    for number in range(size):
        topic = topics[number % len(topics)]
        documents.append({
            "id": f"doc-{number:05d}",
            "text": words_text(words, seed=rnd.randrange(1 << 30), topic=topic),
            "metadata": {"category": topic, "language": rnd.choice(["en", "fr"])},
        })
    return documents


def api_event(body: str | bytes | None, *, index: str = "docs", method: str = "POST",
              path: str | None = None, base64_encoded: bool = False) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event."""
    path = path or f"/v1/search/{index}"
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii")
        base64_encoded = True
    return {
        "resource": "/v1/search/{index}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"index": index},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/v1/search/{index}", "httpMethod": method, "path": f"/prod{path}", "stage": "prod",
            "requestId": "req-1", "accountId": ACCOUNT, "apiId": "abc123", "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def no_sleep(_seconds: float) -> None:
    return None
