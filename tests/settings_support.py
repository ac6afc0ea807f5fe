"""Tests' way to give a handler its settings as the stack does: one JSON environment variable, and
the subject-hash key in (moto's) Secrets Manager, read by the handler with Powertools parameters."""

from __future__ import annotations

import json
from typing import Any

SUBJECT_HASH_SECRET = "subject-hash-key"


def set_settings(monkeypatch: Any, **fields: Any) -> None:
    """``MLOPS_SETTINGS`` = the JSON of ``fields`` (validated by the handler's model at first use)."""
    from mlops_runtime.settings.base import SETTINGS_ENV

    monkeypatch.setenv(SETTINGS_ENV, json.dumps(fields))


def put_subject_hash_key(value: str = "pepper", region: str = "eu-west-1") -> str:
    """Store the key in Secrets Manager (inside ``mock_aws``) and clear Powertools' cache; its ARN (the
    stack passes the ARN)."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    created = boto3.client("secretsmanager", region_name=region).create_secret(
        Name=SUBJECT_HASH_SECRET, SecretString=value)
    parameters.clear_caches()
    return created["ARN"]


def rendered(value: Any) -> Any:
    """A template value with CloudFormation intrinsics turned into readable strings: ``{"Ref": X}`` ->
    ``<X>``, ``{"Fn::GetAtt": [X, Y]}`` -> ``<X.Y>``, ``Fn::Join`` joined (what a token-holding
    settings JSON becomes once deployed, with names standing for the resources)."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, argument), = value.items()
        if kind == "Ref":
            return f"<{argument}>"
        if kind == "Fn::GetAtt":
            return f"<{'.'.join(argument)}>"
        if kind == "Fn::Join":
            separator, parts = argument
            return separator.join(str(rendered(part)) for part in parts)
    if isinstance(value, dict):
        return {key: rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rendered(item) for item in value]
    return value


def deployed_settings(function_props: dict[str, Any]) -> Any:
    """The function's settings as its handler reads them at cold start (its own ``SETTINGS_MODEL``)."""
    import importlib

    from mlops_runtime.settings.base import SETTINGS_ENV

    module = importlib.import_module(function_props["Handler"].rsplit(".", 1)[0])
    raw = rendered(function_props["Environment"]["Variables"][SETTINGS_ENV])
    return module.SETTINGS_MODEL.from_env({SETTINGS_ENV: raw})
