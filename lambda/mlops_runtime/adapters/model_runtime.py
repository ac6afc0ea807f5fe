"""SageMaker adapters of the inference API and the experiment controller.

- :class:`Boto3ModelRuntime`: ``sagemaker-runtime.InvokeEndpoint`` with ``TargetVariant``,
  ``InferenceId``, ``ContentType`` and ``Accept``; botocore errors become the exceptions below, so
  the handler maps them to HTTP statuses without knowing botocore.
- :class:`Boto3EndpointControl`: ``DescribeEndpoint``, ``UpdateEndpointWeightsAndCapacities``, the
  lookup of the model package behind a variant and ``UpdateModelPackage`` (the winner's note).

boto3 is imported only when a client is first needed, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlops_runtime.settings.experiments import ExperimentSettings

MODEL_PACKAGE_TAG = "mlops:model-package-arn"
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "ModelNotReadyException"}
)
UNAVAILABLE_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "InternalDependencyException"})


class ModelInvocationError(Exception):
    """InvokeEndpoint failed; ``message`` is safe to show to the caller."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ModelError(ModelInvocationError):
    """The model container answered with an error (``ModelError``): ``message`` is the model's own."""

    def __init__(self, message: str, original_status: int | None = None) -> None:
        super().__init__(message, "ModelError")
        self.original_status = original_status


class ModelThrottled(ModelInvocationError):
    """Throttled (``ThrottlingException``, HTTP 429, ``ModelNotReadyException``): retry later."""


class UnknownModelEndpoint(ModelInvocationError):
    """SageMaker does not know the endpoint or the variant (``ValidationError`` "... not found")."""


class InvalidModelInput(ModelInvocationError):
    """Any other ``ValidationError``: the request (body, content type) was refused."""


class ModelUnavailable(ModelInvocationError):
    """SageMaker itself failed (``ServiceUnavailable``, ``InternalFailure``, ...) or an unknown code."""


@dataclass(frozen=True)
class InvocationResult:
    body: bytes
    content_type: str | None
    invoked_variant: str | None


class ModelRuntime(Protocol):
    def invoke(
        self,
        endpoint: str,
        variant: str | None,
        inference_id: str,
        content_type: str,
        body: bytes,
        accept: str | None = None,
    ) -> InvocationResult: ...


def _error_fields(error: BaseException) -> tuple[str | None, str, int | None, dict]:
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None, str(error), None, {}
    err = response.get("Error", {}) or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return err.get("Code"), str(err.get("Message", "")), status, dict(response)


def translate_invoke_error(error: BaseException) -> ModelInvocationError:
    """The :class:`ModelInvocationError` of a botocore ``ClientError`` from InvokeEndpoint."""
    code, message, status, response = _error_fields(error)
    if code == "ModelError":
        original = response.get("OriginalMessage") or message
        original_status = response.get("OriginalStatusCode")
        return ModelError(str(original), original_status if isinstance(original_status, int) else None)
    if code in THROTTLING_CODES or status == 429:
        return ModelThrottled(message or "throttled", code)
    if code in ("ValidationError", "ValidationException"):
        lowered = message.lower()
        if "not found" in lowered or "could not find" in lowered or "does not exist" in lowered:
            return UnknownModelEndpoint(message, code)
        return InvalidModelInput(message, code)
    return ModelUnavailable(message or repr(error), code)


def _client(service: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(**config))


