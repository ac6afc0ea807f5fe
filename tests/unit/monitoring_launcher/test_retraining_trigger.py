"""Retraining trigger: the pure decision, the alarm event, its settings, and the handler against moto."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from lambda_context import LambdaContext
from settings_support import set_settings

from mlops_runtime.domain import retraining as domain
from mlops_runtime.domain.retraining import Execution
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError
from mlops_runtime.settings.monitoring import RetrainingSettings, RetrainingTriggerSettings

REGION = "eu-west-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)

RETRAINING = {
    "churn-drift": {"pipelines": ["churn-training", "churn-training-b"], "cooldown_hours": 24},
    "churn-auc-low": {"pipelines": ["churn-training"], "cooldown_hours": 0},
    "broken-alarm": {"pipelines": ["no-such-pipeline", "churn-training"], "cooldown_hours": 24},
}


def alarm_event(name="churn-drift", state="ALARM", previous="OK", timestamp="2024-05-01T11:58:02.551+0000"):
    """A "CloudWatch Alarm State Change" event as documented (single-metric alarm)."""
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": "2024-05-01T11:58:03Z",
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {
                "namespace": "MlopsPlatform/Monitoring", "name": "MaxPSI",
                "dimensions": {"Endpoint": "churn-ep", "Variant": "_all"}}, "period": 3600, "stat": "Maximum"},
                "returnData": True}]},
            "previousState": {"reason": "Threshold Crossed: ...", "timestamp": "2024-04-30T09:00:00.000+0000",
                              "value": previous},
            "state": {"reason": "Threshold Crossed: 1 datapoint [0.31] was greater than the threshold (0.2).",
                      "reasonData": "{}", "timestamp": timestamp, "value": state},
        },
    }


# --- decide -------------------------------------------------------------------------------------


def ex(hours_ago: float | None, status="Succeeded", arn=None) -> Execution:
    start = None if hours_ago is None else NOW - timedelta(hours=hours_ago)
    return Execution(arn or f"arn:exec/{hours_ago}/{status}", status, start)


@pytest.mark.parametrize(
    ("executions", "cooldown", "action"),
    [
        ([], 24, domain.START),
        ([ex(24)], 24, domain.START),  # exactly the cooldown ago: allowed
        ([ex(24 - 1e-6 / 3600)], 24, domain.COOLDOWN),  # one microsecond short
        ([ex(23.99)], 24, domain.COOLDOWN),
        ([ex(1, "Failed")], 24, domain.COOLDOWN),  # whatever its status
        ([ex(1, "Stopped")], 24, domain.COOLDOWN),
        ([ex(30), ex(2)], 24, domain.COOLDOWN),  # the newest counts, in any order
        ([ex(2), ex(30)], 24, domain.COOLDOWN),
        ([ex(0)], 0, domain.START),  # no cooldown
        ([ex(-0.5)], 0, domain.COOLDOWN),  # started "in the future" (clock skew): not yet past
        ([ex(200, "Executing")], 24, domain.RUNNING),  # running beats everything
        ([ex(30), ex(100, "Stopping")], 24, domain.RUNNING),
        ([ex(None, "Executing")], 24, domain.RUNNING),
        ([ex(None, "Succeeded")], 24, domain.START),  # no start time: not counted
        ([ex(None), ex(30)], 24, domain.START),
        ([ex(48, "CompletedWithFailures")], 24, domain.START),
    ],
)
def test_decide(executions, cooldown, action):
    verdict = domain.decide(NOW, executions, cooldown)
    assert verdict.action == action, verdict
    if action == domain.RUNNING:
        assert verdict.blocking_execution_arn in {e.arn for e in executions if e.status in domain.RUNNING_STATUSES}
    if action == domain.COOLDOWN:
        assert "cooldown" in verdict.reason and verdict.blocking_execution_arn


def test_decide_reasons_and_naive_times():
    verdict = domain.decide(NOW.replace(tzinfo=None), [ex(2.5)], 24)
    assert verdict.reason.startswith("the newest execution (Succeeded) started 2.50 h ago")
    other_zone = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))  # == NOW
    assert domain.decide(other_zone, [ex(24)], 24).action == domain.START
    with pytest.raises(ValueError):
        domain.decide(NOW, [], -1)


statuses = st.sampled_from(["Executing", "Stopping", "Stopped", "Failed", "Succeeded", "CompletedWithFailures"])
executions_strategy = st.lists(
    st.builds(lambda minutes, status, i: Execution(f"arn:{i}", status, None if minutes is None else NOW - timedelta(minutes=minutes)),
              st.one_of(st.none(), st.integers(-120, 60 * 24 * 30)), statuses, st.integers(0, 10**6)),
    max_size=10,
)


@settings(max_examples=60)
@given(executions_strategy, st.floats(0, 24 * 14, allow_nan=False), st.randoms())
def test_decide_matches_the_rule_in_any_order(executions, cooldown, rnd):
    verdict = domain.decide(NOW, executions, cooldown)
    shuffled = list(executions)
    rnd.shuffle(shuffled)
    assert domain.decide(NOW, shuffled, cooldown).action == verdict.action
    if any(e.status in ("Executing", "Stopping") for e in executions):
        assert verdict.action == domain.RUNNING
        return
    starts = [e.start_time for e in executions if e.start_time is not None]
    expected = domain.COOLDOWN if starts and NOW - max(starts) < timedelta(hours=cooldown) else domain.START
    assert verdict.action == expected


# --- the event ----------------------------------------------------------------------------------


def test_parse_documented_event():
    transition = domain.parse_alarm_event(alarm_event())
    assert transition.alarm_name == "churn-drift" and transition.entered_alarm
    assert transition.state_timestamp == "2024-05-01T11:58:02.551+0000" and transition.occurrence == transition.state_timestamp
    assert transition.reason.startswith("Threshold Crossed")


@pytest.mark.parametrize(
    ("state", "previous", "entered"),
    [("ALARM", "OK", True), ("ALARM", "INSUFFICIENT_DATA", True), ("ALARM", "ALARM", False),
     ("OK", "ALARM", False), ("INSUFFICIENT_DATA", "OK", False)],
)
def test_only_a_transition_into_alarm_counts(state, previous, entered):
    assert domain.parse_alarm_event(alarm_event(state=state, previous=previous)).entered_alarm is entered


def test_tolerant_event_shapes():
    bare = domain.parse_alarm_event({"alarmName": "a", "state": {"value": "ALARM"}})
    assert bare.entered_alarm and bare.previous_state is None and bare.occurrence is None
    strings = domain.parse_alarm_event({"detail": {"alarmName": "a", "state": "ALARM", "previousState": "OK"}, "time": "t"})
    assert strings.entered_alarm and strings.occurrence == "t"
    no_state = domain.parse_alarm_event({"detail": {"alarmName": "a"}, "id": "event-1"})
    assert not no_state.entered_alarm and no_state.occurrence == "event-1"
    for bad in (None, [], "x", {}, {"detail": {}}, {"detail": {"alarmName": ""}}, {"detail": "x"}):
        with pytest.raises(domain.InvalidAlarmEvent):
            domain.parse_alarm_event(bad)


def test_token_and_display_name():
    token = domain.retraining_token("churn-drift", "2024-05-01T11:58:02.551+0000", "churn-training")
    assert token == domain.retraining_token("churn-drift", "2024-05-01T11:58:02.551+0000", "churn-training")
    assert token != domain.retraining_token("churn-drift", "2024-05-01T11:58:02.551+0000", "churn-training-b")
    assert token != domain.retraining_token("churn-drift", "2024-05-02T11:58:02.551+0000", "churn-training")
    assert 32 <= len(token) <= 128
    name = domain.retraining_display_name("Churn/PSI drift > 0.2 " + "x" * 200)
    assert len(name) == 82 and name.startswith("retrain-Churn-PSI-drift-0-2-xxx")
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}", name)
    assert domain.retraining_display_name("churn-drift") == "retrain-churn-drift"


# --- the trigger's settings (settings.RetrainingTriggerSettings) --------------------------------


def trigger_settings(raw: str):
    return RetrainingTriggerSettings.from_env({SETTINGS_ENV: raw})


def test_trigger_settings():
    configs = trigger_settings(json.dumps({"retraining": RETRAINING})).retraining
    assert configs["churn-drift"] == RetrainingSettings(alarm="churn-drift", pipelines=("churn-training", "churn-training-b"),
                                                        cooldown_hours=24.0)
    raw = '{"retraining": {"a b/c": {"pipelines": ["p"], "cooldown_hours": 0.5}}}'
    assert trigger_settings(raw).retraining["a b/c"].cooldown_hours == 0.5


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ('{"a": 1}', "Input should be an object"), ('{"": {"pipelines": ["p"], "cooldown_hours": 1}}', "alarm"),
        ('{"a": {"pipelines": [], "cooldown_hours": 1}}', "pipelines"),
        ('{"a": {"pipelines": "p", "cooldown_hours": 1}}', "pipelines"),
        ('{"a": {"pipelines": ["bad name"], "cooldown_hours": 1}}', "'bad name' is not a pipeline name"),
        ('{"a": {"pipelines": ["p", "p"], "cooldown_hours": 1}}', "twice"),
        ('{"a": {"pipelines": ["p"]}}', "cooldown_hours\n  Field required"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": -1}}', "cooldown_hours"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": true}}', "cooldown_hours"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": "24"}}', "cooldown_hours"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": 1e9}}', "cooldown_hours"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": 1, "cooldown": 2}}', "cooldown\n  Extra inputs"),
        ('{"a": {"pipelines": ["p"], "cooldown_hours": 1, "alarm_period_hours": 24}}', "a shorter cooldown"),
    ],
)
def test_trigger_settings_errors(entries, message):
    with pytest.raises(SettingsError) as caught:
        trigger_settings(f'{{"retraining": {entries}}}')
    assert message in str(caught.value)


# --- handler against moto -----------------------------------------------------------------------


class HonourTokens:
    """moto ignores ``ClientRequestToken``: a repeated token returns the first execution, as SageMaker does."""

    def __init__(self, client):
        self.reset()
        client.meta.events.register("before-parameter-build.sagemaker.StartPipelineExecution", self.record)
        client.meta.events.register("before-call.sagemaker.StartPipelineExecution", self.replay)
        client.meta.events.register("after-call.sagemaker.StartPipelineExecution", self.remember)

    def reset(self):
        self.requests, self.arns = [], {}

    def record(self, params, context, **_):
        self.requests.append(dict(params))
        context["token"] = params.get("ClientRequestToken")

    def replay(self, context, **_):
        arn = self.arns.get(context.get("token"))
        return None if arn is None else (type("Http", (), {"status_code": 200, "headers": {}})(),
                                         {"PipelineExecutionArn": arn})

    def remember(self, parsed, context, **_):
        if "PipelineExecutionArn" in parsed:
            self.arns.setdefault(context.get("token"), parsed["PipelineExecutionArn"])


@pytest.fixture(scope="module")
def clients():
    sm = boto3.client("sagemaker", region_name=REGION)
    return {"sm": sm, "sns": boto3.client("sns", region_name=REGION), "sqs": boto3.client("sqs", region_name=REGION),
            "tokens": HonourTokens(sm)}


@pytest.fixture
def aws(monkeypatch, clients):
    with mock_aws():
        sm, sns, sqs = clients["sm"], clients["sns"], clients["sqs"]
        for name in ("churn-training", "churn-training-b"):
            sm.create_pipeline(PipelineName=name, RoleArn=ROLE,
                               PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        topic = sns.create_topic(Name="retraining")["TopicArn"]
        set_settings(monkeypatch, retraining=RETRAINING, notification_topic_arn=topic)
        queue = sqs.create_queue(QueueName="notes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        clients["tokens"].reset()

        from mlops_runtime.adapters.monitoring_inputs import SageMakerPipelines
        from mlops_runtime.handlers import retraining_trigger

        clock = {"now": datetime.now(UTC)}
        retraining_trigger.configure(pipelines=SageMakerPipelines(sm), sns=sns, clock=lambda: clock["now"])
        yield {**clients, "queue": queue, "clock": clock}
        retraining_trigger.configure()


def trigger(event):
    from mlops_runtime.handlers import retraining_trigger

    return retraining_trigger.handler(event, LambdaContext())


def messages(aws):
    out = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in out]


def executions(sm, pipeline="churn-training"):
    return sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]


def set_status(pipeline, arn, status):
    from moto.sagemaker.models import sagemaker_backends

    sagemaker_backends[ACCOUNT][REGION].pipelines[pipeline].pipeline_executions[arn].pipeline_execution_status = status


def test_alarm_starts_every_pipeline_and_notifies(aws):
    result = trigger(alarm_event())
    assert result["status"] == "done"
    assert [(d["pipeline"], d["action"]) for d in result["decisions"]] == [
        ("churn-training", "started"), ("churn-training-b", "started"),
    ]
    for decision in result["decisions"]:
        [summary] = executions(aws["sm"], decision["pipeline"])
        assert summary["PipelineExecutionArn"] == decision["execution_arn"]
        assert decision["reason"] == "no previous execution"
    first, second = aws["tokens"].requests
    assert first["PipelineName"] == "churn-training" and first["PipelineExecutionDisplayName"] == "retrain-churn-drift"
    assert first["ClientRequestToken"] == domain.retraining_token(
        "churn-drift", "2024-05-01T11:58:02.551+0000", "churn-training")
    assert first["ClientRequestToken"] != second["ClientRequestToken"]
    assert "churn-drift" in first["PipelineExecutionDescription"] and "PipelineParameters" not in first
    [note] = messages(aws)
    assert note["alarm"] == "churn-drift" and note["decisions"] == result["decisions"]
    assert note["summary"] == "churn-training: started, churn-training-b: started"


def test_cooldown_is_respected_then_lifted(aws):
    trigger(alarm_event())
    started = executions(aws["sm"])[0]["StartTime"]
    aws["clock"]["now"] = started + timedelta(hours=23, minutes=59)
    later = trigger(alarm_event(timestamp="2024-05-01T20:00:00.000+0000"))
    assert [d["action"] for d in later["decisions"]] == ["cooldown", "cooldown"]
    assert "24 h cooldown" in later["decisions"][0]["reason"]
    assert len(aws["tokens"].requests) == 2 and len(executions(aws["sm"])) == 1

    aws["clock"]["now"] = started + timedelta(hours=24, seconds=1)
    after = trigger(alarm_event(timestamp="2024-05-02T20:00:00.000+0000"))
    assert [d["action"] for d in after["decisions"]] == ["started", "started"]
    assert len(executions(aws["sm"])) == 2


def test_running_execution_is_respected(aws):
    trigger(alarm_event(name="churn-auc-low"))  # cooldown 0
    [summary] = executions(aws["sm"])
    set_status("churn-training", summary["PipelineExecutionArn"], "Executing")
    aws["clock"]["now"] = summary["StartTime"] + timedelta(days=30)
    result = trigger(alarm_event(name="churn-auc-low", timestamp="2024-06-01T00:00:00.000+0000"))
    [decision] = result["decisions"]
    assert decision["action"] == "running" and decision["blocking_execution_arn"] == summary["PipelineExecutionArn"]
    assert "execution_arn" not in decision
    assert len(executions(aws["sm"])) == 1


def test_redelivered_event_starts_one_execution(aws):
    event = alarm_event(name="churn-auc-low")  # cooldown 0: the redelivery decides "start" again
    first = trigger(event)
    aws["clock"]["now"] = executions(aws["sm"])[0]["StartTime"] + timedelta(minutes=1)
    second = trigger(event)
    assert first["decisions"][0]["action"] == second["decisions"][0]["action"] == "started"
    assert first["decisions"][0]["execution_arn"] == second["decisions"][0]["execution_arn"]
    one, two = aws["tokens"].requests
    assert one["ClientRequestToken"] == two["ClientRequestToken"]
    assert len(executions(aws["sm"])) == 1


@pytest.mark.parametrize(("state", "previous"), [("OK", "ALARM"), ("INSUFFICIENT_DATA", "OK"), ("ALARM", "ALARM")])
def test_other_transitions_are_ignored(aws, state, previous):
    result = trigger(alarm_event(state=state, previous=previous))
    assert result["status"] == "ignored" and "not a transition into ALARM" in result["reason"]
    assert aws["tokens"].requests == [] and messages(aws) == []


def test_unknown_alarm_is_ignored(aws):
    result = trigger(alarm_event(name="someone-elses-alarm"))
    assert result == {"status": "ignored", "reason": "no retraining configured for alarm 'someone-elses-alarm'"}
    assert aws["tokens"].requests == []


def test_a_failing_pipeline_does_not_stop_the_others(aws):
    result = trigger(alarm_event(name="broken-alarm"))
    missing, ok = result["decisions"]
    assert missing["pipeline"] == "no-such-pipeline" and missing["action"] == "error"
    assert "ValidationException" in missing["reason"]
    assert ok["action"] == "started"
    [note] = messages(aws)
    assert [d["action"] for d in note["decisions"]] == ["error", "started"]


def test_no_topic_no_message(aws, monkeypatch):
    set_settings(monkeypatch, retraining=RETRAINING)
    assert trigger(alarm_event())["status"] == "done"
    assert messages(aws) == []


@pytest.mark.parametrize(
    ("event", "retraining", "reason"),
    [
        ({}, RETRAINING, "no detail.alarmName"),
        ({"detail-type": "Scheduled Event", "detail": {}}, RETRAINING, "no detail.alarmName"),
        ("text", RETRAINING, "JSON object"),
        (alarm_event(), None, "MLOPS_SETTINGS is not set"),
        (alarm_event(), "{oops", "Invalid JSON"),
        (alarm_event(), json.dumps({"retraining": {"churn-drift": {"pipelines": ["p"], "cooldown_hours": -2}}}),
         "cooldown_hours"),
    ],
)
def test_bad_event_or_configuration(aws, monkeypatch, event, retraining, reason):
    if retraining is None:
        monkeypatch.delenv(SETTINGS_ENV)
    elif retraining is RETRAINING:
        set_settings(monkeypatch, retraining=retraining)
    else:
        monkeypatch.setenv(SETTINGS_ENV, retraining)
    result = trigger(event)
    assert result["status"] == "error" and reason in result["reason"]
    assert aws["tokens"].requests == []
