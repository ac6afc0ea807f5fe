"""The dead-letter replay: SQS-triggered partial batch failures and the operator command line."""

from __future__ import annotations

import json

import pytest
from lambda_context import LambdaContext
from feedback_fixtures import NOW, Faulty, prediction, statistics_throttled
from mlops_runtime.domain import feedback as fb
from mlops_runtime.handlers import feedback_replay
from mlops_runtime.settings.base import SETTINGS_ENV


def letter(inference_id="a", stage="store", **fields):
    raw = {"inference_id": inference_id, "feedback_type": "click", "reward": 1, "label": 1, **fields}
    built = fb.build_feedback(fb.validate_record(raw, now=NOW), now=NOW)
    line = fb.ground_truth_line(inference_id, 1) if stage == "ground_truth" else None
    return fb.dead_letter_message(
        stage, "test", built, now=NOW, write_ground_truth=stage == "store", ground_truth=line
    )


def sqs_record(message_id, body):
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:feedback-dlq",
        "awsRegion": "eu-west-1",
    }


@pytest.fixture
def replay(aws):
    feedback_replay.configure(feedback_replay.Replayer(aws.store(), aws.writer(), clock=lambda: NOW))
    yield aws
    feedback_replay.configure(None)


def test_sqs_replay_reports_only_the_failures(replay):
    replay.put_prediction(prediction("a"))
    event = {
        "Records": [
            sqs_record("m1", letter("a")),
            sqs_record("m2", "not a dead letter"),
            sqs_record("m3", letter("b", stage="ground_truth")),
            sqs_record("m4", {"kind": "something-else"}),
        ]
    }
    response = feedback_replay.handler(event, LambdaContext(function_name="feedback-replay"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m4"}]}
    assert replay.statistics("churn", "churn/challenger")["feedback_count"] == 1
    assert sorted(line["eventMetadata"]["eventId"] for line in replay.ground_truth_lines()) == ["a", "b"]


def test_a_replay_that_still_fails_stays_in_the_queue(replay, capsys):
    replay.put_prediction(prediction("a"))
    replay.dead_letter_queue().send([letter("a")])
    throttled = Faulty(replay.dynamodb, always={"transact_write_items": statistics_throttled})
    engine = feedback_replay.Replayer(
        replay.store(throttled, max_attempts=2), replay.writer(), clock=lambda: NOW
    )
    code = feedback_replay.main(
        ["--queue-url", replay.queue_url, "--wait-seconds", "0", "--visibility-timeout", "0"],
        replayer_=engine,
        queue=replay.dead_letter_queue(),
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["failed"] >= 1 and summary["replayed"] == 0
    assert "ProvisionedThroughputExceeded" in summary["failures"][0]["reason"]
    assert len(replay.queued()) == 1  # not deleted, not duplicated
    # Once DynamoDB is healthy the same letter replays.
    code = feedback_replay.main(
        ["--queue-url", replay.queue_url, "--wait-seconds", "0"],
        replayer_=feedback_replay.replayer(),
        queue=replay.dead_letter_queue(),
    )
    assert code == 0 and replay.queued() == []
    assert replay.statistics("churn", "churn/challenger")["feedback_count"] == 1


def test_dry_run_reads_without_replaying(replay, capsys):
    replay.dead_letter_queue().send([letter("a"), letter("b")])
    code = feedback_replay.main(
        ["--queue-url", replay.queue_url, "--wait-seconds", "0", "--dry-run"],
        replayer_=feedback_replay.replayer(),
        queue=replay.dead_letter_queue(),
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["read"] == 2 and summary["replayed"] == 0
    assert replay.items("feedback") == []


def test_max_messages_bounds_a_run(replay, capsys):
    replay.dead_letter_queue().send([letter(f"i{n}", stage="ground_truth") for n in range(5)])
    code = feedback_replay.main(
        ["--queue-url", replay.queue_url, "--wait-seconds", "0", "--max-messages", "3"],
        replayer_=feedback_replay.replayer(),
        queue=replay.dead_letter_queue(),
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["replayed"] == 3
    assert len(replay.queued()) == 2


def test_command_line_argument_and_configuration_errors(monkeypatch, capsys):
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    assert feedback_replay.main([]) == 2  # no settings: no queue either
    assert feedback_replay.main(["--queue-url", "https://q", "--max-messages", "0"]) == 2
    assert feedback_replay.main(["--queue-url", "https://q"]) == 2
    assert f"{SETTINGS_ENV} is not set" in capsys.readouterr().err


def test_replayer_from_env_needs_no_subject_key():
    env = {SETTINGS_ENV: json.dumps({"predictions_table": "p", "feedback_table": "f", "statistics_table": "s",
                                  "ground_truth_stream": "g", "dead_letter_queue_url": "https://q"})}
    engine = feedback_replay.Replayer.from_env(env)
    assert engine.store.feedback_table == "f" and engine.ground_truth.stream_name == "g"
