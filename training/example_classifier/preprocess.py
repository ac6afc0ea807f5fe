"""Validate a raw tabular data set, split it for training and record its training baseline.

Runs unchanged in the SageMaker scikit-learn processing container (stdlib, numpy, pandas and
scikit-learn only) and locally in the tests.

Input: every ``*.csv`` below ``--input-dir`` (default ``/opt/ml/processing/input``, searched
recursively, read in path order), each with a header row and the same columns: numeric feature
columns plus a 0/1 target column (``--target-column``, default ``target``). With
``--input-format feature-store`` (plus ``--record-identifier`` and ``--event-time-feature``) the
input is a feature group's offline store instead: its Parquet files, reduced to the latest
version of each record (see :func:`load_feature_store`). Closed-loop retraining adds
``--production-data``: production records joined with their ground truth (the platform's
retraining trigger writes them as a CSV with the same columns), appended to the raw data before
the split.

Outputs below ``--output-dir`` (default ``/opt/ml/processing``):

- ``train/train.csv`` (with ``--train-shards N`` > 1: ``train/train-00000.csv`` ... one part per
  training instance, for ``ShardedByS3Key``), ``validation/validation.csv``, ``test/test.csv``: a stratified split
  (``--validation-fraction`` and ``--test-fraction`` of the rows, default 0.15 each) in the layout
  the SageMaker XGBoost container reads: no header, the 0/1 label in the FIRST column, then the
  features in the order of ``baseline/feature_names.json``.
- ``baseline/feature_names.json``: JSON list of the feature names, in model input order.
- ``baseline/baseline.json``: statistics of the TRAINING split, the reference a monitoring job
  compares production traffic with::

    {
      "version": 1,
      "target_column": "target",
      "feature_names": ["mean radius", ...],      # model input order
      "row_count": 397,                           # rows of the training split
      "features": {
        "mean radius": {
          "type": "numeric",
          "count": 397,
          "mean": 14.1, "std": 3.5,               # std: sample standard deviation (ddof=1)
          "min": 6.98, "max": 28.11,
          "quantiles": {"0.01": ..., "0.05": ..., "0.1": ..., "0.25": ..., "0.5": ...,
                        "0.75": ..., "0.9": ..., "0.95": ..., "0.99": ...},
          "histogram": {
            "bin_edges": [6.98, ..., 28.11],      # training deciles (0 %, 10 %, ..., 100 %),
                                                  # de-duplicated, ascending
            "counts": [40, ...]                   # len(counts) == len(bin_edges) - 1
          }
        }
      },
      "label_distribution": {"0": 148, "1": 249}  # training rows per class
    }

  Quantiles use linear interpolation. Bins are half-open ``[e_i, e_i+1)`` except the last, which
  also holds the maximum (numpy's ``histogram`` convention); a constant feature has two equal
  edges and one bin. Production values outside ``[min, max]`` fall outside every bin: a drift
  check decides whether to clip them into the end bins or report them separately.

  With ``--text-features review,title`` those columns hold free text (a missing value is an empty
  text) and are described by the text layout of ``monitoring/drift.py`` ``build_text_baseline``:
  ``{"type": "text", "tokenizer", "document_count", "token_count", "vocabulary": {token: count},
  "oov_count", "length": {numeric layout of the documents' token counts}}``, the reference of the
  monitoring job's text drift tests. (The example XGBoost model itself reads numbers only: a text
  feature needs a training script that reads text.)

The same input files and ``--seed`` give byte-identical outputs. A data set that cannot be used
(no CSV, unreadable or empty file, missing target column, non-binary target, non-numeric
feature, missing or infinite values, fewer than 50 rows or fewer than 5 rows of a class) ends
the job with exit status 1 and one line on stderr naming the file, column and problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

LOG = logging.getLogger("preprocess")

BASELINE_VERSION = 1
MIN_ROWS = 50
MIN_CLASS_ROWS = 5
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
HISTOGRAM_BINS = 10
# Text features: the monitoring job's tokenizer (monitoring/drift.py TOKENIZER; the job refuses a
# baseline built with another): lowercase, then runs of Unicode word characters.
TEXT_TOKENIZER = "lowercase+unicode-word-regex-v1"
TEXT_TOKEN_PATTERN = r"\w+"
MAX_VOCABULARY = 20000


class DatasetError(Exception):
    """The input data cannot be used; the message names the file, column and problem."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", type=Path, default=Path("/opt/ml/processing/input"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing"))
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--target-column", default="target")
    parser.add_argument(
        "--train-shards", type=int, default=1,
        help="files the train split is written in: at least the training instance count, so that "
             "ShardedByS3Key gives every instance its own part",
    )
    parser.add_argument(
        "--input-format", choices=("csv", "feature-store"), default="csv",
        help="csv: *.csv files with a header; feature-store: a feature group's offline store",
    )
    parser.add_argument(
        "--production-data", default="none",
        help="closed-loop retraining: production records joined with their ground truth (a CSV with the "
             "raw data's columns; s3:// URI or local path), added to the raw data; 'none' or empty: none",
    )
    parser.add_argument(
        "--text-features", default="",
        help="comma-separated free-text columns: kept as text, described in the baseline by their vocabulary, "
             "out-of-vocabulary share and length (the monitoring job's text drift reference)",
    )
    parser.add_argument("--max-vocabulary", type=int, default=MAX_VOCABULARY, help="tokens kept per text feature")
    parser.add_argument("--record-identifier", help="feature-store input: the record identifier feature")
    parser.add_argument("--event-time-feature", help="feature-store input: the event time feature")
    args = parser.parse_args(argv)
    for name in ("validation_fraction", "test_fraction"):
        if not 0.0 < getattr(args, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.input_format == "feature-store" and not (args.record_identifier and args.event_time_feature):
        parser.error("--input-format feature-store needs --record-identifier and --event-time-feature")
    if args.train_shards < 1:
        parser.error("--train-shards must be at least 1")
    if args.max_vocabulary < 1:
        parser.error("--max-vocabulary must be at least 1")
    args.text_features = tuple(name.strip() for name in args.text_features.split(",") if name.strip())
    if args.validation_fraction + args.test_fraction >= 1.0:
        parser.error("--validation-fraction plus --test-fraction must be below 1")
    return args


def find_csv_files(input_dir: Path) -> list[Path]:
    """All ``*.csv`` files below ``input_dir``, in a stable order."""
    if not input_dir.is_dir():
        raise DatasetError(f"input directory {input_dir} does not exist")
    files = [path for path in input_dir.rglob("*.csv") if path.is_file()]
    if not files:
        raise DatasetError(f"no *.csv file found under {input_dir}")
    return sorted(files, key=lambda path: path.relative_to(input_dir).as_posix())


def _first_bad_line(mask: pd.Series, first: int = 2) -> int:
    """Position of the first True in ``mask``, counted from ``first`` (a CSV's header is line 1)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + first


def read_csv(path: Path, target: str, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read one CSV and check it: binary target, numeric finite features, no missing values."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        message = " ".join(str(exc).split())
        raise DatasetError(f"{path}: not a readable CSV file ({message})") from None
    if target not in frame.columns:
        shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:10])
        more = ", ..." if len(frame.columns) > 10 else ""
        raise DatasetError(f"{path}: target column {target!r} not found (columns: {shown}{more})")
    if frame.empty:
        raise DatasetError(f"{path}: no data rows below the header")
    return check_frame(frame, target, str(path), text=text)


def check_frame(frame: pd.DataFrame, target: str, path: str, first: int = 2, unit: str = "line",
                text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Check a loaded table: binary target, numeric finite features, no missing values; the
    ``text`` columns hold free text (a missing value is an empty text).

    ``first`` and ``unit`` say how rows are numbered in messages (CSV: line 2 is the first row).
    """
    features = [column for column in frame.columns if column != target]
    if not features:
        raise DatasetError(f"{path}: no feature column besides the target column {target!r}")
    absent = [name for name in text if name not in features]
    if absent:
        raise DatasetError(f"{path}: text feature(s) {absent} are not columns of the data (features: {features[:10]})")
    for column in text:
        frame[column] = frame[column].fillna("").astype(str)

    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            raise DatasetError(
                f"{path}: column {column!r} has {int(missing.sum())} missing value(s), the first on "
                f"{unit} {_first_bad_line(missing, first)}; fill or drop them before training"
            )
    for column in features:
        values = frame[column]
        if column in text:
            continue
        if pd.api.types.is_bool_dtype(values):
            frame[column] = values.astype(np.int64)
            continue
        if not pd.api.types.is_numeric_dtype(values):
            bad = pd.to_numeric(values, errors="coerce").isna()
            example = f"{unit} {_first_bad_line(bad, first)}: {values[bad].iloc[0]!r}" if bad.any() else values.dtype
            raise DatasetError(
                f"{path}: feature column {column!r} is not numeric ({example}); "
                "encode categorical or text features as numbers"
            )
        infinite = pd.Series(np.isinf(values.to_numpy(dtype=np.float64)))
        if infinite.any():
            raise DatasetError(
                f"{path}: feature column {column!r} has {int(infinite.sum())} infinite value(s), the "
                f"first on {unit} {_first_bad_line(infinite, first)}"
            )

    labels = frame[target]
    if pd.api.types.is_bool_dtype(labels):
        labels = labels.astype(np.int64)
    if not (pd.api.types.is_numeric_dtype(labels) and labels.isin([0, 1]).all()):
        found = sorted({str(value) for value in labels.unique()})
        shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
        raise DatasetError(f"{path}: target column {target!r} must hold only 0 and 1, found: {shown}")
    frame[target] = labels.astype(np.int64)
    return frame


# Columns Feature Store adds to every offline-store row.
FEATURE_STORE_METADATA = ("write_time", "api_invocation_time", "is_deleted")


def load_feature_store(input_dir: Path, target: str, record_identifier: str, event_time: str,
                       text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Current records of a feature group from its offline store (Parquet files, Iceberg or Glue).

    The offline store is append-only: it holds every version of every record. The current
    table is the latest version of each record identifier (by event time, then write time),
    minus records whose latest version is a deletion. Identifier, event time and Feature
    Store's metadata columns are dropped; the rest are the target and the features.
    """
    if not input_dir.is_dir():
        raise DatasetError(f"input directory {input_dir} does not exist")
    files = sorted(path for path in input_dir.rglob("*.parquet") if path.is_file())
    if not files:
        raise DatasetError(f"no *.parquet file found under {input_dir} (is the offline store empty?)")
    try:
        frame = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    except ImportError:
        raise DatasetError("reading the offline store needs pyarrow in the processing image") from None
    source = f"offline store under {input_dir}"
    for column in (record_identifier, event_time, target):
        if column not in frame.columns:
            raise DatasetError(f"{source}: column {column!r} not found (columns: {sorted(map(str, frame.columns))})")
    order = frame[event_time]
    if not pd.api.types.is_numeric_dtype(order):
        order = pd.to_datetime(order, utc=True, errors="coerce")
        if order.isna().any():
            raise DatasetError(f"{source}: event time column {event_time!r} has unparseable values")
    frame = frame.assign(_order=order)
    sort_by = ["_order"] + (["write_time"] if "write_time" in frame.columns else [])
    latest = frame.sort_values(sort_by, kind="mergesort").drop_duplicates(record_identifier, keep="last")
    if "is_deleted" in latest.columns:
        latest = latest[~latest["is_deleted"].astype(bool)]
    dropped = [record_identifier, event_time, "_order", *[c for c in FEATURE_STORE_METADATA if c in latest.columns]]
    latest = latest.drop(columns=dropped).sort_index().reset_index(drop=True)
    if latest.empty:
        raise DatasetError(f"{source}: no current records")
    return check_frame(latest, target, source, first=1, unit="row", text=text)


def load_dataset(files: list[Path], target: str, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read and check every file; all must have the same columns (in any order)."""
    frames: list[pd.DataFrame] = []
    columns: list[str] = []
    for path in files:
        frame = read_csv(path, target, text)
        if not frames:
            columns = [str(c) for c in frame.columns]
        else:
            names = [str(c) for c in frame.columns]
            missing = [c for c in columns if c not in names]
            unexpected = [c for c in names if c not in columns]
            if missing or unexpected:
                raise DatasetError(
                    f"{path}: columns differ from {files[0]}: missing {missing}, unexpected {unexpected}"
                )
            frame = frame[columns]
        frame.columns = columns
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def load_production(location: str, target: str, columns: list[str], scratch: Path,
                    text: tuple[str, ...] = ()) -> "pd.DataFrame | None":
    """The production rows of closed-loop retraining (``None`` for ``none`` or empty), checked
    like the raw data and put in its column order. An ``s3://`` object is downloaded first (boto3
    is in the SageMaker scikit-learn image); zero rows (a header only) is no production data."""
    if not location or location == "none":
        return None
    path = Path(location)
    if location.startswith("s3://"):
        import boto3

        bucket, _, key = location[len("s3://"):].partition("/")
        path = scratch.parent / "production" / Path(key).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{location}: cannot read the production data ({exc})") from None
    names = [str(c) for c in frame.columns]
    if sorted(names) != sorted(columns):
        raise DatasetError(f"{location}: production columns {names} differ from the raw data's {columns}")
    if frame.empty:
        return None
    return check_frame(frame, target, location, text=text)[columns]


def split_indices(
    labels: np.ndarray, validation_fraction: float, test_fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/validation/test row indices."""
    indices = np.arange(labels.size)
    try:
        rest, test = train_test_split(
            indices, test_size=test_fraction, random_state=seed, shuffle=True, stratify=labels
        )
        train, validation = train_test_split(
            rest,
            test_size=validation_fraction / (1.0 - test_fraction),
            random_state=seed,
            shuffle=True,
            stratify=labels[rest],
        )
    except ValueError as exc:
        raise DatasetError(f"{source}: cannot split the rows stratified by class ({exc})") from None
    return train, validation, test


def feature_statistics(values: np.ndarray) -> dict:
    """Baseline statistics of one numeric feature (see the module docstring)."""
    values = values.astype(np.float64)
    quantiles = np.quantile(values, QUANTILES)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
        counts = np.array([values.size])
    else:
        counts, _ = np.histogram(values, bins=edges)
    return {
        "type": "numeric",
        "count": int(values.size),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "quantiles": {format(q, "g"): float(v) for q, v in zip(QUANTILES, quantiles)},
        "histogram": {
            "bin_edges": [float(edge) for edge in edges],
            "counts": [int(count) for count in counts],
        },
    }


def text_statistics(values: pd.Series, max_vocabulary: int = MAX_VOCABULARY) -> dict:
    """Baseline of one text feature, the monitoring job's text reference (``monitoring/drift.py``
    ``build_text_baseline``'s layout): the ``max_vocabulary`` most frequent tokens with their
    counts (ties alphabetical), the other tokens' count (``oov_count``), and the documents' token
    counts in the numeric layout. Computed here, once, so the job only counts the window."""
    tokens = values.astype(str).str.lower().str.findall(TEXT_TOKEN_PATTERN)
    counts = tokens.explode().dropna().value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = {str(token): int(count) for token, count in ranked[:max_vocabulary]}
    total = int(counts.sum())
    return {
        "version": 1,
        "type": "text",
        "tokenizer": TEXT_TOKENIZER,
        "document_count": int(len(values)),
        "token_count": total,
        "vocabulary": vocabulary,
        "oov_count": total - sum(vocabulary.values()),
        "length": feature_statistics(tokens.str.len().to_numpy()),
    }


def build_baseline(train: pd.DataFrame, target: str, features: list[str], text: tuple[str, ...] = (),
                   max_vocabulary: int = MAX_VOCABULARY) -> dict:
    labels = train[target].to_numpy()
    return {
        "version": BASELINE_VERSION,
        "target_column": target,
        "feature_names": features,
        "row_count": int(len(train)),
        "features": {name: text_statistics(train[name], max_vocabulary) if name in text
                     else feature_statistics(train[name].to_numpy()) for name in features},
        "label_distribution": {str(label): int(np.sum(labels == label)) for label in (0, 1)},
    }


def write_json(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_split(frame: pd.DataFrame, path: Path) -> None:
    """Header-less CSV, label first: the layout of the SageMaker XGBoost container."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, header=False, index=False)


def run(args: argparse.Namespace) -> None:
    target = args.target_column
    if args.input_format == "feature-store":
        source = f"offline store under {args.input_dir}"
        data = load_feature_store(args.input_dir, target, args.record_identifier, args.event_time_feature,
                                  args.text_features)
    else:
        files = find_csv_files(args.input_dir)
        source = str(files[0]) if len(files) == 1 else f"{len(files)} CSV files under {args.input_dir}"
        data = load_dataset(files, target, args.text_features)

    production = load_production(args.production_data, target, [str(c) for c in data.columns], args.input_dir,
                                 args.text_features)
    if production is not None:
        LOG.info("adding %s production row(s) joined with their ground truth from %s",
                 len(production), args.production_data)
        data = pd.concat([data, production], ignore_index=True)
        source = f"{source} and {args.production_data}"

    if len(data) < MIN_ROWS:
        raise DatasetError(f"{source}: only {len(data)} data row(s); at least {MIN_ROWS} are needed")
    labels = data[target].to_numpy()
    for label in (0, 1):
        count = int(np.sum(labels == label))
        if count < MIN_CLASS_ROWS:
            raise DatasetError(
                f"{source}: target column {target!r} has {count} row(s) of class {label}; "
                f"at least {MIN_CLASS_ROWS} of each class are needed"
            )

    features = [column for column in data.columns if column != target]
    ordered = data[[target] + features]
    train, validation, test = split_indices(
        labels, args.validation_fraction, args.test_fraction, args.seed, source
    )
    out = args.output_dir
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        shards = args.train_shards if name == "train" else 1
        for shard, part in enumerate(np.array_split(rows, shards)):
            path = out / name / (f"{name}.csv" if shards == 1 else f"{name}-{shard:05d}.csv")
            write_split(ordered.iloc[part], path)
            LOG.info("wrote %s rows to %s", len(part), path)

    write_json(out / "baseline" / "feature_names.json", features)
    write_json(out / "baseline" / "baseline.json",
               build_baseline(ordered.iloc[train], target, features, args.text_features, args.max_vocabulary))
    LOG.info(
        "read %s rows, %s features from %s; baseline written to %s",
        len(data),
        len(features),
        source,
        out / "baseline",
    )


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
    except DatasetError as exc:
        print(f"preprocess: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
