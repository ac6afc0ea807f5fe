"""Shard partials of the monitoring job: what one instance of a sharded job writes, and the merge.

A sharded job (``monitor.py --shard-output``) runs on N instances, each reading the capture files
``ShardedByS3Key`` gave it and *all* of the window's ground truth (replicated to every instance).
Each instance writes ONE file, ``<host>.partial.npz`` (numpy's zip of arrays, read with
``allow_pickle=False``: nothing in it is executable), holding

* ``meta`` (UTF-8 JSON): the scanner's listing counts; the ground-truth statistics and issues (the
  same on every shard); the baseline's fingerprint; per capture file its name, counters, issues,
  drift statistics (the accumulators' state: counts, histograms, moments) and where its joined
  pairs lie in the shard's quality arrays; the shard's join counters;
* the shard's label join, already done: per variant the joined (truth, predicted class, score)
  arrays in the shard's file order, and a journal of the labels it used (inference id, variant,
  outcome, entries, file).

The merge step (``monitor.py --partials-dir``) reads neither capture files nor labels: it folds the
files' drift statistics in global path order (as one pass does, so floating-point sums are
identical) and concatenates the files' quality segments in the same order.

A label's prediction may be in any shard's file, since every shard joins against all labels. What
one pass does that shards cannot see alone is the "first captured record with that id wins" rule
across shards: a label used in two shards (the same inference id captured in files of two shards,
e.g. a client retrying with its id) counts once, for the record in the earlier file; the merge
finds such ids (64-bit hashes, confirmed on the ids themselves), drops the later record's pairs
and counts it ``records_without_label``, as one pass would. ``labels_without_prediction`` is the
labels minus the distinct ids used in all shards.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np

try:
    from . import capture, quality
except ImportError:  # run as a script from a flat code directory (the processing job)
    import capture  # type: ignore[no-redef]
    import quality  # type: ignore[no-redef]

SUFFIX = ".partial.npz"
FORMAT = 2

# Attributes of the drift accumulators set from the baseline at construction: the merge step
# builds fresh accumulators from the same baseline, so only the rest (what reading changes) is
# written. Anything not listed is written, so a new counter cannot be forgotten silently.
_CONSTANT = {
    "NumericDrift": {"name", "spec", "edges", "baseline_counts"},
    "CategoricalDrift": {"name", "baseline"},
    "PredictionDrift": {"problem_type", "score_threshold", "baseline_classes", "reference_classes"},
    "TextDrift": {"name", "tokens", "index", "oov", "baseline_counts", "cell_of", "cells", "reference_cells"},
    "DriftAccumulator": {"problem_type", "score_threshold", "issues", "names", "all_numeric", "numeric_columns",
                         "other_columns", "document_feature"},  # document_feature: features[0] itself
}
_JOIN_COUNTERS = ("labels_used", "joined_records", "records_without_label", "records_without_prediction",
                  "count_mismatch")


class PartialError(ValueError):
    """A partial that cannot be used (unreadable, another format, baseline or problem type)."""


# --- drift accumulator state ------------------------------------------------------------------


def _attributes(obj: object) -> dict:
    slots = getattr(type(obj), "__slots__", None)
    if slots is not None:
        return {name: getattr(obj, name) for name in slots}
    constant = _CONSTANT.get(type(obj).__name__, set())
    return {name: value for name, value in vars(obj).items() if name not in constant}


def encode_state(value: object) -> object:
    """A drift accumulator's mutable state as JSON values (floats round-trip exactly)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"ndarray": value.dtype.str, "values": value.tolist()}
    if isinstance(value, Counter):  # insertion order matters (unseen categories beyond the cap)
        return {"counter": [[key, count] for key, count in value.items()]}
    if isinstance(value, list):
        return [encode_state(item) for item in value]
    if type(value).__module__.split(".")[-1] == "drift":
        return {"object": {name: encode_state(item) for name, item in _attributes(value).items()}}
    raise TypeError(f"cannot write {type(value).__name__} into a shard partial")


