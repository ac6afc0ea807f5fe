"""Delivery pipeline: source, synth (test then synth), self-mutation, environments in order with a
manual approval before prod and a smoke test after each; cdk-nag clean.

The pipeline's structure is what is tested, so the environments are light stand-in stages (one
stack with the API URL output each): the real stages are tested by the other template tests.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aws_cdk import App, CfnOutput, CfnWaitConditionHandle, Environment, Stack, Stage

from mlops_platform.app_builder import FEATURE_FLAGS
from mlops_platform.compliance import add_compliance_checks
from mlops_platform.config import load_environments
from mlops_platform.config.delivery import DeliveryConfig
from mlops_platform.stacks.delivery import DeliveryStack

CONNECTION = "arn:aws:codeconnections:eu-west-1:444444444444:connection/12345678-1234-1234-1234-123456789012"


class StandInStage(Stage):
    def __init__(self, scope, config):
        super().__init__(scope, config.environment, env=Environment(account=config.account, region=config.region))
        stack = Stack(self, "Api", stack_name=f"{config.name_prefix}-api")
        CfnWaitConditionHandle(stack, "Placeholder")
        self.api = SimpleNamespace(api_url_output=CfnOutput(
            stack, "ApiUrl", value=f"https://abc.execute-api.{config.region}.amazonaws.com/live/"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    delivery = DeliveryConfig(enabled=True, account="444444444444", region="eu-west-1",
                              connection_arn=CONNECTION, repository="my-org/mlops-platform")
    outdir = tmp_path_factory.mktemp("delivery")
    app = App(context=FEATURE_FLAGS, outdir=str(outdir))
    DeliveryStack(app, "Delivery", env=Environment(account="444444444444", region="eu-west-1"),
                  delivery=delivery, environments=load_environments(), stage_factory=StandInStage)
    add_compliance_checks(app)
    app.synth()  # raises on an unacknowledged cdk-nag finding
    template = json.loads(next(outdir.glob("Delivery.template.json")).read_text())
    return template


def of_type(template, type_):
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == type_]


def test_stages_in_order_with_approval_before_prod_and_smoke_tests(pipeline):
    (codepipeline,) = of_type(pipeline, "AWS::CodePipeline::Pipeline")
    stages = {s["Name"]: s for s in codepipeline["Stages"]}
    assert list(stages)[:3] == ["Source", "Build", "UpdatePipeline"]
    assert [n for n in stages if n in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]

    def actions(stage):
        return sorted(stages[stage]["Actions"], key=lambda a: a["RunOrder"])

    for name in ("dev", "staging", "prod"):
        kinds = [(a["Name"], a["ActionTypeId"]["Category"]) for a in actions(name)]
        assert kinds[-1] == (f"SmokeTest-{name}", "Build")
        approval = [k for k in kinds if k[1] == "Approval"]
        assert approval == ([("Promote-to-prod", "Approval")] if name == "prod" else [])
        if name == "prod":
            assert kinds[0] == ("Promote-to-prod", "Approval")
    (source,) = stages["Source"]["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == CONNECTION
    assert source["Configuration"]["FullRepositoryId"] == "my-org/mlops-platform"
    # artifacts are encrypted with a customer key, shared with the target accounts
    assert codepipeline["ArtifactStore"]["EncryptionKey"]["Type"] == "KMS"


def test_synth_runs_the_readme_commands_test_then_synth(pipeline):
    specs = [json.loads(p["Source"]["BuildSpec"]) for p in of_type(pipeline, "AWS::CodeBuild::Project")
             if "BuildSpec" in p.get("Source", {}) and "make synth" in p["Source"]["BuildSpec"]]
    (spec,) = specs
    commands = spec["phases"]["build"]["commands"]
    assert commands.index("make test") < commands.index("make synth")
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_smoke_tests_assume_only_each_environments_smoke_role(pipeline):
    configs = {c.environment: c for c in load_environments()}
    texts = [json.dumps(p) for p in of_type(pipeline, "AWS::IAM::Policy")]
    for name, config in configs.items():
        role = f"arn:aws:iam::{config.account}:role/{config.name_prefix}-api-smoke-test"
        assume = [t for t in texts if role in t]
        assert len(assume) == 1 and "sts:AssumeRole" in assume[0]
    specs = [p["Source"]["BuildSpec"] for p in of_type(pipeline, "AWS::CodeBuild::Project")
             if "smoke_test" in p["Source"].get("BuildSpec", "")]
    assert len(specs) == 3 and all("--role-arn" in s for s in specs)


def test_api_stack_creates_the_smoke_role_for_the_delivery_account(synthesis):
    # The real stages get no smoke role without a delivery pipeline (config/delivery: enabled: false).
    assert "SmokeTestRole" not in json.dumps(synthesis.template("staging", "Api"))
