"""One CDK Stage per environment, holding that environment's stacks."""

from __future__ import annotations

from aws_cdk import Environment, Stage, Tags
from constructs import Construct

from .config import PlatformConfig
from .stacks.api import ApiStack
from .stacks.feature_store import FeatureStoreStack
from .stacks.foundation import FoundationStack
from .stacks.monitoring import MonitoringStack
from .stacks.serving import ServingStack
from .stacks.training import TrainingStack


class PlatformStage(Stage):
    """All stacks of one environment, deployed to the account and region its config names."""

    def __init__(self, scope: Construct, config: PlatformConfig, *, delivery_account: str | None = None) -> None:
        """``delivery_account``: the tooling account of the delivery pipeline deploying this stage."""
        super().__init__(
            scope, config.environment, env=Environment(account=config.account, region=config.region)
        )
        self.config = config
        # Pin the zone list CDK would otherwise look up in the account, so synthesis is offline.
        self.node.set_context(
            f"availability-zones:account={config.account}:region={config.region}",
            list(config.vpc.zones_in(config.region)),
        )
        self.foundation = FoundationStack(
            self, "Foundation",
            stack_name=f"{config.name_prefix}-foundation",
            description=f"MLOps platform foundation ({config.environment}): key, buckets, roles, network",
            termination_protection=config.is_production,
            config=config,
        )
        self.feature_store = FeatureStoreStack(
            self, "FeatureStore",
            stack_name=f"{config.name_prefix}-feature-store",
            description=f"MLOps platform feature groups ({config.environment})",
            termination_protection=config.is_production,
            config=config, foundation=self.foundation,
        )
        self.training = TrainingStack(
            self, "Training",
            stack_name=f"{config.name_prefix}-training",
            description=f"MLOps platform pipelines, registry and experiment tracking ({config.environment})",
            termination_protection=config.is_production,
            config=config, foundation=self.foundation, feature_store=self.feature_store,
            notifications=self.foundation.notifications,
        )
        self.serving = ServingStack(
            self, "Serving",
            stack_name=f"{config.name_prefix}-serving",
            description=f"MLOps platform endpoints and approval-driven deployment ({config.environment})",
            termination_protection=config.is_production,
            config=config, foundation=self.foundation,
        )
        self.api = ApiStack(
            self, "Api",
            stack_name=f"{config.name_prefix}-api",
            description=f"MLOps platform API, experiments and feedback ({config.environment})",
            termination_protection=config.is_production,
            config=config, foundation=self.foundation, smoke_test_account=delivery_account,
        )
        self.monitoring = MonitoringStack(
            self, "Monitoring",
            stack_name=f"{config.name_prefix}-monitoring",
            description=f"MLOps platform monitoring, alarms, retraining loop and dashboard ({config.environment})",
            termination_protection=config.is_production,
            config=config, foundation=self.foundation,
        )
        _tag(self, config)


def _tag(scope: Construct, config: PlatformConfig) -> None:
    for key, value in config.resource_tags.items():
        Tags.of(scope).add(key, value)
