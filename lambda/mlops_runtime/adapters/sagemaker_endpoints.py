"""SageMaker endpoints for the deployer: read an endpoint's state and a model package, apply a plan.

:class:`SageMakerEndpoints` is the interface the deployer handler uses; :class:`Boto3SageMakerEndpoints`
implements it over the ``sagemaker`` client, created on first use so that importing this module stays
cheap. Applying a plan is safe to repeat: models and endpoint configs that already exist (the names
are deterministic, see ``domain.deployment.resource_name``) are left as they are, and an update
refused because the endpoint is already updating becomes a retryable ``EndpointBusy``.

The teardown helpers (:meth:`Boto3SageMakerEndpoints.managed_endpoints`,
:meth:`Boto3SageMakerEndpoints.delete_endpoint_resources`) are for the stack's teardown custom
resource: CloudFormation does not own the endpoints, so deleting a dev stack has to delete them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_runtime.adapters.aws_errors import error_code, error_message, is_already_exists, is_not_found
from mlops_runtime.domain.deployment import (
    ENDPOINT_TAG,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    ApprovedPackage,
    DeploymentPlan,
    EndpointBusy,
    EndpointState,
    model_package_arn_of,
)


@dataclass(frozen=True)
class AppliedCall:
    """What applying one call of a plan did: ``created``, ``exists`` (left as it was) or ``called``."""

    operation: str
    name: str
    outcome: str

    def to_dict(self) -> dict[str, str]:
        return {"operation": self.operation, "name": self.name, "outcome": self.outcome}


class SageMakerEndpoints(Protocol):
    """What the deployer needs from SageMaker."""

    def describe_endpoint_state(self, endpoint_name: str) -> EndpointState | None:
        """The endpoint's state, or ``None`` when there is no such endpoint."""
        ...

    def describe_model_package(self, model_package_arn: str) -> ApprovedPackage:
        """The package; ``ValueError`` if it is not a deployable versioned package."""
        ...

    def apply(self, plan: DeploymentPlan) -> list[AppliedCall]:
        """Make the plan's calls in order; repeating an applied plan changes nothing."""
        ...


