"""The winner stays: the experiment controller decides, the deployer keeps the winner (both real, on moto).

Issue 15, defect 2: after the challenger won and carried 100 %, the next approved package replaced
the challenger and the losing champion went back to 1 - w: live ``champion v1 0.0, challenger v2
1.0`` became ``champion v1 0.9, challenger v3 0.1``. Here the controller's "Experiment Decided"
event travels through a real EventBridge rule (moto) to a queue and from there to the deployer as
the stack wires it; moto has no UpdateEndpoint, answered by the tests' botocore hook.

The round hand-over between the deployer and the real inference API: predictions served after a
deployment and before the controller's next run belong to the new round.
"""

from __future__ import annotations

import json

import pytest
from lambda_context import LambdaContext
from deployment_fixtures import ENDPOINT, approval, register_package
from mlops_runtime.domain import promotion
from mlops_runtime.domain.deployment import CHALLENGER, CHAMPION

EXPERIMENTS = {
    "churn": {
        "experiment": "churn-exp",
        "arms": [{"arm": "champion", "endpoint": ENDPOINT, "variant": CHAMPION},
                 {"arm": "challenger", "endpoint": ENDPOINT, "variant": CHALLENGER}],
        "initial_weights": {"champion": 0.9, "challenger": 0.1},
    },
}
CONTROLLER = {"churn": {"strategy": "thompson", "min_share": 0.1, "max_step": 0.2, "min_observations": 100,
                        "alpha": 0.05, "min_effect": 0.01}}


