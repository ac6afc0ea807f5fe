"""Every environment synthesizes with zero unacknowledged cdk-nag findings and zero cfn-lint errors."""

from __future__ import annotations

import pytest
from cfnlint.api import ManualArgs, lint_file

from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()

EXPECTED_PACKS = {"AwsSolutions", "NIST.800.53.R5"}


def test_synthesis_succeeds(synthesis):
    assert synthesis.error is None, synthesis.error
    assert set(synthesis.templates) == set(ENVIRONMENTS)


def test_both_rule_packs_ran(synthesis):
    assert EXPECTED_PACKS <= {plugin["pluginName"] for plugin in synthesis.report["pluginReports"]}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_unacknowledged_nag_findings(synthesis, environment):
    findings = [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in synthesis.report["pluginReports"]
        for violation in plugin.get("violations", [])
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith(f"{environment}/")
    ]
    assert findings == []


def test_every_acknowledgement_has_a_reason(synthesis):
    acknowledged = [
        violation
        for plugin in synthesis.report["pluginReports"]
        for violation in plugin.get("suppressedViolations", [])
    ]
    assert acknowledged, "expected the platform's documented acknowledgements in the report"
    assert all(len(violation.get("reason", "")) >= 20 for violation in acknowledged)


def test_acknowledgements_are_narrow(synthesis):
    """No acknowledgement of ours sits on a stack or stage: each names the construct that needs it."""
    for plugin in synthesis.report["pluginReports"]:
        if plugin["pluginName"] not in EXPECTED_PACKS:
            continue  # CDK's own CloudFormation validation acknowledges e.g. W3010 for pinned AZs
        for violation in plugin.get("suppressedViolations", []):
            where = violation["acknowledgedAt"]
            assert where.count("/") >= 2, f"{violation['acknowledgedId']} acknowledged at {where}"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_cfn_lint_clean(synthesis, environment):
    region = synthesis.configs[environment].region
    files = synthesis.template_files[environment]
    assert {"Foundation", "FeatureStore", "Training", "Serving"} <= set(files)
    errors = [
        f"{stack}: {m.rule.id} {m.message} ({m.path_string})"
        for stack, path in files.items()
        for m in lint_file(path, config=ManualArgs(regions=[region]))
        if m.rule.severity == "error"
    ]
    assert errors == []


def test_an_unacknowledged_finding_fails_synthesis(tmp_path):
    """The gate itself: a bare bucket under the same packs must stop synthesis."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from mlops_platform.compliance import add_compliance_checks

    app = App(outdir=str(tmp_path))
    s3.Bucket(Stack(app, "Bare"), "Bucket")
    add_compliance_checks(app)
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S1"):
        app.synth()
