"""Benchmark: traffic simulation of the bandit experiment controller (regret, stopping rule).

Two cases, each 100,000 requests with the weights updated every 1,000 requests:

* case A: three variants converting at 4%, 5% and 6%;
* case B: two variants converting at 5% and 5.5%.

Each batch of 1,000 requests is split between the variants by a multinomial draw on the current
weights (SageMaker routes each request at random by weight), and the conversions of each variant are
one binomial draw (numpy, seeded). After each batch the real, pure-Python
:class:`mlops_runtime.domain.experiments.ExperimentController` decides the next weights from the
cumulative counts. Regret is the expected one: the requests sent to each variant times the gap
between its rate and the best rate, summed over the run.

Every strategy (fixed uniform split, epsilon-greedy 0.1, UCB1, Thompson sampling) runs 200 seeded
times per case, twice: *without* the stopping rule (the strategy alone under the guardrails, for the
regret comparison) and *with* it (the controller as deployed: once a winner is declared it gets all
the traffic). Settings are the library defaults: ``Guardrails()`` (min_share 0.05, max_step 0.2,
min_observations 200, min_change 0.01) and ``StoppingRule()`` (probability 0.95, 2,000 invocations
on every arm); with a 5% floor, two losing arms still cost 0.05 x (2 + 1) points per request in case A,
15% of the uniform split's regret, until the stopping rule ends the experiment.

Targets: Thompson's regret (without stopping) <= 25% of the uniform split's in case A; with the
stopping rule and Thompson sampling, a wrong winner in <= 5% of the runs of each case and a winner
within the 100,000 requests in >= 90% of case-A runs. The same figures are reported for every
strategy. Writes ``benchmarks/results/experiments.json``.

Usage: ``.venv/bin/python -m benchmarks.bench_experiments`` (uses up to two processes).
"""

from __future__ import annotations

import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "lambda") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "lambda"))

from benchmarks.measure import write_result  # noqa: E402
from mlops_runtime.domain.experiments import (  # noqa: E402
    UCB1,
    ArmStats,
    EpsilonGreedy,
    ExperimentController,
    ExperimentState,
    FixedSplit,
    Guardrails,
    StoppingRule,
    ThompsonSampling,
)

CASES = {"A": (0.04, 0.05, 0.06), "B": (0.05, 0.055)}
STRATEGIES = ("uniform", "epsilon_greedy", "ucb1", "thompson")
REQUESTS = 100_000
BATCH = 1_000
RUNS = 200
SEED_BASE = 20_240_500
CHUNK = 25  # seeds per worker task
EPSILON = 0.1

TARGET_REGRET_RATIO = 0.25
TARGET_WRONG_WINNER = 0.05
TARGET_DECIDED_CASE_A = 0.90


def _arms(rates: tuple[float, ...]) -> list[str]:
    return [f"variant-{index + 1}" for index in range(len(rates))]


def _strategy(name: str, arms: list[str]):
    if name == "uniform":
        return FixedSplit(dict.fromkeys(arms, 1.0))
    if name == "epsilon_greedy":
        return EpsilonGreedy(EPSILON)
    if name == "ucb1":
        return UCB1()
    return ThompsonSampling()


def simulate(
    rates: tuple[float, ...], controller: ExperimentController, seed: int
) -> tuple[float, str | None, int | None]:
    """One run: (expected regret, declared winner or None, requests served when it was declared)."""
    traffic = np.random.default_rng(seed)
    rng = random.Random(seed)
    arms = _arms(rates)
    rate = np.asarray(rates)
    gap = rate.max() - rate
    state = ExperimentState.start(arms)
    served = np.zeros(len(arms), dtype=np.int64)
    converted = np.zeros(len(arms), dtype=np.int64)
    regret, decided_at = 0.0, None
    for batch in range(REQUESTS // BATCH):
        weights = np.asarray([state.weights[arm] for arm in arms], dtype=float)
        counts = traffic.multinomial(BATCH, weights / weights.sum())
        served += counts
        converted += traffic.binomial(counts, rate)
        regret += float(counts @ gap)
        stats = [ArmStats(arm, int(served[i]), float(converted[i])) for i, arm in enumerate(arms)]
        result = controller.step(state, stats, now=60.0 * batch, rng=rng)
        state = result.state
        if result.winner is not None:
            decided_at = (batch + 1) * BATCH
    return regret, state.winner, decided_at


def _run_chunk(job: tuple[str, str, list[int]]) -> tuple[tuple[str, str], list, list]:
    """Runs of one case and strategy, without then with the stopping rule, seed by seed.

    Until a winner is declared a run with the stopping rule follows the same trajectory as the
    one without, so running them back to back lets the memoised posterior computations serve both.
    """
    case, strategy_name, seeds = job
    rates = CASES[case]
    strategy = _strategy(strategy_name, _arms(rates))
    alone = ExperimentController(strategy, Guardrails(), None)
    stopping = ExperimentController(strategy, Guardrails(), StoppingRule())
    without, with_rule = [], []
    for seed in seeds:
        without.append(simulate(rates, alone, seed))
        with_rule.append(simulate(rates, stopping, seed))
    return (case, strategy_name), without, with_rule


def _mean_sem(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 2),
        "sem": round(statistics.stdev(values) / math.sqrt(len(values)), 2) if len(values) > 1 else None,
    }


