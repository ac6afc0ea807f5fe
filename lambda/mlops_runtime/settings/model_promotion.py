"""``handlers.model_promotion``'s settings (``PromotionSettings``): ``domain.registry_promotion``'s types."""

from __future__ import annotations

from mlops_runtime.domain.registry_promotion import AccountId, GroupName
from mlops_runtime.settings.base import FunctionSettings


class PromotionSettings(FunctionSettings):
    """``handlers.model_promotion``: approvals of ``source_account`` only (others are refused),
    each source model package group mapped to this environment's group."""

    source_account: AccountId
    groups: dict[GroupName, GroupName]
