"""Benchmark: do experiment decisions hold up? Thompson allocation + the anytime-valid test, simulated.

Cases (``CASES``), each run ``RUNS`` seeded times, weights and a look every 1,000 requests:

* A/A 5 % vs 5 % and A/A/A 5 % x 3 (up to 200,000 requests): a winner here is a false winner;
* 5 % vs 6 %, and 4 / 5 / 6 % (up to 400,000): the right winner, how soon, and the regret spent;
* 5 % vs 6 % with each reward arriving 0-72 h late (uniform) and the requests spread over 14 days
  (up to 400,000): the test counts only predictions served 72 h or more ago (``feedback_delay_hours``);
* 5 % vs 5.25 % (up to 1,200,000): ``no_meaningful_difference`` is the right call.

The minimum effect is 0.5 point (0.005) in every case, alpha 0.05.

One run is the controller's loop, vectorised over the runs with numpy: each batch of 1,000 requests
is split by a multinomial draw on the current weights, conversions are binomial; then the decision
is :func:`mlops_runtime.domain.sequential_test.mixture_bounds` itself (evaluated on arrays) with the
rule of ``SequentialTest.decide`` (checked against it in tests/unit/experiments/test_experiment_cases.py),
and, while undecided, Thompson sampling (probability of being best from 256 posterior draws) moves
the weights within the default guardrails (5 % floor, 0.2 step, 200 invocations first, 0.01 min
change), arms the test still needs keeping the controller's ``contender_share`` (0.2). Both see
matured predictions only. Once decided, all traffic goes to the kept arm. Each case also runs
``COMPARISON_RUNS`` seeds with ``contender_share`` 0 (Thompson alone), for comparison.

Reported per case: the outcome shares, the median requests to a decision next to a fixed-horizon
z-test with the same power (the same alpha, a balanced split, Bonferroni over the comparisons), and
the expected regret (requests x gap to the best rate) over the horizon next to the Lai-Robbins
bound ``sum gap_i / KL(p_i, p*) * ln T`` and uniform allocation's. Writes
``benchmarks/results/experiments.json`` and the figures ``experiments-outcomes.png`` and
``experiments-run.png``.

Usage: ``.venv/bin/python -m benchmarks.bench_experiments`` (one process, about five minutes).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import special, stats

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT / "lambda") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "lambda"))

from benchmarks.measure import write_result  # noqa: E402
from mlops_runtime.domain.sequential_test import (  # noqa: E402
    log_mixture_floor,
    lowest_difference,
    mixture_bounds,
)

NUMPY = SimpleNamespace(log=np.log, exp=np.exp, sqrt=np.sqrt, lgamma=special.gammaln,
                        maximum=np.maximum, minimum=np.minimum, where=np.where)
BATCH = 1_000
RUNS = 200
SEED = 20_261_205
ALPHA = 0.05
MIN_EFFECT = 0.005
THOMPSON_DRAWS = 256
CONTENDER_SHARE = 0.2  # the controller's default contender_share
COMPARISON_RUNS = 100  # seeds of the comparison without the contenders' floor
MIN_SHARE, MAX_STEP, MIN_OBSERVATIONS, MIN_CHANGE = 0.05, 0.2, 200, 0.01
DAY_HOURS = 24.0

KEEP_RUNNING, WINNER, NO_DIFFERENCE, LIMIT = 0, 1, 2, 3
OUTCOME_NAMES = {WINNER: "winner", NO_DIFFERENCE: "no_meaningful_difference", LIMIT: "stopped_at_limit"}


@dataclass(frozen=True)
class Case:
    title: str
    rates: tuple[float, ...]
    requests: int
    expected: str  # "winner" (the best arm) or "no_meaningful_difference"
    targets: tuple[tuple[str, str, float], ...]  # (figure, "<=" or ">=", limit)
    delay_hours: float = 0.0  # rewards arrive uniformly 0..delay after the prediction
    days: float = 14.0  # the requests are spread evenly over this many days


CASES = {
    "aa": Case("A/A 5% vs 5%", (0.05, 0.05), 200_000, "no_meaningful_difference",
               (("false_winner", "<=", 0.05),)),
    "aaa": Case("A/A/A 5% x 3", (0.05, 0.05, 0.05), 200_000, "no_meaningful_difference",
                (("false_winner", "<=", 0.05),)),
    "ab": Case("5% vs 6%", (0.05, 0.06), 400_000, "winner",
               (("right_winner", ">=", 0.90), ("wrong_winner", "<=", 0.01))),
    "abc": Case("4% / 5% / 6%", (0.04, 0.05, 0.06), 400_000, "winner",
                (("right_winner", ">=", 0.90), ("regret_vs_uniform", "<=", 0.25))),
    "delayed": Case("5% vs 6%, rewards 0-72 h late over 14 days", (0.05, 0.06), 400_000, "winner",
                    (("wrong_winner", "<=", 0.01), ("right_winner", ">=", 0.80)), delay_hours=72.0),
    "tiny": Case("5% vs 5.25% (min effect 0.5 pt)", (0.05, 0.0525), 1_200_000, "no_meaningful_difference",
                 (("no_meaningful_difference", ">=", 0.80),)),
}


def decide(sums: np.ndarray, counts: np.ndarray, alpha: float = ALPHA, min_effect: float = MIN_EFFECT
           ) -> tuple[np.ndarray, ...]:
    """``SequentialTest.decide`` on arrays (runs x arms, every count > 0; arm 0 is the champion), limits
    aside, from the same domain functions: (outcome code, leader index, lower bounds, upper bounds,
    arms shown worse than the leader by more than the minimum effect, winner statistic)."""
    arms = counts.shape[-1]
    threshold = math.log(1.0 / alpha)
    floors = log_mixture_floor(sums, counts, xp=NUMPY)
    total = floors.sum(axis=-1)
    lower, upper = mixture_bounds(sums, counts, np.exp(-(threshold - total[:, None] + floors)), xp=NUMPY)
    means = sums / counts
    champion_first = np.zeros(arms)
    champion_first[0] = 1e-12  # ties go to the champion, as in the domain
    leader = np.argmax(means + champion_first, axis=-1)

    def lowest(i: int, j: int) -> np.ndarray:
        budget = threshold - total + floors[:, i] + floors[:, j]
        return lowest_difference(sums[:, i], counts[:, i], sums[:, j], counts[:, j], budget, xp=NUMPY)

    pairs = {(i, j): lowest(i, j) for i in range(arms) for j in range(arms) if i != j}
    winner_statistic = np.full(len(sums), np.inf)
    shown_worse = np.zeros(counts.shape, dtype=bool)
    for (i, j), value in pairs.items():
        winner_statistic = np.where(leader == i, np.minimum(winner_statistic, value), winner_statistic)
        shown_worse[:, j] |= (leader == i) & (value > min_effect)
    equivalence_statistic = np.max([-value for value in pairs.values()], axis=0)
    outcome = np.where(winner_statistic > min_effect, WINNER,
                       np.where(equivalence_statistic < min_effect, NO_DIFFERENCE, KEEP_RUNNING))
    return outcome, leader, lower, upper, shown_worse, winner_statistic


def thompson_weights(sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probability of being best per arm from Beta(1 + S, 1 + N - S) draws (runs x arms)."""
    draws = rng.beta(1.0 + sums, 1.0 + counts - sums, size=(THOMPSON_DRAWS, *sums.shape))
    best = draws.argmax(axis=-1)
    return np.stack([(best == arm).mean(axis=0) for arm in range(sums.shape[-1])], axis=-1)


