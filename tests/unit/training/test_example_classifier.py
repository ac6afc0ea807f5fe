"""The example ML project, end to end: its scripts run in-process on scikit-learn's bundled data.

Directories are laid out like the containers' ``/opt/ml/processing/...``; training is shortened
(``FAST_TRAIN``) to keep the module fast. Nothing here touches the network.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_platform.pipelines.images import MINIMUM_PYTHON
import xgboost as xgb

from training.example_classifier import evaluate, make_dataset, preprocess, train

SCRIPTS_DIR = Path(preprocess.__file__).parent
# One thread: parallel test workers on a small machine must not fight over OpenMP threads.
FAST_TRAIN = ["--num_round", "30", "--early_stopping_rounds", "5", "--nthread", "1"]
EXPERIMENT = "example-classifier-test"
MIN_AUC = 0.9
MIN_ACCURACY = 0.9
N_FEATURES = 30
SPLITS = ("train", "validation", "test")
SAGEMAKER_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "SM_MODEL_DIR",
    "SM_CHANNEL_TRAIN",
    "SM_CHANNEL_VALIDATION",
    "TRAINING_JOB_NAME",
)


@pytest.fixture(autouse=True)
def _no_sagemaker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the SageMaker/MLflow variables they set themselves."""
    for name in SAGEMAKER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "breast_cancer.csv"
    assert make_dataset.main(["--output", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def raw_frame(raw_csv: Path) -> pd.DataFrame:
    return pd.read_csv(raw_csv)


def run_preprocess(input_dir: Path, output_dir: Path, *extra: str) -> int:
    return preprocess.main(["--input-dir", str(input_dir), "--output-dir", str(output_dir), *extra])


def run_train(processing: Path, model_dir: Path, *extra: str) -> int:
    return train.main(
        [
            "--train",
            str(processing / "train"),
            "--validation",
            str(processing / "validation"),
            "--model-dir",
            str(model_dir),
            *FAST_TRAIN,
            *extra,
        ]
    )


def run_evaluate(model_dir: Path, test_dir: Path, output_dir: Path) -> int:
    return evaluate.main(
        ["--model-dir", str(model_dir), "--test-dir", str(test_dir), "--output-dir", str(output_dir),
         "--baseline-dir", str(test_dir.parent / "baseline")]
    )


def tar_model(model_file: Path, destination_dir: Path) -> Path:
    """Package the model directory the way SageMaker hands it to the next step."""
    destination_dir.mkdir(parents=True, exist_ok=True)
    archive = destination_dir / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_file, arcname=model_file.name)
    return archive


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, raw_csv: Path) -> dict[str, Path]:
    """make_dataset -> preprocess -> train (tracked in a local MLflow store) -> model.tar.gz -> evaluate."""
    root = tmp_path_factory.mktemp("pipeline")
    processing = root / "processing"
    (processing / "input").mkdir(parents=True)
    shutil.copy(raw_csv, processing / "input" / "breast_cancer.csv")
    assert run_preprocess(processing / "input", processing) == 0

    tracking_uri = (root / "mlruns").as_uri()
    model_dir = root / "model"
    with pytest.MonkeyPatch.context() as mp:
        for name in SAGEMAKER_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # recent MLflow guards its file store
        # train.py sets MLflow's process-wide tracking URI and experiment: restore them afterwards.
        mp.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None, raising=False)
        mp.setattr("mlflow.tracking.fluent._active_experiment_id", None, raising=False)
        assert run_train(processing, model_dir) == 0

    tar_model(model_dir / "xgboost-model", processing / "model")
    assert run_evaluate(processing / "model", processing / "test", processing / "evaluation") == 0
    return {"root": root, "processing": processing, "model_dir": model_dir, "tracking_uri": tracking_uri}


