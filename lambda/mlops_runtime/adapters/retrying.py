"""The retry mechanism the platform's AWS adapters share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Retrying:
    """Bounded retries with "full jitter" exponential back-off, for adapters over one AWS client.

    Attempt ``n`` (from 0) is followed, if it failed, by a sleep drawn from
    ``[0, min(max_delay, base_delay * 2**n))``. An optional ``budget`` (``allows(delay)``) caps
    the total sleeping, e.g. to keep time before a Lambda's deadline. The client is injected or
    created on first use by the subclass.
    """

    def __init__(
        self,
        client: Any | None,
        *,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
        budget: Any = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.budget = budget  # a domain.feedback.RetryBudget, or None
        self._client = client
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter

    def _back_off(self, attempt: int) -> bool:
        """Sleep before attempt ``attempt + 1``; False (no sleep) when the budget does not allow it."""
        delay = self._jitter() * min(self._max_delay, self._base_delay * 2**attempt)
        if self.budget is not None and not self.budget.allows(delay):
            return False
        self._sleep(delay)
        return True

    @staticmethod
    def _new_client(service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=1, read_timeout=3),
        )
