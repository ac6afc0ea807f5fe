"""Text drift for NLP models: token distribution, out-of-vocabulary rate, length shift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from monitoring import drift, report

COMMON = "the a and of to is in it for on with this that was very".split()
SPORTS = (
    "match goal team player score coach league season striker keeper referee penalty stadium fans "
    "win defeat tournament final injury transfer captain midfield pitch whistle trophy"
).split()
FINANCE = (
    "market stock price bank interest rate inflation bond equity investor dividend earnings revenue "
    "loan credit currency exchange portfolio hedge fund yield asset capital"
).split()


def corpus(topic: list, documents: int, seed: int, length: tuple = (5, 30)) -> list:
    """Documents of words drawn from a Zipf-like distribution over the topic plus common words."""
    rng = np.random.default_rng(seed)
    words = topic + COMMON  # the topic words are the most frequent
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    lengths = rng.integers(length[0], length[1] + 1, documents)
    docs = []
    for n in lengths:
        tokens = rng.choice(words, size=n, p=weights)
        docs.append(" ".join(tokens).capitalize() + ".")
    return docs


def text_drift(reference: list, current: list, batches: int = 3) -> dict:
    accumulator = drift.TextDrift(drift.build_text_baseline(reference))
    for chunk in np.array_split(np.array(current, dtype=object), batches):
        accumulator.update(list(chunk))
    return accumulator.result()


def flagged(result: dict) -> list:
    fake = {"features": {}, "prediction": {"psi": None}, "text": result}
    point = {"js_distance": 0.1, "oov_rate": 0.2, "length_psi": 0.2}  # the former defaults, as point thresholds
    return [v["threshold_key"] for v in report.drift_violations("_all", fake, point)]


def test_tokenizer_is_lowercase_unicode_words() -> None:
    assert drift.tokenize("Hello, WORLD! Ça va? snake_case 42 naïve 日本語") == [
        "hello", "world", "ça", "va", "snake_case", "42", "naïve", "日本語"
    ]
    assert drift.tokenize("") == []


def test_baseline_vocabulary_is_deterministic_and_truncated() -> None:
    docs = ["b a c", "a b", "a d"]
    baseline = drift.build_text_baseline(docs, max_vocabulary=2)
    assert baseline["vocabulary"] == {"a": 3, "b": 2}  # c and d tie at 1: cut alphabetically
    assert baseline["oov_count"] == 2 and baseline["token_count"] == 7 and baseline["document_count"] == 3
    assert baseline["tokenizer"] == drift.TOKENIZER
    assert drift.build_text_baseline(list(reversed(docs)), 2)["vocabulary"] == baseline["vocabulary"]


def test_same_distribution_different_samples_is_not_flagged() -> None:
    result = text_drift(corpus(SPORTS, 2000, seed=1), corpus(SPORTS, 1000, seed=2))
    assert result["documents"] == 1000
    assert result["js_distance"] < 0.05
    assert result["oov_rate"] == 0.0
    assert result["length_psi"] < 0.1
    assert flagged(result) == []


def test_different_topic_is_flagged() -> None:
    result = text_drift(corpus(SPORTS, 2000, seed=1), corpus(FINANCE, 1000, seed=2))
    assert result["js_distance"] > 0.5
    assert result["oov_rate"] > 0.5
    assert result["top_token_changes"][0]["token"] == "<out of vocabulary>"
    assert set(flagged(result)) == {"js_distance", "oov_rate"}


def test_longer_documents_shift_the_length_distribution() -> None:
    result = text_drift(corpus(SPORTS, 2000, seed=1), corpus(SPORTS, 1000, seed=3, length=(40, 80)))
    assert result["js_distance"] < 0.1 and result["oov_rate"] == 0.0
    assert result["length_psi"] > 1.0
    assert flagged(result) == ["length_psi"]


def test_js_distance_matches_scipy_over_vocabulary_plus_oov() -> None:
    reference = ["a a b c", "b c d"]
    baseline = drift.build_text_baseline(reference, max_vocabulary=3)  # a, b, c; d is OOV
    accumulator = drift.TextDrift(baseline)
    accumulator.update(["A b e", "e e c"])
    result = accumulator.result()
    # baseline: a 2, b 2, c 2, oov 1; current: a 1, b 1, c 1, oov 3
    assert result["js_distance"] == pytest.approx(jensenshannon([2, 2, 2, 1], [1, 1, 1, 3], base=2))
    assert result["oov_rate"] == pytest.approx(0.5)
    assert result["baseline_oov_rate"] == pytest.approx(1 / 7)


def test_empty_documents_and_no_data() -> None:
    accumulator = drift.TextDrift(drift.build_text_baseline(["x y", "y z"]))
    assert accumulator.result()["status"] == "no_data"
    accumulator.update(["", "!!!"])
    result = accumulator.result()
    assert result["documents"] == 2 and result["empty_documents"] == 2 and result["tokens"] == 0
    assert result["js_distance"] is None and result["oov_rate"] is None


def test_load_text_baseline_from_a_corpus_or_a_vocabulary(tmp_path) -> None:
    docs = corpus(SPORTS, 50, seed=4)
    (tmp_path / "corpus.txt").write_text("\n".join(docs) + "\n\n", encoding="utf-8")
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"text": d}) if i % 2 else json.dumps(d) for i, d in enumerate(docs)), encoding="utf-8"
    )
    from_txt = drift.load_text_baseline(tmp_path / "corpus.txt")
    from_jsonl = drift.load_text_baseline(tmp_path / "corpus.jsonl")
    assert from_txt == from_jsonl == drift.build_text_baseline(docs)
    (tmp_path / "vocabulary.json").write_text(json.dumps(from_txt), encoding="utf-8")
    assert drift.load_text_baseline(tmp_path / "vocabulary.json") == from_txt


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{", "not valid JSON"),
        ("bad.json", '{"vocabulary": {}}', "vocabulary is empty"),
        ("bad.json", '{"vocabulary": {"a": 1}}', "length statistics"),
        ("bad.jsonl", '{"other": 1}', "line 1 has no text"),
        ("empty.txt", "\n\n", "no document"),
    ],
)
def test_unusable_text_baselines(tmp_path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(drift.BaselineError, match=message):
        drift.load_text_baseline(tmp_path / name)
