"""Describing AWS errors for logs, results and dead-letter reasons."""

from __future__ import annotations


def error_code_or_name(error: Exception) -> str:
    """The AWS error code of a botocore ``ClientError``, else the exception's type name."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(error).__name__))


def error_text(error: Exception) -> str:
    """``Code: message`` for an AWS error, ``Type: text`` for anything else."""
    response = getattr(error, "response", None) or {}
    message = response.get("Error", {}).get("Message")
    return f"{error_code_or_name(error)}: {message}" if message else f"{type(error).__name__}: {error}"
