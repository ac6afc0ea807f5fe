"""Benchmark: cold-start import of every Lambda handler vs ``import boto3``, now and at a baseline.

Each measurement is a fresh interpreter timing one import with ``perf_counter`` (interpreter
start-up excluded), Lambda-like as in ``bench_deployer``: tracing enabled, ``LAMBDA_TASK_ROOT``
set, the package copied without bytecode and ``PYTHONDONTWRITEBYTECODE=1`` (the asset ships no
bytecode and Lambda's file system is read-only). Runs are interleaved (boto3, then each handler
at the baseline and now), ``RUNS`` of each, and the medians compared.

The baseline is the package at a git revision (``--baseline REV``, default: the commit before the
domain parsers moved to pydantic), so "before" and "after" are measured in the same run, under
the same load. ``first_parse`` cases add what the handler's cold start also does before its
first event: parse its spec setting with the domain parser (pydantic builds its validators
when a module defines the models, so most of that cost is already in the import).

Target: every handler <= 1.4 x ``import boto3``.

Also reported: each function's asset now (``asset_now``: the modules ``mlops_platform/lambda_bundles.py``
ships for its handler, raw and zipped).

Writes ``benchmarks/results/handler_imports.json``. Usage:
``.venv/bin/python -m benchmarks.bench_handler_imports [--baseline REV] [--runs N] [--handlers NAME ...]``
(a subset writes ``handler_imports_partial.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.bench_deployer import _TIMED_IMPORT, _lambda_env, _zipped_bytes
from benchmarks.measure import machine, write_result
from mlops_platform.lambda_bundles import bundle_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lambda" / "mlops_runtime"
BASELINE = "a1a9b00"  # main before the domain parsers moved to pydantic (issue 14, item 3)
RUNS = 5
TARGET_RATIO = 1.4
HANDLERS = sorted(
    path.stem for path in (PACKAGE / "handlers").glob("*.py") if path.stem != "__init__"
)

_ENDPOINT = {
    "name": "mlops-dev-churn",
    "model_package_group": "mlops-dev-churn",
    "variants": {"champion": {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 2}},
    "execution_role_arn": "arn:aws:iam::123456789012:role/mlops-dev-sagemaker-execution",
    "challenger_initial_weight": 0.1,
    "guardrails": {"mode": "CANARY", "canary_size_percent": 10, "alarm_names": ["a", "b"]},
    "tags": {"mlops:environment": "dev"},
}
_SCALING = {
    "mlops-dev-churn": {
        "kind": "realtime", "min_instances": 1, "max_instances": 4, "target_invocations_per_instance": 100,
        "scale_in_cooldown_s": 300, "scale_out_cooldown_s": 60,
    }
}
_SEARCH = {"docs": {"dimension": 256, "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"}}}
_MONITORS = {
    "mlops-dev-churn": {
        "pipeline_name": "mlops-dev-churn-monitoring", "window_hours": 24, "ground_truth_lookback_hours": 48,
        "capture_bucket": "mlops-dev-capture", "capture_prefix": "capture/mlops-dev-churn/",
        "ground_truth_bucket": "mlops-dev-feedback", "ground_truth_prefix": "ground-truth/",
        "manifest_bucket": "mlops-dev-artifacts", "manifest_prefix": "monitoring/", "baseline_s3_uri": None,
    }
}
_RETRAINING = {"mlops-dev-churn-drift": {"pipelines": ["mlops-dev-churn-training"], "cooldown_hours": 24}}



def _settings_or(handler: str, settings: dict, fallback: str) -> str:
    """Validate ``settings`` with the handler's ``SETTINGS_MODEL`` where the revision has one
    (issue 14), wherever that model lives, else run ``fallback`` (the domain parser it replaced)."""
    return (f"model = getattr(mlops_runtime.handlers.{handler}, 'SETTINGS_MODEL', None)\n"
            f"if model is not None:\n    model.model_validate_json({json.dumps(settings)!r})\n"
            f"else:\n    {fallback}")


# The search functions' settings are parsed by hand (domain.search.SearchSettings), else SEARCH_INDEXES.
_SEARCH_PARSE = (f"try:\n    mlops_runtime.domain.search.SearchSettings.parse({json.dumps({'indexes': _SEARCH})!r})\n"
                 f"except AttributeError:\n    mlops_runtime.domain.search.parse_settings({json.dumps(_SEARCH)!r})")

# What each handler parses from its environment before its first event (settings or domain parsers).
FIRST_PARSE = {
    # Their settings model where the revision has one (issue 14), else the domain parser it replaced.
    "deployer": _settings_or(
        "deployer", {"endpoints": [_ENDPOINT], "idempotency_table": "t", "environment": "dev"},
        f"mlops_runtime.domain.deployment.parse_endpoint_specs({[_ENDPOINT]!r})"),
    "endpoint_scaler": _settings_or(
        "endpoint_scaler", {"endpoints": _SCALING},
        f"mlops_runtime.domain.autoscaling.parse_scaling_specs({_SCALING!r})"),
    "search_api": _SEARCH_PARSE,
    "search_indexer": _SEARCH_PARSE,
    "monitoring_launcher": _settings_or(
        "monitoring_launcher", {"monitors": _MONITORS},
        f"mlops_runtime.domain.monitoring_window.parse_monitors({json.dumps(_MONITORS)!r})"),
    "retraining_trigger": _settings_or(
        "retraining_trigger", {"retraining": _RETRAINING},
        f"mlops_runtime.domain.retraining.parse_retraining({json.dumps(_RETRAINING)!r})"),
}
_DOMAIN_OF = {
    "deployer": "deployment", "endpoint_scaler": "autoscaling", "search_api": "search",
    "search_indexer": "search", "monitoring_launcher": "monitoring_window", "retraining_trigger": "retraining",
}


def _imports(handler: str, first_parse: bool) -> str:
    code = f"import mlops_runtime.handlers.{handler}"
    if first_parse:
        module = f"mlops_runtime.domain.{_DOMAIN_OF[handler]}" if _DOMAIN_OF[handler] else "mlops_runtime.settings"
        code += f"\nimport {module}\n{FIRST_PARSE[handler]}"
    return code


def _copy_current(target: Path) -> None:
    shutil.copytree(PACKAGE, target / "mlops_runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _copy_revision(revision: str, target: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "lambda/mlops_runtime"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target / "extracted", filter="data")
    shutil.move(target / "extracted" / "lambda" / "mlops_runtime", target / "mlops_runtime")


def _run(imports: str, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT.format(imports=imports)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{imports!r} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _loads_pydantic(handler: str, env: dict[str, str]) -> bool:
    code = f"import sys, mlops_runtime.handlers.{handler}; print('pydantic' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               timeout=120, check=True)
    return completed.stdout.strip().splitlines()[-1] == "True"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--handlers", nargs="*", default=HANDLERS, choices=HANDLERS,
                        help="measure only these handlers (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handler-imports-") as tmp:
        current, baseline = Path(tmp) / "current", Path(tmp) / "baseline"
        _copy_current(current)
        _copy_revision(args.baseline, baseline)
        envs = {"now": _lambda_env(current), "baseline": _lambda_env(baseline)}
        cases: dict[str, tuple[str, str]] = {"boto3": ("import boto3", "now")}
        for handler in args.handlers:
            at_baseline = (baseline / "mlops_runtime" / "handlers" / f"{handler}.py").exists()
            for label in ("baseline", "now") if at_baseline else ("now",):  # a newer handler: now only
                cases[f"{handler}@{label}"] = (_imports(handler, False), label)
                if handler in FIRST_PARSE:
                    cases[f"{handler}+first_parse@{label}"] = (_imports(handler, True), label)
        samples: dict[str, list[float]] = {case: [] for case in cases}
        cpu: dict[str, list[float]] = {case: [] for case in cases}
        _run("import boto3", envs["now"])  # warm the OS file cache once; not counted
        for _ in range(args.runs):
            for case, (imports, label) in cases.items():  # interleaved: load changes hit all alike
                result = _run(imports, envs[label])
                samples[case].append(result["seconds"])
                cpu[case].append(result["cpu_seconds"])
        loads_pydantic = {
            case: _loads_pydantic(case.split("@")[0], envs[label])
            for case, (_, label) in cases.items() if "+" not in case and case != "boto3"
        }

    medians = {case: statistics.median(values) for case, values in samples.items()}
    cpu_medians = {case: statistics.median(values) for case, values in cpu.items()}
    boto3, boto3_cpu = medians["boto3"], cpu_medians["boto3"]
    ratios = {case: round(value / boto3, 2) for case, value in medians.items() if case != "boto3"}
    cpu_ratios = {case: round(value / boto3_cpu, 2) for case, value in cpu_medians.items() if case != "boto3"}
    # Wall time is what a cold start costs, but on a loaded machine it is noisy; CPU time is steadier.
    over = sorted(case for case, ratio in ratios.items() if case.endswith("@now") and "+" not in case
                  and ratio > TARGET_RATIO)
    # What each function's asset ships now: the closure of its handler's imports (lambda_bundles.py).
    assets = {handler: bundle_files(f"mlops_runtime.handlers.{handler}") for handler in args.handlers}
    payload = {
        "description": (
            "Cold-start import of each Lambda handler (fresh interpreter, Lambda-like environment, tracing "
            "enabled, no bytecode for the package) relative to `import boto3`, at a baseline revision and "
            "now; '+first_parse' adds parsing the handler's spec setting with its domain parser."
        ),
        "baseline_revision": args.baseline,
        "runs": args.runs,
        "boto3_ms": round(boto3 * 1000, 1),
        "import_ms": {case: round(value * 1000, 1) for case, value in medians.items()},
        "ratio_to_boto3": ratios,
        "cpu_ms": {case: round(value * 1000, 1) for case, value in cpu_medians.items()},
        "cpu_ratio_to_boto3": cpu_ratios,
        "handler_imports_pydantic": loads_pydantic,
        "asset_now": {handler: {"modules": len(files), "raw_kb": round(sum(f.stat().st_size for f in files) / 1024, 1),
                                "zipped_kb": round(_zipped_bytes(files, PACKAGE.parent) / 1024, 1)}
                      for handler, files in assets.items()},
        "target_ratio": TARGET_RATIO,
        "handlers_over_target_now": over,
        "meets_target": not over,
        "environment": machine(),
    }
    # A run of some handlers only keeps the full run's figures.
    path = write_result("handler_imports" if set(args.handlers) == set(HANDLERS) else "handler_imports_partial",
                        payload)
    print(json.dumps(payload, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
