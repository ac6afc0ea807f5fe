"""Monitoring stack: the monitoring pipeline and its schedule, alarms, the retraining rule, the dashboard."""

from __future__ import annotations

import json

import pytest
from monitoring.metrics import ALARMS as MONITORING_ALARMS
from aws_cdk.assertions import Match

from mlops_platform.config.loader import environment_names
from mlops_runtime.settings.base import SETTINGS_ENV

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()
MONITORED = ("staging", "prod")


def example(items: list[dict], name: str = "example-classifier") -> dict:
    """The shipped example's entry of a config list (a config may list other models before it)."""
    (item,) = [item for item in items if item["name"] == name]
    return item


def resources(synthesis, environment, type_):
    template = synthesis.template(environment, "Monitoring")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def function(synthesis, environment, handler) -> dict:
    found = [f["Properties"] for f in resources(synthesis, environment, "AWS::Lambda::Function").values()
             if f["Properties"]["Handler"] == f"mlops_runtime.handlers.{handler}.handler"]
    return found[0] if found else None


def definition(pipeline) -> dict:
    """The pipeline definition with CDK tokens replaced by the string TOKEN."""
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    if isinstance(body, dict):
        body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    return json.loads(body)


def test_dev_has_no_monitoring_job_but_still_a_dashboard_and_training_failure_alarm(synthesis):
    assert not resources(synthesis, "dev", "AWS::SageMaker::Pipeline")
    assert function(synthesis, "dev", "monitoring_launcher") is None
    assert len(resources(synthesis, "dev", "AWS::CloudWatch::Dashboard")) == 1
    alarms = [a["Properties"]["AlarmName"] for a in resources(synthesis, "dev", "AWS::CloudWatch::Alarm").values()]
    pipelines = [p.name for p in synthesis.configs["dev"].training.pipelines]
    assert sorted(alarms) == sorted([f"mlops-dev-{name}-failed" for name in pipelines] + ["mlops-dev-search-bulk-index-failed"])
    assert "mlops-dev-example-classifier-failed" in alarms


