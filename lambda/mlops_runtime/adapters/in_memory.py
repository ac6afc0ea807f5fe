"""In-memory stand-ins for the platform's DynamoDB tables, for the lifecycle simulation and tests.

Kept out of the adapters the handlers import, so a cold start never loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bisect
import json
import math

from mlops_runtime.adapters.experiments_store import DuplicateInferenceId, StateConflict
from mlops_runtime.adapters.feedback_store import InMemoryFeedbackStore
from mlops_runtime.domain.rounds import ArmCounts, parse_statistics_key, round_prefix, sum_rows


class InMemoryExperimentsStore(InMemoryFeedbackStore):
    """The three tables (predictions, statistics, state) in memory: an :class:`ExperimentsStore` for
    the inference API and the controller AND the feedback API's store (``InMemoryFeedbackStore``),
    sharing the statistics rows as the DynamoDB tables do. Values go through the DynamoDB
    attribute round trip's equivalent (``stored_copy``; a state is kept as its JSON text, parsed on
    each read: one encode per write and one decode per read), so handlers read what DynamoDB would return;
    a contract test runs the same operations against both (``tests/unit/inference/test_store_contract.py``).
    For the lifecycle simulation and tests (a moto transaction copies the table: too slow for weeks
    of traffic)."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, tuple[int, str]] = {}  # experiment -> (version, the state's JSON text)
        self.statistics = RoundIndexedRows()  # the feedback side adds rows through setdefault

    def record_prediction(self, item: Mapping[str, Any], experiment: str, row_key: str | None) -> None:
        stored = stored_copy(item)
        with self._lock:
            if stored["inference_id"] in self.predictions:
                raise DuplicateInferenceId(stored["inference_id"])
            self.predictions[stored["inference_id"]] = stored
            if row_key is not None:
                parse_statistics_key(row_key)  # as the DynamoDB adapter, refuse a malformed key
                row = self.statistics.setdefault(
                    (experiment, row_key), {"reward_sum": 0.0, "reward_sq_sum": 0.0, "feedback_count": 0})
                row["invocations"] = row.get("invocations", 0) + 1

    def arm_counts(self, experiment: str, round_id: int, served_before: float | None = None
                   ) -> dict[str, ArmCounts]:
        prefix = round_prefix(round_id)
        with self._lock:
            rows = [(key, dict(self.statistics[(experiment, key)]))
                    for key in self.statistics.keys_of(experiment, prefix)]
        return sum_rows(rows, round_id, served_before)

    def read_state(self, experiment: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self.states.get(experiment)
        return json.loads(stored[1]) if stored is not None else None

    def write_state(self, experiment: str, state: Mapping[str, Any], expected_version: int) -> int:
        version = int(expected_version) + 1
        with self._lock:
            stored = self.states.get(experiment)
            if (stored is None) != (not expected_version) or (stored is not None and stored[0] != expected_version):
                raise StateConflict(f"experiment {experiment!r} state is no longer version {expected_version}")
            self.states[experiment] = (version, stored_text({**state, "experiment": experiment, "version": version}))
        return version


class RoundIndexedRows(dict):
    """Statistics rows ``{(experiment, round_arm_hour): row}`` that also know each round's keys,
    as the table's key prefix query finds them (a round's evidence is read every controller run)."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[tuple[str, str], list[str]] = {}

    def _index(self, key: tuple[str, str]) -> None:
        experiment, row_key = key
        self._keys.setdefault((experiment, row_key.split("#", 1)[0] + "#"), []).append(row_key)

    def __setitem__(self, key: tuple[str, str], value: Any) -> None:
        if key not in self:
            self._index(key)
        super().__setitem__(key, value)

    def setdefault(self, key: tuple[str, str], default: Any = None) -> Any:
        if key not in self:
            self._index(key)
        return super().setdefault(key, default)

    def keys_of(self, experiment: str, prefix: str) -> list[str]:
        return list(self._keys.get((experiment, prefix), ()))


SCALARS = (str, int, float, bool, type(None))


def stored_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    """What reading ``values`` back from DynamoDB gives (``experiments_store.to_item``/``from_item``):
    ints stay ints, floats floats, tuples become lists, keys strings, non-finite numbers are refused.
    A flat item (a prediction record) is copied as it is; anything nested by a JSON round trip."""
    if all(isinstance(key, str) and isinstance(value, SCALARS) for key, value in values.items()):
        if any(isinstance(value, float) and not math.isfinite(value) for value in values.values()):
            raise ValueError("DynamoDB cannot store a non-finite number")
        return dict(values)
    return json.loads(stored_text(values))


def stored_text(values: Mapping[str, Any]) -> str:
    """``values`` as JSON, whose parse is :func:`stored_copy`'s (non-finite numbers refused)."""
    return json.dumps(values, allow_nan=False)


class InMemoryS3Objects:
    """The monitoring adapters' ``S3Objects`` over a dict of buckets (``{bucket: {key: body}}``):
    folders below a prefix (as ``Delimiter="/"`` lists them), keys below a prefix in key order,
    gzip bodies decompressed on read. Checked against ``S3Objects`` on moto by
    ``tests/unit/monitoring_launcher/test_in_memory_s3.py``."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, bytes]] = {}
        self._sorted: dict[str, list[str]] = {}  # bucket -> its keys in order (S3 lists in key order)

    def _below(self, bucket: str, prefix: str) -> list[str]:
        keys = self._sorted.get(bucket, [])
        start = bisect.bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return keys[start:end]

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        folders = {prefix + key[len(prefix):].split("/", 1)[0] + "/"
                   for key in self._below(bucket, prefix) if "/" in key[len(prefix):]}
        return sorted(folders)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        return self._below(bucket, prefix)

    def get_object(self, bucket: str, key: str) -> bytes:
        body = self.buckets[bucket][key]
        if body[:2] == b"\x1f\x8b":
            import gzip

            body = gzip.decompress(body)
        return body

    def put_object(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        objects = self.buckets.setdefault(bucket, {})
        if key not in objects:
            bisect.insort(self._sorted.setdefault(bucket, []), key)
        objects[key] = bytes(body)
