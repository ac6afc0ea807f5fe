"""Before ``make deploy`` / ``make diff``: credentials for the right account, and a bootstrapped account.

    python -m mlops_platform.tools.preflight dev          an environment (config/dev.yaml)
    python -m mlops_platform.tools.preflight --delivery   the delivery pipeline's tooling account

Without this, the CDK CLI answers a missing login or a missing ``cdk bootstrap`` with a stack
trace or a CloudFormation error minutes later. Here each problem is one line saying what to do,
and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

# The CDK's default bootstrap qualifier, and the oldest bootstrap stack version its default
# synthesizer accepts (the templates' CheckBootstrapVersion rule rejects 1 to 5).
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
MINIMUM_BOOTSTRAP_VERSION = 6
DOCS = "docs/deploying.md"


class PreflightError(Exception):
    """One line: what is wrong and what to do."""


@dataclass(frozen=True)
class Target:
    label: str  # e.g. "config/dev.yaml"
    account: str
    region: str


def _bootstrap_command(target: Target) -> str:
    return f"PATH=$PWD/.venv/bin:$PATH npx cdk bootstrap aws://{target.account}/{target.region}"


def check(target: Target, session: boto3.session.Session) -> str:
    """The caller's identity once credentials and bootstrap are right; raises :class:`PreflightError`."""
    try:
        identity = session.client("sts", region_name=target.region).get_caller_identity()
    except NoCredentialsError:
        raise PreflightError(
            f"no AWS credentials: log in to account {target.account} (e.g. `aws sso login --profile NAME` "
            f"and `export AWS_PROFILE=NAME`), then run this again ({DOCS})"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise PreflightError(
            f"AWS rejected the credentials ({code}): log in again to account {target.account} "
            f"(e.g. `aws sso login --profile NAME`) ({DOCS})"
        ) from None
    except BotoCoreError as error:
        raise PreflightError(f"cannot reach AWS STS in {target.region}: {error}") from None
    caller = identity["Account"]
    if caller != target.account:
        raise PreflightError(
            f"the credentials are for account {caller} but {target.label} deploys to account "
            f"{target.account}: log in to {target.account} (or fix `account` in {target.label})"
        )
    try:
        parameter = session.client("ssm", region_name=target.region).get_parameter(
            Name=BOOTSTRAP_VERSION_PARAMETER)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            raise PreflightError(
                f"account {target.account} is not bootstrapped in {target.region}: run "
                f"`{_bootstrap_command(target)}` once ({DOCS})"
            ) from None
        raise PreflightError(
            f"cannot read {BOOTSTRAP_VERSION_PARAMETER} in {target.region} ({code}): deploy with a role "
            f"that may read it, or check the bootstrap ({DOCS})"
        ) from None
    version = int(parameter["Parameter"]["Value"])
    if version < MINIMUM_BOOTSTRAP_VERSION:
        raise PreflightError(
            f"account {target.account} in {target.region} has CDK bootstrap version {version}, "
            f"{MINIMUM_BOOTSTRAP_VERSION} or later is needed: run `{_bootstrap_command(target)}` again ({DOCS})"
        )
    return identity["Arn"]


def _target(environment: str | None, delivery: bool) -> Target:
    from ..config import load_environments
    from ..config.delivery import load_delivery

    if delivery:
        pipeline = load_delivery()
        if pipeline is None or not pipeline.enabled:
            raise PreflightError("config/delivery/pipeline.yaml: the pipeline is not enabled (set enabled: true "
                                 "and its account, region, connection_arn, repository)")
        return Target("config/delivery/pipeline.yaml", pipeline.account, pipeline.region)
    (config,) = load_environments([environment])
    return Target(f"config/{config.environment}.yaml", config.account, config.region)


def main(argv: list[str] | None = None, session: boto3.session.Session | None = None) -> int:
    from ..config import ConfigError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment", nargs="?", help="environment name (config/<name>.yaml)")
    parser.add_argument("--delivery", action="store_true", help="check the delivery pipeline's account")
    args = parser.parse_args(argv)
    if not args.delivery and not args.environment:
        parser.error("name an environment or pass --delivery")
    try:
        target = _target(args.environment, args.delivery)
        caller = check(target, session or boto3.session.Session())
    except ConfigError as error:  # one line per problem already
        print(error, file=sys.stderr)
        return 2
    except (PreflightError, NoRegionError) as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    print(f"preflight: {caller} may deploy to {target.account}/{target.region} (CDK bootstrap found)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
