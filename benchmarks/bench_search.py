"""Benchmark: semantic search, indexing throughput and the search API's own overhead per query.

1. **Indexing throughput** (``search.indexing.index_lines``): 3,000 generated documents of ~180-420
   words (JSON lines, metadata included), chunk_size 200 / overlap 40, the deterministic embedder
   (dimension 256) and the in-memory store. Three timed runs into a fresh store (median reported,
   every run kept), each split into the time inside ``embed``, inside the store calls and the rest
   (parsing, validation, chunking, bookkeeping: the pipeline's own work). Then two runs under
   ``tracemalloc`` (slower, not timed): with the in-memory store, which keeps every vector, and with a
   store that discards what it is given, so the peak is the pipeline's own working memory (it
   streams: it holds one group of up to 500 chunks at a time). The process's peak RSS is reported too.
2. **Search overhead per query, excluding the embedder and store calls**: (a) ``domain``: decoding
   the body, ``parse_search_request`` (validation incl. filters) and ``shape_results`` of 10 hits;
   (b) ``handler``: the whole Lambda handler (Powertools routing, logging, EMF metrics, JSON) with an
   embedder and a store that return precomputed answers at once. 20,000 varied requests each, timed
   one at a time with ``perf_counter_ns`` after a warm-up, 3 passes, the pass with the median p99
   reported. No targets were set for search; the figures are reported.

Writes ``benchmarks/results/search.json``. Usage: ``.venv/bin/python -m benchmarks.bench_search``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "lambda") not in sys.path:
    sys.path.insert(0, str(ROOT / "lambda"))

from benchmarks.measure import machine, write_result  # noqa: E402

DOCUMENTS = 3_000
DIMENSION = 256
CHUNK_SIZE = 200
CHUNK_OVERLAP = 40
RUNS = 3
REQUESTS = 20_000
WARM_UP = 2_000
PASSES = 3
TOP_K = 10

TOPICS = {
    "billing": "invoice payment refund charge card subscription plan price tax receipt",
    "shipping": "parcel delivery courier tracking address warehouse dispatch customs label",
    "account": "password login email profile security verification username settings reset",
    "product": "battery screen charger warranty model colour size firmware update manual",
}
FILLER = "the a of and to in is it that for on with as by at this from you your we our can will".split()


def _settings() -> Any:
    from mlops_runtime.domain.search import parse_index

    return parse_index("bench", {
        "dimension": DIMENSION, "distance": "cosine", "filterable": ["category", "language"],
        "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"},
        "chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP, "max_top_k": 50,
    })


def _text(rnd: random.Random, words: int, topic: str) -> str:
    vocabulary = TOPICS[topic].split()
    out = []
    for index in range(words):
        word = rnd.choice(vocabulary) if rnd.random() < 0.45 else rnd.choice(FILLER)
        if index % 14 == 13:
            word += "."
        if index % 90 == 89:
            word += "\n\n"
        out.append(word)
    return " ".join(out)


def corpus_lines(count: int, seed: int = 2026) -> list[str]:
    rnd = random.Random(seed)
    topics = sorted(TOPICS)
    lines = []
    for number in range(count):
        topic = topics[number % len(topics)]
        document = {
            "id": f"kb-{number:06d}",
            "text": _text(rnd, rnd.randint(180, 420), topic),
            "metadata": {"category": topic, "language": rnd.choice(["en", "de", "fr"]),
                         "tags": rnd.sample(["faq", "howto", "policy", "legacy", "new"], 2),
                         "version": rnd.randint(1, 9)},
        }
        lines.append(json.dumps(document))
    return lines


# --- 1. indexing --------------------------------------------------------------------------------


class _TimedEmbedder:
    def __init__(self, inner: Any) -> None:
        self.inner, self.dimension, self.seconds, self.calls = inner, inner.dimension, 0.0, 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        start = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class _TimedStore:
    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def _timed(self, name: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def upsert(self, index, vectors):
        return self._timed("upsert", index, vectors)

    def delete(self, index, keys):
        return self._timed("delete", index, keys)

    def get(self, index, keys):
        return self._timed("get", index, keys)

    def query(self, index, vector, top_k, filter=None):
        return self._timed("query", index, vector, top_k, filter)


class _DiscardingStore:
    """Counts what it is given and keeps nothing: the pipeline's own memory, without the index's."""

    def __init__(self) -> None:
        self.vectors = 0

    def upsert(self, index, vectors):
        self.vectors += len(vectors)

    def delete(self, index, keys):
        return None

    def get(self, index, keys):
        return {}

    def query(self, index, vector, top_k, filter=None):
        return []


def _index_once(lines: list[str]) -> dict[str, Any]:
    from mlops_runtime.adapters.embedders import DeterministicEmbedder
    from mlops_runtime.adapters.vector_store import InMemoryVectorStore
    from mlops_runtime.search.indexing import index_lines

    embedder = _TimedEmbedder(DeterministicEmbedder(DIMENSION))
    store = _TimedStore(InMemoryVectorStore())
    gc.collect()
    start = time.perf_counter()
    report = index_lines(lines, _settings(), embedder, store)
    seconds = time.perf_counter() - start
    pipeline = seconds - embedder.seconds - store.seconds
    return {
        "seconds": round(seconds, 3),
        "documents": report.documents,
        "chunks": report.chunks,
        "rejected": report.rejected,
        "chunks_per_second": round(report.chunks / seconds, 1),
        "documents_per_second": round(report.documents / seconds, 1),
        "embedder_seconds": round(embedder.seconds, 3),
        "store_seconds": round(store.seconds, 3),
        "pipeline_seconds": round(pipeline, 3),
        "pipeline_chunks_per_second": round(report.chunks / pipeline, 1),
        "embed_calls": embedder.calls,
        "store_calls": store.calls,
    }


def _peak_memory(lines: list[str], keep_vectors: bool) -> dict[str, Any]:
    from mlops_runtime.adapters.embedders import DeterministicEmbedder
    from mlops_runtime.adapters.vector_store import InMemoryVectorStore
    from mlops_runtime.search.indexing import index_lines

    store = InMemoryVectorStore() if keep_vectors else _DiscardingStore()
    embedder = DeterministicEmbedder(DIMENSION)
    gc.collect()
    tracemalloc.start()
    try:
        report = index_lines(lines, _settings(), embedder, store)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"chunks": report.chunks, "peak_mib": round(peak / 2**20, 1),
            "retained_mib": round(current / 2**20, 1)}


def bench_indexing() -> dict[str, Any]:
    lines = corpus_lines(DOCUMENTS)
    corpus_mib = round(sum(len(line) for line in lines) / 2**20, 1)
    runs = [_index_once(lines) for _ in range(RUNS)]
    median = sorted(runs, key=lambda run: run["chunks_per_second"])[len(runs) // 2]
    with_store = _peak_memory(lines, keep_vectors=True)
    pipeline_only = _peak_memory(lines, keep_vectors=False)
    return {
        "documents": DOCUMENTS,
        "corpus_mib": corpus_mib,
        "dimension": DIMENSION,
        "chunk_size": CHUNK_SIZE,
        "chunk_overlap": CHUNK_OVERLAP,
        "median_run": median,
        "runs": runs,
        "tracemalloc": {
            "in_memory_store_keeping_every_vector": with_store,
            "pipeline_only_discarding_store": pipeline_only,
        },
        # ru_maxrss is KiB on Linux: the whole process (interpreter, modules, corpus, stores).
        "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# --- 2. search overhead -------------------------------------------------------------------------


def _requests(rnd: random.Random, count: int) -> list[str]:
    words = [w for topic in TOPICS.values() for w in topic.split()]
    bodies = []
    for _ in range(count):
        body: dict[str, Any] = {"query": " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 25)))}
        shape = rnd.random()
        if shape < 0.5:
            body["top_k"] = rnd.choice([5, 10, 20, 50])
        if shape > 0.4:
            body["filter"] = rnd.choice([
                {"category": rnd.choice(sorted(TOPICS))},
                {"category": {"$in": rnd.sample(sorted(TOPICS), 2)}, "language": "en"},
                {"language": {"$in": ["de", "fr"]}},
            ])
        bodies.append(json.dumps(body))
    return bodies


def _sample_hits() -> tuple[list[float], list[tuple[str, float, dict[str, Any]]]]:
    """A query vector and 10 real hits (from a small indexed corpus) to shape."""
    from mlops_runtime.adapters.embedders import DeterministicEmbedder
    from mlops_runtime.adapters.vector_store import InMemoryVectorStore
    from mlops_runtime.search.indexing import index_lines

    store = InMemoryVectorStore()
    embedder = DeterministicEmbedder(DIMENSION)
    index_lines(corpus_lines(200, seed=7), _settings(), embedder, store)
    vector = embedder.embed(["refund for a delivery"])[0]
    return vector, store.query("bench", vector, TOP_K)


def _percentiles(timings_ns: list[int]) -> dict[str, float]:
    values = sorted(timings_ns)

    def at(p: float) -> float:
        return round(values[min(len(values) - 1, int(p / 100 * len(values)))] / 1000, 2)

    return {"p50_us": at(50), "p90_us": at(90), "p99_us": at(99), "p999_us": at(99.9),
            "mean_us": round(statistics.fmean(values) / 1000, 2), "max_us": round(values[-1] / 1000, 1)}


def _domain_pass(bodies: list[str], hits: list) -> list[int]:
    from mlops_runtime.domain.search import loads_strict, parse_search_request, shape_results

    settings = _settings()
    clock = time.perf_counter_ns
    timings = []
    gc.collect()
    gc.freeze()  # the benchmark's own big lists out of the collector's sight; the collector stays on
    try:
        for index, body in enumerate(bodies):
            start = clock()
            request = parse_search_request(loads_strict(body.encode("utf-8").decode("utf-8")), settings)
            results = shape_results(hits[: request.top_k], settings.distance)
            json.dumps({"index": "bench", "results": results, "took_ms": 1.0})
            elapsed = clock() - start
            if index >= WARM_UP:
                timings.append(elapsed)
    finally:
        gc.unfreeze()
    return timings


class _Context:
    function_name = "bench-search-api"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench-search-api"
    aws_request_id = "bench"


def _event(body: str) -> dict[str, Any]:
    path = "/v1/search/bench"
    return {
        "resource": "/v1/search/{index}", "path": path, "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"index": "bench"}, "stageVariables": None,
        "requestContext": {"resourcePath": "/v1/search/{index}", "httpMethod": "POST", "path": f"/prod{path}",
                           "stage": "prod", "requestId": "r", "identity": {}},
        "body": body, "isBase64Encoded": False,
    }


def _handler_pass(bodies: list[str], vector: list[float], hits: list) -> list[int]:
    from mlops_runtime.handlers import search_api

    class Embedder:
        dimension = DIMENSION

        def embed(self, texts):
            return [vector]

    class Store:
        def query(self, index, vector_, top_k, filter=None):
            return hits[:top_k]

    search_api.configure(search_api.Runtime({"bench": _settings()}, embedder_factory=lambda s: Embedder(),
                                            store_factory=lambda s: Store()))
    events = [_event(body) for body in bodies]
    context = _Context()
    clock = time.perf_counter_ns
    timings = []
    gc.collect()
    gc.freeze()
    try:
        for index, event in enumerate(events):
            start = clock()
            response = search_api.handler(event, context)
            elapsed = clock() - start
            if response["statusCode"] != 200:
                raise RuntimeError(f"unexpected answer {response}")
            if index >= WARM_UP:
                timings.append(elapsed)
    finally:
        gc.unfreeze()
        search_api.configure(None)
    return timings


def bench_overhead() -> dict[str, Any]:
    bodies = _requests(random.Random(20261127), REQUESTS + WARM_UP)
    vector, hits = _sample_hits()
    domain_passes = [_domain_pass(bodies, hits) for _ in range(PASSES)]
    # The handler logs one line and prints one EMF document per request: to /dev/null here.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        import mlops_runtime.handlers.search_api  # noqa: F401  (its logger binds to the redirected stdout)

        handler_passes = [_handler_pass(bodies, vector, hits) for _ in range(PASSES)]

    def median_pass(passes: list[list[int]]) -> dict[str, Any]:
        figures = sorted((_percentiles(p) for p in passes), key=lambda f: f["p99_us"])
        return {**figures[len(figures) // 2], "p99_us_of_each_pass": [f["p99_us"] for f in figures]}

    return {
        "requests_per_pass": REQUESTS,
        "passes": PASSES,
        "hits_shaped": TOP_K,
        "domain": {
            "includes": "body decode + loads_strict + parse_search_request (filters) + shape_results + "
                        "json.dumps of the answer",
            **median_pass(domain_passes),
        },
        "handler": {
            "includes": "the Lambda handler end to end (Powertools resolver, logging, EMF metrics) with an "
                        "embedder and a store answering at once",
            **median_pass(handler_passes),
        },
    }


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    indexing = bench_indexing()
    run = indexing["median_run"]
    print(f"indexing: {run['chunks']} chunks of {DOCUMENTS} documents in {run['seconds']} s = "
          f"{run['chunks_per_second']} chunks/s (embedder {run['embedder_seconds']} s, "
          f"store {run['store_seconds']} s, pipeline {run['pipeline_seconds']} s = "
          f"{run['pipeline_chunks_per_second']} chunks/s)", flush=True)
    pipeline_peak = indexing["tracemalloc"]["pipeline_only_discarding_store"]["peak_mib"]
    store_peak = indexing["tracemalloc"]["in_memory_store_keeping_every_vector"]["peak_mib"]
    print(f"indexing peak memory (tracemalloc): {pipeline_peak} MiB pipeline only; {store_peak} MiB with the "
          f"in-memory store; process peak RSS {indexing['process_peak_rss_mib']} MiB", flush=True)
    overhead = bench_overhead()
    for name in ("domain", "handler"):
        figures = overhead[name]
        print(f"search overhead ({name}): p50 {figures['p50_us']} us, p99 {figures['p99_us']} us, "
              f"p99.9 {figures['p999_us']} us", flush=True)
    payload = {
        "description": "Semantic search: indexing throughput with the deterministic embedder and the "
                       "in-memory store (and peak memory), and the search API's overhead per query without "
                       "the embedder and store calls.",
        "indexing": indexing,
        "search_overhead": overhead,
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "seconds": round(time.perf_counter() - started, 1),
        "environment": machine(),
    }
    path = write_result("search", payload)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
