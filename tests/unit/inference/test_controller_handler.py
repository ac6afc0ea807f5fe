"""Experiment controller against moto: guarded moves applied to the endpoint, skips, winner, errors."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from controller_fixtures import Redeployed
from moto import mock_aws
from lambda_context import LambdaContext

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
    },
    "split": {
        "experiment": "split-exp",
        "arms": [
            {"arm": "a", "endpoint": "ep-a", "variant": "AllTraffic"},
            {"arm": "b", "endpoint": "ep-b", "variant": "AllTraffic"},
        ],
        "initial_weights": {"a": 0.5, "b": 0.5},
    },
}
CONTROLLER = {
    "churn": {"strategy": "thompson", "min_share": 0.1, "max_step": 0.2, "min_observations": 100,
              "alpha": 0.05, "min_effect": 0.01},
    "split": {"strategy": "epsilon_greedy", "epsilon": 0.2, "min_share": 0.1, "max_step": 0.25, "min_observations": 10},
}


def create_tables(ddb):
    for name, keys in (("statistics", [("experiment", "HASH"), ("round_arm_hour", "RANGE")]),
                       ("experiment-state", [("experiment", "HASH")])):
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                         AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                         BillingMode="PAY_PER_REQUEST")


def create_endpoint(sm, name, variants, tags=None):
    for variant in variants:
        sm.create_model(ModelName=f"{name}-{variant}", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sm",
                        PrimaryContainer={"Image": "123.dkr.ecr.eu-west-1.amazonaws.com/m:1"},
                        Tags=[{"Key": "mlops:model-package-arn", "Value": tags[variant]}] if tags and variant in tags else [])
    sm.create_endpoint_config(EndpointConfigName=f"{name}-cfg", ProductionVariants=[
        {"VariantName": v, "ModelName": f"{name}-{v}", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 1.0} for v in variants])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-cfg")


def set_settings(monkeypatch, experiments=EXPERIMENTS, controllers=CONTROLLER, topic=None):
    """The controller's settings (``settings.ControllerSettings``), as the stack passes them."""
    from mlops_runtime.settings.base import SETTINGS_ENV

    monkeypatch.setenv(SETTINGS_ENV, json.dumps({
        "experiments": experiments, "controllers": controllers, "statistics_table": "statistics",
        "state_table": "experiment-state", "notification_topic_arn": topic}))


@pytest.fixture
def aws(monkeypatch):
    set_settings(monkeypatch)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_tables(ddb)
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_model_package_group(ModelPackageGroupName="churn")
        package = sm.create_model_package(
            ModelPackageGroupName="churn", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "123.dkr.ecr.eu-west-1.amazonaws.com/m:1"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"]
        create_endpoint(sm, "churn-ep", ["v1", "v2"], tags={"v2": package})
        create_endpoint(sm, "ep-a", ["AllTraffic"])
        create_endpoint(sm, "ep-b", ["AllTraffic"])
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="experiments")["TopicArn"]
        set_settings(monkeypatch, topic=topic)
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="notes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        from mlops_runtime.handlers import experiment_controller

        experiment_controller.configure()
        yield {"ddb": ddb, "sm": sm, "sqs": sqs, "queue": queue, "package": package}
        experiment_controller.configure()


def put_stats(ddb, experiment, arm, invocations, reward_sum, round_id=1, hour="2026-12-05T08"):
    """One statistics row (round, arm, served hour), as the inference and feedback APIs leave it."""
    ddb.put_item(TableName="statistics", Item={"experiment": {"S": experiment},
                                               "round_arm_hour": {"S": f"{round_id}#{arm}#{hour}"},
                 "invocations": {"N": str(invocations)}, "reward_sum": {"N": str(reward_sum)},
                 "reward_sq_sum": {"N": str(reward_sum)}})  # rewards are 0 or 1


def run(name="churn"):
    from mlops_runtime.handlers import experiment_controller

    return experiment_controller.handler({"experiment": name}, LambdaContext())


def state(ddb, experiment="churn-exp"):
    from mlops_runtime.adapters.experiments_store import from_item

    item = ddb.get_item(TableName="experiment-state", Key={"experiment": {"S": experiment}}).get("Item")
    return from_item(item) if item else None


def messages(aws):
    out = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in out]


def variant_weights(sm, endpoint="churn-ep"):
    return {v["VariantName"]: v.get("DesiredWeight", v.get("CurrentWeight"))
            for v in sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]}


def test_waits_for_min_observations(aws):
    put_stats(aws["ddb"], "churn-exp", "champion", 50, 5)
    put_stats(aws["ddb"], "churn-exp", "challenger", 50, 10)
    result = run()
    assert result["status"] == "waiting"
    saved = state(aws["ddb"])
    assert saved["weights"] == {"champion": 0.5, "challenger": 0.5} and saved["steps"] == 1 and saved["version"] == 1


