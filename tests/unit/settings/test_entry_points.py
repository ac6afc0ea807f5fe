"""One way to set Powertools up in every handler (``adapters.tracing.entry_point``)."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest

from mlops_runtime.adapters import tracing
from lambda_context import LambdaContext


@pytest.mark.parametrize(("mode", "switch", "traced"), [
    (tracing.ALWAYS, None, True), (tracing.ALWAYS, "true", False), (tracing.ALWAYS, "false", True),
    (tracing.OPT_IN, None, False), (tracing.OPT_IN, "true", False), (tracing.OPT_IN, "false", True),
    (tracing.NEVER, None, False), (tracing.NEVER, "false", False),
])
def test_tracing_follows_powertools_switch(monkeypatch, mode, switch, traced):
    if switch is None:
        monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    else:
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", switch)
    assert tracing.tracing_enabled(mode) is traced


def test_an_entry_point_logs_with_the_context_and_flushes_its_metrics(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Tests/EntryPoint")
    logger, metrics = tracing.powertools()

    def work(event, context):
        metrics.add_metric(name="Worked", unit="Count", value=1)
        return {"echo": event, "keys": logger.get_current_keys()}

    handler = tracing.entry_point(work, logger, metrics, tracing=tracing.NEVER)
    answer = handler({"a": 1}, LambdaContext())
    assert answer["echo"] == {"a": 1} and answer["keys"]["function_request_id"] == "req-1"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (emf,) = [line for line in lines if "_aws" in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Tests/EntryPoint" and emf["Worked"] == [1.0]


def test_an_entry_point_creates_its_tracer_on_the_first_invocation_only(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    logger, _ = tracing.powertools()

    def work(event, context):
        return event

    handler = tracing.entry_point(work, logger, tracing=tracing.ALWAYS)
    assert handler.traced._call is None  # nothing at import
    assert handler({"a": 1}, LambdaContext()) == {"a": 1}
    first = handler.traced._call
    assert first is not None and first is not work  # wrapped by Tracer.capture_lambda_handler
    handler({"a": 2}, LambdaContext())
    assert handler.traced._call is first


def handler_modules() -> list[str]:
    import mlops_runtime.handlers as package

    return [module.name for module in pkgutil.iter_modules(package.__path__)]


@pytest.mark.parametrize("module", handler_modules())
def test_every_handler_is_an_entry_point(module):
    handler = importlib.import_module(f"mlops_runtime.handlers.{module}").handler
    assert getattr(handler, "tracing", None) in (tracing.ALWAYS, tracing.OPT_IN, tracing.NEVER)
    # named as the function's Handler setting names it (the API route test and Lambda find it so)
    assert f"{handler.__module__}.{handler.__name__}" == f"mlops_runtime.handlers.{module}.handler"
