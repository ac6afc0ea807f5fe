"""The monitoring job end to end: CLI in temporary directories laid out like the processing job."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitoring import metrics as metric_table
from mlops_platform.pipelines.images import MINIMUM_PYTHON
from monitoring import monitor, report

MONITORING_DIR = Path(monitor.__file__).parent
NAMES = ["f0", "f1", "f2"]
WINDOW = ["--window-start", "2024-05-01T12:00:00Z", "--window-end", "2024-05-01T13:00:00Z"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, build) -> Path:
    """Two variants of one endpoint; variant-b's f0 drifts; labels for every record."""
    csv_line, ground_truth_line, make_baseline, write_lines = (
        build.csv_line, build.ground_truth_line, build.make_baseline, build.write_lines
    )

    root = tmp_path_factory.mktemp("job")
    rng = np.random.default_rng(21)
    train = rng.normal(size=(3000, 3))
    labels = (train[:, 1] > 0).astype(int)
    (root / "baseline").mkdir()
    (root / "baseline" / "baseline.json").write_text(json.dumps(make_baseline(train, NAMES, labels)))
    truth = []
    for variant, shift in (("variant-a", 0.0), ("variant-b", 1.5)):
        rows = rng.normal(size=(600, 3))
        rows[:, 0] += shift
        scores = 1 / (1 + np.exp(-3 * rows[:, 1]))
        lines = []
        for i, (row, score) in enumerate(zip(rows, scores)):
            key = f"{variant}-{i}"
            minute = i % 60
            lines.append(csv_line(row, score, f"evt-{key}", inference_id=key, time=f"2024-05-01T12:{minute:02d}:00Z"))
            truth.append(ground_truth_line(str(int(row[1] + rng.normal(0, 0.3) > 0)), key))
        lines.insert(10, "{broken")
        half = len(lines) // 2
        hour = root / "capture" / "churn-endpoint" / variant / "2024" / "05" / "01" / "12"
        write_lines(hour / "part-1.jsonl", lines[:half])
        write_lines(hour / "part-2.jsonl", lines[half:])
    write_lines(root / "ground_truth" / "2024" / "05" / "01" / "14" / "labels.jsonl", truth)
    return root


def run(root: Path, out: str, *extra: str, capture: str = "capture") -> tuple[int, dict]:
    output = root / out
    argv = [
        "--capture-dir", str(root / capture),
        "--baseline", str(root / "baseline"),
        "--output-dir", str(output),
        "--workers", "1",
        *extra,
    ]
    code = monitor.main(argv)
    document = json.loads((output / "report.json").read_text()) if (output / "report.json").exists() else {}
    return code, document


def metrics_by_name(root: Path, out: str) -> dict:
    entries = json.loads((root / out / "cloudwatch_metrics.json").read_text())
    found = {}
    for entry in entries:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in entry["Dimensions"]))
        found[(entry["MetricName"], dims)] = entry["Value"]
    return found


