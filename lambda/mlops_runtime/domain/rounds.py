"""Experiment rounds and the statistics rows they are counted in (pure, standard library only).

A *round* is one deployment of an experiment's endpoints: the controller starts round ``n + 1``
when it sees a new endpoint config. Between the deployment and that run, the inference API sees the
same change (``redeployed``: the endpoints' configs differ from the deployment the state recorded)
and already serves round ``n + 1`` (``serving_round``), so no prediction of the new models is
counted in the old round. Every prediction record names the round that served it, and
its evidence is counted in one statistics row per (round, arm, served hour)::

    sort key  "<round>#<arm>#<yyyy-mm-ddThh>"     e.g. "3#challenger#2026-12-05T08"

The inference API adds ``invocations`` to the row when it serves the prediction; the feedback API
adds the reward to the row *of that prediction* (its round, arm and served hour) whenever the
feedback arrives, however late. So evidence of an earlier round can never count in a later one
(its rows stay, for reporting), and a decision can use only hours whose feedback has matured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

STATISTICS_SORT_KEY = "round_arm_hour"  # attribute name of the statistics table's sort key
HOUR_SECONDS = 3600
KEY_SEPARATOR = "#"
# Predictions recorded before rounds existed carry no round: they are never counted in one.
UNKNOWN_ROUND = 0


class InvalidStatisticsKey(ValueError):
    """A statistics sort key that is not ``<round>#<arm>#<yyyy-mm-ddThh>``."""


def served_hour(epoch_seconds: float) -> str:
    """The UTC hour a prediction was served in, ``yyyy-mm-ddThh``."""
    return datetime.fromtimestamp(math.floor(epoch_seconds), UTC).strftime("%Y-%m-%dT%H")


@functools.lru_cache(maxsize=4096)  # each controller run sums every hour row of its round
def hour_end(hour: str) -> float:
    """Epoch seconds at which ``hour`` (``yyyy-mm-ddThh``) ends."""
    try:
        start = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError as error:
        raise InvalidStatisticsKey(f"not an hour yyyy-mm-ddThh: {hour!r}") from error
    return start.timestamp() + HOUR_SECONDS


def statistics_key(round_id: int, arm: str, served_at: float) -> str:
    """The statistics row of a prediction served by ``arm`` in round ``round_id`` at ``served_at``."""
    return f"{int(round_id)}{KEY_SEPARATOR}{arm}{KEY_SEPARATOR}{served_hour(served_at)}"


def round_prefix(round_id: int) -> str:
    """The common prefix of a round's statistics keys (``begins_with`` in a Query)."""
    return f"{int(round_id)}{KEY_SEPARATOR}"


def parse_statistics_key(key: str) -> tuple[int, str, str]:
    """``(round, arm, hour)`` of a statistics sort key (an arm name may itself contain ``#``)."""
    head, _, rest = key.partition(KEY_SEPARATOR)
    arm, _, hour = rest.rpartition(KEY_SEPARATOR)
    if not head.isdigit() or not arm or not hour:
        raise InvalidStatisticsKey(f"statistics key is not <round>#<arm>#<hour>: {key!r}")
    hour_end(hour)  # validates the hour
    return int(head), arm, hour


def round_salt(salt: str, round_id: int) -> str:
    """The assignment salt of a round: each round reshuffles which subjects land in which arm, so
    the same subjects are not the challenger's sample round after round. Round 1 keeps ``salt``."""
    return salt if round_id <= 1 else f"{salt}{KEY_SEPARATOR}round-{int(round_id)}"


def redeployed(recorded: object, deployed: Mapping[str, str | None]) -> bool:
    """Whether the endpoints now serve other configs than the deployment a state item recorded
    (``{endpoint: endpoint config name}``). Nothing recorded yet (no controller run) is no change."""
    return isinstance(recorded, Mapping) and dict(recorded) != dict(deployed)


def serving_round(state_round: int, recorded: object, deployed: Mapping[str, str | None]) -> int:
    """The round that serves now: the state's, or the next one when the endpoints were redeployed
    since the state was written (the controller's next run starts exactly that round)."""
    return state_round + 1 if redeployed(recorded, deployed) else state_round


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """One arm's evidence summed over statistics rows."""

    invocations: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    feedback_count: int = 0

    def __add__(self, other: ArmCounts) -> ArmCounts:
        return ArmCounts(
            self.invocations + other.invocations,
            self.reward_sum + other.reward_sum,
            self.reward_sq_sum + other.reward_sq_sum,
            self.feedback_count + other.feedback_count,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ArmCounts:
        def number(name: str) -> float:
            value = row.get(name)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

        return cls(int(number("invocations")), float(number("reward_sum")), float(number("reward_sq_sum")),
                   int(number("feedback_count")))


def sum_rows(
    rows: Iterable[tuple[str, Mapping[str, object]]], round_id: int, served_before: float | None = None
) -> dict[str, ArmCounts]:
    """Per-arm totals of ``(sort key, row)`` pairs of round ``round_id``, keeping only hours that
    ended at or before ``served_before`` (``None``: every hour). Rows of other rounds are ignored."""
    totals: dict[str, ArmCounts] = {}
    for key, row in rows:
        row_round, arm, hour = parse_statistics_key(key)
        if row_round != round_id or (served_before is not None and hour_end(hour) > served_before):
            continue
        totals[arm] = totals.get(arm, ArmCounts()) + ArmCounts.from_row(row)
    return totals
