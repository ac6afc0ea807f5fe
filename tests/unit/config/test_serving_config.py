"""Serving config knows SageMaker's documented limits and says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_platform.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]


def with_endpoint(tmp_path: Path, **endpoint) -> str:
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    base = {"name": "scorer", "model_package_group": "example-classifier"}
    data["serving"] = {"endpoints": [{**base, **endpoint}]}
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path)
    except ConfigError as error:
        assert len(error.lines) == 1, error.lines
        return error.lines[0]
    return ""


SERVERLESS = {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}
REALTIME = {"kind": "realtime", "instance_type": "ml.m5.large"}
G5_12XL = {"kind": "realtime", "instance_type": "ml.g5.12xlarge"}


@pytest.mark.parametrize(
    "endpoint,expected",
    [
        ({"variant": SERVERLESS, "challenger_initial_weight": 0, "data_capture": None}, ""),
        ({"variant": SERVERLESS, "challenger_initial_weight": 0}, "serverless variants do not support data capture"),
        ({"variant": SERVERLESS, "data_capture": None}, "hold one production variant"),
        ({"variant": {**SERVERLESS, "memory_mb": 3000}, "data_capture": None, "challenger_initial_weight": 0},
         "1024-6144 MB in steps of 1024"),
        ({"variant": {**SERVERLESS, "max_concurrency": 500}, "data_capture": None, "challenger_initial_weight": 0},
         "less than or equal to 200"),
        ({"variant": {**REALTIME, "instance_type": "ml.m5.huge"}}, "known SageMaker hosting instance type"),
        ({"variant": {**REALTIME, "instance_type": "ml.g5.12xlarge", "volume_size_gb": 100}},
         "local NVMe storage: volume_size_gb cannot be set"),
        ({"variant": {**REALTIME, "instance_type": "ml.g5.12xlarge", "model_data_download_timeout_s": 1200,
                      "container_startup_health_check_timeout_s": 900}}, ""),
        ({"variant": {**REALTIME, "autoscaling": {"min_instances": 3, "max_instances": 2}}},
         "min_instances (3) exceeds max_instances (2)"),
        ({"variant": {**REALTIME, "autoscaling": {"min_instances": 0, "max_instances": 2}}},
         "realtime variants keep at least one instance"),
        ({"variant": {"kind": "async", "instance_type": "ml.m5.xlarge"}, "challenger_initial_weight": 0}, ""),
        ({"variant": {"kind": "async", "instance_type": "ml.m5.xlarge"}}, "must be 0 for an async endpoint"),
        ({"variant": REALTIME, "challenger_initial_weight": -0.1}, "greater than or equal to 0"),
        ({"variant": REALTIME, "shadow": True}, ""),  # a copy of 10 % of the requests
        ({"variant": REALTIME, "shadow": True, "challenger_initial_weight": 0}, "must be above 0 with shadow"),
        ({"variant": REALTIME, "model_package_group": "fraud"}, "'fraud' is not a group of this environment's registry"),
        ({"variant": {"kind": "batch"}}, "does not match any of the expected tags"),
        ({"variant": REALTIME, "container": {}}, "exactly one of image_uri or dockerfile_dir"),
        ({"variant": REALTIME, "guardrails": {"mode": "SLOW"}}, "'ALL_AT_ONCE', 'CANARY' or 'LINEAR'"),
        # multi-GPU serving, against the instance table's GPU count and memory
        ({"variant": {**G5_12XL, "gpus": {"layout": "worker_per_gpu", "model_memory_gib": 4}}}, ""),
        ({"variant": {**G5_12XL, "gpus": {"layout": "split_model", "model_memory_gib": 60}}}, ""),
        ({"variant": {"kind": "async", "instance_type": "ml.g5.12xlarge",
                      "gpus": {"layout": "worker_per_gpu", "model_memory_gib": 4}}, "challenger_initial_weight": 0}, ""),
        ({"variant": {**G5_12XL, "gpus": {"layout": "worker_per_gpu", "model_memory_gib": 30}}},
         "gpus: 30 GiB does not fit one NVIDIA A10G of ml.g5.12xlarge (21.6 of 24 GiB usable): use split_model"),
        ({"variant": {**G5_12XL, "gpus": {"layout": "split_model", "model_memory_gib": 120}}},
         "gpus: 120 GiB does not fit the 4 GPUs of ml.g5.12xlarge together (86.4 GiB usable)"),
        ({"variant": {**G5_12XL, "instance_type": "ml.g5.2xlarge",
                      "gpus": {"layout": "split_model", "model_memory_gib": 30}}},
         "gpus: split_model needs at least 2 GPUs; ml.g5.2xlarge has 1"),
        ({"variant": {**REALTIME, "gpus": {"layout": "worker_per_gpu", "model_memory_gib": 1}}},
         "gpus: ml.m5.large has no GPU"),
        ({"variant": {**G5_12XL, "gpus": {"layout": "pipeline", "model_memory_gib": 1}}},
         "'worker_per_gpu' or 'split_model'"),
        ({"variant": {**SERVERLESS, "gpus": {"layout": "worker_per_gpu", "model_memory_gib": 1}},
          "challenger_initial_weight": 0, "data_capture": None}, "variant.serverless.gpus' = "),
    ],
)
def test_endpoint_limits(tmp_path, endpoint, expected):
    message = with_endpoint(tmp_path, **endpoint)
    if expected:
        assert expected in message and "dev.yaml: field 'serving" in message
    else:
        assert message == ""
