"""Multi-GPU serving: the layout rule of the instance table, and the model definition the deployer
writes for it (the variables the serving container reads)."""

from __future__ import annotations

import dataclasses

import pytest
from deployment_fixtures import NOW, make_package, make_spec
from hypothesis import given
from hypothesis import strategies as st

from mlops_runtime.domain.deployment import (
    CannotPlan,
    EndpointSpec,
    InvalidEndpointSpec,
    PackageContainer,
    plan_deployment,
)
from mlops_runtime.domain.instance_types import (
    INSTANCE_TYPES,
    SPLIT_MODEL,
    USABLE_GPU_MEMORY,
    WORKER_PER_GPU,
    gpu_layout_problem,
    gpu_model_server_workers,
)

GPU_TYPES = sorted(name for name, entry in INSTANCE_TYPES.items() if entry.has_gpu)
G5_12XL = {"kind": "realtime", "instance_type": "ml.g5.12xlarge", "initial_instance_count": 2}


@pytest.mark.parametrize(
    ("family", "gib"), [("g4dn", 16), ("g5", 24), ("g6", 24), ("p3", 16), ("p4d", 40), ("p5", 80)]
)
def test_memory_per_gpu_of_each_family(family, gib):
    entries = [entry for entry in INSTANCE_TYPES.values() if entry.family == family]
    assert entries and {entry.gpu_memory_gib for entry in entries} == {gib}
    assert all(entry.total_gpu_memory_gib == entry.gpus * gib for entry in entries)


def test_cpu_and_neuron_types_have_no_gpu_memory():
    assert all(entry.gpu_memory_gib == 0 for entry in INSTANCE_TYPES.values() if not entry.has_gpu)


@given(name=st.sampled_from(GPU_TYPES), memory=st.floats(min_value=0.1, max_value=1000))
def test_the_layout_rule(name, memory):
    """worker_per_gpu: one copy fits one GPU; split_model: at least two GPUs, too big for one, fits all."""
    entry = INSTANCE_TYPES[name]
    per_gpu = entry.gpu_memory_gib * USABLE_GPU_MEMORY
    assert (gpu_layout_problem(name, WORKER_PER_GPU, memory) is None) == (memory <= per_gpu)
    splits = entry.gpus >= 2 and per_gpu < memory <= per_gpu * entry.gpus
    assert (gpu_layout_problem(name, SPLIT_MODEL, memory) is None) == splits


@pytest.mark.parametrize(
    ("name", "layout", "memory", "problem"),
    [
        ("ml.m5.xlarge", WORKER_PER_GPU, 1, "ml.m5.xlarge has no GPU"),
        ("ml.inf2.24xlarge", WORKER_PER_GPU, 1, "has no GPU"),
        ("ml.g5.12xlarge", WORKER_PER_GPU, 30, "30 GiB does not fit one NVIDIA A10G of ml.g5.12xlarge"),
        ("ml.g5.xlarge", SPLIT_MODEL, 30, "needs at least 2 GPUs; ml.g5.xlarge has 1"),
        ("ml.g5.12xlarge", SPLIT_MODEL, 4, "use worker_per_gpu, which serves 4 copies"),
        ("ml.g5.12xlarge", SPLIT_MODEL, 90, "does not fit the 4 GPUs of ml.g5.12xlarge together (86.4 GiB"),
        ("ml.g5.12xlarge", "tensor_parallel", 4, "unknown GPU layout"),
    ],
)
def test_problems_name_the_rule(name, layout, memory, problem):
    assert problem in gpu_layout_problem(name, layout, memory)


def test_workers_per_layout():
    assert gpu_model_server_workers("ml.g5.12xlarge", WORKER_PER_GPU) == 4
    assert gpu_model_server_workers("ml.g5.48xlarge", WORKER_PER_GPU) == 8
    assert gpu_model_server_workers("ml.g5.12xlarge", SPLIT_MODEL) == 1


# --- the deployer's model definition ----------------------------------------------------------


def gpu_spec(layout: str = WORKER_PER_GPU, memory: float = 4, **overrides) -> EndpointSpec:
    return make_spec(variants={"champion": G5_12XL, **overrides.pop("variants", {})},
                     gpu_layout={"layout": layout, "model_memory_gib": memory}, **overrides)


def created_container(spec: EndpointSpec, package=None) -> dict:
    plan = plan_deployment(None, package or make_package(3), spec, NOW)
    return plan.call("CreateModel").params["PrimaryContainer"]


def test_worker_per_gpu_reaches_the_container_next_to_the_packages_variables():
    environment = created_container(gpu_spec())["Environment"]
    assert environment == {
        "SAGEMAKER_PROGRAM": "inference.py",  # the package's own
        "SAGEMAKER_MODEL_SERVER_WORKERS": "4",
        "MLOPS_GPU_LAYOUT": "worker_per_gpu",
        "MLOPS_GPU_DEVICES": "0,1,2,3",
    }


def test_split_model_runs_one_worker_over_every_gpu():
    environment = created_container(gpu_spec(SPLIT_MODEL, 40))["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert environment["MLOPS_GPU_LAYOUT"] == "split_model"
    assert environment["MLOPS_GPU_DEVICES"] == "0,1,2,3"


def test_the_layout_overrides_a_package_variable_of_the_same_name():
    package = make_package(3)
    container = dataclasses.replace(package.containers[0],
                                    environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "16", "A": "b"})
    environment = created_container(gpu_spec(), dataclasses.replace(package, containers=(container,)))["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "4" and environment["A"] == "b"


def test_without_a_layout_the_environment_is_the_packages():
    spec = make_spec(variants={"champion": G5_12XL})
    assert created_container(spec)["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}


def test_a_layout_change_creates_a_new_model():
    names = {plan_deployment(None, make_package(3), spec, NOW).call("CreateModel").params["ModelName"]
             for spec in (gpu_spec(), gpu_spec(SPLIT_MODEL, 40), make_spec(variants={"champion": G5_12XL}))}
    assert len(names) == 3


def test_multi_container_models_take_no_layout():
    package = make_package(3)
    package = dataclasses.replace(package, containers=(*package.containers,
                                                       PackageContainer(image=package.containers[0].image)))
    with pytest.raises(CannotPlan, match="a GPU layout describes the devices of single-container packages only"):
        plan_deployment(None, package, gpu_spec(), NOW)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": {"champion": {**G5_12XL, "instance_type": "ml.m5.large"}}}, "the champion: ml.m5.large has no GPU"),
        ({"variants": {"challenger": {**G5_12XL, "instance_type": "ml.g5.xlarge"}}},
         "must have the same number of GPUs"),
        ({"variants": {"challenger": {**G5_12XL, "instance_type": "ml.g4dn.12xlarge"}}, "memory": 20},
         "the challenger: 20 GiB does not fit one NVIDIA T4"),
    ],
)
def test_spec_checks_every_sizing_against_the_table(overrides, message):
    memory = overrides.pop("memory", 4)
    with pytest.raises(InvalidEndpointSpec, match=message):
        gpu_spec(memory=memory, **overrides)


def test_serverless_endpoints_take_no_layout():
    with pytest.raises(InvalidEndpointSpec, match="serverless endpoints have no GPUs"):
        make_spec(variants={"champion": {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}},
                  challenger_initial_weight=0, data_capture=None, guardrails={"mode": "ALL_AT_ONCE"},
                  gpu_layout={"layout": WORKER_PER_GPU, "model_memory_gib": 1})


def test_round_trip():
    spec = gpu_spec(SPLIT_MODEL, 40)
    assert EndpointSpec.from_dict(spec.to_dict()) == spec
