"""Ingest records into a Feature Store feature group: validate the whole batch, then ``PutRecord`` each.

Use from a processing step (or any Python code)::

    from mlops_runtime.features.ingest import ingest
    from mlops_runtime.features.schema import InvalidBatch
    from mlops_runtime.settings.features import FeatureIngestSettings
    from mlops_runtime.features.store import Boto3FeatureStoreWriter

    schema = FeatureIngestSettings.model_validate_json(open("schema.json").read()).schema
    try:
        result = ingest(schema, records, Boto3FeatureStoreWriter())  # records: iterable of dicts
    except InvalidBatch as invalid:
        for error in invalid.errors:      # one per bad record; nothing was written
            print(error.message)          # "record 3: feature 'age': expected Integral, got 'abc'"
    else:
        print(result.written)

Each record maps feature names to Python values (``int``, ``float``, ``str``; ``None`` or absent for
optional features); see :mod:`mlops_runtime.features.schema` for the rules. ``target_stores`` is
``None`` (every store the group has) or a list of ``"OnlineStore"`` / ``"OfflineStore"``.

If a write fails after validation (throttling beyond the retries, permissions), :class:`IngestWriteError`
says how many records (the first ``written``) were already stored; resume with ``records[written:]``.
Re-sending a record already written leaves the online store unchanged (same event time) but adds a
duplicate row to the offline store.

Command line (JSON lines in, one object per line)::

    python -m mlops_runtime.features.ingest --schema schema.json --input records.jsonl \\
        [--target-stores OnlineStore OfflineStore] [--dry-run]

Exit codes: 0 written (or valid, with ``--dry-run``); 2 invalid schema, JSON or records (nothing
written; one line per problem on stderr); 1 a write failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops_runtime.features.schema import FeatureGroupSchema, InvalidBatch, validate_batch
from mlops_runtime.features.store import TARGET_STORES, FeatureStoreWriter, check_target_stores


@dataclass(frozen=True)
class IngestResult:
    """Outcome of a successful :func:`ingest`."""

    written: int


class IngestWriteError(RuntimeError):
    """A write failed after validation; ``written`` records (the first ones) were already stored."""

    def __init__(self, written: int, total: int, cause: BaseException) -> None:
        self.written = written
        self.total = total
        super().__init__(
            f"writing record {written} failed after {written} of {total} record(s) were written: {cause}"
        )


def ingest(
    schema: FeatureGroupSchema,
    records: Iterable[Mapping[str, object]],
    writer: FeatureStoreWriter,
    target_stores: list[str] | None = None,
) -> IngestResult:
    """Validate every record against ``schema``, then write each with ``writer``.

    Raises :class:`~mlops_runtime.features.schema.InvalidBatch` (nothing written) if any record is
    invalid, ``ValueError`` for bad ``target_stores``, and :class:`IngestWriteError` if a write fails.
    """
    check_target_stores(target_stores)
    validated = validate_batch(schema, records)
    for position, record in enumerate(validated):
        try:
            writer.put_record(schema.name, record, target_stores)
        except Exception as error:
            raise IngestWriteError(position, len(validated), error) from error
    return IngestResult(written=len(validated))


# --- command line -------------------------------------------------------------------------------


class _InputError(Exception):
    """Bad command-line input; each line of ``problems`` is printed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _load_schema(path: str) -> FeatureGroupSchema:
    """The schema file: the ingest function's settings (``settings.FeatureIngestSettings``)."""
    from pydantic import ValidationError

    from mlops_runtime.settings.features import FeatureIngestSettings

    try:
        return FeatureIngestSettings.model_validate_json(Path(path).read_text(encoding="utf-8")).schema
    except OSError as error:
        raise _InputError([f"{path}: cannot read schema: {error.strerror or error}"]) from None
    except ValidationError as error:
        raise _InputError([f"{path}: {problem['loc'] and '.'.join(map(str, problem['loc'])) + ': ' or ''}"
                           f"{problem['msg'].removeprefix('Value error, ')}"
                           for problem in error.errors(include_url=False)]) from None


def _read_json_lines(path: str) -> tuple[list[object], list[int]]:
    """Records of a JSON-lines file (``-``: stdin) with the line number of each; blank lines are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise _InputError([f"{path}: cannot read input: {error.strerror or error}"]) from None
    except UnicodeDecodeError as error:
        raise _InputError([f"{path}: not UTF-8 text: {error.reason} at byte {error.start}"]) from None
    records: list[object] = []
    line_numbers: list[int] = []
    problems: list[str] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            problems.append(f"line {line_number}: invalid JSON at column {error.colno}: {error.msg}")
            continue
        line_numbers.append(line_number)
    if problems:
        raise _InputError(problems)
    return records, line_numbers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_runtime.features.ingest",
        description="Validate JSON-lines records against a feature group schema, then write them to "
        "Feature Store.",
    )
    parser.add_argument("--schema", required=True, help="feature group schema JSON file")
    parser.add_argument("--input", required=True, help="records, one JSON object per line ('-' for stdin)")
    parser.add_argument("--target-stores", nargs="+", choices=TARGET_STORES, help="default: every store")
    parser.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    return parser


def main(argv: Sequence[str] | None = None, *, writer: FeatureStoreWriter | None = None) -> int:
    """Run the command line and return its exit code; ``writer`` defaults to a Boto3FeatureStoreWriter."""
    args = _parser().parse_args(argv)
    records: list[object] = []
    line_numbers: list[int] = []
    try:
        schema = _load_schema(args.schema)
        records, line_numbers = _read_json_lines(args.input)
        check_target_stores(args.target_stores)
        if args.dry_run:
            count = len(validate_batch(schema, records))  # type: ignore[arg-type]
            print(f"{count} record(s) valid for feature group {schema.name!r}; dry run, nothing written")
            return 0
        if writer is None:
            from mlops_runtime.features.store import Boto3FeatureStoreWriter

            writer = Boto3FeatureStoreWriter()
        result = ingest(schema, records, writer, args.target_stores)  # type: ignore[arg-type]
    except _InputError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    except InvalidBatch as error:
        for invalid in error.errors:
            print(f"line {line_numbers[invalid.index]}: {invalid.detail}", file=sys.stderr)
        print(f"{len(error.errors)} of {len(records)} record(s) invalid; nothing written", file=sys.stderr)
        return 2
    except IngestWriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result.written} record(s) to feature group {schema.name!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
