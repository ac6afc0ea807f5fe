"""Fixtures of the feedback API tests (builders live in ``feedback_fixtures``)."""

from __future__ import annotations

import pytest
from feedback_fixtures import NOW, Fakes, create_account, settings
from mlops_runtime.handlers import feedback_api


@pytest.fixture
def fakes():
    """The API wired to in-memory fakes and a fixed clock."""
    fake = Fakes()
    feedback_api.configure(
        feedback_api.Runtime(settings(), fake.store, fake.ground_truth, fake.dead_letters, clock=lambda: NOW)
    )
    yield fake
    feedback_api.configure(None)


@pytest.fixture
def aws():
    """A moto account with the three tables, the bucket, the delivery stream and the dead-letter queue;
    the API is wired to real adapters over it (no back-off sleeps)."""
    from moto import mock_aws

    with mock_aws():
        account = create_account()
        feedback_api.configure(account.runtime())
        yield account
        feedback_api.configure(None)