def read_split(processing: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(processing / name / f"{name}.csv", header=None)


def read_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def files_under(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --- preprocess ---------------------------------------------------------------------------------


def test_preprocess_writes_header_less_label_first_splits(pipeline, raw_frame) -> None:
    processing = pipeline["processing"]
    splits = {name: read_split(processing, name) for name in SPLITS}
    for name, frame in splits.items():
        assert frame.shape[1] == N_FEATURES + 1, name
        assert set(frame[0].unique()) == {0, 1}, f"{name}: label column must come first"
        assert all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes), f"{name} has a header row"
    sizes = {name: len(frame) for name, frame in splits.items()}
    assert sum(sizes.values()) == len(raw_frame)
    assert sizes["validation"] == pytest.approx(0.15 * len(raw_frame), abs=2)
    assert sizes["test"] == pytest.approx(0.15 * len(raw_frame), abs=2)

    # Stratified: every split keeps the class balance of the whole data set.
    overall = raw_frame["target"].mean()
    for name, frame in splits.items():
        assert frame[0].mean() == pytest.approx(overall, abs=0.02), name

    # Lossless: the splits together hold exactly the raw rows, label moved to the front.
    features = read_json(processing / "baseline" / "feature_names.json")
    assert features == [c for c in raw_frame.columns if c != "target"]
    expected = raw_frame[["target", *features]].to_numpy(dtype=float)
    actual = pd.concat(splits.values()).to_numpy(dtype=float)
    assert np.array_equal(np.unique(expected, axis=0), np.unique(actual, axis=0))
    assert len(actual) == len(expected)


def test_baseline_describes_the_training_split(pipeline) -> None:
    processing = pipeline["processing"]
    baseline = read_json(processing / "baseline" / "baseline.json")
    train_split = read_split(processing, "train")
    features = read_json(processing / "baseline" / "feature_names.json")

    assert set(baseline) == {
        "version",
        "target_column",
        "feature_names",
        "row_count",
        "features",
        "label_distribution",
    }
    assert baseline["version"] == 1
    assert baseline["target_column"] == "target"
    assert baseline["feature_names"] == features
    assert list(baseline["features"]) == features
    assert baseline["row_count"] == len(train_split)
    assert baseline["label_distribution"] == {
        "0": int((train_split[0] == 0).sum()),
        "1": int((train_split[0] == 1).sum()),
    }

    quantile_keys = ["0.01", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99"]
    for position, name in enumerate(features, start=1):
        stats = baseline["features"][name]
        values = train_split[position].to_numpy(dtype=float)
        assert set(stats) == {"type", "count", "mean", "std", "min", "max", "quantiles", "histogram"}
        assert stats["type"] == "numeric"
        assert stats["count"] == len(values)
        assert stats["mean"] == pytest.approx(values.mean())
        assert stats["std"] == pytest.approx(values.std(ddof=1))
        assert (stats["min"], stats["max"]) == (values.min(), values.max())
        assert list(stats["quantiles"]) == quantile_keys
        quantiles = list(stats["quantiles"].values())
        assert quantiles == sorted(quantiles)
        assert stats["quantiles"]["0.5"] == pytest.approx(np.median(values))
        edges, counts = stats["histogram"]["bin_edges"], stats["histogram"]["counts"]
        assert edges == sorted(set(edges)), "bin edges must be unique and ascending"
        assert 2 <= len(edges) <= 11
        assert (edges[0], edges[-1]) == (stats["min"], stats["max"])
        assert len(counts) == len(edges) - 1
        assert sum(counts) == len(values)


def test_preprocess_writes_one_train_part_per_training_instance(tmp_path, raw_csv) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert run_preprocess(raw_csv.parent, single) == 0
    assert run_preprocess(raw_csv.parent, sharded, "--train-shards", "3") == 0
    parts = sorted((sharded / "train").glob("*.csv"))
    assert [part.name for part in parts] == ["train-00000.csv", "train-00001.csv", "train-00002.csv"]
    whole = pd.read_csv(single / "train" / "train.csv", header=None)
    together = pd.concat([pd.read_csv(part, header=None) for part in parts], ignore_index=True)
    pd.testing.assert_frame_equal(together, whole)  # the same rows, split, none lost or repeated
    with pytest.raises(SystemExit, match="2"):
        run_preprocess(raw_csv.parent, tmp_path / "bad", "--train-shards", "0")


def test_preprocess_reads_every_csv_and_a_custom_target_column(tmp_path, raw_frame) -> None:
    frame = raw_frame.rename(columns={"target": "label"})
    input_dir = tmp_path / "input"
    (input_dir / "2024").mkdir(parents=True)
    frame.iloc[:300].to_csv(input_dir / "2023.csv", index=False)
    # Same columns in another order, in a sub-directory: still one data set, in the column order of
    # the first file in path order.
    frame.iloc[300:, ::-1].to_csv(input_dir / "2024" / "data.csv", index=False)

    assert run_preprocess(input_dir, tmp_path / "out", "--target-column", "label") == 0
    baseline = read_json(tmp_path / "out" / "baseline" / "baseline.json")
    assert baseline["target_column"] == "label"
    assert "label" not in baseline["feature_names"]
    assert baseline["feature_names"] == [c for c in frame.columns if c != "label"]
    assert sum(len(read_split(tmp_path / "out", name)) for name in SPLITS) == len(frame)


def _mutate(frame: pd.DataFrame, case: str) -> pd.DataFrame:
    frame = frame.copy()
    if case == "missing_target":
        return frame.drop(columns=["target"])
    if case == "non_binary_target":
        frame.loc[[3, 7], "target"] = 2
    elif case == "nan_value":
        frame["mean area"] = frame["mean area"].astype(float)
        frame.loc[10, "mean area"] = np.nan
    elif case == "infinite_value":
        frame.loc[4, "worst area"] = np.inf
    elif case == "non_numeric_feature":
        frame["mean texture"] = frame["mean texture"].astype(str)
        frame.loc[5, "mean texture"] = "high"
    elif case == "too_few_rows":
        return frame.groupby("target").head(15)
    elif case == "tiny_class":
        return pd.concat([frame[frame["target"] == 1], frame[frame["target"] == 0].head(3)])
    return frame


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_target", ["data.csv", "target column 'target' not found"]),
        ("non_binary_target", ["data.csv", "target column 'target'", "only 0 and 1", "2"]),
        ("nan_value", ["data.csv", "column 'mean area'", "1 missing value", "line 12"]),
        ("infinite_value", ["data.csv", "column 'worst area'", "infinite", "line 6"]),
        ("non_numeric_feature", ["data.csv", "feature column 'mean texture' is not numeric", "'high'"]),
        ("too_few_rows", ["data.csv", "only 30 data row", "at least 50"]),
        ("tiny_class", ["data.csv", "3 row(s) of class 0", "at least 5"]),
    ],
)
def test_preprocess_rejects_broken_datasets(tmp_path, capsys, raw_frame, case, fragments) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    _mutate(raw_frame, case).to_csv(input_dir / "data.csv", index=False)

    assert run_preprocess(input_dir, tmp_path / "out") != 0
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("preprocess: error: ")
    for fragment in fragments:
        assert fragment in message
    assert not (tmp_path / "out").exists(), "nothing is written for a rejected data set"


