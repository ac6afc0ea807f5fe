"""Anytime-valid experiment decisions: winner, no meaningful difference, keep running, stopped at a limit.

The traffic split may adapt (Thompson sampling); the *decision* comes from a confidence region for
all arms' mean rewards that holds at every look at once, whatever the allocation, the batching and
the feedback delay (pure, standard library only)::

    test = SequentialTest(alpha=0.05, min_effect=0.005, max_invocations=400_000)
    decision = test.decide(matured_stats, champion="champion", looks=12, elapsed_seconds=3 * 86_400)
    decision.outcome   # "winner" | "no_meaningful_difference" | "keep_running" | "stopped_at_limit"

One arm. Its rewards x_1, x_2, ... in [0, 1], in the order they were served, have mean p. For every
u > 0, ``u ** S_n * exp(-n p (u - 1))`` (S_n the sum of the first n rewards) is a non-negative
supermartingale with expectation <= 1 when p is the true mean: ``E[u ** x] <= 1 + p (u - 1) <=
exp(p (u - 1))`` by convexity of ``u ** x`` on [0, 1] (a Poisson bound on a Bernoulli: the variance
it assumes is p, not p (1 - p), within 5 % for rates below 10 %, up to 40 % wide near 0.5). Mixed
over u ~ Gamma(shape k, rate k) (mean 1) it stays one, in closed form::

    M_n(p) = exp(n p) * k**k / Gamma(k) * Gamma(S_n + k) / (n p + k) ** (S_n + k)

``k`` (:data:`MIXTURE_SHAPE`) sets where the bound is tightest (about 10^3 to 10^5 conversions).

All arms. The product of the arms' M over the predictions served so far is again a non-negative
supermartingale in serving order: the allocation of each request may depend on everything before it
(a Thompson split, batching, looks), but not on that request's own reward, so each new factor has
conditional expectation <= 1 whatever arm it goes to. By Ville's inequality
``P(prod_k M_k(p_k) >= 1 / alpha at any time) <= alpha``: the region
``R = {p : sum_k log M_k(p_k) < log(1 / alpha)}`` covers the true means at every look with
probability >= 1 - alpha, including a look chosen by looking at the data. It is one region for all
arms (no union bound over arms or looks): the decision is about differences, and R's extent along
``p_i - p_j`` is about 0.7 times what per-arm intervals at alpha / K would give. Delayed feedback:
the statistics count only predictions whose feedback window has closed, i.e. a prefix in serving
order with every reward known, which is a time the supermartingale passes through.

The decision, on R:

* ``winner`` i when ``min over R of (p_i - p_j) > min_effect`` for every other j: i beats each by
  more than the minimum effect (wrong-winner rate <= alpha at any number of looks);
* ``no_meaningful_difference`` when ``max over R of |p_i - p_j| < min_effect`` for every pair
  (keep the champion, release the others);
* otherwise ``keep_running``, or ``stopped_at_limit`` (keep the champion) once the matured sample
  or the duration reaches its configured maximum.

Extremes of ``p_i - p_j`` over R: the other arms sit at their own minimum of log M (``S / n``),
which leaves the pair the budget ``log(1/alpha) - sum of those minima``; on the pair, log M is
convex in each p with slope ``n (1 - (S + k) / (n p + k))``, so the extreme is where the two slopes
are opposite, found by bisection on that slope (:func:`lowest_difference`). Each arm's reported
interval is R's extent along that arm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

from mlops_runtime.domain.experiments import ArmStats, ExperimentError

__all__ = [
    "MIXTURE_SHAPE",
    "OUTCOME_KEEP_RUNNING",
    "OUTCOME_LIMIT",
    "OUTCOME_NO_DIFFERENCE",
    "OUTCOME_WINNER",
    "ArmInterval",
    "Difference",
    "ExperimentDecision",
    "SequentialTest",
    "confidence_sequence",
    "log_mixture",
    "log_mixture_floor",
    "lowest_difference",
    "mixture_bounds",
]

OUTCOME_WINNER = "winner"
OUTCOME_NO_DIFFERENCE = "no_meaningful_difference"
OUTCOME_KEEP_RUNNING = "keep_running"
OUTCOME_LIMIT = "stopped_at_limit"

# Gamma(k, k) mixing: tightest around 10^3-10^5 conversions per arm (see the module docstring).
MIXTURE_SHAPE = 300.0
# Newton from outside a convex function's root converges monotonically; 40 steps reach float
# precision from the starting points below (about 8 are needed for realistic counts).
_NEWTON_STEPS = 40

_SCALAR_MATH = SimpleNamespace(log=math.log, exp=math.exp, sqrt=math.sqrt, lgamma=math.lgamma,
                               maximum=max, minimum=min)


def mixture_bounds(reward_sum: Any, invocations: Any, alpha: Any, shape: float = MIXTURE_SHAPE,
                   xp: Any = _SCALAR_MATH) -> tuple[Any, Any]:
    """Lower and upper end of the level-``alpha`` confidence sequence of a mean reward.

    Works on floats (``xp`` the default: math) and, unchanged, on numpy arrays (``xp`` a namespace
    with numpy's log, exp, sqrt, maximum, minimum, where and scipy's gammaln as lgamma), which is how
    the benchmark runs thousands of experiments at once. ``invocations`` must be > 0.

    ``M(p) < 1/alpha`` with y = n p + k and A = S + k reads ``g(z) = e^z - A z - B < 0`` for
    z = log y, B = log(1/alpha) + k - k log k + lgamma(k) - lgamma(A): g is convex with its minimum
    at z = log A, so the two roots bound the interval. Newton starts left of the lower root at
    ``-(B + 1) / A`` (where g >= 1) and right of the upper one at ``log A + sqrt(-2 g_min / A)``
    (where ``g >= g_min + A t^2 / 2 = 0``), and moves monotonically toward each root.
    """
    k = shape
    a = reward_sum + k
    b = xp.log(1.0 / alpha) + k - k * math.log(k) + math.lgamma(k) - xp.lgamma(a)
    log_a = xp.log(a)
    g_min = a - a * log_a - b  # < 0 always: the interval contains S / n, where M <= 1
    low = -(b + 1.0) / a
    high = log_a + xp.sqrt(xp.maximum(-2.0 * g_min, 0.0) / a) + 1e-12
    for _ in range(_NEWTON_STEPS):
        low = low - (xp.exp(low) - a * low - b) / (xp.exp(low) - a)
        high = high - (xp.exp(high) - a * high - b) / (xp.exp(high) - a)
    lower = xp.maximum((xp.exp(low) - k) / invocations, 0.0)
    upper = xp.minimum((xp.exp(high) - k) / invocations, 1.0)
    return lower, upper


def log_mixture(p: Any, reward_sum: Any, invocations: Any, shape: float = MIXTURE_SHAPE,
                xp: Any = _SCALAR_MATH) -> Any:
    """``log M_n(p)`` of one arm (floats, or numpy arrays with ``xp`` as in :func:`mixture_bounds`)."""
    k = shape
    return (invocations * p + k * math.log(k) - math.lgamma(k) + xp.lgamma(reward_sum + k)
            - (reward_sum + k) * xp.log(invocations * p + k))


def log_mixture_floor(reward_sum: Any, invocations: Any, shape: float = MIXTURE_SHAPE, xp: Any = _SCALAR_MATH) -> Any:
    """The smallest ``log M_n(p)`` over p (at p = S / n; <= 0), for ``invocations`` > 0."""
    return log_mixture(reward_sum / invocations, reward_sum, invocations, shape, xp)


# Bisection halves the slope's range each step: 64 steps narrow it by 2^-64, below float precision.
_BISECTION_STEPS = 64


def lowest_difference(sum_i: Any, n_i: Any, sum_j: Any, n_j: Any, budget: Any, shape: float = MIXTURE_SHAPE,
                      xp: Any = _SCALAR_MATH) -> Any:
    """``min (p_i - p_j)`` subject to ``log M_i(p_i) + log M_j(p_j) <= budget``, 0 <= p <= 1 (n_i, n_j > 0).

    At a common slope g >= 0 the two arms' points are ``p_i(g) = ((S_i + k) / (1 + g / n_i) - k) / n_i``
    (moving down from S_i / n_i) and ``p_j(g) = ((S_j + k) / (1 - g / n_j) - k) / n_j`` (moving up);
    the constraint grows with g, so bisection finds the g where it meets ``budget``. If p_i reaches 0
    (or p_j reaches 1) first, the other arm takes the rest of the budget alone (its bound at that level).
    """
    k = shape
    a_i, a_j = sum_i + k, sum_j + k
    # g where p_i reaches 0, and (just below) where p_j reaches 1
    g_zero = n_i * sum_i / k
    g_one = n_j * (1.0 - a_j / (n_j + k))
    low, high = 0.0 * g_zero, xp.minimum(g_zero, g_one)
    for _ in range(_BISECTION_STEPS):
        g = 0.5 * (low + high)
        p_i = (a_i / (1.0 + g / n_i) - k) / n_i
        p_j = (a_j / (1.0 - g / n_j) - k) / n_j
        inside = log_mixture(p_i, sum_i, n_i, k, xp) + log_mixture(p_j, sum_j, n_j, k, xp) <= budget
        low, high = _choose(inside, g, low, xp), _choose(inside, high, g, xp)
    p_i = xp.maximum((a_i / (1.0 + low / n_i) - k) / n_i, 0.0)
    p_j = xp.minimum((a_j / (1.0 - low / n_j) - k) / n_j, 1.0)
    # A corner: one arm pinned at 0 (or 1) with budget left over; the other arm uses the rest.
    if xp is _SCALAR_MATH:
        if high >= g_zero:
            rest = budget - log_mixture(0.0, sum_i, n_i, k, xp)
            return 0.0 - mixture_bounds(sum_j, n_j, math.exp(-rest), k, xp)[1]
        if high >= g_one:
            rest = budget - log_mixture(1.0, sum_j, n_j, k, xp)
            return mixture_bounds(sum_i, n_i, math.exp(-rest), k, xp)[0] - 1.0
        return p_i - p_j
    at_zero, at_one = high >= g_zero, (high >= g_one) & (high < g_zero)
    rest_j = xp.where(at_zero, budget - log_mixture(0.0 * p_i, sum_i, n_i, k, xp), budget)
    rest_i = xp.where(at_one, budget - log_mixture(1.0 + 0.0 * p_j, sum_j, n_j, k, xp), budget)
    upper_j = mixture_bounds(sum_j, n_j, xp.exp(-rest_j), k, xp)[1]
    lower_i = mixture_bounds(sum_i, n_i, xp.exp(-rest_i), k, xp)[0]
    return xp.where(at_zero, -upper_j, xp.where(at_one, lower_i - 1.0, p_i - p_j))


def _choose(condition: Any, if_true: Any, if_false: Any, xp: Any) -> Any:
    """``if_true if condition else if_false``, element-wise on arrays."""
    if xp is _SCALAR_MATH:
        return if_true if condition else if_false
    return xp.where(condition, if_true, if_false)


def confidence_sequence(stats: ArmStats, alpha: float) -> tuple[float, float]:
    """``(lower, upper)``: one arm's mean reward lies in it at every look with probability >= 1 - alpha."""
    if stats.invocations == 0:
        return 0.0, 1.0
    return mixture_bounds(stats.reward_sum, stats.invocations, alpha)


