"""Lambda: index a small drop of documents into a semantic-search index. Contract: ``docs/search.md``.

Event: EventBridge ``Object Created`` from S3 (``detail.bucket.name``, ``detail.object.key``), or a
classic S3 notification (``Records[].s3.bucket.name``, ``Records[].s3.object.key``). Documents live at
``s3://<bucket>/search/<index>/<anything>.jsonl``: the index is the second path segment. Other keys,
and indexes not in the settings, are logged and ignored. The object is read as a stream of
JSON lines and indexed by ``search.indexing.index_lines`` (bad lines are reported, not fatal); the
report goes to ``s3://<report_bucket>/<report_prefix><index>/<source key>.report.json``.

Returns the report summary ``{"status": "indexed", "index", "source", "report", "documents", "chunks",
"deleted", "rejected", "lines", "seconds"}`` (``{"status": "ignored", "reason", ...}`` for an ignored
object); for an S3 notification (``Records``), ``{"results": [...]}``, one per record. Metrics
(namespace ``POWERTOOLS_METRICS_NAMESPACE``): ``DocumentsIndexed``, ``ChunksIndexed``,
``DocumentsDeleted``, ``DocumentsRejected``, ``ObjectsIgnored``, ``IndexingFailures`` (zero counts
are not sent). An AWS failure that outlasts the retries (embedder, vector store, S3) raises, so
that EventBridge's retries and the function's dead-letter queue apply; indexing is idempotent, so a
retry redoes the object safely.

Settings: ``domain.search.SearchSettings`` (the indexes, ``report_bucket`` (required here) and
``report_prefix``). Read on the first event, not at import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.tracing import NEVER, entry_point, powertools
from mlops_runtime.adapters.embedders import Embedder, embedder_for
from mlops_runtime.adapters.vector_store import VectorStore, store_for
from mlops_runtime.domain.search import DEFAULT_REPORT_PREFIX, ConfigurationError, IndexSettings, SearchSettings
from mlops_runtime.lazy import Lazy
from mlops_runtime.search.adapter_cache import IndexAdapterCache
from mlops_runtime.search.indexing import IndexReport, index_lines, iter_lines

DOCUMENTS_PREFIX = "search/"
DOCUMENT_SUFFIX = ".jsonl"

logger, metrics = powertools()


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5},
                                            connect_timeout=2, read_timeout=30))


SETTINGS_MODEL = SearchSettings


@dataclass
class Runtime(IndexAdapterCache):
    """Settings and adapters of the function, built on the first event and kept."""

    settings: dict[str, IndexSettings]
    report_bucket: str
    report_prefix: str = DEFAULT_REPORT_PREFIX
    s3: Any = None
    embedder_factory: Callable[[IndexSettings], Embedder] = embedder_for  # search_document input type
    store_factory: Callable[[IndexSettings], VectorStore] = store_for
    embedders: dict[str, Embedder] = field(default_factory=dict)
    stores: dict[str, VectorStore] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        settings = SETTINGS_MODEL.from_env(environ)
        if not settings.report_bucket:
            raise ConfigurationError("report_bucket", "is not set: the indexer writes its reports there")
        return cls(settings.indexes, settings.report_bucket, settings.report_prefix)

    def client(self) -> Any:
        if self.s3 is None:
            self.s3 = _s3_client()
        return self.s3


runtime = Lazy(Runtime.from_env)
configure = runtime.set  # tests, local runs; None: rebuild from the environment on next use


# --- events ---------------------------------------------------------------------------------------


def objects_of(event: Any) -> tuple[list[tuple[str, str]], bool]:
    """``([(bucket, key as sent)], several?)`` of an EventBridge or S3-notification event; ValueError else."""
    if isinstance(event, dict) and isinstance(event.get("detail"), dict):
        detail = event["detail"]
        bucket = (detail.get("bucket") or {}).get("name")
        key = (detail.get("object") or {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str) and bucket and key:
            return [(bucket, key)], False
        raise ValueError("EventBridge event without detail.bucket.name and detail.object.key")
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        found = []
        for record in event["Records"]:
            s3 = record.get("s3") if isinstance(record, dict) else None
            bucket = ((s3 or {}).get("bucket") or {}).get("name")
            key = ((s3 or {}).get("object") or {}).get("key")
            if not (isinstance(bucket, str) and isinstance(key, str) and bucket and key):
                raise ValueError("S3 notification record without s3.bucket.name and s3.object.key")
            found.append((bucket, key))
        return found, True
    raise ValueError("not an S3 Object Created event (EventBridge) nor an S3 notification")


def index_of(key: str) -> str | None:
    """The index of a document key ``search/<index>/<anything>.jsonl``; None for any other key."""
    if not key.startswith(DOCUMENTS_PREFIX) or not key.endswith(DOCUMENT_SUFFIX):
        return None
    parts = key.split("/")
    if len(parts) < 3 or not parts[1]:
        return None
    return parts[1]


def _key_candidates(key: str) -> list[str]:
    """S3 notifications URL-encode keys (space -> '+'); try the decoded key, then the key as sent."""
    decoded = unquote_plus(key)
    return [decoded] if decoded == key else [decoded, key]


def _count(name: str, value: int) -> None:
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _ignored(reason: str, bucket: str, key: str) -> dict[str, Any]:
    _count("ObjectsIgnored", 1)
    logger.warning("Object ignored", extra={"reason": reason, "bucket": bucket, "key": key})
    return {"status": "ignored", "reason": reason, "source": f"s3://{bucket}/{key}"}


def _open(rt: Runtime, bucket: str, key: str) -> tuple[str, Any] | None:
    """``(key, streaming body)``; None when the object no longer exists. Without ``s3:ListBucket`` S3
    answers AccessDenied for a missing key: that is tried with the next candidate, then raised."""
    from botocore.exceptions import ClientError

    candidates = _key_candidates(key)
    for position, candidate in enumerate(candidates):
        try:
            return candidate, rt.client().get_object(Bucket=bucket, Key=candidate)["Body"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            last = position == len(candidates) - 1
            if code in ("NoSuchKey", "404") or (code in ("AccessDenied", "403") and not last):
                continue
            raise
    return None


def process_object(rt: Runtime, bucket: str, sent_key: str) -> dict[str, Any]:
    key = unquote_plus(sent_key)
    index = index_of(key) or index_of(sent_key)
    if index is None:
        reason = f"not a document drop ({DOCUMENTS_PREFIX}<index>/<name>{DOCUMENT_SUFFIX})"
        return _ignored(reason, bucket, sent_key)
    if index not in rt.settings:
        return _ignored(f"unknown index {index!r}; configured: {sorted(rt.settings)}", bucket, sent_key)
    opened = _open(rt, bucket, sent_key)
    if opened is None:
        return _ignored("the object no longer exists", bucket, sent_key)
    key, body = opened
    source = f"s3://{bucket}/{key}"
    try:
        report: IndexReport = index_lines(
            iter_lines(body), rt.settings[index], rt.embedder(index), rt.store(index)
        )
    finally:
        body.close()
    report_key = f"{rt.report_prefix}{index}/{key}.report.json"
    payload = {**report.to_dict(), "source": source}
    rt.client().put_object(
        Bucket=rt.report_bucket, Key=report_key, ContentType="application/json",
        Body=(json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
    )
    _count("DocumentsIndexed", report.documents)
    _count("ChunksIndexed", report.chunks)
    _count("DocumentsDeleted", report.deleted)
    _count("DocumentsRejected", report.rejected)
    summary = {"status": "indexed", **report.summary(), "source": source,
               "report": f"s3://{rt.report_bucket}/{report_key}"}
    (logger.warning if report.rejected else logger.info)(
        "Documents indexed", extra={**summary, "first_errors": report.errors[:5]}
    )
    return summary


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        objects, several = objects_of(event)
    except ValueError as error:
        _count("ObjectsIgnored", 1)
        logger.error("Unrecognised event ignored", extra={"reason": str(error)})
        return {"status": "ignored", "reason": str(error)}
    results = []
    for bucket, key in objects:
        try:
            results.append(process_object(runtime(), bucket, key))
        except Exception:
            metrics.add_metric(name="IndexingFailures", unit=MetricUnit.Count, value=1)
            logger.exception("Indexing failed; the event will be retried",
                             extra={"bucket": bucket, "key": key})
            raise
    return {"results": results} if several else results[0]


handler = entry_point(_handler, logger, metrics, tracing=NEVER, log_event=False)
