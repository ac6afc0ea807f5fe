"""What each environment runs (and bills) while idle, priced from the table in ``cost/prices.yaml``.

    python -m mlops_platform.tools.cost_report [--env NAME ...] [--prices cost/prices.yaml]
                                               [--format text|json]

"Idle" means: the environment is deployed, every endpoint serves a model (the deployer creates
endpoints at the first approval), and nobody calls anything. What still bills then is priced per
hour and per month (monthly = hourly x 730; items priced per month are shown per hour as
monthly / 730). Everything billed per request, per GB or per job run is listed, not priced.

:func:`idle_costs` is the pure computation (a config and a price table in, line items out);
:func:`main` is the command line. Problems are one line each, e.g.
``cost/prices.yaml: no SageMaker hosting price for instance type 'ml.g5.xlarge' ...``; the exit
code is then 1.

The counts of what the stacks create are in :data:`PLATFORM` (see :class:`Inventory` for where
each comes from); ``tests/unit/cost/test_cost_report.py`` checks them against the code and the
synthesized templates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import ConfigError, PlatformConfig, load_environments
from ..config.models import TrackingBackend

HOURS_PER_MONTH = 730
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "cost" / "prices.yaml"


class PriceTableError(Exception):
    """The price table is missing, invalid, or lacks a price the environment needs (one line)."""


# --- the price table ------------------------------------------------------------------------------

class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verified: bool = Field(description="True only when `source` states this figure for this region.")
    source: str | None = None
    note: str = ""

    @model_validator(mode="after")
    def _verified_needs_source(self) -> _Entry:
        if self.verified and not self.source:
            raise ValueError("verified: true needs the source URL the figure was read from")
        return self


class HourlyPrice(_Entry):
    usd_per_hour: float = Field(ge=0)


class AzHourlyPrice(_Entry):
    usd_per_az_hour: float = Field(ge=0)


class MonthlyPrice(_Entry):
    usd_per_month: float = Field(ge=0)


class BudgetPrice(_Entry):
    usd_per_day: float = Field(ge=0)
    free_per_account: int = Field(ge=0)


class PriceTable(BaseModel):
    """``cost/prices.yaml``: on-demand list prices of one region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    currency: str = Field(pattern=r"^USD$")
    as_of: datetime.date
    sources: tuple[str, ...] = ()
    sagemaker_hosting: dict[str, HourlyPrice]
    mlflow_tracking_server: dict[str, HourlyPrice]
    vpc_interface_endpoint: AzHourlyPrice
    kms_key: MonthlyPrice
    secrets_manager_secret: MonthlyPrice
    cloudwatch_dashboard: MonthlyPrice
    cloudwatch_alarm_metric: MonthlyPrice
    aws_budget: BudgetPrice
    source_file: str = Field(default="prices", exclude=True, description="Names the table in errors.")


