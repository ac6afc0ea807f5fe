"""The promotion function's registry calls: ``DescribeModelPackage`` of the source package (in the
source account: allowed by its group's resource policy) and ``CreateModelPackage`` in this
account's group. Retried on throttling and transient errors like the monitoring adapters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_runtime.adapters.monitoring_inputs import _Adapter


class ModelRegistry(_Adapter):
    service = "sagemaker"

    def __init__(self, client: Any | None = None, *, source: ModelRegistry | None = None, **retrying: Any) -> None:
        """``source``: where source packages are described; by default this same client, which
        reaches another account's package by its ARN. (moto resolves an ARN only in the caller's
        own account, so the tests give the source account's client here.)"""
        super().__init__(client, **retrying)
        self._source = source

    def describe_package(self, arn: str) -> dict[str, Any]:
        return (self._source or self)._call("describe_model_package", ModelPackageName=arn)

    def create_package(self, request: Mapping[str, Any]) -> str:
        return self._call("create_model_package", **request)["ModelPackageArn"]
