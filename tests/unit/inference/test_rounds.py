"""Rounds are real: statistics rows per (round, arm, served hour), feedback credited to the round that
served the prediction, a new salt per round, smoke-test traffic never counted.

The regression tests of issue 15's defects 1 and 8 run the real inference API, feedback API and
experiment controller in-process against moto (the model container is the local rehearsal's fake).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from controller_fixtures import Redeployed
from moto import mock_aws
from lambda_context import LambdaContext
from settings_support import put_subject_hash_key

from mlops_runtime.domain import rounds

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ENDPOINT = "churn-ep"
SMOKE_ROLE = "mlops-dev-api-smoke-test"
EXPERIMENTS = {
    "churn": {
        "experiment": "churn-exp",
        "arms": [{"arm": "champion", "endpoint": ENDPOINT, "variant": "v1"},
                 {"arm": "challenger", "endpoint": ENDPOINT, "variant": "v2"}],
        "initial_weights": {"champion": 0.5, "challenger": 0.5},
        "allow_variant_override": True,
        "content_types": ["text/csv"],
        "salt": "churn",
    },
}
# Decides once one arm beats the other by more than 10 points (anytime-valid, alpha 0.05).
CONTROLLER = {"churn": {"strategy": "thompson", "min_share": 0.1, "max_step": 0.2, "min_observations": 30,
                        "alpha": 0.05, "min_effect": 0.1}}


# --- the pure part ------------------------------------------------------------------------------

arm_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@given(round_id=st.integers(1, 10**6), arm=arm_names, served_at=st.floats(0, 4_102_444_800))
def test_a_statistics_key_names_its_round_arm_and_served_hour(round_id, arm, served_at):
    key = rounds.statistics_key(round_id, arm, served_at)
    parsed_round, parsed_arm, hour = rounds.parse_statistics_key(key)
    assert (parsed_round, parsed_arm) == (round_id, arm)
    assert rounds.hour_end(hour) - rounds.HOUR_SECONDS <= served_at < rounds.hour_end(hour)
    assert key.startswith(rounds.round_prefix(round_id))
    assert not key.startswith(rounds.round_prefix(round_id * 10))  # "1#" never matches round 10's rows


def test_sum_rows_keeps_one_round_and_only_the_hours_that_ended_before_a_time():
    def row(key, invocations, rewards):
        return key, {"invocations": invocations, "reward_sum": rewards, "reward_sq_sum": rewards,
                     "feedback_count": rewards}

    rows = [row("2#a#2026-12-05T08", 10, 1), row("2#a#2026-12-05T09", 5, 2), row("2#b#2026-12-05T08", 7, 0),
            row("1#a#2026-12-05T08", 100, 90), row("12#a#2026-12-05T08", 3, 3)]
    nine = datetime(2026, 12, 5, 9, tzinfo=UTC).timestamp()
    assert rounds.sum_rows(rows, 2) == {"a": rounds.ArmCounts(15, 3.0, 3.0, 3), "b": rounds.ArmCounts(7, 0.0, 0.0, 0)}
    assert rounds.sum_rows(rows, 2, served_before=nine) == {"a": rounds.ArmCounts(10, 1.0, 1.0, 1),
                                                           "b": rounds.ArmCounts(7, 0.0, 0.0, 0)}
    assert rounds.sum_rows(rows, 2, served_before=nine - 1) == {}
    with pytest.raises(rounds.InvalidStatisticsKey):
        rounds.sum_rows([row("champion", 1, 0)], 1)


def test_each_round_has_its_own_salt_round_one_keeps_the_configured_one():
    assert rounds.round_salt("churn", 1) == "churn"
    assert len({rounds.round_salt("churn", n) for n in range(1, 6)}) == 5


# --- the loop on moto ---------------------------------------------------------------------------


class Accepting:
    """Ground-truth writer and dead-letter queue that accept everything (no labels are sent here)."""

    def put(self, lines):
        return {}

    def send(self, messages):
        return {}


class Loop:
    """The inference API, feedback API and controller handlers wired to one moto account."""

    def __init__(self, monkeypatch):
        from mlops_platform.local.server import FakeModelRuntime
        from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
        from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore
        from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
        from mlops_runtime.handlers import experiment_controller, feedback_api, inference_api
        from mlops_runtime.settings.experiments import ControllerSettings, InferenceSettings
        from mlops_runtime.settings.feedback import FeedbackApiSettings

        tables = {"predictions_table": "predictions", "statistics_table": "statistics"}
        secret = put_subject_hash_key("pepper")
        inference = InferenceSettings(experiments=EXPERIMENTS, state_table="state", subject_hash_secret=secret,
                                      smoke_test_role=SMOKE_ROLE, **tables)
        feedback = FeedbackApiSettings(feedback_table="feedback", ground_truth_stream="ground-truth",
                                       dead_letter_queue_url="https://sqs/dead-letters", **tables)
        controller = ControllerSettings(experiments=EXPERIMENTS, controllers=CONTROLLER, state_table="state",
                                        statistics_table="statistics")
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        for table, keys in (("predictions", ["inference_id"]), ("statistics", ["experiment", "round_arm_hour"]),
                            ("state", ["experiment"]), ("feedback", ["feedback_id"])):
            self.ddb.create_table(
                TableName=table, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"))],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys])
        sm = boto3.client("sagemaker", region_name=REGION)
        for variant in ("v1", "v2"):
            sm.create_model(ModelName=f"{ENDPOINT}-{variant}", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm",
                            PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/m:1"})
        sm.create_endpoint_config(EndpointConfigName=f"{ENDPOINT}-cfg-1", ProductionVariants=[
            {"VariantName": v, "ModelName": f"{ENDPOINT}-{v}", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large", "InitialVariantWeight": 0.5} for v in ("v1", "v2")])
        sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-cfg-1")
        self.store = DynamoDBExperimentsStore("predictions", "statistics", "state", self.ddb)
        self.control = Boto3EndpointControl(sm)

        self.inference = inference_api
        inference_api.configure(dataclasses.replace(
            inference_api.runtime_from_settings(inference), store=self.store, endpoints=self.control,
            model=FakeModelRuntime({ENDPOINT: {"v1": "model-1", "v2": "model-2"}})))
        self.feedback = feedback_api
        feedback_api.configure(feedback_api.Runtime(
            settings=feedback.limits(b"pepper"), store=DynamoDBFeedbackStore("predictions", "feedback", "statistics", self.ddb),
            ground_truth=Accepting(), dead_letters=Accepting()))
        self.controller = experiment_controller
        self.controller_settings = controller
        experiment_controller.configure(store=self.store, endpoints=self.control, settings=controller)

    def close(self):
        self.inference.configure(None)
        self.feedback.configure(None)
        self.controller.configure()

    def invoke(self, subject, arm=None, caller=None, smoke=False):
        """One prediction; its headers (X-Variant, X-Inference-Id, ...)."""
        from mlops_platform.local.server import proxy_event

        headers = [("Content-Type", "text/csv"), ("X-Subject-Id", subject)]
        if arm:
            headers.append(("X-Target-Arm", arm))
        if smoke:
            headers.append(("X-Smoke-Test", "true"))
        event = proxy_event("POST", "/v1/endpoints/churn/invocations", "/v1/endpoints/{endpoint}/invocations",
                            {"endpoint": "churn"}, headers, "", b"0.5,0.5")
        if caller:
            event["requestContext"]["identity"]["userArn"] = caller
        response = self.inference.handler(event, LambdaContext())
        assert response["statusCode"] == 200, response
        return {k: (v[0] if isinstance(v, list) else v)
                for k, v in (response.get("multiValueHeaders") or response["headers"]).items()}

    def reward(self, inference_ids, reward=1):
        from mlops_platform.local.server import proxy_event

        records = [{"inference_id": i, "feedback_type": "conversion", "reward": reward} for i in inference_ids]
        for start in range(0, len(records), 100):
            body = json.dumps({"records": records[start:start + 100]}).encode()
            event = proxy_event("POST", "/v1/feedback", "/v1/feedback", None,
                                [("Content-Type", "application/json")], "", body)
            response = self.feedback.handler(event, LambdaContext())
            assert response["statusCode"] == 202, response

    def run_controller(self):
        return self.controller.handler({"experiment": "churn"}, LambdaContext())

    def redeploy(self, config_name):
        """The endpoint now serves ``config_name``, as both the controller and the inference API see it."""
        redeployed = Redeployed(self.control, config_name)
        self.controller.configure(store=self.store, endpoints=redeployed, settings=self.controller_settings)
        self.inference.runtime().endpoints = redeployed
        self.inference.runtime().weights_cache.clear()  # as after ALLOCATION_CACHE_SECONDS


@pytest.fixture
def loop(monkeypatch):
    with mock_aws():
        platform = Loop(monkeypatch)
        yield platform
        platform.close()


def test_arm_counts_sums_one_round_per_arm_and_only_hours_served_before(loop):
    for key, invocations in (("1#champion#2026-12-05T08", 4), ("1#champion#2026-12-05T09", 6),
                             ("1#challenger#2026-12-05T08", 5), ("2#champion#2026-12-05T09", 9)):
        loop.ddb.put_item(TableName="statistics", Item={
            "experiment": {"S": "churn-exp"}, "round_arm_hour": {"S": key}, "invocations": {"N": str(invocations)},
            "reward_sum": {"N": "1"}, "reward_sq_sum": {"N": "1"}, "feedback_count": {"N": "1"}})
    nine = datetime(2026, 12, 5, 9, tzinfo=UTC).timestamp()
    assert loop.store.arm_counts("churn-exp", 1) == {"champion": rounds.ArmCounts(10, 2.0, 2.0, 2),
                                                     "challenger": rounds.ArmCounts(5, 1.0, 1.0, 1)}
    assert loop.store.arm_counts("churn-exp", 1, served_before=nine) == {
        "champion": rounds.ArmCounts(4, 1.0, 1.0, 1), "challenger": rounds.ArmCounts(5, 1.0, 1.0, 1)}
    assert loop.store.arm_counts("churn-exp", 2) == {"champion": rounds.ArmCounts(9, 1.0, 1.0, 1)}
    assert loop.store.arm_counts("other", 1) == {}


def test_defect_1_late_rewards_of_an_earlier_round_never_count_in_the_next_one(loop):
    """Issue 15, defect 1: 200 late rewards for the previous challenger first put the new round in an
    error state (reward_sum 200 > 0 invocations), then made the new challenger win with p = 1.0
    although both new arms convert at exactly 5%. (Here: 40 late rewards, 100 new predictions per arm.)"""
    old_challenger = [loop.invoke(f"old-{n}", arm="challenger")["X-Inference-Id"] for n in range(40)]
    assert loop.run_controller()["status"] == "waiting"
    loop.redeploy(f"{ENDPOINT}-cfg-2")
    assert loop.run_controller()["status"] == "restarted"

    served = {"champion": [], "challenger": []}
    for n in range(200):
        arm = ("champion", "challenger")[n % 2]
        served[arm].append(loop.invoke(f"new-{n}", arm=arm)["X-Inference-Id"])
    loop.reward(served["champion"][::20] + served["challenger"][::20])  # exactly 5% each
    loop.reward(old_challenger)  # the previous round's feedback arrives late

    result = loop.run_controller()
    assert result["status"] in ("waiting", "moved"), result  # neither "error" nor "decided"
    counts = loop.store.arm_counts("churn-exp", 2)
    assert counts["challenger"].invocations == counts["champion"].invocations == 100
    assert counts["challenger"].reward_sum == counts["champion"].reward_sum == 5
    # the late rewards are kept with the round that earned them, for reporting
    assert loop.store.arm_counts("churn-exp", 1)["challenger"] == rounds.ArmCounts(40, 40.0, 40.0, 40)
    summary = loop.inference.summarize_experiment(loop.inference.runtime().experiments["churn"], loop.store)
    assert summary["round"] == 2 and {a["arm"]: a["reward_sum"] for a in summary["arms"]} == {
        "champion": 5, "challenger": 5}


def test_defect_8_a_new_round_reshuffles_subjects_between_arms(loop):
    """Issue 15, defect 8 (first half): the assignment salt stayed the same across rounds, so the
    same subjects always landed in the challenger."""
    subjects = [f"user-{n}" for n in range(80)]
    first = {s: loop.invoke(s)["X-Variant"] for s in subjects}
    assert loop.run_controller()["status"] in ("waiting", "moved")
    loop.redeploy(f"{ENDPOINT}-cfg-2")
    assert loop.run_controller()["status"] == "restarted"
    second = {s: loop.invoke(s)["X-Variant"] for s in subjects}
    assert all(loop.invoke(s)["X-Variant"] == second[s] for s in subjects[:10])  # still sticky in the round
    moved = sum(first[s] != second[s] for s in subjects)
    assert 20 <= moved <= 60  # at 50/50, about half the subjects change arm with a new salt
    item = loop.ddb.get_item(TableName="predictions", Key={"inference_id": {"S": loop.invoke("x")["X-Inference-Id"]}})
    assert item["Item"]["round"] == {"N": "2"}


def test_defect_8_smoke_test_traffic_is_served_but_never_counted(loop):
    """Issue 15, defect 8 (second half): the smoke test's invocations after a deploy counted as
    experiment traffic. Marked by the smoke-test role, they are recorded but count nowhere, and
    their feedback is never credited; the mark from any other caller is ignored."""
    smoke_role = f"arn:aws:sts::{ACCOUNT}:assumed-role/{SMOKE_ROLE}/platform-smoke-test"
    headers = loop.invoke("smoke", caller=smoke_role, smoke=True)
    assert headers["X-Prediction-Counted"] == "false"
    assert loop.ddb.scan(TableName="statistics")["Items"] == []
    prediction = loop.ddb.get_item(TableName="predictions", Key={"inference_id": {"S": headers["X-Inference-Id"]}})
    assert prediction["Item"]["smoke_test"] == {"BOOL": True}
    loop.reward([headers["X-Inference-Id"]])
    assert loop.ddb.scan(TableName="statistics")["Items"] == []

    other = loop.invoke("someone", caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/app/session", smoke=True)
    assert "X-Prediction-Counted" not in other
    assert sum(a.invocations for a in loop.store.arm_counts("churn-exp", 1).values()) == 1
