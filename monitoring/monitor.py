"""Monitoring job: data drift, prediction drift and model quality of one endpoint over one window.

Runs as a SageMaker processing job in the scikit-learn image (``python3 monitor.py ...`` from a
code directory holding ``capture.py``, ``drift.py``, ``quality.py``, ``report.py`` and this file)
and locally (``python monitoring/monitor.py`` or ``monitoring.monitor.main(argv)``).

Inputs:

- ``--capture-dir`` (default ``/opt/ml/processing/input/capture``): data-capture files
  ``*.jsonl`` below it, laid out ``[{endpoint}/]{variant}/yyyy/mm/dd/hh/*.jsonl`` (the variant
  is taken from the path). A missing directory or a window without records is a reported state
  (``status: no_data``), not an error.
- ``--baseline``: the training ``baseline.json`` (or a directory holding it); optional only
  when ``--text-baseline`` is given.
- ``--text-baseline``: for text models, a text baseline JSON (``drift.build_text_baseline``'s
  layout) or a reference corpus (``.txt``: one document per line; ``.jsonl``: strings or
  ``{"text": ...}``), whose vocabulary is then built here and saved as
  ``text_baseline.json`` next to the report.
- ``--text-features``: the model's text features (comma-separated) the baseline must describe as
  ``{"type": "text", ...}`` features (the training baseline step writes them); one it lacks is
  listed in ``decision.untested``.
- ``--ground-truth-dir`` (optional): ground-truth files (every non-hidden file, whatever its name,
  gzip recognised), joined on the inference id.
- ``--window-start`` / ``--window-end``: ISO-8601 times (UTC when no zone), start inclusive,
  end exclusive; records are filtered by ``inferenceTime``, and hour directories more than an
  hour outside the window are not read.

Outputs in ``--output-dir`` (default ``/opt/ml/processing/output``): ``report.json``,
``report.html`` and ``cloudwatch_metrics.json`` (see README.md); with ``--publish`` the metric
data is also sent to CloudWatch (``PutMetricData``, namespace ``--namespace``).

Exit status: 0 when the report was written (whether or not thresholds are violated; the report
and the metrics carry the violations), 1 when an input is unusable (baseline, text baseline,
thresholds, window, output directory) or publishing failed, with one line on stderr; 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np

try:
    from . import capture, decision, drift, metrics, partials, quality, report
except ImportError:  # run as a script from a flat code directory (the processing job)
    import capture  # type: ignore[no-redef]
    import decision  # type: ignore[no-redef]
    import drift  # type: ignore[no-redef]
    import metrics  # type: ignore[no-redef]
    import partials  # type: ignore[no-redef]
    import quality  # type: ignore[no-redef]
    import report  # type: ignore[no-redef]

LOG = logging.getLogger("monitor")
BATCH_SIZE = 10000
BULK_READER = True  # capture files through CaptureScanner.read_file_bulk (False: read_file, line by line)
PROBLEM_TYPES = ("binary", "regression")
METRIC_SCOPES = ("all", "quality")
# What a late-label recheck publishes: the window's drift was published by its first analysis.
QUALITY_METRICS = metrics.QUALITY_FAMILY


class InputError(Exception):
    """An input that cannot be used; the message names it and the problem."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture-dir", type=Path, default=Path("/opt/ml/processing/input/capture"))
    parser.add_argument("--baseline", type=Path, help="baseline.json, or a directory holding it")
    parser.add_argument("--ground-truth-dir", type=Path, help="ground-truth files, any name (optional)")
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output"))
    parser.add_argument("--thresholds", help="JSON object, or the path of a JSON file, of thresholds")
    parser.add_argument(
        "--drift-policy", help="JSON object: min_effect, false_pages, per_days, window_hours, min_rows, max_accumulated_windows"
    )
    parser.add_argument(
        "--carry", help="file or s3:// object holding what undecided small windows carry to the next run (read, then replaced)"
    )
    parser.add_argument("--problem-type", choices=PROBLEM_TYPES, default="binary")
    parser.add_argument("--text-baseline", type=Path, help="text baseline JSON or reference corpus")
    parser.add_argument(
        "--text-features", default="",
        help="comma-separated text features of the model's input the baseline must describe (the training baseline "
             "carries their vocabulary, OOV and length references); one it lacks is reported untested",
    )
    parser.add_argument("--endpoint", help="endpoint name (default: from the capture paths)")
    parser.add_argument("--window-start", help="ISO-8601 start of the window (inclusive)")
    parser.add_argument("--window-end", help="ISO-8601 end of the window (exclusive)")
    parser.add_argument("--min-labels", type=int, default=quality.DEFAULT_MIN_LABELS)
    parser.add_argument("--score-threshold", type=float, default=0.5, help="binary: score >= this is class 1")
    parser.add_argument("--max-vocabulary", type=int, default=drift.DEFAULT_MAX_VOCABULARY)
    parser.add_argument("--publish", action="store_true", help="put the metrics to CloudWatch")
    parser.add_argument(
        "--metric-scope", choices=METRIC_SCOPES, default="all",
        help="quality: only the quality metrics (a late-label recheck of a window already analysed)",
    )
    parser.add_argument(
        "--metric-time", default="", help="ISO-8601 timestamp of the metrics (default or empty: the window end)"
    )
    parser.add_argument("--namespace", default=report.NAMESPACE)
    parser.add_argument("--region", help="CloudWatch region (default: the job's)")
    parser.add_argument(
        "--workers", type=int, default=0,
        help="processes reading capture files (0: one per GiB of capture, at most one per CPU and 8)"
    )
    sharding = parser.add_mutually_exclusive_group()
    sharding.add_argument(
        "--shard-output", type=Path,
        help="shard mode: read this instance's capture files and write their partial statistics here (no report)",
    )
    sharding.add_argument(
        "--partials-dir", type=Path,
        help="merge mode: build the report from the shards' partial statistics below this directory "
             "(no capture file is read)",
    )
    args = parser.parse_args(argv)
    if args.baseline is None and args.text_baseline is None:
        parser.error("give --baseline, --text-baseline or both")
    if args.min_labels < 1:
        parser.error("--min-labels must be at least 1")
    if args.workers < 0:
        parser.error("--workers must be 0 (automatic) or more")
    if args.max_vocabulary < 1:
        parser.error("--max-vocabulary must be at least 1")
    return args