def test_end_to_end(scenario: Path) -> None:
    thresholds = json.dumps({"psi": 0.2, "auc_min": 0.99, "ks": None})
    code, document = run(
        scenario, "out", "--ground-truth-dir", str(scenario / "ground_truth"), "--thresholds", thresholds,
        "--drift-policy", '{"min_rows": 500}', *WINDOW
    )
    assert code == 0
    assert document["status"] == "alarm"
    verdict = document["decision"]
    assert set(verdict["drifted"]) == {"_all:f0", "variant-b:f0"}
    assert "_all:auc" in verdict["quality_below_target"]  # AUC ~0.9-0.97 against a 0.99 target
    assert verdict["alpha"] == pytest.approx(1 / 720)
    assert len(verdict["untested"]) == 2  # the test baseline has no score / predicted-class reference
    f0 = document["drift"]["variants"]["variant-b"]["features"]["f0"]["decision"]
    assert f0["decision"] == "drifted" and f0["effect_lower"] > verdict["min_effect"] and "exceeds" in f0["why"]
    assert document["endpoint"] == "churn-endpoint"
    assert document["window"] == {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z"}
    assert document["thresholds"] == {**report.DEFAULT_THRESHOLDS, "psi": 0.2, "auc_min": 0.99}
    summary = document["summary"]
    assert summary["records"] == 1200 and summary["variants"] == ["variant-a", "variant-b"]
    assert summary["drifted_features"] == ["f0"] and summary["max_psi_feature"] == "f0"
    assert summary["malformed_lines"] == 2
    capture = document["capture"]
    assert capture["files_read"] == 4 and capture["variants"] == {"variant-a": 600, "variant-b": 600}
    assert {e["file"] for e in document["issues"]["examples"]} == {
        "churn-endpoint/variant-a/2024/05/01/12/part-1.jsonl",
        "churn-endpoint/variant-b/2024/05/01/12/part-1.jsonl",
    }
    variants = document["drift"]["variants"]
    assert variants["variant-b"]["features"]["f0"]["drifted"]
    assert not variants["variant-a"]["features"]["f0"]["drifted"]
    assert variants["variant-b"]["features"]["f0"]["psi"] > 1.0 > variants["variant-a"]["features"]["f0"]["psi"]
    drifted = {(v["variant"], v.get("feature"), v["metric"]) for v in document["violations"]}
    assert ("variant-b", "f0", "psi") in drifted and ("_all", "f0", "psi") in drifted
    assert not any(v == "variant-a" and f == "f0" for v, f, _ in drifted)

    quality = document["quality"]
    assert quality["status"] == "ok"
    assert quality["join"]["labels"] == 1200 and quality["join"]["joined_records"] == 1200
    for variant in ("variant-a", "variant-b"):
        result = quality["variants"][variant]
        assert result["status"] == "ok" and result["label_count"] == 600
        assert 0.8 < result["metrics"]["auc"] < 0.99
    assert ("_all", None, "auc") in drifted  # auc_min 0.99 is crossed (reported; the alarm is the test's)

    metrics = metrics_by_name(scenario, "out")
    endpoint = ("Endpoint", "churn-endpoint")
    assert metrics[("RecordCount", (endpoint, ("Variant", "_all")))] == 1200
    assert metrics[("LabelCount", (endpoint, ("Variant", "variant-a")))] == 600
    assert metrics[("DriftedFeatures", (endpoint, ("Variant", "variant-b")))] == 1
    assert metrics[("DriftedFeatures", (endpoint, ("Variant", "variant-a")))] == 0
    assert metrics[("MaxPSI", (endpoint, ("Variant", "_all")))] == pytest.approx(summary["max_psi"])
    assert ("AUC", (endpoint, ("Variant", "variant-b"))) in metrics
    assert ("PSI", (endpoint, ("Feature", "f0"), ("Variant", "_all"))) in metrics
    assert metrics[("MalformedLines", (endpoint, ("Variant", "_all")))] == 2
    assert metrics[("DriftDetected", (endpoint, ("Variant", "_all")))] == 1
    # every alarmed metric (monitoring/metrics.py ALARMS, what the stack's alarms watch) has this producer
    assert {name for name, _ in metrics} >= set(metric_table.ALARMS.values())
    assert metrics[("QualityBelowTarget", (endpoint, ("Variant", "_all")))] == 1
    entries = json.loads((scenario / "out" / "cloudwatch_metrics.json").read_text())
    assert all(e["Timestamp"] == "2024-05-01T13:00:00Z" for e in entries)

    page = (scenario / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert 'aria-label="f0 (all variants): PSI' in page and 'aria-label="f0 (variant variant-b): PSI' in page
    assert "f0 (variant variant-a)" not in page
    assert summary["drifted_features_by_variant"] == {"variant-a": [], "variant-b": ["f0"]}
    assert "<h2>Decision</h2>" in page and "Drift effect over recent windows" in page and "exceeds" in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "src=" not in page


def test_workers_and_script_mode_give_the_same_report(scenario: Path) -> None:
    """``python monitor.py`` (how the processing job runs it), two worker processes."""
    argv = [
        sys.executable, str(MONITORING_DIR / "monitor.py"),
        "--capture-dir", str(scenario / "capture"),
        "--baseline", str(scenario / "baseline" / "baseline.json"),
        "--ground-truth-dir", str(scenario / "ground_truth"),
        "--output-dir", str(scenario / "out-script"),
        "--workers", "2",
    ]
    completed = subprocess.run(argv, cwd=MONITORING_DIR, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "with 2 worker(s)" in completed.stdout
    code, in_process = run(scenario, "out-sequential", "--ground-truth-dir", str(scenario / "ground_truth"))
    assert code == 0
    scripted = json.loads((scenario / "out-script" / "report.json").read_text())
    for document in (scripted, in_process):
        for key in ("generated_at", "duration_seconds", "inputs"):
            document.pop(key)
    # files are read and merged in the same order either way: the statistics are identical
    assert scripted == in_process


def test_empty_window(scenario: Path) -> None:
    code, document = run(scenario, "out-empty", "--window-start", "2024-06-01T00:00:00Z", "--window-end", "2024-06-01T01:00:00Z")
    assert code == 0
    assert document["status"] == "no_data"
    assert document["capture"]["state"] == "empty_window"
    assert document["capture"]["files_skipped_outside_window"] == 4
    assert document["summary"]["records"] == 0 and document["violations"] == []
    assert all(f["status"] == "no_data" for f in document["drift"]["all"]["features"].values())
    metrics = metrics_by_name(scenario, "out-empty")
    assert metrics[("RecordCount", (("Endpoint", "unknown"), ("Variant", "_all")))] == 0
    assert not any(name == "MaxPSI" for name, _ in metrics)
    assert "No capture record in the window" in (scenario / "out-empty" / "report.html").read_text()


def test_missing_capture_directory(scenario: Path) -> None:
    code, document = run(scenario, "out-missing", "--endpoint", "churn-endpoint", capture="no-such-dir")
    assert code == 0
    assert document["status"] == "no_data" and document["capture"]["state"] == "missing_dir"
    assert document["endpoint"] == "churn-endpoint"


def test_missing_ground_truth(scenario: Path) -> None:
    code, document = run(scenario, "out-no-gt", "--ground-truth-dir", str(scenario / "no-labels-yet"))
    assert code == 0
    assert document["quality"]["status"] == "missing_dir"
    assert document["quality"]["variants"] == {}
    assert document["summary"]["quality_status"] == "missing_dir"
    assert not any(name in ("AUC", "LabelCount") for name, _ in metrics_by_name(scenario, "out-no-gt"))
    code, document = run(scenario, "out-gt-not-given")
    assert code == 0 and document["quality"]["status"] == "not_configured"
    assert "No quality figures" in (scenario / "out-gt-not-given" / "report.html").read_text()


def test_too_few_labels_is_insufficient_data(scenario: Path) -> None:
    code, document = run(
        scenario, "out-few", "--ground-truth-dir", str(scenario / "ground_truth"), "--min-labels", "1000",
        "--thresholds", '{"auc_min": 0.99}',
    )
    assert code == 0
    for result in document["quality"]["variants"].values():
        assert result["status"] == "insufficient_data" and result["metrics"] is None and result["label_count"] == 600
    assert document["quality"]["all"]["status"] == "ok"  # 1200 labels together
    assert not any(v["variant"].startswith("variant") and v["section"] == "quality" for v in document["violations"])
    metrics = metrics_by_name(scenario, "out-few")
    endpoint = ("Endpoint", "churn-endpoint")
    assert metrics[("LabelCount", (endpoint, ("Variant", "variant-a")))] == 600
    assert ("AUC", (endpoint, ("Variant", "variant-a"))) not in metrics
    assert ("AUC", (endpoint, ("Variant", "_all"))) in metrics


def test_text_model(tmp_path: Path, build) -> None:
    capture_line, payload, write_lines = build.capture_line, build.payload, build.write_lines

    reference = [f"the match was a great win for the team number {i % 7}" for i in range(300)]
    (tmp_path / "corpus.txt").write_text("\n".join(reference))
    lines = [
        capture_line(
            payload(json.dumps({"inputs": f"interest rates and the bond market moved {i}"}), "JSON", "application/json"),
            payload(json.dumps([{"label": "POSITIVE", "score": 0.9}]), "JSON", "application/json", "OUTPUT"),
            f"e{i}",
        )
        for i in range(50)
    ]
    write_lines(tmp_path / "capture" / "nlp-endpoint" / "AllTraffic" / "2024" / "05" / "01" / "12" / "f.jsonl", lines)
    code = monitor.main([
        "--capture-dir", str(tmp_path / "capture"), "--text-baseline", str(tmp_path / "corpus.txt"),
        "--output-dir", str(tmp_path / "out"), "--workers", "1", "--drift-policy", '{"min_rows": 50}',
        "--thresholds", '{"oov_rate": 0.2, "js_distance": 0.1}',
    ])
    assert code == 0
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    text = document["drift"]["all"]["text"]
    assert text["documents"] == 50 and text["drifted"]
    assert text["tests"]["oov"]["decision"] == "drifted" and text["tests"]["tokens"]["design_effect"] >= 1
    assert {v["threshold_key"] for v in document["violations"] if v["section"] == "text"} >= {"oov_rate", "js_distance"}
    assert document["summary"]["text_drifted"]
    saved = json.loads((tmp_path / "out" / "text_baseline.json").read_text())
    assert saved["document_count"] == 300
    metrics = metrics_by_name(tmp_path, "out")
    assert metrics[("OOVRate", (("Endpoint", "nlp-endpoint"), ("Variant", "_all")))] == pytest.approx(text["oov_rate"])
    assert "largest token share changes" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--thresholds", '{"psi": "high"}'], "threshold 'psi' must be a number"),
        (["--thresholds", '{"drift": 0.1}'], "unknown threshold 'drift'"),
        (["--thresholds", "/no/such/file.json"], "cannot read /no/such/file.json"),
        (["--window-start", "2024-05-02T00:00:00Z", "--window-end", "2024-05-01T00:00:00Z"], "--window-end must be after"),
        (["--window-start", "soon"], "--window-start: not an ISO-8601 time"),
    ],
)
def test_unusable_arguments_exit_1_with_one_line(scenario: Path, capsys, extra: list, message: str) -> None:
    code, _ = run(scenario, "out-bad", *extra)
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("monitor: error:")


def test_unusable_baseline(tmp_path: Path, capsys) -> None:
    (tmp_path / "baseline.json").write_text('{"feature_names": ["a"], "features": {}}')
    code = monitor.main(["--capture-dir", str(tmp_path), "--baseline", str(tmp_path / "baseline.json"), "--output-dir", str(tmp_path / "o")])
    assert code == 1 and "'a' is in feature_names but not in features" in capsys.readouterr().err
    code = monitor.main(["--capture-dir", str(tmp_path), "--baseline", str(tmp_path / "nope.json"), "--output-dir", str(tmp_path / "o")])
    assert code == 1 and "cannot read the baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        monitor.main(["--capture-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_thresholds_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"psi": 0.1, "oov_rate": None, "rmse_max": 3}))
    thresholds = report.parse_thresholds(str(path))
    assert thresholds["psi"] == 0.1 and "oov_rate" not in thresholds and thresholds["rmse_max"] == 3.0


