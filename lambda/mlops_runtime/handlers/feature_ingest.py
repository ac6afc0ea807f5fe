"""Lambda: validate a batch of records against one feature group and write them to Feature Store.

Event: ``{"records": [{feature: value, ...}, ...], "target_stores": ["OnlineStore", "OfflineStore"]}``
(``target_stores`` optional: default every store of the group).
Environment: ``FEATURE_GROUP_SCHEMA``, the schema as JSON (see ``FeatureGroupSchema.from_dict``).

Returns ``{"written": n}``; ``{"error": "invalid_records", "errors": [{"index", "feature", "reason"}]}``
when any record is invalid (nothing is written; ``index`` is 0-based); or
``{"error": "invalid_request", "message": ...}`` for a malformed event. A failed write raises, so the
invocation fails, after logging how many records were written.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger

from mlops_runtime.features.ingest import IngestWriteError, ingest
from mlops_runtime.features.schema import FeatureGroupSchema, InvalidBatch, SchemaError
from mlops_runtime.features.store import Boto3FeatureStoreWriter, FeatureStoreWriter, check_target_stores

SCHEMA_ENV_VAR = "FEATURE_GROUP_SCHEMA"
EVENT_KEYS = frozenset({"records", "target_stores"})

logger = Logger()

# Built on first use and kept for the life of the execution environment.
_schema: FeatureGroupSchema | None = None
_writer: FeatureStoreWriter | None = None


def feature_group_schema() -> FeatureGroupSchema:
    """The schema from ``FEATURE_GROUP_SCHEMA``, parsed once; a missing or bad value is a deployment error."""
    global _schema
    if _schema is None:
        raw = os.environ.get(SCHEMA_ENV_VAR)
        if not raw:
            raise RuntimeError(f"environment variable {SCHEMA_ENV_VAR} is not set")
        try:
            _schema = FeatureGroupSchema.from_dict(json.loads(raw))
        except (json.JSONDecodeError, SchemaError) as error:
            raise RuntimeError(f"{SCHEMA_ENV_VAR} is not a valid feature group schema: {error}") from error
    return _schema


def feature_store_writer() -> FeatureStoreWriter:
    """The writer; its boto3 client is created on the first write."""
    global _writer
    if _writer is None:
        _writer = Boto3FeatureStoreWriter()
    return _writer


def _invalid_request(message: str) -> dict[str, Any]:
    logger.warning("Rejected malformed event", extra={"reason": message})
    return {"error": "invalid_request", "message": message}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
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