@pytest.mark.parametrize(
    ("files", "fragments"),
    [
        ({}, ["no *.csv file found under"]),
        ({"notes.txt": "not data\n"}, ["no *.csv file found under"]),
        ({"data.csv": ""}, ["data.csv: file is empty"]),
        ({"data.csv": "a,b,target\n"}, ["data.csv: no data rows"]),
        ({"a.csv": "x,target\n1,0\n", "b.csv": "y,target\n1,0\n"}, ["b.csv: columns differ"]),
    ],
)
def test_preprocess_rejects_missing_or_inconsistent_files(tmp_path, capsys, files, fragments) -> None:
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    for name, text in files.items():
        (input_dir / name).write_text(text)

    assert run_preprocess(input_dir, tmp_path / "out") != 0
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message


# --- train ----------------------------------------------------------------------------------------


def load_booster(model_file: Path) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(model_file.read_bytes()))
    return booster


def test_train_saves_a_json_booster(pipeline) -> None:
    model_file = pipeline["model_dir"] / "xgboost-model"
    assert model_file.read_bytes().startswith(b"{"), "saved in XGBoost's JSON model format"
    booster = load_booster(model_file)
    assert booster.num_features() == N_FEATURES
    assert 1 <= booster.num_boosted_rounds() <= 30


def test_train_run_is_recorded_in_mlflow(pipeline, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=pipeline["tracking_uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["max_depth"] == "5"
    assert run.data.params["num_round"] == "30"
    assert run.data.params["objective"] == "binary:logistic"
    final = ("final_validation_auc", "final_validation_logloss", "final_train_auc", "final_train_logloss")
    for name in (*final, "best_iteration", "validation_auc", "validation_logloss"):
        assert name in run.data.metrics, name

    trees = load_booster(pipeline["model_dir"] / "xgboost-model").num_boosted_rounds()
    assert run.data.metrics["best_iteration"] == trees - 1
    for name in ("validation_auc", "validation_logloss"):
        history = client.get_metric_history(run.info.run_id, name)
        steps = sorted(metric.step for metric in history)
        assert steps == list(range(len(steps))) and len(steps) >= trees, name
    assert run.data.metrics["final_validation_auc"] >= MIN_AUC
    best = [
        m.value for m in client.get_metric_history(run.info.run_id, "validation_auc") if m.step == trees - 1
    ]
    assert best == [run.data.metrics["final_validation_auc"]]


def test_train_reads_sagemaker_env_and_ignores_unknown_args(pipeline, tmp_path, monkeypatch) -> None:
    processing = pipeline["processing"]
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(processing / "train"))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(processing / "validation"))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    argv = [
        "--num_round",
        "3",
        "--nthread",
        "1",
        "--sagemaker_region",
        "eu-west-1",
        "--unknown-flag",
        "1",
        "--verbose",
    ]

    assert train.main(argv) == 0
    assert load_booster(tmp_path / "model" / "xgboost-model").num_boosted_rounds() == 3


