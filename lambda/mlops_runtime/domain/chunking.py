"""Splitting a document's text into overlapping chunks of words (pure, deterministic).

A *word* is a run of non-whitespace characters; a run longer than ``MAX_WORD_CHARS`` is cut into
pieces of that length (each piece counts as a word), so that a chunk's size in characters stays
bounded whatever the text (a base64 blob, a long URL). ``words(text)`` is that list.

``chunk_text(text, chunk_size, chunk_overlap)`` returns chunks of at most ``chunk_size`` words;
consecutive chunks share exactly ``chunk_overlap`` words (``0 <= chunk_overlap < chunk_size``), so
every word is in at least one chunk, in order. A chunk ends where the ``chunk_size`` limit falls,
unless a paragraph end (a blank line) or, failing that, a sentence end (``.``, ``!``, ``?``, ``…``,
optionally followed by closing quotes or brackets) lies close before it: within the last fifth of
the chunk. Each chunk's text is its words joined by single spaces, with a blank line where the
document had a paragraph break. Empty or whitespace-only text has no chunks.

Chunk keys: ``<document id>#<n:04d>`` (``chunk_key``); the number has at least four digits and is
parsed back by ``split_chunk_key`` (at the last ``#``, so document ids may contain ``#``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

MAX_WORD_CHARS = 40
BOUNDARY_WINDOW = 0.2  # a boundary "close" to the size limit: within the last fifth of the chunk

_WHITESPACE = re.compile(r"(\s+)")  # split keeping the gaps: [word, gap, word, gap, ...]
_SENTENCE_ENDS = frozenset(".!?…")
_CLOSERS = "\"'”’)]»"

NO_BOUNDARY, SENTENCE, PARAGRAPH = 0, 1, 2


@dataclass(frozen=True)
class Chunk:
    """Chunk ``number`` (from 0): words ``[start, end)`` of ``words(text)``, joined as ``text``."""

    number: int
    start: int
    end: int
    text: str

    @property
    def word_count(self) -> int:
        return self.end - self.start


def chunk_key(document_id: str, number: int) -> str:
    return f"{document_id}#{number:04d}"


def split_chunk_key(key: str) -> tuple[str, int]:
    """``(document id, chunk number)`` of a chunk key; ``ValueError`` if it is not one."""
    document_id, sep, number = key.rpartition("#")
    if not sep or not number.isdigit() or not number.isascii():
        raise ValueError(f"not a chunk key: {key!r}")
    return document_id, int(number)


def _tokens(text: str) -> tuple[list[str], list[int], list[int]]:
    """Words, the strength of the boundary each ends (0, SENTENCE or PARAGRAPH; the last word ends the
    text: PARAGRAPH), and the positions of the PARAGRAPH boundaries."""
    words_: list[str] = []
    strengths: list[int] = []
    parts = _WHITESPACE.split(text)
    for position in range(0, len(parts), 2):
        token = parts[position]
        if not token:  # before leading / after trailing whitespace
            continue
        if len(token) > MAX_WORD_CHARS:
            for offset in range(0, len(token), MAX_WORD_CHARS):
                words_.append(token[offset : offset + MAX_WORD_CHARS])
                strengths.append(NO_BOUNDARY)
        else:
            words_.append(token)
            strengths.append(NO_BOUNDARY)
        gap = parts[position + 1] if position + 1 < len(parts) else ""
        if "\n" in gap and gap.count("\n") >= 2:  # a blank line (the gap is all whitespace)
            strengths[-1] = PARAGRAPH
        else:
            stripped = token.rstrip(_CLOSERS)
            if stripped and stripped[-1] in _SENTENCE_ENDS:
                strengths[-1] = SENTENCE
    if strengths:
        strengths[-1] = PARAGRAPH
    paragraphs = [index for index, strength in enumerate(strengths) if strength == PARAGRAPH]
    return words_, strengths, paragraphs


def words(text: str) -> list[str]:
    """The words ``chunk_text`` counts and distributes over chunks."""
    return _tokens(text)[0]


def _join(words_: list[str], paragraphs: list[int], start: int, end: int) -> str:
    """Words ``[start, end)`` joined by spaces, with a blank line after each paragraph end inside."""
    inside = paragraphs[bisect_left(paragraphs, start) : bisect_left(paragraphs, end - 1)]
    if not inside:
        return " ".join(words_[start:end])
    pieces, first = [], start
    for index in inside:
        pieces.append(" ".join(words_[first : index + 1]))
        first = index + 1
    pieces.append(" ".join(words_[first:end]))
    return "\n\n".join(pieces)


def check_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError("chunk_size must be a positive integer")
    if (isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int)
            or not 0 <= chunk_overlap < chunk_size):
        raise ValueError("chunk_overlap must be an integer from 0 to chunk_size - 1")


def chunk_text(text: str, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """The chunks of ``text`` (see the module docstring)."""
    check_sizes(chunk_size, chunk_overlap)
    words_, strengths, paragraphs = _tokens(text)
    total = len(words_)
    chunks: list[Chunk] = []
    start = 0
    window = max(1, int(chunk_size * BOUNDARY_WINDOW))
    while start < total:
        limit = min(start + chunk_size, total)
        end = limit
        if limit < total:
            # Candidates ends: close to the limit and leaving the next chunk at least one new word.
            lowest = max(start + chunk_overlap + 1, limit - window + 1)
            best = NO_BOUNDARY
            for candidate in range(limit, lowest - 1, -1):
                strength = strengths[candidate - 1]
                if strength > best:
                    best, end = strength, candidate
                    if strength == PARAGRAPH:
                        break
        chunks.append(Chunk(len(chunks), start, end, _join(words_, paragraphs, start, end)))
        if end >= total:
            break
        start = end - chunk_overlap
    return chunks
