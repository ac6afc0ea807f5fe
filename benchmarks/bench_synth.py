"""Synthesis cost: every environment vs. the fixed jsii floor (a one-bucket app), same run.

Targets: through the CDK CLI (``cdk synth '**'``, nag on, what ``make synth`` runs) at most 3x the
floor app's CLI synth (issue #14); in process (``app.synth()`` from Python) at most 4x (issue #2).
Runs of the floor and the platform alternate, so a load that comes and goes hits both alike.

Two figures: ``warm`` (pipeline definitions served from build/pipeline-definitions, what an
engineer's repeated ``cdk synth`` costs) and ``cold`` (cache emptied first: a fresh clone, or a
changed pipeline, which also pays for importing the SageMaker SDK and building every definition).
The target is judged on the warm figure; the cold one is reported next to it.

``cdk synth`` validates every template against CloudFormation's schemas and runs the cdk-nag
packs; CDK's default Rego rules run in ``make test``'s synthesis instead (``app_builder.build_app``).
The CLI figure with them (``-c default_rules=true``, as CDK registers its validation by itself) is
reported beside the target's, so what leaving them out of ``cdk synth`` buys stays visible.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import machine, measure, python_snippet, write_result
from mlops_platform.pipelines.cache import CACHE_DIR

REPEATS = 3
TARGET_RATIO = 4.0
CLI_TARGET_RATIO = 3.0
CLI = ["npx", "--no-install", "cdk", "--no-notices", "--no-version-reporting", "synth", "--quiet"]

FLOOR = """
import tempfile
from aws_cdk import App, Stack, aws_s3 as s3
app = App(outdir=tempfile.mkdtemp())
s3.Bucket(Stack(app, "Floor"), "Bucket")
app.synth()
"""

PLATFORM = """
import tempfile
from mlops_platform.app_builder import build_app
from mlops_platform.config import load_environments
build_app(load_environments(), outdir=tempfile.mkdtemp()).synth()
"""


def _cold() -> object:
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
    return python_snippet(PLATFORM)


def _cli(app: str | None, *context: str) -> object:
    """``cdk synth`` of the floor app (``app`` is its file) or, with None, of every environment."""
    outdir = tempfile.mkdtemp()
    argv = CLI + ["-o", outdir] + (["--app", f"{sys.executable} {app}"] if app else ["**"])
    argv += [option for pair in context for option in ("-c", pair)]
    try:
        return measure(argv, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _median(runs: list) -> float:
    return statistics.median(run.seconds for run in runs)


def main() -> int:
    floor, cold, platform = [], [], []
    for _ in range(REPEATS):
        floor.append(python_snippet(FLOOR))
        cold.append(_cold())
    for _ in range(REPEATS):  # warm: the last cold run filled the cache
        floor.append(python_snippet(FLOOR))
        platform.append(python_snippet(PLATFORM))
    with tempfile.TemporaryDirectory() as folder:
        floor_app = Path(folder) / "floor_app.py"
        floor_app.write_text(FLOOR.replace("tempfile.mkdtemp()", "None"))
        cli_floor, cli_platform, cli_default_rules = [], [], []
        for _ in range(REPEATS):
            cli_floor.append(_cli(str(floor_app)))
            cli_platform.append(_cli(None))
            cli_default_rules.append(_cli(None, "default_rules=true"))
    if any(run.returncode for run in floor + cold + platform + cli_floor + cli_platform + cli_default_rules):
        print("synth benchmark: a run failed", file=sys.stderr)
        return 1
    floor_s, platform_s, cold_s = _median(floor), _median(platform), _median(cold)
    ratio = platform_s / floor_s
    cli_floor_s, cli_platform_s = _median(cli_floor), _median(cli_platform)
    cli_ratio = cli_platform_s / cli_floor_s
    cli_default_rules_s = _median(cli_default_rules)
    path = write_result(
        "synth",
        {
            "machine": machine(),
            "repeats": REPEATS,
            "cli_floor_one_bucket_app": {"median_seconds": cli_floor_s},
            "cli_all_environments_warm": {"median_seconds": cli_platform_s,
                                          "peak_rss_mib": max(r.peak_rss_mib for r in cli_platform)},
            "cli_ratio_to_floor": round(cli_ratio, 2),
            "cli_all_environments_with_cdk_default_rules": {
                "median_seconds": cli_default_rules_s, "ratio_to_floor": round(cli_default_rules_s / cli_floor_s, 2)},
            "cli_target_ratio": CLI_TARGET_RATIO,
            "cli_meets_target": cli_ratio <= CLI_TARGET_RATIO,
            "floor_one_bucket_app": {"median_seconds": floor_s,
                                     "peak_rss_mib": max(r.peak_rss_mib for r in floor)},
            "all_environments_warm": {"median_seconds": platform_s,
                                      "peak_rss_mib": max(r.peak_rss_mib for r in platform)},
            "all_environments_cold": {"median_seconds": cold_s,
                                      "peak_rss_mib": max(r.peak_rss_mib for r in cold)},
            "ratio_to_floor": round(ratio, 2),
            "cold_ratio_to_floor": round(cold_s / floor_s, 2),
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio <= TARGET_RATIO,
        },
    )
    print(f"synth (cdk CLI): all environments {cli_platform_s:.1f}s vs floor {cli_floor_s:.1f}s = "
          f"{cli_ratio:.2f}x (target <= {CLI_TARGET_RATIO}x); with CDK's default rules "
          f"{cli_default_rules_s:.1f}s = {cli_default_rules_s / cli_floor_s:.2f}x")
    print(f"synth (in process): all environments {platform_s:.1f}s warm / {cold_s:.1f}s cold vs floor {floor_s:.1f}s "
          f"= {ratio:.2f}x / {cold_s / floor_s:.2f}x (target <= {TARGET_RATIO}x, warm) "
          f"-> {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
