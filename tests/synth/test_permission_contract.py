"""Permission contract: what AWS services do with the roles and resources of every environment.

Each duty (tests/aws_contract/duties.py) is read from the synthesized templates and evaluated by
moto's IAM policy engine against the environment's resolved policies (tests/aws_contract/iam.py).
"""

from __future__ import annotations

import pytest

from aws_contract.duties import eventbridge_duties, lambda_invoke_permissions, lambda_rule_targets, lambda_service_duties, platform_functions
from aws_contract.iam import Roles
from aws_contract.templates import Environment
from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()


@pytest.fixture(scope="session")
def environments(synthesis) -> dict[str, Environment]:
    return {name: Environment(name, config.account, config.region, synthesis.templates[name])
            for name, config in synthesis.configs.items() if name in synthesis.templates}


@pytest.fixture(scope="session")
def roles(environments) -> dict[str, Roles]:
    return {name: Roles(environment) for name, environment in environments.items()}


def denied(roles: Roles, duties) -> list[str]:
    refused = []
    for duty in duties:
        context = dict(duty.context)
        ok = (roles.service_allowed(duty.who, duty.action, duty.resource, context) if duty.by_service
              else roles.allowed(duty.who, duty.action, duty.resource, context))
        if not ok:
            refused.append(f"{duty.who} may not {duty.action} on {duty.resource} ({duty.why})")
    return refused


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_platform_function_is_found(environments, environment):
    handlers = {f.module for f in platform_functions(environments[environment])}
    assert "mlops_runtime.handlers.inference_api" in handlers
    assert len(handlers) >= 7


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_lambda_can_write_logs_traces_and_dead_letters_as_each_function_role(environments, roles, environment):
    duties = lambda_service_duties(environments[environment])
    assert {d.action for d in duties} >= {"logs:PutLogEvents", "sqs:SendMessage", "kms:GenerateDataKey"}
    assert denied(roles[environment], duties) == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_eventbridge_can_dead_letter_into_each_targets_encrypted_queue(environments, roles, environment):
    duties = eventbridge_duties(environments[environment])
    assert duties, "every rule of the platform has a target with a dead-letter queue"
    assert denied(roles[environment], duties) == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_eventbridge_may_invoke_each_lambda_target_of_its_rules(environments, environment):
    permissions = lambda_invoke_permissions(environments[environment])
    missing = [(rule, function) for rule, function in lambda_rule_targets(environments[environment])
               if (function, "events.amazonaws.com", rule) not in permissions]
    assert missing == []
