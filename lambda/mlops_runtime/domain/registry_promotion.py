"""Promotion of an approved model package from one environment's registry to another's (staging -> prod).

Standard library and the shared validation only (no boto3, no I/O); ``handlers.model_promotion``
does the calls.

- The function's settings (``settings.model_promotion.PromotionSettings``: :data:`AccountId`, :data:`GroupName`)
  name the source account and map each source model package group (``<staging prefix>-<group>``,
  in the source account) to the target group of this environment (``<prod prefix>-<group>``); an
  approval event from another account is not promoted.
- :func:`promotion_request` is the ``CreateModelPackage`` request of the target package: the source
  package's inference specification (the same image and the same ``ModelDataUrl``: the artifacts
  stay in the source account's bucket, readable by this account), its model metrics (evaluation
  and training baseline), drift-check baselines, description and metadata, plus the
  ``promoted-from`` metadata naming the source package, and ``PendingManualApproval``: the target
  environment's own approval deploys it.
- The ``ClientToken`` is determined by the source package ARN, so a redelivered approval event
  registers one package.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from mlops_runtime.domain.monitoring_window import PIPELINE_NAME
from mlops_runtime.domain.validation import matching

PENDING = "PendingManualApproval"
PROMOTED_FROM = "promoted-from"
# What a package carries over to its promoted copy (CreateModelPackage takes them as Describe returns them).
COPIED_FIELDS = ("InferenceSpecification", "ModelMetrics", "DriftCheckBaselines", "ModelPackageDescription",
                 "MetadataProperties", "Domain", "Task", "SamplePayloadUrl")
MAX_METADATA = 50  # CustomerMetadataProperties entries
CLIENT_TOKEN_LENGTH = 36  # CreateModelPackage.ClientToken: [a-zA-Z0-9-]{1,36}

GroupName = matching(PIPELINE_NAME, "a model package group name")
AccountId = matching(re.compile(r"^[0-9]{12}$"), "a 12-digit account id")


def client_token(source_arn: str) -> str:
    return hashlib.sha256(source_arn.encode("utf-8")).hexdigest()[:CLIENT_TOKEN_LENGTH]


def promotion_request(source: Mapping[str, Any], target_group: str) -> dict[str, Any]:
    """``CreateModelPackage`` of ``source`` (a ``DescribeModelPackage`` response) into ``target_group``."""
    arn = source.get("ModelPackageArn")
    if not isinstance(arn, str) or not arn:
        raise ValueError("the source package has no ModelPackageArn")
    if not isinstance(source.get("InferenceSpecification"), Mapping):
        raise ValueError(f"{arn} has no InferenceSpecification: nothing to deploy")
    request: dict[str, Any] = {key: source[key] for key in COPIED_FIELDS if source.get(key)}
    metadata = dict(source.get("CustomerMetadataProperties") or {})
    metadata[PROMOTED_FROM] = arn
    if len(metadata) > MAX_METADATA:
        raise ValueError(f"{arn} has {len(metadata) - 1} metadata properties: no room for {PROMOTED_FROM}")
    request.update(
        ModelPackageGroupName=target_group,
        ModelApprovalStatus=PENDING,
        CustomerMetadataProperties=metadata,
        ClientToken=client_token(arn),
    )
    return request
