"""One cost tag everywhere (issue 15, defect 6): the budget filters on `environment`, and every
resource carries it, including those the platform's functions and pipelines create at run time.

Before, the deployer's endpoints, endpoint configs and models carried only `mlops:environment`,
so in prod about 374 USD a month per endpoint was outside the budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from settings_support import deployed_settings

from mlops_platform.config.loader import environment_names
from mlops_platform.config.models import COST_ALLOCATION_TAG

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/model:1"


def resources(synthesis, environment, stack, type_):
    template = synthesis.template(environment, stack)
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def deployer_specs(synthesis, environment) -> tuple:
    """The deployer's endpoint specs as it reads them at cold start (its settings model)."""
    (function,) = [f for f in resources(synthesis, environment, "Serving", "AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "mlops_runtime.handlers.deployer.handler"]
    return deployed_settings(function["Properties"]).endpoints


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_budget_filters_on_the_cost_tag(synthesis, environment):
    (budget,) = resources(synthesis, environment, "Foundation", "AWS::Budgets::Budget").values()
    assert budget["Properties"]["Budget"]["CostFilters"] == {
        "TagKeyValue": [f"user:{COST_ALLOCATION_TAG}${environment}"]}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_resources_the_deployer_creates_carry_the_cost_tag(synthesis, environment):
    from mlops_runtime.domain.deployment import ApprovedPackage, PackageContainer, plan_deployment

    specs = deployer_specs(synthesis, environment)
    assert specs
    for spec in specs:
        package = ApprovedPackage(
            arn=f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{spec.model_package_group}/1",
            group=spec.model_package_group, version=1,
            containers=(PackageContainer(IMAGE, "s3://artifacts/model.tar.gz"),),
            supported_content_types=("text/csv",), supported_response_mime_types=("text/csv",))
        plan = plan_deployment(None, package, spec, datetime(2026, 1, 1, tzinfo=UTC))
        created = [call for call in plan.calls if call.operation.startswith("Create")]
        assert {call.operation for call in created} >= {"CreateModel", "CreateEndpointConfig", "CreateEndpoint"}
        for call in created:
            tags = {tag["Key"]: tag["Value"] for tag in call.params["Tags"]}
            assert tags[COST_ALLOCATION_TAG] == environment, (spec.name, call.operation)
            assert tags["mlops:environment"] == environment  # what the deployer's deletions are scoped by
            assert tags["project"] and tags["cost-centre"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_tagged_resource_and_pipeline_job_carries_the_cost_tag(synthesis, environment):
    for stack in ("Foundation", "FeatureStore", "Training", "Serving", "Api", "Monitoring"):
        for logical_id, resource in synthesis.template(environment, stack)["Resources"].items():
            tags = resource.get("Properties", {}).get("Tags")
            if isinstance(tags, list) and tags and isinstance(tags[0], dict) and "Key" in tags[0]:
                keys = {tag["Key"] for tag in tags}
                assert COST_ALLOCATION_TAG in keys, (stack, logical_id)
    for pipeline in resources(synthesis, environment, "Monitoring", "AWS::SageMaker::Pipeline").values():
        body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
        if isinstance(body, dict):
            body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
        for step in json.loads(body)["Steps"]:  # processing jobs are created at run time
            tags = {tag["Key"]: tag["Value"] for tag in step["Arguments"]["Tags"]}
            assert tags[COST_ALLOCATION_TAG] == environment
