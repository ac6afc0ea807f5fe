"""Write the example raw data set: scikit-learn's bundled breast cancer data as one CSV.

The data ships inside scikit-learn (no download). The CSV has a header row, 30 numeric feature
columns and a ``target`` column (0 = malignant, 1 = benign): the input ``preprocess.py`` expects.
Used by the tests, and by users to seed the raw-data bucket::

    python training/example_classifier/make_dataset.py --output /tmp/breast_cancer.csv
    aws s3 cp /tmp/breast_cancer.csv s3://<raw-data-bucket>/<prefix>/breast_cancer.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer

TARGET_COLUMN = "target"


def write_dataset(output: Path) -> int:
    """Write the CSV to ``output``; returns the number of data rows."""
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame[TARGET_COLUMN] = bunch.target.astype("int64")
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    return len(frame)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    rows = write_dataset(args.output)
    print(f"wrote {rows} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
