"""The platform's API: inference with sticky A/B routing, experiments, and the controller moving traffic.

One REST API per environment (``constructs.rest_api``):

- ``POST /v1/endpoints/{endpoint}/invocations`` and ``GET /v1/experiments/{endpoint}``: the
  inference Lambda (``handlers.inference_api``), over the routes of ``ServingConfig.routes()``;
- per route: an EventBridge Scheduler schedule running the controller Lambda
  (``handlers.experiment_controller``) every ``interval_minutes``; routes without a ``controller``
  get a fixed split, whose runs still record the deployed model packages and start new rounds.

The tables (``constructs.experiment_tables``) are shared with the feedback API. SageMaker endpoint
names are deterministic (``<prefix>-<endpoint>``), so nothing here references the serving stack.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..compliance import KMS_GRANT_ACTIONS, acknowledge, acknowledge_wildcards
from ..config import PlatformConfig
from ..config.models import Route
from .. import function_settings
from ..api_routes import HANDLERS, ROUTES, ApiRoute
from ..function_settings import ApiResources, controller_of
from ..constructs.experiment_tables import ExperimentTables, ExperimentTablesProps
from ..constructs.ground_truth_stream import GroundTruthStream, GroundTruthStreamProps
from ..constructs.naming import EnvironmentNames, pascal
from ..constructs.roles import scheduler_invoke_role
from ..constructs.semantic_search import SemanticSearch, SemanticSearchProps
from ..constructs.platform_function import PlatformFunction
from ..constructs.rest_api import PlatformRestApi, PlatformRestApiProps, caller_policy
from .foundation import FoundationStack, removal_policy_of

API_GATEWAY_TIMEOUT = Duration.seconds(28)  # API Gateway stops waiting for the integration at 29 s
CONTROLLER_TIMEOUT = Duration.minutes(1)
REPLAY_TIMEOUT = Duration.minutes(2)
REPLAY_ATTEMPTS = 5  # receives of a dead letter before it is parked for a human
# ApiRoute.object_body: API Gateway validates only that shape; the handler validates the rest.
OBJECT_BODY_SCHEMA = apigateway.JsonSchema(
    schema=apigateway.JsonSchemaVersion.DRAFT4, type=apigateway.JsonSchemaType.OBJECT,
    min_properties=1,
)


class ApiStack(Stack):
    """The REST API, its Lambda handlers, the experiment tables and the controller schedules."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 foundation: FoundationStack, smoke_test_account: str | None = None, **kwargs) -> None:
        """``smoke_test_account``: the delivery pipeline's account, whose smoke tests may assume
        ``<prefix>-api-smoke-test`` to call this API."""
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.names = EnvironmentNames(config.account, config.region, config.name_prefix)
        self.routes = config.serving.routes()
        api_config = config.serving.api
        removal = removal_policy_of(config)
        self.tables = ExperimentTables(self, "Tables", ExperimentTablesProps(key=foundation.key, removal_policy=removal))
        self.subject_hash_key = self._subject_hash_key()
        self.rest_api = PlatformRestApi(self, "RestApi", PlatformRestApiProps(
            api_name=f"{config.name_prefix}-api",
            description=f"MLOps platform API ({config.environment}): inference, experiments, feedback",
            stage_name=api_config.stage_name,
            authorization=api_config.authorization,
            rate_limit=api_config.rate_limit, burst_limit=api_config.burst_limit, daily_quota=api_config.daily_quota,
            key=foundation.key, log_retention_days=config.log_retention_days, removal_policy=removal,
        ))
        self.notifications = sns.Topic.from_topic_arn(self, "Notifications", self._topic_arn)
        self.ground_truth = GroundTruthStream(self, "GroundTruth", GroundTruthStreamProps(
            stream_name=f"{config.name_prefix}-ground-truth",
            bucket=foundation.import_bucket(self, "feedback"),
            key=foundation.key, log_retention_days=config.log_retention_days, removal_policy=removal,
        ))
        self.feedback_dead_letters, self.feedback_parked = self._feedback_dead_letter_queues()
        self.resources = ApiResources(
            predictions_table=self.tables.predictions.table_name,
            statistics_table=self.tables.statistics.table_name,
            state_table=self.tables.state.table_name,
            feedback_table=self.tables.feedback.table_name,
            ground_truth_stream=self.ground_truth.stream.delivery_stream_name,
            dead_letter_queue_url=self.feedback_dead_letters.queue_url,
            subject_hash_secret=self.subject_hash_key.secret_arn,
            notification_topic_arn=self._topic_arn,
            smoke_test_role=self.smoke_test_role_name(config),
        )
        self.inference = self._inference_function()
        self.feedback = self._feedback_function()
        self.feedback_replay = self._feedback_replay_function()
        self.alarms = self._feedback_alarms()
        self.search = self._semantic_search() if config.search.indexes else None
        self.routed = self._route({"inference": self.inference, "feedback": self.feedback,
                                   **({"search": self.search.search} if self.search else {})})
        self.controller = self._controller_function()
        self.schedule_role = scheduler_invoke_role(self, "ControllerScheduleRole", self.controller.function,
                                                   "EventBridge Scheduler runs the experiment controller")
        self.schedules = {route.name: self._schedule(route) for route in self.routes}
        if api_config.authorization == "iam":
            self.caller_policy = caller_policy(self, "CallerPolicy", self.rest_api, f"{config.name_prefix}-api-caller")
            acknowledge_wildcards(self.caller_policy, [self._caller_finding()],
                                  "Callers of the platform may call every route of its API stage.")
            CfnOutput(self, "CallerPolicyArn", value=self.caller_policy.managed_policy_arn,
                      description="Attach to the roles that call the API (execute-api:Invoke)")
            if smoke_test_account:
                self.smoke_test_role = iam.Role(
                    self, "SmokeTestRole",
                    role_name=self.smoke_test_role_name(config),
                    assumed_by=iam.AccountPrincipal(smoke_test_account),
                    description="Assumed by the delivery pipeline's smoke tests to call this API",
                    managed_policies=[self.caller_policy],
                    max_session_duration=Duration.hours(1),
                )
        self.api_url_output = CfnOutput(self, "ApiUrl", value=self.rest_api.api.url,
                                        description="Base URL of the platform API")

    # --- names and configuration ----------------------------------------------------------
    @staticmethod
    def smoke_test_role_name(config: PlatformConfig) -> str:
        return f"{config.name_prefix}-api-smoke-test"

    def _arn(self, service: str, resource: str) -> str:
        return self.names.arn(service, resource)

    def endpoint_name(self, endpoint: str) -> str:
        return self.names.endpoint_name(endpoint)

    @property
    def _topic_arn(self) -> str:
        return self.names.notifications_topic_arn

    def _endpoint_arns(self, routes: tuple[Route, ...]) -> list[str]:
        names = sorted({self.endpoint_name(arm.endpoint) for route in routes for arm in route.arms})
        return [self._arn("sagemaker", f"endpoint/{name}") for name in names]

    def _caller_finding(self) -> str:
        api_id = f"<{self.get_logical_id(self.rest_api.api.node.default_child)}>"
        return (f"Resource::arn:<AWS::Partition>:execute-api:{self.config.region}:{self.config.account}:{api_id}/"
                f"{self.config.serving.api.stage_name}/*/*")

    def _subject_hash_key(self) -> secretsmanager.Secret:
        """The HMAC key of stored subject hashes (inference and feedback APIs), generated at deploy time.

        Not rotated: a new key would make every stored hash unjoinable with new ones."""
        secret = secretsmanager.Secret(
            self, "SubjectHashKey",
            secret_name=f"{self.config.name_prefix}/subject-hash-key",
            description="HMAC key of the subject-id hashes stored with predictions and feedback",
            encryption_key=self.foundation.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
            removal_policy=removal_policy_of(self.config),
        )
        for rule in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            acknowledge(secret, rule, "A pseudonymisation key, not a credential: rotating it would make stored "
                                      "subject hashes unjoinable with new ones.")
        return secret

    def _grant_subject_hash_key(self, role: iam.IRole) -> None:
        """Read the key once at cold start (Powertools parameters). In the role's policy, not with
        ``Secret.grant_read``: that also edits the key's policy in the Foundation stack, a cycle."""
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadTheSubjectHashKey", actions=["secretsmanager:GetSecretValue"],
            resources=[self.subject_hash_key.secret_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="DecryptTheSubjectHashKey", actions=["kms:Decrypt"], resources=[self.foundation.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}}))

    def _route(self, functions: dict[str, PlatformFunction]) -> list[ApiRoute]:
        """Every route of ``api_routes.ROUTES`` whose function this environment deploys."""
        routed = [route for route in ROUTES if route.function in functions]
        for route in routed:
            self.rest_api.route(
                route.path.lstrip("/"), route.method, functions[route.function].function,
                path_parameters=route.parameters,
                **({"body_schema": OBJECT_BODY_SCHEMA, "model_name": f"{pascal(route.function)}Body"}
                   if route.object_body else {}),
            )
        return routed

    # --- inference --------------------------------------------------------------------------
    def _inference_function(self) -> PlatformFunction:
        config = self.config
        api = config.serving.api
        tables = self.tables
        function = PlatformFunction(
            self, "Inference",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-inference-api",
                handler=HANDLERS["inference"],
                description="Inference API: sticky A/B routing, InvokeEndpoint, prediction records",
                environment={
                    **function_settings.inference(config, self.resources).to_env(),
                    "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Inference",
                },
                memory_mb=api.inference_memory_mb,
                timeout=API_GATEWAY_TIMEOUT,
                reserved_concurrency=api.inference_reserved_concurrency,
            ),
        )
        role = function.role
        tables.predictions.grant_write_data(role)
        self._grant_subject_hash_key(role)
        tables.statistics.grant_read_write_data(role)  # GET /v1/experiments reads, invocations ADD
        tables.state.grant_read_data(role)
        endpoints = self._endpoint_arns(self.routes)
        if endpoints:
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="InvokeThisEnvironmentsEndpoints", actions=["sagemaker:InvokeEndpoint"], resources=endpoints))
            # A deployment the controller has not recorded yet is served as the new round at once.
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="SeeNewDeployments", actions=["sagemaker:DescribeEndpoint"], resources=endpoints))
            deployed = self._grant_find_model_packages(role, "FindTheNewDeploymentsPackages")
        else:
            deployed = []
        groups = sorted({route.config.features.feature_group for route in self.routes if route.config.features})
        if groups:
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="ReadOnlineFeatures", actions=["sagemaker:GetRecord"],
                resources=[self._arn("sagemaker", f"feature-group/{config.name_prefix}-{g}") for g in groups],
            ))
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"), [f"Resource::{arn}" for arn in deployed] + list(KMS_GRANT_ACTIONS),
            "Endpoint configs and models carry deployer-made names under this environment's prefix; KMS "
            "data-key actions come from the table grants on the environment's key.")
        return function

    def _grant_find_model_packages(self, role: iam.IRole, sid: str) -> list[str]:
        """Read the deployer's endpoint configs and models (``model_runtime.deployed_packages``: the
        package behind each arm); the ARN patterns granted."""
        deployed = [self._arn("sagemaker", f"{kind}/{self.config.name_prefix}-*") for kind in ("endpoint-config", "model")]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid=sid, actions=["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel", "sagemaker:ListTags"],
            resources=deployed,
        ))
        return deployed

    # --- controller -------------------------------------------------------------------------
    def _controller_function(self) -> PlatformFunction:
        config = self.config
        tables = self.tables
        function = PlatformFunction(
            self, "ExperimentController",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-experiment-controller",
                handler="mlops_runtime.handlers.experiment_controller.handler",
                description="Moves experiment traffic by bandit strategy, with guardrails and a stopping rule",
                environment={
                    **function_settings.controller(
                        config, self.resources, function_settings.controller_rules(config)).to_env(),
                    "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Experiments",
                },
                timeout=CONTROLLER_TIMEOUT,
                reserved_concurrency=2,  # runs are per experiment and a version check settles races
            ),
        )
        role = function.role
        tables.statistics.grant_read_data(role)
        tables.state.grant_read_write_data(role)
        prefix = config.name_prefix
        endpoints = self._endpoint_arns(self.routes)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadAndReweighExperimentEndpoints",
            actions=["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
            resources=endpoints,
        ))
        deployed = self._grant_find_model_packages(role, "FindTheWinnersModelPackage")
        groups = sorted({endpoint.model_package_group for endpoint in config.serving.endpoints})
        packages = [self._arn("sagemaker", f"model-package/{prefix}-{group}/*") for group in groups]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="NoteTheDecisionOnBothPackages", actions=["sagemaker:UpdateModelPackage"], resources=packages,
        ))
        role.add_to_principal_policy(iam.PolicyStatement(  # the Serving stack's rule hands it to the deployer
            sid="HandTheDecisionToTheDeployer", actions=["events:PutEvents"],
            resources=[self._arn("events", "event-bus/default")],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="AnnounceDecisions", actions=["sns:Publish"], resources=[self._topic_arn]))
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [f"Resource::{arn}" for arn in (*deployed, *packages)] + list(KMS_GRANT_ACTIONS),
            "Endpoint configs and models carry deployer-made names under this environment's prefix; package "
            "versions are numbered by SageMaker within this environment's groups; KMS data-key actions come "
            "from the table grants on the environment's key.",
        )
        return function

    def _schedule(self, route: Route) -> scheduler.CfnSchedule:
        controller = controller_of(route)
        role = self.schedule_role
        minutes = controller.interval_minutes
        return scheduler.CfnSchedule(
            self, f"{pascal(route.name)}ControllerSchedule",
            name=f"{self.config.name_prefix}-{route.name}-controller"[:64],
            description=f"Experiment controller for {route.name}: "
                        + (controller.strategy if route.config.controller else "bookkeeping (fixed split)"),
            schedule_expression=f"rate({minutes} minute{'s' if minutes > 1 else ''})",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.controller.function.function_arn,
                role_arn=role.role_arn,
                input=json.dumps({"experiment": route.name}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=0,  # the next run retries with fresh statistics
                ),
            ),
        )

    # --- semantic search ------------------------------------------------------------------------
    def _semantic_search(self) -> SemanticSearch:
        config = self.config
        return SemanticSearch(self, "Search", SemanticSearchProps(
            names=self.names,
            indexes=config.search.indexes,
            key=self.foundation.key,
            production=config.is_production,
            raw_data_bucket=self.foundation.import_bucket(self, "raw-data"),
            artifacts_bucket=self.foundation.import_bucket(self, "artifacts"),
            job_role=self.foundation.sagemaker_role,
            topic=self.notifications,
            function_props=self.foundation.function_props,
            settings=lambda resources: function_settings.search_json(config, resources),
        ))

    # --- feedback -----------------------------------------------------------------------------
    def _feedback_dead_letter_queues(self) -> tuple[sqs.Queue, sqs.Queue]:
        """Dead letters of the feedback API (replayed automatically), and the parking queue where a
        letter lands after ``REPLAY_ATTEMPTS`` failed replays (replayed by an operator)."""
        removal = removal_policy_of(self.config)
        parked = sqs.Queue(
            self, "FeedbackParked",
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.foundation.key,
            enforce_ssl=True, retention_period=Duration.days(14), removal_policy=removal,
        )
        acknowledge(parked, "AwsSolutions-SQS3", "The last stop of feedback dead letters: kept for an operator's replay.")
        dead_letters = sqs.Queue(
            self, "FeedbackDeadLetters",
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.foundation.key,
            enforce_ssl=True, retention_period=Duration.days(14), removal_policy=removal,
            visibility_timeout=Duration.seconds(REPLAY_TIMEOUT.to_seconds() * 3),  # also the back-off between replays
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=REPLAY_ATTEMPTS, queue=parked),
        )
        return dead_letters, parked

    def _feedback_environment(self, *, replay: bool) -> dict[str, str]:
        return {
            **function_settings.feedback(self.config, self.resources, replay=replay).to_env(),
            "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Feedback",
        }

    def _grant_feedback_writes(self, role: iam.IRole) -> None:
        tables = self.tables
        tables.predictions.grant_read_data(role)
        tables.feedback.grant_read_write_data(role)
        tables.statistics.grant_write_data(role)
        self.ground_truth.stream.grant_put_records(role)

    def _feedback_function(self) -> PlatformFunction:
        config = self.config
        function = PlatformFunction(
            self, "FeedbackApi",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-feedback-api",
                handler=HANDLERS["feedback"],
                description="Feedback API: joins ground truth to predictions, credits the serving arm",
                environment=self._feedback_environment(replay=False),
                memory_mb=512,
                timeout=API_GATEWAY_TIMEOUT,  # the handler stops retrying 6 s before its deadline
                reserved_concurrency=config.serving.api.inference_reserved_concurrency,
            ),
        )
        self._grant_feedback_writes(function.role)
        self._grant_subject_hash_key(function.role)
        self.feedback_dead_letters.grant_send_messages(function.role)
        acknowledge_wildcards(function.role.node.find_child("DefaultPolicy"), KMS_GRANT_ACTIONS,
                              "KMS data-key actions come from the table, stream and queue grants on the key.")
        return function

    def _feedback_replay_function(self) -> PlatformFunction:
        config = self.config
        function = PlatformFunction(
            self, "FeedbackReplay",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-feedback-replay",
                handler="mlops_runtime.handlers.feedback_replay.handler",
                description="Replays dead-lettered feedback (idempotent); failures go back to the queue",
                environment=self._feedback_environment(replay=True),
                memory_mb=512,
                timeout=REPLAY_TIMEOUT,
                reserved_concurrency=2,  # a slow, steady drain: the downstream was the problem
            ),
        )
        self._grant_feedback_writes(function.role)
        function.function.add_event_source(event_sources.SqsEventSource(
            self.feedback_dead_letters, batch_size=10, max_batching_window=Duration.seconds(30),
            report_batch_item_failures=True, max_concurrency=2,
        ))
        acknowledge_wildcards(function.role.node.find_child("DefaultPolicy"), KMS_GRANT_ACTIONS,
                              "KMS data-key actions come from the table, stream and queue grants on the key.")
        return function

    def _feedback_alarms(self) -> list[cloudwatch.Alarm]:
        """Nothing may be lost silently: any dead letter, any parked letter, and a 5xx of the API."""
        prefix = self.config.name_prefix
        alarms = [
            cloudwatch.Alarm(
                self, "FeedbackDeadLetteredAlarm",
                alarm_name=f"{prefix}-feedback-dead-lettered",
                alarm_description="Feedback could not be stored or delivered and was dead-lettered "
                                  "(replayed automatically; see docs/feedback-api.md)",
                metric=self.feedback_dead_letters.metric_number_of_messages_sent(
                    period=Duration.minutes(5), statistic="Sum"),
                threshold=0, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self, "FeedbackParkedAlarm",
                alarm_name=f"{prefix}-feedback-parked",
                alarm_description=f"Feedback failed {REPLAY_ATTEMPTS} replays and waits for an operator: "
                                  "python -m mlops_runtime.handlers.feedback_replay --queue-url <parked queue>",
                metric=self.feedback_parked.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5), statistic="Maximum"),
                threshold=0, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self, "ApiServerErrorsAlarm",
                alarm_name=f"{prefix}-api-5xx",
                alarm_description="The platform API answered with 5xx errors",
                metric=self.rest_api.api.metric_server_error(period=Duration.minutes(5), statistic="Sum"),
                threshold=5, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.notifications))
        return alarms
