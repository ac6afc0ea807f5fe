"""Event contract: every EventBridge rule of every environment against AWS's documented sample event.

Each rule's pattern (from the synthesized templates) is matched by moto's EventBridge pattern
engine against the sample of its source and detail-type (tests/fixtures/events/, each with the
page it came from), with the rule's own names put in the fields that carry names (bucket, endpoint,
group, alarm) and every other field as documented. The handler the rule feeds (directly, or through
the SQS queue a function polls) parses the same event at its edge.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
from moto.events.models import EventPattern

from aws_contract.duties import platform_functions
from aws_contract.templates import Environment
from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def _samples() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(SAMPLES.glob("*.json")):
        sample = json.loads(path.read_text())
        found[(sample["event"]["source"], sample["event"]["detail-type"])] = sample
    return found


def _get(event: dict, dotted: str):
    for part in dotted.split("."):
        event = event[part]
    return event


def _set(event: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        event = event[part]
    event[last] = value


def _pattern_value(filters: list, documented: str) -> str:
    """A value the rule's filter list accepts, made from the documented one where it is a pattern."""
    first = filters[0]
    if isinstance(first, str):
        return first
    if "prefix" in first:
        return first["prefix"] + documented
    if "wildcard" in first:
        return first["wildcard"].replace("*", documented)
    raise ValueError(f"no value made for filter {first}")


def variants(sample: dict, pattern: dict) -> list[dict]:
    """The sample with the rule's names in its name fields, once per documented value of the others."""
    source = sample["_source"]
    event = copy.deepcopy(sample["event"])
    for field in source.get("names", []):
        try:
            filters = _get(pattern, field)
        except KeyError:
            continue
        _set(event, field, _pattern_value(filters, _get(event, field)))
    values = source.get("values", {})
    found = []
    for choice in itertools.product(*values.values()):
        variant = copy.deepcopy(event)
        for field, value in zip(values, choice, strict=True):
            _set(variant, field, value)
        found.append(variant)
    return found


def _accepts(pattern: dict, field: str, value: str) -> bool:
    try:
        return value in _get(pattern, field)
    except KeyError:
        return True


# --- the handlers' edges ---------------------------------------------------------------------


def _deployer(event: dict) -> None:
    from mlops_runtime.domain.deployment import ApprovalEvent
    from mlops_runtime.domain.promotion import Promotion, is_promotion_event

    if is_promotion_event(event):  # the experiment controller's hand-over
        _, promotion = Promotion.from_eventbridge(event)
        assert (promotion.endpoint_name, promotion.outcome) == (event["detail"]["endpoint_name"],
                                                                event["detail"]["outcome"])
        return
    approval = ApprovalEvent.from_eventbridge(event)
    detail = event["detail"]
    assert (approval.group, approval.approval_status, approval.model_package_arn) == (
        detail["ModelPackageGroupName"], detail["ModelApprovalStatus"], detail["ModelPackageArn"])


def _endpoint_scaler(event: dict) -> None:
    from mlops_runtime.domain.autoscaling import EndpointStateChange

    change = EndpointStateChange.from_eventbridge(event)
    assert change.endpoint_name == event["detail"]["EndpointName"] and change.in_service


def _retraining_trigger(event: dict) -> None:
    from mlops_runtime.domain.retraining import parse_alarm_event

    transition = parse_alarm_event(event)
    assert transition.alarm_name == event["detail"]["alarmName"] and transition.entered_alarm


def _search_indexer(event: dict) -> None:
    from mlops_runtime.handlers.search_indexer import objects_of

    assert objects_of(event) == ([(event["detail"]["bucket"]["name"], event["detail"]["object"]["key"])], False)


def _model_promotion(event: dict) -> None:  # the promotion function reads the approval as the deployer does
    _deployer(event)


EDGES = {
    "mlops_runtime.handlers.deployer": _deployer,
    "mlops_runtime.handlers.model_promotion": _model_promotion,
    "mlops_runtime.handlers.endpoint_scaler": _endpoint_scaler,
    "mlops_runtime.handlers.retraining_trigger": _retraining_trigger,
    "mlops_runtime.handlers.search_indexer": _search_indexer,
}


def _handlers_fed(environment: Environment, stack: str, target: dict) -> list[str]:
    """The handler modules a rule target feeds: a function, or the functions polling a queue."""
    arn = environment.resolve(stack, target["Arn"])
    functions = {environment.arn(f.stack, f.logical_id): f for f in platform_functions(environment)}
    if arn in functions:
        return [functions[arn].module]
    fed = []
    for mapping_stack, _, mapping in environment.resources("AWS::Lambda::EventSourceMapping"):
        if environment.resolve(mapping_stack, mapping["Properties"]["EventSourceArn"]) == arn:
            name = environment.resolve(mapping_stack, mapping["Properties"]["FunctionName"])
            fed += [f.module for f in functions.values() if name in (f.name, environment.arn(f.stack, f.logical_id))]
    return fed


@pytest.fixture(scope="session")
def rules(synthesis) -> list[tuple[str, Environment, str, str, dict]]:
    """(environment, resolved templates, stack, rule id, rule) of every rule of every environment."""
    found = []
    for name, config in synthesis.configs.items():
        environment = Environment(name, config.account, config.region, synthesis.templates[name])
        found += [(name, environment, stack, logical_id, rule)
                  for stack, logical_id, rule in environment.resources("AWS::Events::Rule")
                  if "EventPattern" in rule["Properties"]]
    return found


def test_every_rule_has_a_documented_sample(rules):
    samples = _samples()
    assert len(rules) >= 5
    missing = {(r["Properties"]["EventPattern"]["source"][0], r["Properties"]["EventPattern"]["detail-type"][0])
               for *_, r in rules} - set(samples)
    assert missing == set(), "add AWS's documented sample of these events to tests/fixtures/events/"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_rule_matches_the_documented_event_and_its_handler_reads_it(rules, environment):
    samples = _samples()
    checked = 0
    for _, templates, stack, logical_id, rule in (r for r in rules if r[0] == environment):
        pattern = templates.resolve(stack, rule["Properties"]["EventPattern"])
        sample = samples[(pattern["source"][0], pattern["detail-type"][0])]
        engine = EventPattern.load(json.dumps(pattern))
        values = sample["_source"].get("values", {})
        matched = []
        for event in variants(sample, pattern):
            expected = all(_accepts(pattern, field, _get(event, field)) for field in values)
            assert engine.matches_event(event) == expected, (logical_id, {f: _get(event, f) for f in values})
            if expected:
                matched.append(event)
        assert matched, f"{logical_id}: no documented event matches {pattern}"
        for target in rule["Properties"]["Targets"]:
            for module in _handlers_fed(templates, stack, target):
                assert module in EDGES, f"{logical_id} feeds {module}: add its event parser to EDGES"
                for event in matched:
                    EDGES[module](event)
                checked += 1
    assert checked >= 2


def test_a_status_the_documented_event_does_not_use_is_caught():
    """The scaler's rule must filter on the event's IN_SERVICE, not the API's InService."""
    sample = _samples()[("aws.sagemaker", "SageMaker Endpoint State Change")]
    api_spelling = {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"],
                    "detail": {"EndpointStatus": ["InService"]}}
    assert not EventPattern.load(json.dumps(api_spelling)).matches_event(variants(sample, api_spelling)[0])
