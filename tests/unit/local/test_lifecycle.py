"""Issue 15's proof: six weeks of a model's life on a simulated clock, the real handlers handing over.

One module-scoped run of ``mlops_platform.local.lifecycle.live`` (seeded: the same story every
time; ``make demo-lifecycle`` prints it); each test asserts one hand-over of the story. What is real
and what is simulated is in the module's docstring. Its wall time is measured by
``benchmarks/bench_lifecycle.py``, not asserted here.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from datetime import timedelta

import pytest

from mlops_platform.local import lifecycle
from mlops_platform.local.lifecycle import DRIFT_AT, START


@pytest.fixture(scope="module")
def lived() -> tuple[lifecycle.Story, list]:
    """The story, and the AWS calls its handlers made (the ledger check of ``tests/conftest.py``
    sees only calls made inside a test, not in a fixture: ``test_every_aws_call...`` does it here)."""
    from aws_contract.recorder import RECORDER

    start = len(RECORDER.calls)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the handlers' EMF lines
        warnings.simplefilter("ignore")
        story = lifecycle.live()
    return story, RECORDER.calls[start:]


@pytest.fixture
def story(lived) -> lifecycle.Story:
    return lived[0]


def test_every_aws_call_of_the_story_is_in_the_permission_ledger(lived):
    import conftest
    from aws_contract import ledger

    # Staging and prod share the simulation's one account (a supported layout), while the contract's
    # prod role is synthesized for a separate staging account: the promotion's read of the staging
    # package is checked cross-account by tests/unit/deployment/test_model_promotion.py instead.
    calls = [call for call in lived[1]
             if not (call.caller.endswith("model_promotion") and call.operation == "DescribeModelPackage")]
    callers = {call.caller.rsplit(".", 1)[-1] for call in calls}
    assert {"deployer", "experiment_controller", "inference_api", "monitoring_launcher", "retraining_trigger",
            "model_promotion"} <= callers
    missing = {ledger.entry(call) for call in calls} - ledger.load()
    if missing and ledger.recording():
        conftest._new_entries.update(missing)
    assert ledger.recording() or not missing, "\n".join(str(entry.as_json()) for entry in sorted(missing))


def deployed(story, version, endpoint=lifecycle.DEV_ENDPOINT):
    (event,) = [e for e in story.of("deployed") if e.data["version"] == version and e.data["endpoint"] == endpoint]
    return event


def decided(story, round_id):
    (event,) = [e for e in story.of("decided") if e.data["round"] == round_id]
    return event


def test_the_first_approvals_deploy_a_champion_then_an_experiment_against_it(story):
    assert deployed(story, "v1").data["live"] == {"champion": ("v1", 1.0)}
    v2 = deployed(story, "v2")
    assert v2.data["action"] == "add-challenger" and v2.data["live"] == {"champion": ("v1", 0.9),
                                                                         "challenger": ("v2", 0.1)}
    (round_2,) = [e for e in story.of("round") if e.data["round"] == 2]
    assert round_2.at - v2.at <= timedelta(hours=1)  # the controller's next hourly run


def test_the_better_model_wins_on_matured_feedback_and_stays_alone_at_100_percent(story):
    start = next(e for e in story.of("round") if e.data["round"] == 2)
    win = decided(story, 2)
    assert win.data["result"]["winner"] == "challenger"
    assert win.at - start.at >= timedelta(hours=lifecycle.CONTROLLER_RULE["feedback_delay_hours"])
    assert win.data["live"] == {"champion": ("v1", 0.0), "challenger": ("v2", 1.0)}
    (kept,) = [e for e in story.of("kept") if e.at == win.at]
    assert kept.data["live"] == {"champion": ("v2", 1.0)}  # the loser's variant removed, not left at 0 %
    (round_3,) = [e for e in story.of("round") if e.data["round"] == 3]
    assert round_3.data["weights"] == {"champion": 1.0, "challenger": 0.0}


def test_late_rewards_count_in_the_round_that_served_them(story):
    """Labels arrive up to three days late: those of round 2 that came after round 3 started were
    credited to round 2, and round 3 (the winner alone) counts none of the loser's evidence."""
    (round_3,) = [e for e in story.of("round") if e.data["round"] == 3]
    round_2 = story.rounds[2]
    assert sum(c.feedback_count for c in round_2.values()) > round_3.data["previous_round_labels"]
    assert set(story.rounds[3]) == {"champion"}
    # Every prediction is counted in the round of the deployment that served it: the new models'
    # predictions never land in the round before their deployment.
    assert set(story.rounds[1]) == {"champion"} and set(story.rounds[4]) == {"champion", "challenger"}


