"""Benchmark: false winners in an A/A round that starts right after a decided one (issue 15).

Round 1 was decided: its challenger (6 %) won and carried all the traffic; the next approval starts
round 2, an A/A experiment (the winner against a new package, both 5 %). Rewards of round 1's last
predictions keep arriving for days after round 2 started, for the arm name ``challenger`` that
round 2's new package now holds. Round 2's own rewards are late too. Measured: how often round 2
declares a (false) winner, and how soon it ends; and, with rewards later than the controller waits,
whether a real difference (5 % vs 6 %) is still found.

Two bookkeepings, each with rewards at most 72 h late (the controller's ``feedback_delay_hours``)
and at most 7 days late (later than the controller waits):

* **rounds kept apart** (the platform since issue 15, ``domain.rounds``): a reward is credited to
  the round and hour of the prediction that earned it, so round 1's late rewards never reach
  round 2's counts; round 2 decides on its predictions served ``feedback_delay_hours`` ago or
  earlier, with the rewards that have arrived for them so far;
* **one counter per arm** (before the fix, as issue 15 describes it): the controller snapshots the
  counters when the round starts, and every reward that arrives later is added to the arm's counter,
  whichever round served the prediction.

The experiment loop is ``bench_experiments``' (the same vectorised ``SequentialTest.decide``,
Thompson allocation and guardrails, a look every 1,000 requests); 200,000 requests over 14 days,
``RUNS`` seeded runs per case. Writes ``benchmarks/results/rounds.json``.

Usage: ``.venv/bin/python -m benchmarks.bench_rounds`` (about a minute).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from benchmarks.bench_experiments import (
    BATCH,
    CONTENDER_SHARE,
    DAY_HOURS,
    KEEP_RUNNING,
    LIMIT,
    NO_DIFFERENCE,
    OUTCOME_NAMES,
    WINNER,
    decide,
    record_and_move,
)
from benchmarks.measure import write_result

RUNS = 200
SEED = 20_261_215
REQUESTS = 200_000
DAYS = 14.0
RATES = (0.05, 0.05)  # round 2: the kept winner (champion) and the new package (challenger)
OLD_CHALLENGER_RATE = 0.06  # round 1's winner, which carried all the traffic at the end of round 1
FEEDBACK_DELAY_HOURS = 72.0


@dataclass(frozen=True)
class Timing:
    title: str
    rounds_kept_apart: bool
    reward_delay_hours: float  # every reward arrives uniformly 0..this after its prediction
    rates: tuple[float, ...] = RATES  # round 2's arms


CASES = {
    "apart_72h": Timing("rounds kept apart, rewards 0-72 h late", True, 72.0),
    "apart_7d": Timing("rounds kept apart, rewards 0-7 days late", True, 7 * DAY_HOURS),
    "apart_7d_real_difference": Timing("rounds kept apart, rewards 0-7 days late, round 2 is 5% vs 6%", True,
                                       7 * DAY_HOURS, (0.05, 0.06)),
    "one_counter_72h": Timing("one counter per arm (before the fix), rewards 0-72 h late", False, 72.0),
    "one_counter_7d": Timing("one counter per arm (before the fix), rewards 0-7 days late", False, 7 * DAY_HOURS),
}


def old_round_arrivals(rng: np.random.Generator, runs: int, timing: Timing, batches: int, hours_per_batch: float
                       ) -> np.ndarray:
    """Round 1's late rewards for ``challenger`` arriving during each batch of round 2 (runs x batches):
    round 1's traffic, at round 2's rate, all on the challenger for the last ``reward_delay_hours``
    before the switch (earlier predictions' rewards have all arrived by then)."""
    window = timing.reward_delay_hours
    requests_in_window = REQUESTS / (DAYS * DAY_HOURS) * window
    arrivals = np.zeros((runs, batches))
    conversions = rng.binomial(int(requests_in_window), OLD_CHALLENGER_RATE, size=runs)
    for run, count in enumerate(conversions):
        served = rng.uniform(-window, 0.0, count)
        arrive = served + rng.uniform(0.0, window, count)
        late = arrive[arrive >= 0.0]
        index = np.minimum((late / hours_per_batch).astype(int), batches - 1)
        np.add.at(arrivals[run], index, 1)
    return arrivals


def simulate(timing: Timing, runs: int = RUNS, seed: int = SEED) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _simulate(timing, runs, seed)


def _simulate(timing: Timing, runs: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rates = np.asarray(timing.rates)
    arms, batches = len(rates), REQUESTS // BATCH
    hours_per_batch = DAYS * DAY_HOURS / batches
    lag = int(math.ceil(FEEDBACK_DELAY_HOURS / hours_per_batch))  # batches until a prediction is matured
    spread = int(math.ceil(timing.reward_delay_hours / hours_per_batch)) + 1  # batches a reward may take
    old = np.cumsum(old_round_arrivals(rng, runs, timing, batches, hours_per_batch), axis=1)
    weights = np.full((runs, arms), 1.0 / arms)
    served = np.zeros((runs, batches + 1, arms))  # cumulative after each batch
    # arrived[r, b, o, a]: conversions of batch b's predictions whose reward arrived o batches later
    arrived = np.zeros((runs, batches + 1, spread, arms))
    outcome = np.zeros(runs, dtype=int)
    kept = np.full(runs, -1)
    decided_at = np.zeros(runs, dtype=int)
    impossible = np.zeros(runs, dtype=bool)  # reward sum above the invocations at some look
    delay_bins = np.full(spread, 1.0)
    delay_bins[-1] = (timing.reward_delay_hours / hours_per_batch) % 1.0 or 1.0
    delay_bins /= delay_bins.sum()
    for batch in range(1, batches + 1):
        live = outcome == KEEP_RUNNING
        share = np.where(live[:, None], weights, np.eye(arms)[np.maximum(kept, 0)])
        counts = rng.multinomial(BATCH, share)
        served[:, batch] = served[:, batch - 1] + counts
        converted = rng.binomial(counts, rates)
        for arm in range(arms):
            arrived[:, batch, :, arm] = rng.multinomial(converted[:, arm], delay_bins)
        if not live.any():
            continue
        matured = max(batch - lag, 0)
        n = served[:, matured]
        # rewards of the matured predictions that have arrived by now (batch b's after batch - b batches)
        offsets = np.arange(spread)
        s = np.zeros((runs, arms))
        for b in range(1, matured + 1):
            s += arrived[:, b, offsets <= batch - b, :].sum(axis=1)
        if not timing.rounds_kept_apart:  # round 1's late rewards land on round 2's challenger counter
            n = served[:, batch]  # no served hours: every prediction so far, with every reward so far
            s = np.zeros((runs, arms))
            for b in range(1, batch + 1):
                s += arrived[:, b, offsets <= batch - b, :].sum(axis=1)
            s[:, 1] += old[:, batch - 1]
        impossible |= live & (s > n).any(axis=1)
        s = np.minimum(s, n)
        ready = live & (n > 0).all(axis=1)
        if not ready.any():
            continue
        index = np.flatnonzero(ready)
        result, leader, _, _, shown_worse, _ = decide(s[index], n[index])
        record_and_move(index, (result, leader, shown_worse), s[index], n[index], batch * BATCH,
                        (outcome, kept, decided_at, weights), rng, CONTENDER_SHARE)
    limit = outcome == KEEP_RUNNING
    outcome[limit], kept[limit], decided_at[limit] = LIMIT, 0, REQUESTS
    return {"outcome": outcome, "kept": kept, "decided_at": decided_at, "impossible": impossible}


def summarize(timing: Timing, runs: dict[str, np.ndarray]) -> dict:
    outcome, total = runs["outcome"], len(runs["outcome"])
    decided = runs["decided_at"][outcome != LIMIT]
    return {
        **asdict(timing),
        "runs": total,
        "winner": float(np.mean(outcome == WINNER)),  # a false winner when the arms are equal
        "winner_challenger": float(np.mean((outcome == WINNER) & (runs["kept"] == 1))),
        "no_meaningful_difference": float(np.mean(outcome == NO_DIFFERENCE)),
        "stopped_at_limit": float(np.mean(outcome == LIMIT)),
        "impossible_statistics": float(np.mean(runs["impossible"])),
        "median_requests_to_a_decision": int(np.median(decided)) if decided.size else None,
        "outcomes": {OUTCOME_NAMES[code]: int(np.sum(outcome == code)) for code in OUTCOME_NAMES},
    }


def main() -> int:
    began, load = time.perf_counter(), os.getloadavg()[0]
    results = {name: summarize(timing, simulate(timing)) for name, timing in CASES.items()}
    payload = {"target": "false winner <= 5 % (alpha) when rounds are kept apart", "seed": SEED,
               "requests": REQUESTS, "days": DAYS, "rates": RATES, "old_challenger_rate": OLD_CHALLENGER_RATE,
               "feedback_delay_hours": FEEDBACK_DELAY_HOURS, "cases": results,
               "seconds": round(time.perf_counter() - began, 1), "load": round(load, 2)}
    path = write_result("rounds", payload)
    print(json.dumps(payload, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
