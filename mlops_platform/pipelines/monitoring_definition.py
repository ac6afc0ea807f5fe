"""The monitoring pipeline's definition: processing steps running ``monitoring/monitor.py``.

One instance (``instance_count`` 1, the default): one step, ``Monitor``, reads the window and writes
the report. N instances: ``MonitorShards`` runs N instances, each reading the capture files its
share of the manifest names (``ShardedByS3Key``) and all the window's labels, and writing one
partial file (drift statistics per capture file, its label join), then ``Monitor`` (one instance,
reading neither capture files nor labels) folds them into the report, metrics and carry exactly as
one instance would (``monitoring/partials.py``).

Written as the pipeline-definition JSON itself (one step needs no SageMaker SDK, whose import
costs seconds of synthesis). Values may be CDK tokens; the stack serialises the result with
``Stack.to_json_string``. Inputs follow ``monitoring/README.md``: the code (the ``monitoring/``
folder as a CDK zip asset, unpacked by the entry point), the baseline, and the capture and
ground-truth windows as manifest files written by the monitoring launcher Lambda.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .images import image_uri

STEP_MONITOR = "Monitor"
STEP_SHARDS = "MonitorShards"
PARTIALS_OUTPUT = "partials"
PARAMETERS = ("WindowStart", "WindowEnd", "BaselineS3Uri", "CaptureManifestS3Uri", "GroundTruthManifestS3Uri",
              "MetricScope", "MetricTime")
# A window's first analysis publishes everything at the window's end; a late-label recheck only the
# quality metrics, at the time it ran (handlers/monitoring_launcher.py).
PARAMETER_DEFAULTS = {"MetricScope": "all"}
ROOT = "/opt/ml/processing"
CODE_DIR = f"{ROOT}/input/code"
UNPACKED_CODE_DIR = f"{ROOT}/monitoring"
# The code asset is a zip (a CDK directory asset): unpack it, then run monitor.py with the
# container arguments ("$@"), so the five modules import each other by their bare names.
ENTRYPOINT = [
    "/bin/sh", "-c",
    f'python3 -m zipfile -e {CODE_DIR}/*.zip {UNPACKED_CODE_DIR} && exec python3 {UNPACKED_CODE_DIR}/monitor.py "$@"',
    "monitor",
]


@dataclass(frozen=True)
class MonitoringPipelineSpec:
    endpoint_name: str
    region: str
    role_arn: str
    image_uri: str
    code_uri: str  # s3:// URI of the zipped monitoring/ folder
    output_uri: str  # s3:// prefix; each execution writes under <output_uri>/<execution id>/
    placeholder_uri: str  # default of the S3 parameters (the launcher always sets them)
    kms_key_arn: str
    problem_type: str
    thresholds: dict[str, float | None]
    min_labels: int
    drift_policy: dict[str, float]  # monitoring/decision.py DEFAULT_POLICY keys
    carry_uri: str  # s3:// object: the counts of undecided small windows, read and replaced by each run
    instance_type: str
    max_runtime_s: int
    instance_count: int = 1  # >1: a sharded step of this many instances, then a one-instance merge
    # The model's text features: the champion's training baseline (BaselineS3Uri) carries their text
    # references, and the job tests each (untested, and said so, when the baseline lacks one).
    text_features: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    namespace: str = "MlopsPlatform/Monitoring"
    tags: dict[str, str] = field(default_factory=dict)


def _get(parameter: str) -> dict[str, str]:
    return {"Get": f"Parameters.{parameter}"}


def _input(name: str, uri: Any, local: str, data_type: str = "S3Prefix", distribution: str = "FullyReplicated"
           ) -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": data_type, "S3InputMode": "File",
                    "S3DataDistributionType": distribution, "S3CompressionType": "None"},
    }


def _output(name: str, spec: MonitoringPipelineSpec, local: str, suffix: tuple[str, ...] = ()) -> dict[str, Any]:
    """An output uploaded at the end of the job to ``<output_uri>/<execution id>[/suffix]``."""
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {
            "S3Uri": {"Std:Join": {"On": "/", "Values": [
                spec.output_uri.rstrip("/"), {"Get": "Execution.PipelineExecutionId"}, *suffix]}},
            "LocalPath": local,
            "S3UploadMode": "EndOfJob",
        },
    }


def _step(name: str, spec: MonitoringPipelineSpec, instance_count: int, arguments: list[Any],
          inputs: list[dict[str, Any]], output: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = {
        "Name": name,
        "Type": "Processing",
        "Arguments": {
            "ProcessingResources": {"ClusterConfig": {
                "InstanceType": spec.instance_type, "InstanceCount": instance_count, "VolumeSizeInGB": 30,
                "VolumeKmsKeyId": spec.kms_key_arn,
            }},
            "AppSpecification": {"ImageUri": spec.image_uri, "ContainerEntrypoint": ENTRYPOINT,
                                 "ContainerArguments": arguments},
            "RoleArn": spec.role_arn,
            "ProcessingInputs": inputs,
            "ProcessingOutputConfig": {"Outputs": [output], "KmsKeyId": spec.kms_key_arn},
            "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_s},
        },
    }
    if spec.tags:  # the job is created at run time: CloudFormation's stack tags do not reach it
        step["Arguments"]["Tags"] = [{"Key": key, "Value": value} for key, value in spec.tags.items()]
    if spec.subnet_ids:
        step["Arguments"]["NetworkConfig"] = {
            "EnableNetworkIsolation": False,
            "EnableInterContainerTrafficEncryption": True,
            "VpcConfig": {"Subnets": list(spec.subnet_ids), "SecurityGroupIds": list(spec.security_group_ids)},
        }
    return step


def build_definition(spec: MonitoringPipelineSpec) -> dict[str, Any]:
    """The pipeline definition (``PipelineDefinitionBody`` once serialised)."""
    # What the merge step needs to build the report (the shards joined the labels), and what reading
    # capture files needs besides: the ground truth (the shards' arguments, and a single instance's).
    merging: list[Any] = [
        "--baseline", f"{ROOT}/input/baseline",
        "--endpoint", spec.endpoint_name,
        "--window-start", _get("WindowStart"),
        "--window-end", _get("WindowEnd"),
        "--problem-type", spec.problem_type,
        *(("--text-features", ",".join(spec.text_features)) if spec.text_features else ()),
    ]
    reading = [*merging[:2], "--ground-truth-dir", f"{ROOT}/input/ground_truth", *merging[2:]]
    reporting: list[Any] = [
        "--output-dir", f"{ROOT}/output",
        "--thresholds", json.dumps(spec.thresholds, sort_keys=True, separators=(",", ":")),
        "--min-labels", str(spec.min_labels),
        "--drift-policy", json.dumps(spec.drift_policy, sort_keys=True, separators=(",", ":")),
        "--carry", spec.carry_uri,
        "--publish", "--namespace", spec.namespace, "--region", spec.region,
        "--metric-scope", _get("MetricScope"),
        "--metric-time", _get("MetricTime"),
    ]
    code = _input("code", spec.code_uri, CODE_DIR)
    baseline = _input("baseline", _get("BaselineS3Uri"), f"{ROOT}/input/baseline")
    # every shard joins its records to all the window's labels (a label's prediction may be in any
    # shard's files): ground truth is replicated; the merge step does not read it
    ground_truth = _input("ground_truth", _get("GroundTruthManifestS3Uri"), f"{ROOT}/input/ground_truth",
                          "ManifestFile")
    report_output = _output("report", spec, f"{ROOT}/output")
    capture_dir = f"{ROOT}/input/capture"
    if spec.instance_count == 1:  # as before sharding existed: no partials, no second job to start
        capture = _input("capture", _get("CaptureManifestS3Uri"), capture_dir, "ManifestFile")
        steps = [_step(STEP_MONITOR, spec, 1, ["--capture-dir", capture_dir, *reading, *reporting],
                       [code, baseline, capture, ground_truth], report_output)]
    else:
        capture = _input("capture", _get("CaptureManifestS3Uri"), capture_dir, "ManifestFile", "ShardedByS3Key")
        partials_dir = f"{ROOT}/partials"
        shards = _step(STEP_SHARDS, spec, spec.instance_count,
                       ["--capture-dir", capture_dir, *reading, "--shard-output", partials_dir],
                       [code, baseline, capture, ground_truth],
                       _output(PARTIALS_OUTPUT, spec, partials_dir, (PARTIALS_OUTPUT,)))
        partials_uri = {"Get": f"Steps.{STEP_SHARDS}.ProcessingOutputConfig.Outputs['{PARTIALS_OUTPUT}'].S3Output.S3Uri"}
        merge = _step(STEP_MONITOR, spec, 1, ["--partials-dir", f"{ROOT}/input/partials", *merging, *reporting],
                      [code, baseline, _input(PARTIALS_OUTPUT, partials_uri, f"{ROOT}/input/partials")],
                      report_output)
        steps = [shards, merge]
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [{"Name": name, "Type": "String", "DefaultValue": spec.placeholder_uri
                        if name.endswith("S3Uri") else PARAMETER_DEFAULTS.get(name, "")} for name in PARAMETERS],
        "Steps": steps,
    }


def sklearn_image_uri(region: str, version: str) -> str:
    """The SageMaker scikit-learn processing image, e.g. ``1.4-2-py312-cpu-py3``, through the
    SDK's public lookup (memoized on disk, so a warm synthesis does not import the SDK)."""
    return image_uri("sklearn", version, region)
