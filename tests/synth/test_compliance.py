"""Every environment synthesizes with zero unacknowledged cdk-nag findings and zero cfn-lint errors."""

from __future__ import annotations

import pytest

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
    # imported here: cfn-lint brings sympy and networkx, which the other xdist worker (it collects
    # this module too, but never runs it) would otherwise import and, on a fresh clone, compile
    from cfnlint.api import ManualArgs, lint_file

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


def test_the_test_synthesis_runs_cdks_default_rules_as_errors_and_cdk_synth_leaves_them_out(tmp_path):
    """``build_app`` validates every template against CloudFormation's schemas; CDK's default Rego
    rules (in CDK 2.275 the GameLift fleet rules, warnings in CDK's default setup) fail the
    synthesis ``make test`` runs (``default_rules=True``) and are left out of ``cdk synth``."""
    from aws_cdk import Stack
    from aws_cdk import aws_gamelift as gamelift

    from mlops_platform.app_builder import build_app

    def synthesize(default_rules: bool, outdir) -> None:
        app = build_app([], outdir=str(outdir), default_rules=default_rules)
        gamelift.CfnFleet(Stack(app, "Games"), "Fleet", name="fleet", ec2_instance_type="c5.large",
                          ec2_inbound_permissions=[  # inverted (a default rule), and a port over the schema's range
                              {"fromPort": 2000, "toPort": 1000, "ipRange": "10.0.0.0/8", "protocol": "TCP"},
                              {"fromPort": 2000, "toPort": 70000, "ipRange": "10.0.0.0/8", "protocol": "TCP"}])
        app.synth()

    with pytest.raises(RuntimeError, match=r"CDK-GameLift-001"):
        synthesize(True, tmp_path / "test")
    synthesize(False, tmp_path / "cli")  # the inverted range is left to the test synthesis; the schema still checked
    report = (tmp_path / "cli" / "validation-report.json").read_text()
    assert "F3034" in report and "CDK-GameLift" not in report
