"""Drift statistics: hand-computed PSI, and scipy where it has the test (KS, chi-square, JS)."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from monitoring import drift
from monitoring.capture import CaptureRecord, Issues, Prediction


def numeric(train: np.ndarray, build) -> drift.NumericDrift:
    return drift.NumericDrift("x", build.feature_statistics(train))


# --- PSI ------------------------------------------------------------------------------------


def test_psi_hand_computed() -> None:
    # baseline 25/25/25/25 %, current 10/20/30/40 %:
    # (0.1-0.25)ln(0.1/0.25) + (0.2-0.25)ln(0.2/0.25) + (0.3-0.25)ln(0.3/0.25) + (0.4-0.25)ln(0.4/0.25)
    expected = 0.15 * math.log(2.5) + 0.05 * math.log(1.25) + 0.05 * math.log(1.2) + 0.15 * math.log(1.6)
    assert drift.psi([25, 25, 25, 25], [10, 20, 30, 40]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.2282, abs=1e-4)
    assert drift.psi([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-15)


def test_psi_empty_bin_uses_epsilon() -> None:
    # current puts everything in bin 1, nothing in bin 2: its proportion 0 becomes 1e-4 (the
    # proportions are not renormalised)
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert drift.psi([50, 50], [75, 0]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.6043, abs=1e-4)
    assert drift.psi([50, 50], [75, 0], epsilon=1e-6) > drift.psi([50, 50], [75, 0])


def test_numeric_psi_over_the_baseline_deciles(build) -> None:
    train = np.arange(1000, dtype=float)  # deciles at 0, 99.9, ..., 999: 100 rows per bin
    feature = numeric(train, build)
    assert feature.baseline_counts.tolist() == [100] * 10
    current = np.concatenate([np.full(500, 50.0), np.full(500, 950.0)])  # half in bin 0, half in bin 9
    feature.update(current)
    result = feature.result()
    assert result["histogram"]["current_counts"] == [500] + [0] * 8 + [500]
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert result["psi"] == pytest.approx(expected)


def test_values_outside_the_training_range_go_to_the_end_bins_and_are_reported(build) -> None:
    feature = numeric(np.arange(100, dtype=float), build)
    feature.update(np.array([-5.0, 0.0, 50.0, 99.0, 120.0, 130.0]))
    result = feature.result()
    assert result["below_min"] == 1 and result["above_max"] == 2
    assert result["out_of_range_fraction"] == pytest.approx(3 / 6)
    counts = result["histogram"]["current_counts"]
    assert counts[0] == 2 and counts[-1] == 3 and sum(counts) == 6  # 99 is the max: last bin


def test_constant_feature(build) -> None:
    feature = numeric(np.full(50, 3.0), build)
    assert feature.edges.tolist() == [3.0, 3.0]
    feature.update(np.full(10, 3.0))
    assert feature.result()["psi"] == pytest.approx(0.0)
    assert feature.result()["ks_statistic"] == pytest.approx(0.0)
    feature.update(np.full(10, 4.0))
    result = feature.result()
    assert result["psi"] == pytest.approx(0.0)  # one bin: PSI cannot see it ...
    assert result["out_of_range_fraction"] == pytest.approx(0.5)  # ... the range check does
    assert result["ks_statistic"] == pytest.approx(0.5)


def test_missing_and_invalid_values(build) -> None:
    feature = numeric(np.arange(10, dtype=float), build)
    feature.update(np.array([1.0, np.nan, np.inf, -np.inf]))
    feature.update([2, None, "", "abc", "3.5", True])
    result = feature.result()
    assert result["count"] == 4  # 1.0, 2, "3.5", True
    assert result["missing"] == 3 and result["invalid"] == 3
    assert result["missing_fraction"] == pytest.approx(6 / 10)
    assert result["mean"] == pytest.approx((1 + 2 + 3.5 + 1) / 4)


def test_no_data() -> None:
    feature = drift.NumericDrift("x", {"histogram": {"bin_edges": [0, 1], "counts": [5]}})
    result = feature.result()
    assert result["status"] == "no_data" and result["psi"] is None and result["ks_statistic"] is None


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"histogram": {"bin_edges": [0], "counts": []}},
        {"histogram": {"bin_edges": [0, 1, 1], "counts": [1, 1]}},
        {"histogram": {"bin_edges": [0, 1], "counts": [1, 2]}},
        {"histogram": {"bin_edges": [0, "x"], "counts": [1]}},
        {"histogram": {"bin_edges": [0, 1], "counts": [0]}},
    ],
)
def test_unusable_numeric_baseline(spec: dict) -> None:
    with pytest.raises(drift.BaselineError, match="feature 'x'"):
        drift.NumericDrift("x", spec)


# --- KS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_current", "size"),
    [
        (lambda rng, n: rng.normal(0.0, 1.0, n), 3000),  # same distribution
        (lambda rng, n: rng.normal(0.3, 1.0, n), 3000),  # shifted
        (lambda rng, n: rng.normal(0.0, 2.0, n), 2000),  # wider
        (lambda rng, n: rng.normal(5.0, 1.0, n), 500),  # far outside the training range
        (lambda rng, n: rng.exponential(1.0, n), 4000),  # another shape
    ],
)
def test_ks_bracket_contains_scipy_ks_2samp(build, make_current, size: int) -> None:
    rng = np.random.default_rng(11)
    train = rng.normal(0.0, 1.0, 5000)
    current = make_current(rng, size)
    feature = numeric(train, build)
    for chunk in np.array_split(current, 7):
        feature.update(chunk)
    result = feature.result()
    exact = ks_2samp(train, current).statistic
    assert result["ks_statistic"] <= exact + 1e-12
    assert exact <= result["ks_upper_bound"] + 1e-12
    # the bracket is no wider than one bin's mass in either sample
    assert result["ks_upper_bound"] - result["ks_statistic"] <= 0.1 + max(result["histogram"]["current_counts"]) / size


def test_ks_is_exact_when_the_knots_hold_every_value(build) -> None:
    # discrete data: the CDFs only step at the values 0..11; training has 400 of each of 0..9,
    # so its deciles are 0, 0.9, 1.8, ..., 8.1, 9: one edge in every (k, k+1] plus the maximum,
    # which makes the knots see every step and the binned KS exact
    rng = np.random.default_rng(3)
    train = np.repeat(np.arange(10.0), 400)
    current = rng.integers(2, 12, 3000).astype(float)
    feature = numeric(train, build)
    feature.update(current)
    result = feature.result()
    edges = feature.edges
    assert edges.size == 11 and edges[0] == 0 and edges[-1] == 9
    assert all(((edges > k) & (edges <= k + 1)).any() for k in range(9))
    assert result["ks_statistic"] == pytest.approx(ks_2samp(train, current).statistic, abs=1e-12)
    assert result["ks_statistic"] > 0.1


def test_ks_bracket_function() -> None:
    assert drift.ks_bracket([0, 0.5, 1], [0, 0.5, 1]) == (0.0, 0.5)
    # knots: gaps 0.1, 0.4, 0; between knots 1 and 2 the current CDF may already be 0.6 while
    # the baseline is still 0 (0.6), between 2 and 3 it may be 1.0 while the baseline is 0.2 (0.8)
    low, high = drift.ks_bracket([0.0, 0.2, 1.0], [0.1, 0.6, 1.0])
    assert low == pytest.approx(0.4) and high == pytest.approx(0.8)


# --- JS distance and chi-square -------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "q"),
    [([1, 2, 3], [3, 2, 1]), ([10, 0, 5], [0, 4, 4]), ([1, 1], [1, 1]), ([1, 0], [0, 1]), ([0.2, 0.8], [500, 500])],
)
def test_js_distance_matches_scipy(p: list, q: list) -> None:
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-7)


@pytest.mark.parametrize(
    ("baseline", "current"),
    [([120, 30, 50], [100, 60, 40]), ([10, 20, 30, 40], [40, 30, 20, 10]), ([50, 50], [48, 52]), ([5, 0, 7], [3, 4, 0])],
)
def test_chi_square_matches_scipy_chi2_contingency(baseline: list, current: list) -> None:
    result = drift.chi_square(baseline, current)
    statistic, p_value, dof, _ = chi2_contingency([baseline, current], correction=False)
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(p_value)
    assert result["dof"] == dof


def test_chi_square_drops_categories_empty_in_both() -> None:
    result = drift.chi_square([5, 0, 7], [3, 0, 9])
    statistic, p_value, dof, _ = chi2_contingency([[5, 7], [3, 9]], correction=False)
    assert result["statistic"] == pytest.approx(statistic) and result["dof"] == dof == 1


def test_categorical_feature() -> None:
    feature = drift.CategoricalDrift("plan", {"type": "categorical", "counts": {"gold": 60, "silver": 30, "1": 10}})
    feature.update(["gold"] * 30 + ["silver"] * 50 + [1.0] * 10 + ["platinum"] * 10 + [None, "", float("nan")])
    result = feature.result()
    assert result["count"] == 100 and result["missing"] == 3
    assert result["categories"]["names"] == ["gold", "silver", "1", "platinum"]
    assert result["categories"]["current_counts"] == [30, 50, 10, 10]
    assert result["unseen_categories"] == 1 and result["unseen_fraction"] == pytest.approx(0.1)
    statistic, p_value, _, _ = chi2_contingency([[60, 30, 10, 0], [30, 50, 10, 10]], correction=False)
    assert result["chi2_statistic"] == pytest.approx(statistic) and result["chi2_p_value"] == pytest.approx(p_value)
    assert result["js_distance"] == pytest.approx(jensenshannon([60, 30, 10, 0], [30, 50, 10, 10], base=2))


def test_categorical_new_categories_are_capped(monkeypatch) -> None:
    monkeypatch.setattr(drift, "MAX_NEW_CATEGORIES", 3)
    feature = drift.CategoricalDrift("id", {"type": "categorical", "counts": {"a": 1}})
    feature.update([f"id-{i}" for i in range(10)])
    result = feature.result()
    assert len(result["categories"]["names"]) == 1 + 3 + 1
    assert sum(result["categories"]["current_counts"]) == 10
    assert drift.OTHER_CATEGORY in result["categories"]["names"]


# --- streaming ------------------------------------------------------------------------------


def test_streaming_and_merging_give_the_same_result_as_one_batch(build) -> None:
    rng = np.random.default_rng(5)
    train = rng.normal(size=2000)
    current = rng.normal(0.2, 1.1, 10000)
    whole = numeric(train, build)
    whole.update(current)
    streamed = numeric(train, build)
    for chunk in np.array_split(current, 13):
        streamed.update(chunk)
    left, right = numeric(train, build), numeric(train, build)
    left.update(current[:3000])
    right.update(current[3000:])
    left.merge(right)
    expected = whole.result()
    for other in (streamed.result(), left.result()):
        for key in ("psi", "ks_statistic", "ks_upper_bound", "js_distance", "mean", "std", "min", "max"):
            assert other[key] == pytest.approx(expected[key], rel=1e-9), key
        assert other["histogram"] == expected["histogram"]
    assert expected["std"] == pytest.approx(np.std(current, ddof=1))


def test_accumulator_state_does_not_grow_with_records(build) -> None:
    feature = numeric(np.arange(100.0), build)
    before = feature.cells.nbytes
    for _ in range(20):
        feature.update(np.random.default_rng(0).normal(50, 30, 5000))
    assert feature.cells.nbytes == before and feature.count == 100000


# --- predictions ----------------------------------------------------------------------------


def test_binary_prediction_drift_against_the_label_distribution() -> None:
    predictions = drift.PredictionDrift("binary", {"label_distribution": {"0": 60, "1": 40}})
    scores = [0.1] * 30 + [0.7] * 60 + [1.2]
    predictions.update([Prediction(s, None) for s in scores])
    predictions.update([Prediction(None, "1")] * 5 + [Prediction(0.9, "0")] * 4 + [Prediction(None, "cat")])
    result = predictions.result()
    classes = result["classes"]
    assert classes["current_counts"] == {"0": 30 + 4, "1": 61 + 5}
    assert classes["other_labels"] == 1
    assert classes["positive_rate"] == pytest.approx(66 / 100)
    assert classes["baseline_positive_rate"] == pytest.approx(0.4)
    assert classes["psi"] == pytest.approx(drift.psi([60, 40], [34, 66]))
    assert result["psi"] == classes["psi"]
    assert result["score_histogram"]["outside_0_1"] == 1
    assert sum(result["score_histogram"]["current_counts"]) == 95  # every finite score


def test_score_drift_with_a_prediction_baseline(build) -> None:
    rng = np.random.default_rng(2)
    spec = build.feature_statistics(rng.beta(2, 5, 3000))
    predictions = drift.PredictionDrift("binary", {"prediction": spec, "label_distribution": {"0": 1, "1": 1}})
    predictions.update([Prediction(float(s), None) for s in rng.beta(5, 2, 2000)])
    result = predictions.result()
    assert result["psi"] == result["score"]["psi"] > 1.0


def test_regression_predictions() -> None:
    predictions = drift.PredictionDrift("regression", {"label_distribution": {"0": 5, "1": 5}})
    predictions.update([Prediction(v, None) for v in (1.0, 2.0, 3.0)])
    result = predictions.result()
    assert result["psi"] is None and "classes" not in result
    assert result["score_summary"]["mean"] == pytest.approx(2.0)


# --- one variant ----------------------------------------------------------------------------


def _record(inputs: list, outputs: list, line: int = 1) -> CaptureRecord:
    return CaptureRecord(f"id-{line}", f"id-{line}", None, "ep", "v", inputs, outputs, "f.jsonl", line)


def test_drift_accumulator_maps_positional_and_named_rows(build) -> None:
    rng = np.random.default_rng(9)
    baseline = build.make_baseline(rng.normal(size=(500, 2)), ["a", "b"])
    baseline["feature_names"].append("plan")
    baseline["features"]["plan"] = {"type": "categorical", "counts": {"gold": 5, "silver": 5}}
    issues = Issues()
    accumulator = drift.DriftAccumulator(baseline, issues=issues)
    accumulator.update(
        [
            _record([[0.1, 0.2, "gold"]], [Prediction(0.9, None)], 1),
            _record([{"a": 0.3, "plan": "silver"}], [Prediction(0.2, None)], 2),
            _record([[1.0, 2.0]], [], 3),  # wrong width: rejected
            _record([], [Prediction(0.4, None)], 4),
            _record(["some text"], [Prediction(0.4, None)], 5),
        ]
    )
    result = accumulator.result()
    assert result["records"] == 5 and result["rows"] == 2 and result["rows_rejected"] == 1
    assert result["records_without_input"] == 1 and result["records_without_output"] == 1
    assert result["unmonitored_documents"] == 1
    assert result["features"]["a"]["count"] == 2
    assert result["features"]["b"]["count"] == 1 and result["features"]["b"]["missing"] == 1
    assert result["features"]["plan"]["categories"]["current_counts"] == [1, 1]
    assert result["prediction"]["count"] == 4
    assert issues.examples == [
        {"category": "rejected_row", "file": "f.jsonl", "line": 3, "reason": "row has 2 values, the baseline has 3 features"}
    ]


def test_validate_baseline() -> None:
    good = {"feature_names": ["a"], "features": {"a": {"histogram": {"bin_edges": [0, 1], "counts": [1]}}}}
    drift.validate_baseline(good)
    with pytest.raises(drift.BaselineError, match="feature_names"):
        drift.validate_baseline({"features": {}})
    with pytest.raises(drift.BaselineError, match="'b' is in feature_names but not in features"):
        drift.validate_baseline({**good, "feature_names": ["a", "b"]})
    with pytest.raises(drift.BaselineError, match="unknown type 'image'"):
        drift.validate_baseline({"feature_names": ["a"], "features": {"a": {"type": "image"}}})


# --- bulk parsing of mixed rows (issue 19: no per-value Python in the hot loop) -------------------

_RAW = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
    st.sampled_from(["", " ", "1.5", " 2 ", "nan", "inf", "-inf", "gold", "1e3", "0x10", "NaN"]),
)


@given(st.lists(_RAW, max_size=40))
@settings(max_examples=150, deadline=None)
def test_bulk_numbers_read_every_value_as_to_float_does(values):
    numbers = drift.bulk_numbers(values)
    for value, number in zip(values, numbers):
        expected, status = drift.to_float(value)
        if status == "ok":
            assert number == expected
        elif status == "missing":
            assert np.isnan(number)
        else:
            assert np.isinf(number)


@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", " a", "b", "", "1", 1, 1.0, True, 2.5]), st.floats()),
                max_size=40))
@settings(max_examples=150, deadline=None)
def test_categorical_counts_in_bulk_match_the_category_keys(values):
    feature = drift.CategoricalDrift("c", {"type": "categorical", "counts": {"a": 5, "1": 5}})
    feature.update(values)
    keys = [drift.category_key(value) for value in values]
    assert feature.missing == keys.count(None)
    assert dict(feature.counts) == dict(Counter(key for key in keys if key is not None))


def test_csv_rows_with_text_values_reach_the_accumulator_unparsed_and_are_read_in_bulk():
    from monitoring import capture

    line = json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1.5,gold,,x", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.7", "encoding": "CSV"}},
        "eventMetadata": {"eventId": "e1"}, "eventVersion": "0"})
    record = capture.parse_capture_line(line, "ep", "v", "f", 1)
    (row,) = record.inputs
    assert isinstance(row, capture.CsvRow) and row == ["1.5", "gold", "", "x"]
    baseline = {"feature_names": ["n", "c", "m", "k"], "features": {
        "n": {"histogram": {"bin_edges": [0, 1, 2], "counts": [5, 5]}},
        "c": {"type": "categorical", "counts": {"gold": 3}},
        "m": {"histogram": {"bin_edges": [0, 1, 2], "counts": [5, 5]}},
        "k": {"histogram": {"bin_edges": [0, 1, 2], "counts": [5, 5]}}}}
    accumulator = drift.DriftAccumulator(baseline)
    accumulator.update([record])
    features = accumulator.result()["features"]
    assert features["n"]["count"] == 1 and features["c"]["categories"]["current_counts"][0] == 1
    assert features["m"]["missing"] == 1 and features["k"]["invalid"] == 1


_RAW_NUMBERS = st.one_of(
    st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(-5, 5), st.booleans(), st.none(),
    st.sampled_from(["", " ", "1.5", " 2 ", "-3e2", "nan", "inf", "-inf", "abc", "1_000"]),
)


@given(st.lists(st.tuples(_RAW_NUMBERS, st.sampled_from(["gold", "silver", "", None])), min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_mixed_rows_count_numbers_as_the_value_parser_does(rows):
    """Numeric columns of mixed rows are converted in one numpy pass; what they count (bins,
    missing, invalid) is what the per-value reading (``to_float``) gives."""
    spec = {"histogram": {"bin_edges": [-1.0, 0.0, 1.0, 2.0], "counts": [1, 1, 1]}}
    baseline = {"feature_names": ["x", "tier"],
                "features": {"x": spec, "tier": {"type": "categorical", "counts": {"gold": 3, "silver": 2}}}}
    accumulator = drift.DriftAccumulator(baseline)
    accumulator._update_positional([list(row) for row in rows])
    expected = drift.NumericDrift("x", spec)
    numbers = [drift.to_float(value) for value, _ in rows]
    expected.update(np.array([n if s == "ok" else (np.nan if s == "missing" else np.inf) for n, s in numbers]))
    got = accumulator.features[0]
    assert (got.cells.tolist(), got.missing, got.invalid) == (expected.cells.tolist(), expected.missing, expected.invalid)