def test_moves_within_guardrails_and_applies_to_endpoint(aws):
    put_stats(aws["ddb"], "churn-exp", "champion", 1000, 100)
    put_stats(aws["ddb"], "churn-exp", "challenger", 1000, 150)
    result = run()
    assert result["status"] == "moved"
    weights = result["weights"]
    assert weights["challenger"] == pytest.approx(0.7) and weights["champion"] == pytest.approx(0.3)  # max_step 0.2
    applied = variant_weights(aws["sm"])
    assert applied["v2"] == pytest.approx(0.7) and applied["v1"] == pytest.approx(0.3)
    saved = state(aws["ddb"])
    assert saved["weights"] == weights and saved["moves"] == 1 and saved["decision"] if "decision" in saved else True
    # next step keeps the floor
    for _ in range(5):
        run()
    # min_share is 0.1, but the test still needs the champion (not shown worse by min_effect yet):
    # it keeps contender_share (default 0.2)
    assert state(aws["ddb"])["weights"]["champion"] == pytest.approx(0.2)


def test_no_move_while_updating(aws, monkeypatch):
    from mlops_runtime.adapters.model_runtime import Boto3EndpointControl, EndpointInfo
    from mlops_runtime.handlers import experiment_controller

    class Updating(Boto3EndpointControl):
        def describe_endpoint(self, endpoint):
            return EndpointInfo(endpoint, "Updating", None)

        def update_weights(self, endpoint, weights):  # pragma: no cover - must not be called
            raise AssertionError("weights applied while updating")

    experiment_controller.configure(endpoints=Updating(boto3.client("sagemaker", region_name=REGION)))
    put_stats(aws["ddb"], "churn-exp", "champion", 1000, 100)
    put_stats(aws["ddb"], "churn-exp", "challenger", 1000, 150)
    result = run()
    assert result["status"] == "skipped" and "Updating" in result["reason"]
    assert state(aws["ddb"]) is None


def test_winner_declared_notified_noted_and_final(aws):
    put_stats(aws["ddb"], "churn-exp", "champion", 6000, 600)
    put_stats(aws["ddb"], "churn-exp", "challenger", 6000, 900)
    result = run()
    assert result["status"] == "decided" and result["winner"] == "challenger"
    assert result["model_package_arn"] == aws["package"] and result["package_noted"] is True
    described = aws["sm"].describe_model_package(ModelPackageName=aws["package"])
    assert described["CustomerMetadataProperties"]["mlops:experiment"] == "churn-exp"
    assert variant_weights(aws["sm"]) == {"v1": 0.0, "v2": 1.0}
    saved = state(aws["ddb"])
    assert saved["winner"] == "challenger" and saved["decision"]["winner"] == "challenger"
    assert saved["decision"]["outcome"] == "winner" and saved["decision"]["winner_statistic"] > 0.01
    assert saved["weights"] == {"champion": 0.0, "challenger": 1.0}
    assert [look["arms"]["challenger"][:2] for look in saved["looks"]] == [[6000, 900]]
    notes = messages(aws)
    assert len(notes) == 1 and notes[0]["winner"] == "challenger" and notes[0]["outcome"] == "winner"
    low, high = notes[0]["intervals"]["challenger"]
    assert low < 0.15 < high
    # never moves again, whatever the data say now
    put_stats(aws["ddb"], "churn-exp", "champion", 20000, 19000)
    assert run()["status"] == "finished"
    assert state(aws["ddb"])["weights"] == {"champion": 0.0, "challenger": 1.0}
    assert variant_weights(aws["sm"]) == {"v1": 0.0, "v2": 1.0}


def test_arms_across_endpoints_move_only_the_router_weights(aws):
    put_stats(aws["ddb"], "split-exp", "a", 100, 10)
    put_stats(aws["ddb"], "split-exp", "b", 100, 60)
    result = run("split")
    assert result["status"] == "moved"
    assert state(aws["ddb"], "split-exp")["weights"]["b"] == pytest.approx(0.75)
    assert variant_weights(aws["sm"], "ep-a") == {"AllTraffic": 1.0}


def test_impossible_statistics_logged_and_notified(aws):
    put_stats(aws["ddb"], "churn-exp", "champion", 10, 50)
    put_stats(aws["ddb"], "churn-exp", "challenger", 10, 1)
    result = run()
    assert result["status"] == "error" and "champion" in result["reason"]
    assert "impossible" not in json.dumps(state(aws["ddb"]) or {})
    assert any("error" in note for note in messages(aws))