class Boto3ModelRuntime:
    """:class:`ModelRuntime` over ``sagemaker-runtime`` (client created lazily, or injected)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            # Two attempts in all: the caller (an API client) retries 429s itself; timeouts under
            # API Gateway's 29 s integration limit.
            self._client = _client(
                "sagemaker-runtime",
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=2,
                read_timeout=25,
            )
        return self._client

    def invoke(
        self,
        endpoint: str,
        variant: str | None,
        inference_id: str,
        content_type: str,
        body: bytes,
        accept: str | None = None,
    ) -> InvocationResult:
        from botocore.exceptions import ClientError

        request: dict[str, Any] = {
            "EndpointName": endpoint,
            "InferenceId": inference_id,
            "ContentType": content_type,
            "Body": body,
        }
        if variant:
            request["TargetVariant"] = variant
        if accept:
            request["Accept"] = accept
        try:
            response = self.client.invoke_endpoint(**request)
        except ClientError as error:
            raise translate_invoke_error(error) from error
        payload = response["Body"]
        data = payload.read() if hasattr(payload, "read") else payload
        if isinstance(data, str):
            data = data.encode("utf-8")
        return InvocationResult(data, response.get("ContentType"), response.get("InvokedProductionVariant"))


# --- Endpoint control (the controller) ------------------------------------------------------------


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    status: str
    config_name: str | None
    variant_weights: dict[str, float] = field(default_factory=dict)

    @property
    def in_service(self) -> bool:
        return self.status == "InService"


class EndpointControl(Protocol):
    def describe_endpoint(self, endpoint: str) -> EndpointInfo: ...

    def update_weights(self, endpoint: str, weights: Mapping[str, float]) -> None: ...

    def find_model_package_arn(self, endpoint: str, variant: str) -> str | None: ...

    def annotate_model_package(self, model_package_arn: str, properties: Mapping[str, str]) -> None: ...


def deployed_packages(config: ExperimentSettings, control: EndpointControl) -> dict[str, str | None]:
    """Arm -> model package ARN deployed behind it (configured, else looked up on the endpoint;
    ``None`` when the lookup fails, logged). Looked up once per deployment: the controller keeps it
    in the state and the inference API stores it with every prediction."""
    packages: dict[str, str | None] = {}
    for arm, target in config.arms.items():
        package = target.model_package_arn
        if not package:
            try:
                package = control.find_model_package_arn(target.endpoint, target.variant)
            except Exception:
                logging.getLogger(__name__).exception("Could not look the arm's model package up: %s", arm)
                package = None
        packages[arm] = package
    return packages


class Boto3EndpointControl:
    """:class:`EndpointControl` over the ``sagemaker`` client (created lazily, or injected)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client("sagemaker", retries={"mode": "standard", "max_attempts": 5})
        return self._client

    def describe_endpoint(self, endpoint: str) -> EndpointInfo:
        response = self.client.describe_endpoint(EndpointName=endpoint)
        weights = {
            variant["VariantName"]: float(variant.get("CurrentWeight", variant.get("DesiredWeight", 0.0)) or 0.0)
            for variant in response.get("ProductionVariants", []) or []
        }
        return EndpointInfo(endpoint, response.get("EndpointStatus", "Unknown"), response.get("EndpointConfigName"), weights)

    def update_weights(self, endpoint: str, weights: Mapping[str, float]) -> None:
        self.client.update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[
                {"VariantName": variant, "DesiredWeight": float(weight)} for variant, weight in weights.items()
            ],
        )

    def find_model_package_arn(self, endpoint: str, variant: str) -> str | None:
        """The package behind ``variant``: the model's ``ModelPackageName`` or its ``mlops:model-package-arn``
        tag. ``None`` when nothing names one (or a lookup fails: the caller skips the note)."""
        from botocore.exceptions import ClientError

        try:
            config_name = self.client.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
            config = self.client.describe_endpoint_config(EndpointConfigName=config_name)
            model_name = next(
                (v.get("ModelName") for v in config.get("ProductionVariants", []) if v.get("VariantName") == variant),
                None,
            )
            if not model_name:
                return None
            model = self.client.describe_model(ModelName=model_name)
            containers = [model.get("PrimaryContainer") or {}] + list(model.get("Containers") or [])
            for container in containers:
                package = container.get("ModelPackageName")
                if isinstance(package, str) and package.startswith("arn:"):
                    return package
            tags = self.client.list_tags(ResourceArn=model["ModelArn"]).get("Tags", [])
            return next((t["Value"] for t in tags if t.get("Key") == MODEL_PACKAGE_TAG and t.get("Value")), None)
        except (ClientError, KeyError):
            return None

    def annotate_model_package(self, model_package_arn: str, properties: Mapping[str, str]) -> None:
        self.client.update_model_package(
            ModelPackageArn=model_package_arn,
            CustomerMetadataProperties={str(k): str(v) for k, v in properties.items()},
        )
