"""X-Ray tracing of a Lambda handler, set up on the first invocation rather than at import.

Creating a Powertools ``Tracer`` imports the X-Ray SDK and patches botocore (about 250 ms, as much
as ``import boto3``); doing it lazily keeps module import fast (the cold-start benchmarks measure
imports) and lets tests run untraced. Only botocore is patched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, Any], Any]


def tracing_enabled() -> bool:
    """Powertools' own switch: tracing unless ``POWERTOOLS_TRACE_DISABLED`` is ``true``."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() != "true"


class LazilyTraced:
    """``handler(event, context)`` wrapped by ``Tracer.capture_lambda_handler`` on its first call
    when ``enabled()`` says so, else called as is."""

    def __init__(self, handler: Handler, enabled: Callable[[], bool] = tracing_enabled) -> None:
        self._handler, self._enabled, self._call = handler, enabled, None

    def __call__(self, event: Any, context: Any) -> Any:
        if self._call is None:
            if self._enabled():
                from aws_lambda_powertools import Tracer

                tracer = Tracer(patch_modules=("botocore",))
                self._call = tracer.capture_lambda_handler(self._handler, capture_response=False)
            else:
                self._call = self._handler
        return self._call(event, context)
