"""Indexing end to end with the deterministic embedder and the in-memory store: bad lines, re-indexing,
deletions, idempotency, interrupted runs, streaming lines."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlops_runtime.adapters.embedders import DeterministicEmbedder, EmbeddingDimensionError
from mlops_runtime.adapters.vector_store import InMemoryVectorStore
from mlops_runtime.domain.chunking import chunk_text, split_chunk_key
from mlops_runtime.search import indexing
from mlops_runtime.search.indexing import IndexReport, OversizedLine, index_lines, iter_lines
from search_fixtures import DIMENSION, deletion, document, index_settings, words_text

SETTINGS = index_settings(chunk_size=10, chunk_overlap=2)


def run(lines, store=None, embedder=None, settings_=SETTINGS, **options) -> tuple[IndexReport, InMemoryVectorStore]:
    store = store if store is not None else InMemoryVectorStore()
    report = index_lines(lines, settings_, embedder or DeterministicEmbedder(DIMENSION), store, **options)
    return report, store


def snapshot(store: InMemoryVectorStore, index: str = "docs") -> dict:
    keys = store.keys(index)
    metadata = store.get(index, keys)
    return {key: (store.vector(index, key), metadata[key]) for key in keys}


def chunk_keys(store, doc_id, index="docs"):
    return [k for k in store.keys(index) if split_chunk_key(k)[0] == doc_id]


def test_bad_lines_are_reported_with_line_numbers_and_skipped():
    lines = [
        document("a", "Cats purr. " * 12, category="pets"),
        "this is not json",
        "",
        document("b", "Dogs bark."),
        '{"id": "c"}',
        json.dumps({"id": "d", "text": "x", "metadata": {"text": "reserved"}}),
        deletion("never-indexed"),
    ]
    report, store = run(lines)
    assert report.summary() | {"seconds": 0} == {"index": "docs", "documents": 2, "chunks": 4, "deleted": 1,
                                                  "rejected": 3, "lines": 7, "seconds": 0}
    assert [(e["line"], e.get("id"), e["field"]) for e in report.errors] == [
        (2, None, ""), (5, "c", "text"), (6, "d", "metadata.text")]
    assert all(e["reason"] for e in report.errors)
    assert chunk_keys(store, "a") == ["a#0000", "a#0001", "a#0002"] and chunk_keys(store, "b") == ["b#0000"]
    assert report.to_dict()["errors_truncated"] is False


def test_chunks_carry_the_document_metadata_and_bookkeeping():
    text = words_text(25, seed=3)
    _, store = run([document("a", text, category="pets", tags=["x", "y"])])
    chunks = chunk_text(text, 10, 2)
    metadata = store.get("docs", [f"a#{n:04d}" for n in range(len(chunks))])
    for chunk in chunks:
        assert metadata[f"a#{chunk.number:04d}"] == {
            "category": "pets", "tags": ["x", "y"], "doc_id": "a", "chunk": chunk.number,
            "chunk_count": len(chunks), "text": chunk.text}
    # the vector is the embedding of the chunk text
    assert store.vector("docs", "a#0001") == pytest.approx(DeterministicEmbedder(DIMENSION).embed_one(chunks[1].text))


def test_reindexing_a_document_replaces_its_chunks():
    _, store = run([document("a", words_text(40, seed=1), version=1), document("b", "untouched")])
    assert len(chunk_keys(store, "a")) == 5
    report, _ = run([document("a", words_text(12, seed=2), version=2)], store=store)
    assert (report.documents, report.chunks) == (1, 2)
    assert chunk_keys(store, "a") == ["a#0000", "a#0001"]
    metadata = store.get("docs", ["a#0000", "a#0001"])
    assert {m["version"] for m in metadata.values()} == {2}
    assert {m["chunk_count"] for m in metadata.values()} == {2}
    assert chunk_keys(store, "b") == ["b#0000"]
    # and growing again
    run([document("a", words_text(60, seed=3))], store=store)
    assert len(chunk_keys(store, "a")) == 8
    assert store.get("docs", ["a#0000"])["a#0000"]["chunk_count"] == 8


def test_deletion_removes_every_chunk_and_is_idempotent():
    _, store = run([document("a", words_text(40, seed=1)), document("b", "stays")])
    report, _ = run([deletion("a")], store=store)
    assert (report.deleted, report.documents) == (1, 0)
    assert chunk_keys(store, "a") == [] and chunk_keys(store, "b") == ["b#0000"]
    report, _ = run([deletion("a")], store=store)
    assert report.deleted == 1 and chunk_keys(store, "b") == ["b#0000"]


def test_rerunning_the_same_input_changes_nothing():
    lines = [document(f"d{i}", words_text(5 + 7 * i, seed=i), n=i) for i in range(12)] + [deletion("d3"), "bad"]
    first, store = run(lines)
    before = snapshot(store)
    second, _ = run(lines, store=store)
    assert snapshot(store) == before
    assert first.summary() | {"seconds": 0} == second.summary() | {"seconds": 0}
    assert first.errors == second.errors


def test_later_lines_win_within_one_input():
    lines = [document("a", "first version"), document("a", "second version here"), document("b", "b"),
             deletion("b"), document("c", "c one"), deletion("c"), document("c", "c again")]
    report, store = run(lines)
    assert store.get("docs", ["a#0000"])["a#0000"]["text"] == "second version here"
    assert chunk_keys(store, "b") == []
    assert store.get("docs", ["c#0000"])["c#0000"]["text"] == "c again"
    assert (report.documents, report.deleted) == (5, 2)


def test_groups_bound_the_embedding_and_store_calls():
    embedder = DeterministicEmbedder(DIMENSION)
    store = InMemoryVectorStore()
    lines = [document(f"d{i}", words_text(8, seed=i)) for i in range(25)]
    report, _ = run(lines, store=store, embedder=embedder, group_documents=10)
    assert report.documents == 25
    assert embedder.calls == 3  # 10 + 10 + 5 documents
    assert store.calls["get"] == 3 and store.calls["upsert"] <= 6


def test_a_wrong_dimension_fails_the_run():
    with pytest.raises(EmbeddingDimensionError):
        run([document("a", "text")], embedder=DeterministicEmbedder(DIMENSION + 1))


def test_oversized_chunks_are_rejected(monkeypatch):
    monkeypatch.setattr(indexing, "MAX_CHUNK_TEXT_BYTES", 30)
    report, store = run([document("a", "short"), document("b", "é" * 39 + " " + "é" * 39)])
    assert report.documents == 1 and report.errors[0]["id"] == "b" and "bytes of text" in report.errors[0]["reason"]
    assert store.keys("docs") == ["a#0000"]


def test_reported_errors_are_capped(monkeypatch):
    monkeypatch.setattr(indexing, "MAX_REPORTED_ERRORS", 3)
    report, _ = run(["x"] * 10)
    assert report.rejected == 10 and len(report.errors) == 3 and report.to_dict()["errors_truncated"] is True
    total = IndexReport("docs")
    total.merge(report, "s3://b/k")
    assert total.rejected == 10 and total.errors[0]["source"] == "s3://b/k" and len(total.errors) == 3


# --- interrupted runs ---------------------------------------------------------------------------


class Checked(InMemoryVectorStore):
    """Checks after every write that chunk 0's chunk_count bounds the chunks that exist; fails the
    ``fail_at``-th write."""

    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.writes = 0
        self.fail_at = fail_at

    def _write(self):
        self.writes += 1
        if self.fail_at is not None and self.writes == self.fail_at:
            raise RuntimeError("injected failure")

    def upsert(self, index, vectors):
        self._write()
        super().upsert(index, vectors)
        self.check(index)

    def delete(self, index, keys):
        self._write()
        super().delete(index, keys)
        self.check(index)

    def check(self, index):
        by_doc: dict[str, list[int]] = {}
        for key in self.keys(index):
            doc, number = split_chunk_key(key)
            by_doc.setdefault(doc, []).append(number)
        heads = self.get(index, [f"{doc}#0000" for doc in by_doc])
        for doc, numbers in by_doc.items():
            head = heads.get(f"{doc}#0000")
            assert head is not None, f"chunks of {doc} exist without chunk 0"
            assert max(numbers) < head["chunk_count"], f"{doc}: chunk_count {head['chunk_count']} < {max(numbers) + 1}"


OPERATION = st.tuples(st.sampled_from(["a", "b", "c"]), st.one_of(st.none(), st.integers(1, 70)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(OPERATION, min_size=1, max_size=5), min_size=1, max_size=4), st.integers(1, 12))
def test_interrupted_runs_never_lose_track_of_chunks(runs, fail_at):
    """Whatever sequence of runs, whichever write fails: chunk 0 always bounds the existing chunks, and
    running the last input again leaves the store as an uninterrupted run does."""
    def lines_of(operations):
        return [deletion(doc) if words is None else document(doc, words_text(words, seed=words))
                for doc, words in operations]

    clean = Checked()
    for operations in runs:
        run(lines_of(operations), store=clean, group_documents=2)
    broken = Checked(fail_at=fail_at)
    for operations in runs:
        try:
            run(lines_of(operations), store=broken, group_documents=2)
        except RuntimeError:
            pass
    broken.fail_at = None
    for operations in runs:  # every run redone (as retries would), uninterrupted
        run(lines_of(operations), store=broken, group_documents=2)
    assert snapshot(broken) == snapshot(clean)


# --- streaming lines ----------------------------------------------------------------------------


def test_iter_lines_handles_crlf_blank_and_unterminated_lines():
    data = b'{"a": 1}\r\n\n{"b": 2}\n{"c": 3}'
    for read_bytes in (1, 3, 1024):
        assert list(iter_lines(io.BytesIO(data), read_bytes=read_bytes)) == [b'{"a": 1}', b"", b'{"b": 2}',
                                                                             b'{"c": 3}']
    assert list(iter_lines(io.BytesIO(b""))) == []
    assert list(iter_lines(io.BytesIO(b"x\n"))) == [b"x"]


def test_iter_lines_skips_oversized_lines_without_holding_them():
    data = b"ok\n" + b"y" * 50 + b"\nfine\n" + b"z" * 40
    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=20, read_bytes=7))
    assert lines == [b"ok", OversizedLine(50), b"fine", OversizedLine(40)]


def test_oversized_lines_are_reported_by_index_lines():
    report, store = run([document("a", "fine"), OversizedLine(3_000_000), document("b", "also fine")])
    assert report.errors == [{"line": 2, "field": "", "reason": "line is 3000000 bytes; at most 2097152"}]
    assert store.keys("docs") == ["a#0000", "b#0000"]
