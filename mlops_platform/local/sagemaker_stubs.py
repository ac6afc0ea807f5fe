"""What moto's SageMaker lacks, answered on a boto3 client: the deployer tests and the lifecycle
simulation (``mlops_platform.local.lifecycle``) share it."""

from __future__ import annotations

import json
from typing import Any


class UpdateEndpointStub:
    """Answers ``UpdateEndpoint`` on a boto3 client under moto, which does not implement it.

    The real client method runs: botocore validates and serializes the request against the API
    model, then this ``before-call`` hook answers instead of sending it. The wire request is kept in
    ``calls`` and the update is applied to moto's endpoint (new config, its variants), so the next
    DescribeEndpoint sees the result as SageMaker would once the update finished. ``busy=True``
    answers like SageMaker for an endpoint already updating.
    """

    def __init__(self, client: Any, busy: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.busy = busy
        self._client = client
        client.meta.events.register("before-call.sagemaker.UpdateEndpoint", self._answer)

    def remove(self) -> None:
        self._client.meta.events.unregister("before-call.sagemaker.UpdateEndpoint", self._answer)

    def _answer(self, model: Any, params: dict, **kwargs: Any):
        from botocore.awsrequest import AWSResponse
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sagemaker.models import sagemaker_backends

        request = json.loads(params["body"])
        if self.busy:
            error = {
                "Error": {
                    "Code": "ValidationException",
                    "Message": f'Cannot update in-progress endpoint "{request["EndpointName"]}".',
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://sagemaker", 400, {}, None), error
        self.calls.append(request)
        backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][self._client.meta.region_name]
        endpoint = backend.endpoints[request["EndpointName"]]
        config = backend.endpoint_configs[request["EndpointConfigName"]]
        endpoint.endpoint_config_name = config.endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
        response = {"EndpointArn": endpoint.arn, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://sagemaker", 200, {}, None), response
