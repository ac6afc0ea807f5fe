"""Text features of a tabular model, end to end: the training baseline step (the example's
preprocess.py) describes them, the deployed monitoring step's own arguments run the job on a
window, and the calibrated decision flags a seeded text shift but not a window without one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_platform.pipelines import monitoring_definition as definition
from monitoring import decision, drift, monitor
from test_monitoring_definition import local_arguments, spec
from test_monitoring_text import FINANCE, SPORTS, corpus
from training.example_classifier import preprocess

ROWS = 600


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), max_size=12))
@settings(max_examples=200, deadline=None)
def test_bulk_tokenizing_is_tokenizing_each_document(documents):
    codes, distinct, lengths = drift.tokenize_documents(documents)
    expected = [drift.tokenize(document) for document in documents]
    assert list(distinct[codes]) == [token for words in expected for token in words]
    assert lengths.tolist() == [len(words) for words in expected]


def test_the_training_baseline_of_a_text_column_is_the_jobs_own_text_baseline():
    documents = corpus(SPORTS, 400, seed=1) + ["", "Ünïcode ÇA va?", "snake_case 42"]
    trained = preprocess.text_statistics(pd.Series(documents), max_vocabulary=30)
    job = drift.build_text_baseline(documents, max_vocabulary=30)
    for key in ("type", "tokenizer", "document_count", "token_count", "vocabulary", "oov_count"):
        assert trained[key] == job[key], key
    assert trained["length"]["histogram"] == job["length"]["histogram"]
    assert list(trained["vocabulary"]) == list(job["vocabulary"])  # same order: count, then alphabetical


def test_a_baseline_of_another_tokenizer_is_refused():
    baseline = drift.build_text_baseline(["a b", "c"])
    with pytest.raises(drift.BaselineError, match="tokenizer"):
        drift.TextDrift(dict(baseline, tokenizer="whitespace-v0"), "review")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The training baseline of a data set with a numeric and a text column, written by the real
    preprocess step with the arguments the training stack gives it for a monitored text feature."""
    root = tmp_path_factory.mktemp("training")
    rng = np.random.default_rng(11)
    data = pd.DataFrame({"amount": rng.normal(size=2000), "review": corpus(SPORTS, 2000, seed=12)})
    data["target"] = (data["amount"] > 0).astype(int)
    data.to_csv(root / "raw.csv", index=False)
    assert preprocess.main(["--input-dir", str(root), "--output-dir", str(root / "out"),
                            "--text-features", "review"]) == 0
    return root / "out" / "baseline"


def test_the_training_baseline_describes_the_text_feature(trained):
    baseline = json.loads((trained / "baseline.json").read_text())
    assert baseline["feature_names"] == ["amount", "review"]
    review = baseline["features"]["review"]
    assert review["type"] == "text" and review["tokenizer"] == drift.TOKENIZER
    assert review["document_count"] == baseline["row_count"] and "match" in review["vocabulary"]
    drift.validate_baseline(baseline)


def capture_window(root: Path, topic: list, seed: int) -> None:
    """A window of CSV rows (amount, review) and JSON named rows, half each."""
    rng = np.random.default_rng(seed)
    amounts = rng.normal(size=ROWS)
    reviews = corpus(topic, ROWS, seed=seed + 1)
    lines = []
    for i in range(ROWS):
        if i % 2:
            request = {"observedContentType": "text/csv", "mode": "INPUT", "encoding": "CSV",
                       "data": f"{amounts[i]!r},{reviews[i]}"}
        else:
            request = {"observedContentType": "application/json", "mode": "INPUT", "encoding": "JSON",
                       "data": json.dumps({"instances": [{"amount": amounts[i], "review": reviews[i]}]})}
        response = {"observedContentType": "text/csv", "mode": "OUTPUT", "encoding": "CSV", "data": "0.5"}
        lines.append(json.dumps({"captureData": {"endpointInput": request, "endpointOutput": response},
                                 "eventMetadata": {"eventId": f"e{i}", "inferenceTime": f"2024-05-01T12:{i % 60:02d}:00Z"},
                                 "eventVersion": "0"}))
    path = root / "input" / "capture" / "v1" / "2024" / "05" / "01" / "12" / "part.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    (root / "input" / "ground_truth").mkdir(parents=True)


def run_deployed_step(trained: Path, root: Path, topic: list, seed: int) -> dict:
    """The monitoring pipeline's step for an endpoint with the text feature, its container
    arguments run here on a job directory holding the champion's baseline and the window."""
    (step,) = definition.build_definition(spec(1, text_features=("review",)))["Steps"]
    shutil.copytree(trained, root / "input" / "baseline")
    capture_window(root, topic, seed)
    assert monitor.main(local_arguments(step, root)) == 0
    return json.loads((root / "output" / "report.json").read_text())


