"""The anytime-valid test: the confidence sequence's numbers, its coverage at every look, the outcomes."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from mlops_runtime.domain.experiments import ArmStats, ExperimentController, ExperimentError, ExperimentState, Guardrails, ThompsonSampling
from mlops_runtime.domain.sequential_test import (
    MIXTURE_SHAPE,
    SequentialTest,
    confidence_sequence,
    log_mixture,
    log_mixture_floor,
    lowest_difference,
    mixture_bounds,
)

NUMPY = SimpleNamespace(log=np.log, exp=np.exp, sqrt=np.sqrt, lgamma=special.gammaln,
                        maximum=np.maximum, minimum=np.minimum, where=np.where)


def log_mixture(p: float, reward_sum: float, n: int, k: float = MIXTURE_SHAPE) -> float:
    """log M_n(p) of the module docstring, written out independently."""
    return (n * p + k * math.log(k) - math.lgamma(k) + math.lgamma(reward_sum + k)
            - (reward_sum + k) * math.log(n * p + k))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 2_000_000), share=st.floats(0, 1), alpha=st.sampled_from([0.001, 0.025, 0.05, 0.2]))
def test_the_bounds_are_where_the_mixture_crosses_one_over_alpha(n, share, alpha):
    reward_sum = share * n
    lower, upper = mixture_bounds(reward_sum, n, alpha)
    mean = reward_sum / n
    assert lower <= mean <= upper  # the mixture is <= 1 at the observed mean
    threshold = math.log(1 / alpha)
    for bound, inside in ((lower, min(mean, upper)), (upper, max(mean, lower))):
        if 0.0 < bound < 1.0:
            assert log_mixture(bound, reward_sum, n) == pytest.approx(threshold, abs=1e-6)
            assert log_mixture(0.5 * (bound + inside), reward_sum, n) < threshold + 1e-9


def test_the_bounds_match_a_root_finder_and_the_vectorised_form():
    cases = [(50, 1000), (5000, 100_000), (0, 200), (3000, 10_000), (999, 1000), (0.4, 3)]
    sums, counts = np.array([c[0] for c in cases], float), np.array([c[1] for c in cases], float)
    low_v, high_v = mixture_bounds(sums, counts, 0.025, xp=NUMPY)
    for index, (reward_sum, n) in enumerate(cases):
        lower, upper = mixture_bounds(reward_sum, n, 0.025)
        assert (lower, upper) == pytest.approx((low_v[index], high_v[index]), abs=1e-12)
        crossing = lambda p: log_mixture(p, reward_sum, n) - math.log(40)  # noqa: E731
        if lower > 0:
            assert lower == pytest.approx(optimize.brentq(crossing, 1e-15, reward_sum / n), abs=1e-9)
        if upper < 1:
            assert upper == pytest.approx(optimize.brentq(crossing, reward_sum / n, 1 - 1e-15), abs=1e-9)


def test_no_data_is_the_whole_range_and_more_data_narrows_it():
    assert confidence_sequence(ArmStats("a", 0, 0.0), 0.05) == (0.0, 1.0)
    widths = [np.subtract(*confidence_sequence(ArmStats("a", n, 0.05 * n), 0.05)[::-1]) for n in (10**3, 10**4, 10**5)]
    assert widths[0] > widths[1] > widths[2] > 0
    # at 100,000 predictions converting 5 %: about +/-0.25 point (a fixed-horizon 95 % interval: +/-0.14)
    assert 0.002 < widths[2] / 2 < 0.003


def test_coverage_holds_at_every_look_at_once():
    """2,000 seeded paths of a 5 % arm, a look after every 50 rewards up to 50,000: the share of
    paths whose interval ever misses the true rate stays below alpha (Ville's inequality)."""
    rng = np.random.default_rng(16)
    paths, looks, per_look, rate, alpha = 2000, 1000, 50, 0.05, 0.05
    sums = np.cumsum(rng.binomial(per_look, rate, size=(paths, looks)), axis=1).astype(float)
    counts = np.broadcast_to(per_look * np.arange(1, looks + 1, dtype=float), sums.shape)
    lower, upper = mixture_bounds(sums, counts, alpha, xp=NUMPY)
    ever_missed = ((lower > rate) | (upper < rate)).any(axis=1).mean()
    assert ever_missed <= alpha
    assert ever_missed > 0.0005  # and the interval is not trivially wide: some paths do leave it


def brute_lowest_difference(sum_i, n_i, sum_j, n_j, budget):
    """min p_i - p_j with log M_i(p_i) + log M_j(p_j) <= budget, by a fine search over p_i."""
    best = math.inf
    grid = np.linspace(0.0, 1.0, 20001)
    f_i = np.array([log_mixture(p, sum_i, n_i) for p in grid])
    for p_i, value in zip(grid, f_i):
        rest = budget - value
        if rest < log_mixture_floor(sum_j, n_j) if n_j else rest < 0:
            continue
        upper_j = mixture_bounds(sum_j, n_j, math.exp(-rest))[1]
        best = min(best, p_i - upper_j)
    return best


@pytest.mark.parametrize("sum_i,n_i,sum_j,n_j", [
    (600, 10_000, 500, 10_000), (30, 400, 70, 500), (0, 300, 20, 300), (40, 200, 200, 200), (5, 50, 0, 80),
])
def test_the_lowest_difference_in_the_region_matches_a_search(sum_i, n_i, sum_j, n_j):
    budget = math.log(20)
    found = lowest_difference(sum_i, n_i, sum_j, n_j, budget)
    assert found == pytest.approx(brute_lowest_difference(sum_i, n_i, sum_j, n_j, budget), abs=2e-4)
    vectorised = lowest_difference(np.array([sum_i], float), np.array([n_i], float), np.array([sum_j], float),
                                   np.array([n_j], float), np.array([budget]), xp=NUMPY)
    assert vectorised[0] == pytest.approx(found, abs=1e-9)


def test_the_joint_region_is_narrower_along_a_difference_than_per_arm_intervals():
    decision = decide((100_000, 5000), (100_000, 6000))
    (difference,) = decision.differences
    per_arm = [confidence_sequence(ArmStats(a, 100_000, s), 0.025) for a, s in (("a", 6000), ("b", 5000))]
    union_lower = per_arm[0][0] - per_arm[1][1]
    assert difference.lower > union_lower + 0.001  # 0.0062 vs 0.0051


def decide(*arms: tuple[int, float], **test) -> object:
    stats = [ArmStats(name, n, s) for name, (n, s) in zip(("champion", "challenger", "third"), arms)]
    return SequentialTest(**test).decide(stats, champion="champion", looks=7, elapsed_seconds=3 * 86_400)


def test_a_winner_beats_every_other_arm_by_more_than_the_minimum_effect():
    decision = decide((100_000, 5000), (100_000, 6500), (100_000, 5100), min_effect=0.005)
    assert decision.outcome == "winner" and decision.arm == "challenger" == decision.winner
    assert decision.winner_statistic > 0.005 and decision.looks == 7
    assert [d.other for d in decision.differences] == ["champion", "third"]
    assert decision.final_weights(["champion", "challenger", "third"]) == {"champion": 0.0, "challenger": 1.0, "third": 0.0}
    # the same data, but the effect that matters is larger than the data can show: not a winner
    assert decide((100_000, 5000), (100_000, 6000), min_effect=0.01).outcome == "keep_running"


def test_no_meaningful_difference_keeps_the_champion():
    decision = decide((200_000, 10_000), (200_000, 10_100), min_effect=0.005)
    assert decision.outcome == "no_meaningful_difference" and decision.arm == "champion"
    assert decision.winner is None and decision.equivalence_statistic < 0.005
    assert decision.leader == "challenger"
    assert "'champion' is kept" in decision.reason


def test_limits_end_an_undecided_test_and_say_why():
    by_sample = decide((5000, 250), (5000, 260), max_invocations=10_000)
    assert by_sample.outcome == "stopped_at_limit" and by_sample.arm == "champion"
    assert "maximum sample reached (10000 >= 10000 matured predictions)" in by_sample.reason
    by_time = decide((5000, 250), (5000, 260), max_duration_seconds=2 * 86_400)
    assert by_time.outcome == "stopped_at_limit" and "maximum duration reached (3.00 of 2.00 days)" in by_time.reason
    assert decide((5000, 250), (5000, 260), max_invocations=10_001).outcome == "keep_running"
    # a clear winner wins even at the limit
    assert decide((50_000, 2500), (50_000, 4000), max_invocations=1000).outcome == "winner"


def test_the_decision_is_a_plain_record():
    record = decide((100_000, 5000), (100_000, 6000)).to_dict()
    assert record["outcome"] == "winner" and record["arm"] == "challenger"
    assert record["arms"][0] == {"arm": "champion", "invocations": 100_000, "reward_sum": 5000.0, "mean": 0.05,
                                 "lower": pytest.approx(0.04753, abs=1e-5), "upper": pytest.approx(0.05255, abs=1e-5)}
    assert record["differences"][0]["arm"] == "challenger" and record["alpha"] == 0.05


@pytest.mark.parametrize("bad,message", [
    ({"alpha": 0}, "alpha must be in"), ({"alpha": 1.0}, "alpha must be in"), ({"min_effect": -0.1}, "min_effect"),
    ({"max_invocations": 0}, "max_invocations"), ({"max_invocations": 1.5}, "max_invocations"),
    ({"max_duration_seconds": 0}, "max_duration_seconds"), ({"min_effect": math.nan}, "min_effect"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(ExperimentError, match=message):
        SequentialTest(**bad)


def test_the_arms_must_be_an_experiment():
    with pytest.raises(ExperimentError, match="two or more distinct arms"):
        SequentialTest().decide([ArmStats("a", 10, 1)], champion="a", looks=1)
    with pytest.raises(ExperimentError, match="champion 'z' is not one of the arms"):
        SequentialTest().decide([ArmStats("a", 10, 1), ArmStats("b", 10, 1)], champion="z", looks=1)


def test_the_controller_ends_without_a_winner_by_keeping_the_champion():
    controller = ExperimentController(ThompsonSampling(), Guardrails(min_observations=10), SequentialTest())
    state = ExperimentState.start(["challenger", "champion"])
    stats = [ArmStats("challenger", 200_000, 10_050), ArmStats("champion", 200_000, 10_000)]
    result = controller.step(state, stats, now=10.0, rng=random.Random(0), champion="champion")
    assert result.decided and result.winner is None and result.decision.outcome == "no_meaningful_difference"
    assert result.weights == {"challenger": 0.0, "champion": 1.0} and result.moved
    assert result.state.outcome == "no_meaningful_difference" and result.state.kept_arm == "champion"
    later = controller.step(result.state, stats, now=20.0, rng=random.Random(0), champion="champion")
    assert not later.moved and later.decision is None and later.state == result.state


def test_contenders_keep_their_floor_until_shown_worse():
    controller = ExperimentController(ThompsonSampling(), Guardrails(min_observations=10, max_step=1.0), SequentialTest(),
                                      contender_share=0.2)
    state = ExperimentState.start(["champion", "runner_up", "far_behind"])
    # runner_up: close to the leader (not shown worse); far_behind: worse by far more than 0.5 point
    stats = [ArmStats("champion", 20_000, 1200), ArmStats("runner_up", 20_000, 1100), ArmStats("far_behind", 20_000, 400)]
    result = controller.step(state, stats, now=1.0, rng=random.Random(3), champion="champion")
    assert result.decision.outcome == "keep_running"
    assert [d.other for d in result.decision.differences if d.lower > 0.005] == ["far_behind"]
    assert result.weights["runner_up"] == pytest.approx(0.2) and result.weights["far_behind"] == pytest.approx(0.05)
    plain = ExperimentController(ThompsonSampling(), Guardrails(min_observations=10, max_step=1.0), SequentialTest())
    assert plain.step(state, stats, now=1.0, rng=random.Random(3), champion="champion").weights["runner_up"] < 0.2
    with pytest.raises(ExperimentError, match="contender_share"):
        ExperimentController(ThompsonSampling(), contender_share=1.0)
