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