def test_drift_and_the_quality_drop_of_week_4_raise_the_alarms_and_nothing_before(story):
    alarms = [e for e in story.of("alarm") if e.data["state"] == "ALARM"]
    assert not [e for e in alarms if e.at < DRIFT_AT]  # three quiet weeks: no false page
    first = {alarm: min(e.at for e in alarms if e.data["alarm"] == alarm)
             for alarm in (lifecycle.QUALITY_ALARM, lifecycle.DRIFT_ALARM)}
    assert all(DRIFT_AT < at <= DRIFT_AT + timedelta(days=3) for at in first.values()), first


def test_the_quality_alarm_retrains_on_production_labels_and_the_new_model_is_tried_against_the_winner(story):
    (started,) = [e for e in story.of("retraining") if e.data["decision"]["action"] == "started"]
    assert started.at == min(e.at for e in story.of("alarm") if e.data["alarm"] == lifecycle.QUALITY_ALARM)
    (v3,) = [e for e in story.of("registered") if e.data["version"] == "v3"]
    records = int(v3.data["metadata"]["mlops:production-records"])
    assert records > 100  # features from data capture joined with the feedback API's labels
    window_start = v3.data["metadata"]["mlops:production-window"].split("/")[0]
    assert window_start >= (v3.at - timedelta(hours=lifecycle.RETRAINING_LOOKBACK_HOURS)).strftime("%Y-%m-%dT%H")
    deployment = deployed(story, "v3")
    assert deployment.data["action"] == "add-challenger"
    assert deployment.data["live"] == {"champion": ("v2", 0.9), "challenger": ("v3", 0.1)}  # against the winner


def test_the_retrained_model_wins_is_kept_and_promoted_to_prod_where_prod_approves_it(story):
    win = decided(story, 4)
    assert win.data["result"]["winner"] == "challenger" and win.at < START + timedelta(weeks=lifecycle.WEEKS)
    (kept,) = [e for e in story.of("kept") if e.at == win.at]
    assert kept.data["live"] == {"champion": ("v3", 1.0)}
    promoted = {e.data["source"]: e.data["target"] for e in story.of("promoted")}
    assert len(promoted) == 3  # every approval in staging registered the package in prod's registry
    prod = deployed(story, "v3", lifecycle.PROD_ENDPOINT)
    assert prod.at >= win.at and prod.data["live"] == {"champion": ("v3", 1.0)}
    assert [e.data["live"] for e in story.of("prod")] == [{"champion": ("v3", 1.0)}]


def test_the_api_functions_ran_with_what_the_stack_builds_for_the_story_config(story):
    """The inference API, the feedback API and the controller got their settings from the stack's
    builders for the story's config (``config/dev.yaml`` with the story's endpoint and experiment):
    passed as the deployed functions get them and validated by their handlers' own models, the same."""
    import importlib

    from mlops_platform import function_settings as build

    config = lifecycle.story_config()
    ran = story.api_settings
    resources = build.ApiResources(subject_hash_secret=ran.inference.subject_hash_secret, notification_topic_arn=None)
    for handler, built, used in (
            ("inference_api", build.inference(config, resources), ran.inference),
            ("feedback_api", build.feedback(config, resources), ran.feedback),
            ("experiment_controller", build.controller(config, resources, build.controller_rules(config)), ran.controller)):
        assert importlib.import_module(f"mlops_runtime.handlers.{handler}").SETTINGS_MODEL.from_env(built.to_env()) == used
    experiment = ran.inference.experiments[lifecycle.EXPERIMENT]
    assert {arm.endpoint for arm in experiment.arms.values()} == {lifecycle.DEV_ENDPOINT}
    assert experiment.initial_weights == {"champion": 0.9, "challenger": 0.1}
    rule = ran.controller.controllers[lifecycle.EXPERIMENT]
    assert {key: getattr(rule, key) for key in lifecycle.CONTROLLER_RULE} == lifecycle.CONTROLLER_RULE
