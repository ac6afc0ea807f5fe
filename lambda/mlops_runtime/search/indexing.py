"""Indexing documents: JSON lines -> chunks -> embeddings -> vectors, idempotently.

Used by the indexer Lambda (``handlers.search_indexer``) and the bulk job (``search.bulk``); it
imports no Powertools (the bulk job runs in a SageMaker processing container).

:func:`index_lines` reads lines one by one (a stream, never the whole object). A bad line is
reported (line number, id when readable, field, reason) and skipped; the others are grouped
(up to ``GROUP_CHUNKS`` chunks or ``GROUP_DOCUMENTS`` documents), their chunks embedded in the
embedder's batches and written with metadata ``{**document metadata, "doc_id", "chunk",
"chunk_count", "text"}`` under keys ``<doc id>#<n:04d>``.

Idempotency, by document id and chunk number: writing a document replaces its chunks. The previous
``chunk_count`` is read from the document's chunk 0 (``get``); keys beyond the new count are
deleted. Chunk 0's ``chunk_count`` is kept an upper bound of the chunks that exist at every
moment, so that an interrupted run (a Lambda timeout, a failed call) never leaves chunks that a
later run cannot find: when a document grows, chunk 0 is written first; when it shrinks (or keeps
its size), the other chunks are written, the surplus deleted, and chunk 0 written last. A deletion
line removes chunks 1.. first and chunk 0 last. Running the same input twice leaves the store as
one run does. Within a group, a document id seen again closes the group first, so later lines win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mlops_runtime.adapters.embedders import Embedder, check_vectors
from mlops_runtime.adapters.vector_store import VectorRecord, VectorStore
from mlops_runtime.domain.chunking import Chunk, chunk_key, chunk_text
from mlops_runtime.domain.search import (
    MAX_CHUNK_TEXT_BYTES,
    MAX_LINE_BYTES,
    Deletion,
    Document,
    IndexSettings,
    InvalidDocument,
    chunk_metadata,
    parse_document,
)

GROUP_CHUNKS = 500  # one S3 Vectors PutVectors call
GROUP_DOCUMENTS = 100  # one S3 Vectors GetVectors call (the chunk 0 of each)
MAX_REPORTED_ERRORS = 1000
READ_BYTES = 256 * 1024


@dataclass(frozen=True)
class OversizedLine:
    """A line longer than the limit, skipped without being held in memory."""

    size: int


def iter_lines(stream: BinaryIO | Any, *, max_line_bytes: int = MAX_LINE_BYTES,
               read_bytes: int = READ_BYTES) -> Iterator[bytes | OversizedLine]:
    """The lines of a binary stream (``\\n`` or ``\\r\\n``), read ``read_bytes`` at a time; a line over
    ``max_line_bytes`` comes out as :class:`OversizedLine` (its bytes are dropped as they are read)."""
    pending = bytearray()
    skipped: int | None = None  # bytes of the oversized line being skipped
    while True:
        data = stream.read(read_bytes)
        if not data:
            break
        start = 0
        while True:
            newline = data.find(b"\n", start)
            piece = data[start:] if newline < 0 else data[start:newline]
            if skipped is not None:
                skipped += len(piece)
            else:
                pending += piece
                if len(pending) > max_line_bytes:
                    skipped = len(pending)
                    pending = bytearray()
            if newline < 0:
                break
            if skipped is not None:
                yield OversizedLine(skipped)
                skipped = None
            else:
                yield bytes(pending[:-1] if pending.endswith(b"\r") else pending)
                pending = bytearray()
            start = newline + 1
    if skipped is not None:
        yield OversizedLine(skipped)
    elif pending:
        yield bytes(pending[:-1] if pending.endswith(b"\r") else pending)


@dataclass
class IndexReport:
    """What a run did. ``documents``: documents (re)indexed; ``chunks``: chunks written; ``deleted``:
    deletion lines applied; ``rejected``: bad lines (the first ``MAX_REPORTED_ERRORS`` in ``errors``)."""

    index: str
    documents: int = 0
    chunks: int = 0
    deleted: int = 0
    rejected: int = 0
    lines: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, entry: dict[str, Any]) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(entry)

    def merge(self, other: IndexReport, source: str | None = None) -> None:
        self.documents += other.documents
        self.chunks += other.chunks
        self.deleted += other.deleted
        self.lines += other.lines
        self.seconds += other.seconds
        self.rejected += other.rejected
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors.extend(({**e, "source": source} if source else e) for e in other.errors[:max(0, room)])

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "documents": self.documents,
            "chunks": self.chunks,
            "deleted": self.deleted,
            "rejected": self.rejected,
            "lines": self.lines,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        truncated = self.rejected > len(self.errors)
        return {**self.summary(), "errors": list(self.errors), "errors_truncated": truncated}


@dataclass
class _Group:
    items: list[tuple[Document | Deletion, list[Chunk]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    chunk_count: int = 0

    def add(self, item: Document | Deletion, chunks: list[Chunk]) -> None:
        self.items.append((item, chunks))
        self.ids.add(item.id)
        self.chunk_count += len(chunks)


def _previous_count(metadata: dict[str, Any] | None) -> int:
    """Chunks a document had, from its chunk 0 (0: not indexed)."""
    if metadata is None:
        return 0
    count = metadata.get("chunk_count")
    if isinstance(count, bool) or not isinstance(count, (int, float)) or count < 1:
        return 1
    return int(count)


def _write_group(group: _Group, settings: IndexSettings, embedder: Embedder, store: VectorStore,
                 report: IndexReport) -> None:
    index = settings.name
    previous = store.get(index, [chunk_key(item.id, 0) for item, _ in group.items])
    documents = [(item, chunks) for item, chunks in group.items if isinstance(item, Document)]
    texts = [chunk.text for _, chunks in documents for chunk in chunks]
    vectors = (
        check_vectors(embedder.embed(texts), len(texts), settings.dimension, "the embedder") if texts else []
    )

    first: list[VectorRecord] = []  # chunk 0 of growing documents
    middle: list[VectorRecord] = []  # chunks 1..
    last: list[VectorRecord] = []  # chunk 0 of the others
    stale: list[str] = []  # surplus chunks, and chunks 1.. of deleted documents
    deleted_heads: list[str] = []  # chunk 0 of deleted documents
    position = 0
    for item, chunks in group.items:
        before = _previous_count(previous.get(chunk_key(item.id, 0)))
        if isinstance(item, Deletion):
            stale += [chunk_key(item.id, n) for n in range(1, before)]
            if before:
                deleted_heads.append(chunk_key(item.id, 0))
            report.deleted += 1
            continue
        count = len(chunks)
        for chunk in chunks:
            record = (chunk_key(item.id, chunk.number), vectors[position],
                      chunk_metadata(item, chunk.number, count, chunk.text))
            position += 1
            if chunk.number:
                middle.append(record)
            elif count > before:
                first.append(record)
            else:
                last.append(record)
        stale += [chunk_key(item.id, n) for n in range(count, before)]
        report.documents += 1
        report.chunks += count

    if first or middle:
        store.upsert(index, first + middle)
    if stale:
        store.delete(index, stale)
    if last:
        store.upsert(index, last)
    if deleted_heads:
        store.delete(index, deleted_heads)


def _chunks_of(document: Document, settings: IndexSettings, line: int) -> list[Chunk]:
    chunks = chunk_text(document.text, settings.chunk_size, settings.chunk_overlap)
    for chunk in chunks:
        size = len(chunk.text.encode("utf-8"))
        if size > MAX_CHUNK_TEXT_BYTES:
            raise InvalidDocument(
                line, "text", f"chunk {chunk.number} holds {size} bytes of text; at most "
                f"{MAX_CHUNK_TEXT_BYTES} (very long words or a large chunk_size)", document.id,
            )
    if not chunks:  # parse_document refuses blank text; kept as a guard
        raise InvalidDocument(line, "text", "has no words", document.id)
    return chunks


def index_lines(
    lines: Iterable[str | bytes | OversizedLine],
    settings: IndexSettings,
    embedder: Embedder,
    store: VectorStore,
    *,
    clock: Callable[[], float] = time.monotonic,
    group_chunks: int = GROUP_CHUNKS,
    group_documents: int = GROUP_DOCUMENTS,
) -> IndexReport:
    """Index JSON lines into ``settings``' index (see the module docstring). Embedder and store errors
    propagate (after their own retries): what was written stays written, and a rerun completes it."""
    report = IndexReport(settings.name)
    started = clock()
    group = _Group()
    try:
        for number, line in enumerate(lines, start=1):
            report.lines = number
            try:
                if isinstance(line, OversizedLine):
                    raise InvalidDocument(number, "", f"line is {line.size} bytes; at most {MAX_LINE_BYTES}")
                item = parse_document(line, number)
                if item is None:
                    continue
                chunks = _chunks_of(item, settings, number) if isinstance(item, Document) else []
            except InvalidDocument as invalid:
                report.reject(invalid.as_dict())
                continue
            if item.id in group.ids:
                _write_group(group, settings, embedder, store, report)
                group = _Group()
            group.add(item, chunks)
            if group.chunk_count >= group_chunks or len(group.items) >= group_documents:
                _write_group(group, settings, embedder, store, report)
                group = _Group()
        if group.items:
            _write_group(group, settings, embedder, store, report)
    finally:
        report.seconds = clock() - started
    return report