def load_baseline(path: Path) -> dict:
    if path.is_dir():
        path = path / "baseline.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the baseline ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: the baseline is not valid JSON ({exc})") from None
    drift.validate_baseline(document, str(path))
    return document


def missing_text_features(baseline: "dict | None", names: str) -> list:
    """What ``decision.untested`` says about configured text features the baseline has no text
    reference for (a champion trained before they were configured)."""
    features = (baseline or {}).get("features", {})
    return [f"text feature {name!r}: the baseline has no text reference for it (retrain to add it)"
            for name in filter(None, (part.strip() for part in names.split(",")))
            if (features.get(name) or {}).get("type") != "text"]


def parse_policy(args: argparse.Namespace) -> dict:
    try:
        given = json.loads(args.drift_policy) if args.drift_policy else None
    except ValueError as exc:
        raise InputError(f"--drift-policy: not valid JSON ({exc})") from None
    if given is not None and not isinstance(given, dict):
        raise InputError("--drift-policy: must be a JSON object")
    try:
        return decision.parse_policy(given)
    except decision.PolicyError as exc:
        raise InputError(f"--drift-policy: {exc}") from None


def _split_s3(uri: str) -> "tuple[str, str]":
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def read_carry(location: "str | None", region: "str | None") -> "dict | None":
    """The carried state of earlier undecided windows; ``None`` when there is none yet."""
    if not location:
        return None
    try:
        if location.startswith("s3://"):
            import boto3  # the processing image has it; imported only when a carry is in S3

            bucket, key = _split_s3(location)
            client = boto3.client("s3", region_name=region)
            try:
                text = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
            except client.exceptions.NoSuchKey:
                return None
        else:
            path = Path(location)
            if not path.is_file():
                return None
            text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except ValueError:
        LOG.warning("the carry at %s is not valid JSON; starting without it", location)
        return None