def test_the_deployed_step_flags_a_text_shift_and_not_a_window_without_one(trained, tmp_path):
    quiet = run_deployed_step(trained, tmp_path / "quiet", SPORTS, seed=21)
    review = quiet["drift"]["all"]["features"]["review"]
    assert review["documents"] == ROWS and set(review["tests"]) == {"tokens", "oov", "length"}
    assert quiet["decision"]["drifted"] == [] and not review["drifted"]
    assert {t["name"] for t in quiet["decision"]["drift_tests"]} >= {"review.tokens", "review.oov", "review.length"}
    assert quiet["decision"]["untested"] == [entry for entry in quiet["decision"]["untested"] if "review" not in entry]

    shifted = run_deployed_step(trained, tmp_path / "shifted", SPORTS[:6] + FINANCE, seed=31)
    review = shifted["drift"]["all"]["features"]["review"]
    assert "_all:review.tokens" in shifted["decision"]["drifted"] and "_all:review.oov" in shifted["decision"]["drifted"]
    assert review["drifted"] and review["decision"]["decision"] == "drifted"
    assert not shifted["drift"]["all"]["features"]["amount"]["drifted"]
    assert shifted["summary"]["text_drifted"] and shifted["summary"]["drifted_features"] == ["review"]
    metrics = {(m["MetricName"], tuple(d["Value"] for d in m["Dimensions"])): m["Value"]
               for m in json.loads((tmp_path / "shifted" / "output" / "cloudwatch_metrics.json").read_text())}
    assert metrics[("DriftDetected", ("ep", "_all"))] == 1  # the drift alarm's metric
    assert metrics[("OOVRate", ("ep", "_all", "review"))] == pytest.approx(review["oov_rate"])
    assert metrics[("TextJSDistance", ("ep", "_all", "review"))] > 0.1
    assert "Text features" in (tmp_path / "shifted" / "output" / "report.html").read_text()


def test_a_champion_baseline_without_the_text_feature_is_reported_untested(tmp_path, build):
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 1))
    baseline = tmp_path / "baseline"
    build.write_lines(baseline / "baseline.json", [json.dumps(build.make_baseline(train, ["amount"]))])
    (step,) = definition.build_definition(spec(1, text_features=("review",)))["Steps"]
    root = tmp_path / "job"
    shutil.copytree(baseline, root / "input" / "baseline")
    (root / "input" / "ground_truth").mkdir(parents=True)
    (root / "input" / "capture").mkdir(parents=True)
    assert monitor.main(local_arguments(step, root)) == 0
    untested = json.loads((root / "output" / "report.json").read_text())["decision"]["untested"]
    assert any("text feature 'review'" in entry for entry in untested)


def test_whole_document_requests_are_the_one_text_feature():
    baseline = {"feature_names": ["text"], "features": {"text": drift.build_text_baseline(corpus(SPORTS, 300, 1))}}
    accumulator = drift.DriftAccumulator(baseline)
    record = type("Record", (), {"inputs": corpus(FINANCE, 5, 2), "outputs": [], "file": "f", "line": 1})
    accumulator.update([record])
    assert accumulator.rows == 5 and accumulator.unmonitored_documents == 0
    assert accumulator.result()["features"]["text"]["documents"] == 5


def test_text_tests_keep_the_false_page_rate_on_drift_free_windows():
    """At a budget loose enough to measure (alpha 5 % per window), drift-free windows of 300
    documents page at about alpha: the design effect accounts for tokens clustered in documents."""
    policy = decision.parse_policy({"false_pages": 36, "min_rows": 100})
    baseline = drift.build_text_baseline(corpus(SPORTS, 3000, seed=40))
    paged = 0
    windows = 60
    for seed in range(windows):
        text = drift.TextDrift(baseline, "review")
        text.update(corpus(SPORTS, 300, seed=100 + seed))
        tests = decision.scope_tests("_all", text.test_inputs(), policy)
        paged += bool(decision.decide_window(tests, [], policy, intervals=False)["drifted"])
    assert paged / windows <= 0.1


def test_text_counts_merge_like_one_pass():
    """Workers and shards each count part of a window; merged, the tests see one pass's counts."""
    baseline = drift.build_text_baseline(corpus(SPORTS, 500, seed=3))
    documents = corpus(SPORTS + FINANCE, 200, seed=4) + [None, "", "Ünïcode ça"]
    whole, first, second = (drift.TextDrift(baseline, "review") for _ in range(3))
    whole.update(documents)
    first.update(documents[:90])
    second.update(documents[90:])
    first.merge(second)
    assert first.test_inputs() == whole.test_inputs()
    assert first.result() == whole.result() and whole.result()["missing"] == 1