def parse_prices(data: Any, source: str) -> PriceTable:
    """Validate already-parsed YAML ``data``; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise PriceTableError(f"{source}: must be a mapping, got {type(data).__name__}")
    try:
        return PriceTable.model_validate({**data, "source_file": source})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PriceTableError(f"{source}: '{where}': {message}{more}") from None


def load_prices(path: Path = DEFAULT_PRICES) -> PriceTable:
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceTableError(f"{shown}: no such price table") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{shown}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_prices(data, shown)


# --- what the stacks create -----------------------------------------------------------------------

@dataclass(frozen=True)
class Inventory:
    """Counts fixed by the stacks' code (the config decides how often they apply). Keep them in step
    with the stacks: the tests compare them with the code and the synthesized templates."""

    # FoundationStack: PlatformKey (constructs/encryption.py)
    kms_keys: int = 1
    # ApiStack._subject_hash_key (a W&B secret is yours, not the platform's)
    secrets: int = 1
    # MonitoringStack._dashboard, in every environment
    dashboards: int = 1
    # constructs/network.py INTERFACE_ENDPOINTS (the S3 gateway endpoint is free)
    interface_endpoints: int = 7
    mlflow_interface_endpoints: int = 1  # with experiment_tracking.backend mlflow
    # ApiStack._feedback_alarms: feedback dead-lettered, feedback parked, API 5xx
    api_alarms: int = 3
    # ServingStack._guardrail_alarms: 2 variants x (5xx rate, p99 latency); the 5xx-rate alarms are
    # metric math over 2 metrics (errors, invocations), so 4 alarms bill 6 alarm metrics
    guardrail_alarms_per_endpoint: int = 4
    guardrail_alarm_metrics_per_endpoint: int = 6
    # SemanticSearch._alarms: indexer errors, rejected documents, search errors, search p99 latency;
    # MonitoringStack: failed executions of the bulk indexing pipeline
    search_alarms: int = 5
    # MonitoringStack._failure_alarm: per training pipeline and per monitoring pipeline
    failed_alarms_per_pipeline: int = 1
    # Created at run time by Application Auto Scaling: a target-tracking policy has a high and a low
    # alarm; async variants scaling from 0 also get a HasBacklogWithoutCapacity alarm
    scaling_alarms_per_variant: int = 2
    backlog_alarms_per_variant: int = 1


@dataclass(frozen=True)
class AlarmGroup:
    """Alarms of one kind: how many, how many alarm metrics they bill, and whether the templates
    define them (False: Application Auto Scaling creates them when the endpoint is scaled)."""

    text: str
    alarms: int
    alarm_metrics: int
    in_template: bool = True
    challenger: bool = False  # exists only while a challenger is deployed


def alarm_groups(config: PlatformConfig, inventory: Inventory | None = None) -> list[AlarmGroup]:
    """The counting rule for CloudWatch alarms (standard resolution, billed per alarm metric)."""
    inventory = inventory or PLATFORM
    groups = [AlarmGroup("API (5xx, feedback dead-lettered, feedback parked)",
                         inventory.api_alarms, inventory.api_alarms)]
    if config.search.indexes:
        groups.append(AlarmGroup("semantic search (indexer errors, rejected documents, search errors and latency, failed bulk indexing)",
                                 inventory.search_alarms, inventory.search_alarms))
    pipelines = len(config.training.pipelines)
    if pipelines:
        groups.append(AlarmGroup(f"failed executions of {pipelines} training pipeline(s)",
                                 pipelines * inventory.failed_alarms_per_pipeline,
                                 pipelines * inventory.failed_alarms_per_pipeline))
    for endpoint in config.serving.endpoints:
        groups.append(AlarmGroup(
            f"guardrails of '{endpoint.name}' (the 5xx-rate alarms are metric math over 2 metrics)",
            inventory.guardrail_alarms_per_endpoint, inventory.guardrail_alarm_metrics_per_endpoint))
        monitoring = getattr(endpoint, "monitoring", None)
        if monitoring is not None:
            count = 1 + (monitoring.quality_threshold is not None) + inventory.failed_alarms_per_pipeline
            groups.append(AlarmGroup(f"monitoring of '{endpoint.name}' (drift, quality, failed job)",
                                     count, count))
        variant = endpoint.variant
        scaling = getattr(variant, "autoscaling", None)  # kinds with a scaling dimension only
        if scaling is None:
            continue
        from_zero = endpoint.kind.scaling.min_instances == 0 and scaling.min_instances == 0
        per_variant = inventory.scaling_alarms_per_variant + (
            inventory.backlog_alarms_per_variant if from_zero else 0)
        groups.append(AlarmGroup(f"autoscaling of '{endpoint.name}' (champion)",
                                 per_variant, per_variant, in_template=False))
        if endpoint.challenger_initial_weight > 0 and not endpoint.shadow:
            groups.append(AlarmGroup(f"autoscaling of '{endpoint.name}' (challenger)",
                                     per_variant, per_variant, in_template=False, challenger=True))
    return groups


PLATFORM = Inventory()


def interface_endpoints(config: PlatformConfig, inventory: Inventory = PLATFORM) -> int:
    """Interface endpoints of the environment's VPC (none without one)."""
    if not config.vpc.enabled:
        return 0
    mlflow = config.training.experiment_tracking.backend is TrackingBackend.MLFLOW
    return inventory.interface_endpoints + (inventory.mlflow_interface_endpoints if mlflow else 0)


# --- line items -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineItem:
    resource: str
    quantity: float
    unit: str
    hourly_usd: float
    monthly_usd: float
    verified: bool
    note: str = ""          # how the quantity was counted; the price's own note is in the table
    price_entry: str = ""   # the price-table entry used, e.g. "sagemaker_hosting.ml.m5.large"
    unit_price: str = ""    # e.g. "0.128/h", "1.00/mo"


