"""The per-request transaction retries a conflict with a concurrent feedback credit, briefly."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlops_runtime.adapters import experiments_store
from mlops_runtime.adapters.experiments_store import DuplicateInferenceId, DynamoDBExperimentsStore


def cancelled(*codes: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
         "CancellationReasons": [{"Code": code} for code in codes]},
        "TransactWriteItems",
    )


class ScriptedClient:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def transact_write_items(self, **request):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(experiments_store.time, "sleep", lambda seconds: None)


def store(client) -> DynamoDBExperimentsStore:
    return DynamoDBExperimentsStore("predictions", "statistics", "state", client=client)


ITEM = {"inference_id": "abc", "endpoint": "e", "variant": "champion"}


def test_conflict_then_success_writes_once():
    client = ScriptedClient(cancelled("None", "TransactionConflict"), None)
    store(client).record_prediction(ITEM, "exp", "1#champion#2026-12-05T08")
    assert client.calls == 2


def test_persistent_conflict_gives_up_after_three_attempts():
    client = ScriptedClient(*[cancelled("None", "TransactionConflict")] * 3)
    with pytest.raises(ClientError):
        store(client).record_prediction(ITEM, "exp", "1#champion#2026-12-05T08")
    assert client.calls == 3


def test_duplicate_inference_id_is_not_retried():
    client = ScriptedClient(cancelled("ConditionalCheckFailed", "None"))
    with pytest.raises(DuplicateInferenceId):
        store(client).record_prediction(ITEM, "exp", "1#champion#2026-12-05T08")
    assert client.calls == 1
