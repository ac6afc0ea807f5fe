"""The DynamoDB tables shared by the inference API, the experiment controller and the feedback API.

Key schemas are the runtime's contract (``mlops_runtime.adapters.experiments_store`` and
``adapters.feedback_store``); formats in ``docs/inference-api.md`` and ``docs/feedback-api.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from ..compliance import acknowledge


@dataclass(frozen=True)
class ExperimentTablesProps:
    key: kms.IKey
    removal_policy: RemovalPolicy


class ExperimentTables(Construct):
    """``predictions`` (pk ``inference_id``, TTL ``expires_at``), ``statistics`` (pk ``experiment``,
    sk ``round_arm_hour``: one row per round, arm and served hour), ``state`` (pk ``experiment``) and ``feedback`` (pk ``feedback_id``, TTL
    ``expires_at``): on-demand, encrypted with the environment's key, point-in-time recovery on."""

    def __init__(self, scope: Construct, construct_id: str, props: ExperimentTablesProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        self.predictions = self._table("Predictions", "inference_id", ttl="expires_at",
                                       why="Prediction records expire after their TTL; PITR covers 35 days.")
        self.statistics = self._table("Statistics", "experiment", sort_key="round_arm_hour",
                                      why="Counters rebuilt by any new experiment; PITR covers 35 days.")
        self.state = self._table("ExperimentState", "experiment",
                                 why="The controller's weights and decisions; PITR covers 35 days.")
        self.feedback = self._table("Feedback", "feedback_id", ttl="expires_at",
                                    why="Idempotency records of feedback; the ground truth itself is kept in S3.")

    def _table(self, construct_id: str, partition_key: str, *, why: str, sort_key: str | None = None,
               ttl: str | None = None) -> dynamodb.Table:
        table = dynamodb.Table(
            self, construct_id,
            partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # no idle cost
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._props.key,
            time_to_live_attribute=ttl,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=self._props.removal_policy,
        )
        acknowledge(table, "NIST.800.53.R5-DynamoDBInBackupPlan", why)
        return table
