"""The monitoring pipeline's steps: one instance as before, or N sharded instances and a merge step,
whose container arguments, run here, give the single step's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlops_platform.pipelines import monitoring_definition as definition
from monitoring import monitor

PARAMETERS = {"Parameters.WindowStart": "2024-05-01T12:00:00Z", "Parameters.WindowEnd": "2024-05-01T13:00:00Z",
              "Parameters.MetricScope": "all", "Parameters.MetricTime": ""}


def spec(instance_count: int, **overrides) -> definition.MonitoringPipelineSpec:
    return definition.MonitoringPipelineSpec(
        endpoint_name="ep", region="eu-west-1", role_arn="arn:aws:iam::1:role/r", image_uri="image",
        code_uri="s3://assets/asset.zip", output_uri="s3://artifacts/monitoring/ep/reports",
        placeholder_uri="s3://artifacts/monitoring/unset", kms_key_arn="key", problem_type="binary",
        thresholds={"psi": 0.2, "auc_min": 0.8}, min_labels=10, instance_type="ml.m5.large", max_runtime_s=3600,
        drift_policy={"min_effect": 0.002, "min_rows": 100}, carry_uri=f"{definition.ROOT}/state/carry.json",
        instance_count=instance_count, **overrides,
    )


def inputs(step: dict) -> dict:
    return {i["InputName"]: i["S3Input"] for i in step["Arguments"]["ProcessingInputs"]}


def test_one_instance_is_one_unsharded_step() -> None:
    (step,) = definition.build_definition(spec(1))["Steps"]
    assert step["Name"] == definition.STEP_MONITOR
    assert step["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert inputs(step)["capture"]["S3DataDistributionType"] == "FullyReplicated"
    assert "--capture-dir" in step["Arguments"]["AppSpecification"]["ContainerArguments"]


def test_n_instances_shard_the_capture_manifest_then_one_instance_merges() -> None:
    shards, merge = definition.build_definition(spec(4))["Steps"]
    assert shards["Name"] == definition.STEP_SHARDS and merge["Name"] == definition.STEP_MONITOR
    assert shards["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 4
    assert merge["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    shard_inputs = inputs(shards)
    assert shard_inputs["capture"]["S3DataType"] == "ManifestFile"
    assert shard_inputs["capture"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert shard_inputs["ground_truth"]["S3DataDistributionType"] == "FullyReplicated"
    # the merge reads the shards' output (a property reference: SageMaker orders the steps by it)
    (partials_output,) = shards["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert partials_output["OutputName"] == definition.PARTIALS_OUTPUT
    assert inputs(merge)[definition.PARTIALS_OUTPUT]["S3Uri"] == {
        "Get": "Steps.MonitorShards.ProcessingOutputConfig.Outputs['partials'].S3Output.S3Uri"}
    assert "capture" not in inputs(merge)
    assert "ground_truth" not in inputs(merge)  # the shards joined the labels
    assert "--ground-truth-dir" not in merge["Arguments"]["AppSpecification"]["ContainerArguments"]
    shard_arguments = shards["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert "--shard-output" in shard_arguments and "--publish" not in shard_arguments  # only the merge publishes
    assert "--carry" not in shard_arguments  # nor reads or replaces the carry


@pytest.fixture(scope="module")
def window(tmp_path_factory, build) -> Path:
    root = tmp_path_factory.mktemp("definition")
    rng = np.random.default_rng(3)
    train = rng.normal(size=(500, 2))
    build.write_lines(root / "baseline" / "baseline.json",
                      [json.dumps(build.make_baseline(train, ["a", "b"], (train[:, 1] > 0).astype(int)))])
    rows = rng.normal(size=(300, 2))
    truth = []
    for part in range(5):
        lines = []
        for i in range(part, 300, 5):
            lines.append(build.csv_line(rows[i], 1 / (1 + np.exp(-rows[i, 1])), f"e{i}", f"id{i}",
                                        f"2024-05-01T12:{i % 60:02d}:00Z"))
            truth.append(build.ground_truth_line(str(int(rows[i, 1] > 0)), f"id{i}"))
        build.write_lines(root / "capture" / "v1" / "2024" / "05" / "01" / "12" / f"part-{part}.jsonl", lines)
    build.write_lines(root / "ground_truth" / "labels.jsonl", truth)
    return root


def local_arguments(step: dict, root: Path) -> list:
    """A step's container arguments with the job's paths under ``root``, without publishing."""
    arguments = [PARAMETERS[a["Get"]] if isinstance(a, dict) else a.replace(definition.ROOT, str(root))
                 for a in step["Arguments"]["AppSpecification"]["ContainerArguments"]]
    if "--publish" in arguments:
        at = arguments.index("--publish")
        del arguments[at:at + 5]  # --publish --namespace N --region R
    return [*arguments, "--workers", "1"]


def job_directory(window: Path, root: Path, capture_files: list) -> Path:
    """A processing job's local layout: baseline and ground truth replicated, these capture files."""
    shutil.copytree(window / "baseline", root / "input" / "baseline")
    shutil.copytree(window / "ground_truth", root / "input" / "ground_truth")
    for path in capture_files:
        destination = root / "input" / "capture" / path.relative_to(window / "capture")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, destination)
    return root


def test_the_sharded_steps_arguments_give_the_single_steps_report(window: Path, tmp_path: Path, monkeypatch) -> None:
    files = sorted((window / "capture").rglob("*.jsonl"))
    (single,) = definition.build_definition(spec(1))["Steps"]
    alone = job_directory(window, tmp_path / "single", files)
    assert monitor.main(local_arguments(single, alone)) == 0

    shards, merge = definition.build_definition(spec(2))["Steps"]
    merged = job_directory(window, tmp_path / "merge", [])
    shutil.rmtree(merged / "input" / "ground_truth")  # not an input of the merge step
    for index in range(2):
        instance = job_directory(window, tmp_path / f"algo-{index + 1}", files[index::2])
        monkeypatch.setattr(monitor, "shard_name", lambda index=index: f"algo-{index + 1}")
        assert monitor.main(local_arguments(shards, instance)) == 0
        # SageMaker uploads each instance's output folder to the one partials prefix the merge reads
        shutil.copytree(instance / "partials", merged / "input" / "partials", dirs_exist_ok=True)
    assert monitor.main(local_arguments(merge, merged)) == 0

    def report(root: Path) -> dict:
        document = json.loads((root / "output" / "report.json").read_text())
        return {key: value for key, value in document.items() if key not in ("generated_at", "duration_seconds", "inputs")}

    assert report(alone)["capture"]["records"] == 300 and report(alone)["quality"]["status"] == "ok"
    assert report(merged) == report(alone)
    assert (merged / "state" / "carry.json").read_text() == (alone / "state" / "carry.json").read_text()