def _summarize(case: str, runs: list) -> dict:
    best = _arms(CASES[case])[int(np.argmax(CASES[case]))]
    declared = [(winner, at) for _, winner, at in runs if winner is not None]
    wrong = sum(1 for winner, _ in declared if winner != best)
    return {
        "regret": _mean_sem([regret for regret, _, _ in runs]),
        "winner_declared_share": round(len(declared) / len(runs), 4),
        "wrong_winner_share": round(wrong / len(runs), 4),
        "median_requests_to_winner": statistics.median(at for _, at in declared) if declared else None,
    }


def main() -> int:
    start = time.perf_counter()
    seeds = [SEED_BASE + run for run in range(RUNS)]
    jobs = [
        (case, strategy, seeds[i : i + CHUNK])
        for case in CASES
        for strategy in STRATEGIES
        for i in range(0, RUNS, CHUNK)
    ]
    # Thompson runs are the slow ones: start them first so the two workers finish together.
    jobs.sort(key=lambda job: job[1] != "thompson")
    collected: dict[tuple[str, str, bool], list] = {}
    workers = max(1, min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for (case, strategy), without, with_rule in pool.map(_run_chunk, jobs):
            collected.setdefault((case, strategy, False), []).extend(without)
            collected.setdefault((case, strategy, True), []).extend(with_rule)

    cases = {}
    for case, rates in CASES.items():
        strategies = {}
        for strategy in STRATEGIES:
            alone = _summarize(case, collected[(case, strategy, False)])
            strategies[strategy] = {
                "regret_without_stopping": alone["regret"],
                "with_stopping_rule": _summarize(case, collected[(case, strategy, True)]),
            }
        uniform = strategies["uniform"]["regret_without_stopping"]["mean"]
        for figures in strategies.values():
            ratio = figures["regret_without_stopping"]["mean"] / uniform
            figures["regret_ratio_to_uniform"] = round(ratio, 4)
        cases[case] = {"conversion_rates": list(rates), "strategies": strategies}

    thompson_a = cases["A"]["strategies"]["thompson"]
    targets = [
        {
            "name": "case A: Thompson regret / uniform split regret (no stopping)",
            "value": thompson_a["regret_ratio_to_uniform"],
            "limit": f"<= {TARGET_REGRET_RATIO}",
            "met": thompson_a["regret_ratio_to_uniform"] <= TARGET_REGRET_RATIO,
        }
    ]
    for case in CASES:
        wrong = cases[case]["strategies"]["thompson"]["with_stopping_rule"]["wrong_winner_share"]
        targets.append(
            {
                "name": f"case {case}: share of Thompson runs declaring a wrong winner",
                "value": wrong,
                "limit": f"<= {TARGET_WRONG_WINNER}",
                "met": wrong <= TARGET_WRONG_WINNER,
            }
        )
    decided = thompson_a["with_stopping_rule"]["winner_declared_share"]
    targets.append(
        {
            "name": "case A: share of Thompson runs declaring a winner within 100,000 requests",
            "value": decided,
            "limit": f">= {TARGET_DECIDED_CASE_A}",
            "met": decided >= TARGET_DECIDED_CASE_A,
        }
    )
    seconds = round(time.perf_counter() - start, 1)
    path = write_result(
        "experiments",
        {
            "settings": {
                "requests_per_run": REQUESTS,
                "requests_per_weight_update": BATCH,
                "runs_per_case_and_strategy": RUNS,
                "seeds": f"{SEED_BASE}..{SEED_BASE + RUNS - 1}",
                "epsilon": EPSILON,
                "guardrails": asdict(Guardrails()),
                "stopping_rule": asdict(StoppingRule()),
                "workers": workers,
            },
            "cases": cases,
            "targets": targets,
            "all_targets_met": all(target["met"] for target in targets),
            "seconds": seconds,
        },
    )
    for case, data in cases.items():
        print(f"case {case} {data['conversion_rates']}")
        for strategy, figures in data["strategies"].items():
            stop = figures["with_stopping_rule"]
            print(
                f"  {strategy:15} regret {figures['regret_without_stopping']['mean']:8.1f} "
                f"({figures['regret_ratio_to_uniform']:.1%} of uniform) | with stopping: regret "
                f"{stop['regret']['mean']:7.1f}, winner in {stop['winner_declared_share']:.1%} of runs, "
                f"wrong {stop['wrong_winner_share']:.1%}, median at {stop['median_requests_to_winner']}"
            )
    for target in targets:
        verdict = "met" if target["met"] else "MISSED"
        print(f"  [{verdict}] {target['name']}: {target['value']} ({target['limit']})")
    print(f"experiments: {seconds}s -> {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
