"""Sharded monitoring (issue 18): one window split over 4 shards, each run as its own process, then
merged; the merged report must equal one pass over the whole window.

Data: ``bench_monitoring.generate`` (20 numeric features, 25 capture files, two variants, labels for
10 %), ``--records`` in all (issue 18 asks for 10,000,000). The files are dealt round-robin to 4
shard directories (symbolic links), as ``ShardedByS3Key`` deals a manifest's keys to instances.

Runs, each ``monitoring/monitor.py`` as a subprocess (``benchmarks.measure.measure``: wall time and
peak RSS of its process tree), with ground truth:

* ``reference``: one instance over ``records / 10`` records (with 10M records: the 1M-record
  single-instance figure the targets are relative to), its own files of that size;
* ``shard-i`` (4): ``--shard-output`` over one shard's files, run one after another: 4 processes at
  once on this 2-core machine would measure their contention, not what one instance does;
* ``merge``: ``--partials-dir`` over the 4 partial files (no ground truth: the shards joined the
  labels): report, metrics and carry; run 3 times, the median reported;
* ``single_pass``: one instance over the whole window, for the identity check.

Targets: merged report (without its run bookkeeping: generated_at, duration_seconds, inputs),
metrics and carry identical to the single pass; each shard's wall time and peak memory <= 2.5 x the
reference's (a shard reads 2.5 x the reference's records); merge <= 5 s. Writes
``benchmarks/results/monitoring_sharded.json`` with the load average before each run.

Usage: ``.venv/bin/python -m benchmarks.bench_monitoring_sharded [--records N]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.bench_monitoring import ENDPOINT, HOURS, generate
from benchmarks.measure import ROOT, machine, measure, write_result

RECORDS = 10_000_000
SHARDS = 4
REFERENCE_FRACTION = 10  # the reference instance reads records / 10 (1M of issue 18's 10M)
SHARD_FACTOR = 2.5  # a shard's wall time and peak memory <= this x the reference's
MERGE_SECONDS = 5.0
MERGE_RUNS = 3
VOLATILE = ("generated_at", "duration_seconds", "inputs")


def _argv(root: Path, output: Path, *mode: str) -> list:
    return [
        sys.executable, str(ROOT / "monitoring" / "monitor.py"),
        "--baseline", str(root / "baseline"), "--ground-truth-dir", str(root / "ground_truth"),
        "--output-dir", str(output), "--carry", str(output / "carry.json"), "--endpoint", ENDPOINT,
        "--window-start", "2024-05-01T00:00:00Z", "--window-end", f"2024-05-01T{HOURS:02d}:00:00Z",
        "--thresholds", json.dumps({"psi": 0.2, "ks": 0.1, "auc_min": 0.8}), *mode,
    ]


def _measure(argv: list) -> dict:
    load = round(os.getloadavg()[0], 2)
    run = measure(argv)
    if run.returncode:
        raise SystemExit(f"{argv[3:]} failed with status {run.returncode}")
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "peak_rss_mib": run.peak_rss_mib,
            "load_average_1m_before": load}


def _outputs(output: Path) -> tuple:
    document = json.loads((output / "report.json").read_text())
    for key in VOLATILE:
        document.pop(key)
    return (document, json.loads((output / "cloudwatch_metrics.json").read_text()),
            json.loads((output / "carry.json").read_text()))


def _split(root: Path) -> list:
    files = sorted((root / "capture").rglob("*.jsonl"))
    directories = [root / "shards" / f"shard-{index}" for index in range(SHARDS)]
    for number, path in enumerate(files):
        link = directories[number % SHARDS] / path.relative_to(root / "capture")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return directories


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=RECORDS, help="records of the whole window")
    records = parser.parse_args(argv).records
    work = Path(tempfile.mkdtemp(prefix="bench-monitoring-sharded-"))
    try:
        started = time.perf_counter()
        window, small = work / "window", work / "reference"
        sizes = generate(window, records=records)
        generate(small, records=records // REFERENCE_FRACTION)
        generation = time.perf_counter() - started
        runs = {"reference": _measure(_argv(small, small / "out", "--capture-dir", str(small / "capture")))}
        partials = work / "partials"
        for index, directory in enumerate(_split(window)):
            # one host here: each shard's partial in its own folder (on SageMaker: one file per host)
            shard = _argv(window, work / f"shard-out-{index}", "--capture-dir", str(directory),
                          "--shard-output", str(partials / f"algo-{index + 1}"))
            runs[f"shard-{index + 1}"] = _measure(shard)
        # the merge reads no labels: it is not given them (as in the pipeline); the median of 3 runs
        # (each its own output folder: a run reads and replaces the carry next to its report)
        merges = [_measure([a for a in _argv(window, work / f"merged-{run}", "--partials-dir", str(partials))
                            if a not in ("--ground-truth-dir", str(window / "ground_truth"))])
                  for run in range(MERGE_RUNS)]
        runs["merge"] = dict(sorted(merges, key=lambda run: run["seconds"])[len(merges) // 2], runs=merges)
        runs["merge"]["partial_bytes"] = sum(path.stat().st_size for path in partials.rglob("*.partial.npz"))
        runs["single_pass"] = _measure(_argv(window, work / "single", "--capture-dir", str(window / "capture")))
        identical = all(_outputs(work / f"merged-{run}") == _outputs(work / "single") for run in range(MERGE_RUNS))
        report = _outputs(work / "single")[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = runs["reference"]
    shards = [runs[f"shard-{index + 1}"] for index in range(SHARDS)]
    checks = {
        "report_identical_to_single_pass": identical,
        "shard_seconds_within_2_5x_reference": all(s["seconds"] <= SHARD_FACTOR * reference["seconds"] for s in shards),
        "shard_peak_within_2_5x_reference": all(
            s["peak_rss_mib"] <= SHARD_FACTOR * reference["peak_rss_mib"] for s in shards),
        "merge_within_5_s": runs["merge"]["seconds"] <= MERGE_SECONDS,
    }
    path = write_result("monitoring_sharded", {
        "description": (
            f"monitoring/monitor.py over {records:,} records x 20 features in {SHARDS} shards (one process each, "
            "run in turn), then merged; reference: one instance over a tenth of the records; data generation "
            "is not timed."
        ),
        "records": records,
        "scaled_down_from": RECORDS if records != RECORDS else None,
        "shards": SHARDS,
        **sizes,
        "generation_seconds": round(generation, 1),
        "runs": runs,
        "records_per_second_single_pass": round(records / runs["single_pass"]["seconds"]),
        "summary": {"status": report["status"], "records": report["summary"]["records"],
                    "quality": report["summary"]["quality"]},
        "targets": {"shard_factor": SHARD_FACTOR, "merge_seconds": MERGE_SECONDS},
        "checks": checks,
        "meets_targets": all(checks.values()),
        "environment": machine(numpy=np.__version__),
    })
    for name, run in runs.items():
        print(f"{name}: {run['seconds']:.1f} s, {run['cpu_seconds']:.1f} CPU s, peak {run['peak_rss_mib']:.0f} MiB "
              f"(load {run['load_average_1m_before']})")
    print(json.dumps(checks), f"-> {path.relative_to(ROOT)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