def guarded(current: np.ndarray, proposed: np.ndarray, counts: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """The guardrails, vectorised: nothing moves before every arm has 200 invocations; each share
    within 0.2 of the current one and >= its floor; a move below 0.01 is skipped."""
    moved = proposed
    for _ in range(4):  # clip and renormalise until the bounds hold (a few passes suffice)
        moved = np.clip(moved, np.maximum(current - MAX_STEP, floors), np.maximum(current + MAX_STEP, floors))
        moved = moved / moved.sum(axis=-1, keepdims=True)
    ready = (counts >= MIN_OBSERVATIONS).all(axis=-1) & (np.abs(moved - current).max(axis=-1) >= MIN_CHANGE)
    return np.where(ready[:, None], moved, current)


def record_and_move(index: np.ndarray, looked: tuple[np.ndarray, ...], sums: np.ndarray, counts: np.ndarray,
                    at: int, state: tuple[np.ndarray, ...], rng: np.random.Generator, contender_share: float) -> None:
    """After a look at the runs ``index`` (``looked``: ``decide``'s outcome, leader and arms shown
    worse; ``sums``/``counts``: those runs' rows): record the decided runs' outcome, kept arm and
    ``at`` in ``state`` (outcome, kept, decided_at, weights), and move the others' weights."""
    result, leader, shown_worse = looked
    outcome, kept, decided_at, weights = state
    done = result != KEEP_RUNNING
    outcome[index[done]] = result[done]
    kept[index[done]] = np.where(result[done] == WINNER, leader[done], 0)
    decided_at[index[done]] = at
    going = index[~done]
    if going.size:
        proposal = thompson_weights(sums[~done], counts[~done], rng)
        floors = np.where(shown_worse[~done], MIN_SHARE, max(MIN_SHARE, contender_share))
        weights[going] = guarded(weights[going], proposal, counts[~done], floors)


def simulate(case: Case, runs: int, seed: int, contender_share: float = CONTENDER_SHARE,
             batch_size: int = BATCH) -> dict[str, np.ndarray]:
    """``runs`` experiments of ``case``: outcome, kept arm, requests at the decision, regret, and the
    trail of run 0 (matured counts and intervals at each look) for the figure. ``batch_size``:
    requests between two looks (the tests look less often, to run fast)."""
    # corner branches of the bounds are evaluated on every element and discarded where they do not apply
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _simulate(case, runs, seed, contender_share, batch_size)


def _simulate(case: Case, runs: int, seed: int, contender_share: float, batch_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rates = np.asarray(case.rates)
    arms, batches = len(rates), case.requests // batch_size
    gap = rates.max() - rates
    weights = np.full((runs, arms), 1.0 / arms)
    served = np.zeros((runs, batches + 1, arms))  # cumulative after each batch (index 0: nothing)
    converted = np.zeros((runs, batches + 1, arms))
    outcome = np.zeros(runs, dtype=int)
    kept = np.full(runs, -1)
    decided_at = np.zeros(runs, dtype=int)
    regret = np.zeros(runs)
    hours_per_batch = case.days * DAY_HOURS / batches
    lag = int(math.ceil(case.delay_hours / hours_per_batch)) if case.delay_hours else 0
    trail = []
    for batch in range(1, batches + 1):
        live = outcome == KEEP_RUNNING
        share = np.where(live[:, None], weights, np.eye(arms)[np.maximum(kept, 0)])
        counts = rng.multinomial(batch_size, share)
        served[:, batch] = served[:, batch - 1] + counts
        converted[:, batch] = converted[:, batch - 1] + rng.binomial(counts, rates)
        regret += counts @ gap
        if not live.any():
            continue
        matured = max(batch - lag, 0)  # batches whose feedback window has closed
        n, s = served[live, matured], converted[live, matured]
        result, leader, lower, upper, shown_worse, statistic = decide(s, n)
        if live[0]:
            trail.append((batch * batch_size, n[0].copy(), s[0].copy(), lower[0].copy(), upper[0].copy(),
                          statistic[0]))
        record_and_move(np.flatnonzero(live), (result, leader, shown_worse), s, n, batch * batch_size,
                        (outcome, kept, decided_at, weights), rng, contender_share)
    limit = outcome == KEEP_RUNNING
    outcome[limit], kept[limit], decided_at[limit] = LIMIT, 0, case.requests
    return {"outcome": outcome, "kept": kept, "decided_at": decided_at, "regret": regret, "trail": trail}


def kl_bernoulli(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def lai_robbins(rates: tuple[float, ...], horizon: int) -> float:
    best = max(rates)
    return sum((best - p) / kl_bernoulli(p, best) for p in rates if p < best) * math.log(horizon)


def fixed_horizon_requests(case: Case, power: float) -> int | None:
    """Requests a fixed-horizon z-test with a balanced split needs for ``power`` at level ALPHA:
    superiority by the minimum effect against the closest arm (Bonferroni over the K - 1
    comparisons), or equivalence within it (two one-sided tests) when no winner is expected."""
    if not 0.0 < power < 1.0:
        power = min(max(power, 0.01), 0.99)
    rates = sorted(case.rates, reverse=True)
    arms = len(rates)
    z_alpha = stats.norm.ppf(1 - ALPHA / max(arms - 1, 1))
    if case.expected == "winner":
        best, second = rates[0], rates[1]
        margin = best - second - MIN_EFFECT
        variance = best * (1 - best) + second * (1 - second)
        z_power = stats.norm.ppf(power)
    else:
        spread = rates[0] - rates[-1]
        margin = MIN_EFFECT - spread
        variance = 2 * rates[0] * (1 - rates[0])
        z_power = stats.norm.ppf((1 + power) / 2) if spread == 0 else stats.norm.ppf(power)
    if margin <= 0:
        return None
    per_arm = (z_alpha + z_power) ** 2 * variance / margin**2
    return int(math.ceil(per_arm)) * arms


def summarize(name: str, case: Case, runs: dict[str, np.ndarray]) -> dict:
    best = int(np.argmax(case.rates)) if len(set(case.rates)) > 1 else None
    outcome, kept = runs["outcome"], runs["kept"]
    winners = outcome == WINNER
    shares = {OUTCOME_NAMES[code]: round(float((outcome == code).mean()), 4) for code in OUTCOME_NAMES}
    right = float((winners & (kept == best)).mean()) if best is not None else 0.0
    wrong = float((winners & (kept != best)).mean()) if best is not None else float(winners.mean())
    expected = (winners & (kept == best)) if case.expected == "winner" else outcome == NO_DIFFERENCE
    decided = outcome != LIMIT
    uniform = case.requests * float(np.mean(max(case.rates) - np.asarray(case.rates)))
    regret = float(runs["regret"].mean())
    figures = {
        **shares,
        "right_winner": round(right, 4),
        "wrong_winner": round(wrong, 4),
        "false_winner": round(float(winners.mean()), 4) if best is None else round(wrong, 4),
        "median_requests_to_decision": int(np.median(runs["decided_at"][decided])) if decided.any() else None,
        "fixed_horizon_requests_same_power": fixed_horizon_requests(case, float(expected.mean())),
        "regret_mean": round(regret, 1),
        "regret_uniform": round(uniform, 1),
        "regret_vs_uniform": round(regret / uniform, 4) if uniform else None,
        "lai_robbins_bound": round(lai_robbins(case.rates, case.requests), 1) if best is not None else None,
    }
    targets = []
    for figure, sense, limit in case.targets:
        value = figures[figure]
        met = value <= limit if sense == "<=" else value >= limit
        targets.append({"name": f"{name}: {figure}", "value": value, "limit": f"{sense} {limit}", "met": met})
    return {"title": case.title, "rates": list(case.rates), "requests": case.requests,
            "delay_hours": case.delay_hours, "figures": figures, "targets": targets}


def plot(results: dict, trail: list, path_outcomes: Path, path_run: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    bottom = np.zeros(len(names))
    colours = {"winner": "#2b8a3e", "no_meaningful_difference": "#1c7ed6", "stopped_at_limit": "#adb5bd"}
    for outcome, colour in colours.items():
        values = np.array([results[n]["figures"][outcome] for n in names])
        ax.bar(names, values, bottom=bottom, color=colour, label=outcome.replace("_", " "))
        bottom += values
    wrong = [results[n]["figures"]["false_winner"] if results[n]["figures"]["lai_robbins_bound"] is None
             else results[n]["figures"]["wrong_winner"] for n in names]
    ax.scatter(names, wrong, color="#c92a2a", marker="x", zorder=3, label="false or wrong winner")
    ax.axhline(ALPHA, color="#c92a2a", lw=0.8, ls="--")
    ax.set_ylabel(f"share of {RUNS} runs")
    ax.set_title("Outcomes per case (Thompson allocation, anytime-valid test, alpha 0.05)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path_outcomes, dpi=110)
    plt.close(fig)

    fig, (ax, below) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(3, 2))
    x = np.array([t[0] for t in trail])
    for arm, colour in ((0, "#868e96"), (1, "#2b8a3e")):
        n = np.array([t[1][arm] for t in trail])
        mean = np.array([t[2][arm] for t in trail]) / np.maximum(n, 1)
        ax.plot(x, mean, color=colour, label=f"arm {arm + 1} mean")
        ax.fill_between(x, [t[3][arm] for t in trail], [t[4][arm] for t in trail], color=colour, alpha=0.2)
    ax.set_ylim(0.03, 0.08)
    ax.set_ylabel("conversion")
    ax.set_title("One 5% vs 6% run: each arm's anytime-valid interval, and the decision's statistic")
    ax.legend(fontsize=8)
    below.plot(x, [t[5] for t in trail], color="#2b8a3e", label="lower bound of (leader - other), joint region")
    below.axhline(MIN_EFFECT, color="#c92a2a", ls="--", lw=0.8, label="minimum effect: a winner above it")
    below.set_ylim(-0.02, 0.012)
    below.set_xlabel("requests")
    below.set_ylabel("difference")
    below.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path_run, dpi=110)
    plt.close(fig)


def main() -> int:
    start = time.perf_counter()
    results, trail, exploring = {}, [], {}
    for offset, (name, case) in enumerate(CASES.items()):
        runs = simulate(case, RUNS, SEED + 1000 * offset)
        results[name] = summarize(name, case, runs)
        # the same seeds without the contenders' floor (Thompson within the 5 % floor alone)
        exploring[name] = summarize(name, case, simulate(case, COMPARISON_RUNS, SEED + 1000 * offset, 0.0))
        if name == "ab":
            trail = runs["trail"]
        for label, figures in (("default", results[name]["figures"]), ("no floor", exploring[name]["figures"])):
            print(f"{name:8} {label:9} {case.title:45} winner {figures['winner']:.3f} (right {figures['right_winner']:.3f}, "
                  f"wrong {figures['wrong_winner']:.3f}) no-diff {figures['no_meaningful_difference']:.3f} "
                  f"limit {figures['stopped_at_limit']:.3f} | median {figures['median_requests_to_decision']} vs "
                  f"fixed {figures['fixed_horizon_requests_same_power']} | regret {figures['regret_mean']} "
                  f"(uniform {figures['regret_uniform']}, Lai-Robbins {figures['lai_robbins_bound']})", flush=True)
    targets = [target for result in results.values() for target in result["targets"]]
    for result in exploring.values():
        del result["targets"]
    out_dir = REPO_ROOT / "benchmarks" / "results"
    plot(results, trail, out_dir / "experiments-outcomes.png", out_dir / "experiments-run.png")
    seconds = round(time.perf_counter() - start, 1)
    path = write_result("experiments", {
        "settings": {"runs_per_case": RUNS, "requests_per_look": BATCH, "seed": SEED, "alpha": ALPHA,
                     "min_effect": MIN_EFFECT, "thompson_draws": THOMPSON_DRAWS,
                     "guardrails": {"min_share": MIN_SHARE, "max_step": MAX_STEP,
                                    "min_observations": MIN_OBSERVATIONS, "min_change": MIN_CHANGE}},
        "cases": results,
        "cases_without_contender_floor": exploring,
        "targets": targets,
        "all_targets_met": all(target["met"] for target in targets),
        "figures": ["benchmarks/results/experiments-outcomes.png", "benchmarks/results/experiments-run.png"],
        "seconds": seconds,
    })
    for target in targets:
        print(f"  [{'met' if target['met'] else 'MISSED'}] {target['name']}: {target['value']} ({target['limit']})")
    print(f"experiments: {seconds}s -> {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
