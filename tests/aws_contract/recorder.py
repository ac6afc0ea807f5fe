"""Records every AWS call the code under test makes, with the Lambda handler or job whose code made it.

botocore emits ``before-parameter-build.<service>.<Operation>`` with the caller's parameters
before it validates or sends anything, so a call is seen even when moto, a Stubber or a
``before-call`` stand-in answers it, and even when AWS (moto) then refuses it. The handler is
registered the way moto registers its own: in ``botocore.handlers.BUILTIN_HANDLERS``, which every
botocore session created afterwards installs (tests/conftest.py imports this module first).

A call is attributed to the innermost Lambda handler module (``mlops_runtime.handlers.<name>``)
or job entry module (``JOB_MODULES``) on the Python stack; calls made by adapter tests with no
handler or job on the stack are not attributed (the adapter is then covered through its
handler's own tests). With each call it notes where in the settings the test gave the code (the
environment variables it set, JSON values walked) each identifier the call names came from: a
runner whose configuration has nothing there (a feature group lookup no endpoint is configured
with, a W&B secret where MLflow tracks) does not make that call.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers

HANDLER_PACKAGE = "mlops_runtime.handlers."
# Module of a job's code -> the entry a pipeline step names (its module or script file name).
JOB_MODULES = {
    "mlops_runtime.search.bulk": "mlops_runtime.search.bulk",
    "monitoring.monitor": "monitor.py",
    "monitoring.report": "monitor.py",
    "training.example_classifier.train": "train.py",
    "training.example_classifier.preprocess": "preprocess.py",
    "training.example_classifier.evaluate": "evaluate.py",
}


@dataclass(frozen=True)
class AwsCall:
    caller: str  # "mlops_runtime.handlers.deployer" or a JOB_MODULES value
    service: str  # botocore service name, e.g. "sagemaker-featurestore-runtime"
    operation: str  # API operation, e.g. "PutRecord"
    params: dict[str, Any] = field(hash=False, compare=False)
    # Per identifier the call names: the settings paths ("VAR/key/...") it was found at.
    needs: tuple[tuple[str, ...], ...] = ()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[AwsCall] = []
        self._baseline = dict(os.environ)  # the suite's own (tests/conftest.py sets it first)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        caller = _caller()
        if caller is None:
            return
        plain = _plain(params)
        settings = {k: _parsed(v) for k, v in os.environ.items() if self._baseline.get(k) != v}
        paths: dict[str, list[str]] = {}
        for path, leaf in _leaves(settings, ""):
            paths.setdefault(leaf, []).append(path)
        identifiers = {v for value in plain.values() for v in ([value] if isinstance(value, str) else value
                                                               if isinstance(value, list) else []) if isinstance(v, str)}
        needs = tuple(sorted({tuple(sorted(paths[v])) for v in identifiers if v in paths}))
        self.calls.append(AwsCall(caller, model.service_model.service_name, model.name, plain, needs))


def _caller() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(HANDLER_PACKAGE):
            return module
        if module in JOB_MODULES:
            return JOB_MODULES[module]
        frame = frame.f_back
    return None


def _plain(value: Any) -> Any:
    """The strings, numbers and containers of the parameters (bodies and streams dropped)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return f"<{type(value).__name__}>"


def _parsed(value: str) -> Any:
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _leaves(value: Any, path: str):
    """(path, string) of every string leaf; a path joins keys and list indexes with "/"."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}/{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}/{i}")
    elif isinstance(value, str):
        yield path, value


RECORDER = Recorder()
botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", RECORDER))
