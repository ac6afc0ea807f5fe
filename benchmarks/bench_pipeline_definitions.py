"""Benchmark: building SageMaker pipeline definitions at synth time (SDK v3, offline).

Runs, each in a fresh interpreter (so that nothing is imported or cached yet):

* ``import``: importing the SageMaker SDK the way the builder does (inside its offline
  environment), without building anything;
* ``build``: building N=3 training pipeline definitions (dev, staging, prod-like specs): the
  first call includes the SDK import (what the first ``cdk synth`` call pays), the others are
  warm. Each definition is built twice to check that it is byte-identical.

Both subprocesses refuse network connections and run without AWS credentials. Writes
``benchmarks/results/pipeline_definitions.json``.

Usage: ``.venv/bin/python benchmarks/bench_pipeline_definitions.py``
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # also runnable as a plain script (its workers are)
    sys.path.insert(0, str(REPO_ROOT))
from benchmarks.measure import machine  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "pipeline_definitions.json"
N = 3


def _refuse_network() -> None:
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access during the benchmark")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse


def _specs() -> list:
    from mlops_platform.pipelines import TrainingPipelineSpec

    common = {
        "region": "eu-west-1",
        "default_bucket": "sdk-session-bucket",
        "hyperparameters": {"max_depth": "5", "num_round": "100", "objective": "binary:logistic"},
    }
    specs = []
    for environment in ("dev", "staging", "prod"):
        bucket = f"${{Token[TOKEN.{10 + len(specs)}]}}"  # a CDK token in the S3 URIs
        secure = environment == "prod"
        specs.append(
            TrainingPipelineSpec(
                pipeline_name=f"mlops-{environment}-training",
                role_arn=f"arn:aws:iam::123456789012:role/mlops-{environment}-sagemaker",
                input_data_uri=f"s3://{bucket}/raw/churn.csv",
                output_uri=f"s3://{bucket}/pipelines/training",
                model_package_group_name=f"mlops-{environment}-churn",
                preprocess_code_uri=f"s3://{bucket}/code/preprocess.py",
                evaluate_code_uri=f"s3://{bucket}/code/evaluate.py",
                train_source_uri=f"s3://{bucket}/code/sourcedir.tar.gz",
                kms_key_arn="${Token[TOKEN.99]}" if secure else None,
                subnet_ids=("subnet-0a", "subnet-0b") if secure else (),
                security_group_ids=("sg-0c",) if secure else (),
                environment={"MLFLOW_TRACKING_URI": "${Token[TOKEN.98]}", "MLFLOW_EXPERIMENT_NAME": "churn"},
                **common,
            )
        )
    return specs


def _worker_import() -> dict:
    _refuse_network()
    start = time.perf_counter()
    from mlops_platform.pipelines import training_definition

    module_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with training_definition._offline_sdk_environment("eu-west-1"):
        training_definition._sdk()
    return {"module_import_seconds": module_seconds, "sdk_import_seconds": time.perf_counter() - start}


def _worker_build() -> dict:
    _refuse_network()
    process_start = time.perf_counter()
    from mlops_platform.pipelines import build_training_pipeline_definition

    specs = _specs()
    seconds, definitions = [], []
    for spec in specs:
        start = time.perf_counter()
        definitions.append(build_training_pipeline_definition(spec))
        seconds.append(time.perf_counter() - start)
    repeat_seconds, identical = [], []
    for spec, definition in zip(specs, definitions, strict=True):
        start = time.perf_counter()
        identical.append(build_training_pipeline_definition(spec) == definition)
        repeat_seconds.append(time.perf_counter() - start)
    return {
        "build_seconds": seconds,
        "repeat_build_seconds": repeat_seconds,
        "byte_identical_on_rebuild": identical,
        "process_seconds": time.perf_counter() - process_start,
        "definition_bytes": [len(d.encode()) for d in definitions],
        "definition_sha256": [hashlib.sha256(d.encode()).hexdigest() for d in definitions],
    }


def _run_worker(mode: str) -> dict:
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    env = {k: v for k, v in os.environ.items() if k not in credentials}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, f"--worker={mode}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["subprocess_wall_seconds"] = wall
    return result


def main() -> int:
    import importlib.metadata

    imported = _run_worker("import")
    built = _run_worker("build")
    builds = built["build_seconds"]
    warm = builds[1:] + built["repeat_build_seconds"]
    results = {
        "description": (
            "Training pipeline definition builds (SageMaker Python SDK v3, offline). "
            "first_build_seconds includes importing the SDK in a fresh process."
        ),
        "n_definitions": N,
        "first_build_seconds": round(builds[0], 3),
        "warm_build_seconds": [round(s, 3) for s in warm],
        "warm_build_median_seconds": round(statistics.median(warm), 3),
        "sdk_import_seconds": round(imported["sdk_import_seconds"], 3),
        "module_import_seconds": round(imported["module_import_seconds"], 4),
        "build_process_seconds": round(built["process_seconds"], 3),
        "build_subprocess_wall_seconds": round(built["subprocess_wall_seconds"], 3),
        "byte_identical_on_rebuild": all(built["byte_identical_on_rebuild"]),
        "definition_bytes": built["definition_bytes"],
        "definition_sha256": built["definition_sha256"],
        "environment": machine(sagemaker=importlib.metadata.version("sagemaker")),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"pipeline definitions: {N} built in {results['build_process_seconds']}s "
        f"(first incl. SDK import {results['first_build_seconds']}s, warm median "
        f"{results['warm_build_median_seconds']}s), byte-identical on rebuild: "
        f"{results['byte_identical_on_rebuild']} -> benchmarks/results/pipeline_definitions.json"
    )
    return 0


if __name__ == "__main__":
    worker = next((arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("--worker=")), None)
    if worker == "import":
        print("\n" + json.dumps(_worker_import()))
    elif worker == "build":
        print("\n" + json.dumps(_worker_build()))
    else:
        sys.exit(main())
