"""Lambda: validate a batch of records against one feature group and write them to Feature Store.

Event: ``{"records": [{feature: value, ...}, ...], "target_stores": ["OnlineStore", "OfflineStore"]}``
(``target_stores`` optional: default every store of the group).
Settings: ``settings.FeatureIngestSettings`` (the group's schema), read once at cold start.

Returns ``{"written": n}``; ``{"error": "invalid_records", "errors": [{"index", "feature", "reason"}]}``
when any record is invalid (nothing is written; ``index`` is 0-based); or
``{"error": "invalid_request", "message": ...}`` for a malformed event. A failed write raises, so the
invocation fails, after logging how many records were written.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from mlops_runtime.adapters.tracing import NEVER, entry_point
from mlops_runtime.features.ingest import IngestWriteError, ingest
from mlops_runtime.features.schema import FeatureGroupSchema, InvalidBatch
from mlops_runtime.features.store import Boto3FeatureStoreWriter, FeatureStoreWriter, check_target_stores
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.features import FeatureIngestSettings

EVENT_KEYS = frozenset({"records", "target_stores"})

logger = Logger()

SETTINGS_MODEL = FeatureIngestSettings
settings = Lazy(SETTINGS_MODEL.from_env)  # a missing or bad value is a deployment error: the invocation fails
feature_store_writer: Lazy[FeatureStoreWriter] = Lazy(Boto3FeatureStoreWriter)  # its client: on the first write


def feature_group_schema() -> FeatureGroupSchema:
    return settings().schema


def _invalid_request(message: str) -> dict[str, Any]:
    logger.warning("Rejected malformed event", extra={"reason": message})
    return {"error": "invalid_request", "message": message}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    schema = feature_group_schema()
    if not isinstance(event, dict) or not isinstance(event.get("records"), list):
        return _invalid_request("the event must be an object with a 'records' list")
    unknown = sorted(set(event) - EVENT_KEYS)
    if unknown:
        return _invalid_request(
            f"unknown event key(s) {unknown}; expected 'records' and optional 'target_stores'"
        )
    records, target_stores = event["records"], event.get("target_stores")
    try:
        check_target_stores(target_stores)
    except ValueError as error:
        return _invalid_request(str(error))

    context_fields = {"feature_group": schema.name, "records": len(records)}
    try:
        result = ingest(schema, records, feature_store_writer(), target_stores)
    except InvalidBatch as invalid:
        # Reasons may quote values; log positions and feature names only.
        logger.warning(
            "Rejected batch with invalid records; nothing written",
            extra={**context_fields, "invalid": [(e.index, e.feature) for e in invalid.errors[:20]]},
        )
        return {"error": "invalid_records", "errors": [error.to_dict() for error in invalid.errors]}
    except IngestWriteError as error:
        logger.exception("Feature Store write failed", extra={**context_fields, "written": error.written})
        raise
    logger.info("Ingested records", extra={**context_fields, "written": result.written})
    return {"written": result.written}


handler = entry_point(_handler, logger, tracing=NEVER)
