"""Bandit experiments: statistics, posteriors, strategies, guardrails, controller."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, special
from scipy import stats as scipy_stats

from mlops_runtime.domain import experiments
from mlops_runtime.domain.sequential_test import SequentialTest
from mlops_runtime.domain.experiments import (
    UCB1,
    ArmStats,
    Decision,
    EpsilonGreedy,
    ExperimentController,
    ExperimentError,
    ExperimentState,
    FixedSplit,
    Guardrails,
    ImpossibleStatistics,
    Posterior,
    ThompsonSampling,
    apply_guardrails,
    beta_ppf,
    betainc,
    posterior,
    probability_best,
    summarize,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def arms(*pairs: tuple[int, float]) -> list[ArmStats]:
    return [ArmStats(f"arm{i}", n, s) for i, (n, s) in enumerate(pairs)]


# --- Arm statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("b", -1, 0.0), r"arm 'b': invocations must be >= 0, got -1"),
        (("b", 100, 120.0), r"arm 'b': reward_sum 120\.0 is outside \[0\.0, 100\.0\] for 100 invocations"),
        (("b", 100, -0.5), r"reward_sum -0\.5 is outside"),
        (("b", 0, 1.0), r"reward_sum 1\.0 is outside \[0\.0, 0\.0\]"),
        (("b", 100, float("nan")), r"arm 'b': reward_sum must be finite, got nan"),
        (("b", 100, float("inf")), r"must be finite"),
        (("b", float("nan"), 1.0), r"invocations must be a whole number, got nan"),
        (("b", 10.5, 1.0), r"whole number, got 10\.5"),
        (("b", True, 1.0), r"invocations must be a number"),
        (("b", "10", 1.0), r"invocations must be a number"),
        (("b", 10, None), r"reward_sum must be a number"),
        (("", 10, 1.0), r"arm name must be a non-empty string"),
        (("b", 10, 4.0, 5.0), r"reward_sq_sum 5\.0 is outside"),  # r^2 <= r
        (("b", 10, 4.0, 1.0), r"reward_sq_sum 1\.0 is outside"),  # sum r^2 >= (sum r)^2 / n = 1.6
        (("b", 10, 4.0, float("nan")), r"reward_sq_sum must be finite"),
        (("b", 10, 10**400), r"reward_sum must be finite"),
        (("b", 2**53 + 1, 1.0), r"exceed 2\*\*53"),
    ],
)
def test_impossible_statistics_are_rejected_with_the_arm_and_values(arguments, message):
    with pytest.raises(ImpossibleStatistics, match=message) as raised:
        ArmStats(*arguments)
    assert isinstance(raised.value, ValueError)


def test_statistics_accept_whole_float_counts_and_clamp_rounding():
    stats = ArmStats("a", 1000.0, 1000.0000000001, 1000.0)
    assert stats.invocations == 1000 and isinstance(stats.invocations, int)
    assert stats.reward_sum == 1000.0
    assert ArmStats("a", 3, 1.5, 0.75 - 1e-15).reward_sq_sum == 0.75  # (sum)^2 / n, up to rounding
    assert ArmStats("a", 0, 0.0).mean_reward is None
    assert ArmStats("a", 4, 1.0).mean_reward == 0.25
    rewards = [0.1, 0.5, 0.9, 0.3]
    with_squares = ArmStats("a", 4, sum(rewards), sum(r * r for r in rewards))
    assert with_squares.reward_variance == pytest.approx(np.var(rewards, ddof=1))


numbers = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.text(max_size=2),
)


@FAST
@given(numbers, numbers, st.one_of(st.none(), numbers))
def test_statistics_either_validate_or_raise_impossible_statistics(invocations, reward_sum, squares):
    try:
        stats = ArmStats("arm", invocations, reward_sum, squares)
    except ImpossibleStatistics:
        return
    assert 0 <= stats.reward_sum <= stats.invocations
    assert stats.reward_sq_sum is None or stats.reward_sq_sum <= stats.reward_sum


def test_samplers_reject_malformed_collections_clearly():
    with pytest.raises(ExperimentError, match="at least one arm"):
        probability_best([])
    with pytest.raises(ExperimentError, match="appears twice"):
        probability_best([ArmStats("a", 1, 0), ArmStats("a", 2, 1)])
    with pytest.raises(ExperimentError, match="expected ArmStats"):
        probability_best([{"arm": "a", "invocations": 1, "reward_sum": 0}])
    with pytest.raises(ExperimentError, match="needs a random.Random"):
        probability_best(arms((1, 0), (1, 1)), method="monte_carlo")
    with pytest.raises(ExperimentError, match="unknown method"):
        probability_best(arms((1, 0), (1, 1)), method="exact")


# --- Special functions and posteriors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1), (0.5, 0.5), (2, 3), (1, 1001), (41, 961), (5.5, 300),
        (30_000, 900_000), (1e6, 2e7), (3000, 3000),
    ],
)
def test_betainc_and_its_inverse_match_scipy(a, b):
    mean, sd = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    near_mean = (min(1, max(0, mean + z * sd)) for z in (-6, -2, -0.3, 0, 1, 4))
    for x in {0.0, 1.0, 1e-9, 0.5, 1 - 1e-9, *near_mean}:
        assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-8, abs=1e-13)
    for q in (1e-6, 0.025, 0.5, 0.975, 1 - 1e-6):
        assert beta_ppf(q, a, b) == pytest.approx(scipy_stats.beta.ppf(q, a, b), rel=1e-8, abs=1e-13)
    assert beta_ppf(0.0, a, b) == 0.0 and beta_ppf(1.0, a, b) == 1.0


def test_betainc_rejects_bad_parameters():
    with pytest.raises(ValueError):
        betainc(0, 1, 0.5)
    with pytest.raises(ValueError):
        betainc(1, 1, float("nan"))
    with pytest.raises(ValueError):
        beta_ppf(1.5, 1, 1)


def test_posterior_is_beta_with_a_uniform_prior_and_fractional_pseudo_counts():
    assert posterior(ArmStats("a", 100, 7)) == Posterior(8.0, 94.0)
    continuous = posterior(ArmStats("a", 10, 6.5))  # rewards in [0, 1], not just 0/1
    assert (continuous.alpha, continuous.beta) == (7.5, 4.5)
    assert continuous.mean == pytest.approx(7.5 / 12)
    lower, upper = continuous.interval(0.9)
    assert (lower, upper) == pytest.approx(scipy_stats.beta.interval(0.9, 7.5, 4.5), rel=1e-9)
    assert posterior(ArmStats("new", 0, 0)).interval() == pytest.approx((0.025, 0.975))
    with pytest.raises(ValueError):
        continuous.interval(1.0)


def test_summaries_carry_counts_intervals_and_probability_best():
    summary = summarize(arms((1000, 50), (1000, 70)), level=0.95)
    assert [s.arm for s in summary] == ["arm0", "arm1"]
    assert summary[1].mean_reward == 0.07
    assert summary[1].lower < summary[1].posterior_mean < summary[1].upper
    assert (summary[0].lower, summary[0].upper) == pytest.approx(scipy_stats.beta.interval(0.95, 51, 951))
    assert summary[0].probability_best + summary[1].probability_best == pytest.approx(1.0)
    assert summary[1].probability_best > 0.95


# --- Probability of being best -------------------------------------------------------------------


def reference_probability_best(params: list[tuple[float, float]]) -> list[float]:
    """P(best_i) = integral f_i prod_{j != i} F_j, by scipy's adaptive quadrature."""
    results = []
    for i, (a, b) in enumerate(params):
        def integrand(x, i=i, a=a, b=b):
            value = scipy_stats.beta.pdf(x, a, b)
            for j, (c, d) in enumerate(params):
                if j != i:
                    value *= scipy_stats.beta.cdf(x, c, d)
            return value

        low, high = scipy_stats.beta.ppf([1e-14, 1 - 1e-14], a, b)
        results.append(
            integrate.quad(integrand, low, high, limit=1000, epsabs=1e-11, epsrel=1e-10,
                           points=[a / (a + b)])[0]
        )
    return results


