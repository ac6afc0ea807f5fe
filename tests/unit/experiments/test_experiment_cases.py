"""One fast seeded run per benchmark case: fails if the decision rule (or the allocation around it)
regresses. The benchmark (benchmarks/bench_experiments.py) runs 200 seeds per case and a look every
1,000 requests; these run a dozen seeds with a look every 2,000 to 10,000 (the rule is
anytime-valid, so fewer looks change only how soon it decides, and the weights move less often). Seeded: the outcomes are fixed numbers, not timings."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks import bench_experiments as bench
from mlops_runtime.domain.experiments import ArmStats
from mlops_runtime.domain.sequential_test import SequentialTest

RUNS, LOOK_EVERY, SEED = 12, 4_000, 1605


def outcomes(name: str, look_every: int = LOOK_EVERY, **kwargs) -> dict:
    case = bench.CASES[name]
    return bench.summarize(name, case, bench.simulate(case, RUNS, SEED, batch_size=look_every, **kwargs))["figures"]


@pytest.mark.parametrize("name", ["aa", "aaa"])
def test_identical_arms_never_get_a_winner(name):
    figures = outcomes(name)
    assert figures["winner"] == 0.0
    if name == "aa":  # two arms: equivalence is shown within 200,000 requests in most runs
        assert figures["no_meaningful_difference"] >= 0.5


@pytest.mark.parametrize("name,look_every", [("ab", 2_000), ("abc", 4_000), ("delayed", 2_000)])
def test_the_better_arm_wins_and_no_other(name, look_every):
    figures = outcomes(name, look_every)
    assert figures["wrong_winner"] == 0.0
    assert figures["right_winner"] >= 10 / 12
    if name == "abc":
        assert figures["regret_vs_uniform"] <= 0.25


def test_a_tiny_effect_ends_in_no_meaningful_difference():
    figures = outcomes("tiny", look_every=10_000)  # up to 1,200,000 requests
    assert figures["no_meaningful_difference"] >= 11 / 12 and figures["winner"] == 0.0


def test_without_the_contenders_floor_thompson_starves_the_test():
    """What the floor is for: plain Thompson within a 5 % floor rarely shows a 1-point winner by
    more than 0.5 point within 400,000 requests (the loser's interval stays wide)."""
    assert outcomes("ab", contender_share=0.0)["right_winner"] <= 0.5


def test_the_benchmark_decides_as_the_domain_does():
    """bench.decide (arrays, many runs at once) against SequentialTest.decide (one run) on random
    statistics, including clear winners, equivalence and undecided ones."""
    rng = random.Random(7)
    rows = []
    for _ in range(60):
        arms = rng.choice([2, 3])
        rate = rng.uniform(0.02, 0.3)
        counts = [rng.choice([500, 5_000, 50_000, 300_000]) for _ in range(arms)]
        sums = [round(n * min(1.0, max(0.0, rate + rng.choice([0, 0.002, 0.01, 0.03]))), 0) for n in counts]
        rows.append((sums, counts))
    test = SequentialTest(alpha=bench.ALPHA, min_effect=bench.MIN_EFFECT)
    codes = {"winner": bench.WINNER, "no_meaningful_difference": bench.NO_DIFFERENCE, "keep_running": bench.KEEP_RUNNING}
    seen = set()
    for arms in (2, 3):
        group = [row for row in rows if len(row[0]) == arms]
        sums, counts = (np.array([row[i] for row in group], float) for i in (0, 1))
        outcome, leader, lower, upper, _, _ = bench.decide(sums, counts)
        for index, (row_sums, row_counts) in enumerate(group):
            names = [f"arm{i}" for i in range(arms)]
            decision = test.decide([ArmStats(a, n, s) for a, n, s in zip(names, row_counts, row_sums)],
                                   champion="arm0", looks=1)
            assert codes[decision.outcome] == outcome[index]
            assert decision.leader == names[leader[index]]
            assert [a.lower for a in decision.arms] == pytest.approx(list(lower[index]), abs=1e-9)
            assert [a.upper for a in decision.arms] == pytest.approx(list(upper[index]), abs=1e-9)
            seen.add(decision.outcome)
    assert seen == set(codes)