class Loop:
    """The deployer (``lambda_env``) and the experiment controller on one moto account, joined by
    an EventBridge rule -> SQS queue as in the Serving stack."""

    def __init__(self, lambda_env, monkeypatch):
        from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
        from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
        from mlops_runtime.settings.experiments import ControllerSettings
        from mlops_runtime.handlers import experiment_controller

        self.deployer, aws = lambda_env, lambda_env.aws
        self.ddb, self.sm = aws("dynamodb"), aws("sagemaker")
        for table, keys in (("statistics", ["experiment", "round_arm_hour"]), ("state", ["experiment"])):
            self.ddb.create_table(
                TableName=table, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"))],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys])
        sqs, events = aws("sqs"), aws("events")
        self.sqs = sqs
        self.queue = sqs.create_queue(QueueName="deployer-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="promote-on-decision", EventPattern=json.dumps(
            {"source": [promotion.EVENT_SOURCE], "detail-type": [promotion.EVENT_DETAIL_TYPE]}))
        events.put_targets(Rule="promote-on-decision", Targets=[{"Id": "deployer", "Arn": queue_arn}])
        self.store = DynamoDBExperimentsStore(None, "statistics", "state", self.ddb)
        self.controller = experiment_controller
        experiment_controller.configure(
            store=self.store, endpoints=Boto3EndpointControl(self.sm), sns=aws("sns"), events=events,
            settings=ControllerSettings(experiments=EXPERIMENTS, controllers=CONTROLLER, statistics_table="statistics",
                                        state_table="state"))

    def approve(self, arn, event_id):
        return self.deployer.invoke(approval(arn, event_id))

    def run_controller(self):
        return self.controller.handler({"experiment": "churn"}, LambdaContext("mlops-dev-experiment-controller"))

    def evidence(self, round_id, champion, challenger, invocations=6000):
        """Rewards per arm in round ``round_id`` (rates of 0/1 rewards)."""
        for arm, rate in (("champion", champion), ("challenger", challenger)):
            rewards = str(int(invocations * rate))
            self.ddb.put_item(TableName="statistics", Item={
                "experiment": {"S": "churn-exp"}, "round_arm_hour": {"S": f"{round_id}#{arm}#2026-12-05T08"},
                "invocations": {"N": str(invocations)}, "reward_sum": {"N": rewards}, "reward_sq_sum": {"N": rewards}})

    def queued(self):
        """The SQS messages the rule delivered (taken off the queue)."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def deliver(self):
        """Hand the queued decision events to the deployer as its SQS event source does (None: none)."""
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in self.queued()]
        return self.deployer.invoke({"Records": records}) if records else None

    def live(self):
        """{variant: (model package ARN, live weight)} of the endpoint."""
        from mlops_runtime.handlers import deployer

        state = deployer.sagemaker_endpoints().describe_endpoint_state(ENDPOINT)
        return {v.name: (v.model_package_arn, v.weight) for v in state.variants}

    def note(self, arn):
        return self.sm.describe_model_package(ModelPackageName=arn).get("CustomerMetadataProperties", {})


@pytest.fixture
def loop(lambda_env, stub, monkeypatch):
    joined = Loop(lambda_env, monkeypatch)
    yield joined
    joined.controller.configure()


class Api:
    """The real inference API on the loop's moto account (the model container faked)."""

    def __init__(self, loop):
        import dataclasses

        from mlops_platform.local.server import FakeModelRuntime
        from mlops_runtime.adapters.experiments_store import DynamoDBExperimentsStore
        from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
        from mlops_runtime.handlers import inference_api
        from mlops_runtime.settings.experiments import InferenceSettings
        from settings_support import put_subject_hash_key

        loop.ddb.create_table(
            TableName="predictions", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "inference_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "inference_id", "AttributeType": "S"}])
        experiments = {name: {**config, "content_types": ["text/csv"]} for name, config in EXPERIMENTS.items()}
        settings = InferenceSettings(
            experiments=experiments, predictions_table="predictions", statistics_table="statistics",
            state_table="state", subject_hash_secret=put_subject_hash_key("pepper"))
        self.loop, self.module = loop, inference_api
        inference_api.configure(dataclasses.replace(
            inference_api.runtime_from_settings(settings),
            store=DynamoDBExperimentsStore("predictions", "statistics", "state", loop.ddb),
            model=FakeModelRuntime({ENDPOINT: {CHAMPION: "champion-model", CHALLENGER: "challenger-model"}}),
            endpoints=Boto3EndpointControl(loop.sm)))

    def serve(self, subjects):
        """Each subject served once (after the allocation cache expired); their prediction records."""
        from mlops_platform.local.server import proxy_event

        self.module.runtime().weights_cache.clear()  # as ALLOCATION_CACHE_SECONDS after a deployment
        records = []
        for subject in subjects:
            event = proxy_event("POST", "/v1/endpoints/churn/invocations", "/v1/endpoints/{endpoint}/invocations",
                                {"endpoint": "churn"}, [("Content-Type", "text/csv"), ("X-Subject-Id", subject)],
                                "", b"0.5,0.5")
            response = self.module.handler(event, LambdaContext("mlops-dev-inference-api"))
            assert response["statusCode"] == 200, response
            headers = response.get("multiValueHeaders") or response["headers"]
            inference_id = headers["X-Inference-Id"]
            inference_id = inference_id[0] if isinstance(inference_id, list) else inference_id
            item = self.loop.ddb.get_item(TableName="predictions", Key={"inference_id": {"S": inference_id}})["Item"]
            records.append((item["arm"]["S"], int(item["round"]["N"]), item.get("model_package_arn", {}).get("S")))
        return records


@pytest.fixture
def api(loop):
    serving = Api(loop)
    yield serving
    serving.module.configure(None)


def decided_experiment(loop):
    """v1 champion, v2 challenger; the controller declares v2 the winner. Returns (v1, v2)."""
    v1, v2 = register_package(loop.sm), register_package(loop.sm)
    loop.approve(v1, "approve-v1")
    loop.approve(v2, "approve-v2")
    assert loop.run_controller()["status"] == "waiting"  # round 1 recorded with the deployment
    loop.evidence(1, champion=0.10, challenger=0.15)
    decided = loop.run_controller()
    assert decided["status"] == "decided" and decided["winner"] == "challenger", decided
    assert loop.live() == {CHAMPION: (v1, 0.0), CHALLENGER: (v2, 1.0)}
    return v1, v2


def test_defect_2_the_next_approval_is_tried_against_the_winner_even_before_the_promotion(loop):
    v1, v2 = decided_experiment(loop)
    v3 = register_package(loop.sm)
    result = loop.approve(v3, "approve-v3")["results"][0]
    assert result["status"] == "deployed", result
    # was: champion v1 0.9, challenger v3 0.1
    assert loop.live() == {CHAMPION: (v2, 0.9), CHALLENGER: (v3, 0.1)}


def test_the_winner_is_promoted_the_loser_removed_and_the_next_experiment_runs_against_it(loop):
    v1, v2 = decided_experiment(loop)
    assert loop.note(v2)["mlops:experiment-result"] == "champion"
    assert loop.note(v1)["mlops:experiment-result"] == "retired"
    assert loop.note(v2)["mlops:experiment-outcome"] == promotion.OUTCOME_WINNER

    assert loop.deliver() == {"batchItemFailures": []}
    assert loop.live() == {CHAMPION: (v2, 1.0)}  # the loser's variant is gone, not left at 0 %
    config = loop.deployer.endpoint_config()
    assert [(v["VariantName"], v["InitialInstanceCount"]) for v in config["ProductionVariants"]] == [(CHAMPION, 2)]

    # The controller sees the promotion as a new deployment: a new round with one model, then waits.
    restarted = loop.run_controller()
    assert restarted["status"] == "restarted" and restarted["weights"] == {"champion": 1.0, "challenger": 0.0}
    assert loop.run_controller()["status"] == "waiting"
    assert loop.deliver() is None  # nothing handed over again

    v3 = register_package(loop.sm)
    assert loop.approve(v3, "approve-v3")["results"][0]["action"] == "add-challenger"
    assert loop.live() == {CHAMPION: (v2, 0.9), CHALLENGER: (v3, 0.1)}
    assert loop.run_controller() == {"status": "restarted", "round": 3,
                                     "weights": {"champion": 0.9, "challenger": 0.1}}


def test_rollback_of_a_promotion_returns_to_the_previous_champion(loop):
    v1, v2 = decided_experiment(loop)
    before = loop.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    (message,) = loop.queued()
    (result,) = loop.deployer.invoke(json.loads(message["Body"]))["results"]
    assert (result["status"], result["action"]) == ("deployed", "promote") and loop.live() == {CHAMPION: (v2, 1.0)}
    # The one-line rollback returns to the config before the promotion: the previous champion.
    assert result["rollback"] == (f"aws sagemaker update-endpoint --endpoint-name {ENDPOINT} "
                                  f"--endpoint-config-name {before} --retain-all-variant-properties")
    loop.sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=before)
    assert loop.live()[CHAMPION][0] == v1