def test_publish_puts_the_metrics_to_cloudwatch(scenario: Path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setattr(report, "PUT_METRIC_CHUNK", 7)
    with mock_aws():
        code, document = run(scenario, "out-publish", "--publish", "--region", "eu-west-1", *WINDOW)
        assert code == 0
        sent = json.loads((scenario / "out-publish" / "cloudwatch_metrics.json").read_text())
        client = boto3.client("cloudwatch", region_name="eu-west-1")
        listed = client.get_paginator("list_metrics").paginate(Namespace=report.NAMESPACE).build_full_result()["Metrics"]
        assert len(listed) == len({(e["MetricName"], json.dumps(e["Dimensions"])) for e in sent}) > 7
        names = {m["MetricName"] for m in listed}
        assert {"RecordCount", "MaxPSI", "DriftedFeatures", "PSI", "KSStatistic", "Violations"} <= names
        stats = client.get_metric_statistics(
            Namespace=report.NAMESPACE,
            MetricName="RecordCount",
            Dimensions=[{"Name": "Endpoint", "Value": "churn-endpoint"}, {"Name": "Variant", "Value": "_all"}],
            StartTime="2024-05-01T12:00:00Z",
            EndTime="2024-05-01T14:00:00Z",
            Period=3600,
            Statistics=["Sum"],
        )
        assert [p["Sum"] for p in stats["Datapoints"]] == [1200.0]


def test_publish_failure_exits_1(scenario: Path, capsys, monkeypatch) -> None:
    import boto3
    from botocore.exceptions import NoCredentialsError

    class Failing:
        def put_metric_data(self, **kwargs):
            raise NoCredentialsError()

    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: Failing())
    code, _ = run(scenario, "out-publish-fail", "--publish")
    assert code == 1 and "publishing the metrics failed" in capsys.readouterr().err
    assert (scenario / "out-publish-fail" / "report.json").exists()  # the report is written first


