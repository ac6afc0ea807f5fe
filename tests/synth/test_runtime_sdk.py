"""The SDK each function and the bulk-indexing job run with knows every service their code calls.

The Lambda runtime's built-in boto3 is trusted only for services launched before the runtime
(``RUNTIME_SDK_SERVICES``); a function calling anything else (S3 Vectors) gets the tested SDK in a
layer. The bulk job's code asset carries the SDK beside the code and imports with nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version

import pytest

from mlops_platform.config.loader import environment_names
from mlops_platform.constructs.platform_function import RUNTIME_SDK_SERVICES
from mlops_platform.lambda_bundles import services_called

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()
ASSET_HASH = re.compile(r"([0-9a-f]{64})\.zip")


def resources(template, type_):
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == type_}


def test_the_service_scan_sees_clients_created_by_name_and_by_service_attribute():
    assert {"s3vectors", "bedrock-runtime", "sagemaker-runtime"} <= services_called("mlops_runtime.handlers.search_api")
    assert {"sns", "sagemaker", "application-autoscaling"} <= services_called("mlops_runtime.handlers.deployer")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_functions_calling_services_newer_than_the_runtime_get_the_tested_sdk(synthesis, environment):
    checked = 0
    for stack, template in synthesis.templates[environment].items():
        layers = resources(template, "AWS::Lambda::LayerVersion")
        for function in resources(template, "AWS::Lambda::Function").values():
            handler = function.get("Handler", "")
            if not handler.startswith("mlops_runtime."):
                continue  # CDK's own custom-resource functions
            newer = services_called(handler.rsplit(".", 1)[0]) - RUNTIME_SDK_SERVICES
            own_layers = [layer["Ref"] for layer in function.get("Layers", []) if "Ref" in layer]
            if not newer:
                assert own_layers == [], (stack, handler)
                continue
            checked += 1
            (layer_id,) = own_layers
            assert function["Layers"][-1] == {"Ref": layer_id}  # unpacked last: its boto3 wins
            (asset,) = ASSET_HASH.findall(json.dumps(layers[layer_id]["Content"]))
            names = set(zipfile.ZipFile(synthesis.outdir / f"asset.{asset}.zip").namelist())
            assert f"python/boto3-{version('boto3')}.dist-info/METADATA" in names
            for service in newer:
                assert any(n.startswith(f"python/botocore/data/{service}/") for n in names), (handler, service)
    assert checked >= 2  # the search API and the indexer call S3 Vectors


@pytest.mark.parametrize("environment", ENVIRONMENTS[:1])
def test_the_bulk_job_asset_imports_its_entry_point_with_only_the_standard_library(synthesis, environment, tmp_path):
    config = synthesis.configs[environment]
    (pipeline,) = [p for p in resources(synthesis.template(environment, "Api"), "AWS::SageMaker::Pipeline").values()
                   if p["PipelineName"] == f"{config.name_prefix}-search-bulk-index"]
    definition = json.dumps(pipeline["PipelineDefinition"])
    (asset,) = set(ASSET_HASH.findall(definition))
    # One zip file (CDK copies one file into the assembly, not the SDK's thousands), which the job
    # extracts as written in its command; each name once, so what extraction keeps is not left open.
    assert f"{asset}.zip" in definition and "zipfile -e /opt/ml/processing/input/code/*.zip" in definition
    with zipfile.ZipFile(synthesis.outdir / f"asset.{asset}.zip") as archive:
        names = archive.namelist()
        assert len(names) == len(set(names)) and not [name for name in names if "__pycache__" in name]
        archive.extractall(code := tmp_path / "search")
    # -S: no site-packages at all (the image's are not trusted to hold boto3 or to know s3vectors);
    # -I: no PYTHONPATH or user site. The job runs `python3 -m mlops_runtime.search.bulk` in this folder.
    probe = ("import sys; sys.path.insert(0, '.'); import mlops_runtime.search.bulk, botocore.session; "
             "assert 's3vectors' in botocore.session.get_session().get_available_services(); "
             "import boto3; print(boto3.__version__)")
    done = subprocess.run([sys.executable, "-S", "-I", "-c", probe], cwd=code, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == version("boto3")