@pytest.mark.parametrize("environment", MONITORED)
def test_monitoring_pipeline_runs_monitor_py_in_the_sklearn_image(synthesis, environment):
    config = synthesis.configs[environment]
    endpoint = f"{config.name_prefix}-example-classifier"
    (pipeline,) = [p for p in resources(synthesis, environment, "AWS::SageMaker::Pipeline").values()
                   if p["Properties"]["PipelineName"] == f"{endpoint}-monitoring"]
    body = definition(pipeline)
    assert [p["Name"] for p in body["Parameters"]] == [
        "WindowStart", "WindowEnd", "BaselineS3Uri", "CaptureManifestS3Uri", "GroundTruthManifestS3Uri",
        "MetricScope", "MetricTime"]
    (monitoring,) = [e.monitoring for e in config.serving.endpoints if e.name == "example-classifier"]
    *shards, step = body["Steps"]  # N > 1 instances: the shards' step, then the merge (below)
    assert len(shards) == (monitoring.instance_count > 1)
    if shards:
        assert_sharded(body, monitoring.instance_count)
    args = step["Arguments"]
    assert args["AppSpecification"]["ImageUri"] == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3")
    assert "monitor.py" in args["AppSpecification"]["ContainerEntrypoint"][2]
    container_args = args["AppSpecification"]["ContainerArguments"]
    flags = {container_args[i]: container_args[i + 1] for i in range(len(container_args) - 1)
             if isinstance(container_args[i], str) and container_args[i].startswith("--")}
    assert flags["--endpoint"] == endpoint
    assert flags["--window-start"] == {"Get": "Parameters.WindowStart"}
    assert flags["--metric-scope"] == {"Get": "Parameters.MetricScope"}  # late-label rechecks: quality only
    assert flags["--metric-time"] == {"Get": "Parameters.MetricTime"}
    assert json.loads(flags["--thresholds"]) == monitoring.thresholds
    policy = json.loads(flags["--drift-policy"])  # the calibrated decision's settings from config
    assert policy["min_effect"] == monitoring.drift.min_effect and policy["min_rows"] == monitoring.drift.min_rows
    assert policy["quality_looks"] >= 2  # the run and the late-label rechecks share the quality budget
    assert "drift-carry.json" in json.dumps(flags["--carry"])
    assert "--publish" in container_args
    inputs = {i["InputName"]: i["S3Input"] for i in body["Steps"][0]["Arguments"]["ProcessingInputs"]}
    assert inputs["capture"]["S3DataType"] == "ManifestFile"
    assert inputs["capture"]["S3Uri"] == {"Get": "Parameters.CaptureManifestS3Uri"}
    assert inputs["ground_truth"]["S3DataType"] == "ManifestFile"
    assert inputs["baseline"]["S3Uri"] == {"Get": "Parameters.BaselineS3Uri"}
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    # encrypted volume and output, inside the VPC with inter-container encryption
    assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "TOKEN"
    assert args["ProcessingOutputConfig"]["KmsKeyId"] == "TOKEN"
    assert args["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
    assert args["NetworkConfig"]["VpcConfig"]["Subnets"]


def assert_sharded(body: dict, count: int) -> None:
    """``count`` instances read the capture manifest ShardedByS3Key (the labels replicated), then
    one instance merges their partials, reading neither captures nor labels, and alone publishes."""
    shards, merge = body["Steps"]
    assert (shards["Name"], merge["Name"]) == ("MonitorShards", "Monitor")
    assert shards["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == count
    assert merge["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    shard_inputs = {i["InputName"]: i["S3Input"] for i in shards["Arguments"]["ProcessingInputs"]}
    assert shard_inputs["capture"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert shard_inputs["ground_truth"]["S3DataDistributionType"] == "FullyReplicated"
    merge_inputs = {i["InputName"]: i["S3Input"] for i in merge["Arguments"]["ProcessingInputs"]}
    assert merge_inputs["partials"]["S3Uri"] == {
        "Get": "Steps.MonitorShards.ProcessingOutputConfig.Outputs['partials'].S3Output.S3Uri"}
    assert "capture" not in merge_inputs and "ground_truth" not in merge_inputs
    shard_args = shards["Arguments"]["AppSpecification"]["ContainerArguments"]
    merge_args = merge["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert "--shard-output" in shard_args and "--publish" not in shard_args and "--carry" not in shard_args
    assert "--partials-dir" in merge_args and "--publish" in merge_args and "--carry" in merge_args


def test_a_sharded_monitoring_config_deploys_shards_then_one_merge():
    """``monitoring.instance_count`` > 1 in an environment's config reaches the deployed pipeline
    (prod's shipped config with 4 instances: its traffic needs one, see docs/scaling.md)."""
    from pathlib import Path

    import yaml

    from mlops_platform.app_builder import build_app
    from mlops_platform.config import parse_config

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "prod.yaml").read_text())
    data["serving"]["endpoints"][0]["monitoring"]["instance_count"] = 4
    stack = build_app([parse_config(data, "prod.yaml")]).node.find_child("prod").monitoring
    pipeline = stack.node.find_child("ExampleClassifierMonitoringPipeline")
    body = definition({"Properties": {"PipelineDefinition": stack.resolve(pipeline.pipeline_definition)}})
    assert_sharded(body, 4)


@pytest.mark.parametrize("environment", MONITORED)
def test_launcher_is_scheduled_per_endpoint_with_its_contract(synthesis, cdk_template, environment):
    config = synthesis.configs[environment]
    endpoint = f"{config.name_prefix}-example-classifier"
    props = function(synthesis, environment, "monitoring_launcher")
    monitors = json.loads(props["Environment"]["Variables"][SETTINGS_ENV])["monitors"]
    assert monitors[endpoint] == {
        "endpoint": endpoint, "pipeline_name": f"{endpoint}-monitoring",
        "window_hours": 1, "schedule_hours": 1.0, "ground_truth_lookback_hours": 72,
        "capture_bucket": f"{config.name_prefix}-data-capture-{config.account}-{config.region}",
        "capture_prefix": f"capture/{endpoint}/",
        "ground_truth_bucket": f"{config.name_prefix}-feedback-{config.account}-{config.region}",
        "ground_truth_prefix": "ground-truth/",
        "manifest_bucket": f"{config.name_prefix}-artifacts-{config.account}-{config.region}",
        "manifest_prefix": f"monitoring/{endpoint}/",
        "baseline_s3_uri": None,
    }
    cdk_template(environment, "Monitoring").has_resource_properties("AWS::Scheduler::Schedule", {
        "ScheduleExpression": "cron(15 * * * ? *)",
        "Target": Match.object_like({"Input": json.dumps({"endpoint": endpoint})}),
    })


@pytest.mark.parametrize("environment", MONITORED)
def test_drift_quality_and_failure_alarms_notify_the_topic(synthesis, cdk_template, environment):
    config = synthesis.configs[environment]
    endpoint = f"{config.name_prefix}-example-classifier"
    template = cdk_template(environment, "Monitoring")
    topic = f"arn:aws:sns:eu-west-1:{config.account}:{config.name_prefix}-notifications"
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"{endpoint}-drift", "Namespace": "MlopsPlatform/Monitoring", "MetricName": "DriftDetected",
        "Dimensions": Match.array_with([{"Name": "Endpoint", "Value": endpoint}, {"Name": "Variant", "Value": "_all"}]),
        "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "AlarmActions": [topic],
    })
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"{endpoint}-quality", "MetricName": "QualityBelowTarget", "Statistic": "Maximum",
        "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "AlarmActions": [topic],
    })
    # every alarm on the job's namespace watches a metric of the one table (monitoring/metrics.py ALARMS),
    # which the job is tested to produce (tests/unit/monitoring/test_monitoring_cli.py test_end_to_end)
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    watched = {a["Properties"]["MetricName"] for a in alarms.values()
               if a["Properties"].get("Namespace") == "MlopsPlatform/Monitoring"}
    assert watched and watched <= set(MONITORING_ALARMS.values())
    for pipeline in (f"{endpoint}-monitoring", f"{config.name_prefix}-example-classifier"):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": f"{pipeline}-failed", "Namespace": "AWS/Sagemaker/ModelBuildingPipeline",
            "MetricName": "ExecutionFailed", "Dimensions": [{"Name": "PipelineName", "Value": pipeline}],
            "AlarmActions": [topic],
        })


