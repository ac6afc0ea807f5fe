"""The GNN example's distributed training (issue 18): 2 processes (torchrun, gloo, one thread each)
against 1 process (one thread, and two threads: the same two cores), time and test accuracy.

Two workloads: ``default`` (train.py's defaults, the test's graph: 2,000 nodes, 10 epochs) and
``large`` (30,000 nodes, 3 epochs, hidden 64, batches of 1,024), where the forward and backward
passes outweigh the start-up and the gradient all-reduce. Runs are interleaved (load hits every case
alike); the median of ``--repeats`` is reported. Needs torch and torch-geometric (`make test-gnn`
installs them); without them it says so and exits 0.

Writes ``benchmarks/results/gnn_ddp.json``. Usage: ``.venv/bin/python -m benchmarks.bench_gnn_ddp``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.measure import machine, write_result

TRAIN = Path(__file__).resolve().parents[1] / "training" / "example_gnn" / "train.py"
WORKLOADS = {
    "default": [],
    "large": ["--nodes", "30000", "--epochs", "3", "--hidden", "64", "--batch-size", "1024"],
}
CASES = {  # name: (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes (DDP, gloo), 1 thread each": (2, 1),
}


def run(processes: int, threads: int, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        launcher = [sys.executable] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        started = time.perf_counter()
        done = subprocess.run([*launcher, str(TRAIN), "--model-dir", directory, *args], env=env,
                              capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        metrics = json.loads((Path(directory) / "metrics.json").read_text())
    return {"train_s": metrics["train_seconds"], "wall_s": round(wall, 2), "accuracy": metrics["test_accuracy"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    args = parser.parse_args(argv)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torch_geometric") is None:
        print("bench_gnn_ddp: torch / torch-geometric not installed (make test-gnn installs them): skipped")
        return 0
    import torch
    import torch_geometric

    load_before = machine()["load_average_1m"]
    results = {}
    for workload in args.workloads:
        runs: dict[str, list[dict]] = {case: [] for case in CASES}
        for _ in range(args.repeats):
            for case, (processes, threads) in CASES.items():
                runs[case].append(run(processes, threads, WORKLOADS[workload]))
        results[workload] = {
            "arguments": WORKLOADS[workload] or "train.py defaults",
            **{case: {key: statistics.median(r[key] for r in case_runs) for key in ("train_s", "wall_s", "accuracy")}
               | {"runs": case_runs} for case, case_runs in runs.items()},
        }
        one = results[workload]["1 process, 1 thread"]
        two = results[workload]["2 processes (DDP, gloo), 1 thread each"]
        results[workload]["accuracy_difference_2p_vs_1p"] = round(two["accuracy"] - one["accuracy"], 4)
        results[workload]["train_speedup_2p_vs_1p_1thread"] = round(one["train_s"] / two["train_s"], 2)
    payload = {"machine": machine(torch=torch.__version__, torch_geometric=torch_geometric.__version__),
               "load_average_1m_start": load_before, "repeats": args.repeats, "results": results}
    path = write_result("gnn_ddp", payload)
    print(json.dumps({w: {k: v for k, v in r.items() if k != "arguments"} for w, r in results.items()},
                     indent=1, default=str)[:4000])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