CASES = [
    [(0, 0), (0, 0)],
    [(10, 3), (10, 5)],
    [(1, 0), (1, 1)],
    [(1000, 40), (1000, 50), (1000, 60)],
    [(30_000, 1200), (30_000, 1500), (30_000, 1800)],
    [(5, 5), (100_000, 50_000), (20, 10)],
    [(1000, 0), (1000, 1), (1000, 0.5)],
    [(3, 0.2), (3, 2.9), (3, 1.5)],
    [(10**7, 5 * 10**5), (10**7, 500_500)],
    [(200, 10.3), (50, 2.7), (5000, 260), (80, 4), (400, 21)],
    [(2000, 100), (2000, 100)],
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: str(case)[:40])
def test_probability_best_grid_matches_scipy_quadrature(case):
    stats = arms(*case)
    result = probability_best(stats)
    expected = reference_probability_best([(1 + s, 1 + n - s) for n, s in case])
    assert list(result) == [s.arm for s in stats]
    assert sum(result.values()) == pytest.approx(1.0, abs=1e-12)
    for value, reference in zip(result.values(), expected):
        assert value == pytest.approx(reference, abs=2e-5)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6], CASES[9]], ids=str)
def test_probability_best_matches_a_numpy_monte_carlo(case):
    draws = 400_000
    generator = np.random.default_rng(2024)
    samples = np.stack([generator.beta(1 + s, 1 + n - s, draws) for n, s in case])
    frequencies = np.bincount(samples.argmax(axis=0), minlength=len(case)) / draws
    grid = list(probability_best(arms(*case)).values())
    monte_carlo = list(probability_best(arms(*case), method="monte_carlo", draws=20_000,
                                        rng=random.Random(5)).values())
    for p_grid, p_mc, frequency in zip(grid, monte_carlo, frequencies):
        assert abs(p_grid - frequency) < 4.5 * math.sqrt(frequency * (1 - frequency) / draws) + 1e-4
        assert abs(p_mc - frequency) < 4.5 * math.sqrt(frequency * (1 - frequency) / 20_000) + 1e-3


