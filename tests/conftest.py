"""Suite-wide settings: offline, deterministic AWS environment, whatever the machine has."""

from __future__ import annotations

import os

# Tests never depend on real credentials being present or absent: pin fake ones, a region,
# and no shared config, before any boto3 client is created.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatformTests",
        "POWERTOOLS_SERVICE_NAME": "tests",
    }
)
os.environ.pop("AWS_PROFILE", None)

# Before any botocore session exists: record every AWS call the handlers and jobs make, for the
# permission contract (tests/aws_contract/).
from aws_contract import ledger  # noqa: E402
from aws_contract.recorder import RECORDER  # noqa: E402


# --- Synthesis, shared by every template test -------------------------------------------------
# jsii costs seconds per process, so the whole app (every environment in config/) is built and
# synthesized once per session; tests read the templates and the cdk-nag report from it.

import json  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@dataclass
class Synthesis:
    outdir: Path
    configs: dict  # environment name -> PlatformConfig
    error: str | None
    report: dict
    templates: dict = field(default_factory=dict)  # environment -> stack id -> template dict
    template_files: dict = field(default_factory=dict)  # environment -> stack id -> Path

    def template(self, environment: str, stack: str) -> dict:
        if self.error:
            pytest.fail(f"synthesis failed: {self.error}")
        return self.templates[environment][stack]


def _read_assembly(outdir: Path, synthesis: Synthesis) -> None:
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact in manifest["artifacts"].values():
        if artifact["type"] != "cdk:cloud-assembly":
            continue
        stage_dir = outdir / artifact["properties"]["directoryName"]
        stage = artifact["properties"]["displayName"]
        stage_manifest = json.loads((stage_dir / "manifest.json").read_text())
        for stack_artifact in stage_manifest["artifacts"].values():
            if stack_artifact["type"] != "aws:cloudformation:stack":
                continue
            stack_id = stack_artifact["displayName"].split("/", 1)[1]
            path = stage_dir / stack_artifact["properties"]["templateFile"]
            synthesis.templates.setdefault(stage, {})[stack_id] = json.loads(path.read_text())
            synthesis.template_files.setdefault(stage, {})[stack_id] = path


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory) -> Synthesis:
    from mlops_platform.app_builder import build_app
    from mlops_platform.config import load_environments

    configs = load_environments()
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(configs, outdir=str(outdir), default_rules=True)  # CDK's default rules too, as errors
    error = None
    try:
        app.synth()
    except RuntimeError as exc:  # a failed validation still writes the assembly and the report
        error = str(exc).splitlines()[0]
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    result = Synthesis(outdir, {c.environment: c for c in configs}, error, report)
    if (outdir / "manifest.json").exists():
        _read_assembly(outdir, result)
    return result



@pytest.fixture(scope="session")
def cdk_template(synthesis):
    """``cdk_template(env, stack)`` -> aws_cdk.assertions.Template, built once per pair."""
    from aws_cdk.assertions import Template

    cache: dict = {}

    def get(environment: str, stack: str):
        key = (environment, stack)
        if key not in cache:
            cache[key] = Template.from_json(synthesis.template(environment, stack))
        return cache[key]

    return get


# --- The app with the delivery pipeline enabled ----------------------------------------------
# One `python app.py` subprocess per session with a copy of config/ whose pipeline is enabled
# (made-up tooling account and connection): the real stages inside the pipeline, synthesized and
# nag-checked as `make synth` would. Its tests form their own xdist group, so under `make test` it
# runs beside the in-process synthesis above instead of after it.

DELIVERY_ACCOUNT = "444444444444"
DELIVERY_CONNECTION = ("arn:aws:codeconnections:eu-west-1:444444444444:connection/"
                       "12345678-1234-1234-1234-123456789012")


@dataclass
class DeliverySynthesis:
    outdir: Path
    returncode: int
    stderr: str
    manifest: dict
    template: dict  # the Delivery stack
    account: str = DELIVERY_ACCOUNT
    connection_arn: str = DELIVERY_CONNECTION


