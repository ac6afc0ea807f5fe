"""Train the example XGBoost binary classifier.

Runs unchanged as the entry point of the SageMaker XGBoost framework container (image
``xgboost`` 3.0-5, Python 3.10, script mode) and locally in the tests. Imports only the stdlib, numpy, pandas
and xgboost, plus mlflow when it is installed.

Inputs (SageMaker sets the environment variables; a command-line flag wins over its variable):

- ``--train`` (``SM_CHANNEL_TRAIN``): a directory of header-less CSV files (or one file), the
  0/1 label in the first column, the features after it: ``preprocess.py``'s ``train/`` output.
- ``--validation`` (``SM_CHANNEL_VALIDATION``): the same for the validation split. Optional:
  without it there is no early stopping and no per-round validation metric.
- Hyperparameters, which SageMaker passes as ``--name value``: ``--max_depth 5 --eta 0.2
  --num_round 100 --subsample 0.9 --min_child_weight 1 --objective binary:logistic
  --early_stopping_rounds 10 --seed 42 --tree_method hist --nthread 0`` (0: every core).
  Unknown arguments (SageMaker adds its own) are logged and ignored.

Distributed (``training_instance_count`` > 1): SageMaker lists the cluster in ``SM_HOSTS`` and
this host in ``SM_CURRENT_HOST``. The first host (sorted) runs XGBoost's Rabit tracker on
``--tracker_port`` (default 9099, inter-container traffic inside the training cluster); every host
joins it through ``xgboost.collective`` and trains data-parallel on its shard: the files SageMaker
gave it (``ShardedByS3Key``, what the platform's pipeline uses) or, for a ``FullyReplicated``
channel (read from ``SM_INPUT_DATA_CONFIG``), every ``world``-th row. Histograms and evaluation
metrics are all-reduced, so every worker builds the same trees and stops at the same round; only
the first host saves the model and records the run. Needs XGBoost >= 2.1 (the collective API).

Output: ``<--model-dir>/xgboost-model`` (``SM_MODEL_DIR``, default ``/opt/ml/model``), the
Booster cut to its best iteration, in XGBoost's JSON model format: ``xgboost.Booster`` of the
1.7 container (and newer) loads it, and so does that container's built-in serving.

Experiment tracking: when ``MLFLOW_TRACKING_URI`` is set (on SageMaker the managed MLflow
tracking server ARN, which needs the ``sagemaker-mlflow`` plugin from ``requirements.txt``;
locally e.g. a ``file:`` URI), the hyperparameters, the per-round ``train_*``/``validation_*``
``auc`` and ``logloss`` (step = boosting round) and the metrics of the saved model
(``final_*`` at ``best_iteration``) are logged to the experiment ``MLFLOW_EXPERIMENT_NAME``
(default ``example-classifier``). Tracking never fails the job: if
mlflow is missing or the server cannot be reached, a warning is logged and training goes on.

Bad input data ends the job with exit status 1 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

LOG = logging.getLogger("train")

MODEL_FILE_NAME = "xgboost-model"
DEFAULT_EXPERIMENT = "example-classifier"
EVAL_METRICS = ["auc", "logloss"]  # early stopping watches the last one, on the validation set


class TrainingDataError(Exception):
    """A channel's data cannot be used; the message names the file and problem."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")))
    parser.add_argument("--train", type=Path, default=_path_or_none(env.get("SM_CHANNEL_TRAIN")))
    parser.add_argument("--validation", type=Path, default=_path_or_none(env.get("SM_CHANNEL_VALIDATION")))
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.2)
    parser.add_argument("--num_round", type=int, default=100)
    parser.add_argument("--subsample", type=float, default=0.9)
    parser.add_argument("--min_child_weight", type=float, default=1.0)
    parser.add_argument("--objective", default="binary:logistic")
    parser.add_argument("--early_stopping_rounds", type=int, default=10, help="0 disables early stopping")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tree_method", default="hist")
    parser.add_argument("--nthread", type=int, default=0, help="CPU threads; 0 uses every core")
    parser.add_argument("--tracker_port", type=int, default=9099, help="distributed: the Rabit tracker's port")
    parser.add_argument("--tracker_timeout", type=int, default=600,
                        help="distributed: seconds to wait for every host to join (and for each round)")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        LOG.warning("ignoring unknown arguments: %s", " ".join(unknown))
    if args.num_round < 1:
        parser.error("--num_round must be at least 1")
    return args


def _path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Cluster:
    """The training cluster as SageMaker describes it, seen from one host."""

    hosts: tuple[str, ...]  # sorted: the first one runs the tracker
    current_host: str
    train_replicated: bool  # the train channel is FullyReplicated: shard rows here

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world_size(self) -> int:
        return len(self.hosts)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0