def load_state(target: object, state: dict) -> None:
    """Set a freshly built accumulator (same baseline) to an encoded state."""
    for name, value in state.items():
        current = getattr(target, name)
        if isinstance(value, dict) and "object" in value:
            if current is None:
                raise PartialError(f"{type(target).__name__}.{name}: the shard has statistics the baseline does not")
            load_state(current, value["object"])
        elif isinstance(value, dict) and "ndarray" in value:
            setattr(target, name, np.array(value["values"], dtype=np.dtype(value["ndarray"])))
        elif isinstance(value, dict) and "counter" in value:
            setattr(target, name, Counter({key: count for key, count in value["counter"]}))
        elif isinstance(value, list) and isinstance(current, list) and all(
                isinstance(item, dict) and "object" in item for item in value):
            if len(value) != len(current):
                raise PartialError(f"{type(target).__name__}.{name}: {len(value)} items, the baseline has {len(current)}")
            for item, encoded in zip(current, value):
                load_state(item, encoded["object"])
        else:
            setattr(target, name, value)


# --- writing (shard mode) ---------------------------------------------------------------------


def _file_entry(result: dict) -> dict:
    file = result["file"]
    return {
        "path": str(file.path), "label": file.label, "endpoint": file.endpoint, "variant": file.variant,
        "hour": file.hour.isoformat() if file.hour is not None else None, "hour_inside": file.hour_inside,
        "counters": result["counters"],
        "issues": {"counts": result["issues"].counts, "examples": result["issues"].examples},
        # a file without records is not folded (monitor.run): its statistics are not needed
        "drift": encode_state(result["drift"]) if result["counters"].get("records") else None,
        "segments": result.get("segments", {}),
        "journal": result.get("journal", [0, 0]),
    }


def id_hashes(ids: list) -> np.ndarray:
    """64-bit hashes of inference ids (UTF-8 bytes; BLAKE2b), to find ids used by several shards."""
    digest = b"".join(hashlib.blake2b(key, digest_size=8).digest() for key in ids)
    return np.frombuffer(digest, dtype="<u8")


def shard_join(files: list, labels: "dict | None", problem_type: str, min_labels: int,
               score_threshold: float) -> "quality.QualityJoin | None":
    """Join one shard's labelled records in its file order (a journal of the labels used), noting on
    each file result where its pairs and journal rows lie."""
    if labels is None:
        return None
    join = quality.QualityJoin(labels, problem_type, min_labels, score_threshold)
    join.journal = []
    for result in files:
        before = {name: accumulator.count for name, accumulator in join.variants.items()}
        first_row = len(join.journal)
        for inference_id, variant, outputs in result["matches"]:
            join.add(inference_id, variant, outputs)
        result["segments"] = {name: [before.get(name, 0), accumulator.count]
                              for name, accumulator in join.variants.items()
                              if accumulator.count != before.get(name, 0)}
        result["journal"] = [first_row, len(join.journal)]
    return join


