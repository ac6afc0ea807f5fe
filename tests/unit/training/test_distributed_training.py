"""Data-parallel XGBoost: the example's train.py as two real worker processes on loopback.

Each worker is started the way SageMaker starts a two-instance job (``SM_HOSTS``,
``SM_CURRENT_HOST``, its own shard of the train channel), joins the Rabit tracker the first host
runs, and the model they build together must score like the one a single process builds on all
the data: test AUC within ``AUC_TOLERANCE`` (the issue's 1 %).
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from training.example_classifier import train

TRAIN_PY = Path(train.__file__)
AUC_TOLERANCE = 0.01
HOSTS = ["127.0.0.1", "127.0.0.2"]  # both loopback: rank by sorted name, as on SageMaker
ARGS = ["--num_round", "40", "--early_stopping_rounds", "5", "--nthread", "1", "--tracker_timeout", "60"]
pytestmark = pytest.mark.xdist_group("distributed-training")


def _write(path: Path, labels: np.ndarray, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([labels, features]), delimiter=",", fmt="%.6g")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    features, labels = make_classification(n_samples=12_000, n_features=12, n_informative=6, flip_y=0.05,
                                           random_state=7)
    root = tmp_path_factory.mktemp("distributed")
    train_rows, validation_rows, test_rows = np.split(np.arange(len(labels)), [8_000, 10_000])
    halves = np.array_split(train_rows, 2)
    for shard, rows in enumerate(halves):  # what preprocess --train-shards 2 writes
        _write(root / "train" / f"train-{shard:05d}.csv", labels[rows], features[rows])  # single process
        _write(root / f"shard-{shard}" / f"train-{shard:05d}.csv", labels[rows], features[rows])
    _write(root / "validation" / "validation.csv", labels[validation_rows], features[validation_rows])
    return {"root": root, "test": (labels[test_rows], features[test_rows])}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(host: str, replicated: bool) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "MLFLOW_"))}
    env.update({"SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": host})
    if replicated:
        env["SM_INPUT_DATA_CONFIG"] = json.dumps({"train": {"S3DistributionType": "FullyReplicated"}})
    return env


def _run_cluster(root: Path, model_dirs: list[Path], replicated: bool) -> list[subprocess.CompletedProcess]:
    port = str(_free_port())
    workers, leader_lines = [], []
    for rank, host in enumerate(HOSTS):
        channel = root / "train" if replicated else root / f"shard-{rank}"
        argv = [sys.executable, str(TRAIN_PY), "--train", str(channel), "--validation", str(root / "validation"),
                "--model-dir", str(model_dirs[rank]), "--tracker_port", port, *ARGS]
        workers.append(subprocess.Popen(argv, env=_environment(host, replicated), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
        if rank == 0:
            # A follower that finds no tracker yet retries with XGBoost's back-off (~6 s in half the
            # runs): start it once the leader says its tracker runs, as a cluster's hosts do in practice.
            leader_lines = _lines_until(workers[0], "worker 0 of", deadline=time.monotonic() + 60)
    results = []
    for rank, worker in enumerate(workers):
        output, _ = worker.communicate(timeout=120)
        output = "".join(leader_lines) + output if rank == 0 else output
        results.append(subprocess.CompletedProcess(worker.args, worker.returncode, output))
    return results


def _lines_until(worker: subprocess.Popen, marker: str, deadline: float) -> list[str]:
    """The worker's output lines up to and including the first holding ``marker`` (all of them if it
    exits first or the deadline passes)."""
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(worker.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and selector.select(timeout=deadline - time.monotonic()):
            line = worker.stdout.readline()
            lines.append(line)
            if not line or marker in line:
                break
    return lines


def _test_auc(model_dir: Path, test: tuple[np.ndarray, np.ndarray]) -> float:
    booster = xgb.Booster(model_file=str(model_dir / train.MODEL_FILE_NAME))
    labels, features = test
    return float(roc_auc_score(labels, booster.predict(xgb.DMatrix(features))))


@pytest.fixture(scope="module")
def single_process_auc(dataset: dict, tmp_path_factory: pytest.TempPathFactory) -> float:
    model_dir = tmp_path_factory.mktemp("single-model")
    root = dataset["root"]
    assert train.main(["--train", str(root / "train"), "--validation", str(root / "validation"),
                       "--model-dir", str(model_dir), *ARGS[:-2]]) == 0
    return _test_auc(model_dir, dataset["test"])


def test_two_workers_train_one_model_as_good_as_one_process(dataset: dict, single_process_auc: float,
                                                            tmp_path: Path) -> None:
    """ShardedByS3Key, as the pipeline runs it (a FullyReplicated channel differs only in
    ``rows_of_worker``, tested below without the cost of two more processes)."""
    model_dirs = [tmp_path / "leader", tmp_path / "follower"]
    results = _run_cluster(dataset["root"], model_dirs, replicated=False)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
    assert "worker 1 of 2" in results[1].stdout  # really a two-worker cluster, not two lone runs
    # Only the leader saves the model (SageMaker uploads /opt/ml/model of every host).
    assert (model_dirs[0] / train.MODEL_FILE_NAME).is_file()
    assert not (model_dirs[1] / train.MODEL_FILE_NAME).exists()
    distributed_auc = _test_auc(model_dirs[0], dataset["test"])
    assert abs(distributed_auc - single_process_auc) <= AUC_TOLERANCE, (distributed_auc, single_process_auc)


def test_a_replicated_channel_is_sharded_by_row_and_a_sharded_one_is_kept() -> None:
    labels, features = np.arange(10.0), np.arange(20.0).reshape(10, 2)
    replicated = train.cluster_from_environment({
        "SM_HOSTS": json.dumps(["algo-2", "algo-1"]), "SM_CURRENT_HOST": "algo-2",
        "SM_INPUT_DATA_CONFIG": json.dumps({"train": {"S3DistributionType": "FullyReplicated"}}),
    })
    assert (replicated.rank, replicated.world_size, replicated.is_leader) == (1, 2, False)
    assert train.rows_of_worker(labels, features, replicated)[0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    sharded = train.cluster_from_environment({"SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
                                              "SM_CURRENT_HOST": "algo-1"})
    assert train.rows_of_worker(labels, features, sharded)[0].tolist() == labels.tolist()
    assert train.cluster_from_environment({"SM_HOSTS": json.dumps(["algo-1"]), "SM_CURRENT_HOST": "algo-1"}) is None
    with pytest.raises(train.TrainingDataError, match="SM_CURRENT_HOST"):
        train.cluster_from_environment({"SM_HOSTS": json.dumps(["algo-1", "algo-2"]), "SM_CURRENT_HOST": "algo-9"})
