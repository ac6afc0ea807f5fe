"""Chunking: invariants (Hypothesis) and the boundary preferences, keys, edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlops_runtime.domain.chunking import (
    MAX_WORD_CHARS,
    chunk_key,
    chunk_text,
    split_chunk_key,
    words,
)

WORD = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=12)
SEPARATOR = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", "\t", ". ", "! ", "? ", ".\n\n"])


@st.composite
def texts(draw):
    parts = draw(st.lists(st.tuples(WORD, SEPARATOR), max_size=120))
    long_word = draw(st.booleans())
    text = "".join(word + sep for word, sep in parts)
    if long_word:
        text += " " + "x" * draw(st.integers(MAX_WORD_CHARS, 3 * MAX_WORD_CHARS + 5))
    return draw(st.sampled_from(["", " ", "\n"])) + text


@st.composite
def sizes(draw):
    size = draw(st.integers(1, 40))
    return size, draw(st.integers(0, size - 1))


@settings(max_examples=300, deadline=None)
@given(texts(), sizes())
def test_chunks_cover_every_word_in_order_with_exact_overlap_and_bounded_size(text, size_overlap):
    size, overlap = size_overlap
    all_words = words(text)
    chunks = chunk_text(text, size, overlap)
    if not all_words:
        assert chunks == []
        return
    # contiguous numbering, bounded size, every chunk non-empty
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert all(1 <= c.word_count <= size for c in chunks)
    # first starts at 0, last ends at the end, consecutive chunks share exactly `overlap` words
    assert chunks[0].start == 0 and chunks[-1].end == len(all_words)
    for previous, current in zip(chunks, chunks[1:]):
        assert current.start == previous.end - overlap
        assert current.end > previous.end  # progress: every chunk brings new words
    # the union of the chunks is every word, in order (reassemble, dropping the overlaps)
    rebuilt = list(all_words[chunks[0].start : chunks[0].end])
    for chunk in chunks[1:]:
        rebuilt += all_words[chunk.start + overlap : chunk.end]
    assert rebuilt == all_words
    # each chunk's text is its words (single spaces or a paragraph break between them)
    for chunk in chunks:
        assert chunk.text.split() == all_words[chunk.start : chunk.end]
    # words are bounded in length, so chunks are bounded in characters
    assert all(len(w) <= MAX_WORD_CHARS for w in all_words)
    assert all(len(c.text) <= size * (MAX_WORD_CHARS + 2) for c in chunks)


@settings(max_examples=100, deadline=None)
@given(texts(), sizes())
def test_chunking_is_deterministic(text, size_overlap):
    size, overlap = size_overlap
    assert chunk_text(text, size, overlap) == chunk_text(text, size, overlap)


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n", "\u3000"])
def test_empty_or_whitespace_text_has_no_chunks(text):
    assert chunk_text(text, 10, 2) == []


def test_short_text_is_one_chunk():
    (chunk,) = chunk_text("One short sentence.", 10, 3)
    assert (chunk.number, chunk.start, chunk.end, chunk.text) == (0, 0, 3, "One short sentence.")


def test_without_boundaries_chunks_are_full_size():
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(text, 10, 2)
    assert [(c.start, c.end) for c in chunks] == [(0, 10), (8, 18), (16, 25)]


def test_sentence_end_close_to_the_limit_ends_the_chunk():
    # 10-word limit, window of 2 words: the sentence ending at word 9 (end 9) is close enough.
    text = "a b c d e f g h end. j k l m n o p q r s t"
    chunks = chunk_text(text, 10, 0)
    assert (chunks[0].start, chunks[0].end) == (0, 9)
    assert chunks[0].text.endswith("end.")


def test_sentence_end_far_from_the_limit_is_ignored():
    text = "a b end. d e f g h i j k l m n o"
    assert (chunk_text(text, 10, 0)[0].end) == 10


def test_paragraph_break_is_preferred_to_a_later_sentence_end():
    # window of 4 words (20 % of 20): paragraph after word 16 (end 17), sentence after word 18 (end 19)
    words_ = [f"w{i}" for i in range(30)]
    words_[16] += "\n\n"
    words_[18] += "."
    text = " ".join(words_).replace("\n\n ", "\n\n")
    first = chunk_text(text, 20, 0)[0]
    assert first.end == 17
    assert first.text.endswith("w16")


def test_paragraph_breaks_survive_in_chunk_text_and_whitespace_is_normalised():
    text = "First   line\twith  tabs.\n\n\nSecond paragraph\r\n starts here."
    (chunk,) = chunk_text(text, 50, 0)
    assert chunk.text == "First line with tabs.\n\nSecond paragraph starts here."


def test_quoted_sentence_end_counts_as_a_boundary():
    text = 'a b c d e f g h i "said so." k l m n o p q'
    assert chunk_text(text, 11, 0)[0].end == 11  # limit: no earlier boundary needed
    assert chunk_text(text, 12, 0)[0].end == 11  # "so." followed by a closing quote


def test_overlap_never_prevents_progress_with_boundaries():
    text = ". ".join("abcdefghij") + "."  # every word ends a sentence
    chunks = chunk_text(text, 3, 2)
    assert all(b.start == a.end - 2 and b.end > a.end for a, b in zip(chunks, chunks[1:]))
    assert chunks[-1].end == 10


def test_long_words_are_split_into_pieces():
    text = "short " + "y" * (2 * MAX_WORD_CHARS + 1)
    assert words(text) == ["short", "y" * MAX_WORD_CHARS, "y" * MAX_WORD_CHARS, "y"]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (5, 5), (5, -1), (5, 6), (True, 0), (5, 1.5)])
def test_invalid_sizes_are_refused(size, overlap):
    with pytest.raises(ValueError):
        chunk_text("a b c", size, overlap)


def test_chunk_keys_round_trip_with_hashes_in_ids():
    assert chunk_key("doc-1", 0) == "doc-1#0000"
    assert chunk_key("doc-1", 12345) == "doc-1#12345"
    assert split_chunk_key("a#b#0007") == ("a#b", 7)
    for bad in ("nohash", "doc#", "doc#x1", "doc#１２"):
        with pytest.raises(ValueError):
            split_chunk_key(bad)
