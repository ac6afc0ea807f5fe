"""The hand-over of a decided experiment: the outcome mapping, the event, and plan_promotion (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deployment_fixtures import ENDPOINT, NOW, make_package, make_state, package_arn
from mlops_runtime.domain import deployment, promotion
from mlops_runtime.domain.deployment import ACTION_NOOP, ACTION_PROMOTE, CHALLENGER, CHAMPION, plan_promotion
from mlops_runtime.domain.promotion import InvalidPromotion, Promotion, kept_and_retired


def test_the_deployers_champion_variant_is_the_one_the_controller_names():
    assert promotion.CHAMPION_VARIANT == deployment.CHAMPION


@pytest.mark.parametrize("outcome,winner,kept", [
    (promotion.OUTCOME_WINNER, "b", "b"),
    (promotion.OUTCOME_WINNER, "a", "a"),
    (promotion.OUTCOME_NO_DIFFERENCE, None, "a"),
    (promotion.OUTCOME_LIMIT, "b", "a"),  # stopped at the limit: the champion stays whoever leads
])
def test_each_outcome_keeps_one_arm_and_retires_the_other(outcome, winner, kept):
    assert kept_and_retired(outcome, winner, "a", ("a", "b")) == (kept, "b" if kept == "a" else "a")


@pytest.mark.parametrize("outcome,winner,arms", [
    ("draw", "a", ("a", "b")), (promotion.OUTCOME_WINNER, None, ("a", "b")), (promotion.OUTCOME_WINNER, "a", ("a",)),
    (promotion.OUTCOME_WINNER, "a", ("x", "b")),
])
def test_a_decision_that_cannot_be_handed_over_is_refused(outcome, winner, arms):
    with pytest.raises(InvalidPromotion):
        kept_and_retired(outcome, winner, "a", arms)


def handover(**changes):
    values = dict(endpoint_name=ENDPOINT, experiment="churn", round=3, outcome=promotion.OUTCOME_WINNER,
                  kept_variant=CHALLENGER, kept_model_package_arn=package_arn(2), retired_variant=CHAMPION,
                  retired_model_package_arn=package_arn(1), decided_at=1_764_921_600.0)
    return Promotion(**{**values, **changes})


def event(detail, **fields):
    return {"id": "e-1", "source": promotion.EVENT_SOURCE, "detail-type": promotion.EVENT_DETAIL_TYPE,
            "detail": detail, **fields}


def test_the_documented_sample_is_what_the_controller_puts():
    """tests/fixtures/events' sample (the event contract matches the rules against it) stays the real shape."""
    sample = json.loads((Path(__file__).parents[2] / "fixtures" / "events" / "mlops-experiment-decided.json").read_text())
    event = sample["event"]
    _, parsed = Promotion.from_eventbridge(event)
    assert json.loads(parsed.to_detail()) == event["detail"]
    assert promotion.event_entry(parsed)["Resources"] == event["resources"]
    assert set(sample["_source"]["values"]["detail.outcome"]) == set(promotion.KEEPS)


def test_the_event_carries_the_promotion_unchanged():
    original = handover()
    entry = promotion.event_entry(original)
    assert (entry["Source"], entry["DetailType"]) == (promotion.EVENT_SOURCE, promotion.EVENT_DETAIL_TYPE)
    assert Promotion.from_eventbridge(event(json.loads(entry["Detail"]))) == ("e-1", original)
    assert Promotion.from_eventbridge(event({**json.loads(entry["Detail"]), "retired_model_package_arn": None}))[1] \
        == handover(retired_model_package_arn=None)


@pytest.mark.parametrize("change", [{"round": "3"}, {"outcome": "tie"}, {"kept_model_package_arn": ""},
                                    {"retired_variant": CHALLENGER}, {"decided_at": True}])
def test_a_malformed_event_is_refused(change):
    detail = {**json.loads(handover().to_detail()), **change}
    with pytest.raises(InvalidPromotion):
        Promotion.from_eventbridge(event(detail))
    assert not promotion.is_promotion_event({**event(detail), "source": "aws.sagemaker"})


def test_the_decision_is_noted_on_both_packages():
    notes = promotion.package_notes(handover())
    assert notes[package_arn(2)]["mlops:experiment-result"] == "champion"
    assert notes[package_arn(1)]["mlops:experiment-result"] == "retired"
    assert notes[package_arn(1)]["mlops:experiment-decided-at"] == "2025-12-05T08:00:00+00:00"


def test_promoting_the_challenger_makes_its_model_the_sole_champion(realtime_spec):
    current = make_state(1, 2, weight=1.0)
    plan = plan_promotion(current, make_package(2), package_arn(1), realtime_spec, NOW)
    assert plan.action == ACTION_PROMOTE and [c.operation for c in plan.calls] == ["CreateEndpointConfig",
                                                                                  "UpdateEndpoint"]
    (variant,) = plan.call("CreateEndpointConfig").params["ProductionVariants"]
    assert (variant["VariantName"], variant["ModelName"], variant["InitialVariantWeight"]) == (
        CHAMPION, current.variant(CHALLENGER).model_name, 1.0)
    assert variant["InitialInstanceCount"] == realtime_spec.variants.champion.initial_instance_count
    assert "DeploymentConfig" not in plan.call("UpdateEndpoint").params  # the variant names change
    assert plan.previous_config_name == current.config_name and plan.rollback


def test_keeping_the_champion_removes_the_challenger(realtime_spec):
    current = make_state(1, 2, weight=0.1)
    plan = plan_promotion(current, make_package(1), package_arn(2), realtime_spec, NOW)
    (variant,) = plan.call("CreateEndpointConfig").params["ProductionVariants"]
    assert (variant["VariantName"], variant["ModelName"]) == (CHAMPION, current.variant(CHAMPION).model_name)


@pytest.mark.parametrize("state,kept,retired,why", [
    (make_state(2), 2, 1, "already promoted"),
    (make_state(1, 3), 2, 1, "superseded"),
    (make_state(2, 3), 2, 1, "newer experiment"),
])
def test_promotion_done_superseded_or_overtaken_is_a_noop(realtime_spec, state, kept, retired, why):
    plan = plan_promotion(state, make_package(kept), package_arn(retired), realtime_spec, NOW)
    assert plan.action == ACTION_NOOP and why in plan.reason and not plan.calls


def test_a_new_challenger_is_tried_against_a_challenger_that_carries_all_traffic(realtime_spec):
    from mlops_runtime.domain.deployment import plan_deployment

    current = make_state(1, 2, weight=1.0)  # the controller's final weights: champion 0, challenger 1
    plan = plan_deployment(current, make_package(3), realtime_spec, NOW)
    variants = {v["VariantName"]: v for v in plan.call("CreateEndpointConfig").params["ProductionVariants"]}
    assert variants[CHAMPION]["ModelName"] == current.variant(CHALLENGER).model_name
    assert variants[CHAMPION]["InitialVariantWeight"] == 0.9 and variants[CHALLENGER]["InitialVariantWeight"] == 0.1
    assert any("carries all the traffic" in note for note in plan.notes)
