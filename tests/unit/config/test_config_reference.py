"""docs/configuration.md: up to date with the pydantic models, and documenting what matters.

No synthesis: the reference is generated from the models alone (well under a second).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlops_platform.config import parse_config
from mlops_platform.tools import config_reference
from mlops_platform.tools.config_reference import EXAMPLE, check, collect, main, render, render_type

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def generated() -> str:
    return render()


def row(text: str, path: str) -> list[str]:
    """The cells of the table row documenting ``path`` (field, type, default, constraints, description)."""
    for line in text.splitlines():
        if line.startswith(f"| `{path}` |"):
            return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"{path} is not documented in docs/configuration.md")


def test_docs_configuration_md_is_up_to_date(generated):
    assert DOC.exists(), "docs/configuration.md is missing: run `make docs`"
    assert DOC.read_text(encoding="utf-8") == generated, (
        "docs/configuration.md is out of date with mlops_platform/config/models.py: run `make docs` "
        "(or `python -m mlops_platform.tools.config_reference`) and commit the result"
    )


def test_generation_is_deterministic(generated):
    assert render() == generated


def test_check_reports_a_stale_file_in_one_line(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    assert main(["--check", "--output", str(stale)]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "out of date" in message and "make docs" in message
    assert stale.read_text() == "# old\n"  # --check writes nothing

    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0
    assert check(tmp_path / "missing.md") is not None


def test_header_says_generated_and_how_to_regenerate(generated):
    head = "\n".join(generated.splitlines()[:10])
    assert "do not edit" in head.lower()
    assert "python -m mlops_platform.tools.config_reference" in head and "make docs" in head
    assert "config/dev.yaml" in generated


def test_example_is_a_valid_environment():
    config = parse_config(yaml.safe_load(EXAMPLE), "docs/configuration.md example")
    assert config.environment == "dev"


def test_one_section_per_model_platform_config_first(generated):
    sections = collect()
    models = [s.model for s in sections if isinstance(s, config_reference.ModelSection)]
    assert models[0].__name__ == "PlatformConfig"
    assert len(models) == len(set(models))
    headings = re.findall(r"^## (\w+)$", generated, flags=re.MULTILINE)
    assert headings[0] == "Example" and headings[2] == "PlatformConfig"
    for name in ("ServingConfig", "EndpointConfig", "ApiConfig", "ControllerConfig", "SearchIndexConfig",
                 "VpcConfig", "MonitoringConfig", "AutoscalingConfig"):
        assert f'<a id="{name.lower()}"></a>' in generated, name


def test_variant_kinds_get_one_sub_section_each(generated):
    assert "## `serving.endpoints[].variant` kinds" in generated
    for kind, model in (("realtime", "RealtimeVariantConfig"), ("serverless", "ServerlessVariantConfig"),
                        ("async", "AsyncVariantConfig")):
        assert f"### `kind: {kind}` ({model})" in generated
    assert row(generated, "serving.endpoints[].variant.instance_type")[2] == "required"
    variant = row(generated, "serving.endpoints[].variant")
    assert "chosen by `kind`" in variant[1] and "#realtimevariantconfig" in variant[1]


def test_important_fields_with_defaults_and_constraints(generated):
    rate = row(generated, "serving.api.rate_limit")
    assert rate[1:4] == ["number", "`100`", "> 0; <= 10000"]
    assert "requests per second" in rate[4]

    strategy = row(generated, "serving.experiments[].controller.strategy")
    assert strategy[1] == "one of `thompson`, `epsilon_greedy`, `ucb1`, `fixed`"
    assert strategy[2] == "`thompson`"

    store = row(generated, "search.indexes[].store")
    assert store[1] == "one of `s3vectors`, `opensearch`" and store[2] == "`s3vectors`"

    vpc = row(generated, "vpc.enabled")
    assert vpc[1:3] == ["boolean", "`false`"]

    assert row(generated, "environment")[2] == "required"
    assert "12-digit AWS account id" in row(generated, "account")[3]
    assert row(generated, "vpc.cidr")[3].startswith("pattern `")
    assert row(generated, "log_retention_days")[3].startswith("must be one of the CloudWatch Logs retention")
    assert row(generated, "serving.endpoints[].variant.memory_mb")[3].endswith("in steps of 1024")
    assert row(generated, "feature_store.feature_groups[].features")[3] == "length >= 2; length <= 2500"
    assert "each item: must be a SageMaker instance type" in row(
        generated, "training.pipelines[].inference_instance_types")[3]
    assert row(generated, "storage.infrequent_access_after_days")[1:4] == ["integer or null", "`null`",
                                                                           ">= 1; <= 3650"]
    # factories are called: a section default is `{}`, a set value is shown
    assert row(generated, "serving.api")[2] == "`{}`"
    assert "`{min_instances: 0, max_instances: 2, target_invocations_per_instance: 5}`" in generated
    assert row(generated, "budget.alert_at_percent")[2] == "`[50, 80, 100]`"


def test_every_field_of_every_model_is_documented(generated):
    for section in collect():
        members = section.members if isinstance(section, config_reference.UnionSection) else [section]
        for member in members:
            for field_row in member.rows:
                row(generated, field_row.path)


def test_types_are_human_readable():
    from typing import Literal

    assert render_type(tuple[int, ...]) == "list of integer"
    assert render_type(dict[str, float | None]) == "map of string to (number or null)"
    assert render_type(Literal["a"]) == "`a`"
    assert render_type(str | None) == "string or null"
    assert render_type(tuple[str, int]) == "tuple (string, integer)"