def write_carry(location: "str | None", carry: dict, region: "str | None") -> None:
    if not location:
        return
    body = json.dumps(carry, separators=(",", ":"))
    if location.startswith("s3://"):
        import boto3

        bucket, key = _split_s3(location)
        boto3.client("s3", region_name=region).put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"))
    else:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_text(body, encoding="utf-8")


def baseline_fingerprint(baseline: "dict | None", text_baseline: "dict | None") -> str:
    """Identifies the reference: a carry made against another baseline is not merged."""
    text = json.dumps([baseline, text_baseline], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _rows(accumulator: drift.DriftAccumulator) -> int:
    """Units of a scope the accumulation rule counts: rows, documents or predictions."""
    documents = accumulator.text.documents if accumulator.text is not None else 0
    return max(accumulator.rows, documents, accumulator.predictions.count)


def parse_window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    bounds = []
    for name in ("window_start", "window_end"):
        text = getattr(args, name)
        try:
            bounds.append(capture.parse_time(text) if text else None)
        except ValueError as exc:
            raise InputError(f"--{name.replace('_', '-')}: {exc}") from None
    start, end = bounds
    if start and end and end <= start:
        raise InputError("--window-end must be after --window-start")
    return start, end


def parse_metric_time(text: str) -> "str | None":
    """``--metric-time`` as the metrics' ``Timestamp`` (``None``: empty, the window's end)."""
    if not text:
        return None
    try:
        return capture.parse_time(text).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError as exc:
        raise InputError(f"--metric-time: {exc}") from None


def scoped_metric_data(metric_data: list, scope: str, timestamp: "str | None") -> list:
    """``quality``: only the quality metrics (a recheck must not re-raise the window's drift alarm);
    with ``timestamp``, every datum at that time (an alarm only evaluates recent datapoints)."""
    if scope == "quality":
        metric_data = [datum for datum in metric_data if datum["MetricName"] in QUALITY_METRICS]
    if timestamp:
        metric_data = [dict(datum, Timestamp=timestamp) for datum in metric_data]
    return metric_data


def _endpoint(args: argparse.Namespace, stats: dict, warnings: list) -> str:
    seen = sorted(stats.get("endpoints", {}))
    if args.endpoint:
        return args.endpoint
    if len(seen) > 1:
        warnings.append(f"capture files of {len(seen)} endpoints ({', '.join(seen)}); give --endpoint")
    return seen[0] if len(seen) == 1 else "unknown"


class _FileJob:
    """What reading one capture file needs; shared with worker processes (inherited by fork)."""

    def __init__(self, baseline, text_baseline, args, labels) -> None:
        self.scanner: "capture.CaptureScanner | None" = None  # set before reading
        self.baseline = baseline
        self.text_baseline = text_baseline
        self.problem_type = args.problem_type
        self.score_threshold = args.score_threshold
        self.labels = labels

    def accumulator(self, issues: object = None) -> drift.DriftAccumulator:
        return drift.DriftAccumulator(
            self.baseline, self.text_baseline, self.problem_type, self.score_threshold, issues
        )

    def process(self, file: capture.CaptureFile) -> dict:
        """Drift statistics of one file, its counters and issues, and (inference id, variant,
        predictions) of its records that have a label (joined by the caller, in file order)."""
        issues = capture.Issues()
        counters: dict = {}
        accumulator = self.accumulator(issues)
        labels = self.labels
        matches = []
        batch: list = []  # records and blocks, BATCH_SIZE records in all: the same batches either way
        size = 0
        read = self.scanner.read_file_bulk if BULK_READER else self.scanner.read_file
        for item in read(file, counters, issues):
            if type(item) is capture.CaptureBlock:
                if labels is not None:
                    for index, key in enumerate(item.keys()):
                        if key in labels:
                            matches.append((key, file.variant, [capture.Prediction(item.scores[index], None)]))
                start = 0
                while start < item.size:
                    take = min(item.size - start, BATCH_SIZE - size)
                    batch.append(item.slice(start, start + take) if take < item.size else item)
                    size += take
                    start += take
                    if size >= BATCH_SIZE:
                        _update(accumulator, batch)
                        batch, size = [], 0
                continue
            if labels is not None and item.inference_id in labels:
                matches.append((item.inference_id, item.variant, item.outputs))
            batch.append(item)
            size += 1
            if size >= BATCH_SIZE:
                _update(accumulator, batch)
                batch, size = [], 0
        if batch:
            _update(accumulator, batch)
        accumulator.issues = None
        return {"file": file, "counters": counters, "issues": issues, "drift": accumulator, "matches": matches}


def _update(accumulator: drift.DriftAccumulator, batch: list) -> None:
    """One batch into the accumulator: blocks only, in bulk; otherwise (or when the bulk path
    declines) as records, in file order."""
    if all(type(item) is capture.CaptureBlock for item in batch):
        if len(batch) == 1:
            data, scores = batch[0].data, batch[0].scores
        else:
            data = list(chain.from_iterable(item.data for item in batch))
            scores = list(chain.from_iterable(item.scores for item in batch))
        if accumulator.update_csv(data, np.array(scores, dtype=np.float64)):
            return
    records: list = []
    for item in batch:
        if type(item) is capture.CaptureBlock:
            records.extend(item.records())
        else:
            records.append(item)
    accumulator.update(records)


_JOB: _FileJob | None = None


def _init_worker(job: _FileJob) -> None:
    global _JOB
    _JOB = job


def _process_in_worker(file: capture.CaptureFile) -> dict:
    assert _JOB is not None
    return _JOB.process(file)


WORKER_BYTES = 1 << 30
"""Capture bytes per worker process when ``--workers`` is 0. One process reads about 150 MB of
capture a second in bulk, so a smaller window takes a few seconds in-process, where another
process would only add its start and a copy of the interpreter's memory."""


def default_workers(files: "list | tuple" = ()) -> int:
    """One process per ``WORKER_BYTES`` of the files to read, at most one per CPU and 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    size = 0
    for file in files:
        try:
            size += file.path.stat().st_size
        except OSError:  # the reader reports it
            continue
    return max(1, min(cpus, 8, 1 + size // WORKER_BYTES))


def _process_files(job: _FileJob, files: list, workers: int) -> Iterator[dict]:
    """Per-file results in file order: in worker processes (fork) when workers > 1."""
    if workers > 1 and len(files) > 1 and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
        with context.Pool(min(workers, len(files)), initializer=_init_worker, initargs=(job,)) as pool:
            yield from pool.imap(_process_in_worker, files, chunksize=1)
        return
    for file in files:
        yield job.process(file)


def shard_name() -> str:
    """This instance's name (``algo-1`` ...) from SageMaker's resource config, else the host name:
    every shard writes its own partial file under one shared output prefix."""
    try:
        return json.loads(Path("/opt/ml/config/resourceconfig.json").read_text())["current_host"]
    except (OSError, ValueError, KeyError):
        return os.uname().nodename


def read_shard(args: argparse.Namespace, window_start, window_end, job: "_FileJob") -> dict:
    """The statistics of the capture files below ``--capture-dir``: the scanner's listing counts
    and every file's result (counters, issues, drift accumulator, labelled predictions), in path
    order. Per-file results are kept (not folded) so that a merge step folds every file in the same
    global path order as a single pass: the report is then identical, floating-point sums included.
    """
    scanner = capture.CaptureScanner(args.capture_dir, window_start, window_end)
    job.scanner = scanner
    files = scanner.files()
    workers = args.workers or default_workers(files)
    LOG.info("reading %s capture file(s) with %s worker(s)", len(files), min(workers, max(len(files), 1)))
    listing = {name: scanner.stats[name] for name in ("state", "files_found", "files_skipped_outside_window")}
    return {"listing": listing, "files": list(_process_files(job, files, workers))}


def merge_listings(listings: list) -> dict:
    """One scanner listing from the shards': counts add up; the state is ``ok`` when any shard had
    files, else ``no_files`` when any shard had a directory, else ``missing_dir``."""
    states = {listing["state"] for listing in listings}
    state = "ok" if "ok" in states else ("no_files" if "no_files" in states else "missing_dir")
    return {
        "state": state,
        "files_found": sum(listing["files_found"] for listing in listings),
        "files_skipped_outside_window": sum(listing["files_skipped_outside_window"] for listing in listings),
    }


def run(args: argparse.Namespace) -> "dict | None":
    """Compute everything and write the outputs; returns the report (``None`` in shard mode)."""
    started = time.perf_counter()
    thresholds = report.parse_thresholds(args.thresholds)
    policy = parse_policy(args)
    window_start, window_end = parse_window(args)
    metric_time = parse_metric_time(args.metric_time)
    baseline = load_baseline(args.baseline) if args.baseline else None
    text_baseline = None
    if args.text_baseline:
        text_baseline = drift.load_text_baseline(args.text_baseline, args.max_vocabulary)
    issues = capture.Issues()
    baseline_id = baseline_fingerprint(baseline, text_baseline)

    join = None
    labels = None
    ground_truth: dict = {"state": "not_configured"}
    if args.partials_dir is not None:
        # merge mode: the shards joined the labels; neither labels nor capture files are read here
        job = _FileJob(baseline, text_baseline, args, None)
        try:
            partial = partials.read(args.partials_dir, job.accumulator, args.problem_type, baseline_id,
                                    args.min_labels, args.score_threshold)
        except partials.PartialError as exc:
            raise InputError(str(exc)) from None
        ground_truth = partial["ground_truth"]
        issues.merge(partial["ground_truth_issues"])
        shards = len(partial["listing"])  # one listing per shard
        partial["listing"] = merge_listings(partial["listing"])
        join = partial["join"]
        LOG.info("merged %s shard partial(s) in %.1f s", shards, time.perf_counter() - started)
    else:
        if args.ground_truth_dir is not None:
            labels, ground_truth = capture.load_ground_truth(
                args.ground_truth_dir, quality.label_converter(args.problem_type), issues
            )
            if not labels:
                labels = None
            LOG.info("ground truth: %s labels (%s)", ground_truth.get("labels", 0), ground_truth["state"])
        job = _FileJob(baseline, text_baseline, args, labels)
        partial = read_shard(args, window_start, window_end, job)
        if args.shard_output is not None:
            # this instance's files joined to all the window's labels; the merge settles labels
            # that several shards used (partials.py)
            shard = partials.shard_join(partial["files"], labels, args.problem_type, args.min_labels,
                                        args.score_threshold)
            path = partials.write(args.shard_output / f"{shard_name()}{partials.SUFFIX}", partial, shard,
                                  ground_truth, issues, args.problem_type, baseline_id)
            LOG.info("wrote the shard's partial statistics to %s in %.1f s", path, time.perf_counter() - started)
            return None
        if labels is not None:
            join = quality.QualityJoin(labels, args.problem_type, args.min_labels, args.score_threshold)

    # Fold the per-file results in path order: the same operations whether they come from this
    # process or from several shards.
    scanner = capture.CaptureScanner(None, window_start, window_end, issues)
    scanner.stats.update(partial["listing"])
    variants: dict = {}
    for result in partial["files"]:
        file = result["file"]
        scanner.add_file_counters(file, result["counters"])
        issues.merge(result["issues"])
        if result["counters"].get("records"):
            if file.variant in variants:
                variants[file.variant].merge(result["drift"])
            else:
                variants[file.variant] = result["drift"]
        if join is not None and args.partials_dir is None:
            for inference_id, variant, outputs in result["matches"]:
                join.add(inference_id, variant, outputs)
    scanner.finish()

    overall = job.accumulator()
    for name in sorted(variants):
        overall.merge(variants[name])
    stats = scanner.stats
    warnings: list = []
    endpoint = _endpoint(args, stats, warnings)
    stats["warnings"] = warnings
    LOG.info(
        "read %s records from %s files (%s malformed lines) in %.1f s",
        stats["records"],
        stats["files_read"],
        stats["malformed_lines"],
        time.perf_counter() - started,
    )

    if join is not None:
        quality_section = {"status": "ok", "ground_truth": ground_truth, **join.result()}
    else:
        state = ground_truth["state"]
        quality_section = {
            "status": "no_labels" if state == "ok" else state,
            "ground_truth": ground_truth,
            "join": None,
            "all": None,
            "variants": {},
        }

    inputs = {
        "capture_dir": str(args.capture_dir),
        "baseline": str(args.baseline) if args.baseline else None,
        "text_baseline": str(args.text_baseline) if args.text_baseline else None,
        "ground_truth_dir": str(args.ground_truth_dir) if args.ground_truth_dir else None,
    }
    document = report.build_report(
        endpoint=endpoint,
        problem_type=args.problem_type,
        window_start=window_start,
        window_end=window_end,
        inputs=inputs,
        thresholds=thresholds,
        capture=stats,
        drift_all=overall.result(),
        drift_variants={name: variants[name].result() for name in sorted(variants)},
        quality=quality_section,
        issues=issues.to_dict(),
        test_inputs={report.ALL: overall.test_inputs(), **{name: variants[name].test_inputs() for name in variants}},
        test_rows={report.ALL: _rows(overall), **{name: _rows(variants[name]) for name in variants}},
        policy=policy,
        # a late-label recheck re-reads an analysed window: it neither reads nor advances the carry
        carry=read_carry(args.carry, args.region) if args.metric_scope == "all" else None,
        baseline_id=baseline_id,
    )
    next_carry = document["decision"].pop("next_carry")
    for note in missing_text_features(baseline, args.text_features):
        LOG.warning(note)
        document["decision"]["untested"].append(note)
    document["duration_seconds"] = round(time.perf_counter() - started, 3)
    metric_data = scoped_metric_data(report.cloudwatch_metric_data(document), args.metric_scope, metric_time)
    try:
        paths = report.write_outputs(args.output_dir, document, metric_data)
        if text_baseline is not None and args.text_baseline.suffix != ".json":
            path = args.output_dir / "text_baseline.json"
            path.write_text(json.dumps(text_baseline, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{args.output_dir}: cannot write the report ({exc.strerror or exc})") from None
    if args.metric_scope == "all":
        write_carry(args.carry, next_carry, args.region)
    summary = document["summary"]
    LOG.info(
        "status %s: %s records, %s test(s) at alpha %.3g, drift %s, quality below target %s; max PSI %s (%s), "
        "%s drifted feature(s), %s violation(s); wrote %s",
        document["status"],
        summary["records"],
        document["decision"]["tests"],
        document["decision"]["alpha"],
        summary["drift_detected"],
        summary["quality_below_target"],
        summary["max_psi"],
        summary["max_psi_feature"],
        summary["drifted_feature_count"],
        summary["violation_count"],
        paths["report"],
    )
    if args.publish:
        calls = report.publish(metric_data, args.namespace, region=args.region)
        LOG.info("published %s metric(s) to %s in %s call(s)", len(metric_data), args.namespace, calls)
    return document


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    _configure_logging()
    args = parse_args(argv)
    try:
        run(args)
    except (InputError, drift.BaselineError, report.ThresholdError) as exc:
        print(f"monitor: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # publishing (botocore errors, missing credentials)
        if not args.publish or type(exc).__module__.split(".")[0] not in ("botocore", "boto3"):
            raise
        print(f"monitor: error: publishing the metrics failed ({exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
