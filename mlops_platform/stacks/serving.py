"""Serving: approval-driven deployment of endpoints, with guardrail alarms and data capture.

Who owns what (see docs/deployment-flow.md): CloudFormation owns this stack's rule, queue,
deployer Lambda, idempotency table and alarms; the deployer owns the SageMaker models, endpoint
configs and endpoints it creates (tagged ``mlops:managed-by``). No endpoint is a CloudFormation
resource, so a later ``cdk deploy`` never reverts a deployment the deployer made.
"""

from __future__ import annotations


from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import custom_resources
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..compliance import KMS_GRANT_ACTIONS, acknowledge, acknowledge_wildcards, logical_id
from ..config import PlatformConfig
from ..config.models import EndpointConfig
from ..constructs.naming import EnvironmentNames, partition_of, pascal
from ..constructs.platform_function import PlatformFunction
from .. import function_settings
from ..function_settings import ASYNC_OUTPUT_PREFIX, CAPTURE_PREFIX, GUARDRAIL_VARIANTS, ServingResources
from ..runtime_tables import promotion_domain
from .foundation import FoundationStack, bucket_name
from ..paths import REPO_ROOT

DEPLOYER_TIMEOUT = Duration.minutes(2)


class ServingStack(Stack):
    """Endpoints of one environment, deployed when a model of their group is approved."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.foundation = foundation
        self.names = EnvironmentNames(config.account, config.region, config.name_prefix)
        endpoints = config.serving.endpoints
        self.alarms: dict[str, list[cloudwatch.Alarm]] = {}
        if not endpoints:
            return
        notifications = sns.Topic.from_topic_arn(self, "Notifications", self._topic_arn)
        self.images = {e.name: self._serving_image(e) for e in endpoints if e.container is not None}
        for endpoint in endpoints:
            self.alarms[endpoint.name] = self._guardrail_alarms(endpoint)
            for alarm in self.alarms[endpoint.name]:
                alarm.add_alarm_action(cloudwatch_actions.SnsAction(notifications))
        self.idempotency_table = self._idempotency_table()
        self.deployer = self._deployer()
        self._grant_execution_role(endpoints)
        self._route_approvals(endpoints)
        self._allow_scaling_suspension(self.deployer)
        self.scaler = self._scaler(endpoints)
        self.teardown = self._teardown()
        for rule in (self.approval_rule, self.decision_rule):  # on destroy: stop deploying, then tear down
            rule.node.add_dependency(self.teardown)

    # --- names ------------------------------------------------------------------------------
    def endpoint_name(self, endpoint: EndpointConfig) -> str:
        return f"{self.config.name_prefix}-{endpoint.name}"

    def _arn(self, service: str, resource: str) -> str:
        return self.names.arn(service, resource)

    @property
    def _execution_role_arn(self) -> str:
        return self.names.execution_role_arn

    @property
    def _topic_arn(self) -> str:
        return self.names.notifications_topic_arn

    # --- custom containers ----------------------------------------------------------------
    def _serving_image(self, endpoint: EndpointConfig) -> tuple[str, str]:
        """(image URI, repository ARN) of an endpoint's custom container.

        ``dockerfile_dir`` is built by ``cdk deploy`` (an image asset: synthesis needs no Docker)
        and pushed to the environment's CDK asset repository.
        """
        container = endpoint.container
        if container.dockerfile_dir:
            asset = ecr_assets.DockerImageAsset(
                self, f"{pascal(endpoint.name)}Image",
                directory=str(REPO_ROOT / container.dockerfile_dir),
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            return asset.image_uri, asset.repository.repository_arn
        registry, _, path = container.image_uri.partition("/")
        account, region = registry.split(".")[0], registry.split(".")[3]
        repository = path.split("@")[0].split(":")[0]
        return container.image_uri, f"arn:{partition_of(region)}:ecr:{region}:{account}:repository/{repository}"

    # --- guardrail alarms -----------------------------------------------------------------
    def _guardrail_alarms(self, endpoint: EndpointConfig) -> list[cloudwatch.Alarm]:
        """Per variant: 5xx error rate and p99 model latency. SageMaker rolls a blue/green update
        back when any of them fires during the bake time."""
        name = self.endpoint_name(endpoint)
        guardrails = endpoint.guardrails
        alarms = []
        for variant in GUARDRAIL_VARIANTS:
            dimensions = {"EndpointName": name, "VariantName": variant}

            def metric(metric_name: str, statistic: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(namespace="AWS/SageMaker", metric_name=metric_name,
                                         dimensions_map=dimensions, statistic=statistic, period=Duration.minutes(1))

            error_rate = cloudwatch.MathExpression(
                expression="IF(invocations > 0, 100 * errors / invocations, 0)",
                using_metrics={"errors": metric("Invocation5XXErrors", "Sum"),
                               "invocations": metric("Invocations", "Sum")},
                label=f"{name} {variant} 5xx %", period=Duration.minutes(1),
            )
            alarms.append(cloudwatch.Alarm(
                self, f"{pascal(endpoint.name)}{pascal(variant)}ErrorRate",
                alarm_name=f"{name}-{variant}-5xx-rate",  # see function_settings.guardrail_alarm_names
                alarm_description=f"5xx error rate of {name}/{variant} above {guardrails.max_5xx_rate_percent}%: "
                                  "rolls back a deployment in progress",
                metric=error_rate, threshold=guardrails.max_5xx_rate_percent,
                evaluation_periods=3, datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ))
            alarms.append(cloudwatch.Alarm(
                self, f"{pascal(endpoint.name)}{pascal(variant)}Latency",
                alarm_name=f"{name}-{variant}-p99-latency",
                alarm_description=f"p99 model latency of {name}/{variant} above {guardrails.max_p99_latency_ms} ms",
                metric=metric("ModelLatency", "p99"),
                threshold=guardrails.max_p99_latency_ms * 1000,  # ModelLatency is in microseconds
                evaluation_periods=3, datapoints_to_alarm=2,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ))
        return alarms

    # --- deployer -------------------------------------------------------------------------
    def _idempotency_table(self) -> dynamodb.Table:
        table = dynamodb.Table(
            self, "DeploymentIdempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.foundation.key,
            time_to_live_attribute="expiration",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.DESTROY,  # 48-hour records of handled events, nothing to keep
        )
        acknowledge(table, "NIST.800.53.R5-DynamoDBInBackupPlan",
                    "Holds only 48-hour idempotency records of handled approval events; PITR covers it.")
        return table

    def _resources(self) -> ServingResources:
        """The deployer's resource names (tokens): its table, the network, the image assets."""
        network = self.foundation.network
        return ServingResources(
            idempotency_table=self.idempotency_table.table_name,
            subnet_ids=tuple(s.subnet_id for s in network.vpc.isolated_subnets) if network else (),
            security_group_ids=(network.workload_security_group.security_group_id,) if network else (),
            images={name: uri for name, (uri, _) in self.images.items()},
        )

    def _deployer(self) -> PlatformFunction:
        config = self.config
        deployer = PlatformFunction(
            self, "Deployer",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-endpoint-deployer",
                handler="mlops_runtime.handlers.deployer.handler",
                description="Deploys approved model packages to their endpoints through the guardrails",
                environment={
                    **function_settings.deployer(config, self._resources()).to_env(),
                    "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Deployments",
                },
                timeout=DEPLOYER_TIMEOUT,
                reserved_concurrency=2,  # approvals are rare; two at once is plenty
            ),
        )
        role = deployer.role
        prefix = config.name_prefix
        groups = sorted({f"{prefix}-{e.model_package_group}" for e in config.serving.endpoints})
        owned = [self._arn("sagemaker", f"{kind}/{prefix}-*") for kind in ("endpoint", "endpoint-config", "model")]
        versions = [self._arn("sagemaker", f"model-package/{g}/*") for g in groups]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ManageEndpointsOfThisEnvironment",
            actions=["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel",
                     "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
                     "sagemaker:UpdateEndpoint", "sagemaker:AddTags", "sagemaker:ListTags"],
            resources=owned,
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadApprovedPackages",
            actions=["sagemaker:DescribeModelPackage", "sagemaker:ListTags"],
            resources=[*versions, *(self._arn("sagemaker", f"model-package-group/{g}") for g in groups)],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="PassExecutionRoleToSageMaker", actions=["iam:PassRole"], resources=[self._execution_role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReportFailures", actions=["sns:Publish"], resources=[self._topic_arn],
        ))
        self.foundation.key.grant(role, "kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey")
        self.idempotency_table.grant_read_write_data(role)
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [f"Resource::{arn}" for arn in (*owned, *versions)] + list(KMS_GRANT_ACTIONS),
            "Endpoints, configs and models carry deployer-made names under this environment's prefix; "
            "package versions are numbered by SageMaker within this environment's groups; KMS data-key "
            "actions come from the grant on the idempotency table's key.",
        )
        return deployer

    def _grant_execution_role(self, endpoints: tuple[EndpointConfig, ...]) -> None:
        """What endpoints need beyond the foundation's grants: write capture and async results."""
        config = self.config
        capture_bucket = bucket_name(config, "data-capture")
        written = [f"arn:{partition_of(config.region)}:s3:::{capture_bucket}/{prefix}/*"
                   for prefix in (CAPTURE_PREFIX, ASYNC_OUTPUT_PREFIX)]
        statements = [
            iam.PolicyStatement(sid="WriteCaptureAndAsyncResults", actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                                resources=written),
        ]
        if self.images:
            statements.append(iam.PolicyStatement(
                sid="PullCustomServingImages",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=sorted({arn for _, arn in self.images.values()}),
            ))
            statements.append(iam.PolicyStatement(
                sid="AuthenticateToEcr", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        if any(getattr(e.variant, "notify", False) for e in endpoints):  # kinds that publish results (async)
            statements.append(iam.PolicyStatement(sid="NotifyAsyncResults", actions=["sns:Publish"],
                                                  resources=[self._topic_arn]))
        policy = iam.ManagedPolicy(self, "EndpointAccess", roles=[self.foundation.sagemaker_role],
                                   statements=statements,
                                   description="Lets endpoints write data capture and async results")
        acknowledge_wildcards(
            policy,
            [f"Resource::{arn}" for arn in written],
            "SageMaker names capture files by endpoint, variant and hour, and async results by request.",
        )
        if self.images:
            acknowledge_wildcards(policy, ["Resource::*"],
                                  "ecr:GetAuthorizationToken has no resource-level permissions.")

    def _route_approvals(self, endpoints: tuple[EndpointConfig, ...]) -> None:
        """Approval events -> queue -> deployer. The queue holds an event while an endpoint is busy
        (the deployer answers RetryLater) far longer than Lambda's own async retries would."""
        key = self.foundation.key
        dead_letters = sqs.Queue(
            self, "ApprovalDeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
            enforce_ssl=True, retention_period=Duration.days(14),
        )
        acknowledge(dead_letters, "AwsSolutions-SQS3",
                    "This is the dead-letter queue of the approval queue.")
        queue = sqs.Queue(
            self, "Approvals", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            # AWS's rule for SQS event sources: at least 6 x the function timeout.
            visibility_timeout=Duration.seconds(DEPLOYER_TIMEOUT.to_seconds() * 6),
            retention_period=Duration.days(4),
            # An event for a busy endpoint is retried every 12 minutes for 3 hours, then dead-lettered.
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=15),
        )
        groups = sorted({f"{self.config.name_prefix}-{e.model_package_group}" for e in endpoints})
        self.approval_rule = events.Rule(
            self, "DeployOnApproval",
            description="An approved model package is deployed to the endpoints of its group",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": groups, "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.SqsQueue(queue)],
        )
        # A decided experiment (the Api stack's controller): the deployer keeps the winner, retires the other.
        self.decision_rule = events.Rule(
            self, "PromoteOnDecision",
            description="A decided experiment's kept model becomes its endpoint's sole champion",
            event_pattern=events.EventPattern(
                source=[promotion_domain().EVENT_SOURCE],
                detail_type=[promotion_domain().EVENT_DETAIL_TYPE],
                detail={"endpoint_name": sorted(self.endpoint_name(e) for e in endpoints)},
            ),
            targets=[targets.SqsQueue(queue)],
        )
        self.deployer.function.add_event_source(event_sources.SqsEventSource(
            queue, batch_size=1, report_batch_item_failures=True,
        ))
        self.approval_queue = queue
        self.approval_dead_letters = dead_letters

    # --- autoscaling ----------------------------------------------------------------------
    def _scaling_statements(self, *, manage: bool) -> list[iam.PolicyStatement]:
        """Application Auto Scaling on SageMaker variants; it checks that the caller itself holds
        the SageMaker and CloudWatch permissions it will use on the caller's behalf."""
        conditions = {"StringEquals": {"application-autoscaling:service-namespace": "sagemaker",
                                       "application-autoscaling:scalable-dimension":
                                           "sagemaker:variant:DesiredInstanceCount"}}
        actions = ["application-autoscaling:DeleteScalingPolicy", "application-autoscaling:DeregisterScalableTarget"]
        if manage:
            actions += ["application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy"]
        return [
            iam.PolicyStatement(sid="DescribeScaling", resources=["*"],
                                actions=["application-autoscaling:DescribeScalableTargets",
                                         "application-autoscaling:DescribeScalingPolicies", "cloudwatch:DescribeAlarms"]),
            iam.PolicyStatement(sid="ChangeVariantScaling", actions=actions, conditions=conditions,
                                resources=[self._arn("application-autoscaling", "scalable-target/*")]),
            iam.PolicyStatement(sid="ScalingAlarms",
                                actions=["cloudwatch:DeleteAlarms", *(["cloudwatch:PutMetricAlarm"] if manage else [])],
                                resources=[self._arn("cloudwatch", "alarm:mlops-autoscaling-*"),
                                           self._arn("cloudwatch", "alarm:TargetTracking-endpoint/*")]),
        ]

    def _scaling_findings(self) -> list[str]:
        return ["Resource::*", f"Resource::{self._arn('application-autoscaling', 'scalable-target/*')}",
                f"Resource::{self._arn('cloudwatch', 'alarm:mlops-autoscaling-*')}",
                f"Resource::{self._arn('cloudwatch', 'alarm:TargetTracking-endpoint/*')}"]

    def _allow_scaling_suspension(self, function: PlatformFunction) -> None:
        for statement in self._scaling_statements(manage=False):
            function.role.add_to_principal_policy(statement)
        acknowledge_wildcards(
            function.role.node.find_child("DefaultPolicy"), self._scaling_findings(),
            "Describe calls have no resource-level permissions; scalable targets and their alarms are "
            "named by AWS, and changes are limited to SageMaker variant instance counts by condition.",
        )

    def _scaler(self, endpoints: tuple[EndpointConfig, ...]) -> PlatformFunction | None:
        settings = function_settings.scaler(self.config)
        if not settings.endpoints:
            return None
        config = self.config
        scaler = PlatformFunction(
            self, "EndpointScaler",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-endpoint-scaler",
                handler="mlops_runtime.handlers.endpoint_scaler.handler",
                description="Registers autoscaling of deployer-managed endpoints when they are InService",
                environment={**settings.to_env(), "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Deployments"},
                timeout=Duration.minutes(1),
                reserved_concurrency=2,
            ),
        )
        prefix = config.name_prefix
        endpoints_arn = self._arn("sagemaker", f"endpoint/{prefix}-*")
        configs_arn = self._arn("sagemaker", f"endpoint-config/{prefix}-*")
        role = scaler.role
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadAndScaleEndpoints", resources=[endpoints_arn],
            actions=["sagemaker:DescribeEndpoint", "sagemaker:ListTags"],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadEndpointConfigs", actions=["sagemaker:DescribeEndpointConfig"], resources=[configs_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="AutoScalingServiceLinkedRole", actions=["iam:CreateServiceLinkedRole"],
            resources=[f"arn:{partition_of(config.region)}:iam::{config.account}:role/aws-service-role/"
                       "sagemaker.application-autoscaling.amazonaws.com/"
                       "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"],
            conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
        ))
        for statement in self._scaling_statements(manage=True):
            role.add_to_principal_policy(statement)
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [*self._scaling_findings(), f"Resource::{endpoints_arn}", f"Resource::{configs_arn}"],
            "Describe calls have no resource-level permissions; scalable targets and their alarms are named "
            "by AWS; endpoints and configs are the deployer's, under this environment's prefix.",
        )
        events.Rule(
            self, "ScaleWhenInService",
            description="A deployer-managed endpoint reached InService: (re)register its autoscaling",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointStatus": ["IN_SERVICE"], "EndpointName": sorted(settings.endpoints)},
            ),
            targets=[targets.LambdaFunction(scaler.function, retry_attempts=4,
                                            dead_letter_queue=scaler.dead_letter_queue)],
        )
        return scaler

    # --- teardown -------------------------------------------------------------------------
    def _teardown(self) -> CustomResource:
        """Deletes the deployer's endpoints when this stack is deleted, in environments whose
        removal policy is ``destroy`` (dev): no endpoint keeps running, and billing, after
        ``cdk destroy``. With ``retain`` it does nothing."""
        config = self.config
        settings = function_settings.teardown(config)
        function = PlatformFunction(
            self, "EndpointTeardown",
            self.foundation.function_props(
                function_name=f"{config.name_prefix}-endpoint-teardown",
                handler="mlops_runtime.handlers.endpoint_teardown.handler",
                description="Custom resource: deletes deployer-managed endpoints on stack deletion (dev)",
                timeout=Duration.minutes(5),
                reserved_concurrency=1,
            ),
        )
        role = function.role
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ListDeployerResources", resources=["*"],
            actions=["sagemaker:ListEndpoints", "sagemaker:ListEndpointConfigs", "sagemaker:ListModels"],
        ))
        owned = [self._arn("sagemaker", f"{kind}/*") for kind in ("endpoint", "endpoint-config", "model")]
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadTags", actions=["sagemaker:ListTags"], resources=owned))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="DeleteOnlyWhatTheDeployerMadeHere", resources=owned,
            actions=["sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"],
            conditions={"StringEquals": {f"aws:ResourceTag/{key}": value
                                         for key, value in settings.required_tags.items()}},
        ))
        for statement in self._scaling_statements(manage=False):
            role.add_to_principal_policy(statement)
        acknowledge_wildcards(
            role.node.find_child("DefaultPolicy"),
            [*self._scaling_findings(), *(f"Resource::{arn}" for arn in owned)],
            "SageMaker List calls have no resource-level permissions, and the teardown finds the "
            "deployer's resources by tag; deletion is limited by tag condition to this environment's.",
        )
        provider = custom_resources.Provider(self, "EndpointTeardownProvider", on_event_handler=function.function)
        self._acknowledge_provider(provider, function)
        return CustomResource(
            self, "EndpointTeardownOnDestroy",
            service_token=provider.service_token,
            resource_type="Custom::EndpointTeardown",
            properties=settings.to_properties(),
        )

    def _acknowledge_provider(self, provider: custom_resources.Provider, handler: PlatformFunction) -> None:
        framework = provider.node.find_child("framework-onEvent")
        acknowledge(framework, "AwsSolutions-L1",
                    "CDK's custom-resource framework function; its runtime is chosen by aws-cdk-lib.")
        acknowledge(framework, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                               "AWSLambdaBasicExecutionRole]",
                    "CDK's custom-resource framework function uses AWSLambdaBasicExecutionRole for its logs.")
        acknowledge_wildcards(framework, [f"Resource::<{logical_id(handler.function)}.Arn>:*"],
                              "The framework may invoke any version of the teardown function, and only it.")
        for rule in ("NIST.800.53.R5-IAMNoInlinePolicy", "NIST.800.53.R5-LambdaConcurrency",
                     "NIST.800.53.R5-LambdaDLQ", "NIST.800.53.R5-LambdaInsideVPC"):
            acknowledge(framework, rule, "CDK's custom-resource framework function: it only invokes the "
                                         "teardown function (by its ARN) during stack operations.")
