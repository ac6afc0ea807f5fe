"""The feedback API handler against in-memory fakes: contract, statuses, join, credit, failures, privacy."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from lambda_context import LambdaContext
from feedback_fixtures import (
    NOW,
    SOURCE_IP,
    SUBJECT_KEY,
    USER_AGENT,
    api_event,
    invoke,
    prediction,
    record,
    row,
    settings,
)
from moto import mock_aws
from settings_support import put_subject_hash_key

from mlops_runtime.adapters.feedback_store import InMemoryFeedbackStore
from mlops_runtime.adapters.ground_truth import InMemoryDeadLetters, InMemoryGroundTruth
from mlops_runtime.domain import feedback as fb
from mlops_runtime.handlers import feedback_api
from mlops_runtime.settings.base import SETTINGS_ENV

ARM = row("churn", "churn/challenger")


def lines(fakes):
    return [json.loads(line) for line in fakes.ground_truth.lines]


# --- single records -----------------------------------------------------------------------------


def test_accepted_joined_credited_and_written(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    status, body = invoke(record("inf-1", label=1, reward=0.5))
    assert status == 202
    assert body == {
        "feedback_id": fb.derive_feedback_id("inf-1", "click"),
        "status": "accepted",
        "joined": True,
        "credited": True,
        "queued": False,
    }
    assert fakes.store.statistics[ARM] == {"reward_sum": 0.5, "reward_sq_sum": 0.25, "feedback_count": 1}
    stored = fakes.store.feedback[body["feedback_id"]]
    assert (stored["joined"], stored["credited"], stored["label"], stored["reward"]) == (True, True, 1, 0.5)
    assert lines(fakes) == [
        {
            "groundTruthData": {"data": "1", "encoding": "CSV"},
            "eventMetadata": {"eventId": "inf-1"},
            "eventVersion": "0",
        }
    ]


def test_duplicate_is_neither_stored_credited_nor_written_again(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    assert invoke(record("inf-1", label=1))[0] == 202
    status, body = invoke(record("inf-1", label=0, reward=0))  # same (inference, type): same key
    assert (status, body["status"], body["joined"], body["credited"]) == (200, "duplicate", True, False)
    assert fakes.store.statistics[ARM]["feedback_count"] == 1
    assert len(fakes.ground_truth.lines) == 1
    assert fakes.store.feedback[body["feedback_id"]]["label"] == 1  # the first write wins


def test_explicit_feedback_ids_allow_several_events_of_one_type(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    first = invoke(record("inf-1", feedback_type="purchase", feedback_id="order-1", reward=1))[1]
    second = invoke(record("inf-1", feedback_type="purchase", feedback_id="order-2", reward=1))[1]
    assert first["status"] == second["status"] == "accepted"
    # Both stored, but an inference id contributes at most one reward to its arm.
    assert (first["credited"], second["credited"]) == (True, False)
    assert fakes.store.statistics[ARM]["feedback_count"] == 1


def test_unknown_inference_id_is_stored_unjoined_and_written(fakes):
    status, body = invoke(record("never-served", label="cat"))
    assert (status, body["joined"], body["credited"]) == (202, False, False)
    assert fakes.store.statistics == {}
    assert lines(fakes)[0]["eventMetadata"] == {"eventId": "never-served"}


def test_reward_only_feedback_writes_no_ground_truth(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    assert invoke(record("inf-1", reward=1))[1]["credited"] is True
    assert fakes.ground_truth.lines == []


def test_label_only_feedback_is_stored_but_not_credited(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    body = invoke({"inference_id": "inf-1", "feedback_type": "label", "label": [0, 1]})[1]
    assert (body["joined"], body["credited"]) == (True, False)
    assert fakes.store.statistics == {}
    assert lines(fakes)[0]["groundTruthData"] == {"data": "0,1", "encoding": "CSV"}


def test_credit_goes_to_the_arm_that_served_the_prediction(fakes):
    # The subject now belongs to another arm; the reward still goes to the arm in the prediction.
    fakes.store.put_prediction(prediction("inf-1", variant="champion", subject_hash="a" * 32))
    invoke(record("inf-1", subject_id="user-1", reward=1))
    assert set(fakes.store.statistics) == {row("churn", "churn/champion")}


def test_cross_endpoint_experiment_uses_experiment_and_arm(fakes):
    fakes.store.put_prediction(
        prediction("inf-1", endpoint="churn-b", variant="v1", experiment="exp-7", arm="exp-7/churn-b/v1")
    )
    invoke(record("inf-1", reward=1))
    assert set(fakes.store.statistics) == {row("exp-7", "exp-7/churn-b/v1")}


def test_invalid_single_record_is_422_and_nothing_is_touched(fakes):
    status, body = invoke(record("inf-1", reward=2, colour="red"))
    assert status == 422
    assert body == {
        "errors": [
            {"field": "reward", "reason": "must be a number from 0 to 1"},
            {"field": "colour", "reason": "unknown field"},
        ]
    }
    assert (fakes.store.lookups, fakes.store.writes, fakes.ground_truth.calls) == (0, 0, 0)


# --- batches ------------------------------------------------------------------------------------


def test_batch_reports_per_record_and_accepts_the_good_ones(fakes):
    fakes.store.put_prediction(prediction("inf-1"))
    fakes.store.put_prediction(prediction("inf-2", variant="champion"))
    invoke(record("inf-3", label=1))  # stored before: a duplicate below
    status, body = invoke(
        {
            "records": [
                record("inf-1", label=1),
                record("inf-2", reward=0),
                {"inference_id": "inf-4"},
                record("inf-3", label=1),
                record("inf-1", label=1),  # repeats record 0 in the same batch
            ]
        }
    )
    assert status == 202
    assert [(r["index"], r["status"], r["joined"]) for r in body["results"]] == [
        (0, "accepted", True),
        (1, "accepted", True),
        (2, "invalid", False),
        (3, "duplicate", False),
        (4, "duplicate", True),
    ]
    assert body["results"][2]["errors"] == [{"field": "feedback_type", "reason": "required"}]
    assert {
        k: body[k]
        for k in ("received", "accepted", "stored", "dead_lettered", "duplicates", "invalid", "failed")
    } == {
        "received": 5,
        "accepted": 2,
        "stored": 2,
        "dead_lettered": 0,
        "duplicates": 2,
        "invalid": 1,
        "failed": 0,
    }
    assert fakes.store.statistics[ARM]["feedback_count"] == 1
    assert fakes.store.statistics[row("churn", "churn/champion")] == {
        "reward_sum": 0.0,
        "reward_sq_sum": 0.0,
        "feedback_count": 1,
    }
    assert len(fakes.ground_truth.lines) == 2  # inf-3 earlier, inf-1 now


def test_batch_with_no_valid_record_is_422(fakes):
    status, body = invoke({"records": [{"x": 1}, record(reward=9)]})
    assert status == 422 and body["invalid"] == 2 and body["accepted"] == 0
    assert (fakes.store.lookups, fakes.ground_truth.calls) == (0, 0)


def test_one_lookup_for_a_whole_batch(fakes):
    invoke({"records": [record(f"inf-{i}") for i in range(50)]})
    assert fakes.store.lookups == 1


def test_batch_limit_comes_from_the_settings(fakes):
    feedback_api.configure(
        feedback_api.Runtime(
            settings(max_batch=3), fakes.store, fakes.ground_truth, fakes.dead_letters, clock=lambda: NOW
        )
    )
    assert invoke({"records": [record(f"i{n}") for n in range(3)]})[0] == 202
    status, body = invoke({"records": [record(f"j{n}") for n in range(4)]})
    assert status == 413 and "limit is 3" in body["errors"][0]["reason"]


# --- request-level rejections -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "options", "status"),
    [
        (None, {"raw": True}, 400),
        ("", {"raw": True}, 400),
        ("{not json", {"raw": True}, 400),
        ("[]", {"raw": True}, 400),
        ('"text"', {"raw": True}, 400),
        ('{"records": {}}', {"raw": True}, 400),
        ('{"records": []}', {"raw": True}, 400),
        (b'{"inference_id": "\xff\xfe"}', {"raw": True}, 400),
        ("x" * (1024 * 1024 + 1), {"raw": True}, 413),
        ({"records": [record(f"i{n}") for n in range(501)]}, {}, 413),
    ],
)
def test_request_rejections(fakes, body, options, status):
    got, payload = invoke(body, **options)
    assert got == status
    assert payload["errors"][0]["reason"]
    assert (fakes.store.lookups, fakes.ground_truth.calls) == (0, 0)


def test_other_routes_and_methods_are_4xx(fakes):
    for method, path in (("GET", "/v1/feedback"), ("POST", "/v1/other"), ("PUT", "/v1/feedback")):
        response = feedback_api.handler(api_event("{}", method=method, path=path), LambdaContext())
        assert 400 <= response["statusCode"] < 500


# --- failures -----------------------------------------------------------------------------------


class FailingStore(InMemoryFeedbackStore):
    def __init__(self, *, lookup_fails=False, write_fails=False):
        super().__init__()
        self.lookup_fails, self.write_fails = lookup_fails, write_fails

    def lookup(self, inference_ids, feedback_ids):
        if self.lookup_fails:
            raise fb.LookupFailed("ProvisionedThroughputExceededException: injected")
        return super().lookup(inference_ids, feedback_ids)

    def write(self, writes):
        if self.write_fails:
            return fb.WriteResult(
                failed={w.feedback.feedback_id: "ThrottlingError: injected" for w in writes}
            )
        return super().write(writes)


def use(store=None, ground_truth=None, dead_letters=None):
    store = store or InMemoryFeedbackStore()
    ground_truth = ground_truth or InMemoryGroundTruth()
    dead_letters = dead_letters or InMemoryDeadLetters()
    feedback_api.configure(
        feedback_api.Runtime(settings(), store, ground_truth, dead_letters, clock=lambda: NOW)
    )
    return store, ground_truth, dead_letters


def test_ground_truth_failure_is_dead_lettered_and_the_feedback_still_stored(fakes):
    fakes.ground_truth.fail_next = 1
    status, body = invoke(record("inf-1", label=1))
    assert (status, body["status"], body["queued"]) == (202, "accepted", False)
    assert body["feedback_id"] in fakes.store.feedback
    (message,) = fakes.dead_letters.messages
    assert message["stage"] == "ground_truth" and "injected" in message["reason"]
    assert message["ground_truth"] == fb.ground_truth_line("inf-1", 1).decode()


def test_store_failure_is_dead_lettered_and_counted_as_accepted():
    _, ground_truth, dead_letters = use(store=FailingStore(write_fails=True))
    status, body = invoke({"records": [record("a", label=1), record("b")]})
    assert status == 202
    assert (body["accepted"], body["stored"], body["dead_lettered"]) == (2, 0, 2)
    assert all(r["queued"] for r in body["results"])
    assert [m["stage"] for m in dead_letters.messages] == ["store", "store"]
    # The label was delivered before the store failed, so the replay must not write it again.
    assert len(ground_truth.lines) == 1
    assert [m["write_ground_truth"] for m in dead_letters.messages] == [False, False]


def test_lookup_failure_dead_letters_everything_with_its_ground_truth_pending():
    _, ground_truth, dead_letters = use(store=FailingStore(lookup_fails=True))
    body = invoke({"records": [record("a", label=1), record("b")]})[1]
    assert (body["accepted"], body["dead_lettered"]) == (2, 2)
    assert ground_truth.lines == []
    assert [m["write_ground_truth"] for m in dead_letters.messages] == [True, False]


def test_nothing_durable_means_503_and_nothing_stored():
    queue = InMemoryDeadLetters()
    queue.refuse = True
    failing_sink = InMemoryGroundTruth()
    failing_sink.fail_next = 1
    store, _, _ = use(ground_truth=failing_sink, dead_letters=queue)
    status, body = invoke(record("a", label=1))
    assert (status, body["status"]) == (503, "failed")
    assert store.feedback == {}  # not stored: the client's retry will deliver its ground truth


def test_store_and_queue_failing_is_503_for_the_batch():
    queue = InMemoryDeadLetters()
    queue.refuse = True
    use(store=FailingStore(write_fails=True), dead_letters=queue)
    response = feedback_api.handler(api_event(json.dumps({"records": [record("a")]})), LambdaContext())
    assert response["statusCode"] == 503 and response["multiValueHeaders"]["Retry-After"] == ["5"]
    assert json.loads(response["body"])["failed"] == 1


def test_misconfiguration_is_a_500_not_a_crash(monkeypatch):
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    feedback_api.configure(None)
    status, body = invoke(record())
    assert status == 500 and body["errors"][0]["reason"].startswith("internal error")


def test_runtime_from_env_builds_lazy_adapters():
    with mock_aws():
        env = {SETTINGS_ENV: json.dumps({"predictions_table": "p", "feedback_table": "f", "statistics_table": "s",
                                  "ground_truth_stream": "g", "dead_letter_queue_url": "https://q", "subject_hash_secret": put_subject_hash_key("k")})}
        built = feedback_api.Runtime.from_env(env)
    assert built.store._client is None and built.ground_truth._client is None
    assert built.settings.feedback_table == "f" and built.settings.subject_hash_key == b"k"


def test_the_clock_is_read_per_request(fakes):
    moments = iter([NOW, NOW + timedelta(days=40)])
    feedback_api.configure(
        feedback_api.Runtime(
            settings(), fakes.store, fakes.ground_truth, fakes.dead_letters, clock=lambda: next(moments)
        )
    )
    event_time = (NOW - timedelta(days=1)).isoformat()
    assert invoke(record("a", event_time=event_time))[0] == 202
    assert invoke(record("b", event_time=event_time))[0] == 422  # 41 days old by then


# --- privacy and metrics ------------------------------------------------------------------------


def test_dead_letter_metrics(fakes, capsys):
    fakes.ground_truth.fail_next = 1
    invoke(record("a", label=1))
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line][-1]
    assert emf["GroundTruthDeadLettered"] == [1.0] and emf["FeedbackStored"] == [1.0]


def test_no_caller_data_or_raw_subject_anywhere(fakes, capsys):
    fakes.store.put_prediction(prediction("inf-1"))
    fakes.ground_truth.fail_next = 1  # also exercise the dead-letter path
    invoke({"records": [record("inf-1", label=1, subject_id="alice@example.com"), {"bad": SOURCE_IP}]})
    invoke(record("x", reward=7))
    output = capsys.readouterr().out
    stored = json.dumps(
        [
            fakes.store.feedback,
            fakes.dead_letters.messages,
            [line.decode() for line in fakes.ground_truth.lines],
        ]
    )
    for secret in (SOURCE_IP, USER_AGENT, "alice@example.com"):
        assert secret not in output
        assert secret not in stored
    (item,) = [i for i in fakes.store.feedback.values() if i["inference_id"] == "inf-1"]
    assert item["subject_hash"] == fb.hash_subject("alice@example.com", SUBJECT_KEY)


def test_metrics_are_emitted_as_emf(fakes, capsys):
    fakes.store.put_prediction(prediction("inf-1"))
    invoke({"records": [record("inf-1", label=1), record("inf-9"), {"x": 1}]})
    invoke(record("inf-1", label=1))
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    first, second = documents[-2], documents[-1]
    assert {
        name: first.get(name)
        for name in (
            "FeedbackReceived",
            "FeedbackAccepted",
            "FeedbackInvalid",
            "FeedbackJoined",
            "FeedbackDuplicate",
            "FeedbackDeadLettered",
        )
    } == {
        "FeedbackReceived": [3.0],
        "FeedbackAccepted": [2.0],
        "FeedbackInvalid": [1.0],
        "FeedbackJoined": [1.0],
        "FeedbackDuplicate": None,
        "FeedbackDeadLettered": None,
    }  # zero counts are not sent
    assert second["FeedbackDuplicate"] == [1.0] and second["FeedbackReceived"] == [1.0]
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MlopsPlatformTests"


# --- concurrency (in-memory store; the moto version is in test_feedback_store) ------------------


def test_concurrent_identical_submissions_are_credited_once():
    store = InMemoryFeedbackStore()
    store.put_prediction(prediction("inf-1"))
    sink, queue = InMemoryGroundTruth(), InMemoryDeadLetters()
    threads = 16
    barrier = threading.Barrier(threads)
    outcomes = []

    def submit():
        built = fb.build_feedback(fb.validate_record(record("inf-1", reward=1), now=NOW), now=NOW)
        barrier.wait()
        outcomes.extend(
            fb.process_feedback([built], store=store, ground_truth=sink, dead_letters=queue, now=NOW)
        )

    workers = [threading.Thread(target=submit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(o.status for o in outcomes).count("stored") == 1
    assert sum(o.status == "duplicate" for o in outcomes) == threads - 1
    assert store.statistics[ARM] == {"reward_sum": 1.0, "reward_sq_sum": 1.0, "feedback_count": 1}