@dataclass(frozen=True)
class ArmInterval:
    """One arm's matured evidence and its anytime-valid interval (the region's extent along it)."""

    arm: str
    invocations: int
    reward_sum: float
    mean: float | None
    lower: float
    upper: float


@dataclass(frozen=True)
class Difference:
    """``arm`` minus ``other``: the observed difference of means and its anytime-valid interval."""

    arm: str
    other: str
    difference: float | None
    lower: float
    upper: float


@dataclass(frozen=True)
class ExperimentDecision:
    """What the rule concluded at one look, and the evidence behind it (stored as JSON, reported).

    ``arm``: the winner, or the champion kept after ``no_meaningful_difference`` or
    ``stopped_at_limit``; ``None`` while the test keeps running. ``winner_statistic``: the smallest
    lower bound of (leader - other) over the other arms, a winner when it exceeds ``threshold``
    (the minimum effect). ``equivalence_statistic``: the largest bound of any pairwise difference
    (either sign), no meaningful difference when it is below ``threshold``.
    """

    outcome: str
    arm: str | None
    reason: str
    leader: str
    winner_statistic: float
    equivalence_statistic: float
    threshold: float
    alpha: float
    looks: int
    matured_invocations: int
    arms: tuple[ArmInterval, ...]
    differences: tuple[Difference, ...]

    @property
    def decided(self) -> bool:
        return self.outcome != OUTCOME_KEEP_RUNNING

    @property
    def winner(self) -> str | None:
        return self.arm if self.outcome == OUTCOME_WINNER else None

    def final_weights(self, arms: Sequence[str]) -> dict[str, float]:
        """All traffic to the kept arm (the others are released)."""
        return {name: (1.0 if name == self.arm else 0.0) for name in arms}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arms"] = [asdict(item) for item in self.arms]
        data["differences"] = [asdict(item) for item in self.differences]
        return data