def test_concurrent_state_change_is_a_conflict(aws):
    from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore, StateConflict

    store = DynamoDBExperimentsStore(None, "statistics", "experiment-state", aws["ddb"])
    assert store.write_state("x", {"weights": {"a": 1.0}}, 0) == 1
    with pytest.raises(StateConflict):
        store.write_state("x", {"weights": {"a": 1.0}}, 0)
    assert store.write_state("x", {"weights": {"a": 0.5}}, 1) == 2


def test_bad_event(aws):
    assert run.__module__  # keep the fixture active
    from mlops_runtime.handlers import experiment_controller

    assert experiment_controller.handler({}, LambdaContext())["status"] == "error"


def test_a_new_deployment_starts_a_new_round_that_counts_only_its_own_rows(aws):
    from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
    from mlops_runtime.handlers import experiment_controller

    put_stats(aws["ddb"], "churn-exp", "champion", 6000, 600)
    put_stats(aws["ddb"], "churn-exp", "challenger", 6000, 900)
    assert run()["status"] == "decided"
    assert run()["status"] == "finished"

    # The deployer rolls out a new challenger: the endpoint now runs another endpoint config.
    control = Redeployed(Boto3EndpointControl(boto3.client("sagemaker", region_name=REGION)), "churn-ep-cfg-2",
                         {"v1": 0.5, "v2": 0.5})
    experiment_controller.configure(endpoints=control)
    result = run()
    assert result == {"status": "restarted", "round": 2, "weights": {"champion": 0.5, "challenger": 0.5}}
    saved = state(aws["ddb"])
    assert saved["round"] == 2 and saved.get("winner") is None and saved.get("decision") is None
    assert saved["deployment"] == {"churn-ep": "churn-ep-cfg-2"} and "baseline" not in saved
    assert [h["winner"] for h in saved["history"]] == ["challenger"] and saved["history"][0]["round"] == 1

    # Round 2 has 50 invocations per arm of its own: not enough to move, whatever round 1 holds
    # (late round-1 feedback keeps landing in round-1 rows: here the champion's row grows).
    put_stats(aws["ddb"], "churn-exp", "champion", 50, 5, round_id=2)
    put_stats(aws["ddb"], "churn-exp", "challenger", 50, 5, round_id=2)
    put_stats(aws["ddb"], "churn-exp", "champion", 6000, 3000)
    assert run()["status"] == "waiting"

    # Enough new evidence in round 2 (two served hours) moves traffic again.
    put_stats(aws["ddb"], "churn-exp", "champion", 500, 75, round_id=2, hour="2026-12-05T09")
    put_stats(aws["ddb"], "churn-exp", "challenger", 500, 50, round_id=2, hour="2026-12-05T09")
    assert run()["status"] == "moved"
    assert state(aws["ddb"])["weights"]["champion"] > 0.5


def test_each_arms_deployed_model_package_is_kept_in_the_state_for_the_api(aws, monkeypatch):
    from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
    from mlops_runtime.handlers import experiment_controller

    lookups = []

    class Counting(Boto3EndpointControl):
        def find_model_package_arn(self, endpoint, variant):
            lookups.append((endpoint, variant))
            return super().find_model_package_arn(endpoint, variant)

    experiment_controller.configure(endpoints=Counting(boto3.client("sagemaker", region_name=REGION)))
    put_stats(aws["ddb"], "churn-exp", "champion", 50, 5)
    put_stats(aws["ddb"], "churn-exp", "challenger", 50, 10)
    run()
    assert state(aws["ddb"])["packages"] == {"champion": None, "challenger": aws["package"]}
    run()  # same deployment: no new lookups
    assert lookups == [("churn-ep", "v1"), ("churn-ep", "v2")]
    assert state(aws["ddb"])["packages"]["challenger"] == aws["package"]


def test_an_endpoint_not_deployed_yet_is_a_skip_not_an_error(aws):
    aws["sm"].delete_endpoint(EndpointName="ep-b")
    result = run("split")
    assert result["status"] == "skipped" and "ep-b is not deployed" in result["reason"]


def test_bookkeeping_run_of_a_single_arm_route_keeps_the_split(aws, monkeypatch):
    """Routes without a bandit still run the controller (fixed, no stopping rule): it must neither
    move nor decide, even with one arm and plenty of data."""
    from mlops_runtime.handlers import experiment_controller

    experiments = {**EXPERIMENTS, "solo": {"experiment": "solo-exp", "initial_weights": {"only": 1},
                                           "arms": [{"arm": "only", "endpoint": "ep-a", "variant": "AllTraffic"}]}}
    set_settings(monkeypatch, experiments, {**CONTROLLER, "solo": {"strategy": "fixed", "stop": False, "min_share": 0}})
    experiment_controller.configure()
    put_stats(aws["ddb"], "solo-exp", "only", 100000, 5000)
    for _ in range(3):
        assert run("solo")["status"] == "waiting"
    saved = state(aws["ddb"], "solo-exp")
    assert saved["weights"] == {"only": 1.0} and saved.get("decision") is None
    assert saved["deployment"] == {"ep-a": "ep-a-cfg"} and saved["packages"] == {"only": None}