@pytest.mark.parametrize("script", ["monitor.py", "capture.py", "drift.py", "quality.py", "report.py", "decision.py", "metrics.py", "partials.py"])
def test_modules_run_in_the_sagemaker_scikit_learn_container(script: str) -> None:
    """The image's Python (>= 3.10) syntax, the scikit-learn image's libraries only (boto3 imported
    lazily), sibling imports without the package."""
    source = (MONITORING_DIR / script).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=MINIMUM_PYTHON)
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top_level.add(node.module.split(".")[0])
        elif isinstance(node, ast.Try):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    top_level.update(alias.name.split(".")[0] for alias in inner.names)
    siblings = {"capture", "drift", "quality", "report", "decision", "metrics", "partials"}
    third_party = top_level - set(sys.stdlib_module_names) - {"__future__"} - siblings
    assert third_party <= {"numpy", "scipy", "sklearn", "pandas"}, third_party
    assert "monitoring" not in top_level
    first = tree.body[1] if isinstance(tree.body[0], ast.Expr) else tree.body[0]
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__"
    assert ast.get_docstring(tree)
    if script == "monitor.py":
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert len(mains) == 1 and [a.arg for a in mains[0].args.args] == ["argv"]
        assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')


def test_the_monitoring_pipelines_entry_point_runs_the_zipped_code(scenario: Path, tmp_path: Path) -> None:
    """The pipeline step as deployed (mlops_platform.pipelines.monitoring_definition): the monitoring
    folder zipped like the CDK asset, unpacked by the entry point, monitor.py run with the step's
    container arguments (processing paths moved under a temporary root, parameters filled in)."""
    import shutil
    import zipfile

    from mlops_platform.pipelines import monitoring_definition as definition

    root = tmp_path / "opt-ml-processing"
    code = root / "input" / "code"
    code.mkdir(parents=True)
    with zipfile.ZipFile(code / "asset.0123abcd.zip", "w") as archive:  # as s3_assets.Asset(exclude=...) packs it
        for path in sorted(MONITORING_DIR.glob("*.py")):
            if path.name != "__init__.py":
                archive.write(path, path.name)
    shutil.copytree(scenario / "capture" / "churn-endpoint", root / "input" / "capture")
    shutil.copytree(scenario / "baseline", root / "input" / "baseline")
    shutil.copytree(scenario / "ground_truth", root / "input" / "ground_truth")
    spec = definition.MonitoringPipelineSpec(
        endpoint_name="churn-endpoint", region="eu-west-1", role_arn="arn:aws:iam::1:role/r", image_uri="image",
        code_uri="s3://assets/asset.zip", output_uri="s3://artifacts/monitoring/churn-endpoint/reports",
        placeholder_uri="s3://artifacts/monitoring/unset", kms_key_arn="key", problem_type="binary",
        thresholds={"psi": 0.2, "auc_min": 0.8}, min_labels=100, instance_type="ml.m5.large", max_runtime_s=3600,
        drift_policy={"min_effect": 0.002, "min_rows": 5000}, carry_uri=f"{definition.ROOT}/state/drift-carry.json",
    )
    (step,) = definition.build_definition(spec)["Steps"]
    app = step["Arguments"]["AppSpecification"]
    parameters = {"Parameters.WindowStart": "2024-05-01T12:00:00Z", "Parameters.WindowEnd": "2024-05-01T13:00:00Z",
                  "Parameters.MetricScope": "all", "Parameters.MetricTime": ""}
    arguments = [parameters[a["Get"]] if isinstance(a, dict) else a.replace(definition.ROOT, str(root))
                 for a in app["ContainerArguments"]]
    publish = arguments.index("--publish")
    del arguments[publish:]  # no CloudWatch here
    entrypoint = [part.replace(definition.ROOT, str(root)) for part in app["ContainerEntrypoint"]]
    entrypoint[2] = entrypoint[2].replace("python3 ", f"{sys.executable} ")
    completed = subprocess.run([*entrypoint, *arguments], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    report = json.loads((root / "output" / "report.json").read_text())
    assert report["endpoint"] == "churn-endpoint"
    assert report["drift"]["all"]["records"] > 0 and report["quality"]["status"] == "ok"
    assert any(v["variant"] == "variant-b" for v in report["violations"])  # variant-b's f0 drifts
    # 1,200 rows < min_rows 5,000: the window is accumulated, and its counts carried to the next run
    assert report["decision"]["accumulating"] and not report["decision"]["drifted"]
    carry = json.loads((root / "state" / "drift-carry.json").read_text())
    assert carry["scopes"]["_all"]["rows"] == 1200 and carry["scopes"]["_all"]["windows"] == 1
