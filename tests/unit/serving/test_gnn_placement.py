"""The GNN container's worker and GPU placement (stdlib only, no torch): what it makes of the
variables the deployer writes on the model, and how gunicorn's workers keep their GPUs."""

from __future__ import annotations

import pytest
from gnn_support import SERVING_DIR, load
from hypothesis import given
from hypothesis import strategies as st

from mlops_runtime.domain.deployment import GpuLayoutSpec
from mlops_runtime.domain.instance_types import INSTANCE_TYPES

placement = load(SERVING_DIR, "placement")
MULTI_GPU = sorted(name for name, entry in INSTANCE_TYPES.items() if entry.gpus >= 2)


@pytest.mark.parametrize("instance_type", MULTI_GPU)
def test_worker_per_gpu_from_the_deployer_pins_each_worker_to_its_own_gpu(instance_type):
    gpus = INSTANCE_TYPES[instance_type].gpus
    spec = GpuLayoutSpec(layout="worker_per_gpu", model_memory_gib=1)
    layout = placement.Layout.from_env(spec.environment(instance_type))
    assert layout.workers == gpus
    assert [layout.visible_devices(slot) for slot in range(gpus)] == [str(i) for i in range(gpus)]


@pytest.mark.parametrize("instance_type", MULTI_GPU)
def test_split_model_from_the_deployer_runs_one_worker_seeing_every_gpu(instance_type):
    gpus = INSTANCE_TYPES[instance_type].gpus
    spec = GpuLayoutSpec(layout="split_model", model_memory_gib=1)
    layout = placement.Layout.from_env(spec.environment(instance_type))
    assert layout.workers == 1
    assert layout.visible_devices(0) == ",".join(str(i) for i in range(gpus))


def test_without_the_variables_one_cpu_worker_and_no_pinning():
    layout = placement.Layout.from_env({})
    assert layout == placement.Layout(workers=1, layout=None, devices=())
    assert layout.visible_devices(0) is None


def test_more_workers_than_gpus_share_them_round_robin():
    layout = placement.Layout.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "4", "MLOPS_GPU_LAYOUT": "worker_per_gpu",
                                        "MLOPS_GPU_DEVICES": "0,1"})
    assert [layout.visible_devices(slot) for slot in range(4)] == ["0", "1", "0", "1"]


@pytest.mark.parametrize("env", [{"MLOPS_GPU_LAYOUT": "pipeline"}, {"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}])
def test_bad_variables_stop_the_container(env):
    with pytest.raises(ValueError):
        placement.Layout.from_env(env)


@given(st.sets(st.integers(min_value=0, max_value=15)))
def test_free_slot_is_the_lowest_not_taken(taken):
    slot = placement.free_slot(taken)
    assert slot not in taken and all(lower in taken for lower in range(slot))