class Boto3SageMakerEndpoints:
    """:class:`SageMakerEndpoints` over boto3's ``sagemaker`` client (standard retry mode)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "sagemaker", config=Config(retries={"mode": "standard", "max_attempts": 5})
            )
        return self._client

    # -- reading
    def describe_endpoint_state(self, endpoint_name: str) -> EndpointState | None:
        from botocore.exceptions import ClientError

        client = self.client
        try:
            endpoint = client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        packages: dict[str, str | None] = {}
        for variant in (*config.get("ProductionVariants", ()), *config.get("ShadowProductionVariants", ())):
            model_name = variant.get("ModelName")
            if model_name and model_name not in packages:
                packages[model_name] = self._model_package_arn(model_name)
        return EndpointState.from_descriptions(
            endpoint, config, packages, self._tags(endpoint["EndpointArn"])
        )

    def _model_package_arn(self, model_name: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            model = self.client.describe_model(ModelName=model_name)
        except ClientError as error:
            if is_not_found(error):  # deleted by hand: the variant still runs, its package is unknown
                return None
            raise
        return model_package_arn_of(model, self._tags(model["ModelArn"]))

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        request: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = self.client.list_tags(**request)
            tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", ())})
            if not page.get("NextToken"):
                return tags
            request["NextToken"] = page["NextToken"]

    def describe_model_package(self, model_package_arn: str) -> ApprovedPackage:
        response = self.client.describe_model_package(ModelPackageName=model_package_arn)
        return ApprovedPackage.from_describe_response(response)

    # -- writing
    def apply(self, plan: DeploymentPlan) -> list[AppliedCall]:
        applied = []
        for call in plan.calls:
            params = dict(call.params)
            if call.operation == "CreateModel":
                applied.append(self._create_if_absent(call.operation, params, "ModelName", "describe_model"))
            elif call.operation == "CreateEndpointConfig":
                applied.append(
                    self._create_if_absent(
                        call.operation, params, "EndpointConfigName", "describe_endpoint_config"
                    )
                )
            elif call.operation == "CreateEndpoint":
                applied.append(self._endpoint_call(plan, "create_endpoint", call.operation, params))
            elif call.operation == "UpdateEndpoint":
                applied.append(self._endpoint_call(plan, "update_endpoint", call.operation, params))
            else:
                raise ValueError(f"unsupported operation in plan: {call.operation}")
        return applied

    def _create_if_absent(self, operation: str, params: dict, name_key: str, describe: str) -> AppliedCall:
        from botocore.exceptions import ClientError

        name = params[name_key]
        try:
            getattr(self.client, describe)(**{name_key: name})
            return AppliedCall(operation, name, "exists")
        except ClientError as error:
            if not is_not_found(error):
                raise
        create = "create_model" if operation == "CreateModel" else "create_endpoint_config"
        try:
            getattr(self.client, create)(**params)
        except ClientError as error:
            if is_already_exists(error):  # created concurrently by a duplicate delivery
                return AppliedCall(operation, name, "exists")
            raise
        return AppliedCall(operation, name, "created")

    def _endpoint_call(self, plan: DeploymentPlan, method: str, operation: str, params: dict) -> AppliedCall:
        from botocore.exceptions import ClientError

        try:
            getattr(self.client, method)(**params)
        except ClientError as error:
            message = error_message(error)
            lowered = message.lower()
            # "Cannot update in-progress endpoint ..." / "Cannot create already existing endpoint ...":
            # another update (or a duplicate delivery) got there first; the retry re-plans from the new state.
            if error_code(error) == "ValidationException" and (
                "in-progress" in lowered or "already existing" in lowered
            ):
                raise EndpointBusy(plan.endpoint_name, f"{operation} refused: {message}") from error
            raise
        return AppliedCall(operation, params["EndpointName"], "called")

    # -- teardown
    def managed_endpoints(self, required_tags: Mapping[str, str] | None = None) -> list[str]:
        """Names of the endpoints the deployer created that carry ``required_tags`` (e.g. the stack's)."""
        wanted = {MANAGED_BY_TAG: MANAGED_BY_VALUE, **(required_tags or {})}
        names = []
        for endpoint in self._pages("list_endpoints", "Endpoints"):
            tags = self._tags(endpoint["EndpointArn"])
            if all(tags.get(key) == value for key, value in wanted.items()):
                names.append(endpoint["EndpointName"])
        return sorted(names)

    def delete_endpoint_resources(self, endpoint_name: str) -> dict[str, list[str]]:
        """Delete the endpoint and every endpoint config and model the deployer made for it.

        Configs and models are found by the deployer's ``mlops:endpoint`` tag, so resources of other
        endpoints (or made by hand) are left alone. Missing resources are skipped: safe to repeat.
        """
        from botocore.exceptions import ClientError

        deleted: dict[str, list[str]] = {"endpoints": [], "endpoint_configs": [], "models": []}
        try:
            self.client.delete_endpoint(EndpointName=endpoint_name)
            deleted["endpoints"].append(endpoint_name)
        except ClientError as error:
            if not is_not_found(error):
                raise
        for key, lister, items, name_key, arn_key, deleter in (
            (
                "endpoint_configs",
                "list_endpoint_configs",
                "EndpointConfigs",
                "EndpointConfigName",
                "EndpointConfigArn",
                "delete_endpoint_config",
            ),
            ("models", "list_models", "Models", "ModelName", "ModelArn", "delete_model"),
        ):
            for item in self._pages(lister, items):
                tags = self._tags(item[arn_key])
                if tags.get(MANAGED_BY_TAG) != MANAGED_BY_VALUE or tags.get(ENDPOINT_TAG) != endpoint_name:
                    continue
                try:
                    getattr(self.client, deleter)(**{name_key: item[name_key]})
                    deleted[key].append(item[name_key])
                except ClientError as error:
                    if not is_not_found(error):
                        raise
        return deleted

    def _pages(self, method: str, key: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {}
        while True:
            page = getattr(self.client, method)(**request)
            yield from page.get(key, ())
            if not page.get("NextToken"):
                return
            request["NextToken"] = page["NextToken"]
