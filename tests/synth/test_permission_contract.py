"""Permission contract: every AWS call the code makes, and what AWS services do with the roles.

The calls are those the handlers and jobs made in the tests (tests/aws_contract/calls.json, kept
complete by tests/conftest.py); the duties of the Lambda and EventBridge services are read from the
templates (tests/aws_contract/duties.py). Both are evaluated by moto's IAM policy engine against
every environment's resolved policies (tests/aws_contract/iam.py); docs/permissions.md is the
per-role report (``make permissions`` regenerates it).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from aws_contract import ledger
from aws_contract.contract import Contract, RoleReport, granted_actions, render_report
from aws_contract.duties import (
    eventbridge_duties,
    lambda_invoke_permissions,
    lambda_rule_targets,
    lambda_service_duties,
    platform_functions,
    sagemaker_job_duties,
)
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
def contracts(environments) -> dict[str, Contract]:
    return {name: Contract(environment) for name, environment in environments.items()}


@pytest.fixture(scope="session")
def roles(contracts) -> dict[str, Roles]:
    return {name: contract.roles for name, contract in contracts.items()}


@pytest.fixture(scope="session")
def entries() -> list[ledger.Entry]:
    return sorted(ledger.load())


def refusals(contract: Contract, entries) -> list[str]:
    return [f"{d.runner} ({d.entry.caller}) may not {d.request.action} on {d.request.resource}"
            f"{' with ' + str(dict(d.request.context)) if d.request.context else ''}"
            for e in entries for d in contract.decide(e) if d.allowed_as is None]


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
def test_sagemaker_can_run_each_pipeline_step_as_its_role(environments, roles, environment):
    """Image, inputs (listed, then read), outputs (with their keys), logs and the VPC's network
    interfaces, for every processing and training step of every pipeline."""
    duties = sagemaker_job_duties(environments[environment])
    assert {d.action for d in duties} >= {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "logs:PutLogEvents"}
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


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_call_the_code_makes_is_allowed_for_its_role(contracts, entries, environment):
    decided = [d for e in entries for d in contracts[environment].decide(e)]
    assert len({d.entry.caller for d in decided}) >= 8
    assert refusals(contracts[environment], entries) == []


def test_every_caller_of_the_ledger_runs_in_some_environment(contracts, entries):
    callers = {e.caller for e in entries}
    assert {"mlops_runtime.handlers.deployer", "mlops_runtime.search.bulk", "monitor.py"} <= callers
    assert callers - {c for contract in contracts.values() for c in contract.runners} == set()


def test_a_grant_removed_from_a_role_is_refused(environments, entries):
    """The contract can fail: without the statements granting the deployer's CreateEndpoint, the
    deployer's call is refused in every environment."""
    for name, environment in environments.items():
        templates = copy.deepcopy(environment.templates)
        for resource in templates["Serving"]["Resources"].values():
            if resource["Type"] == "AWS::IAM::Policy":
                document = resource["Properties"]["PolicyDocument"]
                document["Statement"] = [s for s in document["Statement"] if "sagemaker:CreateEndpoint" not in s["Action"]]
        contract = Contract(Environment(name, environment.account, environment.region, templates))
        refused = refusals(contract, [e for e in entries if e.operation == "CreateEndpoint"])
        assert refused and all("sagemaker:CreateEndpoint" in r for r in refused)


REPORT = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"


def test_permissions_report_is_fresh(environments, contracts, entries):
    reports: dict[tuple[str, str], RoleReport] = {}
    for name, contract in contracts.items():
        for decision in (d for e in entries for d in contract.decide(e)):
            report = reports.setdefault((name, decision.runner), RoleReport(name, decision.runner, decision.role_arn))
            report.observed |= set(decision.allowed_as or ())
        for duty in lambda_service_duties(environments[name]) + sagemaker_job_duties(environments[name]):
            report = reports.setdefault((name, duty.runner), RoleReport(name, duty.runner, duty.who))
            report.observed.add(f"{duty.action} {duty.resource}")
        for report in reports.values():
            if report.environment == name:
                report.granted = granted_actions(contract.roles, report.role_arn)
    checked = {d.entry for contract in contracts.values() for e in entries for d in contract.decide(e)}
    text = render_report(list(reports.values()), [e for e in entries if e not in checked])
    if ledger.recording():
        REPORT.write_text(text)
    assert REPORT.read_text() == text, "docs/permissions.md is stale: run `make permissions`"
