"""The DynamoDB feedback store on moto: lookup, idempotent transactional writes, credits, retries."""

from __future__ import annotations

import threading

import pytest
from feedback_fixtures import (
    FEEDBACK_TABLE,
    NOW,
    STATISTICS_TABLE,
    Faulty,
    cancelled,
    client_error,
    prediction,
    row,
    statistics_throttled,
)
from mlops_runtime.adapters.feedback_store import (
    DynamoDBFeedbackStore,
    format_number,
    from_attribute,
    to_attribute,
)
from mlops_runtime.domain import feedback as fb

ARM = ("churn", "churn/challenger")


def feedback(inference_id="inf-1", **fields):
    raw = {"inference_id": inference_id, "feedback_type": "click", "reward": 1, **fields}
    return fb.build_feedback(fb.validate_record(raw, now=NOW), now=NOW, subject_hash_key=b"k")


def writes_for(store, feedbacks):
    lookup = store.lookup([f.inference_id for f in feedbacks], [f.feedback_id for f in feedbacks])
    seen = set()
    writes = []
    for item in feedbacks:
        found = lookup.predictions.get(item.inference_id)
        credit = found is not None and item.reward is not None and item.inference_id not in seen
        seen.add(item.inference_id)
        writes.append(fb.FeedbackWrite(item, found, credit))
    return writes


# --- attribute values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, 1, -7, 10**37, 0.5, 1e-7, 3.25e100, "text", "", True, None, [1, "a", 2.5], {"k": [1, {"n": False}]}],
)
def test_attribute_values_round_trip(value):
    assert from_attribute(to_attribute(value)) == value


def test_numbers_fit_dynamodb():
    assert format_number(1e-07) == "0.0000001"
    assert format_number(2.0) == "2.0" and format_number(1e22) == "1E+22"
    assert format_number(1e-140) == "0"  # below DynamoDB's 1E-130: a squared tiny reward
    assert format_number(0.1) == "0.1"
    with pytest.raises(TypeError):
        format_number(True)


# --- lookup -------------------------------------------------------------------------------------


def test_lookup_finds_predictions_and_existing_feedback(aws):
    aws.put_prediction(prediction("inf-1"))
    aws.put_prediction({"inference_id": "legacy", "endpoint": "e", "variant": "v", "created_at_ms": 1})
    store = aws.store()
    first = feedback("inf-1")
    store.write(writes_for(store, [first]))
    lookup = store.lookup(["inf-1", "legacy", "missing"], [first.feedback_id, "unknown"])
    assert set(lookup.predictions) == {"inf-1", "legacy"}
    assert lookup.predictions["legacy"].arm == "e/v"
    assert lookup.predictions["inf-1"].model_package_arn.endswith("churn/3")
    assert lookup.existing == {first.feedback_id: fb.ExistingFeedback(joined=True, credited=True)}


def test_lookup_uses_consistent_batch_gets_of_at_most_100_keys(aws):
    aws.put_predictions([prediction(f"inf-{n}") for n in range(120)])
    client = Faulty(aws.dynamodb)
    lookup = aws.store(client).lookup([f"inf-{n}" for n in range(120)], [f"fb-{n}" for n in range(120)])
    assert len(lookup.predictions) == 120
    calls = client.calls["batch_get_item"]
    assert len(calls) == 3
    for call in calls:
        assert sum(len(entry["Keys"]) for entry in call["RequestItems"].values()) <= 100
        assert all(entry["ConsistentRead"] for entry in call["RequestItems"].values())


def test_unprocessed_keys_are_retried(aws):
    aws.put_prediction(prediction("inf-1"))
    aws.put_prediction(prediction("inf-2"))

    def half_unprocessed(kwargs):
        keys = kwargs["RequestItems"]["predictions"]["Keys"]
        response = aws.dynamodb.batch_get_item(
            RequestItems={"predictions": {"Keys": keys[:1], "ConsistentRead": True}}
        )
        response["UnprocessedKeys"] = {"predictions": {"Keys": keys[1:], "ConsistentRead": True}}
        return ("return", response)

    client = Faulty(aws.dynamodb, script={"batch_get_item": [half_unprocessed]})
    lookup = aws.store(client).lookup(["inf-1", "inf-2"], [])
    assert set(lookup.predictions) == {"inf-1", "inf-2"}
    assert len(client.calls["batch_get_item"]) == 2


def test_lookup_gives_up_after_bounded_retries(aws):
    client = Faulty(
        aws.dynamodb, always={"batch_get_item": client_error("ProvisionedThroughputExceededException")}
    )
    with pytest.raises(fb.LookupFailed, match="ProvisionedThroughputExceeded"):
        aws.store(client, max_attempts=3).lookup(["inf-1"], ["f"])
    assert len(client.calls["batch_get_item"]) == 3
    denied = Faulty(aws.dynamodb, always={"batch_get_item": client_error("AccessDeniedException")})
    with pytest.raises(fb.LookupFailed, match="AccessDenied"):
        aws.store(denied).lookup(["inf-1"], [])
    assert len(denied.calls["batch_get_item"]) == 1  # not retryable