@pytest.fixture(scope="session")
def delivery_synthesis(tmp_path_factory) -> DeliverySynthesis:
    import os
    import shutil
    import subprocess
    import sys

    from mlops_platform.paths import REPO_ROOT

    root = tmp_path_factory.mktemp("delivery")
    config_dir = root / "config"
    (config_dir / "delivery").mkdir(parents=True)
    for path in (REPO_ROOT / "config").glob("*.yaml"):
        shutil.copy(path, config_dir / path.name)
    (config_dir / "delivery" / "pipeline.yaml").write_text(
        f'enabled: true\naccount: "{DELIVERY_ACCOUNT}"\nregion: eu-west-1\n'
        f"connection_arn: {DELIVERY_CONNECTION}\nrepository: my-org/mlops-platform\n")
    outdir = root / "cdk.out"
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps({"config_dir": str(config_dir)}),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # node for jsii
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    manifest_path = outdir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    template_path = outdir / "Delivery.template.json"
    template = json.loads(template_path.read_text()) if template_path.exists() else {}
    return DeliverySynthesis(outdir, done.returncode, done.stderr, manifest, template)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under xdist (`make test` runs two workers), every test that reads the synthesized app runs
    on the same worker, so the app is synthesized once, while the other worker runs unit tests;
    likewise the tests of a module sharing a module-scoped fixture."""
    # A module whose tests share a module-scoped fixture runs on one worker, so the fixture is built
    # once, not once per worker (the lifecycle story ran twice: ~12 s). The whole module, because a
    # test may ask for the fixture through request.getfixturevalue, which collection does not see.
    shared = {_module_of(item) for item in items if _uses_a_module_fixture(item)}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "delivery_synthesis" in fixtures:
            item.add_marker(pytest.mark.xdist_group("delivery"))
        elif "synthesis" in fixtures or "cdk_template" in fixtures or _module_of(item).startswith("tests/synth/"):
            # with the synth tests that build their own app: one jsii runtime (node, aws-cdk-lib,
            # CDK's CloudFormation validator) for all of them instead of one per worker
            item.add_marker(pytest.mark.xdist_group("synthesis"))
        elif item.get_closest_marker("xdist_group") is None and _module_of(item) in shared:
            item.add_marker(pytest.mark.xdist_group(f"module:{_module_of(item)}"))
    # Groups first, the ~2,000 short ungrouped tests last: xdist hands out work in this order, so the
    # long groups (the synthesis, the lifecycle story, the delivery synth, the offline install) start
    # early and the short tests even out the end, instead of one worker finishing a long group alone.
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)  # stable: order kept within


def _module_of(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _uses_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info else ()
    return any(d.scope in ("module", "package") for defs in definitions for d in defs)


# --- AWS calls against the permission contract's ledger (tests/aws_contract/ledger.py) ----------

_ledger: set | None = None
_new_entries: set = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test whose handler or job makes an AWS call the ledger lacks fails (or, with
    AWS_CONTRACT_RECORD=1, adds it): the permission contract checks only the calls it knows."""
    global _ledger
    start = len(RECORDER.calls)
    result = yield
    calls = RECORDER.calls[start:]
    if calls:
        if _ledger is None:
            _ledger = ledger.load()
        missing = {ledger.entry(call) for call in calls} - _ledger
        if missing and ledger.recording():
            _new_entries.update(missing)
        elif missing:
            lines = "\n".join(json.dumps(e.as_json()) for e in sorted(missing))
            raise AssertionError(
                f"AWS calls not in the permission contract's ledger ({ledger.LEDGER.name}); "
                f"run `make permissions` to add them:\n{lines}")
    return result


def pytest_sessionfinish(session):
    """With AWS_CONTRACT_RECORD=1: an xdist worker leaves its new entries beside the ledger, and
    the controller (or a run without workers) merges them all into it."""
    if not ledger.recording():
        return
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if worker:
        ledger.save(_new_entries, ledger.LEDGER.with_suffix(f".{worker}.json"))
        return
    parts = sorted(ledger.LEDGER.parent.glob(f"{ledger.LEDGER.stem}.*.json"))
    merged = ledger.load() | _new_entries
    for part in parts:
        merged |= ledger.load(part)
        part.unlink()
    ledger.save(merged)