def test_probability_best_edge_cases():
    assert probability_best([ArmStats("only", 10, 3)]) == {"only": 1.0}
    # Counts at the 2**53 limit: the posteriors are normal, P(best) = Phi(gap / (sqrt(2) * sd)).
    huge = probability_best(arms((2**53, 2**52), (2**53, 2**52 + 10**8)))
    sd = math.sqrt(0.25 / 2**53)
    assert huge["arm1"] == pytest.approx(scipy_stats.norm.cdf(10**8 / 2**53 / (math.sqrt(2) * sd)), abs=1e-4)
    # Posteriors narrower than the float spacing degenerate to points: the higher mean wins.
    assert experiments._probability_best_grid(((1e300, 1e300), (2e300, 1e300))) == (0.0, 1.0)
    equal = probability_best(arms((500, 25), (500, 25), (500, 25)))
    assert list(equal.values()) == pytest.approx([1 / 3] * 3, abs=1e-9)
    seeded = [probability_best(arms((50, 5), (50, 8)), method="monte_carlo", draws=2000, rng=random.Random(3))
              for _ in range(2)]
    assert seeded[0] == seeded[1]


stats_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**8), st.floats(min_value=0, max_value=1)),
    min_size=1, max_size=6,
).map(lambda pairs: [ArmStats(f"arm{i}", n, n * fraction) for i, (n, fraction) in enumerate(pairs)])


@FAST
@given(stats_lists)
def test_samplers_and_strategies_always_give_valid_weights(stats):
    rng = random.Random(0)
    proposals = [
        probability_best(stats),
        probability_best(stats, method="monte_carlo", draws=50, rng=rng),
        ThompsonSampling().weights(stats, rng),
        EpsilonGreedy(0.2).weights(stats, rng),
        UCB1().weights(stats, rng),
        FixedSplit({s.arm: 1 for s in stats}).weights(stats, rng),
    ]
    for weights in proposals:
        assert list(weights) == [s.arm for s in stats]
        assert all(math.isfinite(w) and w >= 0 for w in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-9)


@FAST
@given(st.integers(min_value=20, max_value=5000), st.floats(min_value=0.05, max_value=0.9),
       st.integers(min_value=1, max_value=50))
def test_more_successes_never_lower_the_probability_of_being_best(n, fraction, extra):
    base = [ArmStats("a", n, n * fraction), ArmStats("b", n, n * 0.5)]
    better = [ArmStats("a", n, min(n, n * fraction + extra)), base[1]]
    assert probability_best(better)["a"] >= probability_best(base)["a"] - 1e-9


# --- Strategies ----------------------------------------------------------------------------------


