"""The Lambda context that handler tests pass: what Powertools reads from it (the Logger's
``inject_lambda_context``, Idempotency's remaining time). One class for every test module; import it
as ``from lambda_context import LambdaContext`` (``tests/`` is on the path, as for ``settings_support``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "mlops-dev-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "req-1"
    region: str = "eu-west-1"
    account: str = "123456789012"
    remaining_millis: int = 60_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis
