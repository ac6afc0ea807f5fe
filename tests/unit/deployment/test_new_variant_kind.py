"""A new endpoint type is one class: a made-up kind, registered the way the real ones are
(``@variant_kind`` in ``mlops_runtime.domain.variant_kinds``), is accepted by the config, planned by the
deployer, recognised on a live endpoint, scaled by the scaler and priced by the cost report, with no
other file changed (docs/extending.md, "An endpoint type").

The unions that parse ``kind`` are built from the registry when their modules are imported, so the
kind is registered in a fresh interpreter before the config, the deployer and the scaler are imported
(a real kind is defined in variant_kinds.py itself, which they import first).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Everything a new kind says about itself; nothing below it is kind-specific.
KIND = '''
from typing import Any, ClassVar, Literal, Mapping
from pydantic import Field
from mlops_platform.runtime_tables import variant_kinds

kinds = variant_kinds()


@kinds.variant_kind
class BatchLikeVariantSpec(kinds.InstanceVariant):
    """A made-up kind: instances under SageMaker's managed instance scaling, one variant, not on the API."""

    managed_max_instances: int | None = None
    kind: Literal["batch-like"] = "batch-like"

    title: ClassVar[str] = "batch-like"
    config_doc: ClassVar[str] = "Instances that SageMaker scales itself; one variant; not served by the API."
    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {
        **kinds.INSTANCE_CONFIG_FIELDS,
        "managed_max_instances": (int, Field(default=4, ge=1, le=50)),
    }
    live_challenger: ClassVar[bool] = False
    one_variant_rule: ClassVar[str] = "batch-like endpoints run one variant"
    routable: ClassVar[bool] = False
    scaling: ClassVar[Any] = kinds.INVOCATIONS

    @classmethod
    def check_sizing(cls, variant: Any) -> None:
        super().check_sizing(variant)
        if variant.managed_max_instances < variant.initial_instance_count:
            raise kinds.InvalidEndpointSpec("managed_max_instances", "must be at least initial_instance_count")

    @classmethod
    def recognises(cls, endpoint: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        return any(v.get("ManagedInstanceScaling") for v in config.get("ProductionVariants") or ())

    def production_variant(self, variant, live_count, note):
        variant = super().production_variant(variant, live_count, note)
        variant["ManagedInstanceScaling"] = {"Status": "ENABLED", "MinInstanceCount": 1,
                                             "MaxInstanceCount": self.managed_max_instances}
        return variant


@kinds.variant_kind
class PerUseLikeVariantSpec(kinds.VariantKind):
    """A made-up kind billed per use that does not scale: the defaults of VariantKind say the rest."""

    memory_mb: int
    kind: Literal["per-use-like"] = "per-use-like"

    config_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {"memory_mb": (int, Field(default=1024))}
    live_challenger: ClassVar[bool] = False
    one_variant_rule: ClassVar[str] = "one variant"

    def production_variant(self, variant, live_count, note):
        return {**variant, "ServerlessConfig": {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": 1}}
'''

# What the rest of the platform does with it.
CHECKS = '''
import copy
from datetime import UTC, datetime

import yaml

from mlops_platform import function_settings
from mlops_platform.config import ConfigError, parse_config
from mlops_platform.tools.cost_report import idle_costs, load_prices
from mlops_runtime.domain.autoscaling import APPLY, EndpointDescription, plan_scaling
from mlops_runtime.domain.deployment import (ApprovedPackage, EndpointState, PackageContainer, plan_deployment)

SOURCE = "config/dev.yaml"
base = yaml.safe_load(open(SOURCE))
VARIANT = {"kind": "batch-like", "instance_type": "ml.m5.large", "initial_instance_count": 2,
           "managed_max_instances": 6, "autoscaling": {"min_instances": 1, "max_instances": 3}}


def config_with(**changes):
    data = copy.deepcopy(base)
    endpoint = {"name": "batcher", "model_package_group": "example-classifier", "variant": VARIANT,
                "challenger_initial_weight": 0, **changes}
    data["serving"] = {"endpoints": [endpoint]}
    return data


def refused(data):
    try:
        parse_config(data, SOURCE)
    except ConfigError as error:
        (line,) = error.lines
        return line
    raise AssertionError("loaded")


# the config accepts it (its fields, defaults and autoscaling) and applies its rules, one line each
config = parse_config(config_with(), SOURCE)
endpoint = config.serving.endpoints[0]
assert endpoint.variant.managed_max_instances == 6 and endpoint.variant.autoscaling.max_instances == 3
assert type(endpoint.variant).__name__ == "BatchLikeVariantConfig"
assert config.serving.routes() == ()  # not routable: no public endpoint on the API
line = refused(config_with(variant={**VARIANT, "managed_max_instances": 1}))
assert line.startswith(f"{SOURCE}: field 'serving.endpoints[0].variant.batch-like.managed_max_instances' = 1: "
                       "must be at least initial_instance_count"), line
line = refused(config_with(challenger_initial_weight=0.1))
assert line.startswith(f"{SOURCE}: field 'serving.endpoints[0].challenger_initial_weight' = 0.1: must be 0 for a "
                       "batch-like endpoint (a new package replaces it): batch-like endpoints run one variant"), line
line = refused(config_with(variant={"kind": "batch"}))
assert line.endswith("expected tags: 'realtime', 'serverless', 'async', 'batch-like', 'per-use-like'"), line

# the deployer builds its request
settings = function_settings.deployer(config)
(spec,) = settings.endpoints
assert spec.variants.champion.kind == "batch-like"
package = ApprovedPackage(
    arn="arn:aws:sagemaker:eu-west-1:111111111111:model-package/mlops-dev-example-classifier/3",
    group="mlops-dev-example-classifier", version=3,
    containers=(PackageContainer(image="111111111111.dkr.ecr.eu-west-1.amazonaws.com/xgb:1"),))
now = datetime(2026, 12, 1, tzinfo=UTC)
plan = plan_deployment(None, package, spec, now)
config_call = plan.call("CreateEndpointConfig").params
(variant,) = config_call["ProductionVariants"]
assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 2
assert variant["ManagedInstanceScaling"] == {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 6}

# a live endpoint of the kind is recognised, and a new package replaces its one variant
live_config = {"EndpointConfigName": config_call["EndpointConfigName"], "ProductionVariants": [
    {**variant, "ModelName": "m1"}]}
live = {"EndpointName": spec.name, "EndpointStatus": "InService", "EndpointConfigName": live_config["EndpointConfigName"],
        "ProductionVariants": [{"VariantName": "champion", "CurrentWeight": 1.0, "CurrentInstanceCount": 2}]}
state = EndpointState.from_descriptions(live, live_config, {"m1": "arn:aws:sagemaker:eu-west-1:111111111111:"
                                        "model-package/mlops-dev-example-classifier/2"},
                                        {"mlops:managed-by": "endpoint-deployer"})
assert state.kind == "batch-like"
assert plan_deployment(state, package, spec, now).action == "replace-champion"

# the scaler scales it on its dimension
scaling = function_settings.scaler(config).spec_for(spec.name)
assert (scaling.kind, scaling.min_instances, scaling.max_instances) == ("batch-like", 1, 3)
described = EndpointDescription.from_descriptions(live, live_config, {"mlops:managed-by": "endpoint-deployer"})
assert described.kind == "batch-like"
scaling_plan = plan_scaling(described, scaling, {})
assert scaling_plan.action == APPLY, scaling_plan
(target,) = scaling_plan.targets
assert [p.name for p in target.policies] == ["mlops-invocations-per-instance"]

# the cost report prices its instances while idle (autoscaling min_instances)
costs = idle_costs(config, load_prices())
(item,) = [i for i in costs.items if "batcher" in i.resource]
assert item.resource == "SageMaker batch-like endpoint 'batcher' (champion)" and item.quantity == 1, item
assert item.price_entry == "sagemaker_hosting.ml.m5.large"

# a kind without an instance type or a scaling dimension: not scaled, idle cost flagged as unknown
config = parse_config(config_with(variant={"kind": "per-use-like"}, data_capture=None), SOURCE)
assert function_settings.scaling_entry(config.serving.endpoints[0]) is None
assert [route.name for route in config.serving.routes()] == ["batcher"]  # routable by default
costs = idle_costs(config, load_prices())
assert "SageMaker per-use-like endpoint 'batcher': per use" in costs.usage_priced
assert "per-use-like endpoint 'batcher': the cost report knows no idle price for this kind" in costs.not_priced
(spec,) = function_settings.deployer(config).endpoints
(variant,) = plan_deployment(None, package, spec, now).call("CreateEndpointConfig").params["ProductionVariants"]
assert variant["ServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 1}

# a kind that does not say how SageMaker sizes it is refused when it registers
try:
    @kinds.variant_kind
    class IncompleteVariantSpec(kinds.VariantKind):
        kind: Literal["incomplete"] = "incomplete"
except TypeError as error:
    assert "must define production_variant" in str(error), error
else:
    raise AssertionError("registered")
assert "incomplete" not in kinds.KINDS
print("ok")
'''


def test_a_new_kind_is_one_class_the_config_deployer_scaler_and_cost_report_take():
    script = textwrap.dedent(KIND) + textwrap.dedent(CHECKS)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
