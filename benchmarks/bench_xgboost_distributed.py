"""The XGBoost example's distributed training (issue 18): ``train.py`` as 2 processes (Rabit tracker
on loopback, one thread each, each its own ``ShardedByS3Key`` part) against 1 process (one thread;
two threads: the same two cores), test AUC and time.

Data goes through the example's own ``preprocess.py --train-shards 2`` (the pipeline's layout):

* ``example``: the example data set (``make_dataset.py``: 569 rows, 30 features; ~400 train rows);
* ``large``: 500,000 synthetic rows of 30 features (``make_classification``, seeded; 350,000 train
  rows), where the boosting rounds outweigh the start-up and the per-round all-reduce.

Each worker is started as SageMaker starts a two-instance job (``SM_HOSTS``, ``SM_CURRENT_HOST``,
its own part of the train channel), as ``tests/unit/training/test_distributed_training.py`` does;
1 process reads both parts. Hyperparameters: train.py's defaults (100 rounds, early stopping after
10 on the validation split). Test AUC of the saved model (the leader's) on the test split.
Runs are interleaved (load hits every case alike), ``--repeats`` each, median reported (and the
best wall time: on the shared 2-core machine the load decides the wall time, the CPU seconds much
less); per run wall seconds, CPU seconds of the workers (user + sys), peak RSS of all workers
together and the load average before it.

Target (issue 18): 2 processes within 1 % AUC of 1 process; times reported. Writes
``benchmarks/results/xgboost_distributed.json``.

Usage: ``.venv/bin/python -m benchmarks.bench_xgboost_distributed [--repeats 3] [--workloads ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from benchmarks.measure import ROOT, _rss_kib, _tree, machine, write_result

EXAMPLE = ROOT / "training" / "example_classifier"
HOSTS = ["127.0.0.1", "127.0.0.2"]  # both loopback: rank by sorted name, as on SageMaker
WORKLOADS = ("example", "large")
LARGE_ROWS = 500_000
CASES = {  # name: (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes (Rabit), 1 thread each": (2, 1),
}
AUC_TOLERANCE = 0.01
# train.py saves "xgboost-model" (the container's name, no extension): XGBoost guesses JSON, rightly
warnings.filterwarnings("ignore", message=".*Unknown file format.*")


def prepare(workload: str, root: Path) -> Path:
    """Raw data through the example's preprocess.py into ``root/data`` (train in 2 parts)."""
    raw = root / "raw" / "data.csv"
    raw.parent.mkdir(parents=True)
    if workload == "example":
        subprocess.run([sys.executable, str(EXAMPLE / "make_dataset.py"), "--output", str(raw)], check=True,
                       capture_output=True)
    else:
        from sklearn.datasets import make_classification

        features, labels = make_classification(n_samples=LARGE_ROWS, n_features=30, n_informative=12,
                                                flip_y=0.05, random_state=18)
        frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
        frame["target"] = labels
        frame.to_csv(raw, index=False, float_format="%.6g")
    data = root / "data"
    subprocess.run([sys.executable, str(EXAMPLE / "preprocess.py"), "--input-dir", str(raw.parent),
                    "--output-dir", str(data), "--train-shards", "2"], check=True, capture_output=True)
    for rank, part in enumerate(sorted((data / "train").glob("*.csv"))):  # what each instance receives
        (data / f"shard-{rank}").mkdir()
        (data / f"shard-{rank}" / part.name).symlink_to(part)
    return data


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(data: Path, processes: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        model_dirs = [Path(directory) / f"model-{rank}" for rank in range(processes)]
        port = str(_free_port())
        base = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "MLFLOW_"))}
        workers = []
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        for rank in range(processes):
            env = dict(base, OMP_NUM_THREADS=str(threads))
            channel = data / "train"
            if processes > 1:
                env.update(SM_HOSTS=json.dumps(HOSTS[:processes]), SM_CURRENT_HOST=HOSTS[rank])
                channel = data / f"shard-{rank}"
            argv = [sys.executable, str(EXAMPLE / "train.py"), "--train", str(channel),
                    "--validation", str(data / "validation"), "--model-dir", str(model_dirs[rank]),
                    "--nthread", str(threads), "--tracker_port", port, "--tracker_timeout", "120"]
            workers.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        peak = 0
        while any(worker.poll() is None for worker in workers):
            peak = max(peak, sum(_rss_kib(pid) for worker in workers for pid in _tree(worker.pid)))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for worker in workers:
            if worker.returncode:
                raise RuntimeError(worker.stderr.read().decode(errors="replace")[-2000:])
            worker.stderr.close()
        booster = xgb.Booster(model_file=str(model_dirs[0] / "xgboost-model"))
        test = pd.read_csv(data / "test" / "test.csv", header=None).to_numpy(dtype=np.float64)
        auc = float(roc_auc_score(test[:, 0], booster.predict(xgb.DMatrix(test[:, 1:]))))
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak / 1024, 1),
            "test_auc": round(auc, 5), "rounds": booster.num_boosted_rounds()}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    args = parser.parse_args(argv)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-xgboost-distributed-") as directory:
        for workload in args.workloads:
            data = prepare(workload, Path(directory) / workload)
            rows = {split: sum(1 for path in (data / split).glob("*.csv") for _ in path.open())
                    for split in ("train", "validation", "test")}
            runs: dict = {case: [] for case in CASES}
            for _ in range(args.repeats):
                for case, (processes, threads) in CASES.items():
                    load = round(os.getloadavg()[0], 2)
                    runs[case].append({**run(data, processes, threads), "load_average_1m_before": load})
            summary = {case: {key: statistics.median(r[key] for r in case_runs)
                              for key in ("wall_s", "cpu_s", "peak_rss_mib", "test_auc")}
                       | {"best_wall_s": min(r["wall_s"] for r in case_runs), "runs": case_runs}
                       for case, case_runs in runs.items()}
            one, two = summary["1 process, 1 thread"], summary["2 processes (Rabit), 1 thread each"]
            difference = two["test_auc"] - one["test_auc"]
            results[workload] = {
                "rows": rows, **summary,
                "auc_difference_2p_vs_1p": round(difference, 5),
                "within_1_percent_auc": abs(difference) <= AUC_TOLERANCE * one["test_auc"],
                "wall_speedup_2p_vs_1p_1_thread": round(one["wall_s"] / two["wall_s"], 2),
            }
            print(f"{workload}: " + "; ".join(
                f"{case}: AUC {s['test_auc']:.4f}, {s['wall_s']:.1f} s wall (best {s['best_wall_s']:.1f}), "
                f"{s['cpu_s']:.1f} s CPU, "
                f"{s['peak_rss_mib']:.0f} MiB" for case, s in summary.items()))
    met = all(result["within_1_percent_auc"] for result in results.values())
    path = write_result("xgboost_distributed", {
        "description": (
            "training/example_classifier/train.py: 2 processes (Rabit tracker on loopback, ShardedByS3Key parts "
            "from preprocess.py --train-shards 2, 1 thread each) vs 1 process (1 and 2 threads); train.py's default "
            "hyperparameters; test AUC of the saved model; median of the runs, interleaved"),
        "repeats": args.repeats,
        "workloads": results,
        "targets": {"auc_tolerance_relative": AUC_TOLERANCE},
        "meets_targets": met,
        "environment": machine(xgboost=xgb.__version__, numpy=np.__version__),
    })
    print(f"within 1 % AUC: {met} -> {path.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
