"""Describing and classifying AWS errors (logs, results, dead-letter reasons, "does not exist",
"retry later"): the one place that reads a botocore ``ClientError``'s code and message."""

from __future__ import annotations

from collections.abc import Mapping


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``; ``None`` for anything else (a bug, not an
    AWS answer)."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        return response.get("Error", {}).get("Code")
    return None


def error_message(error: BaseException) -> str:
    """The AWS error message of a ``ClientError``, else the exception's text."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Message", ""))
    return str(error)


def error_code_or_name(error: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError``, else the exception's type name."""
    return error_code(error) or type(error).__name__


def error_text(error: BaseException) -> str:
    """``Code: message`` for an AWS error, ``Type: text`` for anything else."""
    response = getattr(error, "response", None) or {}
    message = response.get("Error", {}).get("Message")
    return f"{error_code_or_name(error)}: {message}" if message else f"{type(error).__name__}: {error}"


NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException",
                             "NoSuchKey", "NoSuchBucket"})
# What SageMaker and Application Auto Scaling say in a ValidationException about a missing resource.
_NOT_FOUND_MESSAGES = ("could not find", "not found", "does not exist", "no scalable target",
                       "no scaling policy")
# Left after botocore's own retries (standard mode): worth another invocation later.
RETRYABLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                             "ServiceUnavailable", "InternalFailure", "InternalServerError"})
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                                 "UnauthorizedAccess", "NotAuthorized"})


def _validation_says(error: BaseException, markers: tuple[str, ...]) -> bool:
    if error_code(error) not in ("ValidationException", "ValidationError"):
        return False
    message = error_message(error).lower()
    return any(marker in message for marker in markers)


def is_not_found(error: BaseException) -> bool:
    """The resource does not exist (or is already gone): SageMaker's ``ValidationException`` "Could not
    find ...", Application Auto Scaling's ``ObjectNotFoundException`` / "No scalable target found",
    ``ResourceNotFound``, S3's ``NoSuchKey`` / ``NoSuchBucket``."""
    return error_code_or_name(error) in NOT_FOUND_CODES or _validation_says(error, _NOT_FOUND_MESSAGES)


def is_already_exists(error: BaseException) -> bool:
    """A create refused because the resource exists (e.g. made by a duplicate delivery)."""
    return error_code(error) == "ResourceInUse" or _validation_says(
        error, ("already existing", "already exists"))


def is_retryable(error: BaseException) -> bool:
    """Throttling or a service fault that outlasted botocore's retries: worth another invocation later."""
    return error_code(error) in RETRYABLE_CODES


def is_access_denied(error: BaseException) -> bool:
    """The caller's role lacks a permission: retrying cannot help."""
    return error_code(error) in ACCESS_DENIED_CODES