def test_retraining_closes_the_loop_where_enabled(synthesis, cdk_template):
    props = function(synthesis, "staging", "retraining_trigger")
    settings = json.loads(props["Environment"]["Variables"][SETTINGS_ENV])
    endpoint = "mlops-staging-example-classifier"
    topic = "arn:aws:sns:eu-west-1:222222222222:mlops-staging-notifications"
    assert settings.pop("notification_topic_arn") == topic
    settings = settings["retraining"]
    expected = {"pipelines": ["mlops-staging-example-classifier"], "alarm_period_hours": 1, "cooldown_hours": 24.0,
                "production": {
        # closed loop: production records since the last training, joined with their ground truth
        "model_package_group": "mlops-staging-example-classifier",
        "capture_bucket": "mlops-staging-data-capture-222222222222-eu-west-1",
        "capture_prefix": f"capture/{endpoint}/",
        "ground_truth_bucket": "mlops-staging-feedback-222222222222-eu-west-1",
        "ground_truth_prefix": "ground-truth/",
        "dataset_bucket": "mlops-staging-artifacts-222222222222-eu-west-1",
        "dataset_prefix": f"retraining/{endpoint}/",
        "max_lookback_hours": 720,
    }}
    assert settings == {alarm: {"alarm": alarm, **expected} for alarm in (f"{endpoint}-drift", f"{endpoint}-quality")}
    cdk_template("staging", "Monitoring").has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                         "detail": {"alarmName": sorted(settings), "state": {"value": ["ALARM"]}}},
    })
    assert function(synthesis, "prod", "retraining_trigger") is None  # disabled in prod's config


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_dashboard_covers_serving_experiments_feedback_drift_and_pipelines(synthesis, environment):
    config = synthesis.configs[environment]
    (dashboard,) = resources(synthesis, environment, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    text = body if isinstance(body, str) else "".join(p for p in body["Fn::Join"][1] if isinstance(p, str))
    for endpoint in config.serving.endpoints:
        assert f"{config.name_prefix}-{endpoint.name}" in text
    compact = text.replace(" ", "")
    for route in config.serving.routes():
        for arm in route.arms:
            assert f'"ArmWeight","Arm","{arm.arm}","Experiment","{route.name}"' in compact
    assert "ArmWeight" in text and "FeedbackJoined" in text and "ExecutionFailed" in text
    if environment in MONITORED:
        assert "DriftedFeatures" in text and '"AUC"' in text and "threshold" in text


def test_a_monitored_text_feature_is_described_by_training_and_tested_by_the_deployed_pipeline():
    """Declared on the endpoint's monitoring, a text feature reaches both pipelines: the training
    pipeline's preprocess step writes its text reference into the baseline it registers (the
    champion's ModelDataQuality statistics, BaselineS3Uri), and the monitoring step tests it."""
    from pathlib import Path

    import yaml

    from mlops_platform.app_builder import build_app
    from mlops_platform.config import parse_config

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "staging.yaml").read_text())
    example(data["training"]["pipelines"])["feature_group"] = "customers"  # its String inputs are known at synth
    example(data["serving"]["endpoints"])["monitoring"]["text_features"] = ["plan"]
    stage = build_app([parse_config(data, "staging.yaml")]).node.find_child("staging")

    def steps(stack, pipeline_id: str) -> list:
        pipeline = stack.node.find_child(pipeline_id)
        return definition({"Properties": {"PipelineDefinition": stack.resolve(pipeline.pipeline_definition)}})["Steps"]

    preprocess = steps(stage.training, "ExampleClassifierPipeline")[0]
    arguments = preprocess["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--text-features") + 1] == "plan"

    (step,) = steps(stage.monitoring, "ExampleClassifierMonitoringPipeline")
    arguments = step["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--text-features") + 1] == "plan"
    assert arguments[arguments.index("--baseline") + 1] == "/opt/ml/processing/input/baseline"
    baseline = {i["InputName"]: i["S3Input"] for i in step["Arguments"]["ProcessingInputs"]}["baseline"]
    assert baseline["S3Uri"] == {"Get": "Parameters.BaselineS3Uri"}  # the champion's registered baseline
