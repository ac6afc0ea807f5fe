"""End to end on moto: router-written prediction -> feedback API -> statistics, feedback table, ground
truth in S3; and fault injection (throttled statistics, failing Firehose) -> retries -> dead letters
-> replay, with the counts adding up."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from lambda_context import LambdaContext
from feedback_fixtures import (
    FEEDBACK_TABLE,
    NOW,
    PREFIX,
    SUBJECT_KEY,
    Faulty,
    api_event,
    client_error,
    invoke,
    prediction,
    record,
    statistics_throttled,
)
from moto import mock_aws
from settings_support import put_subject_hash_key

from mlops_runtime.domain import feedback as fb
from mlops_runtime.handlers import feedback_api, feedback_replay
from mlops_runtime.settings.base import SETTINGS_ENV

CHALLENGER = ("churn", "churn/challenger")
CHAMPION = ("churn", "churn/champion")


def feedback_items(aws):
    return {
        item["feedback_id"]: item for item in aws.items(FEEDBACK_TABLE) if item["record_type"] == "feedback"
    }


def sqs_event(aws):
    """The dead-letter queue's messages as the SQS event a Lambda trigger would deliver."""
    messages = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:feedback-dlq",
                "awsRegion": "eu-west-1",
            }
            for message in messages
        ]
    }


def use_replayer(aws, **adapters):
    feedback_replay.configure(
        feedback_replay.Replayer(
            adapters.get("store") or aws.store(),
            adapters.get("ground_truth") or aws.writer(),
            clock=lambda: NOW,
        )
    )


def router_prediction(inference_id, endpoint, variant, experiment, arm, subject_id):
    """The predictions item exactly as the inference API builds it (``handlers.inference_api``)."""
    from mlops_runtime.domain import routing

    item = routing.build_prediction_record(
        inference_id,
        endpoint,
        variant,
        "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn/3",
        routing.hash_subject(subject_id, SUBJECT_KEY),
        NOW.timestamp() - 60,
        30 * 86400,
    )
    item["created_at"] = int(NOW.timestamp() - 60)
    item["experiment"] = experiment
    item["arm"] = arm
    item["round"] = 1
    return item


def test_feedback_from_prediction_to_statistics_feedback_and_ground_truth(aws):
    aws.put_prediction(
        router_prediction("inf-42", "churn", "challenger", "churn", "churn/challenger", "user-7")
    )
    before = datetime.now(UTC)
    status, body = invoke(
        record(
            "inf-42",
            label=1,
            reward=1,
            event_time="2026-11-27T12:10:00+00:00",
            subject_id="user-7",
            metadata={"page": "checkout"},
        )
    )
    after = datetime.now(UTC)
    assert (status, body["status"], body["joined"], body["credited"]) == (202, "accepted", True, True)

    assert aws.statistics(*CHALLENGER) == {
        "experiment": "churn",
        "round_arm_hour": f"1#churn/challenger#{(NOW - timedelta(seconds=60)):%Y-%m-%dT%H}",
        "reward_sum": 1,
        "reward_sq_sum": 1,
        "feedback_count": 1,
    }
    item = feedback_items(aws)[body["feedback_id"]]
    assert item == {
        "feedback_id": fb.derive_feedback_id("inf-42", "click"),
        "record_type": "feedback",
        "inference_id": "inf-42",
        "feedback_type": "click",
        "label": 1,
        "reward": 1,
        "event_time": "2026-11-27T12:10:00.000000Z",
        "subject_hash": fb.hash_subject("user-7", SUBJECT_KEY),
        "metadata": {"page": "checkout"},
        "joined": True,
        "credited": True,
        "experiment": "churn",
        "arm": "churn/challenger",
        "endpoint": "churn",
        "variant": "challenger",
        "model_package_arn": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn/3",
        "received_at": NOW.timestamp(),
        "expires_at": int(NOW.timestamp()) + 90 * 86400,
    }
    # The subject's hash in the feedback equals the router's: the two can be joined.
    (served,) = aws.items("predictions")
    assert item["subject_hash"] == served["subject_hash"]
    ((key, data),) = aws.objects().items()
    hour = re.fullmatch(rf"{PREFIX}(\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}})/[^/]+", key).group(1)
    assert hour in {before.strftime("%Y/%m/%d/%H"), after.strftime("%Y/%m/%d/%H")}  # when it was collected
    assert data == (
        b'{"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "inf-42"}, '
        b'"eventVersion": "0"}\n'
    )