def test_train_without_mlflow_warns_and_still_trains(pipeline, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # "import mlflow" now raises ImportError
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())

    assert run_train(pipeline["processing"], tmp_path / "model", "--num_round", "3") == 0
    assert (tmp_path / "model" / "xgboost-model").is_file()
    assert "mlflow cannot be imported" in caplog.text
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        ("no_train_channel", "no training data: pass --train or set SM_CHANNEL_TRAIN"),
        ("header_row", "non-numeric value"),
        ("bad_label", "first column must be the 0/1 label"),
    ],
)
def test_train_rejects_unusable_channels(tmp_path, capsys, raw_frame, layout, fragment) -> None:
    channel = tmp_path / "train"
    channel.mkdir()
    data = raw_frame[["target", *[c for c in raw_frame.columns if c != "target"]]]
    if layout == "header_row":
        data.to_csv(channel / "train.csv", index=False)
    elif layout == "bad_label":
        data.assign(target=data["target"] * 3).to_csv(channel / "train.csv", index=False, header=False)
    argv = ["--model-dir", str(tmp_path / "model"), *FAST_TRAIN]
    if layout != "no_train_channel":
        argv += ["--train", str(channel)]

    assert train.main(argv) != 0
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1, message
    assert fragment in message


# --- evaluate -------------------------------------------------------------------------------------


def test_evaluation_report_layout_and_quality_gate(pipeline) -> None:
    processing = pipeline["processing"]
    report = read_json(processing / "evaluation" / "evaluation.json")
    test_rows = len(read_split(processing, "test"))

    assert set(report) == {"binary_classification_metrics", "test_row_count"}
    assert report["test_row_count"] == test_rows
    metrics = report["binary_classification_metrics"]
    assert set(metrics) == {"accuracy", "auc", "precision", "recall", "f1", "logloss", "confusion_matrix"}
    for name in ("accuracy", "auc", "precision", "recall", "f1", "logloss"):
        assert set(metrics[name]) == {"value", "standard_deviation"}, name
        assert metrics[name]["standard_deviation"] == "NaN"
        assert isinstance(metrics[name]["value"], float)
    for name in ("accuracy", "auc", "precision", "recall", "f1"):
        assert 0.0 <= metrics[name]["value"] <= 1.0, name
    assert metrics["logloss"]["value"] > 0.0

    matrix = metrics["confusion_matrix"]
    assert set(matrix) == {"0", "1"} and all(set(row) == {"0", "1"} for row in matrix.values())
    assert sum(sum(row.values()) for row in matrix.values()) == test_rows
    correct = matrix["0"]["0"] + matrix["1"]["1"]
    assert metrics["accuracy"]["value"] == pytest.approx(correct / test_rows)

    # The default quality gate of the platform's pipeline.
    assert metrics["auc"]["value"] >= MIN_AUC
    assert metrics["accuracy"]["value"] >= MIN_ACCURACY


def test_evaluate_writes_the_monitoring_baseline_with_the_models_score_references(pipeline) -> None:
    """What the registered baseline carries for the monitoring job's score and class tests."""
    from monitoring import drift

    processing = pipeline["processing"]
    training = read_json(processing / "baseline" / "baseline.json")
    baseline = read_json(processing / "evaluation" / "baseline.json")
    test_rows = len(read_split(processing, "test"))
    assert {key: baseline[key] for key in training} == training  # the training baseline, unchanged
    assert baseline["prediction"]["count"] == test_rows == sum(baseline["prediction"]["histogram"]["counts"])
    classes = baseline["prediction_classes"]
    assert classes["0"] + classes["1"] == test_rows
    matrix = read_json(processing / "evaluation" / "evaluation.json")["binary_classification_metrics"]["confusion_matrix"]
    assert classes["1"] == matrix["0"]["1"] + matrix["1"]["1"]  # predicted positives at the 0.5 threshold
    drift.validate_baseline(baseline)
    tests = drift.DriftAccumulator(baseline).test_inputs()
    assert {"prediction.score", "prediction.class"} <= set(tests)


