"""Bulk indexing (a SageMaker processing job, or a local run): every object under a prefix into one index.

Usage::

    python -m mlops_runtime.search.bulk --index NAME --input s3://bucket/prefix/ \\
        [--report s3://bucket/key.json]

Sharded (a processing job of several instances): each instance indexes the objects whose key
hashes to it (``Shard``; SageMaker's ``/opt/ml/config/resourceconfig.json`` says which instance this
is, ``--shard-index``/``--shard-count`` override it) and writes its own report
(``report.shard-1-of-4.json``). Writes are idempotent (vector keys are ``<document id>#<chunk>``), so a
retried shard replaces what it wrote instead of adding to it. A document id whose versions lie in
objects of different shards ends in either version: keep one document's versions in one object.

``--input`` is an S3 prefix (every object under it is read, streaming, in key order; keys ending in
``/`` or ``.report.json`` are skipped, and so are keys ``search/<other index>/...`` of another
index, so that pointing at the whole ``search/`` prefix indexes only ``--index``'s documents) or a
local file or directory (local runs). ``--report`` (S3 URI or local path; a value ending in ``/``
gets ``<index>.report.json`` appended) receives the JSON report: counts, seconds, the rejected
lines ``{"line", "id"?, "field", "reason", "source"}``, ``status`` and, if the run failed, ``error``.
The summary is also printed on stdout.

Settings: ``domain.search.SearchSettings`` in ``MLOPS_SETTINGS`` (the pipeline definition passes
the indexer's); the run's own choices are arguments (pipeline parameters). Exit status: 0 when the run
completed, even with rejected lines (they are in the report); 1 when the settings, the index, the
input or the report location are unusable, or the embedder or store failed after retries; 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_runtime.adapters.aws_errors import error_text
from mlops_runtime.adapters.embedders import EmbedderError, embedder_for
from mlops_runtime.adapters.vector_store import VectorStoreError, store_for
from mlops_runtime.domain.search import ConfigurationError, SearchSettings
from mlops_runtime.search.indexing import IndexReport, index_lines, iter_lines

DOCUMENTS_ROOT = "search"
RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")  # SageMaker processing: hosts of the job
logger = logging.getLogger("mlops_runtime.search.bulk")


class UsageError(Exception):
    """Bad arguments (exit status 2)."""


class InputError(Exception):
    """Unusable settings, index, input or report location (exit status 1)."""


@dataclass(frozen=True)
class Shard:
    """Instance ``index`` of ``count``: it owns the objects whose key hashes to it."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise UsageError(f"shard {self.index} of {self.count}: need 0 <= index < count")

    def owns(self, key: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(key.encode("utf-8")).digest()  # stable across processes and hosts
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def report_location(self, location: str, index: str) -> str:
        """Where this shard writes its report: one file per shard when there are several."""
        if location.endswith("/"):
            location += f"{index}.report.json"
        if self.count == 1:
            return location
        tag = f"shard-{self.index}-of-{self.count}"
        for ending in (".report.json", ".json"):  # keep the ending: bulk runs skip *.report.json
            if location.endswith(ending):
                return f"{location[: -len(ending)]}.{tag}{ending}"
        return f"{location}.{tag}"


def shard_of_this_instance(resource_config: Path = RESOURCE_CONFIG) -> Shard:
    """This instance's shard from SageMaker's resource config (one shard when there is none)."""
    if not resource_config.is_file():
        return Shard()
    config = json.loads(resource_config.read_text(encoding="utf-8"))
    hosts = sorted(config["hosts"])
    return Shard(hosts.index(config["current_host"]), len(hosts))


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise UsageError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise UsageError(f"no bucket in {uri!r}")
    return bucket, key


def _s3() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5},
                                            connect_timeout=5, read_timeout=60))


def _skip_reason(key: str, index: str) -> str | None:
    if key.endswith("/"):
        return "folder marker"
    if key.endswith(".report.json"):
        return "a report"
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == DOCUMENTS_ROOT and parts[1] != index:
        return f"documents of index {parts[1]!r}"
    return None


def s3_sources(client: Any, uri: str, index: str, skipped: list[dict[str, str]],
               shard: Shard = Shard()) -> Iterator[tuple[str, Any]]:
    """``(s3 URI, streaming body)`` of every object of this shard under the prefix, in key order."""
    bucket, prefix = split_s3_uri(uri)
    paginator = client.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []) or []:
            key = entry["Key"]
            reason = _skip_reason(key, index)
            if reason:
                skipped.append({"source": f"s3://{bucket}/{key}", "reason": reason})
                continue
            found = True
            if not shard.owns(key):
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                yield f"s3://{bucket}/{key}", body
            finally:
                body.close()
    if not found:
        raise InputError(f"no document objects under {uri}")