# --- writes -------------------------------------------------------------------------------------


def test_write_stores_credits_and_refuses_duplicates(aws):
    aws.put_prediction(prediction("inf-1"))
    store = aws.store()
    item = feedback(
        "inf-1",
        reward=0.5,
        label=["a", 1],
        metadata={"page": "home", "n": 2, "ok": True},
        subject_id="user-1",
        event_time="2026-11-27T12:00:00Z",
    )
    result = store.write(writes_for(store, [item]))
    assert result.stored == {item.feedback_id: True}
    assert aws.statistics(*ARM) == {
        "experiment": "churn",
        "round_arm_hour": row("churn", "churn/challenger")[1],
        "reward_sum": 0.5,
        "reward_sq_sum": 0.25,
        "feedback_count": 1,
    }
    stored = {i["feedback_id"]: i for i in aws.items(FEEDBACK_TABLE)}
    assert stored[item.feedback_id]["label"] == ["a", 1]
    assert stored[item.feedback_id]["metadata"] == {"page": "home", "n": 2, "ok": True}
    assert stored[item.feedback_id]["event_time"] == "2026-11-27T12:00:00.000000Z"
    assert stored[item.feedback_id]["subject_hash"] == item.subject_hash
    assert stored["reward-credit#inf-1"]["credited_feedback_id"] == item.feedback_id
    # The same feedback again (as a crash-and-retry would send it): nothing changes.
    again = store.write([fb.FeedbackWrite(item, fb.Prediction.from_item(prediction("inf-1")), True)])
    assert again.duplicates == {item.feedback_id} and again.stored == {}
    assert aws.statistics(*ARM)["feedback_count"] == 1


def test_a_second_reward_for_an_inference_is_stored_without_credit(aws):
    aws.put_prediction(prediction("inf-1"))
    store = aws.store()
    store.write(writes_for(store, [feedback("inf-1")]))
    purchase = feedback("inf-1", feedback_type="purchase")
    result = store.write([fb.FeedbackWrite(purchase, fb.Prediction.from_item(prediction("inf-1")), True)])
    assert result.stored == {purchase.feedback_id: False}
    assert aws.statistics(*ARM)["feedback_count"] == 1
    assert {i["feedback_id"]: i["credited"] for i in aws.items(FEEDBACK_TABLE) if "credited" in i}[
        purchase.feedback_id
    ] is False


def test_large_batches_are_split_into_transactions_of_at_most_100_actions(aws):
    # 60 crediting records: 120 puts (feedback + credit marker) and 2 arm updates, so two transactions.
    # (moto deep-copies the table once per action of a transaction, so bigger runs are slow here.)
    aws.put_predictions(
        [prediction(f"inf-{n}", variant="champion" if n % 2 else "challenger") for n in range(60)]
    )
    client = Faulty(aws.dynamodb)
    store = aws.store(client)
    items = [feedback(f"inf-{n}", reward=0.5) for n in range(60)]
    result = store.write(writes_for(store, items))
    assert len(result.stored) == 60 and all(result.stored.values())
    calls = client.calls["transact_write_items"]
    assert len(calls) == 2 and all(len(call["TransactItems"]) <= 100 for call in calls)
    # One ADD per arm per transaction, with the group's summed rewards.
    for call in calls:
        rows = [a["Update"]["Key"]["round_arm_hour"]["S"] for a in call["TransactItems"] if "Update" in a]
        assert sorted(rows) == [row("churn", "churn/challenger")[1], row("churn", "churn/champion")[1]]
    assert aws.statistics("churn", "churn/challenger")["feedback_count"] == 30
    assert aws.statistics("churn", "churn/champion")["reward_sum"] == 15


def test_a_duplicate_inside_a_group_does_not_block_the_others(aws):
    aws.put_prediction(prediction("inf-1"))
    store = aws.store()
    old = feedback("old")
    store.write(writes_for(store, [old]))
    fresh = [feedback("inf-1"), feedback("new-2")]
    # Written as if the lookup had missed "old" (a concurrent writer): the transaction is cancelled
    # with ConditionalCheckFailed on its put, and retried without it.
    result = store.write([fb.FeedbackWrite(old, None, False)] + writes_for(store, fresh))
    assert result.duplicates == {old.feedback_id}
    assert set(result.stored) == {f.feedback_id for f in fresh}
    assert aws.statistics(*ARM)["feedback_count"] == 1


