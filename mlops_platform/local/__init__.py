"""A local rehearsal of the platform's API: the real Lambda handlers behind a loopback HTTP server.

- ``python -m mlops_platform.local.server`` (``make local``): a moto server and an HTTP server, both
  on 127.0.0.1 only, that turn each request into an API Gateway REST proxy event and run the real
  inference, feedback and search handlers in-process, against DynamoDB, SQS, Firehose, S3, SNS and
  SageMaker in moto. Only the model container is faked (its answer names the variant that served).
- ``python -m mlops_platform.local.demo`` (``make demo``): traffic, feedback and experiment-controller
  runs against it until the bandit declares a winner, then one search.

See ``docs/local.md``. Nothing here is deployed, and nothing here reaches AWS.

The names below are loaded on first use, so that ``python -m mlops_platform.local.server`` does not
import the module twice.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTROLLER_SETTINGS", "DEFAULT_PORT", "ENDPOINT", "HOST", "SEARCH_INDEX", "LocalPlatform"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
