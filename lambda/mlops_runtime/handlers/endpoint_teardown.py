"""Lambda: CloudFormation custom resource that deletes the deployer's endpoints when the stack is deleted.

The deployer creates endpoints, endpoint configs and models at approval time, outside
CloudFormation, so ``cdk destroy`` would leave them running (and billing). This is the ``onEvent``
handler of an ``aws_cdk.custom_resources.Provider`` (no ``isComplete``: deleting is quick, SageMaker
finishes the endpoint deletion by itself).

Settings: the resource properties, ``settings.endpoint_teardown.TeardownSettings`` (strings, as CloudFormation passes
them; the Serving stack builds them with ``function_settings.teardown``):

- ``ManagedByTag``: the value of the deployer's ``mlops:managed-by`` tag (``endpoint-deployer``);
- ``Environment``: the value of the ``mlops:environment`` tag the deployer puts on the endpoints
  (from the spec's ``tags``), so only this environment's endpoints are deleted;
- ``DeleteOnDestroy``: ``"true"`` deletes on stack deletion (dev); ``"false"`` (staging, prod,
  ``removal_policy: retain``) deletes nothing: the endpoints outlive the stack;
- ``EnvironmentTagKey`` (optional): the tag key holding ``Environment``, default ``mlops:environment``.

Create/Update validate the properties and do nothing else; the physical id is stable (Update keeps
the existing one: a new id would make CloudFormation send a Delete for the old one, i.e. a teardown
during an update). Delete with ``DeleteOnDestroy`` true: for every endpoint tagged
``mlops:managed-by=<ManagedByTag>`` and ``<EnvironmentTagKey>=<Environment>``, delete its scaling
policies and scalable targets (``adapters.autoscaling.suspend_scaling``), then the endpoint and every
endpoint config and model tagged for it (``Boto3SageMakerEndpoints.delete_endpoint_resources``).

Never blocks a stack deletion because something is already gone (ResourceNotFound, ValidationException
"Could not find ...": done). Fails with a clear message on AccessDenied (the function's role lacks a
permission: fix the role or delete by hand, then delete the stack again) and after other errors
(once every endpoint was tried), naming what is left. A Delete with invalid properties (a resource
whose Create failed) deletes nothing and succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from mlops_runtime.adapters.autoscaling import EndpointScaling, default_scaling
from mlops_runtime.adapters.aws_errors import (
    error_code,
    error_message,
    error_text,
    is_access_denied,
    is_not_found,
)
from mlops_runtime.adapters.sagemaker_endpoints import Boto3SageMakerEndpoints
from mlops_runtime.adapters.tracing import NEVER, entry_point
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.endpoint_teardown import TeardownSettings

# Listing races with deletions made elsewhere (an endpoint gone between ListEndpoints and ListTags).
LIST_ATTEMPTS = 3

logger = Logger()

sagemaker_endpoints = Lazy(Boto3SageMakerEndpoints)


class InvalidProperties(ValueError):
    """The custom resource's properties are unusable."""


class TeardownFailed(RuntimeError):
    """Endpoints could not be deleted; the message (shown by CloudFormation) says which and why."""


def read_settings(properties: Mapping[str, Any]) -> TeardownSettings:
    try:
        settings, unknown = TeardownSettings.from_properties(properties)
    except SettingsError as error:
        raise InvalidProperties(str(error)) from None
    if unknown:
        logger.warning("Unknown properties ignored", extra={"properties": unknown})
    return settings


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return on_event(event, sagemaker_endpoints(), default_scaling())


# Not traced: a custom resource runs twice per stack (deploy, destroy); its cold start stays without X-Ray.
handler = entry_point(_handler, logger, tracing=NEVER)


