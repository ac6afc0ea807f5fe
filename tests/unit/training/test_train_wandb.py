"""train.py logs to Weights & Biases with the API key read from Secrets Manager at run time."""

from __future__ import annotations

import json
import os
import sys
import types

import boto3
import pytest
from moto import mock_aws

from training.example_classifier import train


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[tuple[dict, int]] = []
        self.summary: dict = {}
        self.finished = False

    def log(self, values: dict, step: int) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    seen: dict = {}
    run = FakeRun()

    def init(**kwargs):
        seen.update(kwargs, api_key=os.environ.get("WANDB_API_KEY"))
        return run

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return seen, run


HISTORY = {"validation": {"auc": [0.9, 0.95, 0.97]}, "train": {"auc": [0.91, 0.96, 0.99]}}


@pytest.mark.parametrize("secret", ["k-123", json.dumps({"api_key": "k-123"})])
def test_key_from_secrets_manager_and_per_round_metrics(monkeypatch, fake_wandb, secret):
    seen, run = fake_wandb
    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name="wandb/key", SecretString=secret)
        monkeypatch.setenv("WANDB_SECRET_NAME", "wandb/key")
        monkeypatch.setenv("WANDB_PROJECT", "mlops-dev-example")
        train.log_to_wandb({"eta": 0.2}, HISTORY, {"final_validation_auc": 0.97})
    assert seen["api_key"] == "k-123" and seen["project"] == "mlops-dev-example"
    assert seen["config"] == {"eta": 0.2}
    assert [step for _, step in run.logged] == [0, 1, 2]
    assert run.logged[2][0] == {"validation_auc": 0.97, "train_auc": 0.99}
    assert run.summary == {"final_validation_auc": 0.97} and run.finished
    assert "WANDB_API_KEY" not in os.environ  # the key does not outlive the upload


def test_missing_secret_only_warns(monkeypatch, fake_wandb, caplog):
    with mock_aws():
        monkeypatch.setenv("WANDB_SECRET_NAME", "absent")
        train.log_to_wandb({}, HISTORY, {})
    assert "W&B tracking failed" in caplog.text


def test_not_configured_does_nothing(monkeypatch, fake_wandb):
    monkeypatch.delenv("WANDB_SECRET_NAME", raising=False)
    seen, run = fake_wandb
    train.log_to_wandb({}, HISTORY, {})
    assert seen == {} and run.logged == []
