"""The ml.* instance type table: coverage, consistency with botocore, NVMe rules, lookups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from mlops_runtime.domain import instance_types
from mlops_runtime.domain.instance_types import INSTANCE_TYPES, UnknownInstanceType, instance_type, is_known

REPO_ROOT = Path(__file__).resolve().parents[3]


def hosting_instance_types() -> set[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return set(model.shape_for("ProductionVariantInstanceType").enum)


def test_every_entry_is_a_sagemaker_hosting_type():
    unknown = sorted(set(INSTANCE_TYPES) - hosting_instance_types())
    assert unknown == [], f"not hosting instance types in botocore's API model: {unknown}"


@pytest.mark.parametrize(
    "family", ["m5", "m6i", "c5", "c6i", "r5", "g4dn", "g5", "g6", "p3", "p4d", "p5", "inf2"]
)
def test_required_families_are_complete(family):
    """Every size botocore knows for the family is in the table."""
    expected = {name for name in hosting_instance_types() if name.split(".")[1] == family}
    present = {name for name in INSTANCE_TYPES if name.split(".")[1] == family}
    assert expected and expected <= present, sorted(expected - present)


@pytest.mark.parametrize(
    ("name", "vcpus", "memory", "gpus", "chips", "nvme"),
    [
        ("ml.m5.large", 2, 8, 0, 0, False),
        ("ml.c6i.32xlarge", 128, 256, 0, 0, False),
        ("ml.r5.24xlarge", 96, 768, 0, 0, False),
        ("ml.g4dn.12xlarge", 48, 192, 4, 0, True),
        ("ml.g5.12xlarge", 48, 192, 4, 0, True),
        ("ml.g5.48xlarge", 192, 768, 8, 0, True),
        ("ml.g6.xlarge", 4, 16, 1, 0, True),
        ("ml.p3.8xlarge", 32, 244, 4, 0, False),
        ("ml.p4d.24xlarge", 96, 1152, 8, 0, True),
        ("ml.p5.48xlarge", 192, 2048, 8, 0, True),
        ("ml.inf2.48xlarge", 192, 768, 0, 12, False),
    ],
)
def test_figures(name, vcpus, memory, gpus, chips, nvme):
    entry = instance_type(name)
    assert (entry.vcpus, entry.memory_gib, entry.gpus, entry.neuron_chips, entry.local_nvme) == (
        vcpus,
        memory,
        gpus,
        chips,
        nvme,
    )
    assert entry.supports_volume_size is not nvme
    assert entry.supports_endpoint_kms_key is not nvme


def test_nvme_matches_the_sagemaker_sdk_rule():
    """SageMaker SDK: no EBS volume for families with a 'd' and for g5, g6, p5."""
    for name, entry in INSTANCE_TYPES.items():
        family = name.split(".")[1]
        sdk_says_no_volume = "d" in family or family.startswith(("g5", "g6", "p5"))
        assert entry.local_nvme is sdk_says_no_volume, name


def test_accelerators_and_sanity():
    for entry in INSTANCE_TYPES.values():
        assert entry.vcpus >= 2 and entry.memory_gib >= 4
        assert not (entry.has_gpu and entry.has_neuron)
        assert (entry.accelerator is not None) == (entry.has_gpu or entry.has_neuron)
    assert instance_type("ml.g5.12xlarge").family == "g5"
    assert instance_type("ml.inf2.xlarge").accelerator == "AWS Inferentia2"


def test_unknown_type():
    with pytest.raises(UnknownInstanceType, match="unknown SageMaker instance type 'ml.m5.huge'"):
        instance_type("ml.m5.huge")
    assert isinstance(UnknownInstanceType("x"), ValueError)
    assert not is_known("m5.large") and not is_known(None) and is_known("ml.m5.large")
    assert instance_types.known_families()[:2] == ("c5", "c6i")


def test_table_is_read_only():
    with pytest.raises(TypeError):
        INSTANCE_TYPES["ml.x.large"] = None  # type: ignore[index]


def test_modules_import_only_the_standard_library_and_pydantic():
    # The stacks import them at synthesis; in Lambda, pydantic comes with the Powertools layer.
    code = (
        "import sys; before = set(sys.modules); import mlops_runtime.domain.instance_types, "
        "mlops_runtime.domain.deployment; new = set(sys.modules) - before; "
        "print(sorted({m.split('.')[0] for m in new if m.split('.')[0] not in sys.stdlib_module_names "
        "and not m.startswith(('mlops_runtime', '_sysconfigdata'))}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONPATH": str(REPO_ROOT / "lambda")},
    )
    third_party = set(json.loads(run.stdout.replace("'", '"')))
    assert third_party <= {"pydantic", "pydantic_core", "annotated_types", "typing_extensions",
                           "typing_inspection"}, third_party
