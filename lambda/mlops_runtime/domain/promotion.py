"""The hand-over from a decided experiment to the deployer (pure, standard library only).

The experiment controller decides; the deployer owns the endpoint's configs. When an experiment
between the deployer's ``champion`` and ``challenger`` variants of one endpoint is decided, the
controller puts one EventBridge event (``source`` :data:`EVENT_SOURCE`, ``detail-type``
:data:`EVENT_DETAIL_TYPE`, detail :meth:`Promotion.to_detail`) naming the variant (and model
package) that stays and the one that is retired; the deployer (``handlers.deployer``) plans it with
``domain.deployment.plan_promotion``: the kept model becomes the sole ``champion`` at 100 %, the
retired variant is removed from the endpoint.

What each outcome keeps is ONE mapping, :data:`KEEPS`: a new kind of decision is one entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops_runtime.domain.sequential_test import OUTCOME_LIMIT, OUTCOME_NO_DIFFERENCE, OUTCOME_WINNER
from mlops_runtime.domain.validation import OURS, parse

CHAMPION_VARIANT = "champion"  # the deployer's champion variant (domain.deployment.CHAMPION)
EVENT_SOURCE = "mlops.experiments"
EVENT_DETAIL_TYPE = "Experiment Decided"


# outcome -> which arm stays: the decided "winner", or the "champion" (the arm on the champion variant).
KEEPS: Mapping[str, str] = {
    OUTCOME_WINNER: "winner",
    OUTCOME_NO_DIFFERENCE: "champion",
    OUTCOME_LIMIT: "champion",
}


class InvalidPromotion(ValueError):
    """A decision that cannot be handed over, or an event that is not a valid hand-over."""


Text = Annotated[str, Field(min_length=1)]


@pydantic_dataclass(frozen=True, config=OURS)
class Promotion:
    """What the deployer must do with an endpoint after a decided experiment (the event's detail,
    written by the controller: parsed strictly, unknown keys refused)."""

    endpoint_name: Text
    experiment: Text
    round: Annotated[int, Field(ge=1)]
    outcome: Text
    kept_variant: Text
    kept_model_package_arn: Text
    retired_variant: Text
    retired_model_package_arn: Text | None
    decided_at: float

    def __post_init__(self) -> None:
        if self.outcome not in KEEPS:
            raise InvalidPromotion(f"detail.outcome: unknown outcome {self.outcome!r}; known: {sorted(KEEPS)}")
        if self.kept_variant == self.retired_variant:
            raise InvalidPromotion("detail.retired_variant: the kept and the retired variant are the same")

    def to_detail(self) -> str:
        """The EventBridge ``Detail`` (JSON text)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_eventbridge(cls, event: object) -> tuple[str, Promotion]:
        """``(event id, promotion)`` of an "Experiment Decided" event; :class:`InvalidPromotion` else."""
        if not is_promotion_event(event):
            raise InvalidPromotion("not an Experiment Decided event")
        assert isinstance(event, Mapping)
        event_id, detail = event.get("id"), event.get("detail")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidPromotion("the event has no id")
        promotion = parse(cls, detail, lambda field, reason: InvalidPromotion(f"{field}: {reason}"), "detail")
        return event_id, promotion


def is_promotion_event(event: object) -> bool:
    return (isinstance(event, Mapping) and event.get("source") == EVENT_SOURCE
            and event.get("detail-type") == EVENT_DETAIL_TYPE)


def kept_and_retired(outcome: str, winner: str | None, champion: str, arms: tuple[str, ...]) -> tuple[str, str]:
    """``(kept arm, retired arm)`` of a decided two-arm experiment whose champion arm is ``champion``."""
    keeps = KEEPS.get(outcome)
    if keeps is None:
        raise InvalidPromotion(f"unknown outcome {outcome!r}; known: {sorted(KEEPS)}")
    if len(arms) != 2 or champion not in arms:
        raise InvalidPromotion(f"a hand-over needs two arms, one of them the champion; got {list(arms)}")
    kept = winner if keeps == "winner" else champion
    if kept not in arms:
        raise InvalidPromotion(f"outcome {outcome!r} keeps {kept!r}, which is not an arm of {list(arms)}")
    (retired,) = (arm for arm in arms if arm != kept)
    return kept, retired


def _common_note(experiment: str, round_id: int, outcome: str, decided_at: float) -> dict[str, str]:
    from datetime import UTC, datetime

    return {"mlops:experiment": experiment, "mlops:experiment-round": str(round_id),
            "mlops:experiment-outcome": outcome,
            "mlops:experiment-decided-at": datetime.fromtimestamp(decided_at, UTC).isoformat()}


def package_notes(promotion: Promotion) -> dict[str, dict[str, str]]:
    """``{package ARN: CustomerMetadataProperties}`` recording the decision on both model packages."""
    common = {**_common_note(promotion.experiment, promotion.round, promotion.outcome, promotion.decided_at),
              "mlops:endpoint": promotion.endpoint_name}
    notes = {promotion.kept_model_package_arn: {**common, "mlops:experiment-result": "champion"}}
    if promotion.retired_model_package_arn:
        notes[promotion.retired_model_package_arn] = {**common, "mlops:experiment-result": "retired"}
    return notes


def kept_note(experiment: str, round_id: int, decision: Mapping[str, Any]) -> dict[str, str]:
    """The note on the kept arm's package when there is no hand-over (e.g. arms on several endpoints)."""
    decided_at = decision.get("decided_at")
    return {**_common_note(experiment, round_id, str(decision.get("outcome", OUTCOME_WINNER)),
                           float(decided_at) if isinstance(decided_at, (int, float)) else 0.0),
            "mlops:experiment-result": "kept"}


def event_entry(promotion: Promotion) -> dict[str, Any]:
    """The ``PutEvents`` entry of a hand-over (default event bus)."""
    return {"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": promotion.to_detail(),
            "Resources": [promotion.kept_model_package_arn]}
