"""API stack: REST API authorization, validation, throttling and logs; tables; the inference and
controller Lambdas' contracts and permissions; controller schedules."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from mlops_platform.api_routes import ROUTES
from mlops_platform.config.loader import environment_names
from settings_support import deployed_settings

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()


def resources(synthesis, environment, type_):
    template = synthesis.template(environment, "Api")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def function(synthesis, environment, handler) -> dict:
    (found,) = [f["Properties"] for f in resources(synthesis, environment, "AWS::Lambda::Function").values()
                if f["Properties"]["Handler"] == f"mlops_runtime.handlers.{handler}.handler"]
    return found


def policy_statements(synthesis, environment, function_props) -> list[dict]:
    role = function_props["Role"]["Fn::GetAtt"][0]
    return [s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_route_is_iam_authorized_validated_lambda_proxy(synthesis, cdk_template, environment):
    methods = resources(synthesis, environment, "AWS::ApiGateway::Method")
    # the route table (api_routes.ROUTES); search routes where the config has indexes
    routes = [r for r in ROUTES if r.function != "search" or synthesis.configs[environment].search.indexes]
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == sorted(r.method for r in routes)
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["RequestValidatorId"] and props["Integration"]["Type"] == "AWS_PROXY"
    with_path_parameter = [m["Properties"] for m in methods.values()
                           if "method.request.path.endpoint" in m["Properties"].get("RequestParameters", {})]
    assert len(with_path_parameter) == sum(r.parameters == ("endpoint",) for r in routes)
    assert all(p["RequestParameters"] == {"method.request.path.endpoint": True} for p in with_path_parameter)
    with_body_model = [m["Properties"] for m in methods.values() if "RequestModels" in m["Properties"]]
    assert len(with_body_model) == sum(r.object_body for r in routes)
    assert all("application/json" in m["RequestModels"] for m in with_body_model)
    template = cdk_template(environment, "Api")
    template.has_resource_properties("AWS::ApiGateway::RequestValidator", {
        "ValidateRequestBody": True, "ValidateRequestParameters": True})
    template.has_resource_properties("AWS::ApiGateway::Model", {
        "ContentType": "application/json", "Schema": Match.object_like({"type": "object"})})
    paths = sorted(r["Properties"]["PathPart"] for r in resources(synthesis, environment, "AWS::ApiGateway::Resource").values())
    assert set(paths) >= {"v1", "endpoints", "{endpoint}", "invocations", "experiments", "feedback"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_stage_throttles_traces_and_logs_without_caller_identity(synthesis, cdk_template, environment):
    api = synthesis.configs[environment].serving.api
    (stage,) = resources(synthesis, environment, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == api.stage_name and props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == api.rate_limit and settings["ThrottlingBurstLimit"] == api.burst_limit
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    log_format = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "resourcePath", "responseLatency"} <= set(log_format)
    assert not any(v for v in log_format.values() if "sourceIp" in v or "userAgent" in v or "caller" in v)
    (log_group,) = [g for g in resources(synthesis, environment, "AWS::Logs::LogGroup").values()
                    if "apigateway" in g["Properties"]["LogGroupName"]]
    assert props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0] in {
        k for k, v in resources(synthesis, environment, "AWS::Logs::LogGroup").items() if v is log_group}
    assert "KmsKeyId" in log_group["Properties"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_tables_keys_ttl_encryption_and_recovery(cdk_template, environment):
    template = cdk_template(environment, "Api")
    expected = [
        ([{"AttributeName": "inference_id", "KeyType": "HASH"}], "expires_at"),
        ([{"AttributeName": "experiment", "KeyType": "HASH"}, {"AttributeName": "round_arm_hour", "KeyType": "RANGE"}], None),
        ([{"AttributeName": "experiment", "KeyType": "HASH"}], None),
        ([{"AttributeName": "feedback_id", "KeyType": "HASH"}], "expires_at"),
    ]
    for key_schema, ttl in expected:
        template.has_resource_properties("AWS::DynamoDB::Table", {
            "KeySchema": key_schema,
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": ttl, "Enabled": True} if ttl else Match.absent(),
        })
    template.resource_count_is("AWS::DynamoDB::Table", 4)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_inference_lambda_contract_parses_with_the_runtimes_parser(synthesis, environment):
    config = synthesis.configs[environment]
    props = function(synthesis, environment, "inference_api")
    settings = deployed_settings(props)
    experiments = settings.experiments
    assert sorted(experiments) == sorted(route.name for route in config.serving.routes())
    for route in config.serving.routes():
        parsed = experiments[route.name]
        assert [(t.endpoint, t.variant) for t in parsed.arms.values()] == [
            (f"{config.name_prefix}-{arm.endpoint}", arm.variant) for arm in route.arms]
        assert parsed.initial_weights == pytest.approx(route.initial_weights)
    assert settings.prediction_ttl_days == config.serving.api.prediction_ttl_days
    tables = resources(synthesis, environment, "AWS::DynamoDB::Table")
    for name in ("predictions_table", "statistics_table", "state_table"):
        assert getattr(settings, name).strip("<>") in tables
    # The HMAC key is read at cold start from Secrets Manager: only the secret's id is configured.
    (secret_id,) = resources(synthesis, environment, "AWS::SecretsManager::Secret")
    assert settings.subject_hash_secret == f"<{secret_id}>"
    assert "SUBJECT_HASH_KEY" not in props["Environment"]["Variables"]
    statements = policy_statements(synthesis, environment, props)
    assert any("secretsmanager:GetSecretValue" in json.dumps(s["Action"]) and secret_id in json.dumps(s["Resource"])
               for s in statements)
    assert props["Timeout"] <= 28 and props["TracingConfig"] == {"Mode": "Active"}


def test_dev_ab_test_spans_two_serverless_endpoints(synthesis):
    ab = deployed_settings(function(synthesis, "dev", "inference_api")).experiments["example-classifier-ab"]
    assert ab.endpoints == ("mlops-dev-example-classifier", "mlops-dev-example-classifier-candidate")
    assert ab.initial_weights == {"current": 0.5, "candidate": 0.5}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_inference_may_invoke_only_this_environments_endpoints(synthesis, environment):
    config = synthesis.configs[environment]
    statements = policy_statements(synthesis, environment, function(synthesis, environment, "inference_api"))
    (invoke,) = [s for s in statements if s.get("Sid") == "InvokeThisEnvironmentsEndpoints"]
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    expected = sorted({f"arn:aws:sagemaker:eu-west-1:{config.account}:endpoint/{config.name_prefix}-{arm.endpoint}"
                       for route in config.serving.routes() for arm in route.arms})
    assert sorted(invoke["Resource"] if isinstance(invoke["Resource"], list) else [invoke["Resource"]]) == expected
    actions = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert not any(a.startswith("sagemaker:Update") or a == "dynamodb:DeleteTable" for a in actions)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_controller_runs_on_a_schedule_per_route(synthesis, environment):
    from mlops_platform.function_settings import controller_of

    config = synthesis.configs[environment]
    routes = config.serving.routes()
    assert any(r.config.controller for r in routes), "every environment's config runs a bandit somewhere"
    props = function(synthesis, environment, "experiment_controller")
    settings = deployed_settings(props).controllers
    assert {name: rule.model_dump(exclude_none=True) for name, rule in settings.items()} == {
        r.name: {k: v for k, v in controller_of(r).settings().items() if v is not None} for r in routes}
    for route in routes:
        if route.config.controller is None:  # bookkeeping: never moves, never decides
            assert settings[route.name].strategy == "fixed" and settings[route.name].stop is False
    schedules = {json.loads(s["Properties"]["Target"]["Input"])["experiment"]: s["Properties"]
                 for s in resources(synthesis, environment, "AWS::Scheduler::Schedule").values()}
    assert sorted(schedules) == sorted(r.name for r in routes)
    for route in routes:
        minutes = controller_of(route).interval_minutes
        assert schedules[route.name]["ScheduleExpression"] == f"rate({minutes} minutes)"
        assert schedules[route.name]["Target"]["Arn"]["Fn::GetAtt"][1] == "Arn"
    statements = policy_statements(synthesis, environment, props)
    (reweigh,) = [s for s in statements if s.get("Sid") == "ReadAndReweighExperimentEndpoints"]
    assert "sagemaker:UpdateEndpointWeightsAndCapacities" in reweigh["Action"]
    assert all(":endpoint/" + config.name_prefix in arn for arn in
               (reweigh["Resource"] if isinstance(reweigh["Resource"], list) else [reweigh["Resource"]]))
    (hand_over,) = [s for s in statements if s.get("Sid") == "HandTheDecisionToTheDeployer"]
    assert hand_over["Action"] == "events:PutEvents"
    assert hand_over["Resource"] == f"arn:aws:events:{config.region}:{config.account}:event-bus/default"


def test_caller_policy_grants_invoke_on_the_stage_only(synthesis):
    (policy,) = [p for p in resources(synthesis, "staging", "AWS::IAM::ManagedPolicy").values()
                 if "execute-api" in json.dumps(p)]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert json.dumps(statement["Resource"]).endswith('"/live/*/*"]]}')


def test_api_key_authorization_adds_a_usage_plan_and_stays_nag_clean(tmp_path):
    """`authorization: api_key`: methods need a key, a usage plan carries the throttle and quota.
    Foundation and API stacks only, with the compliance packs (raises on an unacknowledged finding)."""
    from pathlib import Path

    import yaml
    from aws_cdk import App, Environment, Stage

    from mlops_platform.app_builder import FEATURE_FLAGS
    from mlops_platform.compliance import add_compliance_checks
    from mlops_platform.config import parse_config
    from mlops_platform.stacks.api import ApiStack
    from mlops_platform.stacks.foundation import FoundationStack

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "dev.yaml").read_text())
    data["serving"]["api"] = {"authorization": "api_key", "daily_quota": 5000, "rate_limit": 10, "burst_limit": 20}
    config = parse_config(data, "dev.yaml")
    app = App(context=FEATURE_FLAGS, outdir=str(tmp_path))
    stage = Stage(app, "dev", env=Environment(account=config.account, region=config.region))
    foundation = FoundationStack(stage, "Foundation", config=config)
    ApiStack(stage, "Api", config=config, foundation=foundation)
    add_compliance_checks(app)
    app.synth()

    (template_file,) = (tmp_path / "assembly-dev").glob("devApi*.template.json")
    resources = json.loads(template_file.read_text())["Resources"]
    methods = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Method"]
    assert methods and all(m["AuthorizationType"] == "NONE" and m["ApiKeyRequired"] is True for m in methods)
    (plan,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert plan["Quota"] == {"Limit": 5000, "Period": "DAY"}
    assert plan["Throttle"] == {"BurstLimit": 20, "RateLimit": 10}
    assert [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlanKey"]
    assert "execute-api:Invoke" not in json.dumps(resources)  # no SigV4 caller policy


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_ground_truth_goes_through_encrypted_firehose_to_the_feedback_bucket(synthesis, cdk_template, environment):
    config = synthesis.configs[environment]
    cdk_template(environment, "Api").has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
        "DeliveryStreamName": f"{config.name_prefix}-ground-truth",
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": Match.any_value()},
        "ExtendedS3DestinationConfiguration": Match.object_like({
            "BucketARN": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                            f":s3:::{config.name_prefix}-feedback-{config.account}-{config.region}"]]},
            "Prefix": "ground-truth/!{timestamp:yyyy/MM/dd/HH}/",
            "ErrorOutputPrefix": Match.string_like_regexp("^ground-truth-errors/"),
            "CompressionFormat": "UNCOMPRESSED",
            "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": Match.any_value()}},
            "CloudWatchLoggingOptions": Match.object_like({"Enabled": True}),
        }),
    })


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_feedback_lambda_contract_and_least_privilege(synthesis, environment):
    config = synthesis.configs[environment]
    props = function(synthesis, environment, "feedback_api")
    settings = deployed_settings(props)
    streams = resources(synthesis, environment, "AWS::KinesisFirehose::DeliveryStream")
    queues = resources(synthesis, environment, "AWS::SQS::Queue")
    (stream_id,) = streams
    assert settings.ground_truth_stream == f"<{stream_id}>"
    (dead_letters_id,) = [k for k, q in queues.items() if k.startswith("FeedbackDeadLetters")]
    assert settings.dead_letter_queue_url == f"<{dead_letters_id}>"
    api = config.serving.api
    assert (settings.max_batch, settings.max_age_days, settings.retention_days) == (
        api.feedback_max_batch, api.feedback_max_age_days, api.feedback_retention_days)
    tables = resources(synthesis, environment, "AWS::DynamoDB::Table")
    for name in ("predictions_table", "feedback_table", "statistics_table"):
        assert getattr(settings, name).strip("<>") in tables
    (secret_id,) = resources(synthesis, environment, "AWS::SecretsManager::Secret")
    assert settings.subject_hash_secret == f"<{secret_id}>"
    assert props["Timeout"] <= 28
    statements = policy_statements(synthesis, environment, props)
    by_action = {}
    for statement in statements:
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            by_action.setdefault(action, []).append(json.dumps(statement["Resource"]))
    assert any(stream_id in r for r in by_action["firehose:PutRecordBatch"])
    assert any(dead_letters_id in r for r in by_action["sqs:SendMessage"])
    assert "sqs:ReceiveMessage" not in by_action and "dynamodb:DeleteTable" not in by_action
    assert not any(a.startswith("sagemaker:") for a in by_action)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_dead_letters_are_replayed_then_parked_and_alarmed(synthesis, cdk_template, environment):
    template = cdk_template(environment, "Api")
    queues = resources(synthesis, environment, "AWS::SQS::Queue")
    (dead_letters,) = [q["Properties"] for k, q in queues.items() if k.startswith("FeedbackDeadLetters")]
    (parked_id,) = [k for k in queues if k.startswith("FeedbackParked")]
    assert dead_letters["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [parked_id, "Arn"]},
                                             "maxReceiveCount": 5}
    assert "KmsMasterKeyId" in dead_letters and "KmsMasterKeyId" in queues[parked_id]["Properties"]
    replay = function(synthesis, environment, "feedback_replay")
    (replay_id,) = [k for k, f in resources(synthesis, environment, "AWS::Lambda::Function").items()
                    if f["Properties"] is replay]
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": replay_id},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("^FeedbackDeadLetters"), "Arn"]},
    })
    prefix = synthesis.configs[environment].name_prefix
    for name, metric in ((f"{prefix}-feedback-dead-lettered", "NumberOfMessagesSent"),
                         (f"{prefix}-feedback-parked", "ApproximateNumberOfMessagesVisible")):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": name, "MetricName": metric, "Namespace": "AWS/SQS", "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [Match.string_like_regexp(f":sns:eu-west-1:\\d{{12}}:{prefix}-notifications$")],
        })