def test_fixed_split_normalises_and_checks_the_arms():
    rng = random.Random(0)
    split = FixedSplit({"arm0": 3, "arm1": 1})
    assert split.weights(arms((10, 1), (10, 2)), rng) == {"arm0": 0.75, "arm1": 0.25}
    with pytest.raises(ExperimentError, match="FixedSplit is for arms"):
        split.weights(arms((10, 1), (10, 2), (10, 3)), rng)
    for bad in ({}, {"a": -1}, {"a": 0}, {"a": float("nan")}):
        with pytest.raises(ExperimentError):
            FixedSplit(bad)


def test_epsilon_greedy_spreads_epsilon_and_gives_the_rest_to_the_best_mean():
    rng = random.Random(0)
    weights = EpsilonGreedy(0.3).weights(arms((1000, 40), (1000, 60), (1000, 50)), rng)
    assert weights == pytest.approx({"arm0": 0.1, "arm1": 0.8, "arm2": 0.1})
    tie = EpsilonGreedy(0.0).weights(arms((100, 5), (100, 5)), rng)
    assert tie == {"arm0": 0.5, "arm1": 0.5}
    untried = EpsilonGreedy(0.0).weights(arms((1000, 100), (0, 0)), rng)  # prior mean 0.5 > 0.1
    assert untried == {"arm0": 0.0, "arm1": 1.0}
    with pytest.raises(ExperimentError):
        EpsilonGreedy(1.5)


def test_ucb1_tries_every_arm_then_follows_the_upper_bound():
    rng = random.Random(0)
    assert UCB1().weights(arms((100, 50), (0, 0), (0, 0)), rng) == {"arm0": 0.0, "arm1": 0.5, "arm2": 0.5}
    # Same mean, fewer invocations: a wider bound wins.
    assert UCB1().weights(arms((1000, 50), (100, 5)), rng) == {"arm0": 0.0, "arm1": 1.0}
    # A much better mean wins over a wider bound.
    assert UCB1().weights(arms((10_000, 3000), (1000, 50)), rng) == {"arm0": 1.0, "arm1": 0.0}


def test_thompson_weights_are_the_probabilities_of_being_best():
    stats = arms((2000, 100), (2000, 120), (2000, 90))
    assert ThompsonSampling().weights(stats, random.Random(0)) == probability_best(stats)


# --- Guardrails ----------------------------------------------------------------------------------


@st.composite
def guardrail_inputs(draw):
    count = draw(st.integers(min_value=2, max_value=5))
    min_share = draw(st.floats(min_value=0.0, max_value=1.0 / count))
    max_step = draw(st.floats(min_value=0.001, max_value=1.0))
    room = 1.0 - count * min_share
    raw = draw(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=count, max_size=count))
    total = sum(raw) or 1.0
    spread = [r / total if sum(raw) else 1 / count for r in raw]
    current = {f"arm{i}": min_share + room * share for i, share in enumerate(spread)}
    proposed = draw(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=count, max_size=count))
    assume(sum(proposed) > 0)
    guardrails = Guardrails(min_share=min_share, max_step=max_step, min_observations=10, min_change=0.0)
    return guardrails, current, dict(zip(current, proposed))


def enough(names, invocations=100):
    return [ArmStats(name, invocations, invocations / 10) for name in names]


@FAST
@given(guardrail_inputs())
def test_guardrails_keep_the_sum_the_floor_and_the_step(inputs):
    guardrails, current, proposed = inputs
    decision = guardrails.apply(current, proposed, enough(current), endpoint_updating=False)
    weights = decision.weights
    if not decision.moved:
        assert weights == pytest.approx(current, abs=1e-12)
    assert list(weights) == list(current)
    assert math.fsum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(w >= guardrails.min_share - 1e-12 for w in weights.values())
    assert all(abs(weights[arm] - current[arm]) <= guardrails.max_step + 1e-9 for arm in current)
    # When the proposal already is within the limits, it is taken as it is.
    total = sum(proposed.values())
    target = {arm: w / total for arm, w in proposed.items()}
    if all(t >= guardrails.min_share and abs(t - current[arm]) <= guardrails.max_step
           for arm, t in target.items()):
        assert weights == pytest.approx(target, abs=1e-9)


@FAST
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=5),
       st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=5, max_size=5),
       st.floats(min_value=0.0, max_value=0.2), st.floats(min_value=0.001, max_value=0.3))