class _Region:
    """The confidence region R of the module docstring for these arms' statistics."""

    def __init__(self, stats: Sequence[ArmStats], alpha: float) -> None:
        self.stats = stats
        self.threshold = math.log(1.0 / alpha)
        self.floors = [log_mixture_floor(item.reward_sum, item.invocations) if item.invocations else 0.0
                       for item in stats]
        self.total_floor = math.fsum(self.floors)

    def budget(self, *arms: int) -> float:
        """What R leaves ``arms`` once every other arm sits at its minimum (its floor)."""
        return self.threshold - (self.total_floor - math.fsum(self.floors[index] for index in arms))

    def _bounds(self, index: int, budget: float) -> tuple[float, float]:
        item = self.stats[index]
        if item.invocations == 0:  # M = 1 for every p: no constraint
            return 0.0, 1.0
        return mixture_bounds(item.reward_sum, item.invocations, math.exp(-budget))

    def extent(self, index: int) -> tuple[float, float]:
        """R's extent along one arm's mean: that arm's anytime-valid interval."""
        return self._bounds(index, self.budget(index))

    def lowest_difference(self, i: int, j: int) -> float:
        """The smallest ``p_i - p_j`` in R."""
        budget = self.budget(i, j)
        first, second = self.stats[i], self.stats[j]
        if first.invocations and second.invocations:
            return lowest_difference(first.reward_sum, first.invocations, second.reward_sum, second.invocations,
                                     budget)
        return self._bounds(i, budget)[0] - self._bounds(j, budget)[1]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SequentialTest:
    """The stopping rule: ``alpha`` (false-winner and false-equivalence rate at any number of looks),
    ``min_effect`` (smallest difference of mean rewards worth acting on, absolute: 0.005 is half a
    percentage point of conversion), and optional limits on the matured sample (``max_invocations``,
    all arms together) and on the duration (``max_duration_seconds`` since the round started)."""

    alpha: float = 0.05
    min_effect: float = 0.005
    max_invocations: int | None = None
    max_duration_seconds: float | None = None

    def __post_init__(self) -> None:
        if not _is_number(self.alpha) or not 0.0 < self.alpha < 1.0:
            raise ExperimentError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not _is_number(self.min_effect) or not 0.0 <= self.min_effect < 1.0:
            raise ExperimentError(f"min_effect must be in [0, 1), got {self.min_effect!r}")
        limit = self.max_invocations
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ExperimentError(f"max_invocations must be a positive int or None, got {limit!r}")
        duration = self.max_duration_seconds
        if duration is not None and (not _is_number(duration) or duration <= 0):
            raise ExperimentError(f"max_duration_seconds must be > 0 or None, got {duration!r}")

    def decide(self, stats: Sequence[ArmStats], *, champion: str, looks: int,
               elapsed_seconds: float = 0.0) -> ExperimentDecision:
        """The decision at this look from each arm's *matured* statistics (see the module docstring).

        ``champion``: the arm kept when no winner is declared; ``looks``: how many times the rule
        has been evaluated in this round, this one included (reported; validity does not need it).
        """
        stats = list(stats)
        names = [item.arm for item in stats]
        if len(stats) < 2 or len(set(names)) != len(names):
            raise ExperimentError(f"a test needs two or more distinct arms, got {names}")
        if champion not in names:
            raise ExperimentError(f"champion {champion!r} is not one of the arms {names}")
        region = _Region(stats, self.alpha)
        intervals = [ArmInterval(item.arm, item.invocations, item.reward_sum, item.mean_reward, *region.extent(index))
                     for index, item in enumerate(stats)]
        # The leader has the highest observed mean (ties: the champion, then the first arm).
        lead = max(range(len(stats)), key=lambda index: (-1.0 if intervals[index].mean is None
                                                          else intervals[index].mean, names[index] == champion))
        leader = names[lead]
        lead_mean = intervals[lead].mean
        differences = tuple(
            Difference(leader, item.arm, None if lead_mean is None or item.mean is None else lead_mean - item.mean,
                       region.lowest_difference(lead, index), -region.lowest_difference(index, lead))
            for index, item in enumerate(intervals) if index != lead
        )
        winner_statistic = min(item.lower for item in differences)
        equivalence_statistic = max(-region.lowest_difference(j, i) for i in range(len(stats))
                                    for j in range(len(stats)) if i != j)
        matured = sum(item.invocations for item in intervals)
        effect = self.min_effect

        if winner_statistic > effect:
            outcome, arm = OUTCOME_WINNER, leader
            reason = (f"{leader!r} beats every other arm by more than the minimum effect {effect:g}: the lower "
                      f"bound of the smallest difference is {winner_statistic:.5f} (anytime-valid, alpha {self.alpha:g})")
        elif equivalence_statistic < effect:
            outcome, arm = OUTCOME_NO_DIFFERENCE, champion
            reason = (f"no meaningful difference: every pairwise difference lies within +/-{equivalence_statistic:.5f}, "
                      f"inside the minimum effect {effect:g} (anytime-valid, alpha {self.alpha:g}); "
                      f"{champion!r} is kept")
        elif self.max_invocations is not None and matured >= self.max_invocations:
            outcome, arm = OUTCOME_LIMIT, champion
            reason = (f"maximum sample reached ({matured} >= {self.max_invocations} matured predictions) with neither "
                      f"a winner nor equivalence shown; {champion!r} is kept")
        elif self.max_duration_seconds is not None and elapsed_seconds >= self.max_duration_seconds:
            outcome, arm = OUTCOME_LIMIT, champion
            reason = (f"maximum duration reached ({elapsed_seconds / 86_400:.2f} of "
                      f"{self.max_duration_seconds / 86_400:.2f} days) with neither a winner nor equivalence "
                      f"shown; {champion!r} is kept")
        else:
            outcome, arm = OUTCOME_KEEP_RUNNING, None
            reason = (f"keep running: smallest lower bound of {leader!r} minus another arm {winner_statistic:.5f} "
                      f"(winner above {effect:g}); widest difference {equivalence_statistic:.5f} "
                      f"(no meaningful difference below {effect:g}); {matured} matured predictions")
        return ExperimentDecision(outcome, arm, reason, leader, winner_statistic, equivalence_statistic, effect,
                                  self.alpha, int(looks), matured, tuple(intervals), differences)
