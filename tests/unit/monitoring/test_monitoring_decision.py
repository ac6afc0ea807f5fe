"""The calibrated decisions (monitoring/decision.py): one fast seeded check per row of issue 19's
benchmark table (benchmarks/bench_drift.py draws the same windows; figures in benchmarks/README.md),
and the pieces: cells, Holm, accumulation, design effect, quality tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import bench_drift as bench
from monitoring import decision


@pytest.fixture(scope="module")
def scenario() -> bench.Scenario:
    return bench.Scenario()


POLICY = decision.parse_policy(None)


def pages(scenario, rows: int, windows: int, drift=None, policy=POLICY, seed: int = 5) -> float:
    return bench.run_windows(scenario, np.random.default_rng(seed), rows, windows, drift, policy)["page_share"]


# --- the table's rows -------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [300, 10_000, 1_000_000])
def test_false_pages_stay_at_the_budget_at_any_window_size(scenario, rows):
    """At a budget loose enough to measure (alpha 5 % per window), the share of drift-free windows
    that page stays at alpha from 300 to 1,000,000 rows: the reference's own size (n_eff) keeps
    huge windows calibrated, the cell rule small ones."""
    loose = decision.parse_policy({"false_pages": 36, "min_rows": 300})  # 36 / 720 = 5 %
    assert decision.window_alpha(loose) == pytest.approx(0.05)
    assert pages(scenario, rows, 150, policy=loose) <= 0.08


def test_no_drift_never_pages_at_the_default_budget(scenario):
    for rows in bench.NO_DRIFT_SIZES:
        assert pages(scenario, rows, 25) == 0.0


@pytest.mark.parametrize("name,rows,drift", bench.CASES_DETECT, ids=[c[0] for c in bench.CASES_DETECT])
def test_each_drift_of_the_table_is_flagged(scenario, name, rows, drift):
    assert pages(scenario, rows, 20, drift) >= 0.9


def test_a_shift_below_the_minimum_effect_does_not_page_even_at_a_million_rows(scenario):
    name, rows, drift = bench.CASE_BELOW_EFFECT
    assert pages(scenario, rows, 20, drift) <= 0.05


def test_small_windows_are_accumulated_not_judged_alone(scenario):
    result = bench.run_windows(scenario, np.random.default_rng(1), 100, 50, None, POLICY)
    assert result["decisions"] == 5  # ten 100-row windows per decision at min_rows 1,000


# --- the pieces --------------------------------------------------------------------------------


def test_window_alpha_is_the_page_budget_over_the_period():
    assert decision.window_alpha(POLICY) == pytest.approx(1 / 720)
    assert decision.window_alpha(decision.parse_policy({"window_hours": 6})) == pytest.approx(1 / 120)


@pytest.mark.parametrize("given_policy", [{"unknown": 1}, {"min_effect": -1}, {"false_pages": 0}, {"min_rows": "x"}])
def test_bad_policies_are_refused(given_policy):
    with pytest.raises(decision.PolicyError):
        decision.parse_policy(given_policy)


def test_the_interval_null_ignores_trivial_shifts_that_a_plain_test_flags():
    reference = np.full(10, 100_000.0)
    window = np.full(10, 100_000.0)
    window[0] += 3000
    window[-1] -= 3000  # a 0.3-point move in a million rows: real, but far below the minimum effect
    plain = decision.drift_test(reference, window, 0.0, True)
    interval = decision.drift_test(reference, window, 0.002, True)
    assert plain["p_value"] < 0.01 and interval["p_value"] > 0.5


def test_the_effect_interval_brackets_the_estimate_and_decides_like_the_p_value():
    reference = np.full(10, 2000.0)
    window = np.array([13000, 11000, 10000, 10000, 10000, 10000, 10000, 9500, 8500, 8000], dtype=float)
    test = decision.drift_test(reference, window, 0.002, True)
    low, high = decision.effect_interval(test, 1e-4)
    assert low <= test["effect"] <= high
    assert (low > 0.002) == (test["p_value"] <= 1e-4)


def test_cells_are_merged_until_each_expects_enough_rows():
    reference = np.array([1000.0] * 10)
    merged, window, groups = decision.merge_cells(reference, np.ones(10), rows=30, ordered=True)
    assert all(cell * 30 / reference.sum() >= decision.MIN_EXPECTED for cell in merged)
    assert sorted(i for g in groups for i in g) == list(range(10))
    categories = np.array([5000.0, 4000.0, 10.0, 5.0, 0.0])  # two rare, one never seen
    _, _, groups = decision.merge_cells(categories, np.ones(5), rows=1000, ordered=False)
    assert groups == [[0], [1, 2, 3], [4]]  # rare ones join the smallest common cell; unseen stays apart


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0.001, 0.2))
@settings(max_examples=60, deadline=None)
def test_holm_rejects_a_prefix_of_the_sorted_p_values_within_bonferroni_bounds(p_values, alpha):
    rejected = decision.holm(p_values, alpha)
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    flags = [rejected[i] for i in order]
    assert flags == sorted(flags, reverse=True)  # rejections are the smallest p-values
    assert all(p_values[i] <= alpha for i, r in enumerate(rejected) if r)
    assert all(rejected[i] for i, p in enumerate(p_values) if p <= alpha / len(p_values))


def test_accumulation_carries_small_windows_and_drops_a_carry_of_another_baseline():
    small = {"_all": {"f": {"reference": [50.0, 50.0], "window": [30.0, 30.0], "ordered": True}}}
    policy = decision.parse_policy({"min_rows": 100})
    decide, carry, notes = decision.accumulate(None, small, {"_all": 60}, "base-1", policy)
    assert decide == {} and notes["_all"]["state"] == "accumulating" and carry["scopes"]["_all"]["rows"] == 60
    decide, carry, notes = decision.accumulate(carry, small, {"_all": 60}, "base-1", policy)
    assert decide["_all"]["f"]["window"] == [60.0, 60.0] and notes["_all"]["rows"] == 120 and not carry["scopes"]
    decide, _, notes = decision.accumulate({**carry, "scopes": {"_all": {"windows": 1, "rows": 60,
                                                                         "inputs": small["_all"]}}},
                                           small, {"_all": 60}, "base-2", policy)
    assert decide == {} and notes["_all"]["rows"] == 60  # another baseline: the carry is dropped


def test_design_effect_grows_when_tokens_cluster_in_documents():
    rng = np.random.default_rng(3)
    documents = 200
    # independent tokens vs each document repeating one token: same shares, clustered counts
    independent = np.zeros((documents, 2))
    clustered = np.zeros((documents, 2))
    for d in range(documents):
        independent[d] = np.bincount(rng.integers(0, 2, 20), minlength=2)
        clustered[d, rng.integers(0, 2)] = 20
    effects = []
    for per_document in (independent, clustered):
        lengths = per_document.sum(axis=1)
        clustering = {"documents": documents, "cell_squares": (per_document ** 2).sum(axis=0).tolist(),
                      "cell_by_length": (per_document * lengths[:, None]).sum(axis=0).tolist(),
                      "length_squares": float((lengths ** 2).sum())}
        effects.append(decision.design_effect(per_document.sum(axis=0), clustering))
    assert effects[0] < 1.5 and effects[1] > 10  # one cluster of 20 identical tokens ~ a deff of 20


def test_quality_tests_page_on_the_interval_not_the_point_estimate():
    few = {"auc": 0.78, "auc_se": 0.05}  # below an 0.8 target, but a handful of labels
    many = {"auc": 0.78, "auc_se": 0.004}
    assert decision.quality_test("auc_min", 0.8, few)["p_value"] > 0.3
    assert decision.quality_test("auc_min", 0.8, many)["p_value"] < 1e-5
    confusion = {"tp": 400, "fp": 100, "fn": 100, "tn": 400}  # F1 0.8, u = TP / (TP + FP + FN) = 2/3
    f1 = decision.quality_test("f1_min", 0.85, {"confusion": confusion})
    assert f1["estimate"] == pytest.approx(0.8) and f1["p_value"] < 0.01
    low, high = decision.quality_interval(f1, 0.001)
    assert low < 0.8 < high < 0.85
    errors = {"squared_error": {"count": 400, "mean": 1.21, "std": 1.5}}
    assert decision.quality_test("rmse_max", 1.0, errors)["p_value"] < 0.01
    assert decision.quality_test("rmse_max", 1.2, errors)["p_value"] > 0.3


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=2, max_size=12))
@settings(max_examples=80, deadline=None)
def test_pearson_is_scipys_chi2_contingency(cells):
    from scipy.stats import chi2_contingency

    reference, window = (np.array(column, dtype=float) for column in zip(*cells))
    statistic, dof = decision.pearson(reference, window)
    table = np.vstack([reference, window])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        assert (statistic, dof) == (0.0, 0)
    else:
        expected, _, expected_dof, _ = chi2_contingency(table, correction=False)
        assert statistic == pytest.approx(expected) and dof == expected_dof