# Billed per request, per GB or per job run in every environment: listed, never priced.
COMMON_USAGE_PRICED = (
    "Lambda functions (inference and feedback API, deployer, scaler, controller): per request and GB-second",
    "API Gateway REST API: per request",
    "DynamoDB tables (on-demand): per request; per GB-month stored and of point-in-time recovery",
    "Kinesis Data Firehose (ground truth): per GB ingested",
    "S3 buckets (raw data, artifacts, data capture, feedback, access logs): per GB-month and request",
    "SQS queues, SNS topic, EventBridge rules and schedules: per request or event",
    "CloudWatch Logs: per GB ingested and GB-month stored",
    "SageMaker Pipelines, processing and training jobs: instance-hours while a run works",
    "KMS requests beyond the free 20,000 per month",
)


@dataclass
class EnvironmentCost:
    environment: str
    region: str
    account: str
    items: list[LineItem] = field(default_factory=list)
    challenger_items: list[LineItem] = field(default_factory=list)  # added while a challenger is deployed
    usage_priced: list[str] = field(default_factory=list)           # besides COMMON_USAGE_PRICED
    not_priced: list[str] = field(default_factory=list)             # idle cost the table cannot price

    @property
    def hourly_usd(self) -> float:
        return sum(item.hourly_usd for item in self.items)

    @property
    def monthly_usd(self) -> float:
        return sum(item.monthly_usd for item in self.items)

    @property
    def challenger_hourly_usd(self) -> float:
        return sum(item.hourly_usd for item in self.challenger_items)

    @property
    def challenger_monthly_usd(self) -> float:
        return sum(item.monthly_usd for item in self.challenger_items)

    @property
    def verified(self) -> bool:
        """True when every price behind the totals is verified."""
        return all(item.verified for item in self.items + self.challenger_items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment, "region": self.region, "account": self.account,
            "items": [asdict(item) for item in self.items],
            "totals": {"hourly_usd": round(self.hourly_usd, 6), "monthly_usd": round(self.monthly_usd, 2),
                       "all_prices_verified": all(item.verified for item in self.items)},
            "while_challenger_deployed": {
                "items": [asdict(item) for item in self.challenger_items],
                "adds": {"hourly_usd": round(self.challenger_hourly_usd, 6),
                         "monthly_usd": round(self.challenger_monthly_usd, 2)},
            },
            "usage_priced": [*self.usage_priced, *COMMON_USAGE_PRICED],
            "not_priced": self.not_priced,
        }


def _hourly(resource: str, quantity: float, unit: str, price: HourlyPrice | AzHourlyPrice, per_unit: float,
            entry: str, note: str = "") -> LineItem:
    hourly = quantity * per_unit
    shown = f"{per_unit:.3f}" if round(per_unit, 3) == per_unit else f"{per_unit:g}"
    return LineItem(resource, quantity, unit, hourly, hourly * HOURS_PER_MONTH, price.verified, note, entry,
                    f"{shown}/h")


def _monthly(resource: str, quantity: float, unit: str, price: MonthlyPrice, entry: str,
             note: str = "") -> LineItem:
    monthly = quantity * price.usd_per_month
    return LineItem(resource, quantity, unit, monthly / HOURS_PER_MONTH, monthly, price.verified, note, entry,
                    f"{price.usd_per_month:.2f}/mo")


def price_entry(prices: PriceTable, name: str) -> _Entry:
    """The table entry called ``name`` (e.g. ``sagemaker_hosting.ml.m5.large``, ``kms_key``)."""
    group, _, key = name.partition(".")
    value = getattr(prices, group)
    return value[key] if key else value


# --- the computation --------------------------------------------------------------------------------

