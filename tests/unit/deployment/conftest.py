"""Fixtures of the deployer tests (the builders live in ``deployment_fixtures``)."""

from __future__ import annotations

import pytest
from deployment_fixtures import REGION, UpdateEndpointStub, make_spec
from mlops_runtime.domain.deployment import EndpointSpec


@pytest.fixture
def realtime_spec() -> EndpointSpec:
    """A realtime endpoint: champion on 2 x ml.m5.large, challenger at 10%, CANARY guardrails, capture."""
    return make_spec()


class Clients:
    """boto3 clients built once per session: loading the sagemaker API model costs ~0.5 s per client.

    moto intercepts requests through botocore's event system, so a client made once serves every
    test's own ``mock_aws()`` (each starts with empty backends).
    """

    def __init__(self) -> None:
        self._clients: dict = {}

    def __call__(self, service: str):
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session(region_name=REGION).client(service)
        return self._clients[service]


@pytest.fixture(scope="session")
def clients() -> Clients:
    return Clients()


@pytest.fixture
def aws(clients):
    """Fresh moto backends for the test; ``aws("sagemaker")`` is the shared client."""
    from moto import mock_aws

    with mock_aws():
        yield clients


@pytest.fixture
def update_endpoint(aws):
    """Answer UpdateEndpoint on the shared sagemaker client for this test: ``update_endpoint(busy=False)``."""
    stubs = []

    def install(busy: bool = False) -> UpdateEndpointStub:
        for stub in stubs:
            stub.remove()
        stubs.append(UpdateEndpointStub(aws("sagemaker"), busy=busy))
        return stubs[-1]

    yield install
    for stub in stubs:
        stub.remove()
