"""Monitoring: scheduled drift and quality jobs, alarms, closed-loop retraining, the dashboard.

Per endpoint with ``monitoring`` in config:

- a SageMaker Pipeline ``<endpoint>-monitoring`` with one processing step running
  ``monitoring/monitor.py`` in the scikit-learn image (``pipelines.monitoring_definition``);
- an EventBridge Scheduler schedule invoking the monitoring launcher Lambda
  (``handlers.monitoring_launcher``), which picks the window's capture and ground-truth files and
  the deployed champion's training baseline, and starts the pipeline;
- alarms on the job's decisions (``MlopsPlatform/Monitoring``, metric names from
  ``monitoring/metrics.py``): drift decided beyond the minimum effect and a quality metric shown
  worse than its target, both at the endpoint's page budget; and on failed executions of the
  monitoring pipeline;
- with ``retraining.enabled``: the drift and quality alarms start the training pipelines of the
  endpoint's model package group through the retraining trigger Lambda, with a cooldown.

Per environment: failed-execution alarms on every training pipeline, and the dashboard. All alarms
notify the environment's topic. Names are deterministic, so nothing here references other stacks
except the foundation (key, role, buckets).
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from constructs import Construct
from monitoring.metrics import ALARMS as MONITORING_ALARMS

from .. import function_settings
from ..compliance import (
    GRANT_READ_ACTIONS, KMS_GRANT_ACTIONS, acknowledge_wildcards, objects_under,
)
from ..config import PlatformConfig
from ..config.models import EndpointConfig
from ..constructs.dashboard import MONITORING_NAMESPACE, MonitoredEndpoint, PlatformDashboard, PlatformDashboardProps
from ..constructs.ground_truth_stream import GROUND_TRUTH_PREFIX
from ..constructs.naming import EnvironmentNames, pascal
from ..constructs.platform_function import PlatformFunction
from ..constructs.roles import processing_pipeline_role, read_code_assets, scheduler_invoke_role
from ..paths import REPO_ROOT
from ..pipelines.images import DEFAULT_SKLEARN
from ..pipelines.monitoring_definition import MonitoringPipelineSpec, build_definition, sklearn_image_uri
from ..function_settings import CAPTURE_PREFIX  # the deployer's data-capture destination
from .foundation import PIPELINE_OUTPUT_PREFIX, FoundationStack

MONITORING_PREFIX = "monitoring"
RETRAINING_PREFIX = "retraining"  # closed-loop retraining's production.csv files, in the artifacts bucket
SKLEARN_VERSION = DEFAULT_SKLEARN  # Python 3.12, numpy and scipy: everything the job imports
PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.names = EnvironmentNames(config.account, config.region, config.name_prefix)
        self.topic = sns.Topic.from_topic_arn(self, "Notifications", self.names.notifications_topic_arn)
        self.monitored = [e for e in config.serving.endpoints if e.monitoring is not None]
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.pipelines: dict[str, sagemaker.CfnPipeline] = {}
        if self.monitored:
            self.artifacts = foundation.import_bucket(self, "artifacts")
            self.capture = foundation.import_bucket(self, "data-capture")
            self.feedback = foundation.import_bucket(self, "feedback")
            self.code = s3_assets.Asset(self, "MonitoringCode", path=str(REPO_ROOT / "monitoring"),
                                        exclude=["README.md", "__pycache__", "*.pyc", "__init__.py"])
            self._job_access()
            self.pipeline_role = self._pipeline_role()
            for endpoint in self.monitored:
                self.pipelines[endpoint.name] = self._pipeline(endpoint)
            self.launcher = self._launcher()
            self.schedule_role = scheduler_invoke_role(self, "MonitoringScheduleRole", self.launcher.function,
                                                       "EventBridge Scheduler runs the monitoring launcher")
            for endpoint in self.monitored:
                self._schedule(endpoint)
                self._monitoring_alarms(endpoint)
            if any(e.monitoring.retraining.enabled for e in self.monitored):
                self.retraining = self._retraining()
        for pipeline in config.training.pipelines:
            self._failure_alarm(f"{config.name_prefix}-{pipeline.name}", f"{pascal(pipeline.name)}Training")
        if config.search.indexes:  # the bulk indexing job (constructs/semantic_search.py)
            self._failure_alarm(f"{config.name_prefix}-search-bulk-index", "SearchBulkIndex")
        for alarm in self.alarms.values():
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        self.dashboard = self._dashboard()

    # --- names --------------------------------------------------------------------------------
    def endpoint_name(self, endpoint: EndpointConfig) -> str:
        return self.names.endpoint_name(endpoint.name)

    def pipeline_name(self, endpoint: EndpointConfig) -> str:
        return function_settings.monitoring_pipeline_name(self.config, endpoint)

    def _pipeline_arn(self, name: str) -> str:
        return self.names.arn("sagemaker", f"pipeline/{name.lower()}")

    # --- the job ------------------------------------------------------------------------------
    def _job_access(self) -> None:
        """What the monitoring job (the SageMaker execution role) needs beyond the foundation's
        grants: the code asset, and publishing to its own metric namespace."""
        policy = iam.ManagedPolicy(self, "MonitoringJobAccess", roles=[self.foundation.sagemaker_role])
        policy.add_statements(
            *read_code_assets("ReadMonitoringCode", (self.code,)),
            iam.PolicyStatement(sid="PublishMonitoringMetrics", actions=["cloudwatch:PutMetricData"],
                                resources=["*"],
                                conditions={"StringEquals": {"cloudwatch:namespace": MONITORING_NAMESPACE}}),
        )
        acknowledge_wildcards(policy, ["Resource::*"],
                              "PutMetricData has no resource-level permissions; limited to the monitoring "
                              "namespace by condition.")

    def _pipeline_role(self) -> iam.Role:
        return processing_pipeline_role(
            self, "MonitoringPipelineRole", "Runs this environment's monitoring pipelines",
            jobs_arn=self.names.arn("sagemaker", "processing-job/pipelines-*"), job_role=self.foundation.sagemaker_role)

    def _pipeline(self, endpoint: EndpointConfig) -> sagemaker.CfnPipeline:
        monitoring = endpoint.monitoring
        network = self.foundation.network
        name = self.pipeline_name(endpoint)
        spec = MonitoringPipelineSpec(
            endpoint_name=self.endpoint_name(endpoint),
            region=self.config.region,
            role_arn=self.foundation.sagemaker_role.role_arn,
            image_uri=sklearn_image_uri(self.config.region, SKLEARN_VERSION),
            code_uri=self.code.s3_object_url,
            output_uri=self.artifacts.s3_url_for_object(f"{MONITORING_PREFIX}/{self.endpoint_name(endpoint)}/reports"),
            placeholder_uri=self.artifacts.s3_url_for_object(f"{MONITORING_PREFIX}/unset"),
            kms_key_arn=self.foundation.key.key_arn,
            problem_type=monitoring.problem_type,
            thresholds=dict(monitoring.thresholds),
            min_labels=monitoring.min_labels,
            drift_policy=monitoring.job_policy,
            carry_uri=self.artifacts.s3_url_for_object(
                f"{MONITORING_PREFIX}/{self.endpoint_name(endpoint)}/state/drift-carry.json"),
            instance_type=monitoring.instance_type,
            max_runtime_s=monitoring.max_runtime_minutes * 60,
            instance_count=monitoring.instance_count,
            text_features=monitoring.text_features,
            subnet_ids=tuple(s.subnet_id for s in network.vpc.isolated_subnets) if network else (),
            security_group_ids=(network.workload_security_group.security_group_id,) if network else (),
            tags=self.config.resource_tags,
        )
        pipeline = sagemaker.CfnPipeline(
            self, f"{pascal(endpoint.name)}MonitoringPipeline",
            pipeline_name=name,
            pipeline_description=f"Drift and quality of {spec.endpoint_name} over one capture window",
            pipeline_definition={"PipelineDefinitionBody": self.to_json_string(build_definition(spec))},
            role_arn=self.pipeline_role.role_arn,
        )
        pipeline.node.add_dependency(self.pipeline_role)
        return pipeline

    # --- the launcher -------------------------------------------------------------------------
    def resources(self) -> function_settings.MonitoringResources:
        """The buckets and the layout the monitoring functions' settings name (and their grants cover)."""
        return function_settings.MonitoringResources(
            capture_bucket=self.capture.bucket_name, feedback_bucket=self.feedback.bucket_name,
            artifacts_bucket=self.artifacts.bucket_name, notification_topic_arn=self.names.notifications_topic_arn,
            capture_root=CAPTURE_PREFIX, ground_truth_prefix=GROUND_TRUTH_PREFIX, monitoring_root=MONITORING_PREFIX,
            retraining_root=RETRAINING_PREFIX)

    def _launcher(self) -> PlatformFunction:
        config = self.config
        prefix = config.name_prefix
        function = PlatformFunction(
            self, "MonitoringLauncher",
            self.foundation.function_props(
                function_name=f"{prefix}-monitoring-launcher",
                handler="mlops_runtime.handlers.monitoring_launcher.handler",
                description="Starts an endpoint's monitoring pipeline over the last capture window",
                environment={
                    **function_settings.monitoring_launcher(self.config, self.resources()).to_env(),
                    "POWERTOOLS_METRICS_NAMESPACE": MONITORING_NAMESPACE,
                },
                timeout=Duration.minutes(2),
                reserved_concurrency=2,
            ),
        )
        role = function.role
        endpoints = [self.names.arn("sagemaker", f"endpoint/{self.endpoint_name(e)}") for e in self.monitored]
        deployed = [self.names.arn("sagemaker", f"{kind}/{prefix}-*") for kind in ("endpoint-config", "model")]
        groups = sorted({e.model_package_group for e in self.monitored})
        packages = [self.names.arn("sagemaker", f"model-package/{prefix}-{g}/*") for g in groups]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="FindTheChampionsBaseline", actions=["sagemaker:DescribeEndpoint"], resources=endpoints))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="FindTheChampionsPackage",
            actions=["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel", "sagemaker:ListTags"],
            resources=deployed))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadThePackagesBaseline", actions=["sagemaker:DescribeModelPackage"], resources=packages))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="StartMonitoringPipelines", actions=["sagemaker:StartPipelineExecution"],
            resources=[self._pipeline_arn(self.pipeline_name(e)) for e in self.monitored]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReportEmptyWindows", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": MONITORING_NAMESPACE}}))
        self.capture.grant_read(role, f"{CAPTURE_PREFIX}/*")
        self.feedback.grant_read(role, f"{GROUND_TRUTH_PREFIX}*")
        self.artifacts.grant_put(role, f"{MONITORING_PREFIX}/*")
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [*(f"Resource::{arn}" for arn in (*deployed, *packages)), *GRANT_READ_ACTIONS, *KMS_GRANT_ACTIONS,
             "Action::s3:Abort*",
             objects_under(self.capture.bucket_name, CAPTURE_PREFIX + "/"),
             objects_under(self.feedback.bucket_name, GROUND_TRUTH_PREFIX),
             objects_under(self.artifacts.bucket_name, MONITORING_PREFIX + "/")],
            "Lists and reads capture and ground-truth files under their prefixes, writes manifests under "
            "monitoring/; endpoint configs, models and package versions carry run-time names under this "
            "environment's prefix and groups; PutMetricData is limited to the monitoring namespace.",
        )
        return function

    def _schedule(self, endpoint: EndpointConfig) -> scheduler.CfnSchedule:
        return scheduler.CfnSchedule(
            self, f"{pascal(endpoint.name)}MonitoringSchedule",
            name=f"{self.endpoint_name(endpoint)}-monitoring"[:64],
            description=f"Monitors {self.endpoint_name(endpoint)} over the last {endpoint.monitoring.window_hours} h",
            schedule_expression=endpoint.monitoring.schedule,
            schedule_expression_timezone="UTC",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.launcher.function.function_arn,
                role_arn=self.schedule_role.role_arn,
                input=json.dumps({"endpoint": self.endpoint_name(endpoint)}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2),
            ),
        )

    # --- alarms -------------------------------------------------------------------------------
    def drift_alarm_name(self, endpoint: EndpointConfig) -> str:
        return function_settings.drift_alarm_name(self.config, endpoint)

    def quality_alarm_name(self, endpoint: EndpointConfig) -> str:
        return function_settings.quality_alarm_name(self.config, endpoint)

    def _monitoring_alarms(self, endpoint: EndpointConfig) -> None:
        monitoring = endpoint.monitoring
        name = self.endpoint_name(endpoint)
        period = Duration.hours(monitoring.window_hours)
        dims = {"Endpoint": name, "Variant": "_all"}

        def metric(metric_name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=MONITORING_NAMESPACE, metric_name=metric_name,
                                     dimensions_map=dims, statistic=statistic, period=period)

        drift = monitoring.drift
        budget = f"{drift.page_budget.false_pages:g} false page(s) per {drift.page_budget.per_days:g} days"
        self.alarms[self.drift_alarm_name(endpoint)] = cloudwatch.Alarm(
            self, f"{pascal(endpoint.name)}DriftAlarm",
            alarm_name=self.drift_alarm_name(endpoint),
            alarm_description=f"{name}: drift beyond the minimum effect {drift.min_effect:g} (PSI units) decided by "
                              f"the monitoring job's tests at {budget} (report: s3://<artifacts>/monitoring/"
                              "<endpoint>/reports/)",
            metric=metric(MONITORING_ALARMS["drift"], "Maximum"),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=drift.persistence_windows, datapoints_to_alarm=drift.persistence_windows,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if monitoring.quality_targets:
            targets = ", ".join(f"{key} {value:g}" for key, value in monitoring.quality_targets.items())
            self.alarms[self.quality_alarm_name(endpoint)] = cloudwatch.Alarm(
                self, f"{pascal(endpoint.name)}QualityAlarm",
                alarm_name=self.quality_alarm_name(endpoint),
                alarm_description=f"{name}: a quality test on production feedback shows a metric worse than its "
                                  f"target ({targets}), at {budget}",
                metric=metric(MONITORING_ALARMS["quality"], "Maximum"),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        self._failure_alarm(self.pipeline_name(endpoint), f"{pascal(endpoint.name)}Monitoring")

    def _failure_alarm(self, pipeline_name: str, construct_prefix: str) -> None:
        name = f"{pipeline_name}-failed"
        self.alarms[name] = cloudwatch.Alarm(
            self, f"{construct_prefix}PipelineFailedAlarm",
            alarm_name=name,
            alarm_description=f"An execution of the SageMaker pipeline {pipeline_name} failed",
            metric=cloudwatch.Metric(namespace=PIPELINE_NAMESPACE, metric_name="ExecutionFailed",
                                     dimensions_map={"PipelineName": pipeline_name}, statistic="Sum",
                                     period=Duration.hours(1)),
            threshold=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    # --- closed loop --------------------------------------------------------------------------
    def _retraining(self) -> PlatformFunction | None:
        config = self.config
        settings = function_settings.retraining_trigger(config, self.resources())
        if not settings.retraining:
            return None
        function = PlatformFunction(
            self, "RetrainingTrigger",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-retraining-trigger",
                handler="mlops_runtime.handlers.retraining_trigger.handler",
                description="Starts training pipelines when a drift or quality alarm fires, with a cooldown",
                environment={**settings.to_env(), "POWERTOOLS_METRICS_NAMESPACE": MONITORING_NAMESPACE},
                # joining weeks of capture with their labels reads every file once (docs/monitoring-launcher.md)
                timeout=Duration.minutes(10),
                memory_mb=1024,
                reserved_concurrency=1,  # one decision at a time: the cooldown check is not a lock
            ),
        )
        pipelines = sorted({p for s in settings.retraining.values() for p in s.pipelines})
        sources = [s.production for s in settings.retraining.values() if s.production]
        if sources:
            self._grant_production_data(function, sources)
        function.role.add_to_principal_policy(iam.PolicyStatement(
            sid="RetrainWithinCooldown",
            actions=["sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution"],
            resources=[self._pipeline_arn(p) for p in pipelines],
        ))
        function.role.add_to_principal_policy(iam.PolicyStatement(
            sid="AnnounceRetraining", actions=["sns:Publish"], resources=[self.names.notifications_topic_arn]))
        events.Rule(
            self, "RetrainOnAlarm",
            description="A drift or quality alarm entering ALARM starts retraining (after the cooldown)",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"], detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": sorted(settings.retraining), "state": {"value": ["ALARM"]}},
            ),
            targets=[targets.LambdaFunction(function.function, retry_attempts=2,
                                            dead_letter_queue=function.dead_letter_queue)],
        )
        return function

    def _grant_production_data(self, function: PlatformFunction, sources: list) -> None:
        """Closed-loop retraining: the group's newest package and its baseline (feature names), the
        capture and ground-truth files, and the production.csv it writes."""
        role = function.role
        groups = sorted({s.model_package_group for s in sources})
        packages = [self.names.arn("sagemaker", f"model-package/{g}/*") for g in groups]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="FindTheLastTraining", actions=["sagemaker:ListModelPackages"], resources=["*"]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadTheNewestPackage", actions=["sagemaker:DescribeModelPackage"], resources=packages))
        self.capture.grant_read(role, f"{CAPTURE_PREFIX}/*")
        self.feedback.grant_read(role, f"{GROUND_TRUTH_PREFIX}*")
        self.artifacts.grant_read(role, f"{PIPELINE_OUTPUT_PREFIX}/*")  # the training baseline
        self.artifacts.grant_put(role, f"{RETRAINING_PREFIX}/*")
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            ["Resource::*", *(f"Resource::{arn}" for arn in packages), *GRANT_READ_ACTIONS, *KMS_GRANT_ACTIONS,
             "Action::s3:Abort*",
             objects_under(self.capture.bucket_name, CAPTURE_PREFIX + "/"),
             objects_under(self.feedback.bucket_name, GROUND_TRUTH_PREFIX),
             objects_under(self.artifacts.bucket_name, PIPELINE_OUTPUT_PREFIX + "/"),
             objects_under(self.artifacts.bucket_name, RETRAINING_PREFIX + "/")],
            "Closed-loop retraining reads capture and ground-truth files and the training baseline under their "
            "prefixes and writes production.csv under retraining/; ListModelPackages has no resource-level "
            "permissions; package versions carry run-time numbers.",
        )

    # --- dashboard ----------------------------------------------------------------------------
    def _dashboard(self) -> PlatformDashboard:
        config = self.config
        prefix = config.name_prefix
        monitored = []
        for endpoint in self.monitored:
            drift = {"MaxDriftEffect": endpoint.monitoring.drift.min_effect}
            monitored.append(MonitoredEndpoint(self.endpoint_name(endpoint), drift, endpoint.monitoring.quality_threshold))
        pipelines = [f"{prefix}-{p.name}" for p in config.training.pipelines]
        pipelines += [self.pipeline_name(e) for e in self.monitored]
        pipelines += [f"{prefix}-search-bulk-index"] if config.search.indexes else []
        return PlatformDashboard(self, "Dashboard", PlatformDashboardProps(
            dashboard_name=f"{prefix}-platform",
            endpoint_names=tuple(self.names.endpoint_name(e.name) for e in config.serving.endpoints),
            experiments={route.name: tuple(arm.arm for arm in route.arms) for route in config.serving.routes()},
            experiments_namespace="MlopsPlatform/Experiments",
            api_name=f"{prefix}-api",
            feedback_service=f"{prefix}-feedback-api",
            feedback_namespace="MlopsPlatform/Feedback",
            monitored=tuple(monitored),
            pipelines=tuple(pipelines),
            search=(f"{prefix}-search-api", f"{prefix}-search-indexer") if config.search.indexes else None,
        ))
