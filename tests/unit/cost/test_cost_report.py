"""The idle-cost report: computation on hand-made configs and price tables, the repository's price
table against config/*.yaml, one-line errors, the command line, and the counts of what the stacks
create against the code and the synthesized templates."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mlops_platform.config import load_environments, parse_config
from mlops_platform.tools import cost_report
from mlops_platform.tools.cost_report import (
    HOURS_PER_MONTH,
    PLATFORM,
    Inventory,
    alarm_groups,
    PriceTableError,
    idle_costs,
    load_prices,
    parse_prices,
)

ROOT = Path(__file__).resolve().parents[3]
PRICES_FILE = ROOT / "cost" / "prices.yaml"

PRICES = {
    "region": "eu-west-1",
    "currency": "USD",
    "as_of": "2026-01-01",
    "sources": ["https://example.com/prices"],
    "sagemaker_hosting": {
        "ml.m5.large": {"usd_per_hour": 0.1, "verified": True, "source": "https://example.com/sm"},
        "ml.m5.xlarge": {"usd_per_hour": 0.2, "verified": False, "note": "a guess"},
    },
    "mlflow_tracking_server": {
        "Small": {"usd_per_hour": 0.5, "verified": True, "source": "https://example.com/mlflow"},
        "Medium": {"usd_per_hour": 1.0, "verified": True, "source": "https://example.com/mlflow"},
        "Large": {"usd_per_hour": 2.0, "verified": True, "source": "https://example.com/mlflow"},
    },
    "vpc_interface_endpoint": {"usd_per_az_hour": 0.01, "verified": True,
                               "source": "https://example.com/vpc"},
    "kms_key": {"usd_per_month": 1.0, "verified": True, "source": "https://example.com/kms"},
    "secrets_manager_secret": {"usd_per_month": 0.4, "verified": True, "source": "https://example.com/sm"},
    "cloudwatch_dashboard": {"usd_per_month": 3.0, "verified": True, "source": "https://example.com/cw"},
    "cloudwatch_alarm_metric": {"usd_per_month": 0.1, "verified": True, "source": "https://example.com/cw"},
    "aws_budget": {"usd_per_day": 0.02, "free_per_account": 2, "verified": True,
                   "source": "https://example.com/b"},
}

SERVERLESS = {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 5}
FIXED_MONTHLY_ENTRIES = {"kms_key", "secrets_manager_secret", "cloudwatch_alarm_metric",
                         "cloudwatch_dashboard", "aws_budget"}


def prices(**changes) -> cost_report.PriceTable:
    data = copy.deepcopy(PRICES)
    data.update(changes)
    return parse_prices(data, "test-prices.yaml")


def config(*endpoints: dict, mlflow: str | None = None, vpc_azs: int | None = None, region: str = "eu-west-1",
           budget: bool = True):
    data = {
        "environment": "test",
        "account": "123456789012",
        "region": region,
        "name_prefix": "mlops-test",
        "removal_policy": "destroy",
        "tags": {"project": "p", "cost_centre": "c"},
        "vpc": {"enabled": True, "max_azs": vpc_azs} if vpc_azs else {"enabled": False},
        "training": {
            "registry": {"additional_groups": ["models"]},
            "experiment_tracking": ({"backend": "mlflow", "mlflow_size": mlflow} if mlflow
                                    else {"backend": "none"}),
        },
        "serving": {"endpoints": [{"model_package_group": "models", **e} for e in endpoints]},
    }
    if budget:
        data["budget"] = {"monthly_limit_usd": 100}
    return parse_config(data, "test.yaml")


def realtime(name="scorer", instance_type="ml.m5.large", initial=1, autoscaling=None, **endpoint) -> dict:
    variant = {"kind": "realtime", "instance_type": instance_type, "initial_instance_count": initial}
    if autoscaling:
        variant["autoscaling"] = autoscaling
    return {"name": name, "variant": variant, **endpoint}


def serverless(name="light", **variant) -> dict:
    return {"name": name, "variant": {**SERVERLESS, **variant}, "challenger_initial_weight": 0,
            "data_capture": None}


def item(cost, prefix: str):
    matches = [i for i in cost.items if i.resource.startswith(prefix)]
    assert len(matches) == 1, [i.resource for i in cost.items]
    return matches[0]


def has_item(cost, prefix: str) -> bool:
    return any(i.resource.startswith(prefix) for i in cost.items)


# --- computation -------------------------------------------------------------------------------------

def test_realtime_without_autoscaling_runs_its_initial_count():
    cost = idle_costs(config(realtime(initial=3, challenger_initial_weight=0)), prices())
    champion = item(cost, "SageMaker real-time endpoint 'scorer' (champion)")
    assert (champion.quantity, champion.unit) == (3, "ml.m5.large instance")
    assert champion.hourly_usd == pytest.approx(0.3)
    assert champion.monthly_usd == pytest.approx(0.3 * HOURS_PER_MONTH)
    assert champion.verified and champion.price_entry == "sagemaker_hosting.ml.m5.large"
    assert cost.challenger_items == []  # weight 0: approvals replace the champion


def test_realtime_with_autoscaling_runs_min_instances_and_a_challenger_adds_as_many():
    endpoint = realtime(instance_type="ml.m5.xlarge", initial=4,
                        autoscaling={"min_instances": 2, "max_instances": 6}, challenger_initial_weight=0.2)
    cost = idle_costs(config(endpoint), prices())
    champion = item(cost, "SageMaker real-time endpoint 'scorer' (champion)")
    assert champion.quantity == 2 and champion.hourly_usd == pytest.approx(0.4)
    assert not champion.verified  # ml.m5.xlarge is unverified in this table
    challenger = [i for i in cost.challenger_items if "challenger" in i.resource and "endpoint" in i.resource]
    assert len(challenger) == 1
    assert (challenger[0].quantity, challenger[0].unit) == (2, "ml.m5.xlarge instance")
    alarms = [i for i in cost.challenger_items if i.price_entry == "cloudwatch_alarm_metric"]
    assert alarms[0].quantity == PLATFORM.scaling_alarms_per_variant
    assert cost.challenger_hourly_usd == pytest.approx(0.4 + 0.2 / HOURS_PER_MONTH)


def test_a_shadow_challenger_keeps_the_initial_count():
    endpoint = realtime(initial=3, autoscaling={"min_instances": 1, "max_instances": 4},
                        challenger_initial_weight=0.1, shadow=True)
    cost = idle_costs(config(endpoint), prices())
    assert item(cost, "SageMaker real-time endpoint").quantity == 1
    shadow = [i for i in cost.challenger_items if "shadow challenger" in i.resource]
    assert shadow[0].quantity == 3
    assert not any(i.price_entry == "cloudwatch_alarm_metric" for i in cost.challenger_items)


def test_serverless_endpoints_cost_nothing_while_idle():
    cost = idle_costs(config(serverless("a"), serverless("b")), prices())
    assert not any("endpoint" in i.resource for i in cost.items)
    assert cost.challenger_items == []
    assert sum("serverless endpoint" in line for line in cost.usage_priced) == 2
    assert {i.price_entry for i in cost.items} <= FIXED_MONTHLY_ENTRIES


def test_serverless_provisioned_concurrency_is_reported_as_not_priced():
    cost = idle_costs(config(serverless(max_concurrency=5, provisioned_concurrency=2)), prices())
    assert any("provisioned concurrency" in line for line in cost.not_priced)


def test_async_endpoints_scaled_to_zero_have_no_instance_cost():
    # async endpoints keep one variant: a new package replaces the champion (weight 0)
    endpoint = {"name": "batchy", "variant": {"kind": "async", "instance_type": "ml.m5.large"},
                "challenger_initial_weight": 0}
    cost = idle_costs(config(endpoint), prices())
    assert not has_item(cost, "SageMaker asynchronous endpoint")
    assert any("asynchronous endpoint 'batchy'" in line for line in cost.usage_priced)
    pinned = {"name": "busy", "variant": {"kind": "async", "instance_type": "ml.m5.large",
                                          "initial_instance_count": 2, "autoscaling": None},
              "challenger_initial_weight": 0}
    assert item(idle_costs(config(pinned), prices()), "SageMaker asynchronous endpoint").quantity == 2


def test_mlflow_server_runs_only_when_configured():
    assert not has_item(idle_costs(config(), prices()), "SageMaker MLflow")
    server = item(idle_costs(config(mlflow="Medium"), prices()), "SageMaker MLflow tracking server")
    assert (server.quantity, server.unit, server.hourly_usd) == (1, "Medium server", 1.0)
    assert server.monthly_usd == pytest.approx(HOURS_PER_MONTH)


def test_vpc_interface_endpoints_are_priced_per_endpoint_and_az():
    assert not has_item(idle_costs(config(), prices()), "VPC interface endpoints")
    for azs in (2, 3):
        endpoints = item(idle_costs(config(vpc_azs=azs), prices()), "VPC interface endpoints")
        assert endpoints.quantity == PLATFORM.interface_endpoints * azs
        assert endpoints.hourly_usd == pytest.approx(0.01 * PLATFORM.interface_endpoints * azs)
    # with MLflow, the jobs in the VPC reach the tracking server through one more endpoint
    with_mlflow = item(idle_costs(config(vpc_azs=2, mlflow="Small"), prices()), "VPC interface endpoints")
    assert with_mlflow.quantity == (PLATFORM.interface_endpoints + 1) * 2


def test_fixed_monthly_items_and_the_alarm_counting_rule():
    cost = idle_costs(config(realtime(autoscaling={"min_instances": 1, "max_instances": 2}), serverless()),
                      prices())
    kms = item(cost, "KMS customer managed key")
    assert kms.monthly_usd == 1.0 and kms.hourly_usd == pytest.approx(1.0 / HOURS_PER_MONTH)
    assert item(cost, "Secrets Manager secret").monthly_usd == pytest.approx(0.4)
    alarms = item(cost, "CloudWatch alarms")
    expected = (PLATFORM.api_alarms + 2 * PLATFORM.guardrail_alarm_metrics_per_endpoint
                + PLATFORM.scaling_alarms_per_variant)  # no training pipeline, no monitoring in this config
    assert alarms.quantity == expected
    assert alarms.monthly_usd == pytest.approx(0.1 * expected)
    budget = item(cost, "AWS Budgets budget")
    assert budget.monthly_usd == 0  # within the two free budgets
    assert item(cost, "CloudWatch dashboard").monthly_usd == pytest.approx(3.0 * PLATFORM.dashboards)
    assert not has_item(idle_costs(config(), prices(), Inventory(dashboards=0)), "CloudWatch dashboard")
    assert not has_item(idle_costs(config(budget=False), prices()), "AWS Budgets")


def test_totals_add_up_and_monthly_is_hourly_times_730():
    cost = idle_costs(config(realtime(initial=2), mlflow="Small", vpc_azs=2), prices())
    assert cost.hourly_usd == pytest.approx(sum(i.hourly_usd for i in cost.items))
    assert cost.monthly_usd == pytest.approx(cost.hourly_usd * HOURS_PER_MONTH)
    for line in cost.items:
        assert line.monthly_usd == pytest.approx(line.hourly_usd * HOURS_PER_MONTH)


# --- the repository's table and configs --------------------------------------------------------------

def test_every_instance_type_used_by_the_configs_has_a_price():
    table = load_prices(PRICES_FILE)
    used = {(c.environment, e.variant.instance_type) for c in load_environments()
            for e in c.serving.endpoints if e.variant.kind != "serverless"}
    assert used, "expected at least one instance-backed endpoint in config/*.yaml"
    missing = sorted(f"{env}: {t}" for env, t in used if t not in table.sagemaker_hosting)
    assert not missing, f"add to {PRICES_FILE.name}: {missing}"
    for c in load_environments():
        idle_costs(c, table)  # nothing missing, regions match


def test_dev_idle_cost_is_only_fixed_monthly_items():
    dev = load_environments(["dev"])[0]
    cost = idle_costs(dev, load_prices(PRICES_FILE))
    entries = {i.price_entry for i in cost.items}
    assert entries <= FIXED_MONTHLY_ENTRIES, entries
    assert not any(i.resource.startswith(("SageMaker", "VPC")) for i in cost.items)
    assert cost.challenger_items == []
    assert cost.hourly_usd == pytest.approx(cost.monthly_usd / HOURS_PER_MONTH)
    assert cost.monthly_usd < 10


def test_the_price_table_never_calls_a_figure_without_source_verified():
    data = yaml.safe_load(PRICES_FILE.read_text())
    table = load_prices(PRICES_FILE)
    assert table.region == "eu-west-1" and table.currency == "USD" and data["sources"]
    entries = [table.vpc_interface_endpoint, table.kms_key, table.secrets_manager_secret,
               table.cloudwatch_dashboard, table.cloudwatch_alarm_metric, table.aws_budget,
               *table.sagemaker_hosting.values(), *table.mlflow_tracking_server.values()]
    for entry in entries:
        assert entry.source or not entry.verified
        assert entry.verified or entry.note, "an unverified figure needs a note saying what it rests on"
    with pytest.raises(PriceTableError, match="verified: true needs the source URL"):
        parse_prices({**PRICES, "kms_key": {"usd_per_month": 1.0, "verified": True}}, "p.yaml")


# --- errors ------------------------------------------------------------------------------------------

def test_region_mismatch_is_a_one_line_error():
    with pytest.raises(PriceTableError) as error:
        idle_costs(config(region="us-east-1"), prices())
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("test-prices.yaml: ")
    assert "eu-west-1" in message and "us-east-1" in message and "'test'" in message


def test_missing_instance_price_is_a_one_line_error_naming_file_and_type():
    with pytest.raises(PriceTableError) as error:
        idle_costs(config(realtime(instance_type="ml.c5.xlarge")), prices())
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("test-prices.yaml: ") and "'ml.c5.xlarge'" in message


def test_missing_mlflow_size_is_a_one_line_error():
    table = prices(mlflow_tracking_server={"Small": PRICES["mlflow_tracking_server"]["Small"]})
    with pytest.raises(PriceTableError, match="MLflow tracking server size 'Large'"):
        idle_costs(config(mlflow="Large"), table)


def test_invalid_tables_are_one_line_errors(tmp_path):
    with pytest.raises(PriceTableError, match="no such price table"):
        load_prices(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("region: [unclosed\n")
    with pytest.raises(PriceTableError, match="not valid YAML"):
        load_prices(broken)
    with pytest.raises(PriceTableError, match="'kms_key'") as error:
        parse_prices({k: v for k, v in PRICES.items() if k != "kms_key"}, "p.yaml")
    assert "\n" not in str(error.value)


# --- command line ------------------------------------------------------------------------------------

def test_cli_text_covers_every_environment(capsys):
    assert cost_report.main([]) == 0
    out = capsys.readouterr().out
    for c in load_environments():
        assert f"== {c.environment} (account {c.account}, {c.region}) ==" in out
    assert "as of " in out and "region eu-west-1" in out
    assert "No idle cost (usage-priced):" in out
    table = load_prices(PRICES_FILE)
    if not all(e.verified for e in table.sagemaker_hosting.values()):
        assert "* Unverified price" in out and "/h*" in out


def test_cli_marks_only_unverified_prices(tmp_path, capsys):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    assert cost_report.main(["--env", "staging", "--prices", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ml.m5.large instance" in out and "0.100/h " in out  # staging's type is verified here
    assert "Unverified price" not in out
    data = copy.deepcopy(PRICES)
    data["sagemaker_hosting"]["ml.m5.large"] = {"usd_per_hour": 0.1, "verified": False, "note": "guess"}
    path.write_text(yaml.safe_dump(data))
    assert cost_report.main(["--env", "staging", "--prices", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0.100/h*" in out and "* sagemaker_hosting.ml.m5.large: guess" in out


def test_cli_json(capsys):
    assert cost_report.main(["--env", "dev", "--env", "prod", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["environment"] for e in data["environments"]] == ["dev", "prod"]
    assert data["prices"]["region"] == "eu-west-1" and data["prices"]["hours_per_month"] == HOURS_PER_MONTH
    prod = data["environments"][1]
    total = sum(i["monthly_usd"] for i in prod["items"])
    assert prod["totals"]["monthly_usd"] == pytest.approx(total, abs=0.01)
    fields = {"resource", "quantity", "unit", "hourly_usd", "monthly_usd", "verified", "note"}
    assert fields <= set(prod["items"][0])


def test_cli_errors_exit_1_with_one_line(tmp_path, capsys):
    assert cost_report.main(["--env", "nosuchenv"]) == 1
    assert "no such configuration file" in capsys.readouterr().err
    other = tmp_path / "us.yaml"
    other.write_text(yaml.safe_dump({**PRICES, "region": "us-east-1"}))
    assert cost_report.main(["--env", "dev", "--prices", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "us-east-1" in err
    missing = copy.deepcopy(PRICES)
    del missing["sagemaker_hosting"]["ml.m5.xlarge"]
    other.write_text(yaml.safe_dump(missing))
    assert cost_report.main(["--env", "prod", "--prices", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "us.yaml" in err and "'ml.m5.xlarge'" in err


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cost_report.main(["--format", "xml"])
    assert exit_info.value.code == 2


# --- the inventory against the stacks ------------------------------------------------------------------

def test_inventory_matches_the_stack_code():
    from mlops_platform.constructs.network import INTERFACE_ENDPOINTS
    from mlops_platform.function_settings import GUARDRAIL_VARIANTS as VARIANTS

    assert PLATFORM.interface_endpoints == len(INTERFACE_ENDPOINTS)
    assert PLATFORM.mlflow_interface_endpoints == 1  # network.MLFLOW_ENDPOINT
    assert PLATFORM.guardrail_alarms_per_endpoint == 2 * len(VARIANTS)  # 5xx rate + p99 latency per variant
    # per variant: the 5xx-rate alarm reads 2 metrics, the latency alarm 1
    assert PLATFORM.guardrail_alarm_metrics_per_endpoint == 3 * len(VARIANTS)


@pytest.mark.synth
def test_inventory_matches_the_synthesized_templates(synthesis):
    # Counts only: a cdk-nag finding elsewhere (synthesis.error) does not matter here.
    assert synthesis.templates, f"no templates were synthesized: {synthesis.error}"
    for environment, c in synthesis.configs.items():
        counts: dict[str, int] = {}
        interface_endpoints = 0
        for template in synthesis.templates[environment].values():
            for resource in template.get("Resources", {}).values():
                counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
                if resource["Type"] == "AWS::EC2::VPCEndpoint" and \
                        resource["Properties"].get("VpcEndpointType") == "Interface":
                    interface_endpoints += 1
        where = f"{environment}: update cost_report.PLATFORM"
        assert counts.get("AWS::KMS::Key", 0) == PLATFORM.kms_keys, where
        assert counts.get("AWS::SecretsManager::Secret", 0) == PLATFORM.secrets, where
        assert counts.get("AWS::CloudWatch::Dashboard", 0) == PLATFORM.dashboards, where
        expected_alarms = sum(g.alarms for g in alarm_groups(c) if g.in_template)
        assert counts.get("AWS::CloudWatch::Alarm", 0) == expected_alarms, where
        assert interface_endpoints == cost_report.interface_endpoints(c), where
        assert counts.get("AWS::EC2::Subnet", 0) == (c.vpc.max_azs if c.vpc.enabled else 0), where
        mlflow = c.training.experiment_tracking.backend.value == "mlflow"
        assert counts.get("AWS::SageMaker::MlflowTrackingServer", 0) == int(mlflow), where
        assert counts.get("AWS::Budgets::Budget", 0) == int(c.budget is not None), where
        assert counts.get("AWS::EC2::NatGateway", 0) == 0, f"{environment}: a NAT gateway bills idle"


def test_monitored_endpoints_add_their_alarms_and_a_usage_priced_job():
    monitored = realtime(monitoring={"schedule": "rate(1 hour)", "thresholds": {"psi": 0.2, "auc_min": 0.8}})
    cost = idle_costs(config(monitored), prices())
    plain = idle_costs(config(realtime()), prices())
    # drift + quality + failed monitoring pipeline
    assert item(cost, "CloudWatch alarms").quantity == item(plain, "CloudWatch alarms").quantity + 3
    assert any("Monitoring job of 'scorer'" in line and "a ml.m5.large processing job per window" in line
               for line in cost.usage_priced)
    sharded = idle_costs(config(realtime(monitoring={"instance_count": 4})), prices())
    assert any("4 x ml.m5.large (sharded" in line and "merge job" in line for line in sharded.usage_priced)
    # sharding changes what a run bills while it runs, not the idle cost
    assert [(i.resource, i.quantity) for i in sharded.items] == [(i.resource, i.quantity) for i in idle_costs(
        config(realtime(monitoring={})), prices()).items]
    no_quality = realtime(monitoring={"thresholds": {"psi": 0.2, "auc_min": None}})
    assert item(idle_costs(config(no_quality), prices()), "CloudWatch alarms").quantity == \
        item(plain, "CloudWatch alarms").quantity + 2
