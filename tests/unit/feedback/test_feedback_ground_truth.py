"""Ground-truth delivery (Firehose) and the dead-letter queue (SQS): batching, retries, moto output."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from feedback_fixtures import PREFIX, Faulty, client_error
from mlops_runtime.adapters.ground_truth import FirehoseGroundTruthWriter, SqsDeadLetterQueue
from mlops_runtime.domain import feedback as fb


def partial_failure(failed_positions=None):
    """A PutRecordBatch response where the records at ``failed_positions`` (default: all) failed."""

    def step(kwargs):
        failed = set(range(len(kwargs["Records"]))) if failed_positions is None else failed_positions
        responses = [
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
            if i in failed
            else {"RecordId": f"r{i}"}
            for i in range(len(kwargs["Records"]))
        ]
        return ("return", {"FailedPutCount": len(failed), "Encrypted": False, "RequestResponses": responses})

    return step


class RecordingFirehose:
    """A Firehose client double: every PutRecordBatch succeeds."""

    def __init__(self):
        self.calls = []

    def put_record_batch(self, **kwargs):
        self.calls.append(kwargs)
        return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "r"} for _ in kwargs["Records"]]}


def lines(count, size=None):
    out = []
    for n in range(count):
        line = fb.ground_truth_line(f"inf-{n}", n)
        out.append(line if size is None else line[:-1] + b" " * (size - len(line)) + b"\n")
    return out


# --- Firehose on moto ---------------------------------------------------------------------------


def test_lines_land_in_the_bucket_under_the_hourly_prefix(aws):
    before = datetime.now(UTC)
    written = lines(3)
    assert aws.writer().put(written) == {}
    ((key, data),) = aws.objects().items()
    after = datetime.now(UTC)
    hours = {moment.strftime("%Y/%m/%d/%H") for moment in (before, after)}
    assert re.fullmatch(rf"{PREFIX}(\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}})/ground-truth-.+", key).group(1) in hours
    assert data == b"".join(written)  # one JSON object per line, exactly as given
    assert [json.loads(line)["eventMetadata"]["eventId"] for line in data.splitlines()] == [
        "inf-0",
        "inf-1",
        "inf-2",
    ]


# --- retries ------------------------------------------------------------------------------------


def test_only_the_failed_records_are_sent_again(aws):
    client = Faulty(aws.firehose, script={"put_record_batch": [partial_failure({1, 3})]})
    writer = aws.writer(client)
    batch = lines(5)
    assert writer.put(batch) == {}
    first, second = client.calls["put_record_batch"]
    assert len(first["Records"]) == 5
    assert [r["Data"] for r in second["Records"]] == [batch[1], batch[3]]
    assert b"".join(aws.objects().values()).count(b"\n") == 2  # moto kept only the resent two


def test_persistent_failures_are_returned_with_their_reason(aws):
    client = Faulty(
        aws.firehose,
        script={"put_record_batch": [partial_failure({0, 2})]},
        always={"put_record_batch": partial_failure()},
    )
    delays = []
    writer = FirehoseGroundTruthWriter(
        "ground-truth", client, max_attempts=3, sleep=delays.append, jitter=lambda: 1.0
    )
    failures = writer.put(lines(3))
    assert set(failures) == {0, 2}
    assert "ServiceUnavailableException" in failures[0] and "after 3 attempts" in failures[0]
    assert delays == [0.1, 0.2]
    assert [len(call["Records"]) for call in client.calls["put_record_batch"]] == [3, 2, 2]


def test_throttling_exceptions_are_retried_then_reported(aws):
    client = Faulty(
        aws.firehose, script={"put_record_batch": [client_error("ServiceUnavailableException")] * 2}
    )
    assert aws.writer(client).put(lines(2)) == {}
    assert len(client.calls["put_record_batch"]) == 3
    always = Faulty(aws.firehose, always={"put_record_batch": client_error("ThrottlingException")})
    assert set(aws.writer(always, max_attempts=2).put(lines(2))) == {0, 1}


def test_configuration_errors_are_not_retried(aws):
    client = Faulty(
        aws.firehose, always={"put_record_batch": client_error("ResourceNotFoundException", "no stream")}
    )
    failures = aws.writer(client).put(lines(2))
    assert failures == {0: "ResourceNotFoundException: no stream", 1: "ResourceNotFoundException: no stream"}
    assert len(client.calls["put_record_batch"]) == 1


def test_batches_respect_firehose_limits():
    client = RecordingFirehose()
    writer = FirehoseGroundTruthWriter("s", client)
    assert writer.put(lines(1200)) == {}
    assert [len(call["Records"]) for call in client.calls] == [500, 500, 200]
    big = RecordingFirehose()
    assert FirehoseGroundTruthWriter("s", big).put(lines(10, size=900 * 1024)) == {}
    assert [len(call["Records"]) for call in big.calls] == [4, 4, 2]  # 4 MiB per call
    failures = FirehoseGroundTruthWriter("s", RecordingFirehose()).put([b"x" * (1001 * 1024)])
    assert "exceeds" in failures[0]


def test_client_is_created_lazily():
    assert FirehoseGroundTruthWriter("s")._client is None
    assert SqsDeadLetterQueue("https://q")._client is None


# --- the dead-letter queue ----------------------------------------------------------------------


def test_dead_letters_are_queued_in_batches_of_ten(aws):
    client = Faulty(aws.sqs)
    queue = aws.dead_letter_queue(client)
    messages = [{"kind": "x", "n": n} for n in range(25)]
    assert queue.send(messages) == {}
    assert [len(call["Entries"]) for call in client.calls["send_message_batch"]] == [10, 10, 5]
    assert sorted(m["n"] for m in aws.queued()) == list(range(25))


def test_dead_letter_failures_are_retried_unless_the_sender_is_at_fault(aws):
    def failed(kwargs):
        entries = kwargs["Entries"]
        return (
            "return",
            {
                "Successful": [],
                "Failed": [
                    {
                        "Id": entries[0]["Id"],
                        "SenderFault": True,
                        "Code": "InvalidMessageContents",
                        "Message": "bad",
                    },
                    *({"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in entries[1:]),
                ],
            },
        )

    client = Faulty(aws.sqs, script={"send_message_batch": [failed]})
    failures = aws.dead_letter_queue(client).send([{"n": 0}, {"n": 1}, {"n": 2}])
    assert failures == {0: "InvalidMessageContents: bad"}
    assert [len(call["Entries"]) for call in client.calls["send_message_batch"]] == [3, 2]
    assert sorted(m["n"] for m in aws.queued()) == [1, 2]


def test_an_unreachable_queue_reports_every_message(aws):
    client = Faulty(aws.sqs, always={"send_message_batch": client_error("AccessDenied", "denied")})
    assert aws.dead_letter_queue(client).send([{"n": 0}, {"n": 1}]) == {
        0: "AccessDenied: denied",
        1: "AccessDenied: denied",
    }


def test_receive_and_delete(aws):
    queue = aws.dead_letter_queue()
    queue.send([{"n": n} for n in range(3)])
    received = queue.receive(max_messages=10, wait_seconds=0)
    assert len(received) == 3
    assert queue.delete([m["ReceiptHandle"] for m in received]) == []
    assert aws.queued() == []


@pytest.mark.parametrize("bad", [0, -5])
def test_retry_settings_are_checked(bad):
    with pytest.raises(ValueError):
        FirehoseGroundTruthWriter("s", max_attempts=bad)