def test_throttling_and_conflicts_are_retried(aws):
    aws.put_prediction(prediction("inf-1"))
    client = Faulty(
        aws.dynamodb,
        script={
            "transact_write_items": [
                statistics_throttled,
                lambda kwargs: cancelled(kwargs, lambda action: "TransactionConflict"),
                client_error("ProvisionedThroughputExceededException"),
            ]
        },
    )
    delays = []
    store = DynamoDBFeedbackStore(
        "predictions",
        FEEDBACK_TABLE,
        STATISTICS_TABLE,
        client,
        sleep=delays.append,
        jitter=lambda: 1.0,
        max_attempts=4,
    )
    result = store.write(writes_for(store, [feedback("inf-1")]))
    assert len(result.stored) == 1 and len(client.calls["transact_write_items"]) == 4
    assert delays == [0.05, 0.1, 0.2]  # exponential back-off (jitter pinned to its maximum)
    assert aws.statistics(*ARM)["feedback_count"] == 1


def test_persistent_throttling_fails_the_group_without_writing(aws):
    aws.put_prediction(prediction("inf-1"))
    client = Faulty(aws.dynamodb, always={"transact_write_items": statistics_throttled})
    store = aws.store(client, max_attempts=3)
    items = [feedback("inf-1"), feedback("other")]
    result = store.write(writes_for(store, items))
    assert set(result.failed) == {i.feedback_id for i in items}
    assert set(result.failed.values()) == {
        "TransactionCanceledException: ProvisionedThroughputExceeded (statistics) (after 3 attempts)"
    }
    assert len(client.calls["transact_write_items"]) == 3
    assert aws.items(FEEDBACK_TABLE) == [] and aws.statistics(*ARM) is None


def test_non_retryable_errors_fail_at_once(aws):
    client = Faulty(aws.dynamodb, always={"transact_write_items": client_error("ValidationException", "bad")})
    store = aws.store(client)
    result = store.write(writes_for(store, [feedback("x")]))
    assert list(result.failed.values()) == ["ValidationException: bad"]
    assert len(client.calls["transact_write_items"]) == 1


def test_transient_connection_errors_are_retried(aws):
    from botocore.exceptions import EndpointConnectionError

    client = Faulty(
        aws.dynamodb, script={"transact_write_items": [EndpointConnectionError(endpoint_url="x")]}
    )
    store = aws.store(client)
    assert len(store.write(writes_for(store, [feedback("x")])).stored) == 1


def test_a_refused_transaction_is_retried_with_a_new_token(aws):
    client = Faulty(aws.dynamodb, script={"transact_write_items": [statistics_throttled]})
    aws.put_prediction(prediction("inf-1"))
    store = aws.store(client)
    store.write(writes_for(store, [feedback("inf-1")]))
    first, second = client.calls["transact_write_items"]
    assert first["TransactItems"] == second["TransactItems"]
    assert first["ClientRequestToken"] != second["ClientRequestToken"]


def test_retries_reuse_the_client_request_token(aws):
    client = Faulty(aws.dynamodb, script={"transact_write_items": [client_error("InternalServerError")]})
    store = aws.store(client)
    store.write(writes_for(store, [feedback("x")]))
    first, second = client.calls["transact_write_items"]
    assert first["ClientRequestToken"] == second["ClientRequestToken"]
    assert len(first["ClientRequestToken"]) <= 36


def test_tiny_rewards_do_not_underflow_dynamodb(aws):
    aws.put_prediction(prediction("inf-1"))
    store = aws.store()
    result = store.write(writes_for(store, [feedback("inf-1", reward=1e-80)]))
    assert result.stored
    assert aws.statistics(*ARM)["reward_sq_sum"] == 0


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_identical_submissions_against_moto_are_credited_once(aws):
    """16 threads submit the same feedback at once through the whole pipeline. Every lookup happens
    before any write (a barrier), so all of them try to write; transactions are serialised (as
    DynamoDB serialises conflicting transactions; moto itself is not thread-safe), and the
    conditional put lets exactly one commit its credit."""
    aws.put_prediction(prediction("inf-1"))
    threads = 16
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    client = Faulty(
        aws.dynamodb,
        lock=lock,
        serialise={"transact_write_items", "batch_get_item"},
        after={"batch_get_item": barrier.wait},
    )
    store = aws.store(client)
    sink = aws.writer()
    queue = aws.dead_letter_queue()
    outcomes = []
    errors = []

    def submit():
        try:
            item = feedback("inf-1", label=1)
            outcomes.extend(
                fb.process_feedback([item], store=store, ground_truth=sink, dead_letters=queue, now=NOW)
            )
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=submit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert [o.status for o in outcomes].count("stored") == 1
    assert [o.status for o in outcomes].count("duplicate") == threads - 1
    assert aws.statistics(*ARM)["feedback_count"] == 1 and aws.statistics(*ARM)["reward_sum"] == 1
    assert len([i for i in aws.items(FEEDBACK_TABLE) if i["record_type"] == "feedback"]) == 1
    assert aws.queued() == []
