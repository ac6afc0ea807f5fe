#!/usr/bin/env python3
"""CDK entry point: read the environment configs once, build one stage per environment.

    npx cdk synth '**'              every environment in config/
    npx cdk synth '**' -c env=dev   one environment (comma-separate several)
    -c config_dir=path               read the environment files (and delivery/pipeline.yaml) from another folder
    -c default_rules=true            also run CDK's default validation rules, as errors (make test does)

With config/delivery/pipeline.yaml enabled, the environments are stages of the delivery pipeline.

Nothing below this file reads environment variables or CDK context.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aws_cdk import App

from mlops_platform.app_builder import build_app
from mlops_platform.config import ConfigError, load_environments
from mlops_platform.config.delivery import load_delivery
from mlops_platform.config.loader import CONFIG_DIR


def main() -> int:
    context = App().node  # a throwaway App, only to read -c env=... and -c config_dir=...
    selected = context.try_get_context("env")
    config_dir = context.try_get_context("config_dir")
    default_rules = str(context.try_get_context("default_rules")).lower() == "true"
    names = [name.strip() for name in str(selected).split(",") if name.strip()] if selected else None
    try:
        configs = load_environments(names, Path(config_dir) if config_dir else CONFIG_DIR)
        delivery = load_delivery((Path(config_dir) if config_dir else CONFIG_DIR) / "delivery" / "pipeline.yaml")
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        build_app(configs, delivery=delivery, default_rules=default_rules).synth()
    except RuntimeError as error:  # jsii surfaces synthesis and validation failures this way
        print(str(error).splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