def idle_costs(config: PlatformConfig, prices: PriceTable,
               inventory: Inventory = PLATFORM) -> EnvironmentCost:
    """What ``config``'s environment bills while idle, priced from ``prices``.

    Raises :class:`PriceTableError` (one line) when the table is for another region or lacks a
    price the environment needs.
    """
    table = prices.source_file
    if prices.region != config.region:
        raise PriceTableError(
            f"{table}: prices are for region {prices.region}, but environment '{config.environment}' "
            f"deploys to {config.region}: use a price table for {config.region} (--prices)")
    result = EnvironmentCost(config.environment, config.region, config.account)

    for endpoint in config.serving.endpoints:
        variant = endpoint.variant
        monitoring = getattr(endpoint, "monitoring", None)
        if monitoring is not None:
            jobs = (f"a {monitoring.instance_type} processing job" if monitoring.instance_count == 1 else
                    f"a processing job on {monitoring.instance_count} x {monitoring.instance_type} (sharded: "
                    f"{monitoring.instance_count} instance-hours per hour it runs) then a one-instance merge job")
            result.usage_priced.append(
                f"Monitoring job of '{endpoint.name}' ({monitoring.schedule}): {jobs} per window with captured "
                "requests; no job for a window without traffic")
        kind = endpoint.kind
        if not kind.instance_based:  # billed per use: the kind's class says how (and what idles unpriced)
            usage, not_priced = kind.idle_usage(endpoint.name, variant)
            result.usage_priced.extend(usage)
            result.not_priced.extend(not_priced)
            continue

        name = f"sagemaker_hosting.{variant.instance_type}"
        entry = prices.sagemaker_hosting.get(variant.instance_type)
        if entry is None:
            raise PriceTableError(
                f"{table}: no SageMaker hosting price for instance type '{variant.instance_type}' "
                f"(endpoint '{endpoint.name}' of {config.environment}): add it under sagemaker_hosting")
        scaling = getattr(variant, "autoscaling", None)
        champion = scaling.min_instances if scaling is not None else variant.initial_instance_count
        # The stacks give the deployer only the champion's sizing, so a challenger runs with the
        # same instance type and initial count (VariantLayout.challenger_sizing in
        # lambda/mlops_runtime/domain/deployment.py); the scaler then gives it the champion's
        # bounds (domain/autoscaling.py), so idle it holds min_instances too. A shadow challenger
        # is never autoscaled: it keeps the initial count.
        if endpoint.shadow:
            challenger, role = variant.initial_instance_count, "shadow challenger"
        elif endpoint.challenger_initial_weight > 0:
            challenger, role = champion, "challenger"
        else:
            challenger, role = 0, ""

        unit = f"{variant.instance_type} instance"
        count_rule = (f"autoscaling min_instances {scaling.min_instances} (max {scaling.max_instances})"
                      if scaling is not None else
                      f"initial_instance_count {variant.initial_instance_count} (no autoscaling)")
        if champion:
            fleet = variant.initial_instance_count
            rollout = "" if challenger else (
                f" Each approval rolls out blue/green: a second fleet of {fleet} runs during the bake time.")
            result.items.append(_hourly(
                f"SageMaker {kind.title} endpoint '{endpoint.name}' (champion)", champion, unit, entry,
                entry.usd_per_hour, name, f"Instances while idle = {count_rule}.{rollout}"))
        else:
            result.usage_priced.append(
                f"SageMaker {kind.title} endpoint '{endpoint.name}' ({variant.instance_type}): 0 instances "
                "while its queue is empty, instance-hours while it works")
        if challenger:
            result.challenger_items.append(_hourly(
                f"SageMaker {kind.title} endpoint '{endpoint.name}' ({role})", challenger, unit, entry,
                entry.usd_per_hour, name,
                f"A newly approved model runs as the {role} next to the champion until it is promoted or "
                "dropped, with the champion's instance type and "
                + ("initial count (shadow variants are not autoscaled)." if endpoint.shadow
                   else "scaling bounds.")))

    tracking = config.training.experiment_tracking
    if tracking.backend is TrackingBackend.MLFLOW:
        entry = prices.mlflow_tracking_server.get(tracking.mlflow_size)
        if entry is None:
            raise PriceTableError(
                f"{table}: no price for MLflow tracking server size '{tracking.mlflow_size}' "
                f"({config.environment}): add it under mlflow_tracking_server")
        result.items.append(_hourly(
            "SageMaker MLflow tracking server", 1, f"{tracking.mlflow_size} server", entry,
            entry.usd_per_hour, f"mlflow_tracking_server.{tracking.mlflow_size}",
            "Runs around the clock once created."))
        result.usage_priced.append("MLflow metadata storage: per GB-month")
    elif tracking.backend is TrackingBackend.WANDB:
        result.usage_priced.append(
            "Weights & Biases: billed by W&B (its API-key secret is yours: not counted)")

    if config.vpc.enabled:
        zones = len(config.vpc.zones_in(config.region))
        price = prices.vpc_interface_endpoint
        endpoints = interface_endpoints(config, inventory)
        result.items.append(_hourly(
            "VPC interface endpoints", endpoints * zones, "endpoint-AZ", price,
            price.usd_per_az_hour, "vpc_interface_endpoint",
            f"{endpoints} interface endpoints x {zones} AZs (vpc.max_azs); "
            "the S3 gateway endpoint is free."))
        result.usage_priced.append(
            "VPC interface endpoints: per GB processed; VPC flow logs: CloudWatch Logs ingestion")

    result.items.append(_monthly(
        "KMS customer managed key", inventory.kms_keys, "key", prices.kms_key, "kms_key",
        "The platform key; its yearly rotation adds to this from the second year (see the price note)."))
    result.items.append(_monthly(
        "Secrets Manager secret", inventory.secrets, "secret", prices.secrets_manager_secret,
        "secrets_manager_secret", "The API's subject-hash key."))
    if inventory.dashboards:
        result.items.append(_monthly("CloudWatch dashboard", inventory.dashboards, "dashboard",
                                     prices.cloudwatch_dashboard, "cloudwatch_dashboard",
                                     "The platform dashboard (Monitoring stack)."))
    groups = alarm_groups(config, inventory)
    for challenger_only, target, resource in (
            (False, result.items, "CloudWatch alarms"),
            (True, result.challenger_items, "CloudWatch alarms (challenger)")):
        chosen = [g for g in groups if g.challenger == challenger_only]
        if chosen:
            target.append(_monthly(
                resource, sum(g.alarm_metrics for g in chosen), "alarm metric",
                prices.cloudwatch_alarm_metric, "cloudwatch_alarm_metric",
                f"{sum(g.alarms for g in chosen)} alarms: "
                + "; ".join(f"{g.text} {g.alarms}" + (f" ({g.alarm_metrics} alarm metrics)"
                                                      if g.alarm_metrics != g.alarms else "") for g in chosen)
                + "."))
    if config.budget is not None:
        price = prices.aws_budget
        billed = max(0, 1 - price.free_per_account)
        monthly = billed * price.usd_per_day * DAYS_PER_MONTH
        result.items.append(LineItem(
            "AWS Budgets budget", 1, "budget", monthly / HOURS_PER_MONTH, monthly, price.verified,
            f"The first {price.free_per_account} budgets of an account are free (assumes the account "
            "holds no other budget).", "aws_budget", f"{price.usd_per_day:g}/day"))

    for group in config.feature_store.feature_groups:
        if group.online and group.online_storage_type == "InMemory":
            result.not_priced.append(f"feature group '{group.name}': the InMemory online store bills per "
                                     "hour while idle (no price in the table)")
        if group.throughput_mode == "Provisioned":
            result.not_priced.append(f"feature group '{group.name}': provisioned throughput bills for its "
                                     "capacity while idle (no price in the table)")
    for index in config.search.indexes:
        if index.store == "opensearch":
            result.not_priced.append(
                f"search index '{index.name}': its OpenSearch Serverless collection bills OCU-hours while idle "
                f"(standby replicas {'on' if config.is_production else 'off'}; no price in the table)")
        else:
            result.usage_priced.append(f"Search index '{index.name}' (S3 Vectors): per GB-month stored, per "
                                       "vector written and per query; embeddings per Bedrock/endpoint call")
    result.not_priced.append(
        "CloudWatch custom metrics that scheduled functions (experiment controller, monitoring launcher) "
        "publish even without traffic: a few metric-months per environment (no price in the table)")
    if config.feature_store.feature_groups:
        result.usage_priced.append("SageMaker Feature Store (on-demand): per read/write unit and GB-month "
                                   "(online store); S3 and Glue (offline store)")
    return result


