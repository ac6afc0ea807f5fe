"""Benchmark: cold start and asset size of the deployer Lambda (``mlops_runtime.handlers.deployer``).

Cold start. Each measurement is a fresh interpreter that times one import with ``perf_counter``
(interpreter start-up is excluded: it is the same for every case). Runs are interleaved, 7 of each,
and the medians compared:

- ``boto3``: ``import boto3`` alone, the baseline;
- ``handler``: ``import mlops_runtime.handlers.deployer`` the way Lambda runs it: a Lambda-like
  environment (``LAMBDA_TASK_ROOT`` set, tracing *enabled*: no ``POWERTOOLS_TRACE_DISABLED``), and
  the package copied without ``__pycache__`` to a temporary directory with
  ``PYTHONDONTWRITEBYTECODE=1``, because the asset ships no bytecode and Lambda's file system is
  read-only: every cold start compiles the package's modules (boto3 and Powertools come with theirs);
- ``first_invocation``: ``handler`` plus everything the first invocation creates or imports lazily
  before its first API call: the Powertools Tracer (X-Ray SDK, botocore patch), boto3, the
  idempotency adapter and Powertools Idempotency. This is the whole cold start.

Target: ``handler`` <= 1.4 x ``boto3``.

Asset size: what the deployer's asset ships (its handler and the ``mlops_runtime`` modules it
imports, see ``mlops_platform/lambda_bundles.py``), raw and zipped (CDK uploads a zip); the whole
package is reported next to it. Target: < 100 KB.

Writes ``benchmarks/results/deployer.json``. Usage: ``.venv/bin/python -m benchmarks.bench_deployer``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.measure import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lambda" / "mlops_runtime"
RUNS = 7
TARGET_RATIO = 1.4
TARGET_KB = 100
HANDLER = "mlops_runtime.handlers.deployer"
sys.path.insert(0, str(ROOT))
from mlops_platform.lambda_bundles import bundle_files  # noqa: E402  (CDK-free)

_TIMED_IMPORT = """
import json, sys, time
start, cpu_start = time.perf_counter(), time.process_time()
{imports}
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "modules": len(sys.modules),
                  "boto3": "boto3" in sys.modules,
                  "package": sorted(m for m in sys.modules if m.startswith("mlops_runtime"))}}))
"""

CASES = {
    "boto3": "import boto3",
    "handler": f"import {HANDLER}",
    "first_invocation": (
        f"import {HANDLER}\nfrom aws_lambda_powertools import Tracer\nTracer(patch_modules=('botocore',))\n"
        "import boto3\nimport mlops_runtime.adapters.idempotency\n"
        "from aws_lambda_powertools.utilities.idempotency import (\n"
        "    DynamoDBPersistenceLayer, idempotent_function)"
    ),
}


def _shipped_files(root: Path) -> list[Path]:
    """What the asset ships: source files, no bytecode caches, no tests."""
    files = []
    for path in sorted(root.rglob("*")):
        parts = set(path.relative_to(root).parts)
        if not path.is_file() or "__pycache__" in parts or "tests" in parts:
            continue
        if path.suffix in {".pyc", ".pyo"} or path.name.startswith("test_") or path.name == ".DS_Store":
            continue
        files.append(path)
    return files


def _zipped_bytes(files: list[Path], base: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(base))
    return len(buffer.getvalue())


def _lambda_env(pythonpath: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "AWS_", "PYTHON"))
    }
    env.update(
        {
            "PYTHONPATH": str(pythonpath),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": "/var/task",
            "AWS_LAMBDA_FUNCTION_NAME": "mlops-dev-deployer",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "POWERTOOLS_SERVICE_NAME": "deployer",
        }
    )
    return env


def _run(case: str, env: dict[str, str]) -> dict:
    code = _TIMED_IMPORT.format(imports=CASES[case])
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="deployer-asset-") as tmp:
        asset = Path(tmp) / "mlops_runtime"
        shutil.copytree(PACKAGE, asset, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
        env = _lambda_env(Path(tmp))
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        cpu: dict[str, list[float]] = {case: [] for case in CASES}
        details: dict[str, dict] = {}
        _run("handler", env)  # warm the OS file cache once; not counted
        for _ in range(RUNS):
            for case in CASES:  # interleaved, so that load changes hit every case alike
                result = _run(case, env)
                samples[case].append(result["seconds"])
                cpu[case].append(result["cpu_seconds"])
                details[case] = result
        # For information: the same import with tracing disabled (not how Lambda runs it).
        untraced = statistics.median(
            _run("handler", {**env, "POWERTOOLS_TRACE_DISABLED": "true"})["seconds"] for _ in range(3)
        )

    medians = {case: statistics.median(values) for case, values in samples.items()}
    cpu_medians = {case: statistics.median(values) for case, values in cpu.items()}
    ratio = medians["handler"] / medians["boto3"]
    first_ratio = medians["first_invocation"] / medians["boto3"]

    files = _shipped_files(PACKAGE)
    raw = sum(path.stat().st_size for path in files)
    zipped = _zipped_bytes(files, PACKAGE.parent)
    # What the deployer's asset ships: the closure of its imports (mlops_platform/lambda_bundles.py).
    closure = bundle_files(HANDLER)
    closure_raw = sum(path.stat().st_size for path in closure)
    closure_zipped = _zipped_bytes(closure, PACKAGE.parent)

    payload = {
        "description": (
            "Deployer Lambda cold start (import time in a fresh interpreter, Lambda-like environment with "
            "tracing enabled and no bytecode for the package) relative to `import boto3`, and asset size."
        ),
        "runs": RUNS,
        "import_ms": {
            case: {"median": round(medians[case] * 1000, 1), "runs": [round(s * 1000, 1) for s in values]}
            for case, values in samples.items()
        },
        "import_cpu_ms_median": {case: round(value * 1000, 1) for case, value in cpu_medians.items()},
        "handler_import_ms_tracing_disabled": round(untraced * 1000, 1),
        "handler_imports_boto3": details["handler"]["boto3"],
        "ratio_handler_to_boto3": round(ratio, 2),
        "ratio_first_invocation_to_boto3": round(first_ratio, 2),
        "ratio_handler_to_boto3_cpu": round(cpu_medians["handler"] / cpu_medians["boto3"], 2),
        "ratio_first_invocation_to_boto3_cpu": round(
            cpu_medians["first_invocation"] / cpu_medians["boto3"], 2
        ),
        "target_ratio": TARGET_RATIO,
        "meets_ratio_target": ratio <= TARGET_RATIO,
        "asset": {
            "files": len(files),
            "raw_kb": round(raw / 1024, 1),
            "zipped_kb": round(zipped / 1024, 1),
            "deployer_modules": len(closure),
            "deployer_raw_kb": round(closure_raw / 1024, 1),
            "deployer_zipped_kb": round(closure_zipped / 1024, 1),
        },
        "target_kb": TARGET_KB,
        "meets_size_target": closure_zipped / 1024 < TARGET_KB,
        "whole_package_under_target_zipped": zipped / 1024 < TARGET_KB,
        "environment": machine(),
    }
    path = write_result("deployer", payload)
    print(json.dumps(payload, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
