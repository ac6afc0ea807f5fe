"""Powertools in every handler, one way: its Logger and Metrics, and the X-Ray Tracer set up on the
first invocation rather than at import.

Creating a Powertools ``Tracer`` imports the X-Ray SDK and patches botocore (about 250 ms, as much
as ``import boto3``); doing it lazily keeps module import fast (the cold-start benchmarks measure
imports) and lets tests run untraced. Only botocore is patched.

A handler module writes::

    logger, metrics = powertools()
    ...
    handler = entry_point(_handler, logger, metrics, tracing=ALWAYS)

Tracing, by Powertools' own switch ``POWERTOOLS_TRACE_DISABLED``:

- :data:`ALWAYS`: traced unless the switch is ``true`` (Powertools' default);
- :data:`OPT_IN`: request-path handlers (the inference and search APIs), where the tracer's cold
  start would land on a caller's request: traced only when the switch is set to ``false``;
- :data:`NEVER`: handlers whose cold start is budgeted without the X-Ray SDK.

Environment: ``POWERTOOLS_METRICS_NAMESPACE`` (the stack sets it; :data:`DEFAULT_METRICS_NAMESPACE`
in tests and local runs) and ``POWERTOOLS_TRACE_DISABLED``: Powertools' own variables, read here only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics

Handler = Callable[[Any, Any], Any]
Tracing = Literal["always", "opt-in", "never"]
ALWAYS: Tracing = "always"
OPT_IN: Tracing = "opt-in"
NEVER: Tracing = "never"
DEFAULT_METRICS_NAMESPACE = "MlopsPlatform"


def metrics_namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE)


def powertools() -> tuple[Logger, Metrics]:
    """The handler's Logger and Metrics (in the function's metric namespace)."""
    return Logger(), Metrics(namespace=metrics_namespace())


def tracing_enabled(tracing: Tracing = ALWAYS) -> bool:
    switch = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower()
    if tracing == OPT_IN:
        return switch in ("false", "0")
    return tracing == ALWAYS and switch not in ("true", "1")


class LazilyTraced:
    """``handler(event, context)`` wrapped by ``Tracer.capture_lambda_handler`` on its first call
    when ``tracing`` says so (or ``enabled()``, when given: tests), else called as is."""

    def __init__(self, handler: Handler, tracing: Tracing = ALWAYS, *,
                 enabled: Callable[[], bool] | None = None) -> None:
        self._handler, self._call = handler, None
        self._enabled = enabled or (lambda: tracing_enabled(tracing))

    def __call__(self, event: Any, context: Any) -> Any:
        if self._call is None:
            if self._enabled():
                from aws_lambda_powertools import Tracer

                tracer = Tracer(patch_modules=("botocore",))
                self._call = tracer.capture_lambda_handler(self._handler, capture_response=False)
            else:
                self._call = self._handler
        return self._call(event, context)


def entry_point(function: Handler, logger: Logger, metrics: Metrics | None = None, *,
                tracing: Tracing = ALWAYS, **context_options: Any) -> Handler:
    """The Lambda entry point of ``function``: the Lambda context in the logs (state cleared per
    invocation; ``context_options`` go to ``Logger.inject_lambda_context``), metrics flushed after
    each invocation, and traced as ``tracing`` says."""
    traced = LazilyTraced(function, tracing)

    def handler(event: Any, context: Any) -> Any:
        return traced(event, context)

    # named as Lambda finds it, <handler module>.handler (the wrappers below copy these)
    handler.__module__, handler.__qualname__ = function.__module__, "handler"
    if metrics is not None:
        handler = metrics.log_metrics(handler)
    entry = logger.inject_lambda_context(clear_state=True, **context_options)(handler)
    entry.tracing = tracing  # how it is traced (tests check that every handler is built here)
    entry.traced = traced  # its LazilyTraced: the tracer, once the first invocation created it
    return entry