def test_guardrails_restore_the_floor_even_from_weights_below_it(current, proposed, min_share, max_step):
    assume(sum(current) > 0 and sum(proposed[: len(current)]) > 0)
    names = [f"arm{i}" for i in range(len(current))]
    guardrails = Guardrails(min_share=min_share, max_step=max_step, min_observations=0, min_change=0.0)
    decision = guardrails.apply(dict(zip(names, current)), dict(zip(names, proposed)), enough(names), False)
    assert math.fsum(decision.weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(w >= min_share - 1e-12 for w in decision.weights.values())


def test_guardrails_move_toward_the_proposal_by_at_most_the_step():
    guardrails = Guardrails(min_share=0.05, max_step=0.1, min_observations=100)
    current = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    decision = guardrails.apply(current, {"a": 0.0, "b": 0.0, "c": 1.0}, enough(current), False)
    assert decision.moved and "within the guardrails" in decision.reason
    assert decision.weights == pytest.approx({"a": 1 / 3 - 0.05, "b": 1 / 3 - 0.05, "c": 1 / 3 + 0.1})
    steps = 0
    weights = current
    while steps < 20:
        decision = guardrails.apply(weights, {"a": 0.0, "b": 0.0, "c": 1.0}, enough(current), False)
        if not decision.moved:
            break
        weights, steps = decision.weights, steps + 1
    assert weights == pytest.approx({"a": 0.05, "b": 0.05, "c": 0.9})  # stops at the floor
    assert steps == 6


def test_guardrails_wait_for_observations_and_for_the_endpoint():
    guardrails = Guardrails(min_share=0.1, max_step=0.5, min_observations=500)
    current, proposed = {"a": 0.5, "b": 0.5}, {"a": 1.0, "b": 0.0}
    short = [ArmStats("a", 900, 10), ArmStats("b", 499, 10)]
    decision = guardrails.apply(current, proposed, short, endpoint_updating=False)
    assert decision == Decision({"a": 0.5, "b": 0.5}, False, decision.reason)
    assert "waiting for 500 invocations on every arm (b=499)" in decision.reason
    updating = guardrails.apply(current, proposed, enough(current, 1000), endpoint_updating=True)
    assert not updating.moved and "updating" in updating.reason
    moved = apply_guardrails(current, proposed, enough(current, 1000), False, guardrails)
    assert moved.moved and moved.weights == pytest.approx({"a": 0.9, "b": 0.1})


def test_guardrails_skip_changes_below_min_change_and_non_changes():
    guardrails = Guardrails(min_share=0.05, max_step=0.2, min_observations=0, min_change=0.01)
    decision = guardrails.apply({"a": 0.5, "b": 0.5}, {"a": 0.505, "b": 0.495}, enough("ab"), False)
    assert not decision.moved and "below min_change" in decision.reason
    exact = Guardrails(min_share=0.05, max_step=0.2, min_observations=0, min_change=0.0)
    at_floor = exact.apply({"a": 0.95, "b": 0.05}, {"a": 1.0, "b": 0.0}, enough("ab"), False)
    assert not at_floor.moved and at_floor.weights == {"a": 0.95, "b": 0.05}


def test_guardrails_reject_inconsistent_inputs():
    guardrails = Guardrails(min_share=0.3)
    with pytest.raises(ExperimentError, match="impossible for 4 arms"):
        guardrails.apply(dict.fromkeys("abcd", 0.25), dict.fromkeys("abcd", 0.25), enough("abcd"), False)
    with pytest.raises(ExperimentError, match="differ from current arms"):
        Guardrails().apply({"a": 0.5, "b": 0.5}, {"a": 0.5, "c": 0.5}, enough("ab"), False)
    with pytest.raises(ExperimentError, match="no statistics"):
        Guardrails().apply({"a": 0.5, "b": 0.5}, {"a": 1, "b": 0}, enough("a"), False)
    with pytest.raises(ExperimentError, match="must be finite"):
        Guardrails().apply({"a": 0.5, "b": float("nan")}, {"a": 1, "b": 0}, enough("ab"), False)
    for bad in ({"min_share": 1.0}, {"max_step": 0.0}, {"min_observations": -1}, {"min_change": -0.1}):
        with pytest.raises(ExperimentError):
            Guardrails(**bad)


# --- Controller ----------------------------------------------------------------------------------


def controller(**kwargs) -> ExperimentController:
    return ExperimentController(
        ThompsonSampling(),
        Guardrails(min_share=0.05, max_step=0.2, min_observations=100, min_change=0.0),
        kwargs.get("test", SequentialTest(alpha=0.05, min_effect=0.01)),
    )


def test_controller_waits_then_moves_then_declares_a_winner_and_stops():
    state = ExperimentState.start(["a", "b"])
    rng = random.Random(1)
    first = controller().step(state, [ArmStats("a", 50, 2), ArmStats("b", 50, 5)], now=100.0, rng=rng)
    assert not first.moved and "waiting" in first.reason and first.state.steps == 1

    stats = [ArmStats("a", 500, 20), ArmStats("b", 500, 35)]
    second = controller().step(first.state, stats, now=200.0, rng=rng)
    assert second.moved and second.weights["b"] == pytest.approx(0.7)
    assert second.state.weights == second.weights and second.state.last_moved_at == 200.0

    stats = [ArmStats("a", 20000, 800), ArmStats("b", 30000, 2100)]  # 4% vs 7%: b is better by > 1 point
    third = controller().step(second.state, stats, now=300.0, rng=rng)
    assert third.moved and third.decided and third.winner == "b" and third.decision.outcome == "winner"
    assert third.weights == {"a": 0.0, "b": 1.0}
    assert third.state.finished and third.state.decided_at == 300.0 and third.state.winner == "b"
    assert third.state.kept_arm == "b" and third.state.started_at == 100.0 and third.decision.looks == 3

    # Whatever the statistics say later, a finished experiment never moves again.
    stats = [ArmStats("a", 9000, 900), ArmStats("b", 3000, 10)]
    later = controller().step(third.state, stats, now=400.0, rng=rng)
    assert not later.moved and later.state == third.state and later.weights == {"a": 0.0, "b": 1.0}
    assert "finished: winner ('b' kept)" in later.reason


def test_controller_leaves_an_updating_endpoint_alone():
    state = ExperimentState.start({"a": 1, "b": 1})
    clear = [ArmStats("a", 5000, 100), ArmStats("b", 5000, 400)]
    result = controller().step(state, clear, now=1.0, rng=random.Random(0), endpoint_updating=True)
    assert not result.moved and result.decision is None and not result.state.finished
    assert result.state.weights == state.weights and "updating" in result.reason


def test_controller_without_stopping_rule_only_moves_weights():
    state = ExperimentState.start(["a", "b", "c"])
    stats = [ArmStats("a", 5000, 100), ArmStats("b", 5000, 400), ArmStats("c", 5000, 200)]
    no_stop = controller(test=None)
    for step in range(10):
        state = no_stop.step(state, stats, now=float(step), rng=random.Random(step)).state
    assert not state.finished
    assert state.weights == pytest.approx({"a": 0.05, "b": 0.9, "c": 0.05})


def test_controller_is_pure_and_checks_the_arms():
    state = ExperimentState.start(["a", "b"])
    snapshot = state.to_dict()
    stats = [ArmStats("a", 500, 20), ArmStats("b", 500, 35)]
    results = [controller().step(state, stats, now=5.0, rng=random.Random(9)) for _ in range(2)]
    assert results[0] == results[1] and state.to_dict() == snapshot
    with pytest.raises(ExperimentError, match="statistics cover arms"):
        controller().step(state, [ArmStats("a", 500, 20)], now=5.0, rng=random.Random(0))
    with pytest.raises(ExperimentError, match="finite"):
        controller().step(state, stats, now=float("nan"), rng=random.Random(0))


def test_state_round_trips_through_json():
    state = ExperimentState.start({"a": 3, "b": 1})
    assert state.weights == {"a": 0.75, "b": 0.25}
    stats = [ArmStats("a", 30000, 900), ArmStats("b", 30000, 2400)]
    decided = controller().step(state, stats, now=42.0, rng=random.Random(0)).state
    restored = ExperimentState.from_dict(json.loads(json.dumps(decided.to_dict())))
    assert restored == decided and restored.finished
    with pytest.raises(ExperimentError, match="unknown experiment state fields"):
        ExperimentState.from_dict({**decided.to_dict(), "colour": "red"})
    for bad in ([], ["a", "a"], [""]):
        with pytest.raises(ExperimentError):
            ExperimentState.start(bad)
