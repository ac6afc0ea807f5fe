"""Inference API against moto: routing, overrides, errors, the single write, feature lookup, summary."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from lambda_context import LambdaContext
from settings_support import put_subject_hash_key, set_settings

REGION = "eu-west-1"
ACCOUNT = "123456789012"

EXPERIMENTS = {
    "churn": {
        "experiment": "churn-exp",
        "arms": [
            {"arm": "champion", "endpoint": "churn-ep", "variant": "v1"},
            {"arm": "challenger", "endpoint": "churn-ep", "variant": "v2"},
        ],
        "initial_weights": {"champion": 0.5, "challenger": 0.5},
        "allow_variant_override": True,
        "content_types": ["application/json", "text/csv"],
        "feature_group": None,
        "salt": "churn-exp",
    },
    "locked": {
        "experiment": "locked-exp",
        "arms": [
            {"arm": "a", "endpoint": "serverless-a", "variant": "AllTraffic"},
            {"arm": "b", "endpoint": "serverless-b", "variant": "AllTraffic"},
        ],
        "initial_weights": {"a": 0.5, "b": 0.5},
        "allow_variant_override": False,
        "content_types": ["application/json"],
        "feature_group": None,
    },
    "scored": {
        "experiment": "scored-exp",
        "arms": [{"arm": "only", "endpoint": "scored-ep", "variant": "AllTraffic"}],
        "initial_weights": {"only": 1},
        "feature_group": {"name": "customers", "features": ["age", "tenure", "plan"], "record_identifier": "customer_id"},
    },
}


def event(method, path, body=None, headers=None, query=None):
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers or {},
        "multiValueHeaders": {}, "queryStringParameters": query, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "isBase64Encoded": False, "body": body,
        "requestContext": {"requestId": "r", "stage": "v1", "httpMethod": method, "path": path,
                           "resourcePath": path, "identity": {}},
    }


def post(api, name="churn", body='{"x": 1}', content_type="application/json", **headers):
    hdrs = {"Content-Type": content_type} if content_type else {}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return api.handler(event("POST", f"/v1/endpoints/{name}/invocations", body, hdrs), LambdaContext())


def create_tables(ddb):
    for name, keys in (("predictions", [("inference_id", "HASH")]), ("statistics", [("experiment", "HASH"), ("round_arm_hour", "RANGE")]),
                       ("experiment-state", [("experiment", "HASH")])):
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                         AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                         BillingMode="PAY_PER_REQUEST")


def queue_results(*results):
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    backend = sagemakerruntime_backends[ACCOUNT][REGION]
    backend.results_queue.extend(results)


class Sent:
    """Captures InvokeEndpoint/TransactWriteItems parameters and API call names (before-call hook)."""

    def __init__(self):
        self.invocations, self.calls = [], []

    def __call__(self, params, model, **_):
        self.calls.append(model.name)
        if model.name == "InvokeEndpoint":
            self.invocations.append(dict(params.get("headers", {})))


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        set_settings(monkeypatch, experiments=EXPERIMENTS, predictions_table="predictions",
                     statistics_table="statistics", state_table="experiment-state",
                     subject_hash_secret=put_subject_hash_key("pepper"), prediction_ttl_days=7)
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_tables(ddb)
        yield ddb


def fresh_api(sent=None, runtime_client=None, features=None):
    """A fresh import of the handler module (as a new execution environment), wired to moto clients."""
    sys.modules.pop("mlops_runtime.handlers.inference_api", None)
    api = importlib.import_module("mlops_runtime.handlers.inference_api")
    rt = api.runtime()
    sm = runtime_client or boto3.client("sagemaker-runtime", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    if sent is not None:
        sm.meta.events.register("before-call", sent)
        ddb.meta.events.register("before-call", sent)
    from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
    from mlops_runtime.adapters.model_runtime import Boto3ModelRuntime

    rt.model = Boto3ModelRuntime(sm)
    rt.store = DynamoDBExperimentsStore("predictions", "statistics", "experiment-state", ddb)
    if features is not None:
        rt.features = features
    api.configure(rt)
    return api


def body(response):
    return json.loads(response["body"])


def test_invocation_routes_records_once_and_returns_model_answer(aws):
    queue_results(('{"score": 0.7}', "application/json", "v2", ""))
    sent = Sent()
    api = fresh_api(sent)
    response = post(api, X_Subject_Id="user-42")
    assert response["statusCode"] == 200, response
    assert response["body"] == '{"score": 0.7}'
    headers = response["multiValueHeaders"] if "multiValueHeaders" in response else response["headers"]
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in headers.items()}
    inference_id, arm = flat["X-Inference-Id"], flat["X-Variant"]
    assert arm in ("champion", "challenger") and len(inference_id) == 32
    assert flat["Content-Type"] == "application/json"
    # exactly one InvokeEndpoint (with variant + inference id) and one transaction; the state read is the cache fill
    assert sent.calls == ["GetItem", "InvokeEndpoint", "TransactWriteItems"]
    invoked = sent.invocations[0]
    assert invoked["X-Amzn-SageMaker-Inference-Id"] == inference_id
    assert invoked["X-Amzn-SageMaker-Target-Variant"] == {"champion": "v1", "challenger": "v2"}[arm]
    item = aws.get_item(TableName="predictions", Key={"inference_id": {"S": inference_id}})["Item"]
    assert item["endpoint"] == {"S": "churn-ep"} and item["experiment"] == {"S": "churn-exp"} and item["arm"] == {"S": arm}
    assert int(item["expires_at"]["N"]) - int(item["created_at"]["N"]) == 7 * 86400
    assert len(item["subject_hash"]["S"]) == 32 and "user-42" not in json.dumps(item)
    assert item["round"] == {"N": "1"}  # the round that served it (no state yet: round 1)
    (stats,) = aws.scan(TableName="statistics")["Items"]
    served_hour = datetime.fromtimestamp(int(item["created_at"]["N"]), UTC).strftime("%Y-%m-%dT%H")
    assert stats["round_arm_hour"] == {"S": f"1#{arm}#{served_hour}"} and stats["invocations"] == {"N": "1"}
    # a second request: no state read any more (cached), still exactly 2 calls
    sent.calls.clear()
    assert post(api, X_Subject_Id="user-43")["statusCode"] == 200
    assert sent.calls == ["InvokeEndpoint", "TransactWriteItems"]


def test_prediction_records_the_model_package_the_controller_found_behind_the_arm(aws):
    package = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/7"
    aws.put_item(TableName="experiment-state", Item={
        "experiment": {"S": "churn-exp"}, "version": {"N": "3"},
        "weights": {"M": {"champion": {"N": "0"}, "challenger": {"N": "1"}}},
        "packages": {"M": {"champion": {"NULL": True}, "challenger": {"S": package}}}})
    queue_results(('{"score": 0.7}', "application/json", "v2", ""))
    response = post(fresh_api(), X_Subject_Id="user-42")
    headers = response.get("multiValueHeaders") or response["headers"]
    inference_id = str(headers["X-Inference-Id"]).strip("[]'")
    item = aws.get_item(TableName="predictions", Key={"inference_id": {"S": inference_id}})["Item"]
    assert item["arm"] == {"S": "challenger"} and item["model_package_arn"] == {"S": package}


def _arm(response):
    headers = response.get("multiValueHeaders") or response["headers"]
    value = headers["X-Variant"]
    return value[0] if isinstance(value, list) else value


def test_same_subject_same_arm_across_calls_and_fresh_imports(aws):
    arms = set()
    for _ in range(3):
        api = fresh_api()
        for _ in range(2):
            arms.add(_arm(post(api, X_Subject_Id="sticky-subject")))
    assert len(arms) == 1
    # the arm is the pure router's answer
    from mlops_runtime.domain import routing

    assert arms == {routing.assign("sticky-subject", {"champion": 0.5, "challenger": 0.5}, "churn-exp")}


def test_weights_come_from_state_table(aws):
    aws.put_item(TableName="experiment-state", Item={
        "experiment": {"S": "churn-exp"}, "version": {"N": "1"},
        "weights": {"M": {"champion": {"N": "0"}, "challenger": {"N": "1"}}}})
    api = fresh_api()
    assert {_arm(post(api, X_Subject_Id=f"s{i}")) for i in range(20)} == {"challenger"}


def test_override_allowed_and_refused(aws):
    sent = Sent()
    api = fresh_api(sent)
    response = post(api, X_Target_Arm="challenger", X_Subject_Id="u1")
    assert response["statusCode"] == 200 and _arm(response) == "challenger"
    assert sent.invocations[-1]["X-Amzn-SageMaker-Target-Variant"] == "v2"
    assert post(api, X_Target_Arm="nope")["statusCode"] == 400
    refused = post(api, "locked", X_Target_Arm="a")
    assert refused["statusCode"] == 403 and body(refused)["error"] == "override_not_allowed"


def test_client_inference_id_used_and_invalid_refused(aws):
    sent = Sent()
    api = fresh_api(sent)
    response = post(api, X_Inference_Id="order-123")
    assert response["statusCode"] == 200
    assert sent.invocations[-1]["X-Amzn-SageMaker-Inference-Id"] == "order-123"
    bad = post(api, X_Inference_Id=" leading-space")
    assert bad["statusCode"] == 400 and body(bad)["error"] == "invalid_inference_id"
    assert post(api, X_Inference_Id="x" * 65)["statusCode"] == 400


def test_unknown_endpoint_and_bad_content_type(aws):
    api = fresh_api()
    assert post(api, "nope")["statusCode"] == 404
    bad = post(api, "locked", content_type="text/csv", body="1,2")
    assert bad["statusCode"] == 400 and "text/csv" in body(bad)["message"]
    assert post(api, content_type=None)["statusCode"] == 400
    assert post(api, body="")["statusCode"] == 400
    assert api.handler(event("GET", "/v2/other"), LambdaContext())["statusCode"] == 404


def _raise(code, message, status, **extra):
    def hook(**_):
        raise ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status},
                           **extra}, "InvokeEndpoint")
    return hook


def test_model_error_is_502_with_models_message(aws):
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint",
                                _raise("ModelError", "Received client error (400)", 424, OriginalMessage="bad feature 'age'", OriginalStatusCode=400))
    api = fresh_api(runtime_client=client)
    response = post(api)
    assert response["statusCode"] == 502 and body(response) == {"error": "model_error", "message": "bad feature 'age'"}
    assert aws.scan(TableName="predictions")["Count"] == 0


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400), ("ModelNotReadyException", 429)])
def test_throttling_is_429(aws, code, status):
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", _raise(code, "slow down", status))
    response = post(fresh_api(runtime_client=client))
    assert response["statusCode"] == 429


def test_missing_endpoint_is_503_not_bare_500(aws):
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint",
                                _raise("ValidationError", "Endpoint churn-ep of account 1 not found.", 400))
    response = post(fresh_api(runtime_client=client))
    assert response["statusCode"] == 503 and body(response)["error"] == "model_unavailable"


def test_arm_without_deployed_variant_falls_back_to_first_arm_and_is_recorded_there(aws):
    from mlops_runtime.domain import routing

    subject = next(f"u{i}" for i in range(1000)
                   if routing.assign(f"u{i}", {"champion": 0.5, "challenger": 0.5}, "churn-exp") == "challenger")
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    targets = []

    def hook(params, **_):
        targets.append(params["headers"].get("X-Amzn-SageMaker-Target-Variant"))
        if targets[-1] == "v2":  # the challenger is not deployed
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "Variant v2 not found"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "InvokeEndpoint")

    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", hook)
    queue_results(('{"p": 1}', "application/json", "v1", ""))
    response = post(fresh_api(runtime_client=client), X_Subject_Id=subject)
    assert response["statusCode"] == 200, response
    assert targets == ["v2", "v1"]
    headers = response.get("multiValueHeaders") or response["headers"]
    assert "champion" in str(headers["X-Variant"])
    stats = aws.scan(TableName="statistics")["Items"]
    assert [(item["arm"]["S"], item["invocations"]["N"]) for item in stats] == [("champion", "1")]


def test_override_to_a_missing_variant_is_503_not_a_fallback(aws):
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint",
                                _raise("ValidationError", "Variant v2 not found", 400))
    response = post(fresh_api(runtime_client=client), X_Target_Arm="challenger")
    assert response["statusCode"] == 503 and body(response)["error"] == "model_unavailable"


def test_failed_write_still_returns_prediction(aws):
    api = fresh_api()
    aws.delete_table(TableName="statistics")
    response = post(api, X_Subject_Id="u1")
    assert response["statusCode"] == 200
    headers = response.get("multiValueHeaders") or response["headers"]
    assert "false" in str(headers["X-Prediction-Recorded"])


def test_unexpected_error_is_generic_500(aws, monkeypatch):
    api = fresh_api()
    monkeypatch.setattr(api.runtime(), "model", None)
    response = post(api)
    assert response["statusCode"] == 500 and body(response) == {"error": "internal_error", "message": "internal error"}


def test_feature_group_lookup_builds_csv_row(aws):
    from mlops_runtime.adapters.online_features import InMemoryOnlineFeatures

    features = InMemoryOnlineFeatures()
    features.put("customers", "c-1", {"customer_id": "c-1", "age": 41, "tenure": 3.5, "plan": "gold"})
    sent = Sent()
    api = fresh_api(sent, features=features)
    queue_results(("0.12", "text/csv", "AllTraffic", ""))
    response = post(api, "scored", body=None, content_type=None, X_Subject_Id="c-1")
    assert response["statusCode"] == 200 and response["body"] == "0.12"
    assert features.calls == [("customers", "c-1", ("age", "tenure", "plan"))]
    assert sent.invocations[-1]["Content-Type"] == "text/csv"
    missing = post(api, "scored", body=None, content_type=None, X_Subject_Id="c-2")
    assert missing["statusCode"] == 400 and body(missing)["error"] == "no_feature_record"
    assert post(api, "scored", body=None, content_type=None)["statusCode"] == 400


def test_feature_group_lookup_through_the_feature_store_runtime_as_its_service_model_defines(aws):
    """moto has no Feature Store runtime: the real reader's GetRecord requests are validated by
    botocore against the service model, and its answers (a record; the empty answer for an unknown
    identifier; a throttling error) have the model's documented shapes."""
    from botocore.stub import Stubber
    from mlops_runtime.adapters.online_features import Boto3OnlineFeatures

    client = boto3.session.Session(region_name=REGION).client("sagemaker-featurestore-runtime")
    api = fresh_api(features=Boto3OnlineFeatures(client))
    queue_results(("0.12", "text/csv", "AllTraffic", ""))
    request = {"FeatureGroupName": "customers", "FeatureNames": ["age", "tenure", "plan"]}
    with Stubber(client) as stubber:
        stubber.add_response("get_record", {"Record": [
            {"FeatureName": "age", "ValueAsString": "41"}, {"FeatureName": "tenure", "ValueAsString": "3.5"},
            {"FeatureName": "plan", "ValueAsString": "gold"}]}, {**request, "RecordIdentifierValueAsString": "c-1"})
        stubber.add_response("get_record", {}, {**request, "RecordIdentifierValueAsString": "c-2"})
        stubber.add_client_error("get_record", "ThrottlingException", "Rate exceeded", 400,
                                 expected_params={**request, "RecordIdentifierValueAsString": "c-3"})
        found = post(api, "scored", body=None, content_type=None, X_Subject_Id="c-1")
        missing = post(api, "scored", body=None, content_type=None, X_Subject_Id="c-2")
        throttled = post(api, "scored", body=None, content_type=None, X_Subject_Id="c-3")
        stubber.assert_no_pending_responses()
    assert found["statusCode"] == 200 and found["body"] == "0.12"
    assert missing["statusCode"] == 400 and body(missing)["error"] == "no_feature_record"
    assert throttled["statusCode"] == 503 and body(throttled)["error"] == "features_unavailable"