def test_batch_end_to_end_and_resubmission(aws):
    aws.put_predictions([prediction("a"), prediction("b", variant="champion"), prediction("c")])
    batch = {
        "records": [
            record("a", reward=1, label="yes"),
            record("b", reward=0.25),
            record("c", reward=0, feedback_type="purchase", label=0),
            record("unknown", reward=1, label="no"),
            record("a", reward=1, label="yes"),  # repeated in the batch
            {"inference_id": "a"},  # invalid
        ]
    }
    status, body = invoke(batch)
    assert status == 202
    assert [r["status"] for r in body["results"]] == ["accepted"] * 4 + ["duplicate", "invalid"]
    assert [r["joined"] for r in body["results"][:4]] == [True, True, True, False]
    assert (body["accepted"], body["stored"], body["dead_lettered"], body["duplicates"], body["invalid"]) == (
        4,
        4,
        0,
        1,
        1,
    )
    assert (
        aws.statistics(*CHALLENGER)["reward_sum"] == 1 and aws.statistics(*CHALLENGER)["feedback_count"] == 2
    )
    assert aws.statistics(*CHAMPION)["reward_sq_sum"] == 0.0625
    assert len(aws.ground_truth_lines()) == 3  # a, c and unknown have labels
    # The client retries the whole batch: nothing is stored, credited or written again.
    status, again = invoke(batch)
    assert status == 202 and again["duplicates"] == 5 and again["accepted"] == 0
    assert aws.statistics(*CHALLENGER)["feedback_count"] == 2
    assert len(aws.ground_truth_lines()) == 3
    assert len(feedback_items(aws)) == 4


def test_statistics_throttling_retries_then_dead_letters_and_replay_restores(aws):
    aws.put_predictions([prediction("a"), prediction("b", variant="champion")])
    throttled = Faulty(aws.dynamodb, always={"transact_write_items": statistics_throttled})
    feedback_api.configure(aws.runtime(store=aws.store(throttled, max_attempts=3)))
    status, body = invoke(
        {"records": [record("a", reward=1, label=1), record("b", reward=0.5), record("unknown", label="x")]}
    )
    # Retried (3 attempts of the one transaction), then dead-lettered: accepted because durably queued.
    assert len(throttled.calls["transact_write_items"]) == 3
    assert status == 202
    assert (body["accepted"], body["stored"], body["dead_lettered"]) == (3, 0, 3)
    assert body["accepted"] == body["stored"] + body["dead_lettered"]
    assert all(r["queued"] for r in body["results"])
    letters = aws.queued()
    assert sorted(letter["stage"] for letter in letters) == ["store"] * 3
    assert all("ProvisionedThroughputExceeded" in letter["reason"] for letter in letters)
    assert feedback_items(aws) == {} and aws.statistics(*CHALLENGER) is None
    assert len(aws.ground_truth_lines()) == 2  # delivered before the store failed; not pending

    # The throttling is over: the SQS-triggered replay stores and credits everything once.
    use_replayer(aws)
    response = feedback_replay.handler(sqs_event(aws), LambdaContext(function_name="feedback-replay"))
    assert response == {"batchItemFailures": []}
    assert aws.statistics(*CHALLENGER)["feedback_count"] == 1
    assert aws.statistics(*CHAMPION)["reward_sum"] == 0.5
    assert len(feedback_items(aws)) == 3 and len(aws.ground_truth_lines()) == 2
    # Replaying the same letters again (an at-least-once redelivery) changes nothing.
    for letter in letters:
        outcome = feedback_replay.replayer().replay(json.dumps(letter))
        assert outcome.status == "duplicate"
    assert aws.statistics(*CHALLENGER)["feedback_count"] == 1


def test_transient_throttling_is_absorbed_by_retries(aws):
    aws.put_prediction(prediction("a"))
    client = Faulty(
        aws.dynamodb, script={"transact_write_items": [statistics_throttled, statistics_throttled]}
    )
    feedback_api.configure(aws.runtime(store=aws.store(client)))
    status, body = invoke(record("a", reward=1))
    assert (status, body["status"], body["queued"]) == (202, "accepted", False)
    assert aws.queued() == [] and aws.statistics(*CHALLENGER)["feedback_count"] == 1


