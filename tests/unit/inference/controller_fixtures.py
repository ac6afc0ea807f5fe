"""Helpers shared by the controller tests (imported by name: pytest puts this directory on ``sys.path``)."""

from __future__ import annotations

import dataclasses


class Redeployed:
    """The real endpoint control, but every endpoint reports ``config_name`` as its endpoint config:
    a new deployment as the controller sees it (moto has no UpdateEndpoint)."""

    def __init__(self, inner, config_name):
        self.inner, self.config_name = inner, config_name

    def describe_endpoint(self, endpoint):
        return dataclasses.replace(self.inner.describe_endpoint(endpoint), config_name=self.config_name)

    def __getattr__(self, name):
        return getattr(self.inner, name)