def on_event(event: Mapping[str, Any], endpoints: Any, scaling: EndpointScaling) -> dict[str, Any]:
    """The Provider framework's onEvent: ``{"PhysicalResourceId": ..., "Data": {...}}``."""
    request_type = event.get("RequestType")
    properties = event.get("ResourceProperties") or {}
    logger.append_keys(request_type=request_type, stack_id=event.get("StackId"))
    if request_type in {"Create", "Update"}:
        settings = read_settings(properties)  # invalid properties fail the deployment, not a later delete
        physical_id = event.get("PhysicalResourceId") if request_type == "Update" else None
        logger.info("Nothing to do", extra={"delete_on_destroy": settings.delete_on_destroy})
        return {"PhysicalResourceId": physical_id or settings.physical_id}
    if request_type != "Delete":
        raise InvalidProperties(f"unknown RequestType {request_type!r}")

    physical_id = event.get("PhysicalResourceId")
    try:
        settings = read_settings(properties)
    except InvalidProperties as error:
        logger.error("Invalid properties: nothing deleted", extra={"reason": str(error)})
        return {"PhysicalResourceId": physical_id or "endpoint-teardown:invalid"}
    physical_id = physical_id or settings.physical_id
    if not settings.delete_on_destroy:
        logger.info(
            "DeleteOnDestroy is false: endpoints are retained", extra={"tags": settings.required_tags}
        )
        return {"PhysicalResourceId": physical_id, "Data": {"DeletedEndpoints": ""}}
    deleted = teardown(settings.required_tags, endpoints, scaling)
    return {"PhysicalResourceId": physical_id, "Data": {"DeletedEndpoints": ",".join(deleted)}}


def teardown(required_tags: Mapping[str, str], endpoints: Any, scaling: EndpointScaling) -> list[str]:
    """Delete every managed endpoint carrying ``required_tags`` with its autoscaling, configs and models.

    Returns the endpoints dealt with. Raises :class:`TeardownFailed` on AccessDenied (at once) or,
    after trying every endpoint, when some could not be deleted.
    """
    names = _managed_endpoints(endpoints, required_tags)
    logger.info("Endpoints to delete", extra={"endpoints": names, "tags": dict(required_tags)})
    done, failures = [], []
    for name in names:
        try:
            deregistered, deleted = _delete_one(name, endpoints, scaling)
        except Exception as error:
            code = error_code(error)
            if code is None:
                raise  # a bug, not an AWS answer
            if is_access_denied(error):
                raise TeardownFailed(_access_denied(name, error, names, done)) from error
            if is_not_found(error):
                logger.info("Endpoint already gone", extra={"endpoint": name})
                done.append(name)
                continue
            logger.error("Could not delete the endpoint", extra={"endpoint": name, "error": error_text(error)})
            failures.append(f"{name} ({error_text(error)})")
            continue
        logger.info(
            "Deleted endpoint resources",
            extra={"endpoint": name, "scalable_targets": deregistered, **deleted},
        )
        done.append(name)
    if failures:
        raise TeardownFailed(
            f"could not delete {len(failures)} endpoint(s): {'; '.join(failures)}. Deleted: "
            f"{', '.join(done) or 'none'}. Delete the stack again to retry, or delete them by hand "
            "(aws sagemaker delete-endpoint --endpoint-name <name>)."
        )
    return done


def _delete_one(
    name: str, endpoints: Any, scaling: EndpointScaling
) -> tuple[list[str], dict[str, list[str]]]:
    """Autoscaling first (SageMaker asks for it before a delete), then the endpoint, configs, models.

    A resource that vanishes between a list and a call (deleted elsewhere) raises not-found from the
    middle of a listing: the deletion is tried once more from a fresh listing.
    """
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            deregistered = scaling.suspend_scaling(name)
            return deregistered, endpoints.delete_endpoint_resources(name)
        except Exception as error:
            if not is_not_found(error) or attempt == LIST_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _managed_endpoints(endpoints: Any, required_tags: Mapping[str, str]) -> list[str]:
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            return list(endpoints.managed_endpoints(dict(required_tags)))
        except Exception as error:
            if is_access_denied(error):
                raise TeardownFailed(_access_denied(None, error, [], [])) from error
            if not is_not_found(error) or attempt == LIST_ATTEMPTS:
                raise
            logger.info(
                "An endpoint vanished while listing; listing again", extra={"error": error_text(error)}
            )
    return []  # unreachable


def _access_denied(endpoint: str | None, error: BaseException, names: list[str], done: list[str]) -> str:
    operation = getattr(error, "operation_name", None) or "an AWS call"
    where = f"deleting endpoint {endpoint}" if endpoint else "listing the endpoints to delete"
    left = [name for name in names if name not in done]
    return (
        f"access denied on {operation} while {where}: {error_message(error)}. The teardown function's "
        "role needs the SageMaker list/delete and Application Auto Scaling permissions of the endpoint "
        f"teardown. Endpoints not deleted: {', '.join(left) or 'unknown'}. Fix the role (or delete the "
        "endpoints by hand), then delete the stack again."
    )
