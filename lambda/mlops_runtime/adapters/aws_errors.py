"""Describing and classifying AWS errors (logs, results, dead-letter reasons, "does not exist")."""

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


NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket"})


def is_not_found(error: Exception) -> bool:
    """The resource does not exist: SageMaker's ``ValidationException`` "Could not find ...",
    ``ResourceNotFound``, S3's ``NoSuchKey`` / ``NoSuchBucket``."""
    code = error_code_or_name(error)
    if code in NOT_FOUND_CODES:
        return True
    if code in ("ValidationException", "ValidationError"):
        message = str((getattr(error, "response", None) or {}).get("Error", {}).get("Message", "")).lower()
        return "could not find" in message or "not found" in message or "does not exist" in message
    return False
