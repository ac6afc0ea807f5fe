"""Lambda: registers a model package approved in the source environment (staging) in this one (prod).

Input: a "SageMaker Model Package State Change" event of a source group (the source account's
rule forwards it to this account's default bus; with one account for all environments the event is
already there). Only ``Approved`` counts; another status, a group not in its settings or an
event from another account than the source's is ``ignored``.

``DescribeModelPackage`` of the source package, then ``CreateModelPackage`` in the target group
(``domain.registry_promotion.promotion_request``): the same image and artifacts, ``PendingManualApproval``,
``promoted-from`` metadata, a ``ClientToken`` from the source ARN. The prod approval of that package
starts prod's deployer as for any package.

Settings: ``settings.model_promotion.PromotionSettings`` (``MLOPS_SETTINGS``: ``{"source_account", "groups":
{source group: target group}}``). A bad event or bad settings are logged and returned as
``{"status": "error", "reason"}``; AWS errors are raised (the rule retries, then the dead-letter
queue).

Returns ``{"status": "promoted", "source", "target"}``, ``ignored`` or ``error``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from mlops_runtime.adapters.model_registry import ModelRegistry
from mlops_runtime.adapters.tracing import entry_point
from mlops_runtime.domain import registry_promotion as promotion
from mlops_runtime.domain.deployment import ApprovalEvent, InvalidEvent
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.base import SettingsError
from mlops_runtime.settings.model_promotion import PromotionSettings

SETTINGS_MODEL = PromotionSettings  # what the stack passes in MLOPS_SETTINGS
logger = Logger()

settings = Lazy(SETTINGS_MODEL.from_env)
registry = Lazy(ModelRegistry)


def configure(adapter: ModelRegistry | None = None) -> None:
    """Inject the adapter (tests); no argument: rebuilt on next use, and the settings read again."""
    registry.set(adapter)
    settings.set(None)


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        approval = ApprovalEvent.from_eventbridge(event)
        config = settings()
    except (InvalidEvent, SettingsError) as error:
        logger.error("Cannot promote", extra={"reason": str(error)})
        return {"status": "error", "reason": str(error)}
    logger.append_keys(source=approval.model_package_arn)
    target_group = config.groups.get(approval.group)
    account = event.get("account")
    if approval.approval_status != "Approved" or target_group is None or account != config.source_account:
        reason = (f"{approval.group} is not promoted here" if target_group is None
                  else f"an approval in account {account}, not {config.source_account}"
                  if account != config.source_account
                  else f"status {approval.approval_status or 'unknown'}, not Approved")
        logger.info("Not promoted", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    source = registry().describe_package(approval.model_package_arn)
    target = registry().create_package(promotion.promotion_request(source, target_group))
    logger.info("Promoted: waiting for this environment's approval", extra={"target": target})
    return {"status": "promoted", "source": approval.model_package_arn, "target": target}


handler = entry_point(_handler, logger)
