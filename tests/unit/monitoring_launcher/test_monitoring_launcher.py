"""Monitoring launcher against moto: manifests, pipeline parameters, idempotency, empty window, skips, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from lambda_context import LambdaContext
from settings_support import set_settings

from mlops_runtime.settings.base import SETTINGS_ENV

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m:1"
BASELINE = "s3://artifacts-bucket/training/run-1/baseline/baseline.json"
NOW = datetime(2024, 5, 1, 13, 20, 5, tzinfo=UTC)  # window [12:00, 13:00)
WINDOW_FOLDER = "monitoring/churn-ep/20240501T1300Z/"


def monitor(endpoint: str, **changes) -> dict:
    entry = {
        "pipeline_name": "churn-monitoring", "window_hours": 1, "ground_truth_lookback_hours": 24,
        "capture_bucket": "capture-bucket", "capture_prefix": f"capture/{endpoint}/",
        "ground_truth_bucket": "feedback-bucket", "ground_truth_prefix": "ground-truth/",
        "manifest_bucket": "artifacts-bucket", "manifest_prefix": f"monitoring/{endpoint}/",
        "baseline_s3_uri": None,
    }
    entry.update(changes)
    return entry


MONITORS = {
    "churn-ep": monitor("churn-ep"),
    "first-ep": monitor("first-ep"),
    "fixed-ep": monitor("fixed-ep", baseline_s3_uri="s3://artifacts-bucket/fixed/baseline.json", window_hours=3,
                        ground_truth_lookback_hours=0),
    "nobase-ep": monitor("nobase-ep"),
    "missing-ep": monitor("missing-ep"),
}

CAPTURE = {  # key below capture/churn-ep/ -> in the manifest?
    "champion/2024/05/01/10/before.jsonl": False,  # more than an hour before the window
    "champion/2024/05/01/11/a.jsonl": True,  # the neighbouring hours are listed
    "champion/2024/05/01/12/b.jsonl": True,
    "champion/2024/05/01/12/c.jsonl": True,
    "champion/2024/05/01/13/d.jsonl": True,
    "champion/2024/05/01/14/after.jsonl": False,
    "challenger/2024/05/01/12/f.jsonl": True,
    "challenger/2024/05/01/12/.hidden.jsonl": False,
    "challenger/2024/05/01/12/notes.txt": False,
}
GROUND_TRUTH = {  # key below ground-truth/ -> listed?
    "2024/05/01/11/gt-0": False,  # collected before the window started
    "2024/05/01/12/gt-1": True,
    "2024/05/01/13/gt-2": True,  # the current hour, up to now
    "2024/05/01/14/gt-3": False,  # after now (clock skew, a later run)
}


def create_endpoint(sm, name, variants):
    """``variants``: [(variant name, model package ARN or None, how: "package" | "tag")]."""
    for variant, package, how in variants:
        model = {"ModelName": f"{name}-{variant}", "ExecutionRoleArn": ROLE}
        if package and how == "package":
            model["PrimaryContainer"] = {"ModelPackageName": package}
        else:
            model["PrimaryContainer"] = {"Image": IMAGE}
            if package:
                model["Tags"] = [{"Key": "mlops:model-package-arn", "Value": package}]
        sm.create_model(**model)
    sm.create_endpoint_config(EndpointConfigName=f"{name}-cfg", ProductionVariants=[
        {"VariantName": v, "ModelName": f"{name}-{v}", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 1.0} for v, _, _ in variants])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-cfg")


def create_package(sm, baseline: str | None) -> str:
    request = {
        "ModelPackageGroupName": "churn", "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                   "SupportedResponseMIMETypes": ["text/csv"]},
    }
    if baseline:
        request["ModelMetrics"] = {"ModelDataQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": baseline}}}
    return sm.create_model_package(**request)["ModelPackageArn"]


class HonourTokens:
    """Makes moto behave as SageMaker does with ``ClientRequestToken`` (moto ignores it): a repeated
    token returns the first execution instead of starting one. Records every start request."""

    def __init__(self, client):
        self.reset()
        events = client.meta.events
        events.register("before-parameter-build.sagemaker.StartPipelineExecution", self.record)
        events.register("before-call.sagemaker.StartPipelineExecution", self.replay)
        events.register("after-call.sagemaker.StartPipelineExecution", self.remember)

    def reset(self):
        self.requests: list[dict] = []
        self.arns: dict[str, str] = {}

    def record(self, params, context, **_):
        self.requests.append(dict(params))
        context["token"] = params.get("ClientRequestToken")

    def replay(self, context, **_):
        arn = self.arns.get(context.get("token"))
        if arn is None:
            return None
        return type("Http", (), {"status_code": 200, "headers": {}})(), {"PipelineExecutionArn": arn}

    def remember(self, parsed, context, **_):
        if "PipelineExecutionArn" in parsed:
            self.arns.setdefault(context.get("token"), parsed["PipelineExecutionArn"])


@pytest.fixture(scope="module")
def clients():
    """Created once: building a client (loading the service model) costs more than a test."""
    sm = boto3.client("sagemaker", region_name=REGION)
    return {"s3": boto3.client("s3", region_name=REGION), "sm": sm,
            "cw": boto3.client("cloudwatch", region_name=REGION), "tokens": HonourTokens(sm)}


@pytest.fixture
def aws(monkeypatch, clients):
    set_settings(monkeypatch, monitors=MONITORS)
    with mock_aws():
        s3 = clients["s3"]
        for bucket in ("capture-bucket", "feedback-bucket", "artifacts-bucket"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        for key in CAPTURE:
            s3.put_object(Bucket="capture-bucket", Key=f"capture/churn-ep/{key}", Body=b"{}\n")
        s3.put_object(Bucket="capture-bucket", Key="capture/other-ep/champion/2024/05/01/12/x.jsonl", Body=b"{}\n")
        for key in ("v1/2024/05/01/12/a.jsonl", "v2/2024/05/01/12/b.jsonl"):
            for endpoint in ("first-ep", "fixed-ep", "nobase-ep"):
                s3.put_object(Bucket="capture-bucket", Key=f"capture/{endpoint}/{key}", Body=b"{}\n")
        for key in GROUND_TRUTH:
            s3.put_object(Bucket="feedback-bucket", Key=f"ground-truth/{key}", Body=b"{}\n")

        sm = clients["sm"]
        sm.create_model_package_group(ModelPackageGroupName="churn")
        package = create_package(sm, BASELINE)
        other_package = create_package(sm, "s3://artifacts-bucket/training/run-0/baseline/baseline.json")
        bare_package = create_package(sm, None)
        create_endpoint(sm, "churn-ep", [("challenger", other_package, "package"), ("champion", package, "package")])
        create_endpoint(sm, "first-ep", [("v1", other_package, "tag"), ("v2", package, "tag")])
        create_endpoint(sm, "fixed-ep", [("v1", None, "tag")])
        create_endpoint(sm, "nobase-ep", [("champion", bare_package, "package")])
        sm.create_pipeline(PipelineName="churn-monitoring", RoleArn=ROLE,
                           PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        tokens = clients["tokens"]
        tokens.reset()
        cw = clients["cw"]

        from mlops_runtime.adapters.monitoring_inputs import (
            CloudWatchMetrics,
            S3Objects,
            SageMakerModels,
            SageMakerPipelines,
        )
        from mlops_runtime.handlers import monitoring_launcher

        clock = {"now": NOW}
        monitoring_launcher.configure(
            s3=S3Objects(s3, page_size=2),  # small pages: pagination exercised everywhere
            models=SageMakerModels(sm), pipelines=SageMakerPipelines(sm), cloudwatch=CloudWatchMetrics(cw),
            clock=lambda: clock["now"],
        )
        yield {"s3": s3, "sm": sm, "cw": cw, "tokens": tokens, "clock": clock, "package": package}
        monitoring_launcher.configure()


@pytest.fixture
def bare(monkeypatch, clients):
    """No AWS resources: for events and configurations refused before any call."""
    from mlops_runtime.adapters.monitoring_inputs import S3Objects, SageMakerModels, SageMakerPipelines
    from mlops_runtime.handlers import monitoring_launcher

    set_settings(monkeypatch, monitors=MONITORS)
    clients["tokens"].reset()
    with mock_aws():
        monitoring_launcher.configure(s3=S3Objects(clients["s3"]), models=SageMakerModels(clients["sm"]),
                                      pipelines=SageMakerPipelines(clients["sm"]), clock=lambda: NOW)
        yield clients
        monitoring_launcher.configure()


def run(endpoint="churn-ep"):
    from mlops_runtime.handlers import monitoring_launcher

    return monitoring_launcher.handler({"endpoint": endpoint}, LambdaContext())


def read_json(s3, bucket, key):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def executions(sm, pipeline="churn-monitoring"):
    return sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]


def first_analyses(sm, pipeline="churn-monitoring"):
    """The executions that analysed a window for the first time (not late-label rechecks)."""
    return [e for e in executions(sm, pipeline) if e["PipelineExecutionDisplayName"].startswith("monitor-")]


def parameters(sm, arn):
    return {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]}


def test_starts_the_pipeline_with_exact_manifests_and_parameters(aws):
    result = run()
    assert result["status"] == "started", result
    assert result["window"] == {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z"}
    assert result["capture_objects"] == 5 and result["ground_truth_objects"] == 2
    assert result["baseline"] == BASELINE  # the champion's package, not the challenger's

    capture = read_json(aws["s3"], "artifacts-bucket", WINDOW_FOLDER + "capture.manifest")
    assert capture == [
        {"prefix": "s3://capture-bucket/capture/churn-ep/"},
        "challenger/2024/05/01/12/f.jsonl",
        "champion/2024/05/01/11/a.jsonl",
        "champion/2024/05/01/12/b.jsonl",
        "champion/2024/05/01/12/c.jsonl",
        "champion/2024/05/01/13/d.jsonl",
    ]
    assert capture[1:] == sorted(k for k, listed in CAPTURE.items() if listed)
    truth = read_json(aws["s3"], "artifacts-bucket", WINDOW_FOLDER + "ground_truth.manifest")
    assert truth == [{"prefix": "s3://feedback-bucket/ground-truth/"}, "2024/05/01/12/gt-1", "2024/05/01/13/gt-2"]
    written = aws["s3"].list_objects_v2(Bucket="artifacts-bucket", Prefix=WINDOW_FOLDER)["Contents"]
    assert sorted(o["Key"] for o in written) == [WINDOW_FOLDER + "capture.manifest", WINDOW_FOLDER + "ground_truth.manifest"]

    [execution] = first_analyses(aws["sm"])
    assert execution["PipelineExecutionArn"] == result["execution_arn"]
    assert parameters(aws["sm"], result["execution_arn"]) == {
        "WindowStart": "2024-05-01T12:00:00Z",
        "WindowEnd": "2024-05-01T13:00:00Z",
        "BaselineS3Uri": BASELINE,
        "CaptureManifestS3Uri": f"s3://artifacts-bucket/{WINDOW_FOLDER}capture.manifest",
        "GroundTruthManifestS3Uri": f"s3://artifacts-bucket/{WINDOW_FOLDER}ground_truth.manifest",
        "MetricScope": "all",
        "MetricTime": "",
    }
    request = aws["tokens"].requests[0]
    assert request["PipelineName"] == "churn-monitoring"
    assert request["PipelineExecutionDisplayName"] == "monitor-churn-ep-20240501T1300Z"
    assert 32 <= len(request["ClientRequestToken"]) <= 128 and request["ClientRequestToken"].isalnum()


def test_same_window_twice_starts_one_execution(aws):
    first = run()
    aws["clock"]["now"] = NOW + timedelta(minutes=30)  # a retry later in the same hour
    second = run()
    assert first["status"] == second["status"] == "started"
    assert first["execution_arn"] == second["execution_arn"]
    assert first["label_rechecks"] == second["label_rechecks"]
    assert len(first_analyses(aws["sm"])) == 1
    one, two = (r for r in aws["tokens"].requests if r["PipelineExecutionDisplayName"].startswith("monitor-"))
    assert one["ClientRequestToken"] == two["ClientRequestToken"]
    assert one["PipelineParameters"] == two["PipelineParameters"]

    aws["clock"]["now"] = NOW + timedelta(hours=1)  # the next window: a new token, a new execution
    third = run()
    assert third["window"]["end"] == "2024-05-01T14:00:00Z" and third["execution_arn"] != first["execution_arn"]
    assert third["execution_arn"] not in {e["PipelineExecutionArn"] for e in executions(aws["sm"])} - {
        e["PipelineExecutionArn"] for e in first_analyses(aws["sm"])}
    assert len(first_analyses(aws["sm"])) == 2
    capture = read_json(aws["s3"], "artifacts-bucket", "monitoring/churn-ep/20240501T1400Z/capture.manifest")
    assert capture[1:] == ["challenger/2024/05/01/12/f.jsonl", "champion/2024/05/01/12/b.jsonl",
                           "champion/2024/05/01/12/c.jsonl", "champion/2024/05/01/13/d.jsonl",
                           "champion/2024/05/01/14/after.jsonl"]


def test_late_labels_recompute_the_quality_of_earlier_windows(aws):
    """Issue 15, defect 3: the window [12:00, 13:00) was analysed at 13:20 with the labels collected
    by then; a label collected at 14:xx must be joined to it later. Before, each run analysed only
    the window that had just ended, so that label was never joined to [12:00, 13:00)."""
    first = run()  # 13:20: [12, 13) with the labels so far
    assert first["ground_truth_objects"] == 2
    aws["clock"]["now"] = NOW + timedelta(hours=2)  # 15:20: [12, 13) is 2 h old, [13, 14) 1 h
    result = run()
    assert result["window"]["end"] == "2024-05-01T15:00:00Z"
    rechecks = {r["window"]["end"]: r for r in result["label_rechecks"]}
    # checkpoints 1, 2 and 4 h after a window's end, each with labels collected since the previous one
    assert {end: r["age_hours"] for end, r in rechecks.items()} == {
        "2024-05-01T14:00:00Z": 1, "2024-05-01T13:00:00Z": 2, "2024-05-01T11:00:00Z": 4}
    late = rechecks["2024-05-01T13:00:00Z"]
    assert late["age_hours"] == 2 and late["ground_truth_objects"] == 3
    folder = WINDOW_FOLDER + "labels-2h/"
    truth = read_json(aws["s3"], "artifacts-bucket", folder + "ground_truth.manifest")
    assert truth[1:] == ["2024/05/01/12/gt-1", "2024/05/01/13/gt-2", "2024/05/01/14/gt-3"]
    assert parameters(aws["sm"], late["execution_arn"]) == {
        "WindowStart": "2024-05-01T12:00:00Z",
        "WindowEnd": "2024-05-01T13:00:00Z",
        "BaselineS3Uri": BASELINE,
        "CaptureManifestS3Uri": f"s3://artifacts-bucket/{folder}capture.manifest",
        "GroundTruthManifestS3Uri": f"s3://artifacts-bucket/{folder}ground_truth.manifest",
        "MetricScope": "quality",  # only the quality metrics, timestamped now: the alarm sees them
        "MetricTime": "2024-05-01T15:20:05Z",
    }
    assert len(first_analyses(aws["sm"])) == 2

    aws["clock"]["now"] = NOW + timedelta(hours=2, minutes=30)  # a retry in the same hour: nothing new
    again = run()
    assert [r["execution_arn"] for r in again["label_rechecks"]] == [r["execution_arn"] for r in result["label_rechecks"]]
    assert len(executions(aws["sm"])) == 2 + len(first["label_rechecks"]) + len(rechecks)


def test_a_checkpoint_without_new_labels_starts_no_recheck(aws):
    aws["s3"].delete_object(Bucket="feedback-bucket", Key="ground-truth/2024/05/01/14/gt-3")
    aws["clock"]["now"] = NOW + timedelta(hours=2)  # no label since 14:00, due for [12, 13) and [13, 14)
    rechecked = {r["window"]["end"] for r in run()["label_rechecks"]}
    assert rechecked == {"2024-05-01T11:00:00Z"}  # its checkpoint looks at labels since 13:00


def test_first_variant_and_tagged_package_without_champion(aws):
    result = run("first-ep")
    assert result["status"] == "started"
    assert result["baseline"] == "s3://artifacts-bucket/training/run-0/baseline/baseline.json"  # v1's package


def test_configured_baseline_and_no_ground_truth_marker(aws):
    result = run("fixed-ep")
    assert result["status"] == "started" and result["ground_truth_objects"] == 0
    assert result["window"] == {"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T13:00:00Z"}
    folder = "monitoring/fixed-ep/20240501T1300Z/"
    marker = aws["s3"].get_object(Bucket="artifacts-bucket", Key=folder + "no-ground-truth/.empty")
    assert marker["Body"].read() == b""
    assert read_json(aws["s3"], "artifacts-bucket", folder + "ground_truth.manifest") == [
        {"prefix": f"s3://artifacts-bucket/{folder}no-ground-truth/"}, ".empty",
    ]
    assert read_json(aws["s3"], "artifacts-bucket", folder + "capture.manifest") == [
        {"prefix": "s3://capture-bucket/capture/fixed-ep/"}, "v1/2024/05/01/12/a.jsonl", "v2/2024/05/01/12/b.jsonl",
    ]
    values = parameters(aws["sm"], result["execution_arn"])
    assert values["BaselineS3Uri"] == "s3://artifacts-bucket/fixed/baseline.json"
    assert values["GroundTruthManifestS3Uri"] == f"s3://artifacts-bucket/{folder}ground_truth.manifest"


def test_empty_window_publishes_record_count_zero_and_starts_nothing(aws):
    aws["clock"]["now"] = datetime(2024, 5, 3, 9, 1, tzinfo=UTC)  # no capture around then
    result = run()
    assert result == {"status": "empty_window", "label_rechecks": [],
                      "window": {"start": "2024-05-03T08:00:00Z", "end": "2024-05-03T09:00:00Z"}}
    assert executions(aws["sm"]) == [] and aws["tokens"].requests == []
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket="artifacts-bucket", Prefix="monitoring/")
    [metric] = aws["cw"].list_metrics(Namespace="MlopsPlatform/Monitoring")["Metrics"]
    assert metric["MetricName"] == "RecordCount"
    assert sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]) == [("Endpoint", "churn-ep"), ("Variant", "_all")]
    stats = aws["cw"].get_metric_statistics(
        Namespace="MlopsPlatform/Monitoring", MetricName="RecordCount", Dimensions=metric["Dimensions"],
        StartTime=datetime(2024, 5, 3, 8, 59, tzinfo=UTC), EndTime=datetime(2024, 5, 3, 9, 1, tzinfo=UTC),
        Period=60, Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert [(p["Sum"], p["SampleCount"]) for p in stats] == [(0.0, 1.0)]  # timestamped at the window end


def test_endpoint_not_deployed_is_skipped(aws):
    result = run("missing-ep")
    assert result["status"] == "skipped" and "not deployed" in result["reason"]
    assert aws["tokens"].requests == []


def test_no_baseline_is_skipped_with_a_metric(aws, capsys):
    result = run("nobase-ep")
    assert result["status"] == "skipped" and result["reason"].startswith("no baseline")
    assert "ModelDataQuality" in result["reason"]
    assert aws["tokens"].requests == []
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any("MonitoringSkipped" in m and m.get("Endpoint") == "nobase-ep" for m in emitted)


def test_package_not_found_is_no_baseline(aws):
    aws["sm"].delete_endpoint(EndpointName="nobase-ep")
    aws["sm"].delete_endpoint_config(EndpointConfigName="nobase-ep-cfg")
    aws["sm"].create_endpoint_config(EndpointConfigName="nobase-ep-cfg2", ProductionVariants=[
        {"VariantName": "champion", "ModelName": "fixed-ep-v1", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    aws["sm"].create_endpoint(EndpointName="nobase-ep", EndpointConfigName="nobase-ep-cfg2")
    result = run("nobase-ep")  # the champion's model names no package
    assert result["status"] == "skipped" and "no model package" in result["reason"]


@pytest.mark.parametrize(
    ("event", "monitors", "reason"),
    [
        ({}, MONITORS, "event must be"),
        ({"endpoint": ""}, MONITORS, "event must be"),
        ("churn-ep", MONITORS, "event must be"),
        ({"endpoint": "unknown-ep"}, MONITORS, "no monitor configured"),
        ({"endpoint": "churn-ep"}, None, "MLOPS_SETTINGS is not set"),
        ({"endpoint": "churn-ep"}, "{not json", "Invalid JSON"),
        ({"endpoint": "churn-ep"}, {"churn-ep": monitor("churn-ep", window_hours=200)}, "window_hours"),
        ({"endpoint": "churn-ep"}, {"churn-ep": monitor("churn-ep", capture_bucket=None)}, "capture_bucket"),
    ],
)
def test_bad_event_or_configuration_is_an_error_result(bare, monkeypatch, event, monitors, reason):
    from mlops_runtime.handlers import monitoring_launcher

    if monitors is None:
        monkeypatch.delenv(SETTINGS_ENV)
    else:
        monkeypatch.setenv(SETTINGS_ENV, monitors if isinstance(monitors, str) else json.dumps({"monitors": monitors}))
    result = monitoring_launcher.handler(event, LambdaContext())
    assert result["status"] == "error" and reason in result["reason"]
    assert bare["tokens"].requests == []


# --- adapter retries ----------------------------------------------------------------------------


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "ListObjectsV2")


class Flaky:
    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def list_objects_v2(self, **request):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"Contents": [{"Key": request["Prefix"] + "a.jsonl"}], "IsTruncated": False}


def test_throttling_is_retried_with_back_off():
    from mlops_runtime.adapters.monitoring_inputs import S3Objects

    slept = []
    client = Flaky([client_error("SlowDown"), client_error("ThrottlingException")])
    adapter = S3Objects(client, sleep=slept.append, jitter=lambda: 1.0)
    assert adapter.list_keys("b", "p/") == ["p/a.jsonl"]
    assert client.calls == 3 and slept == [0.2, 0.4]


def test_other_errors_and_exhausted_retries_are_raised():
    from mlops_runtime.adapters.monitoring_inputs import S3Objects

    denied = Flaky([client_error("AccessDenied")])
    with pytest.raises(ClientError, match="AccessDenied"):
        S3Objects(denied, sleep=lambda _: None).list_keys("b", "p/")
    assert denied.calls == 1
    throttled = Flaky([client_error("SlowDown")] * 5)
    with pytest.raises(ClientError, match="SlowDown"):
        S3Objects(throttled, sleep=lambda _: None, max_attempts=3).list_keys("b", "p/")
    assert throttled.calls == 3
