"""Each function ships, and imports, its own settings model only: ``mlops_runtime/settings/`` holds one
module per function or family on a shared base, and a function's asset is the closure of its
handler's imports (``mlops_platform/lambda_bundles.py``), so another function's model (and the
domain it needs) would cost this one's asset size and cold start."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlops_platform.lambda_bundles import bundle_files, stage_bundle
from mlops_platform.paths import RUNTIME_ROOT

SETTINGS = RUNTIME_ROOT / "mlops_runtime" / "settings"
HANDLERS = sorted(path.stem for path in (RUNTIME_ROOT / "mlops_runtime" / "handlers").glob("*.py")
                  if path.stem != "__init__")

# handler -> its settings module (search parses its settings by hand: domain.search.SearchSettings)
OWN_SETTINGS = {
    "deployer": "deployer", "endpoint_scaler": "endpoint_scaler", "model_promotion": "model_promotion",
    "endpoint_teardown": "endpoint_teardown", "inference_api": "experiments", "experiment_controller": "experiments",
    "feedback_api": "feedback", "feedback_replay": "feedback", "monitoring_launcher": "monitoring",
    "retraining_trigger": "monitoring", "feature_ingest": "features", "search_api": None, "search_indexer": None,
}


def test_every_handler_is_listed():
    assert sorted(OWN_SETTINGS) == HANDLERS


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_ships_its_own_settings_module_only(handler):
    shipped = {path.stem for path in bundle_files(f"mlops_runtime.handlers.{handler}") if path.parent == SETTINGS}
    own = OWN_SETTINGS[handler]
    assert shipped == (set() if own is None else {"__init__", "base", own})


def test_each_handler_imports_from_its_asset_alone():
    """Staged as the stack stages it, every handler imports with nothing else of the package on the
    path: the bundle misses no module it imports."""
    code = ("import importlib, json, sys\n"
            "failed = {}\n"
            "for handler, folder in json.loads(sys.argv[1]).items():\n"
            "    for name in [m for m in sys.modules if m.split('.')[0] == 'mlops_runtime']:\n"
            "        del sys.modules[name]\n"
            "    sys.path.insert(0, folder)\n"
            "    try:\n"
            "        importlib.import_module(f'mlops_runtime.handlers.{handler}')\n"
            "    except Exception as error:\n"
            "        failed[handler] = repr(error)\n"
            "    sys.path.remove(folder)\n"
            "print(json.dumps(failed))\n")
    with tempfile.TemporaryDirectory() as build:
        folders = {handler: str(stage_bundle(f"mlops_runtime.handlers.{handler}", Path(build)))
                   for handler in HANDLERS}
        run = subprocess.run([sys.executable, "-c", code, json.dumps(folders)], cwd=build, capture_output=True,
                             text=True, timeout=120, env={"PATH": "", "POWERTOOLS_TRACE_DISABLED": "true",
                                                          "AWS_DEFAULT_REGION": "eu-west-1"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {}


# function_settings.builders' names -> the handler module that reads those settings
BUILT_FOR = {
    "inference-api": "inference_api", "feedback-api": "feedback_api", "feedback-replay": "feedback_replay",
    "experiment-controller": "experiment_controller", "endpoint-deployer": "deployer",
    "endpoint-scaler": "endpoint_scaler", "model-promotion": "model_promotion",
    "endpoint-teardown": "endpoint_teardown", "monitoring-launcher": "monitoring_launcher",
    "retraining-trigger": "retraining_trigger",
}


def test_the_stack_builds_the_very_class_each_handler_validates():
    """One source of truth: ``function_settings`` builds each model from the class the handler reads
    (``SETTINGS_MODEL``), not from an equal copy."""
    import importlib

    from mlops_platform import function_settings
    from mlops_platform.config.loader import load_environments

    built = set()
    for config in load_environments():
        for name, build in function_settings.builders(config).items():
            handler = BUILT_FOR.get(name) or ("feature_ingest" if name.startswith(function_settings.FEATURE_INGEST)
                                              else None)
            model = build()
            if handler is None or model is None:
                continue
            module = importlib.import_module(f"mlops_runtime.handlers.{handler}")
            # the teardown's settings are its custom resource's properties, not MLOPS_SETTINGS
            expected = module.TeardownSettings if handler == "endpoint_teardown" else module.SETTINGS_MODEL
            assert type(model) is expected, name
            built.add(handler)
    assert built == {*BUILT_FOR.values(), "feature_ingest"}


def test_imports_for_annotations_only_are_not_shipped(tmp_path):
    from mlops_platform.lambda_bundles import _imported_modules

    source = tmp_path / "module.py"
    source.write_text("import typing\nfrom typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from mlops_runtime.a import A\nelse:\n    from mlops_runtime.b import B\n"
                      "if typing.TYPE_CHECKING:\n    import mlops_runtime.d\n"
                      "def f():\n    from mlops_runtime.c import C\n")
    assert _imported_modules(source) == {"mlops_runtime.b", "mlops_runtime.b.B", "mlops_runtime.c", "mlops_runtime.c.C"}


def test_the_analysis_cache_is_keyed_by_content_and_agrees_with_a_fresh_parse(tmp_path):
    """A module's imports and clients come from the cache only for the same bytes: an edited module
    is parsed again, and what the cache returns is what a parse finds."""
    from mlops_platform.lambda_bundles import _analyse, _AnalysisCache

    module = tmp_path / "module.py"
    module.write_text("import boto3\nfrom mlops_runtime.a import A\nsns = boto3.client('sns')\n")
    cache = _AnalysisCache(tmp_path / "analysis.json")
    first = cache.analysis(module)
    assert first == ({"mlops_runtime.a", "mlops_runtime.a.A"}, {"sns"}) and cache.changed
    cache.save()
    module.write_text("import boto3\nfrom mlops_runtime.b import B\nsqs = boto3.client('sqs')\n")
    reread = _AnalysisCache(tmp_path / "analysis.json")
    assert reread.analysis(module) == ({"mlops_runtime.b", "mlops_runtime.b.B"}, {"sqs"}) and reread.changed
    # the cache synthesis uses (build/lambda-bundles), entry by entry, against a parse of the module now
    from mlops_platform.lambda_bundles import _cache

    for path in sorted((RUNTIME_ROOT / "mlops_runtime").rglob("*.py")):
        assert _cache().analysis(path) == _analyse(path.read_bytes(), str(path)), path
