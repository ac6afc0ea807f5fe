"""Synthesis cost: every environment vs. the fixed jsii floor (a one-bucket app), same run.

Target (issue #2): all environments synthesize in at most 4x the floor's wall time.

Two figures: ``warm`` (pipeline definitions served from build/pipeline-definitions, what an
engineer's repeated ``cdk synth`` costs) and ``cold`` (cache emptied first: a fresh clone, or a
changed pipeline, which also pays for importing the SageMaker SDK and building every definition).
The target is judged on the warm figure; the cold one is reported next to it.
"""

from __future__ import annotations

import shutil
import statistics
import sys

from benchmarks.measure import python_snippet, write_result
from mlops_platform.pipelines.cache import CACHE_DIR

REPEATS = 3
TARGET_RATIO = 4.0

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


def main() -> int:
    floor = [python_snippet(FLOOR) for _ in range(REPEATS)]
    cold = [_cold() for _ in range(REPEATS)]
    platform = [python_snippet(PLATFORM) for _ in range(REPEATS)]  # warm: the last cold run filled it
    if any(run.returncode for run in floor + cold + platform):
        print("synth benchmark: a run failed", file=sys.stderr)
        return 1
    floor_s = statistics.median(run.seconds for run in floor)
    platform_s = statistics.median(run.seconds for run in platform)
    ratio = platform_s / floor_s
    cold_s = statistics.median(run.seconds for run in cold)
    path = write_result(
        "synth",
        {
            "repeats": REPEATS,
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
    print(f"synth: all environments {platform_s:.1f}s warm / {cold_s:.1f}s cold vs floor {floor_s:.1f}s "
          f"= {ratio:.2f}x / {cold_s / floor_s:.2f}x (target <= {TARGET_RATIO}x, warm) "
          f"-> {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
