"""Benchmark: AWS calls per inference request, and cold-start import time of the inference Lambdas.

Calls. The inference API runs ``REQUESTS`` requests (subjects, some without) against moto with a
``before-call`` hook registered on the boto3 *session* (every client of the process), counting
operations per request after one warm-up request (which also fills the weights cache). Target:
<= 2 calls per invocation (InvokeEndpoint + TransactWriteItems), 0 DescribeEndpoint and 0
experiment-state reads per request (the allocation cache is longer than the run).

Cold start. Fresh interpreters, each timing one import with ``perf_counter`` (interpreter start-up
excluded): ``import boto3`` vs ``import mlops_runtime.handlers.inference_api`` vs
``...experiment_controller``, interleaved, 7 runs each, medians. Lambda-like: tracing enabled
(no ``POWERTOOLS_TRACE_DISABLED``), ``PYTHONDONTWRITEBYTECODE=1`` with the package copied without
bytecode. Target: each handler <= 1.4 x boto3.

Writes ``benchmarks/results/inference_calls.json``. Usage: ``.venv/bin/python -m benchmarks.bench_inference_calls``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import write_result

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 200
RUNS = 7
REGION = "eu-west-1"

EXPERIMENTS = {
    "churn": {
        "experiment": "churn-exp",
        "arms": [
            {"arm": "champion", "endpoint": "churn-ep", "variant": "v1"},
            {"arm": "challenger", "endpoint": "churn-ep", "variant": "v2"},
        ],
        "initial_weights": {"champion": 0.8, "challenger": 0.2},
        "content_types": ["application/json"],
    }
}


def _event(subject: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if subject:
        headers["X-Subject-Id"] = subject
    path = "/v1/endpoints/churn/invocations"
    return {"resource": path, "path": path, "httpMethod": "POST", "headers": headers, "multiValueHeaders": {},
            "queryStringParameters": None, "pathParameters": None, "isBase64Encoded": False, "body": '{"x": 1}',
            "requestContext": {"requestId": "r", "stage": "v1", "httpMethod": "POST", "path": path, "identity": {}}}


class _Context:
    function_name = "inference-api"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:inference-api"
    aws_request_id = "bench"


def count_calls() -> dict:
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "MLOPS_SETTINGS": json.dumps({  # settings.InferenceSettings; the key is read at cold start
            "experiments": EXPERIMENTS, "predictions_table": "predictions", "statistics_table": "statistics",
            "state_table": "experiment-state", "subject_hash_secret": "subject-hash-key"}),
    })
    sys.path.insert(0, str(ROOT / "lambda"))
    import boto3
    from moto import mock_aws

    calls: collections.Counter = collections.Counter()
    live = calls

    def hook(model, **_):
        live[model.name] += 1

    with mock_aws():
        boto3.DEFAULT_SESSION = None
        boto3.setup_default_session(region_name=REGION)
        boto3.DEFAULT_SESSION.events.register("before-call", hook)
        boto3.client("secretsmanager").create_secret(Name="subject-hash-key", SecretString="k")
        ddb = boto3.client("dynamodb")
        for name, keys in (("predictions", [("inference_id", "HASH")]),
                           ("statistics", [("experiment", "HASH"), ("round_arm_hour", "RANGE")]),
                           ("experiment-state", [("experiment", "HASH")])):
            ddb.create_table(TableName=name, KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                             AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                             BillingMode="PAY_PER_REQUEST")
        from mlops_runtime.handlers import inference_api

        inference_api.configure(None)
        warm = inference_api.handler(_event("warm-up"), _Context())
        assert warm["statusCode"] == 200, warm
        calls.clear()
        statuses = collections.Counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF metric lines
            for index in range(REQUESTS):
                subject = None if index % 10 == 0 else f"subject-{index}"
                statuses[inference_api.handler(_event(subject), _Context())["statusCode"]] += 1
        calls = collections.Counter(calls)  # snapshot: the check below is not a request's call
        stats = ddb.query(TableName="statistics", KeyConditionExpression="experiment = :e",
                          ExpressionAttributeValues={":e": {"S": "churn-exp"}})["Items"]
    per_request = sum(calls.values()) / REQUESTS
    return {
        "requests": REQUESTS,
        "statuses": dict(statuses),
        "calls": dict(calls),
        "calls_per_invocation": per_request,
        "describe_endpoint_per_request": calls.get("DescribeEndpoint", 0) / REQUESTS,
        "state_reads_per_request": calls.get("GetItem", 0) / REQUESTS,
        "invocations_counted": sum(int(item["invocations"]["N"]) for item in stats),
        "target_calls_per_invocation": 2,
        "ok": per_request <= 2 and not calls.get("DescribeEndpoint") and not calls.get("GetItem"),
    }


_SNIPPET = "import time, sys; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def cold_starts() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "lambda" / "mlops_runtime", Path(tmp) / "mlops_runtime",
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "PYTHONPATH"))}
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "LAMBDA_TASK_ROOT": tmp, "PYTHONPATH": tmp,
                    "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION})
        modules = {"boto3": "boto3", "inference_api": "mlops_runtime.handlers.inference_api",
                   "experiment_controller": "mlops_runtime.handlers.experiment_controller"}
        samples: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(RUNS):
            for name, module in modules.items():
                out = subprocess.run([sys.executable, "-c", _SNIPPET.format(module=module)], env=env, cwd=tmp,
                                     capture_output=True, text=True, check=True)
                samples[name].append(float(out.stdout.strip().splitlines()[-1]))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["boto3"]
    return {
        "runs": RUNS,
        "median_seconds": {k: round(v, 4) for k, v in medians.items()},
        "ratio_to_boto3": {k: round(medians[k] / base, 3) for k in ("inference_api", "experiment_controller")},
        "target_ratio": 1.4,
        "ok": all(medians[k] / base <= 1.4 for k in ("inference_api", "experiment_controller")),
    }


def main() -> int:
    calls = count_calls()
    cold = cold_starts()
    path = write_result("inference_calls", {"calls": calls, "cold_start": cold})
    print(json.dumps({"calls": calls, "cold_start": cold}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