def test_each_run_publishes_per_arm_gauges_for_the_dashboard(aws, capsys):
    put_stats(aws["ddb"], "churn-exp", "champion", 1000, 100)
    put_stats(aws["ddb"], "churn-exp", "challenger", 1000, 150)
    capsys.readouterr()
    assert run()["status"] == "moved"
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    gauges = {(d["Arm"], m["Name"]): (d[m["Name"]][0] if isinstance(d[m["Name"]], list) else d[m["Name"]])
              for d in documents
              for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"] if "Arm" in d}
    assert gauges[("challenger", "ArmWeight")] == pytest.approx(0.7)
    assert gauges[("champion", "ArmInvocations")] == 1000
    assert gauges[("challenger", "ArmMeanReward")] == pytest.approx(0.15)
    assert all(d["Experiment"] == "churn-exp" for d in documents if "Arm" in d)


def test_only_a_missing_endpoint_is_a_skip_other_validation_errors_surface(aws):
    from botocore.exceptions import ClientError

    from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
    from mlops_runtime.handlers import experiment_controller

    class Refusing(Boto3EndpointControl):
        def describe_endpoint(self, endpoint):
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "1 validation error detected"}},
                              "DescribeEndpoint")

    experiment_controller.configure(endpoints=Refusing(boto3.client("sagemaker", region_name=REGION)))
    with pytest.raises(ClientError):
        experiment_controller.run("split")


def use_settings(monkeypatch, **changes):
    """The churn experiment's controller rule with ``changes`` (the rest of the settings kept)."""
    import os

    from mlops_runtime.handlers import experiment_controller
    from mlops_runtime.settings.base import SETTINGS_ENV

    current = json.loads(os.environ[SETTINGS_ENV])
    set_settings(monkeypatch, current["experiments"], {**CONTROLLER, "churn": {**CONTROLLER["churn"], **changes}},
                 current["notification_topic_arn"])
    experiment_controller.settings.set(None)


def test_no_meaningful_difference_keeps_the_champion_and_ends_the_experiment(aws, monkeypatch):
    use_settings(monkeypatch, min_effect=0.02)
    put_stats(aws["ddb"], "churn-exp", "champion", 40000, 2000)
    put_stats(aws["ddb"], "churn-exp", "challenger", 40000, 2010)
    result = run()
    assert result["status"] == "decided" and result["outcome"] == "no_meaningful_difference"
    assert result["winner"] is None and result["kept_arm"] == "champion"
    assert variant_weights(aws["sm"]) == {"v1": 1.0, "v2": 0.0}
    saved = state(aws["ddb"])
    assert saved["outcome"] == "no_meaningful_difference" and saved["decision"]["kept_arm"] == "champion"
    assert saved["decision"]["equivalence_statistic"] < 0.02
    assert messages(aws)[0]["outcome"] == "no_meaningful_difference"
    assert run()["status"] == "finished"


def test_a_limit_ends_an_undecided_test_and_keeps_the_champion(aws, monkeypatch):
    use_settings(monkeypatch, max_invocations=1000)
    put_stats(aws["ddb"], "churn-exp", "champion", 600, 30)
    put_stats(aws["ddb"], "churn-exp", "challenger", 600, 33)
    result = run()
    assert result["outcome"] == "stopped_at_limit" and result["kept_arm"] == "champion"
    assert "maximum sample reached (1200 >= 1000" in state(aws["ddb"])["decision"]["reason"]


def test_only_predictions_whose_feedback_window_closed_count(aws, monkeypatch):
    from mlops_runtime.domain.rounds import served_hour

    use_settings(monkeypatch, feedback_delay_hours=2)
    matured, recent = served_hour(time.time() - 4 * 3600), served_hour(time.time() - 1800)
    put_stats(aws["ddb"], "churn-exp", "champion", 300, 15, hour=matured)
    put_stats(aws["ddb"], "churn-exp", "challenger", 300, 18, hour=matured)
    # recent hours: served, but most of their feedback has not arrived yet
    put_stats(aws["ddb"], "churn-exp", "champion", 5000, 10, hour=recent)
    put_stats(aws["ddb"], "churn-exp", "challenger", 5000, 900, hour=recent)
    result = run()
    assert result["status"] in {"moved", "waiting"}
    evidence = state(aws["ddb"])["evidence"]
    assert evidence["matured_invocations"] == 600 and evidence["outcome"] == "keep_running"
    assert [arm["reward_sum"] for arm in evidence["arms"]] == [15, 18]
