"""Foundation of one environment: key, buckets, SageMaker execution role, optional VPC."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ..config import PlatformConfig
from ..config.models import COST_ALLOCATION_TAG, TrackingBackend
from ..constructs.encryption import PlatformKey, PlatformKeyProps
from ..constructs.logging import retention
from ..constructs.notifications import Notifications, NotificationsProps
from ..constructs.platform_function import PlatformFunctionProps
from ..constructs.naming import environment_bucket_name
from ..constructs.network import PlatformNetwork, PlatformNetworkProps
from ..constructs.sagemaker_role import SageMakerExecutionRole, SageMakerExecutionRoleProps
from ..constructs.storage import AccessLogBucket, AccessLogBucketProps, SecureBucket, SecureBucketProps


# Prefix of the artifacts bucket where pipelines write their outputs (models, evaluations).
PIPELINE_OUTPUT_PREFIX = "pipelines"


def bucket_name(config: PlatformConfig, purpose: str) -> str:
    """Deterministic, globally unique bucket name: other stacks refer to buckets by name.

    Referring by name (not by exported ARN) keeps the stacks free of CloudFormation exports,
    which would lock the foundation against changes.
    """
    return environment_bucket_name(config.name_prefix, config.account, config.region, purpose)


def removal_policy_of(config: PlatformConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.removal_policy.value == "retain" else RemovalPolicy.DESTROY


class FoundationStack(Stack):
    """Stateful base every other stack of the environment builds on.

    Construct ids of stateful resources are part of the contract: changing one replaces the
    resource (tests pin the logical ids).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = removal_policy_of(config)
        storage = config.storage

        self.key = PlatformKey(
            self, "PlatformKey", PlatformKeyProps(
                alias=f"alias/{config.name_prefix}", removal_policy=removal,
                s3_vectors=any(index.store == "s3vectors" for index in config.search.indexes))
        ).key

        self.access_log_bucket = AccessLogBucket(
            self, "AccessLogs",
            AccessLogBucketProps(bucket_name=bucket_name(config, "access-logs"), removal_policy=removal, expiry_days=storage.access_log_expiry_days),
        ).bucket

        def data_bucket(construct_id: str, log_prefix: str, **overrides) -> SecureBucket:
            props = dict(
                bucket_name=bucket_name(config, log_prefix),
                key=self.key,
                access_log_bucket=self.access_log_bucket,
                log_prefix=log_prefix,
                removal_policy=removal,
                noncurrent_version_expiry_days=storage.noncurrent_version_expiry_days,
                infrequent_access_after_days=storage.infrequent_access_after_days,
            )
            props.update(overrides)
            return SecureBucket(self, construct_id, SecureBucketProps(**props))

        # EventBridge notifications let new data start training pipelines.
        self.raw_data_bucket = data_bucket("RawData", "raw-data", event_bridge_enabled=True).bucket
        self.artifacts_bucket = data_bucket("Artifacts", "artifacts").bucket
        self.data_capture_bucket = data_bucket(
            "DataCapture", "data-capture",
            expiry_days=storage.data_capture_expiry_days, infrequent_access_after_days=None,
        ).bucket
        self.feedback_bucket = data_bucket("Feedback", "feedback").bucket

        self.notifications = Notifications(
            self, "Notifications",
            NotificationsProps(topic_name=f"{config.name_prefix}-notifications", key=self.key,
                               emails=config.notifications.emails),
        ).topic

        if config.budget is not None:
            self._budget(config)

        self.network: PlatformNetwork | None = None
        if config.vpc.enabled:
            self.network = PlatformNetwork(
                self, "Network",
                PlatformNetworkProps(
                    cidr=config.vpc.cidr,
                    availability_zones=config.vpc.zones_in(config.region),
                    key=self.key,
                    flow_log_retention=retention(config.vpc.flow_log_retention_days),
                    removal_policy=removal,
                    mlflow_endpoint=config.training.experiment_tracking.backend is TrackingBackend.MLFLOW,
                ),
            )

        self._config = config
        self._share_registered_models(config.training.registry.share_with_accounts)

        self.sagemaker_role = SageMakerExecutionRole(
            self, "SageMakerExecutionRole",
            SageMakerExecutionRoleProps(
                role_name=f"{config.name_prefix}-sagemaker-execution",
                key=self.key,
                read_buckets=(self.raw_data_bucket, self.data_capture_bucket, self.feedback_bucket),
                read_write_buckets=(self.artifacts_bucket,),
                subnets=tuple(self.network.vpc.isolated_subnets) if self.network else (),
                security_group=self.network.workload_security_group if self.network else None,
            ),
        ).role

    def _budget(self, config: PlatformConfig) -> None:
        budget = config.budget
        subscribers = [budgets.CfnBudget.SubscriberProperty(subscription_type="SNS",
                                                            address=self.notifications.topic_arn)]

        def alert(kind: str, percent: int) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind, comparison_operator="GREATER_THAN",
                    threshold=percent, threshold_type="PERCENTAGE"),
                subscribers=subscribers,
            )

        alerts = [alert("ACTUAL", percent) for percent in budget.alert_at_percent]
        if budget.forecast_alert_percent:
            alerts.append(alert("FORECASTED", budget.forecast_alert_percent))
        budgets.CfnBudget(
            self, "MonthlyBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{config.name_prefix}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=budget.monthly_limit_usd, unit="USD"),
                # Only this environment's resources: the platform tags everything with `environment`.
                cost_filters={"TagKeyValue": [f"user:{COST_ALLOCATION_TAG}${config.environment}"]},
            ),
            notifications_with_subscribers=alerts,
        )

    def _share_registered_models(self, accounts: tuple[str, ...]) -> None:
        """Consumer accounts (e.g. prod) read pipeline outputs, i.e. registered model artifacts."""
        for account in accounts:
            principal = iam.AccountPrincipal(account)
            self.artifacts_bucket.grant_read(principal, f"{PIPELINE_OUTPUT_PREFIX}/*")
            self.key.grant_decrypt(principal)

    def function_props(self, **props) -> PlatformFunctionProps:
        """Props of a platform Lambda with this environment's key, log retention, removal policy,
        architecture and Powertools layer; ``props`` adds the function's own (name, handler, ...).

        Platform functions call only AWS APIs, so they run outside the VPC: its isolated subnets
        reach S3, SageMaker, STS, ECR and CloudWatch Logs only, not DynamoDB, SNS, SQS, Firehose
        or Application Auto Scaling.
        """
        config = self._config
        return PlatformFunctionProps(
            key=self.key,
            log_retention_days=config.log_retention_days,
            removal_policy=removal_policy_of(config),
            architecture=config.lambdas.architecture,
            powertools_layer_version=config.lambdas.powertools_layer_version,
            **props,
        )

    def import_bucket(self, scope: Construct, purpose: str) -> s3.IBucket:
        """This environment's ``purpose`` bucket, referenced by name from another stack.

        Grants on it cover its objects and the platform key, with no cross-stack export.
        """
        return s3.Bucket.from_bucket_attributes(
            scope, f"Imported{''.join(p.capitalize() for p in purpose.split('-'))}Bucket",
            bucket_name=bucket_name(self._config, purpose),
            encryption_key=self.key,
        )