def cluster_from_environment(env: os._Environ | dict) -> Cluster | None:
    """The cluster when SageMaker started more than one host, else None (single-process training)."""
    hosts = tuple(sorted(json.loads(env.get("SM_HOSTS") or "[]")))
    if len(hosts) < 2:
        return None
    current = env.get("SM_CURRENT_HOST", "")
    if current not in hosts:
        raise TrainingDataError(f"SM_CURRENT_HOST {current!r} is not one of SM_HOSTS {list(hosts)}")
    channels = json.loads(env.get("SM_INPUT_DATA_CONFIG") or "{}")
    distribution = channels.get("train", {}).get("S3DistributionType", "ShardedByS3Key")
    return Cluster(hosts, current, train_replicated=distribution == "FullyReplicated")


@contextlib.contextmanager
def collective(cluster: Cluster | None, port: int, timeout: int) -> Iterator[None]:
    """Join the cluster's XGBoost communicator (the leader also runs the tracker) for the block."""
    if cluster is None:
        yield
        return
    from xgboost import collective as xgb_collective
    from xgboost.tracker import RabitTracker

    tracker_ip = socket.gethostbyname(cluster.hosts[0])
    tracker = None
    if cluster.is_leader:
        tracker = RabitTracker(n_workers=cluster.world_size, host_ip=tracker_ip, port=port,
                               sortby="task", timeout=timeout)
        tracker.start()
    LOG.info("host %s: worker %s of %s, tracker %s:%s", cluster.current_host, cluster.rank,
             cluster.world_size, tracker_ip, port)
    with xgb_collective.CommunicatorContext(
        dmlc_tracker_uri=tracker_ip, dmlc_tracker_port=port, dmlc_task_id=str(cluster.rank), dmlc_timeout=timeout,
    ):
        yield
    if tracker is not None:
        tracker.wait_for(timeout)
        tracker.free()


def rows_of_worker(labels: np.ndarray, features: np.ndarray, cluster: Cluster | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """This worker's rows of a replicated channel: every ``world_size``-th row from its rank."""
    if cluster is None or not cluster.train_replicated:
        return labels, features
    return labels[cluster.rank :: cluster.world_size], features[cluster.rank :: cluster.world_size]


def load_channel(location: Path, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and features of every ``*.csv`` in a channel directory (or of one CSV file)."""
    if location.is_file():
        files = [location]
    elif location.is_dir():
        files = sorted(path for path in location.rglob("*.csv") if path.is_file())
    else:
        raise TrainingDataError(f"{channel} channel {location} does not exist")
    if not files:
        raise TrainingDataError(f"no *.csv file in the {channel} channel {location}")
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path, header=None)
        except pd.errors.EmptyDataError:
            raise TrainingDataError(f"{path}: file is empty") from None
        if frame.shape[1] < 2:
            raise TrainingDataError(f"{path}: expected the label and at least one feature per row")
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):
            raise TrainingDataError(f"{path}: non-numeric value; expected header-less numeric CSV")
        frames.append(frame)
    widths = {frame.shape[1] for frame in frames}
    if len(widths) > 1:
        raise TrainingDataError(f"{channel} channel {location}: files have different column counts")
    data = pd.concat(frames, ignore_index=True).to_numpy(dtype=np.float64)
    labels, features = data[:, 0], data[:, 1:]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise TrainingDataError(f"{channel} channel {location}: first column must be the 0/1 label")
    return labels, features


def log_to_mlflow(hyperparameters: dict, history: dict, final_metrics: dict) -> None:
    """Record the run in MLflow if ``MLFLOW_TRACKING_URI`` is set; only warns on failure."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        LOG.info("MLFLOW_TRACKING_URI is not set: run not tracked")
        return
    try:
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        LOG.warning("MLFLOW_TRACKING_URI is set but mlflow cannot be imported (%s): run not tracked", exc)
        return
    if uri.startswith("file:"):
        # Recent MLflow refuses the local file store unless asked; a file: URI asks for it.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
        job_name = os.environ.get("TRAINING_JOB_NAME")  # set by SageMaker in training jobs
        with mlflow.start_run(run_name=job_name) as run:
            if job_name:
                mlflow.set_tag("sagemaker.training_job_name", job_name)
            mlflow.log_params(hyperparameters)
            now = int(time.time() * 1000)
            per_round = [
                Metric(f"{split}_{name}", float(value), now, step)
                for split, metrics in history.items()
                for name, values in metrics.items()
                for step, value in enumerate(values)
            ]
            client = MlflowClient()
            for start in range(0, len(per_round), 1000):  # log_batch takes at most 1000 metrics
                client.log_batch(run.info.run_id, metrics=per_round[start : start + 1000])
            mlflow.log_metrics(final_metrics)
        LOG.info("run %s recorded in MLflow experiment %s", run.info.run_id, run.info.experiment_id)
    except Exception as exc:  # noqa: BLE001 - tracking trouble must not lose a trained model
        LOG.warning("MLflow tracking failed (%s: %s): run not (fully) tracked", type(exc).__name__, exc)


def _wandb_api_key(secret_name: str) -> str:
    """The W&B API key from Secrets Manager: the secret string itself, or its ``api_key`` field."""
    import boto3  # in every SageMaker framework image

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_name)["SecretString"]
    try:
        parsed = json.loads(value)
    except ValueError:
        return value.strip()
    return str(parsed["api_key"]) if isinstance(parsed, dict) else value.strip()


def log_to_wandb(hyperparameters: dict, history: dict, final_metrics: dict) -> None:
    """Record the run in Weights & Biases if ``WANDB_SECRET_NAME`` is set; only warns on failure.

    The API key never appears in the job definition: the job reads it from Secrets Manager at
    run time (the platform grants the execution role that one secret).
    """
    secret_name = os.environ.get("WANDB_SECRET_NAME", "").strip()
    if not secret_name:
        return
    try:
        import wandb
    except ImportError as exc:
        LOG.warning("WANDB_SECRET_NAME is set but wandb cannot be imported (%s): run not tracked", exc)
        return
    try:
        os.environ["WANDB_API_KEY"] = _wandb_api_key(secret_name)
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_EXPERIMENT,
            name=os.environ.get("TRAINING_JOB_NAME"),
            config=hyperparameters,
        )
        rounds = max((len(values) for metrics in history.values() for values in metrics.values()), default=0)
        for step in range(rounds):
            run.log(
                {f"{split}_{name}": float(values[step])
                 for split, metrics in history.items() for name, values in metrics.items() if step < len(values)},
                step=step,
            )
        run.summary.update(final_metrics)
        run.finish()
        LOG.info("run recorded in W&B project %s", os.environ.get("WANDB_PROJECT") or DEFAULT_EXPERIMENT)
    except Exception as exc:  # noqa: BLE001 - tracking trouble must not lose a trained model
        LOG.warning("W&B tracking failed (%s: %s): run not (fully) tracked", type(exc).__name__, exc)
    finally:
        os.environ.pop("WANDB_API_KEY", None)


