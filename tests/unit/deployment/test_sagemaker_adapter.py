"""Boto3SageMakerEndpoints against moto (UpdateEndpoint, which moto lacks, answered by a botocore hook)
and against botocore Stubbers: every guarded UpdateEndpoint checked against the SageMaker service model."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from deployment_fixtures import (
    ENDPOINT,
    GROUP,
    NOW,
    REGION,
    make_spec,
    moto_sagemaker_backend,
    register_package,
)
from mlops_runtime.adapters.sagemaker_endpoints import AppliedCall, Boto3SageMakerEndpoints
from mlops_runtime.domain.deployment import (
    ACTION_ADD_CHALLENGER,
    ACTION_REPLACE_CHALLENGER,
    CHALLENGER,
    CHAMPION,
    ApiCall,
    DeploymentPlan,
    EndpointBusy,
    plan_deployment,
)


@pytest.fixture
def sagemaker(aws):
    return aws("sagemaker")


@pytest.fixture
def endpoints(sagemaker):
    return Boto3SageMakerEndpoints(sagemaker)


def deploy(endpoints, arn, spec):
    """Plan and apply the deployment of ``arn`` the way the handler does; the plan and what was done."""
    package = endpoints.describe_model_package(arn)
    plan = plan_deployment(endpoints.describe_endpoint_state(spec.name), package, spec, NOW)
    return plan, endpoints.apply(plan)


def test_missing_endpoint_has_no_state(endpoints):
    assert endpoints.describe_endpoint_state("nope") is None


def test_describe_model_package(endpoints, sagemaker):
    arn = register_package(sagemaker)
    package = endpoints.describe_model_package(arn)
    assert (package.arn, package.group, package.version, package.approval_status) == (
        arn,
        GROUP,
        1,
        "Approved",
    )
    assert package.supported_realtime_instance_types == ("ml.m5.large", "ml.m5.xlarge")


def test_new_endpoint_then_state(endpoints, sagemaker):
    spec = make_spec()
    arn = register_package(sagemaker)
    plan, applied = deploy(endpoints, arn, spec)
    assert [call.outcome for call in applied] == ["created", "created", "called"]
    state = endpoints.describe_endpoint_state(ENDPOINT)
    assert state.status == "InService" and state.managed and state.config_name == plan.new_config_name
    champion = state.variant(CHAMPION)
    assert champion.model_package_arn == arn  # from the model's tag
    assert (champion.instance_type, champion.instance_count, champion.weight) == ("ml.m5.large", 2, 1.0)
    described = sagemaker.describe_endpoint_config(EndpointConfigName=plan.new_config_name)
    assert described["DataCaptureConfig"]["InitialSamplingPercentage"] == 20


def test_applying_a_plan_twice_creates_nothing_new(endpoints, sagemaker):
    spec = make_spec()
    arn = register_package(sagemaker)
    plan, _ = deploy(endpoints, arn, spec)
    models = sagemaker.list_models()["Models"]
    without_endpoint = DeploymentPlan(**{**plan.__dict__, "calls": plan.calls[:2]})
    assert [call.outcome for call in endpoints.apply(without_endpoint)] == ["exists", "exists"]
    assert sagemaker.list_models()["Models"] == models


def test_champion_then_challenger_then_newer_challenger(endpoints, sagemaker, update_endpoint):
    spec = make_spec()
    stub = update_endpoint()
    v1, v2, v3 = (register_package(sagemaker) for _ in range(3))
    deploy(endpoints, v1, spec)

    plan, applied = deploy(endpoints, v2, spec)
    assert plan.action == ACTION_ADD_CHALLENGER
    assert applied[-1] == AppliedCall("UpdateEndpoint", ENDPOINT, "called")
    assert stub.calls == [{"EndpointName": ENDPOINT, "EndpointConfigName": plan.new_config_name}]
    state = endpoints.describe_endpoint_state(ENDPOINT)
    assert {v.name: (v.model_package_arn, v.weight) for v in state.variants} == {
        CHAMPION: (v1, 0.9),
        CHALLENGER: (v2, 0.1),
    }

    plan, _ = deploy(endpoints, v3, spec)
    assert plan.action == ACTION_REPLACE_CHALLENGER
    assert (
        stub.calls[-1]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"]
        == "CANARY"
    )
    assert {v.name: v.model_package_arn for v in endpoints.describe_endpoint_state(ENDPOINT).variants} == {
        CHAMPION: v1,
        CHALLENGER: v3,
    }


def test_update_refused_because_the_endpoint_is_updating(endpoints, sagemaker, update_endpoint):
    spec = make_spec()
    v1, v2 = register_package(sagemaker), register_package(sagemaker)
    deploy(endpoints, v1, spec)
    update_endpoint(busy=True)
    with pytest.raises(EndpointBusy, match="UpdateEndpoint refused: Cannot update in-progress endpoint"):
        deploy(endpoints, v2, spec)


def test_a_model_deleted_by_hand_has_no_package(endpoints, sagemaker):
    spec = make_spec()
    plan, _ = deploy(endpoints, register_package(sagemaker), spec)
    sagemaker.delete_model(ModelName=plan.call("CreateModel").params["ModelName"])
    assert endpoints.describe_endpoint_state(ENDPOINT).variant(CHAMPION).model_package_arn is None


def test_the_client_is_created_lazily(aws):
    adapter = Boto3SageMakerEndpoints()
    assert adapter._client is None
    assert adapter.client is adapter.client
    assert adapter.client.meta.service_model.service_name == "sagemaker"


def stubbed(method: str, code: str, message: str) -> Boto3SageMakerEndpoints:
    client = boto3.client("sagemaker", region_name=REGION)  # its own client: a Stubber takes every call
    stubber = Stubber(client)
    stubber.add_client_error(method, service_error_code=code, service_message=message, http_status_code=400)
    stubber.activate()
    return Boto3SageMakerEndpoints(client)


def test_create_endpoint_that_already_exists_is_busy():
    adapter = stubbed(
        "create_endpoint", "ValidationException", 'Cannot create already existing endpoint "x".'
    )
    plan = DeploymentPlan(
        "x",
        "p",
        "create-endpoint",
        "r",
        (ApiCall("CreateEndpoint", {"EndpointName": "x", "EndpointConfigName": "c"}),),
    )
    with pytest.raises(EndpointBusy):
        adapter.apply(plan)


def test_other_errors_propagate():
    from botocore.exceptions import ClientError

    adapter = stubbed("describe_endpoint", "AccessDeniedException", "no")
    with pytest.raises(ClientError, match="AccessDeniedException"):
        adapter.describe_endpoint_state("x")
    adapter = stubbed("update_endpoint", "ValidationException", "Could not find endpoint config")
    plan = DeploymentPlan(
        "x",
        "p",
        "replace-champion",
        "r",
        (ApiCall("UpdateEndpoint", {"EndpointName": "x", "EndpointConfigName": "c"}),),
    )
    with pytest.raises(ClientError, match="Could not find endpoint config"):
        adapter.apply(plan)
    with pytest.raises(ValueError, match="unsupported operation"):
        Boto3SageMakerEndpoints(object()).apply(
            DeploymentPlan("x", "p", "a", "r", (ApiCall("DeleteEndpoint", {}),))
        )


def test_teardown_deletes_only_what_the_deployer_made_for_the_stack(endpoints, sagemaker, update_endpoint):
    update_endpoint()
    mine = make_spec()
    other_stack = make_spec(name="mlops-dev-other", tags={"mlops:stack": "another-stack"})
    v1, v2 = register_package(sagemaker), register_package(sagemaker)
    deploy(endpoints, v1, mine)
    deploy(endpoints, v2, mine)
    deploy(endpoints, v1, other_stack)
    # Made by hand: never touched.
    sagemaker.create_model(
        ModelName="by-hand", ExecutionRoleArn=mine.execution_role_arn, PrimaryContainer={"Image": "x"}
    )

    assert endpoints.managed_endpoints({"mlops:stack": "dev-deployment"}) == [ENDPOINT]
    assert endpoints.managed_endpoints() == ["mlops-dev-churn", "mlops-dev-other"]
    deleted = endpoints.delete_endpoint_resources(ENDPOINT)
    assert deleted["endpoints"] == [ENDPOINT]
    assert len(deleted["endpoint_configs"]) == 2 and len(deleted["models"]) == 2
    assert endpoints.describe_endpoint_state(ENDPOINT) is None
    remaining = {model["ModelName"] for model in sagemaker.list_models()["Models"]}
    assert "by-hand" in remaining and len(remaining) == 2
    assert endpoints.describe_endpoint_state("mlops-dev-other") is not None
    assert endpoints.delete_endpoint_resources(ENDPOINT) == {
        "endpoints": [],
        "endpoint_configs": [],
        "models": [],
    }


def test_moto_backend_helper_sees_the_endpoint(endpoints, sagemaker):
    deploy(endpoints, register_package(sagemaker), make_spec())
    assert moto_sagemaker_backend().endpoints[ENDPOINT].endpoint_status == "InService"


# --- UpdateEndpoint against botocore's SageMaker model (moto's stand-in answers it by hand) -----

from deployment_fixtures import make_package, make_state  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mlops_runtime.domain.deployment import InvalidEndpointSpec  # noqa: E402


def beyond_the_model(shape, value, path="") -> list[str]:
    """Values outside the ``min``/``max`` the service model documents (botocore checks only ``min``)."""
    problems = []
    if shape.type_name == "structure":
        for name, member in value.items():
            problems += beyond_the_model(shape.members[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        problems += [f"{path}: {len(value)} items" for bound in ("max",) if bound in shape.metadata
                     and len(value) > shape.metadata[bound]]
        for index, item in enumerate(value):
            problems += beyond_the_model(shape.member, item, f"{path}[{index}]")
    elif shape.type_name in ("integer", "long", "float", "double") and "max" in shape.metadata:
        if value > shape.metadata["max"]:
            problems.append(f"{path}: {value} > {shape.metadata['max']}")
    elif shape.type_name == "string" and "max" in shape.metadata and len(value) > shape.metadata["max"]:
        problems.append(f"{path}: {len(value)} characters > {shape.metadata['max']}")
    return problems


@pytest.fixture(scope="module")
def stubbed_sagemaker():
    return boto3.session.Session(region_name=REGION).client("sagemaker")


guardrails = st.builds(
    lambda mode, canary, linear, wait, termination, timeout, alarms: {
        "mode": mode, "wait_interval_s": wait, "termination_wait_s": termination, "alarm_names": alarms,
        **({"canary_size_percent": canary} if mode == "CANARY" else {}),
        **({"linear_step_percent": linear} if mode == "LINEAR" else {}),
        **({"max_execution_timeout_s": timeout} if timeout is not None else {})},
    st.sampled_from(["ALL_AT_ONCE", "CANARY", "LINEAR"]), st.integers(0, 60), st.integers(0, 60),
    st.integers(0, 4000), st.integers(0, 4000), st.none() | st.integers(500, 30000),
    st.lists(st.text("abc-", min_size=1, max_size=300), max_size=11, unique=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guardrails)
def test_every_guarded_update_the_planner_accepts_is_one_the_sagemaker_model_accepts(stubbed_sagemaker, guardrail):
    """Any guardrail the spec accepts gives an UpdateEndpoint request that botocore validates and
    that stays inside the ranges the model documents; the adapter applies it through a Stubber
    answering with the model's output shapes (CreateModel, CreateEndpointConfig, UpdateEndpoint)."""
    try:
        spec = make_spec(guardrails=guardrail, challenger_initial_weight=None)  # a new champion replaces the old
    except InvalidEndpointSpec:
        return
    plan = plan_deployment(make_state(champion=1), make_package(2), spec, NOW)
    *creates, update = plan.calls
    assert update.operation == "UpdateEndpoint" and "DeploymentConfig" in update.params
    model = stubbed_sagemaker.meta.service_model.operation_model("UpdateEndpoint").input_shape
    assert beyond_the_model(model, update.params) == []
    arn = f"arn:aws:sagemaker:{REGION}:123456789012"
    with Stubber(stubbed_sagemaker) as stubber:
        for call in creates:
            kind, name_key = ("model", "ModelName") if call.operation == "CreateModel" else ("endpoint_config", "EndpointConfigName")
            stubber.add_client_error(f"describe_{kind}", "ValidationException", f"Could not find {kind} x.",
                                     expected_params={name_key: call.params[name_key]})
            output = {"ModelArn": f"{arn}:model/x"} if kind == "model" else {"EndpointConfigArn": f"{arn}:endpoint-config/x"}
            stubber.add_response(f"create_{kind}", output, call.params)
        stubber.add_response("update_endpoint", {"EndpointArn": f"{arn}:endpoint/{ENDPOINT}"}, update.params)
        applied = Boto3SageMakerEndpoints(stubbed_sagemaker).apply(plan)
        stubber.assert_no_pending_responses()
    assert [a.outcome for a in applied] == ["created", "created", "called"]


def test_a_wait_longer_than_the_model_allows_is_caught(stubbed_sagemaker):
    model = stubbed_sagemaker.meta.service_model.operation_model("UpdateEndpoint").input_shape
    too_long = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 3601}}}
    assert beyond_the_model(model, {"EndpointName": "x", "EndpointConfigName": "y", "DeploymentConfig": too_long}) == [
        ".DeploymentConfig.BlueGreenUpdatePolicy.TrafficRoutingConfiguration.WaitIntervalInSeconds: 3601 > 3600"]
