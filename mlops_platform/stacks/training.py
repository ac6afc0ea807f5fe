"""Training: SageMaker Pipelines, the Model Registry, experiment tracking, and their triggers."""

from __future__ import annotations


from aws_cdk import AssetHashType, CfnTag, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..compliance import (
    GRANT_READ_ACTIONS,
    GRANT_WRITE_ACTIONS,
    KMS_GRANT_ACTIONS,
    acknowledge_inline_policy,
    acknowledge_wildcards,
    objects_under,
    partition_arn,
)
from .. import function_settings
from ..config import PlatformConfig
from ..config.models import TrackingBackend, TrainingPipelineConfig
from ..constructs.model_promotion import (
    ApprovalForwarding, ApprovalForwardingProps, ModelPromotion, ModelPromotionProps,
)
from ..constructs.naming import pascal
from ..constructs.roles import read_code_assets, service_role
from ..pipelines.packaging import asset_hash as source_archive_hash
from ..pipelines.packaging import pack_source_dir
from ..wheel_sets import training_wheels
from ..pipelines.cache import cached_training_pipeline_definition
from ..pipelines.training_definition import TrainingPipelineSpec
from .feature_store import OFFLINE_STORE_PREFIX, FeatureStoreStack
from .foundation import PIPELINE_OUTPUT_PREFIX, FoundationStack, environment_bucket_name
from ..paths import BUILD_DIR, REPO_ROOT

TRAINING_SOURCES_DIR = BUILD_DIR / "training-sources"
MLFLOW_PREFIX = "mlflow"
# Actions a training job needs to log runs to a SageMaker managed MLflow tracking server.
MLFLOW_LOGGING_ACTIONS = [
    "sagemaker-mlflow:AccessUI", "sagemaker-mlflow:CreateExperiment", "sagemaker-mlflow:SearchExperiments",
    "sagemaker-mlflow:GetExperiment", "sagemaker-mlflow:GetExperimentByName", "sagemaker-mlflow:CreateRun",
    "sagemaker-mlflow:UpdateRun", "sagemaker-mlflow:GetRun", "sagemaker-mlflow:LogMetric",
    "sagemaker-mlflow:LogParam", "sagemaker-mlflow:LogBatch", "sagemaker-mlflow:SetTag",
    "sagemaker-mlflow:LogInputs", "sagemaker-mlflow:LogOutputs", "sagemaker-mlflow:LogModel",
    "sagemaker-mlflow:CreateModelVersion", "sagemaker-mlflow:CreateRegisteredModel",
]