def test_experiment_summary(aws):
    for arm, rewards in (("champion", "100"), ("challenger", "150")):
        aws.put_item(TableName="statistics", Item={
            "experiment": {"S": "churn-exp"}, "round_arm_hour": {"S": f"1#{arm}#2026-12-05T08"},
            "invocations": {"N": "1000"}, "reward_sum": {"N": rewards}, "reward_sq_sum": {"N": rewards},
            "feedback_count": {"N": "1000"}})
    api = fresh_api()
    response = api.handler(event("GET", "/v1/experiments/churn"), LambdaContext())
    assert response["statusCode"] == 200
    summary = body(response)
    arms = {a["arm"]: a for a in summary["arms"]}
    assert arms["challenger"]["probability_best"] > 0.99
    low, high = arms["champion"]["credible_interval_95"]
    assert low < 0.1 < high and arms["champion"]["weight"] == 0.5
    assert summary["decision"] is None and summary["error"] is None
    assert api.handler(event("GET", "/v1/experiments/nope"), LambdaContext())["statusCode"] == 404


def test_the_decision_report_as_json_html_and_markdown(aws):
    from mlops_runtime.adapters.experiments_store import to_item
    from mlops_runtime.domain.experiments import ArmStats
    from mlops_runtime.domain.sequential_test import SequentialTest

    looks = []
    for step, (champion, challenger) in enumerate(((20_000, 20_000), (50_000, 50_000), (100_000, 100_000))):
        stats = [ArmStats("champion", champion, champion * 0.05), ArmStats("challenger", challenger, challenger * 0.06)]
        decision = SequentialTest().decide(stats, champion="champion", looks=step + 1)
        looks.append({"at": 1_796_000_000 + step, "winner_statistic": decision.winner_statistic,
                      "equivalence_statistic": decision.equivalence_statistic,
                      "arms": {a.arm: [a.invocations, a.reward_sum, a.lower, a.upper] for a in decision.arms}})
    assert decision.outcome == "winner"
    state = {"weights": {"champion": 0.0, "challenger": 1.0}, "outcome": "winner", "winner": "challenger",
             "looks": looks, "evidence": decision.to_dict(),
             "decision": {**decision.to_dict(), "winner": "challenger", "kept_arm": "challenger",
                          "decided_at": 1_796_000_002}}
    aws.put_item(TableName="experiment-state", Item=to_item({"experiment": "churn-exp", "version": 3, **state}))
    api = fresh_api()
    summary = body(api.handler(event("GET", "/v1/experiments/churn"), LambdaContext()))
    assert summary["outcome"] == "winner" and summary["decision"]["winner_statistic"] > 0.005
    assert len(summary["looks"]) == 3 and summary["estimated_regret"] == pytest.approx(100_000 * 0.01)
    page = api.handler(event("GET", "/v1/experiments/churn", query={"format": "html"}), LambdaContext())
    assert page["statusCode"] == 200 and page["multiValueHeaders"]["Content-Type"][0].startswith("text/html")
    assert "<strong>Winner.</strong>" in page["body"] and page["body"].count("<svg") == 2
    assert "challenger - champion" in page["body"] and "+1.00 pt" in page["body"]
    markdown = api.handler(event("GET", "/v1/experiments/churn", query={"format": "markdown"}), LambdaContext())["body"]
    assert markdown.startswith("# Experiment churn-exp") and "| challenger | 100 % |" in markdown
    assert "| looks taken | 3 |" in markdown
    bad = api.handler(event("GET", "/v1/experiments/churn", query={"format": "pdf"}), LambdaContext())
    assert bad["statusCode"] == 400 and body(bad)["error"] == "invalid_format"


def test_reused_inference_id_is_served_but_not_recorded_twice(aws):
    api = fresh_api()
    first = post(api, X_Inference_Id="dup-1", X_Subject_Id="u1")
    second = post(api, X_Inference_Id="dup-1", X_Subject_Id="u1")
    assert first["statusCode"] == second["statusCode"] == 200
    assert "X-Prediction-Recorded" in (second.get("multiValueHeaders") or second["headers"])
    rows = aws.scan(TableName="statistics")["Items"]
    assert sum(int(r["invocations"]["N"]) for r in rows) == 1
