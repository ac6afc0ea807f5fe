"""Closed-loop retraining (issue 15, defect 5): an alarm-started run trains on the raw data plus the
production records joined with their ground truth since the last training.

Before, the retraining trigger started the training pipeline with its default parameters: the same
raw-data prefix, so production labels from the feedback API never reached the training data."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mlops_runtime.domain import production_data as pd_domain
from lambda_context import LambdaContext
from settings_support import set_settings

from mlops_runtime.domain import retraining as domain
from mlops_runtime.settings.monitoring import ProductionSource, RetrainingTriggerSettings

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/model:1"
FEATURES = ("f0", "f1", "f2")
H = timedelta(hours=1)
PRODUCTION = {
    "model_package_group": "churn", "capture_bucket": "capture-bucket", "capture_prefix": "capture/churn-ep/",
    "ground_truth_bucket": "feedback-bucket", "ground_truth_prefix": "ground-truth/",
    "dataset_bucket": "artifacts-bucket", "dataset_prefix": "retraining/churn/", "max_lookback_hours": 720,
}
RETRAINING = {"churn-ep-quality": {"pipelines": ["churn-training"], "cooldown_hours": 24, "production": PRODUCTION}}


def capture_line(inference_id: str, when: datetime, row, *, json_body: bool = False, base64_body: bool = False) -> str:
    data = json.dumps({"instances": [list(row)]}) if json_body else ",".join(str(v) for v in row)
    encoding = "JSON" if json_body else "CSV"
    if base64_body:
        data, encoding = base64.b64encode(data.encode()).decode(), "BASE64"
    content_type = "application/json" if json_body else "text/csv"
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding},
            "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.7", "encoding": "CSV"},
        },
        "eventMetadata": {"eventId": f"evt-{inference_id}", "inferenceId": inference_id,
                          "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": "0",
    })


def label_line(inference_id: str, label) -> str:
    from mlops_runtime.domain.feedback import ground_truth_line

    return ground_truth_line(inference_id, label).decode()


# --- the join, pure ---------------------------------------------------------------------------------


def window(start=datetime(2024, 5, 1, 0, tzinfo=UTC), end=datetime(2024, 5, 2, 0, tzinfo=UTC)):
    return pd_domain.TrainingWindow(start, end, True)


def test_training_window_is_since_the_last_training_within_the_lookback():
    now = datetime(2024, 5, 10, 9, 40, tzinfo=UTC)
    last = datetime(2024, 5, 8, 7, 5, tzinfo=UTC)
    assert pd_domain.training_window(now, last, 720).to_dict() == {
        "start": "2024-05-08T07:05:00Z", "end": "2024-05-10T09:00:00Z", "since_last_training": True}
    capped = pd_domain.training_window(now, last, 24)
    assert capped.start == datetime(2024, 5, 9, 9, tzinfo=UTC)
    assert pd_domain.training_window(now, None, 24).since_last_training is False


def test_join_reads_csv_json_and_base64_captures_and_counts_what_it_cannot_use():
    join = pd_domain.ProductionJoin(FEATURES, window())
    inside = datetime(2024, 5, 1, 12, tzinfo=UTC)
    join.add_labels("\n".join([label_line("a", 1), label_line("b", 0), label_line("c", "1"), label_line("d", 1),
                               label_line("never-captured", 1), label_line("e", 1), "{broken"]).encode())
    join.add_capture("\n".join([
        capture_line("a", inside, (1.5, 2, 3)),
        capture_line("b", inside, (4, 5, 6), json_body=True),
        capture_line("c", inside, (7, 8, 9), base64_body=True),
        capture_line("d", datetime(2024, 5, 2, 0, tzinfo=UTC), (1, 1, 1)),  # at the window's end: outside
        capture_line("e", inside, (1, 2)),  # two values for three features
        capture_line("unlabelled", inside, (0, 0, 0)),
    ]).encode())
    assert join.csv().decode().splitlines() == ["f0,f1,f2,target", "1.5,2,3,1", "4,5,6,0", "7,8,9,1"]
    assert join.counts() == {"captured": 5, "labelled": 3, "rows": 3, "unusable": 2}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 47), st.sampled_from([0, 1, None])), max_size=30))
def test_a_row_per_captured_labelled_record_inside_the_window(records):
    """Whatever the order of arrival, every record inferred in the window with a label is one row
    with that label, and nothing else is."""
    join = pd_domain.ProductionJoin(FEATURES, window())
    join.add_labels("\n".join(label_line(f"id-{i}", label) for i, (_, label) in enumerate(records)
                              if label is not None).encode())
    start = datetime(2024, 4, 30, 12, tzinfo=UTC)
    join.add_capture("\n".join(capture_line(f"id-{i}", start + hour * H, (i, hour, 0))
                               for i, (hour, _) in enumerate(records)).encode())
    expected = [[str(i), str(hour), "0", str(label)] for i, (hour, label) in enumerate(records)
                if label is not None and 12 <= hour < 36]
    assert [line.split(",") for line in join.csv().decode().splitlines()[1:]] == expected
    assert join.captured == sum(1 for hour, _ in records if 12 <= hour < 36)


def test_production_entry_is_validated():
    good = RetrainingTriggerSettings(retraining=RETRAINING).retraining["churn-ep-quality"]
    assert good.production == ProductionSource(**PRODUCTION)
    for change in ({"capture_prefix": "a//b/"}, {"max_lookback_hours": 0}, {"dataset_bucket": "Bad_Bucket"},
                   {"extra": 1}):
        entry = {**RETRAINING["churn-ep-quality"], "production": {**PRODUCTION, **change}}
        with pytest.raises(ValueError, match="production"):
            RetrainingTriggerSettings(retraining={"churn-ep-quality": entry})


# --- the trigger against moto -------------------------------------------------------------------


NOW = datetime(2024, 5, 3, 10, 20, tzinfo=UTC)


@pytest.fixture
def loop(monkeypatch):
    set_settings(monkeypatch, retraining=RETRAINING)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sm = boto3.client("sagemaker", region_name=REGION)
        for bucket in ("capture-bucket", "feedback-bucket", "artifacts-bucket"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket="artifacts-bucket", Key="pipelines/churn-training/run-1/Preprocess/baseline/baseline.json",
                      Body=json.dumps({"feature_names": list(FEATURES), "target_column": "churned"}))
        sm.create_model_package_group(ModelPackageGroupName="churn")
        sm.create_model_package(
            ModelPackageGroupName="churn", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelDataQuality": {"Statistics": {
                "ContentType": "application/json",
                "S3Uri": "s3://artifacts-bucket/pipelines/churn-training/run-1/Preprocess/baseline/baseline.json"}}})
        # moto stamps the package with the real clock: the last training is "now" there, so the
        # test's clock is placed relative to it.
        created = sm.list_model_packages(ModelPackageGroupName="churn")["ModelPackageSummaryList"][0]["CreationTime"]
        sm.create_pipeline(PipelineName="churn-training", RoleArn=ROLE,
                           PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))

        from mlops_runtime.adapters.monitoring_inputs import S3Objects, SageMakerModels, SageMakerPipelines
        from mlops_runtime.handlers import retraining_trigger

        now = created + timedelta(days=3)  # every label below has arrived by then
        retraining_trigger.configure(pipelines=SageMakerPipelines(sm), models=SageMakerModels(sm),
                                     s3=S3Objects(s3, page_size=2), clock=lambda: now)
        yield {"s3": s3, "sm": sm, "trained": created, "now": now}
        retraining_trigger.configure()


def put_production_traffic(loop) -> list[list[str]]:
    """Predictions before and after the last training, labels minutes to a day late (some gzip,
    as Firehose may write them). Returns the rows expected in production.csv."""
    s3, trained = loop["s3"], loop["trained"]
    rng = np.random.default_rng(3)
    expected, capture, labels = [], {}, {}
    for i in range(40):
        when = trained + timedelta(hours=-6 + i, minutes=30)  # the first six before the last training
        row = [round(float(v), 3) for v in rng.normal(size=3)]
        label = int(rng.random() < 0.5)
        capture.setdefault(when.strftime("%Y/%m/%d/%H"), []).append(capture_line(f"p-{i}", when, row))
        if i % 5 != 4:  # every fifth prediction never gets a label
            arrived = when + timedelta(minutes=10 + 37 * i)  # up to a day late
            labels.setdefault(arrived.strftime("%Y/%m/%d/%H"), []).append(label_line(f"p-{i}", label))
            if when >= trained:
                expected.append([str(v) for v in row] + [str(label)])
    for hour, lines in capture.items():
        s3.put_object(Bucket="capture-bucket", Key=f"capture/churn-ep/champion/{hour}/c.jsonl",
                      Body="\n".join(lines).encode())
    for n, (hour, lines) in enumerate(labels.items()):
        body = "".join(line for line in lines).encode()
        s3.put_object(Bucket="feedback-bucket", Key=f"ground-truth/{hour}/firehose-{n}",
                      Body=gzip.compress(body) if n % 2 else body)
    return expected


def alarm(name="churn-ep-quality"):
    return {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change", "time": "2024-05-03T10:17:00Z",
            "detail": {"alarmName": name, "state": {"value": "ALARM", "timestamp": "2024-05-03T10:16:59.000+0000"},
                       "previousState": {"value": "OK"}}}


def test_an_alarm_retrains_on_production_records_joined_with_their_ground_truth(loop):
    expected = put_production_traffic(loop)
    from mlops_runtime.handlers import retraining_trigger

    result = retraining_trigger.handler(alarm(), LambdaContext())
    [decision] = result["decisions"]
    assert decision["action"] == "started", decision
    production = decision["production"]
    assert production["counts"]["rows"] == len(expected) == 27
    assert production["window"]["start"] == loop["trained"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    bucket, _, key = production["uri"][len("s3://"):].partition("/")
    assert bucket == "artifacts-bucket" and key.startswith("retraining/churn/") and key.endswith("/production.csv")
    table = loop["s3"].get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    assert table[0] == "f0,f1,f2,churned"
    assert sorted(line.split(",") for line in table[1:]) == sorted(expected)

    parameters = {p["Name"]: p["Value"] for p in loop["sm"].list_pipeline_parameters_for_execution(
        PipelineExecutionArn=decision["execution_arn"])["PipelineParameters"]}
    assert parameters == {
        "ProductionDataUri": production["uri"],
        "ProductionWindowStart": production["window"]["start"],
        "ProductionWindowEnd": production["window"]["end"],
        "ProductionRecords": "27",
    }


def test_without_a_baseline_the_run_starts_on_the_raw_data_and_says_why(loop):
    sm = loop["sm"]
    sm.create_model_package(
        ModelPackageGroupName="churn", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})
    from mlops_runtime.handlers import retraining_trigger

    [decision] = retraining_trigger.handler(alarm(), LambdaContext())["decisions"]
    assert decision["action"] == "started"
    assert "no model package with a baseline" in decision["production"]["without_production_data"]


def test_the_example_preprocess_step_reads_the_raw_and_the_production_data(loop, tmp_path):
    """The hand-over: the trigger's production.csv, read by the example's preprocess step from S3
    (as in the pipeline, ``--production-data <ProductionDataUri>``) next to the raw data."""
    from training.example_classifier import preprocess

    put_production_traffic(loop)
    from mlops_runtime.handlers import retraining_trigger

    [decision] = retraining_trigger.handler(alarm(), LambdaContext())["decisions"]
    rng = np.random.default_rng(9)
    raw = pd.DataFrame(rng.normal(size=(120, 3)), columns=list(FEATURES))
    raw["churned"] = (raw["f0"] > 0).astype(int)
    (tmp_path / "input").mkdir()
    raw.to_csv(tmp_path / "input" / "raw.csv", index=False)
    code = preprocess.main(["--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
                            "--target-column", "churned", "--production-data", decision["production"]["uri"]])
    assert code == 0
    rows = sum(len(pd.read_csv(tmp_path / "out" / name / f"{name}.csv", header=None))
               for name in ("train", "validation", "test"))
    assert rows == 120 + 27
    assert preprocess.main(["--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "plain"),
                            "--target-column", "churned", "--production-data", "none"]) == 0
    assert sum(len(pd.read_csv(tmp_path / "plain" / name / f"{name}.csv", header=None))
               for name in ("train", "validation", "test")) == 120


def test_production_data_with_other_columns_is_one_clear_line(tmp_path, capsys):
    from training.example_classifier import preprocess

    raw = pd.DataFrame({"a": range(60), "target": [0, 1] * 30})
    (tmp_path / "input").mkdir()
    raw.to_csv(tmp_path / "input" / "raw.csv", index=False)
    (tmp_path / "production.csv").write_text("b,target\n1,0\n")
    assert preprocess.main(["--input-dir", str(tmp_path / "input"), "--output-dir", str(tmp_path / "out"),
                            "--production-data", str(tmp_path / "production.csv")]) == 1
    assert "production columns ['b', 'target'] differ" in capsys.readouterr().err
