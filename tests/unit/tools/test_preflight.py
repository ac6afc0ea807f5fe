"""make deploy / make diff preflight: one line saying what to do, never a stack trace."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from mlops_platform.config import load_environments
from mlops_platform.tools import preflight
from mlops_platform.tools.preflight import BOOTSTRAP_VERSION_PARAMETER

DEV = load_environments(["dev"])[0]


@pytest.fixture
def aws(monkeypatch):
    """moto answering as the dev account."""
    monkeypatch.setenv("MOTO_ACCOUNT_ID", DEV.account)
    with mock_aws():
        yield boto3.client("ssm", region_name=DEV.region)


def run(capsys, *argv, session=None):
    status = preflight.main(list(argv), session=session)
    out, err = capsys.readouterr()
    return status, out, err


def bootstrap(ssm, version="30"):
    ssm.put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value=version, Type="String")


def test_a_bootstrapped_account_with_matching_credentials_passes(aws, capsys):
    bootstrap(aws)
    status, out, err = run(capsys, "dev")
    assert status == 0 and err == ""
    assert f"{DEV.account}/{DEV.region}" in out


def test_no_credentials_is_one_line_saying_to_log_in(monkeypatch, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    status, out, err = run(capsys, "dev")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no AWS credentials" in err and "aws sso login" in err and DEV.account in err


def test_an_account_without_cdk_bootstrap_is_told_the_bootstrap_command(aws, capsys):
    status, _, err = run(capsys, "dev")
    assert status == 2 and err.count("\n") == 1
    assert f"npx cdk bootstrap aws://{DEV.account}/{DEV.region}" in err


def test_an_old_bootstrap_is_told_to_bootstrap_again(aws, capsys):
    bootstrap(aws, version="5")
    status, _, err = run(capsys, "dev")
    assert status == 2 and "version 5" in err and "cdk bootstrap" in err


def test_credentials_for_another_account_are_named(aws, monkeypatch, capsys):
    bootstrap(aws)
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "999999999999")
    status, _, err = run(capsys, "dev")
    assert status == 2 and err.count("\n") == 1
    assert "999999999999" in err and "config/dev.yaml" in err and DEV.account in err


def test_rejected_credentials_are_one_line(capsys):
    from botocore.stub import Stubber

    session = boto3.session.Session()
    sts = session.client("sts", region_name=DEV.region)
    stubber = Stubber(sts)
    stubber.add_client_error("get_caller_identity", service_error_code="ExpiredToken", http_status_code=403)
    stubber.activate()

    class OneClient:
        def client(self, service, region_name):
            return sts

    status, _, err = run(capsys, "dev", session=OneClient())
    assert status == 2 and err.count("\n") == 1 and "ExpiredToken" in err and "log in again" in err


def test_an_unknown_environment_is_the_config_error_line(capsys):
    status, _, err = run(capsys, "nosuchenv")
    assert status == 2 and "Traceback" not in err and "nosuchenv" in err


def test_the_pipeline_preflight_says_when_the_pipeline_is_off(capsys):
    status, _, err = run(capsys, "--delivery")
    assert status == 2 and "not enabled" in err


def test_make_deploy_and_diff_run_the_preflight_before_the_cdk():
    from pathlib import Path

    lines = (Path(__file__).parents[3] / "Makefile").read_text().splitlines()
    for target, argument in (("deploy", "$(ENV)"), ("diff", "$(ENV)"), ("deploy-pipeline", "--delivery")):
        start = lines.index(next(line for line in lines if line.startswith(f"{target}:")))
        recipe = lines[start + 1].strip()
        assert recipe == f"@$(BIN)/python -m mlops_platform.tools.preflight {argument}", target