def train(args: argparse.Namespace, cluster: Cluster | None = None) -> dict:
    """Train, save the model (the leader, in a cluster) and return the final metrics."""
    if args.train is None:
        raise TrainingDataError("no training data: pass --train or set SM_CHANNEL_TRAIN")
    train_labels, train_features = rows_of_worker(*load_channel(args.train, "train"), cluster)
    with collective(cluster, args.tracker_port, args.tracker_timeout):
        return _train(args, cluster, train_labels, train_features)


def _train(args: argparse.Namespace, cluster: Cluster | None, train_labels: np.ndarray,
           train_features: np.ndarray) -> dict:
    dtrain = xgb.DMatrix(train_features, label=train_labels)
    evals = [(dtrain, "train")]
    if args.validation is not None:
        val_labels, val_features = load_channel(args.validation, "validation")
        if val_features.shape[1] != train_features.shape[1]:
            raise TrainingDataError(
                f"validation channel {args.validation}: {val_features.shape[1]} features, "
                f"the train channel has {train_features.shape[1]}"
            )
        evals.append((xgb.DMatrix(val_features, label=val_labels), "validation"))
    early_stopping = args.early_stopping_rounds if len(evals) > 1 and args.early_stopping_rounds > 0 else None

    params = {
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "min_child_weight": args.min_child_weight,
        "objective": args.objective,
        "seed": args.seed,
        "tree_method": args.tree_method,
        "eval_metric": EVAL_METRICS,
    }
    if args.nthread > 0:
        params["nthread"] = args.nthread
    history: dict = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=args.num_round,
        evals=evals,
        evals_result=history,
        early_stopping_rounds=early_stopping,
        verbose_eval=True,
    )
    best_iteration = booster.best_iteration if early_stopping else booster.num_boosted_rounds() - 1
    booster = booster[: best_iteration + 1]
    final_metrics = {
        f"final_{split}_{name}": float(values[best_iteration])
        for split, metrics in history.items()
        for name, values in metrics.items()
    }
    final_metrics["best_iteration"] = float(best_iteration)
    if cluster is not None and not cluster.is_leader:
        LOG.info("worker %s done; the leader saves the model", cluster.rank)
        return final_metrics

    args.model_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.model_dir / MODEL_FILE_NAME
    model_path.write_bytes(bytes(booster.save_raw("json")))
    LOG.info("saved %s (%s trees); final metrics: %s", model_path, best_iteration + 1, final_metrics)

    hyperparameters = {
        name: getattr(args, name)
        for name in (
            "max_depth",
            "eta",
            "num_round",
            "subsample",
            "min_child_weight",
            "objective",
            "early_stopping_rounds",
            "seed",
            "tree_method",
        )
    }
    hyperparameters["instances"] = cluster.world_size if cluster else 1
    log_to_mlflow(hyperparameters, history, final_metrics)
    log_to_wandb(hyperparameters, history, final_metrics)
    return final_metrics


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    _configure_logging()
    args = parse_args(argv)
    try:
        train(args, cluster_from_environment(os.environ))
    except TrainingDataError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