def every_record_failed(kwargs):
    responses = [
        {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"} for _ in kwargs["Records"]
    ]
    return ("return", {"FailedPutCount": len(responses), "RequestResponses": responses})


@pytest.mark.parametrize(
    "failure",
    [client_error("ServiceUnavailableException"), every_record_failed],
    ids=["exception", "failed-put-count"],
)
def test_firehose_failures_are_retried_then_dead_lettered_and_replayed(aws, capsys, failure):
    aws.put_prediction(prediction("a"))
    failing = Faulty(aws.firehose, always={"put_record_batch": failure})
    feedback_api.configure(aws.runtime(ground_truth=aws.writer(failing, max_attempts=3)))
    status, body = invoke({"records": [record("a", label=1), record("b", label="cat")]})
    assert len(failing.calls["put_record_batch"]) == 3
    assert status == 202 and (body["accepted"], body["stored"], body["dead_lettered"]) == (2, 2, 0)
    assert aws.objects() == {}
    letters = aws.queued()
    assert sorted(letter["stage"] for letter in letters) == ["ground_truth", "ground_truth"]
    assert {letter["ground_truth"] for letter in letters} == {
        fb.ground_truth_line("a", 1).decode(),
        fb.ground_truth_line("b", "cat").decode(),
    }
    # An operator replays the queue from the command line once Firehose is back.
    use_replayer(aws)
    capsys.readouterr()
    code = feedback_replay.main(
        ["--queue-url", aws.queue_url, "--wait-seconds", "0"],
        replayer_=feedback_replay.replayer(),
        queue=aws.dead_letter_queue(),
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and (summary["read"], summary["replayed"], summary["failed"]) == (2, 2, 0)
    assert sorted(line["eventMetadata"]["eventId"] for line in aws.ground_truth_lines()) == ["a", "b"]
    assert aws.queued() == []
    assert aws.statistics(*CHALLENGER)["feedback_count"] == 1  # the store was never retried or repeated


def test_firehose_record_failures_are_resent_without_dead_letters(aws):
    def first_record_fails(kwargs):
        count = len(kwargs["Records"])
        return (
            "return",
            {
                "FailedPutCount": 1,
                "RequestResponses": [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"}]
                + [{"RecordId": "r"}] * (count - 1),
            },
        )

    client = Faulty(aws.firehose, script={"put_record_batch": [first_record_fails]})
    feedback_api.configure(aws.runtime(ground_truth=aws.writer(client)))
    invoke({"records": [record("a", label=1), record("b", label=2)]})
    # The first call's second record went through the fake; the resend carried only the failed one.
    assert [len(call["Records"]) for call in client.calls["put_record_batch"]] == [2, 1]
    assert aws.queued() == []


def test_nothing_durable_means_503_nothing_stored_and_a_clean_retry(aws):
    firehose_down = Faulty(
        aws.firehose, always={"put_record_batch": client_error("ServiceUnavailableException")}
    )
    sqs_down = Faulty(aws.sqs, always={"send_message_batch": client_error("ServiceUnavailable")})
    feedback_api.configure(
        aws.runtime(
            ground_truth=aws.writer(firehose_down, max_attempts=2),
            dead_letters=aws.dead_letter_queue(sqs_down, max_attempts=2),
        )
    )
    status, body = invoke(record("a", label=1, reward=1))
    assert (status, body["status"]) == (503, "failed")
    assert feedback_items(aws) == {} and aws.objects() == {} and aws.queued() == []
    feedback_api.configure(aws.runtime())  # both are back: the client's retry goes through
    status, body = invoke(record("a", label=1, reward=1))
    assert (status, body["status"]) == (202, "accepted")
    assert len(aws.ground_truth_lines()) == 1 and len(feedback_items(aws)) == 1


def test_lookup_failure_dead_letters_with_ground_truth_pending_and_replay_writes_it(aws):
    aws.put_prediction(prediction("a"))
    lookups_down = Faulty(
        aws.dynamodb, always={"batch_get_item": client_error("ProvisionedThroughputExceededException")}
    )
    feedback_api.configure(aws.runtime(store=aws.store(lookups_down, max_attempts=2)))
    status, body = invoke(record("a", label=1, reward=1))
    assert (status, body["status"], body["queued"]) == (202, "accepted", True)
    (letter,) = aws.queued()
    assert (letter["stage"], letter["write_ground_truth"]) == ("store", True)
    assert aws.objects() == {}
    use_replayer(aws)
    assert feedback_replay.handler(sqs_event(aws), LambdaContext()) == {"batchItemFailures": []}
    assert aws.statistics(*CHALLENGER)["feedback_count"] == 1
    assert len(aws.ground_truth_lines()) == 1


# A Lambda context with 3 s left: less than the dead-letter reserve, so no time for retries.
SHORT_CONTEXT = LambdaContext(remaining_millis=3000)


def test_retries_stop_when_the_invocation_runs_out_of_time(aws):
    import time

    aws.put_prediction(prediction("a"))
    throttled = Faulty(aws.dynamodb, always={"transact_write_items": statistics_throttled})
    budget = fb.RetryBudget(time.monotonic)
    feedback_api.configure(aws.runtime(store=aws.store(throttled, budget=budget), budget=budget))
    response = feedback_api.handler(api_event(json.dumps(record("a", reward=1))), SHORT_CONTEXT)
    body = json.loads(response["body"])
    assert (response["statusCode"], body["status"], body["queued"]) == (202, "accepted", True)
    assert len(throttled.calls["transact_write_items"]) == 1  # no time left for a second attempt
    (letter,) = aws.queued()
    assert "out of time" in letter["reason"]


def test_runtime_from_env_shares_one_budget():
    with mock_aws():
        env = {SETTINGS_ENV: json.dumps({"predictions_table": "p", "feedback_table": "f", "statistics_table": "s",
                                  "ground_truth_stream": "g", "dead_letter_queue_url": "https://q", "subject_hash_secret": put_subject_hash_key("k")})}
        built = feedback_api.Runtime.from_env(env)
    assert built.store.budget is built.budget and built.ground_truth.budget is built.budget
    built.start_request(SHORT_CONTEXT)
    assert not built.budget.allows()
    built.start_request(object())  # a context without a deadline (get_remaining_time_in_millis): no limit
    assert built.budget.allows(1e9)