# --- output -------------------------------------------------------------------------------------------

def _money(value: float, places: int) -> str:
    return f"{value:,.{places}f}"


def _table(items: list[LineItem], notes: dict[str, int]) -> list[str]:
    rows = []
    for item in items:
        ref = notes.setdefault(item.note, len(notes) + 1) if item.note else None
        rows.append((item.resource + (f" [{ref}]" if ref else ""), f"{item.quantity:g}", item.unit,
                     item.unit_price + ("" if item.verified else "*"),
                     _money(item.hourly_usd, 4), _money(item.monthly_usd, 2)))
    header = ("Resource", "Qty", "Unit", "Unit price", "USD/hour", "USD/month")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    align = "<><>>>"

    def line(row: Sequence[str]) -> str:
        return "  " + "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths)).rstrip()

    return [line(header), "  " + "-" * (sum(widths) + 2 * (len(widths) - 1)), *(line(row) for row in rows)]


def render_text(costs: list[EnvironmentCost], prices: PriceTable) -> str:
    out = [f"Idle cost per environment, from {prices.source_file}: on-demand list prices, "
           f"region {prices.region}, {prices.currency}, as of {prices.as_of.isoformat()}.",
           f"Idle = deployed, a model on every endpoint, no traffic. Monthly = hourly x {HOURS_PER_MONTH}. "
           "Taxes, credits, savings plans and free tiers (except Budgets') are not applied."]
    used: set[str] = set()
    for cost in costs:
        notes: dict[str, int] = {}
        star = "" if all(item.verified for item in cost.items) else "*"
        out += ["", f"== {cost.environment} (account {cost.account}, {cost.region}) ==",
                "What runs (and bills) while idle:", *_table(cost.items, notes),
                f"  Total while idle: {_money(cost.hourly_usd, 4)}{star} USD/hour, "
                f"{_money(cost.monthly_usd, 2)}{star} USD/month"]
        if cost.challenger_items:
            cstar = "" if cost.verified else "*"
            hourly = cost.hourly_usd + cost.challenger_hourly_usd
            monthly = cost.monthly_usd + cost.challenger_monthly_usd
            out += ["While a challenger is deployed, add:", *_table(cost.challenger_items, notes),
                    f"  Total with a challenger: {_money(hourly, 4)}{cstar} USD/hour, "
                    f"{_money(monthly, 2)}{cstar} USD/month"]
        if cost.not_priced:
            out += ["Idle cost NOT priced (missing from the price table; not in the totals):",
                    *(f"  ! {line}" for line in cost.not_priced)]
        out += ["No idle cost (usage-priced):", *(f"  - {line}" for line in cost.usage_priced),
                "  - and the services every environment has (listed at the end)"]
        if notes:
            out += ["Notes:", *(f"  [{number}] {note}" for note, number in notes.items())]
        used.update(item.price_entry for item in cost.items + cost.challenger_items if item.price_entry)
    out += ["", "Usage-priced in every environment (no idle cost):",
            *(f"  - {line}" for line in COMMON_USAGE_PRICED)]
    unverified = sorted(name for name in used if not price_entry(prices, name).verified)
    verified = sorted(name for name in used if price_entry(prices, name).verified)
    if unverified:
        out += ["", "* Unverified price: no stored source was found that states this figure for "
                f"{prices.region}. Check it before relying on the totals ({prices.source_file}):"]
        for name in unverified:
            entry = price_entry(prices, name)
            out.append(f"  * {name}: {entry.note}" + (f" ({entry.source})" if entry.source else ""))
    if verified:
        out += ["Verified prices:"]
        for name in verified:
            entry = price_entry(prices, name)
            out.append(f"  - {name}: {entry.note} ({entry.source})")
    return "\n".join(out) + "\n"


def render_json(costs: list[EnvironmentCost], prices: PriceTable) -> str:
    used = sorted({item.price_entry for cost in costs for item in cost.items + cost.challenger_items
                   if item.price_entry})
    return json.dumps({
        "prices": {"file": prices.source_file, "region": prices.region, "currency": prices.currency,
                   "as_of": prices.as_of.isoformat(), "hours_per_month": HOURS_PER_MONTH,
                   "entries": {name: price_entry(prices, name).model_dump() for name in used}},
        "environments": [cost.to_dict() for cost in costs],
    }, indent=2) + "\n"


# --- command line -------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_platform.tools.cost_report",
        description="What each environment runs (and bills) while idle, with hourly and monthly prices.")
    parser.add_argument("--env", action="append", metavar="NAME",
                        help="environment (config/NAME.yaml); repeat for several; default: all")
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES,
                        help="price table (default: cost/prices.yaml)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        configs = load_environments(args.env)
        prices = load_prices(args.prices)
        costs = [idle_costs(config, prices) for config in configs]
    except (ConfigError, PriceTableError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sys.stdout.write(render_json(costs, prices) if args.format == "json" else render_text(costs, prices))
    return 0


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