def write(path: Path, partial: dict, join: "quality.QualityJoin | None", ground_truth: dict,
          ground_truth_issues: "capture.Issues", problem_type: str, baseline_id: str) -> Path:
    """Write one shard's partial (``partial``: ``monitor.read_shard``'s result, after
    :func:`shard_join`) to ``path``."""
    arrays: dict = {}
    variants = sorted(join.variants) if join is not None else []
    meta = {
        "format": FORMAT, "problem_type": problem_type, "baseline_id": baseline_id,
        "listing": partial["listing"], "ground_truth": ground_truth,
        "ground_truth_issues": {"counts": ground_truth_issues.counts, "examples": ground_truth_issues.examples},
        "labels_total": join.labels_total if join is not None else None,
        "join": {name: getattr(join, name) for name in _JOIN_COUNTERS} if join is not None else None,
        "variants": variants,
        "unusable": [join.variants[name].unusable_predictions for name in variants],
        "files": [_file_entry(result) for result in partial["files"]],
    }
    for index, name in enumerate(variants):
        arrays[f"truth_{index}"], arrays[f"predicted_{index}"], arrays[f"scores_{index}"] = join.variants[name].arrays()
    journal = join.journal if join is not None else []
    ids = [row[0].encode("utf-8") for row in journal]
    code = {name: index for index, name in enumerate(variants)}
    file_of_row = np.zeros(len(journal), dtype=np.int32)
    for index, result in enumerate(partial["files"]):
        first, last = result.get("journal", (0, 0))
        file_of_row[first:last] = index
    arrays.update(
        journal_hash=id_hashes(ids),
        journal_ids=np.frombuffer(b"".join(ids), dtype=np.uint8),
        journal_id_offsets=np.concatenate([[0], np.cumsum([len(key) for key in ids], dtype=np.int64)]).astype(np.int64),
        journal_variant=np.array([code.get(row[1], -1) for row in journal], dtype=np.int32),
        journal_outcome=np.array([row[2] for row in journal], dtype=np.int8),
        journal_start=np.array([row[3] for row in journal], dtype=np.int64),
        journal_count=np.array([row[4] for row in journal], dtype=np.int64),
        journal_unusable=np.array([row[5] for row in journal], dtype=np.int64),
        journal_file=file_of_row,
    )
    arrays["meta"] = np.frombuffer(json.dumps(meta, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


# --- reading and merging (merge mode) -----------------------------------------------------------


def _load(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise PartialError(f"{path}: cannot read the shard partial ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PartialError(f"{path}: not a shard partial of format {FORMAT}")
    return {"path": path, "meta": meta, "arrays": arrays}


def _issues(state: dict) -> "capture.Issues":
    issues = capture.Issues()
    issues.counts = dict(state["counts"])
    issues.examples = list(state["examples"])
    return issues


def _capture_file(entry: dict) -> "capture.CaptureFile":
    hour = datetime.fromisoformat(entry["hour"]) if entry["hour"] else None
    return capture.CaptureFile(Path(entry["path"]), entry["label"], entry["endpoint"], entry["variant"], hour,
                               entry["hour_inside"])


def find(directory: Path) -> list:
    return capture.find_files(directory, (f"*{SUFFIX}",)) if directory.is_dir() else []


def merge_joins(shards: list, rank: dict, problem_type: str, min_labels: int,
                score_threshold: float) -> "quality.QualityJoin | None":
    """One join equal to a single pass's from the shards' joins (see the module docstring).
    ``rank``: global path-order position of every capture file name."""
    totals = {shard["meta"]["labels_total"] for shard in shards}
    if totals == {None}:
        return None
    if len(totals) != 1:
        raise PartialError(f"the shards read different ground truth ({sorted(map(str, totals))} labels)")
    # every used label: (hash, global file position, shard, row)
    hashes = np.concatenate([shard["arrays"]["journal_hash"] for shard in shards])
    positions = np.concatenate([
        np.array([rank[entry["label"]] for entry in shard["meta"]["files"]], dtype=np.int64)[shard["arrays"]["journal_file"]]
        if shard["meta"]["files"] else np.zeros(0, dtype=np.int64) for shard in shards])
    owners = np.concatenate([np.full(shard["arrays"]["journal_hash"].size, index, dtype=np.int64)
                             for index, shard in enumerate(shards)])
    rows = np.concatenate([np.arange(shard["arrays"]["journal_hash"].size, dtype=np.int64) for shard in shards])
    # labels used in several shards: the record in the earliest file keeps it, the others lose it
    losers: list = []
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    repeated = np.zeros(ordered.size, dtype=bool)
    if ordered.size > 1:
        same = ordered[1:] == ordered[:-1]
        repeated[1:] |= same
        repeated[:-1] |= same
    groups: dict = {}
    for index in order[repeated].tolist():
        arrays = shards[owners[index]]["arrays"]
        offsets = arrays["journal_id_offsets"]
        key = arrays["journal_ids"][offsets[rows[index]]:offsets[rows[index] + 1]].tobytes()
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=lambda index: positions[index])
            losers.extend(members[1:])

    join = quality.QualityJoin({}, problem_type, min_labels, score_threshold)
    join.labels_total = totals.pop()
    for name in _JOIN_COUNTERS:
        setattr(join, name, sum(shard["meta"]["join"][name] for shard in shards))
    # undo what each losing record did with the label, and count it as one pass would: no label left
    masks = [{} for _ in shards]
    unusable: dict = {}
    joined_per_variant: Counter = Counter()
    for index, shard in enumerate(shards):
        arrays, names = shard["arrays"], shard["meta"]["variants"]
        for code, count in zip(*np.unique(arrays["journal_variant"][arrays["journal_outcome"] == quality.JOINED],
                                          return_counts=True)):
            joined_per_variant[names[code]] += int(count)
        for code, name in enumerate(names):
            unusable[name] = unusable.get(name, 0) + shard["meta"]["unusable"][code]
    for index in losers:
        shard = shards[owners[index]]
        arrays, row = shard["arrays"], rows[index]
        outcome = int(arrays["journal_outcome"][row])
        join.labels_used -= 1
        join.records_without_label += 1
        if outcome == quality.NO_PREDICTION:
            join.records_without_prediction -= 1
        elif outcome == quality.COUNT_MISMATCH:
            join.count_mismatch -= 1
        else:
            join.joined_records -= 1
            code = int(arrays["journal_variant"][row])
            name = shard["meta"]["variants"][code]
            joined_per_variant[name] -= 1
            unusable[name] -= int(arrays["journal_unusable"][row])
            mask = masks[owners[index]].get(code)
            if mask is None:
                mask = masks[owners[index]][code] = np.ones(arrays[f"truth_{code}"].size, dtype=bool)
            start = int(arrays["journal_start"][row])
            mask[start:start + int(arrays["journal_count"][row])] = False
    # each variant's pairs: the files' segments in global path order
    segments: dict = {}
    for index, shard in enumerate(shards):
        names = shard["meta"]["variants"]
        for entry in shard["meta"]["files"]:
            for name, (start, end) in entry["segments"].items():
                segments.setdefault(name, []).append((rank[entry["label"]], index, names.index(name), start, end))
    # (regression keeps no predicted classes: its "predicted" arrays are empty)
    kinds = {"truth": np.int8 if problem_type == "binary" else np.float64, "scores": np.float64,
             **({"predicted": np.int8} if problem_type == "binary" else {})}
    for name in sorted(name for name, count in joined_per_variant.items() if count > 0):
        parts: dict = {part: [np.zeros(0, dtype)] for part, dtype in kinds.items()}
        for _, index, code, start, end in sorted(segments.get(name, [])):
            arrays = shards[index]["arrays"]
            mask = masks[index].get(code)
            for part in kinds:
                values = arrays[f"{part}_{code}"][start:end]
                parts[part].append(values if mask is None else values[mask[start:end]])
        empty = np.zeros(0, np.int8)
        join.variants[name] = quality.QualityAccumulator.from_arrays(
            problem_type, min_labels, score_threshold, np.concatenate(parts["truth"]),
            np.concatenate(parts["predicted"]) if "predicted" in parts else empty,
            np.concatenate(parts["scores"]), unusable[name],
        )
    return join


def read(directory: Path, accumulator, problem_type: str, baseline_id: str, min_labels: int,
         score_threshold: float) -> dict:
    """The shards' partials below ``directory`` merged: ``listing``, ``files`` (per-file results in
    global path order, drift statistics rebuilt with ``accumulator()``), ``ground_truth`` and its
    ``ground_truth_issues``, and ``join`` (a :class:`quality.QualityJoin` ready for ``result()``, or
    ``None`` without labels)."""
    paths = find(directory)
    if not paths:
        raise PartialError(f"{directory}: no shard partials (*{SUFFIX})")
    shards = [_load(path) for path in paths]
    for shard in shards:
        meta = shard["meta"]
        if meta["problem_type"] != problem_type:
            raise PartialError(f"{shard['path']}: a {meta['problem_type']} shard, merging as {problem_type}")
        if meta["baseline_id"] != baseline_id:
            raise PartialError(f"{shard['path']}: the shard read another baseline")
    first = shards[0]["meta"]
    for shard in shards[1:]:
        if shard["meta"]["ground_truth"] != first["ground_truth"]:
            raise PartialError(f"{shard['path']}: the shards read different ground truth")
    entries = [entry for shard in shards for entry in shard["meta"]["files"]]
    rank: dict = {}
    for position, label in enumerate(sorted(entry["label"] for entry in entries)):
        if label in rank:
            raise PartialError(f"capture file {label} was read by two shards")
        rank[label] = position
    files = []
    for entry in sorted(entries, key=lambda entry: rank[entry["label"]]):
        drift_state = None
        if entry["drift"] is not None:
            drift_state = accumulator()
            load_state(drift_state, entry["drift"]["object"])
        files.append({"file": _capture_file(entry), "counters": entry["counters"], "issues": _issues(entry["issues"]),
                      "drift": drift_state})
    listings = [shard["meta"]["listing"] for shard in shards]
    return {
        "listing": listings,
        "files": files,
        "ground_truth": first["ground_truth"],
        "ground_truth_issues": _issues(first["ground_truth_issues"]),
        "join": merge_joins(shards, rank, problem_type, min_labels, score_threshold),
    }
