"""Monitoring job throughput: 1,000,000 captured records of 20 numeric features in one window.

Generates (deterministically, streamed to a temporary directory; not timed) data-capture files
in SageMaker's JSON-lines format with CSV-encoded input and output, laid out
``{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl`` (two variants, four hours, 25 files of 40,000
records), a training baseline in the ``baseline.json`` layout (deciles of 20,000 training rows;
three features of one variant drift), and ground-truth labels for 10 % of the records. Then runs
``monitoring/monitor.py`` as a subprocess (``benchmarks.measure.measure``: wall time and peak RSS
of the process tree, which includes the job's worker processes; the job's own default of one
worker per CPU applies). Each configuration runs three times: the median wall time, the median
CPU seconds of the job and its workers, and the largest peak are reported, with every sample and
the load average before it, since wall time depends on what else the machine runs:

* ``drift_only``: captures + baseline, the figure the targets are about;
* ``with_ground_truth``: the same plus the 100,000 labels (join and quality metrics);
* ``drift_only_one_worker``: as ``drift_only`` in a single process (``--workers 1``), once, for
  comparison (informational: the targets are judged on the first two);
* ``drift_only_mixed``: as ``drift_only`` with 16 numeric and 4 categorical features (3-20
  levels, text in the CSV): issue 19's mixed case;
* ``drift_only_text``: 19 numeric features and one free-text feature (``review``: 5-40 tokens
  from a 2,000-word Zipf vocabulary, about 22 per record; variant-b's reviews draw half their
  tokens from the rare half of the vocabulary and beyond), with the text reference training writes
  (``drift.build_text_baseline`` of 20,000 documents): the job's text path (bulk tokenising, three
  calibrated tests).

``--only drift_only_text`` (names comma-separated) runs only those configurations and replaces
their entries in ``benchmarks/results/monitoring.json``, keeping the others.

Issue 19 also sets <= 5 s and <= 256 MiB for ``drift_only`` and ``drift_only_mixed``
(``meets_issue_19``).

Targets (issue 7, on the 2-core benchmark machine): < 60 s and < 2 GiB peak memory. Writes
``benchmarks/results/monitoring.json``.

Usage: ``.venv/bin/python -m benchmarks.bench_monitoring``
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.measure import RESULTS, ROOT, machine, measure, write_result
from monitoring import drift

RECORDS = 1_000_000
FEATURES = 20
FILES = 25
HOURS = 4
VARIANTS = ("variant-a", "variant-b")
LABEL_FRACTION = 0.1
TRAINING_ROWS = 20_000
DRIFTED = (0, 5, 10)  # features shifted by 0.5 sd in variant-b
SEED = 7
ENDPOINT = "bench-endpoint"
TARGET_SECONDS = 60.0
CATEGORY_LEVELS = (3, 5, 10, 20)
ISSUE_19_SECONDS = 5.0  # issue 19: 1M records, all numeric and 16 numeric + 4 categorical, streaming
ISSUE_19_PEAK_MIB = 256.0
REPEATS = 3
TARGET_PEAK_MIB = 2048.0

_LINE = (
    '{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"%s","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv; charset=utf-8",'
    '"mode":"OUTPUT","data":"%s","encoding":"CSV"}},"eventMetadata":{"eventId":"%s",'
    '"inferenceId":"%s","inferenceTime":"%s"},"eventVersion":"0"}\n'
)
_LABEL = '{"groundTruthData":{"data":"%d","encoding":"CSV"},"eventMetadata":{"eventId":"%s"},"eventVersion":"0"}\n'


def _feature_statistics(values: np.ndarray) -> dict:
    """The numeric-feature layout of training/example_classifier/preprocess.py's baseline."""
    quantiles = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    counts, _ = np.histogram(values, bins=edges)
    return {
        "type": "numeric",
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {format(q, "g"): float(v) for q, v in zip(quantiles, np.quantile(values, quantiles))},
        "histogram": {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def _categorical(values: np.ndarray, levels: int) -> np.ndarray:
    """Numeric draws binned into ``levels`` category names (a shift of the draws moves shares)."""
    return np.array([f"level_{i:02d}" for i in range(levels)])[np.digitize(values, np.linspace(-2, 2, levels - 1))]


TEXT_VOCABULARY = 2_000
TEXT_LENGTH = (5, 40)
TEXT_WORDS = np.array([f"w{i:04d}" for i in range(2 * TEXT_VOCABULARY)])
_TEXT_WEIGHTS = 1.0 / np.arange(1, TEXT_VOCABULARY + 1)
_TEXT_WEIGHTS /= _TEXT_WEIGHTS.sum()


def _reviews(rng: np.random.Generator, count: int, shifted: bool = False) -> list:
    """``count`` documents of Zipf-distributed words; ``shifted``: half the tokens uniform over the
    rare half of the vocabulary and as many unseen words."""
    lengths = rng.integers(TEXT_LENGTH[0], TEXT_LENGTH[1] + 1, count)
    ids = rng.choice(TEXT_VOCABULARY, size=int(lengths.sum()), p=_TEXT_WEIGHTS)
    if shifted:
        rare = rng.random(ids.size) < 0.5
        ids[rare] = rng.integers(TEXT_VOCABULARY // 2, 2 * TEXT_VOCABULARY, int(rare.sum()))
    words = TEXT_WORDS[ids].tolist()
    ends = np.cumsum(lengths).tolist()
    return [" ".join(words[end - n:end]) for end, n in zip(ends, lengths.tolist())]


def generate(root: Path, mixed: bool = False, records: int = RECORDS, text: bool = False) -> dict:
    """Write the baseline, the capture files and the labels; returns their sizes. ``mixed``: the
    last four features are categorical (3, 5, 10 and 20 levels), sent as text in the CSV;
    ``text``: the last feature is free text (``review``); ``records`` in all (``FILES`` files;
    bench_monitoring_sharded.py writes other sizes)."""
    rng = np.random.default_rng(SEED)
    names = [f"feature_{i:02d}" for i in range(FEATURES)]
    if text:
        names[-1] = "review"
    weights = rng.normal(size=FEATURES) / np.sqrt(FEATURES)
    train = rng.normal(size=(TRAINING_ROWS, FEATURES))
    train_labels = (train @ weights + rng.normal(scale=0.5, size=TRAINING_ROWS)) > 0
    categorical = dict(zip(range(FEATURES - len(CATEGORY_LEVELS), FEATURES), CATEGORY_LEVELS)) if mixed else {}
    features = {}
    for i, name in enumerate(names):
        if i in categorical:
            levels, counts = np.unique(_categorical(train[:, i], categorical[i]), return_counts=True)
            features[name] = {"type": "categorical", "counts": {str(k): int(c) for k, c in zip(levels, counts)}}
        elif text and i == FEATURES - 1:
            features[name] = drift.build_text_baseline(_reviews(rng, TRAINING_ROWS))
        else:
            features[name] = _feature_statistics(train[:, i])
    baseline = {
        "version": 1,
        "target_column": "target",
        "feature_names": names,
        "row_count": TRAINING_ROWS,
        "features": features,
        "label_distribution": {"0": int((~train_labels).sum()), "1": int(train_labels.sum())},
    }
    (root / "baseline").mkdir(parents=True)
    (root / "baseline" / "baseline.json").write_text(json.dumps(baseline, indent=2))

    per_file = records // FILES
    capture_bytes = 0
    labels = 0
    truth_dir = root / "ground_truth" / "2024" / "05" / "01" / "06"
    truth_dir.mkdir(parents=True)
    with open(truth_dir / "labels.jsonl", "w", encoding="utf-8") as truth:
        for number in range(FILES):
            variant = VARIANTS[number % len(VARIANTS)]
            hour = number * HOURS // FILES
            directory = root / "capture" / ENDPOINT / variant / "2024" / "05" / "01" / f"{hour:02d}"
            directory.mkdir(parents=True, exist_ok=True)
            rows = rng.normal(size=(per_file, FEATURES))
            if variant == "variant-b":
                rows[:, list(DRIFTED)] += 0.5
            texts = {i: _categorical(rows[:, i], levels) for i, levels in categorical.items()}
            if text:
                texts[FEATURES - 1] = _reviews(rng, per_file, shifted=variant == "variant-b")
            logits = rows @ weights
            scores = 1.0 / (1.0 + np.exp(-logits * 3.0))
            truths = (logits + rng.normal(scale=0.5, size=per_file)) > 0
            seconds = np.sort(rng.integers(0, 3600, size=per_file))
            labelled = rng.random(per_file) < LABEL_FRACTION
            path = directory / f"capture-{number:03d}.jsonl"
            with open(path, "w", encoding="utf-8") as out:
                buffer = []
                for i in range(per_file):
                    inference_id = f"{number:03d}-{i:07d}"
                    second = int(seconds[i])
                    buffer.append(
                        _LINE
                        % (
                            ",".join([texts[j][i] if j in texts else "%.5f" % x for j, x in enumerate(rows[i])]),
                            "%.6f" % scores[i],
                            f"evt-{number:03d}-{i:07d}",
                            inference_id,
                            f"2024-05-01T{hour:02d}:{second // 60:02d}:{second % 60:02d}Z",
                        )
                    )
                    if labelled[i]:
                        truth.write(_LABEL % (int(truths[i]), inference_id))
                        labels += 1
                    if len(buffer) >= 10000:
                        out.write("".join(buffer))
                        buffer = []
                out.write("".join(buffer))
            capture_bytes += path.stat().st_size
    return {"capture_files": FILES, "capture_bytes": capture_bytes, "labels": labels}


def _run(root: Path, name: str, ground_truth: bool, repeats: int, *extra: str) -> dict:
    """Run the job ``repeats`` times; median wall and CPU time, largest peak memory."""
    output = root / f"output-{name}"
    argv = [
        sys.executable,
        str(ROOT / "monitoring" / "monitor.py"),
        "--capture-dir",
        str(root / "capture"),
        "--baseline",
        str(root / "baseline"),
        "--output-dir",
        str(output),
        "--endpoint",
        ENDPOINT,
        "--window-start",
        "2024-05-01T00:00:00Z",
        "--window-end",
        f"2024-05-01T{HOURS:02d}:00:00Z",
        "--thresholds",
        json.dumps({"psi": 0.2, "ks": 0.1, "auc_min": 0.8}),
    ]
    if ground_truth:
        argv += ["--ground-truth-dir", str(root / "ground_truth")]
    argv += list(extra)
    samples = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = measure(argv)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        samples.append(
            {
                "seconds": run.seconds,
                "peak_rss_mib": run.peak_rss_mib,
                "cpu_seconds": round(cpu, 1),
                "load_average_1m_before": round(load, 2),
                "returncode": run.returncode,
            }
        )
        if run.returncode:
            break
    returncode = max(sample["returncode"] for sample in samples)
    seconds = statistics.median(sample["seconds"] for sample in samples)
    peak = max(sample["peak_rss_mib"] for sample in samples)
    result = {
        "seconds": round(seconds, 3),
        "peak_rss_mib": peak,
        "cpu_seconds": round(statistics.median(sample["cpu_seconds"] for sample in samples), 1),
        "returncode": returncode,
        "records_per_second": round(RECORDS / seconds) if seconds else None,
        "meets_targets": returncode == 0 and seconds < TARGET_SECONDS and peak < TARGET_PEAK_MIB,
        "samples": samples,
    }
    if returncode == 0:
        report = json.loads((output / "report.json").read_text())
        summary = report["summary"]
        result["report"] = {
            "status": report["status"],
            "records": summary["records"],
            "drifted_features_by_variant": summary["drifted_features_by_variant"],
            "max_psi_all_variants": round(summary["max_psi"], 4),
            "violation_count": summary["violation_count"],
            "job_duration_seconds": report.get("duration_seconds"),
            "text_drifted": summary["text_drifted"],
        }
        if ground_truth:
            result["report"]["quality"] = summary["quality"]
    return result


# configuration -> (generate()'s options, with ground truth, repeats, extra job arguments)
CONFIGURATIONS = {
    "drift_only": ({}, False, REPEATS, ()),
    "with_ground_truth": ({}, True, REPEATS, ()),
    "drift_only_one_worker": ({}, False, 1, ("--workers", "1")),
    "drift_only_mixed": ({"mixed": True}, False, REPEATS, ()),
    "drift_only_text": ({"text": True}, False, REPEATS, ("--text-features", "review")),
}


def main(argv: "list[str] | None" = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated configurations of {', '.join(CONFIGURATIONS)}")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",")] if args.only else list(CONFIGURATIONS)
    unknown = sorted(set(only) - set(CONFIGURATIONS))
    if unknown:
        parser.error(f"unknown configurations {unknown}")
    previous_path = RESULTS / "monitoring.json"
    previous = json.loads(previous_path.read_text()) if args.only and previous_path.is_file() else {}
    runs = dict(previous.get("runs", {}))
    sizes = {key: previous[key] for key in ("capture_files", "capture_bytes", "labels") if key in previous}
    generation = previous.get("generation_seconds")
    root = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    generated = None
    try:
        for name in only:
            options, ground_truth, repeats, extra = CONFIGURATIONS[name]
            if generated != options:
                shutil.rmtree(root, ignore_errors=True)
                start = time.perf_counter()
                written = generate(root, **options)
                if not options:
                    sizes, generation = written, round(time.perf_counter() - start, 1)
                generated = options
            runs[name] = _run(root, name, ground_truth, repeats, *extra)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name in ("drift_only", "drift_only_mixed", "drift_only_text"):
        run = runs.get(name)
        if run:
            run["meets_issue_19"] = (run["returncode"] == 0 and run["seconds"] <= ISSUE_19_SECONDS
                                     and run["peak_rss_mib"] <= ISSUE_19_PEAK_MIB)
    failed = [name for name, run in runs.items() if run["returncode"] != 0]
    met = (not failed and all(runs.get(name, {}).get("meets_targets") for name in ("drift_only", "with_ground_truth"))
           and runs.get("drift_only_text", {}).get("meets_targets", True))
    path = write_result(
        "monitoring",
        {
            "description": (
                "monitoring/monitor.py over one window of 1,000,000 captured records (20 numeric "
                "features, CSV-encoded JSON lines, 2 variants); median wall time of 3 runs and peak "
                "RSS of the job's process tree; data generation is not timed."
            ),
            "records": RECORDS,
            "features": FEATURES,
            **sizes,
            "generation_seconds": generation,
            "runs": runs,
            "targets": {"seconds": TARGET_SECONDS, "peak_rss_mib": TARGET_PEAK_MIB,
                        "issue_19": {"seconds": ISSUE_19_SECONDS, "peak_rss_mib": ISSUE_19_PEAK_MIB,
                                     "runs": ["drift_only", "drift_only_mixed", "drift_only_text"]}},
            "meets_targets": met,
            "environment": machine(numpy=np.__version__),
        },
    )
    for name in only:
        run = runs[name]
        print(
            f"monitoring {name}: {RECORDS:,} records in {run['seconds']:.1f} s, peak {run['peak_rss_mib']:.0f} MiB "
            f"(targets < {TARGET_SECONDS:.0f} s, < {TARGET_PEAK_MIB:.0f} MiB: "
            f"{'met' if run['meets_targets'] else 'NOT met'})"
        )
    print(f"-> {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