def local_sources(path: Path, skipped: list[dict[str, str]], shard: Shard = Shard()) -> Iterator[tuple[str, Any]]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        raise InputError(f"no such file or directory: {path}")
    found = False
    for file in files:
        if file.name.endswith(".report.json"):
            skipped.append({"source": str(file), "reason": "a report"})
            continue
        found = True
        if not shard.owns(file.relative_to(path).as_posix() if path.is_dir() else file.name):
            continue
        with file.open("rb") as stream:
            yield str(file), stream
    if not found:
        raise InputError(f"no document files under {path}")


def write_report(location: str, payload: dict[str, Any], s3_client: Any | None) -> str:
    """Write the report to ``location`` (an exact key or path: ``Shard.report_location`` resolves folders)."""
    data = (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        client = s3_client or _s3()
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
    else:
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return location


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_runtime.search.bulk",
        description="Index every document under an S3 prefix (or a local path) into a semantic-search index.",
    )
    parser.add_argument("--index", required=True, help="index name (a key of the settings' indexes)")
    parser.add_argument("--input", required=True, help="s3://bucket/prefix/ or a local file or directory")
    parser.add_argument("--report", help="where to write the JSON report (s3:// URI or a local path)")
    parser.add_argument("--shard-index", type=int, help="this instance's shard (default: from SageMaker's "
                        "resource config, else 0)")
    parser.add_argument("--shard-count", type=int, help="how many shards (default: the job's instance count)")
    return parser


def run(argv: list[str] | None = None, *, environ: dict[str, str] | None = None, s3_client: Any = None,
        embedder: Any = None, store: Any = None) -> int:
    """The command; ``s3_client``, ``embedder`` and ``store`` may be injected (tests)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: 2 on bad arguments, 0 for --help
        return int(exit_.code or 0)
    try:
        if (args.shard_index is None) != (args.shard_count is None):
            raise UsageError("--shard-index and --shard-count go together")
        shard = (shard_of_this_instance() if args.shard_count is None
                 else Shard(args.shard_index, args.shard_count))
        if args.input.startswith("s3://"):
            split_s3_uri(args.input)
        if args.report and args.report.startswith("s3://"):
            split_s3_uri(args.report)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    started = time.monotonic()
    total = IndexReport(args.index)
    skipped: list[dict[str, str]] = []
    sources = 0
    status, failure = "succeeded", None
    try:
        try:
            settings = SearchSettings.from_env(environ).indexes
        except ConfigurationError as error:
            raise InputError(f"unusable settings: {error}") from error
        if args.index not in settings:
            raise InputError(f"unknown index {args.index!r}; configured: {sorted(settings)}")
        index_settings = settings[args.index]
        embedder = embedder or embedder_for(index_settings, input_type="search_document")
        store = store or store_for(index_settings)
        if args.input.startswith("s3://"):
            s3_client = s3_client or _s3()
            iterator = s3_sources(s3_client, args.input, args.index, skipped, shard)
        else:
            iterator = local_sources(Path(args.input), skipped, shard)
        for source, stream in iterator:
            sources += 1
            part = index_lines(iter_lines(stream), index_settings, embedder, store)
            total.merge(part, source)
            logger.info("indexed %s: %s", source, json.dumps(part.summary()))
    except InputError as error:
        status, failure = "failed", str(error)
    except (EmbedderError, VectorStoreError) as error:
        status, failure = "failed", f"{type(error).__name__}: {error}"
    except Exception as error:  # S3 listing/reading (botocore), local I/O
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(error, (BotoCoreError, ClientError, OSError)):
            raise
        status, failure = "failed", error_text(error)
    total.seconds = time.monotonic() - started

    payload = {
        **total.to_dict(),
        "status": status,
        "input": args.input,
        "sources": sources,
        "shard": {"index": shard.index, "count": shard.count},
        "skipped_sources": skipped[:1000],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if failure:
        payload["error"] = failure
    print(json.dumps({k: v for k, v in payload.items() if k not in ("errors", "skipped_sources")}))
    if args.report:
        try:
            where = write_report(shard.report_location(args.report, args.index), payload, s3_client)
            print(f"report: {where}", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - any failure to write the report fails the run
            print(f"error: could not write the report: {error_text(error)}", file=sys.stderr)
            return 1
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