def test_evaluate_accepts_an_extracted_model(pipeline, tmp_path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(pipeline["model_dir"] / "xgboost-model", model_dir / "xgboost-model")
    processing = pipeline["processing"]

    assert run_evaluate(model_dir, processing / "test", tmp_path / "evaluation") == 0
    assert (tmp_path / "evaluation" / "evaluation.json").read_bytes() == (
        processing / "evaluation" / "evaluation.json"
    ).read_bytes()


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("no_model", "no model in"),
        ("corrupt_archive", "not a readable tar.gz archive"),
        ("archive_without_model", "no xgboost-model inside the archive"),
        ("empty_test_set", "is empty: no data rows"),
        ("single_class_test_set", "only one class present"),
        ("feature_mismatch", "the model expects 30"),
    ],
)
def test_evaluate_rejects_missing_model_or_unusable_test_set(
    pipeline, tmp_path, capsys, case, fragment
) -> None:
    model_dir, test_dir = tmp_path / "model", tmp_path / "test"
    model_dir.mkdir()
    test_dir.mkdir()
    test_split = read_split(pipeline["processing"], "test")
    test_split.to_csv(test_dir / "test.csv", header=False, index=False)
    if case != "no_model":
        tar_model(pipeline["model_dir"] / "xgboost-model", model_dir)
    if case == "corrupt_archive":
        (model_dir / "model.tar.gz").write_bytes(b"not a tar archive")
    elif case == "archive_without_model":
        other = tmp_path / "README.txt"
        other.write_text("no model here\n")
        tar_model(other, model_dir)
    elif case == "empty_test_set":
        (test_dir / "test.csv").write_text("")
    elif case == "single_class_test_set":
        test_split[test_split[0] == 1].to_csv(test_dir / "test.csv", header=False, index=False)
    elif case == "feature_mismatch":
        test_split.iloc[:, :-1].to_csv(test_dir / "test.csv", header=False, index=False)

    assert run_evaluate(model_dir, test_dir, tmp_path / "evaluation") != 0
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("evaluate: error: ")
    assert fragment in message
    assert not (tmp_path / "evaluation" / "evaluation.json").exists()


# --- determinism and container compatibility ----------------------------------------------------


def test_same_input_and_seed_give_byte_identical_outputs(pipeline, tmp_path) -> None:
    processing = pipeline["processing"]
    again = tmp_path / "processing"
    assert run_preprocess(processing / "input", again) == 0
    for name in ("train", "validation", "test", "baseline"):
        assert files_under(again / name) == files_under(processing / name), name

    assert run_train(again, tmp_path / "model") == 0
    model = (tmp_path / "model" / "xgboost-model").read_bytes()
    assert model == (pipeline["model_dir"] / "xgboost-model").read_bytes()

    tar_model(tmp_path / "model" / "xgboost-model", again / "model")
    assert run_evaluate(again / "model", again / "test", again / "evaluation") == 0
    assert files_under(again / "evaluation") == files_under(processing / "evaluation")

    other_seed = tmp_path / "other-seed"
    assert run_preprocess(processing / "input", other_seed, "--seed", "7") == 0
    assert files_under(other_seed / "train") != files_under(processing / "train")


THIRD_PARTY_IMPORTS = {
    # What each script's container provides (mlflow is optional and imported lazily).
    "preprocess.py": {"numpy", "pandas", "sklearn", "boto3"},  # boto3: production data of closed-loop retraining
    # boto3 is in every SageMaker framework image; mlflow and wandb come from requirements.txt.
    "train.py": {"numpy", "pandas", "xgboost", "mlflow", "wandb", "boto3"},
    "evaluate.py": {"numpy", "pandas", "sklearn", "xgboost"},
    "make_dataset.py": {"sklearn"},
}


@pytest.mark.parametrize("script", sorted(THIRD_PARTY_IMPORTS))
def test_scripts_run_in_the_sagemaker_containers(script) -> None:
    """The images' Python (>= 3.10) syntax, only the container's libraries, self-contained, a main(argv) entry point."""
    source = (SCRIPTS_DIR / script).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=MINIMUM_PYTHON)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{script}: relative import: scripts must be self-contained"
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= THIRD_PARTY_IMPORTS[script], third_party
    assert "training" not in imported

    first = tree.body[1] if isinstance(tree.body[0], ast.Expr) else tree.body[0]
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__", "needs future annotations"
    assert ast.get_docstring(tree)
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1 and [a.arg for a in mains[0].args.args] == ["argv"]
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')


def test_training_requirements_pin_mlflow_3_and_the_sagemaker_plugin() -> None:
    lines = [
        line.split("#")[0].strip()
        for line in (SCRIPTS_DIR / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    requirements = [line.split(";")[0].strip() for line in lines]
    assert all("==" in requirement for requirement in requirements), "pin every package"
    # the training image runs Python >= 3.10 (pipelines/images.py): MLflow 3, no 3.8 fallback
    assert any(line.startswith("mlflow-skinny==3.") for line in lines)
    assert any(requirement.startswith("sagemaker-mlflow==") for requirement in requirements)
