"""Fixtures of the deployer tests (the builders live in ``deployment_fixtures``)."""

from __future__ import annotations

import pytest
from deployment_fixtures import TABLE, REGION, Deployer, UpdateEndpointStub, configure_deployer, make_spec

from mlops_runtime.adapters.idempotency import once_per_event
from mlops_runtime.adapters.sagemaker_endpoints import Boto3SageMakerEndpoints
from mlops_runtime.domain.deployment import EndpointSpec
from mlops_runtime.handlers import deployer


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


@pytest.fixture
def lambda_env(aws, monkeypatch, update_endpoint):
    """A cold start of the deployer: environment set, caches empty, clients bound to moto."""
    dynamodb, sns, sqs = aws("dynamodb"), aws("sns"), aws("sqs")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic = sns.create_topic(Name="mlops-dev-deployments")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    configure_deployer(monkeypatch, notification_topic_arn=topic)
    deployer.sagemaker_endpoints.set(Boto3SageMakerEndpoints(aws("sagemaker")))
    deployer.sns.set(sns)
    deployer.deploy_once.set(once_per_event(deployer.deploy_event, table_name=TABLE, boto3_client=dynamodb))
    yield Deployer(aws, queue_url)
    for lazy in (deployer.settings, deployer.sagemaker_endpoints, deployer.sns, deployer.deploy_once):
        lazy.set(None)



@pytest.fixture
def stub(update_endpoint):
    return update_endpoint()
