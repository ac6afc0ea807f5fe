"""The in-memory tables (``adapters.in_memory.InMemoryExperimentsStore``) behave as the DynamoDB
adapters on moto: the same script through the real inference API, feedback API and state writes
gives the same answers, records and per-round counts on both. The lifecycle simulation runs on the
in-memory tables (weeks of traffic; a moto transaction copies the table), so this test is what
keeps them from drifting away from the real adapters.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from mlops_runtime.adapters.experiments_store import DuplicateInferenceId, StateConflict

from test_rounds import ENDPOINT, EXPERIMENTS, REGION  # the same experiment as the rounds tests
from lambda_context import LambdaContext

START = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def dynamodb_stores():
    """The DynamoDB adapters over fresh moto tables: (experiments store, feedback store)."""
    from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
    from mlops_runtime.adapters.feedback_store import DynamoDBFeedbackStore

    ddb = boto3.client("dynamodb", region_name=REGION)
    for table, keys in (("predictions", ["inference_id"]), ("statistics", ["experiment", "round_arm_hour"]),
                        ("state", ["experiment"]), ("feedback", ["feedback_id"])):
        ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"))],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys])
    return (DynamoDBExperimentsStore("predictions", "statistics", "state", ddb),
            DynamoDBFeedbackStore("predictions", "feedback", "statistics", ddb))


def memory_stores():
    from mlops_runtime.adapters.in_memory import InMemoryExperimentsStore

    store = InMemoryExperimentsStore()
    return store, store


def run_script(store, feedback_store) -> dict:
    """Predictions over three hours and two rounds, feedback with duplicates, a second reward and
    an unknown id, state writes with a conflict; everything the handlers and the store answered."""
    from mlops_platform.local.server import FakeModelRuntime, proxy_event
    from mlops_runtime.adapters.ground_truth import InMemoryDeadLetters, InMemoryGroundTruth
    from mlops_runtime.domain.feedback import FeedbackSettings
    from mlops_runtime.handlers import feedback_api, inference_api
    from mlops_runtime.settings.experiments import ExperimentSettings

    at = [START]
    experiments = {name: ExperimentSettings.model_validate({"name": name, **config})
                   for name, config in EXPERIMENTS.items()}
    inference_api.configure(inference_api.Runtime(
        experiments=experiments, store=store, model=FakeModelRuntime({ENDPOINT: {"v1": "m1", "v2": "m2"}}),
        subject_hash_key=b"pepper", clock=lambda: at[0].timestamp(), monotonic=itertools.count().__next__,
        rng=random.Random(7), cache_seconds=0.5))
    feedback_api.configure(feedback_api.Runtime(
        settings=FeedbackSettings(predictions_table="predictions", feedback_table="feedback",
                                  statistics_table="statistics", ground_truth_stream="gt",
                                  dead_letter_queue_url="https://sqs/dlq", subject_hash_key=b"pepper"),
        store=feedback_store, ground_truth=InMemoryGroundTruth(), dead_letters=InMemoryDeadLetters(),
        clock=lambda: at[0]))
    seen: dict = {"served": [], "feedback": []}

    def serve(n: int, **headers: str):
        pairs = [("Content-Type", "text/csv"), *((k.replace("_", "-"), v) for k, v in headers.items())]
        event = proxy_event("POST", "/v1/endpoints/churn/invocations", "/v1/endpoints/{endpoint}/invocations",
                            {"endpoint": "churn"}, pairs, "", f"{n},0.5".encode())
        response = inference_api.handler(event, LambdaContext())
        flat = {k: (v[0] if isinstance(v, list) else v)
                for k, v in (response.get("multiValueHeaders") or response["headers"]).items()}
        seen["served"].append((response["statusCode"], flat.get("X-Variant"), flat.get("X-Prediction-Recorded")))

    def feedback(records):
        event = proxy_event("POST", "/v1/feedback", "/v1/feedback", None, [("Content-Type", "application/json")],
                            "", json.dumps({"records": records}).encode())
        response = feedback_api.handler(event, LambdaContext())
        seen["feedback"].append((response["statusCode"], json.loads(response["body"])))

    try:
        for hour in range(3):
            at[0] = START + timedelta(hours=hour)
            for n in range(8):
                serve(n, X_Inference_Id=f"r1-{hour}-{n}", X_Subject_Id=f"user-{n}")
        serve(0, X_Inference_Id="r1-0-0", X_Subject_Id="user-0")  # reused id: served, not recorded
        serve(1, X_Inference_Id="r1-forced", X_Target_Arm="challenger")
        feedback([{"inference_id": f"r1-{h}-{n}", "feedback_type": "conversion", "reward": (n % 3) / 2,
                   "feedback_id": f"f-{h}-{n}"} for h in range(3) for n in range(0, 8, 2)])
        feedback([{"inference_id": "r1-0-0", "feedback_type": "conversion", "reward": 1, "feedback_id": "f-0-0"},
                  {"inference_id": "r1-0-0", "feedback_type": "conversion", "reward": 1, "feedback_id": "second"},
                  {"inference_id": "unknown", "feedback_type": "conversion", "reward": 1, "feedback_id": "lost"}])

        # State: first write, a stale writer, the next version; then round 2 is served.
        state = {"weights": {"champion": 0.25, "challenger": 0.75}, "round": 2, "history": [{"round": 1, "p": 0.5}]}
        seen["version"] = store.write_state("churn-exp", state, 0)
        with pytest.raises(StateConflict):
            store.write_state("churn-exp", state, 0)
        seen["version_2"] = store.write_state("churn-exp", {**state, "steps": 3}, 1)
        with pytest.raises(StateConflict):
            store.write_state("churn-exp", state, 1)
        seen["state"] = store.read_state("churn-exp")
        seen["other_state"] = store.read_state("other")
        at[0] = START + timedelta(hours=5)
        for n in range(8):
            serve(n, X_Inference_Id=f"r2-{n}", X_Subject_Id=f"user-{n}")
        feedback([{"inference_id": f"r2-{n}", "feedback_type": "conversion", "reward": 1} for n in range(4)]
                 + [{"inference_id": "r1-1-1", "feedback_type": "conversion", "reward": 1}])  # late, round 1

        with pytest.raises(DuplicateInferenceId):
            store.record_prediction({"inference_id": "r2-0", "endpoint": ENDPOINT, "variant": "v1"}, "churn-exp",
                                    "2#champion#2026-12-01T13")
        store.record_prediction({"inference_id": "smoke", "endpoint": ENDPOINT, "variant": "v1", "smoke_test": True},
                                "churn-exp", None)
        two_hours_in = (START + timedelta(hours=2)).replace(minute=0).timestamp()
        seen["counts"] = {(r, before): store.arm_counts("churn-exp", r, before)
                          for r in (1, 2, 3) for before in (None, two_hours_in)}
        seen["other_counts"] = store.arm_counts("other", 1)
        seen["summary"] = inference_api.summarize_experiment(experiments["churn"], store)
    finally:
        inference_api.configure(None)
        feedback_api.configure(None)
    for _, body in seen["feedback"]:  # feedback ids the API generated differ run to run
        for result in body.get("results", []):
            if result.get("inference_id", "").startswith("r2-"):
                result.pop("feedback_id", None)
    return seen


def test_the_in_memory_tables_answer_as_the_dynamodb_adapters_do():
    with mock_aws():
        on_dynamodb = run_script(*dynamodb_stores())
    in_memory = run_script(*memory_stores())
    assert in_memory == on_dynamodb
    # The script did exercise what it claims to (so an empty answer on both sides cannot pass).
    assert on_dynamodb["counts"][(1, None)]["challenger"].invocations > 0
    assert on_dynamodb["counts"][(2, None)] and on_dynamodb["counts"][(3, None)] == {}
    assert on_dynamodb["state"]["version"] == 2 and on_dynamodb["other_state"] is None
    assert [recorded for _, _, recorded in on_dynamodb["served"]].count("false") == 1  # the reused id
    assert on_dynamodb["feedback"][1][1]["duplicates"] == 1
