"""Build the CDK app from validated configs; shared by app.py, the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import App, CloudFormationValidatePlugin, Environment, Validations

from .compliance import add_compliance_checks
from .config import PlatformConfig
from .config.delivery import DeliveryConfig
from .stage import PlatformStage


# Feature flags live here, not in cdk.json, so that `cdk synth`, the tests and the benchmarks
# synthesize the same templates.
FEATURE_FLAGS = {
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:validationReportJson": True,
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-ec2:restrictDefaultSecurityGroup": True,
    "@aws-cdk/core:target-partitions": ["aws"],
    # Stacks import the key ARN from Foundation: strong references keep Foundation from dropping
    # an export a deployed stack still uses.
    "@aws-cdk/core:defaultCrossStackReferences": "strong",
}

# CDK's default Rego rules (cross-resource checks on top of the template validation every synth
# runs) fail synthesis, not warn: the test suite's synthesis runs them (``default_rules=True``).
DEFAULT_RULES_AS_ERRORS = {"@aws-cdk/core:validateAgainstDefaultRules": True}


def build_app(configs: Sequence[PlatformConfig], outdir: str | None = None,
              delivery: DeliveryConfig | None = None, default_rules: bool = False) -> App:
    """One stage per environment, with the compliance packs over the whole app.

    With an enabled ``delivery`` config the environments' stages live inside the delivery
    pipeline's stack instead (the pipeline deploys them; ``make deploy-pipeline`` deploys it).

    Every synthesis validates the templates against CloudFormation's schemas (CDK's built-in
    engine) and runs the cdk-nag packs. CDK's default Rego rules come on top with
    ``default_rules``, as errors: ``make test``'s synthesis of every environment runs them (so CI
    does), while ``cdk synth`` leaves them out. In CDK's default setup they only warn, and on this
    app they cost more than the rest of the validation together (``benchmarks/bench_synth.py``).
    """
    app = App(context={**FEATURE_FLAGS, **(DEFAULT_RULES_AS_ERRORS if default_rules else {})},
              **({"outdir": outdir} if outdir else {}))
    if not default_rules:  # replaces the plugin CDK registers by itself, which includes them
        Validations.of(app).add_plugins(CloudFormationValidatePlugin(include_default_rules=False))
    if delivery is not None and delivery.enabled:
        from .stacks.delivery import DeliveryStack

        DeliveryStack(
            app, "Delivery",
            stack_name=f"{delivery.name_prefix}-pipeline",
            description="MLOps platform delivery pipeline (CDK Pipelines)",
            env=Environment(account=delivery.account, region=delivery.region),
            delivery=delivery, environments=list(configs),
            stage_factory=lambda scope, config: PlatformStage(scope, config, delivery_account=delivery.account),
        )
    else:
        for config in configs:
            PlatformStage(app, config)
    add_compliance_checks(app)
    return app