class TrainingStack(Stack):
    """Pipelines and registry of one environment.

    ``model_package_groups`` maps each configured group to its name; the serving stack reacts
    to approvals in those groups.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 foundation: FoundationStack, feature_store: FeatureStoreStack,
                 notifications: sns.ITopic, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.feature_store = feature_store
        self.raw_data_bucket = foundation.import_bucket(self, "raw-data")
        self.artifacts_bucket = foundation.import_bucket(self, "artifacts")
        training = config.training
        self.model_package_groups = {
            group: self._model_package_group(group)
            for group in sorted({pipeline.model_package_group for pipeline in training.pipelines}
                                | set(training.registry.additional_groups))
        }
        self.tracking_server_arn: str | None = None
        tracking = training.experiment_tracking
        if tracking.backend is TrackingBackend.MLFLOW:
            self.tracking_server_arn = self._mlflow_tracking_server()
        self.pipelines: dict[str, sagemaker.CfnPipeline] = {}
        # What jobs of this stack's pipelines need beyond the foundation's grants. A policy owned
        # by this stack (not the role's default policy) keeps Foundation free of references here.
        if training.pipelines:
            self.job_policy = iam.ManagedPolicy(self, "PipelineJobAccess", roles=[foundation.sagemaker_role])
        if self.tracking_server_arn and training.pipelines:
            self.job_policy.add_statements(iam.PolicyStatement(
                sid="LogRunsToMlflow", actions=MLFLOW_LOGGING_ACTIONS, resources=[self.tracking_server_arn],
            ))
        if training.pipelines:
            self.pipeline_role = self._pipeline_role()
            for pipeline in training.pipelines:
                self.pipelines[pipeline.name] = self._pipeline(pipeline)
        if self.model_package_groups:
            self._notify_on_approval_decisions(notifications)
            self._promotion()

    # --- promotion between environments -----------------------------------------------------
    def _promotion(self) -> None:
        """Forward this environment's approvals to the accounts it shares models with, and register
        the approvals of the environment it promotes from (constructs/model_promotion.py)."""
        config = self.config
        registry = config.training.registry
        consumers = tuple(a for a in registry.share_with_accounts if a != config.account)
        if consumers:
            self.approval_forwarding = ApprovalForwarding(self, "ApprovalForwarding", ApprovalForwardingProps(
                groups=tuple(self._group_name(g) for g in self.model_package_groups), consumer_accounts=consumers))
        source = registry.promote_from
        if source is None:
            return
        groups = {f"{source.name_prefix}-{g}": self._group_name(g) for g in self.model_package_groups}
        self.promotion = ModelPromotion(self, "ModelPromotion", ModelPromotionProps(
            function=self.foundation.function_props(
                function_name=f"{config.name_prefix}-model-promotion",
                handler="mlops_runtime.handlers.model_promotion.handler",
                description=f"Registers packages approved in {source.name_prefix} here, pending approval",
                environment=function_settings.promotion(config).to_env(),
                timeout=Duration.seconds(30),
                reserved_concurrency=2,
            ),
            source_account=source.account,
            source_name_prefix=source.name_prefix,
            groups=groups,
            source_artifacts_bucket=environment_bucket_name(source.name_prefix, source.account, config.region,
                                                            "artifacts"),
            execution_role=self.foundation.sagemaker_role,
        ))
        for group in self.model_package_groups.values():
            self.promotion.node.add_dependency(group)

    # --- registry -------------------------------------------------------------------------
    def _group_name(self, group: str) -> str:
        return f"{self.config.name_prefix}-{group}"

    def _model_package_group(self, group: str) -> sagemaker.CfnModelPackageGroup:
        name = self._group_name(group)
        accounts = self.config.training.registry.share_with_accounts
        policy = None
        if accounts:
            group_arn = self.format_arn(service="sagemaker", resource="model-package-group", resource_name=name)
            packages_arn = self.format_arn(service="sagemaker", resource="model-package", resource_name=f"{name}/*")
            policy = {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "ConsumerAccountsReadModels",
                    "Effect": "Allow",
                    "Principal": {"AWS": [f"arn:{self.partition}:iam::{account}:root" for account in accounts]},
                    "Action": ["sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage",
                               "sagemaker:ListModelPackages"],
                    "Resource": [group_arn, packages_arn],
                }],
            }
        group_resource = sagemaker.CfnModelPackageGroup(
            self, f"{pascal(group)}ModelPackageGroup",
            model_package_group_name=name,
            model_package_group_description=f"Models of {group} ({self.config.environment})",
            model_package_group_policy=policy,
            tags=[CfnTag(key="model", value=group)],
        )
        return group_resource

    def _notify_on_approval_decisions(self, topic: sns.ITopic) -> None:
        rule = events.Rule(
            self, "ModelApprovalDecisions",
            description="Model package approved or rejected in this environment's registry",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [self._group_name(g) for g in self.model_package_groups],
                    "ModelApprovalStatus": ["Approved", "Rejected"],
                },
            ),
        )
        rule.add_target(targets.SnsTopic(
            topic,
            message=events.RuleTargetInput.from_text(
                f"[{self.config.environment}] Model package "
                f"{events.EventField.from_path('$.detail.ModelPackageGroupName')} version "
                f"{events.EventField.from_path('$.detail.ModelPackageVersion')} is now "
                f"{events.EventField.from_path('$.detail.ModelApprovalStatus')} "
                f"({events.EventField.from_path('$.detail.ModelPackageArn')})."
            ),
        ))
        self.approval_rule = rule

    # --- experiment tracking --------------------------------------------------------------
    def _mlflow_tracking_server(self) -> str:
        config = self.config
        tracking = config.training.experiment_tracking
        bucket = self.artifacts_bucket
        role = service_role(self, "MlflowRole", "sagemaker.amazonaws.com",
                            "Lets the managed MLflow tracking server store artifacts")
        bucket.grant_read_write(role, f"{MLFLOW_PREFIX}/*")  # and the platform key
        policy = role.node.find_child("DefaultPolicy")
        acknowledge_wildcards(
            policy,
            [*GRANT_READ_ACTIONS, *GRANT_WRITE_ACTIONS, *KMS_GRANT_ACTIONS,
             objects_under(bucket.bucket_name, f"{MLFLOW_PREFIX}/")],
            "CDK grants limited to the mlflow/ prefix of the artifacts bucket and the platform key.",
        )
        acknowledge_inline_policy(role)
        name = f"{config.name_prefix}-mlflow"
        server = sagemaker.CfnMlflowTrackingServer(
            self, "MlflowTrackingServer",
            tracking_server_name=name,
            artifact_store_uri=bucket.s3_url_for_object(MLFLOW_PREFIX),
            role_arn=role.role_arn,
            tracking_server_size=tracking.mlflow_size,
            mlflow_version=tracking.mlflow_version,
            automatic_model_registration=False,  # the pipeline's Register step owns the registry
            weekly_maintenance_window_start=tracking.mlflow_weekly_maintenance,
        )
        server.node.add_dependency(role)
        return server.attr_tracking_server_arn

    def _tracking_environment(self, pipeline: TrainingPipelineConfig) -> dict[str, str]:
        tracking = self.config.training.experiment_tracking
        experiment = f"{self.config.name_prefix}-{pipeline.name}"
        if tracking.backend is TrackingBackend.MLFLOW and self.tracking_server_arn:
            return {"MLFLOW_TRACKING_URI": self.tracking_server_arn, "MLFLOW_EXPERIMENT_NAME": experiment}
        if tracking.backend is TrackingBackend.WANDB and tracking.wandb_secret_name:
            return {"WANDB_SECRET_NAME": tracking.wandb_secret_name, "WANDB_PROJECT": experiment}
        return {}

    # --- pipelines ------------------------------------------------------------------------
    def _pipeline_role(self) -> iam.Role:
        """Role SageMaker Pipelines uses to start the steps' jobs and register models."""
        execution_role = self.foundation.sagemaker_role
        role = service_role(self, "PipelineRole", "sagemaker.amazonaws.com",
                            "Runs this environment's SageMaker Pipelines")
        jobs = [self.format_arn(service="sagemaker", resource=kind, resource_name="pipelines-*")
                for kind in ("processing-job", "training-job")]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="RunPipelineJobs",
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                     "sagemaker:StopProcessingJob", "sagemaker:CreateTrainingJob",
                     "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags"],
            resources=jobs,
        ))
        groups = [self._group_name(g) for g in self.model_package_groups]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="RegisterModels",
            actions=["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage",
                     "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
            resources=[
                *(self.format_arn(service="sagemaker", resource="model-package-group", resource_name=g) for g in groups),
                *(self.format_arn(service="sagemaker", resource="model-package", resource_name=f"{g}/*") for g in groups),
            ],
        ))
        execution_role.grant_pass_role(role)
        self.artifacts_bucket.grant_read(role, f"{PIPELINE_OUTPUT_PREFIX}/*")  # and the platform key
        where = f"{self.region}:{self.account}"
        policy = role.node.find_child("DefaultPolicy")
        acknowledge_wildcards(
            policy,
            [partition_arn(f"sagemaker:{where}:processing-job/pipelines-*"),
             partition_arn(f"sagemaker:{where}:training-job/pipelines-*"),
             *(partition_arn(f"sagemaker:{where}:model-package/{g}/*") for g in groups)],
            "SageMaker Pipelines names step jobs pipelines-<execution>-<step>-<suffix>, and model "
            "package versions <group>/<n>, at run time; scoped to this environment's groups.",
        )
        acknowledge_wildcards(
            policy,
            [*GRANT_READ_ACTIONS,
             objects_under(self.artifacts_bucket.bucket_name, f"{PIPELINE_OUTPUT_PREFIX}/")],
            "Reads step outputs (evaluation.json for the condition step) under pipelines/ only.",
        )
        acknowledge_inline_policy(role)
        return role

    def _code_assets(self, pipeline: TrainingPipelineConfig) -> tuple[s3_assets.Asset, ...]:
        code = pipeline.code
        preprocess = s3_assets.Asset(self, f"{pascal(pipeline.name)}PreprocessCode",
                                     path=str(REPO_ROOT / code.preprocess_script))
        evaluate = s3_assets.Asset(self, f"{pascal(pipeline.name)}EvaluateCode",
                                   path=str(REPO_ROOT / code.evaluate_script))
        # The training requirements travel as wheels for the training image's Python: the job
        # installs them without an index, so it needs no route to PyPI (a VPC without NAT).
        archive = pack_source_dir(REPO_ROOT / code.train_source_dir, TRAINING_SOURCES_DIR, wheels=training_wheels(pipeline))
        # the archive's name holds its content hash: CDK need not read its ~50 MB to fingerprint it
        source = s3_assets.Asset(self, f"{pascal(pipeline.name)}TrainSource", path=str(archive),
                                 asset_hash=source_archive_hash(archive), asset_hash_type=AssetHashType.CUSTOM)
        return preprocess, evaluate, source

    def _input(self, pipeline: TrainingPipelineConfig) -> tuple[str, tuple[str, ...]]:
        """Default InputDataUri and the preprocess arguments that go with it."""
        text = self.config.text_features_of_group(pipeline.model_package_group)
        target = ("--target-column", pipeline.target_column,
                  *(("--text-features", ",".join(text)) if text else ()))
        if pipeline.feature_group:
            group = next(g for g in self.config.feature_store.feature_groups if g.name == pipeline.feature_group)
            # Feature Store writes the offline store under <uri>/<account>/sagemaker/<region>/
            # offline-store/<group>-<creation time>/; the S3 prefix below matches that folder.
            store = (f"{OFFLINE_STORE_PREFIX}/{self.account}/sagemaker/{self.region}/offline-store/"
                     f"{self.feature_store.group_name(group)}-")
            arguments = ("--input-format", "feature-store", "--record-identifier", group.record_identifier,
                         "--event-time-feature", group.event_time_feature, *target)
            return self.raw_data_bucket.s3_url_for_object(store), arguments
        return self.raw_data_bucket.s3_url_for_object(pipeline.input_prefix.rstrip("/")), target

    def _pipeline(self, pipeline: TrainingPipelineConfig) -> sagemaker.CfnPipeline:
        config = self.config
        foundation = self.foundation
        name = f"{config.name_prefix}-{pipeline.name}"
        preprocess, evaluate, source = self._code_assets(pipeline)
        self.job_policy.add_statements(
            *read_code_assets(f"Read{pascal(pipeline.name)}StepCode", (preprocess, evaluate, source)))
        network = foundation.network
        input_uri, preprocess_arguments = self._input(pipeline)
        tracking_env = self._tracking_environment(pipeline)
        if "WANDB_SECRET_NAME" in tracking_env:
            secret = secretsmanager.Secret.from_secret_name_v2(
                self, f"{pascal(pipeline.name)}WandbKey", tracking_env["WANDB_SECRET_NAME"])
            self.job_policy.add_statements(iam.PolicyStatement(
                sid=f"Read{pascal(pipeline.name)}WandbKey",
                actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                resources=[secret.secret_arn],
            ))
        spec = TrainingPipelineSpec(
            pipeline_name=name,
            region=config.region,
            role_arn=foundation.sagemaker_role.role_arn,
            default_bucket=self.artifacts_bucket.bucket_name,
            input_data_uri=input_uri,
            preprocess_arguments=preprocess_arguments,
            output_uri=self.artifacts_bucket.s3_url_for_object(f"{PIPELINE_OUTPUT_PREFIX}/{pipeline.name}"),
            model_package_group_name=self._group_name(pipeline.model_package_group),
            preprocess_code_uri=preprocess.s3_object_url,
            evaluate_code_uri=evaluate.s3_object_url,
            train_source_uri=source.s3_object_url,
            train_entry_point=pipeline.code.train_entry_point,
            framework_version=pipeline.framework_version,
            sklearn_version=pipeline.sklearn_version,
            evaluate_image_framework=pipeline.evaluate_image,
            processing_instance_type=pipeline.processing_instance_type,
            processing_instance_count=pipeline.processing_instance_count,
            training_instance_type=pipeline.training_instance_type,
            training_instance_count=pipeline.training_instance_count,
            hyperparameters={k: str(v) for k, v in pipeline.hyperparameters.items()},
            metric_name=pipeline.metric,
            metric_threshold=pipeline.metric_threshold,
            default_approval_status=pipeline.approval_status.value,
            kms_key_arn=foundation.key.key_arn,
            subnet_ids=tuple(s.subnet_id for s in network.vpc.isolated_subnets) if network else (),
            security_group_ids=(network.workload_security_group.security_group_id,) if network else (),
            environment=tracking_env,
            inference_instance_types=pipeline.inference_instance_types,
            transform_instance_types=pipeline.inference_instance_types,
            model_approval_description=f"Registered by pipeline {name}",
            tags=config.resource_tags,
        )
        definition = cached_training_pipeline_definition(spec)
        cfn = sagemaker.CfnPipeline(
            self, f"{pascal(pipeline.name)}Pipeline",
            pipeline_name=name,
            pipeline_display_name=name,
            pipeline_description=f"Trains and registers {pipeline.model_package_group}",
            pipeline_definition={"PipelineDefinitionBody": definition},
            role_arn=self.pipeline_role.role_arn,
            tags=[CfnTag(key="pipeline", value=pipeline.name)],
        )
        cfn.node.add_dependency(self.pipeline_role)
        if pipeline.schedule:
            self._schedule(pipeline, name)
        if pipeline.new_data_trigger:
            self._start_on_new_data(pipeline, name)
        return cfn

    def _pipeline_arn(self, name: str) -> str:
        return self.format_arn(service="sagemaker", resource="pipeline", resource_name=name.lower())

    def _starter_role(self, construct_id: str, service: str, pipeline_arn: str) -> iam.Role:
        role = service_role(self, construct_id, service, "Starts one SageMaker Pipeline")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn],
        ))
        acknowledge_inline_policy(role, "One statement: start this one pipeline; attached to this one role.")
        return role

    def _schedule(self, pipeline: TrainingPipelineConfig, name: str) -> None:
        arn = self._pipeline_arn(name)
        role = self._starter_role(f"{pascal(pipeline.name)}ScheduleRole", "scheduler.amazonaws.com", arn)
        scheduler.CfnSchedule(
            self, f"{pascal(pipeline.name)}Schedule",
            name=f"{name}-training",
            description=f"Retrains {pipeline.model_package_group} on schedule",
            schedule_expression=pipeline.schedule,
            schedule_expression_timezone="UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            kms_key_arn=self.foundation.key.key_arn,
            target=scheduler.CfnSchedule.TargetProperty(
                arn=arn,
                role_arn=role.role_arn,
                sage_maker_pipeline_parameters=scheduler.CfnSchedule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[]
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=3),
            ),
        )

    def _start_on_new_data(self, pipeline: TrainingPipelineConfig, name: str) -> None:
        trigger = pipeline.new_data_trigger
        arn = self._pipeline_arn(name)
        role = self._starter_role(f"{pascal(pipeline.name)}NewDataRole", "events.amazonaws.com", arn)
        bucket = self.raw_data_bucket
        events.CfnRule(
            self, f"{pascal(pipeline.name)}NewDataRule",
            description=f"New data under {trigger.prefix} starts {name}",
            event_pattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": [{"wildcard": f"{trigger.prefix}*{trigger.suffix}"}]},
                },
            },
            targets=[events.CfnRule.TargetProperty(
                id="StartPipeline",
                arn=arn,
                role_arn=role.role_arn,
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(
                        name="InputDataUri", value=bucket.s3_url_for_object(trigger.prefix.rstrip("/")),
                    )]
                ),
            )],
        )

