"""Helpers shared by the controller tests (imported by name: pytest puts this directory on ``sys.path``)."""

from __future__ import annotations

import dataclasses


class Redeployed:
    """The real endpoint control, but every endpoint reports ``config_name`` as its endpoint config
    (and ``variant_weights`` when given): a new deployment as the controller sees it."""

    def __init__(self, inner, config_name, variant_weights=None):
        self.inner, self.config_name, self.variant_weights = inner, config_name, variant_weights

    def describe_endpoint(self, endpoint):
        info = dataclasses.replace(self.inner.describe_endpoint(endpoint), config_name=self.config_name)
        return dataclasses.replace(info, variant_weights=self.variant_weights) if self.variant_weights else info

    def __getattr__(self, name):
        return getattr(self.inner, name)