@pytest.mark.parametrize("outcome", [promotion.OUTCOME_NO_DIFFERENCE, promotion.OUTCOME_LIMIT])
def test_no_meaningful_difference_or_the_limit_keeps_the_champion_and_retires_the_challenger(loop, outcome):
    v1, v2 = register_package(loop.sm), register_package(loop.sm)
    loop.approve(v1, "approve-v1")
    loop.approve(v2, "approve-v2")
    assert loop.run_controller()["status"] == "waiting"
    # A decision without a winner to promote, as the sequential test records it.
    item = loop.store.read_state("churn-exp")
    item.update(outcome=outcome, kept_arm="champion", winner=None, decided_at=1_764_921_600.0,
                decision={"outcome": outcome, "winner": None, "kept_arm": "champion", "decided_at": 1_764_921_600.0})
    loop.store.write_state("churn-exp", {k: v for k, v in item.items() if k not in ("experiment", "version")},
                           item["version"])
    assert loop.run_controller()["status"] == "finished"
    assert loop.note(v1)["mlops:experiment-result"] == "champion"
    assert loop.note(v2)["mlops:experiment-result"] == "retired"
    assert loop.deliver() == {"batchItemFailures": []}
    assert loop.live() == {CHAMPION: (v1, 1.0)}


def test_a_late_decision_never_retires_a_newer_challenger(loop):
    v1, v2 = decided_experiment(loop)
    v3 = register_package(loop.sm)
    loop.approve(v3, "approve-v3")  # approved before the decision event reached the deployer
    (message,) = loop.queued()
    result = loop.deployer.invoke(json.loads(message["Body"]))["results"][0]
    assert result["status"] == "noop" and "newer experiment" in result["reason"]
    assert loop.live() == {CHAMPION: (v2, 0.9), CHALLENGER: (v3, 0.1)}


def test_predictions_served_after_a_deployment_belong_to_the_new_round_before_the_controller_runs(loop, api):
    """Between an approval and the controller's next run the inference API used to record the new
    models' predictions under the previous round, with the previous packages and weights."""
    v1, v2 = register_package(loop.sm), register_package(loop.sm)
    loop.approve(v1, "approve-v1")
    loop.approve(v2, "approve-v2")
    assert loop.run_controller()["status"] == "waiting"  # round 1, recorded with its deployment
    assert {(rnd, package) for _, rnd, package in api.serve(["a", "b", "c"])} <= {(1, v1), (1, v2)}

    v3 = register_package(loop.sm)
    assert loop.approve(v3, "approve-v3")["results"][0]["status"] == "deployed"  # replaces the challenger
    served = api.serve([f"user-{n}" for n in range(40)])
    assert {arm: (rnd, package) for arm, rnd, package in served} == {"champion": (2, v1), "challenger": (2, v3)}
    before = loop.store.arm_counts("churn-exp", 2)
    assert sum(counts.invocations for counts in before.values()) == 40
    # The controller's run records the same round: the predictions already counted in it stay there.
    assert loop.run_controller()["round"] == 2
    assert {rnd for _, rnd, _ in api.serve(["d", "e"])} == {2}
    assert sum(c.invocations for c in loop.store.arm_counts("churn-exp", 2).values()) == 42


def test_after_a_winner_the_next_approval_is_served_with_the_deployers_split_before_the_controller_runs(loop, api):
    """After a decision the state says challenger 1.0; the next approval puts the winner on the
    champion variant at 0.9 and the new package on the challenger at 0.1. Until the controller ran,
    the API used to send every subject to the new, untried package."""
    v1, v2 = decided_experiment(loop)
    v3 = register_package(loop.sm)
    loop.approve(v3, "approve-v3")
    served = api.serve([f"user-{n}" for n in range(200)])
    by_arm = {arm: sum(a == arm for a, _, _ in served) for arm in ("champion", "challenger")}
    assert 5 <= by_arm["challenger"] <= 40 and by_arm["champion"] >= 160, by_arm  # ~10 % / 90 %
    assert {arm: (rnd, package) for arm, rnd, package in served} == {"champion": (2, v2), "challenger": (2, v3)}
