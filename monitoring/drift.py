"""Streaming drift statistics: production traffic of one window against the training baseline.

Every accumulator has ``update(batch)``, ``merge(other)`` and ``result()``; its state is a
fixed number of counters per feature (bins, categories up to a cap, a vocabulary), so memory is
constant in the number of records and the job can stream any number of capture files.

Baseline (``baseline/baseline.json`` written by ``training/example_classifier/preprocess.py``):
numeric features carry the training deciles as ``histogram.bin_edges`` with their ``counts``.
Two optional extensions are read when present: a feature ``{"type": "categorical",
"counts": {"a": 120, "b": 30}}`` and a top-level ``"prediction"`` entry in the numeric-feature
layout (a histogram of the model's training/validation scores) for score drift.

Numeric features
    *PSI* (population stability index) over the baseline's decile bins:
    ``sum((c_i - b_i) * ln(c_i / b_i))`` with ``b_i``/``c_i`` the baseline/current proportions.
    A proportion of 0 (an empty bin) is replaced by ``EPSILON`` = 1e-4 before the sum (the
    proportions are not renormalised), which caps one empty bin's contribution at about
    ``p * ln(p / 1e-4)``. Current values outside the training ``[min, max]`` are counted into the
    end bins (the usual PSI convention) *and* reported separately as ``below_min``/``above_max``
    and ``out_of_range_fraction``, so that a shift beyond the training range is visible even for a
    constant feature (one bin, where PSI is always 0).

    *KS*: the baseline holds no raw training values, so the two-sample Kolmogorov-Smirnov
    statistic is computed from the binned sketch, exactly at the knots where both CDFs are known
    exactly: just below each decile edge (the baseline's cumulative counts; the current window's
    exact counts of values below the edge), and at the training maximum. ``ks_statistic`` is
    the largest CDF gap at those knots, a *lower bound* of the exact two-sample KS statistic
    between the training split and the window (what ``scipy.stats.ks_2samp`` would return on the
    raw values); ``ks_upper_bound`` bounds it from above using monotonicity of both CDFs between
    knots. The exact value lies in ``[ks_statistic, ks_upper_bound]``; the gap is at most about
    one bin's mass (10 % of the training data plus the window's mass in that bin).

    *JS distance* over the same (clipped) bins is reported as well.

Categorical features
    Chi-square test of homogeneity on the 2 x k table (baseline counts, current counts) over the
    categories seen in either, without continuity correction (``scipy.stats.chi2_contingency``
    with ``correction=False``), its p-value, and the Jensen-Shannon distance (base 2, in [0, 1])
    between the two category distributions. Categories not in the baseline are counted
    individually up to ``MAX_NEW_CATEGORIES`` per feature, the rest in one ``__other__`` bucket.

Predictions
    Binary: the distribution of predicted classes (the label when the model returns one, else
    ``score >= score_threshold``) against the baseline's ``label_distribution``: PSI and JS
    distance over the two classes, positive rates; the scores' histogram over ten fixed bins of
    [0, 1]; with a baseline ``prediction`` entry, the scores get the numeric-feature statistics
    (PSI, KS) as well. Regression: score summary, and the numeric statistics against a baseline
    ``prediction`` entry when present. ``psi`` of the prediction section is the score PSI when a
    ``prediction`` baseline exists, else the class PSI (binary), else ``None``.

Text inputs (NLP models)
    Deterministic tokenizer: lowercase, then the Unicode word regex ``\\w+`` (letters, digits
    and underscore runs of any script). The text baseline holds the reference corpus's
    vocabulary (the ``max_vocabulary`` most frequent tokens, ties broken alphabetically, with
    their counts; the rest of the corpus's tokens are its out-of-vocabulary count) and the
    deciles of its documents' token counts. Drift: Jensen-Shannon distance between the token
    distributions over the vocabulary plus one out-of-vocabulary bin, the out-of-vocabulary rate
    (share of the window's tokens not in the vocabulary), and PSI over the token-count bins
    (``length_psi``).

All JS distances are ``sqrt(JS divergence)`` with base-2 logarithms, i.e. in [0, 1] and equal to
``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Iterable

import numpy as np

EPSILON = 1e-4
"""Floor for empty-bin proportions in PSI (see the module docstring)."""

MAX_NEW_CATEGORIES = 1000
OTHER_CATEGORY = "__other__"
DEFAULT_MAX_VOCABULARY = 20000
TEXT_BASELINE_VERSION = 1
TOKENIZER = "lowercase+unicode-word-regex-v1"
TOKEN_PATTERN = re.compile(r"\w+")
SEPARATOR = "\x00"  # neither a word character nor white space (str.split keeps it)
SEPARATED_TOKENS = re.compile(r"\w+|\x00")
# ASCII text: the word characters (what ``\w`` matches there) and the separator kept, every other
# byte a space, so that ``bytes.split`` gives the tokens (several times faster than the regex)
_ASCII_TOKENS = bytes(c if chr(c) == SEPARATOR or re.fullmatch(r"\w", chr(c)) else 32 for c in range(128)) + b" " * 128
SCORE_BIN_EDGES = tuple(i / 10 for i in range(11))
DECILES = np.linspace(0.0, 1.0, 11)
# numpy's text reader in C (1.23+): floats parsed by Python's own float parser, rows checked
BULK_CSV = np.lib.NumpyVersion(np.__version__) >= "1.23.0"
TOP_TOKEN_CHANGES = 10
TEXT_TEST_TOKENS = 50
"""The text tests' cells: this many most frequent vocabulary tokens, the rest, out of vocabulary."""


class BaselineError(ValueError):
    """A baseline document that cannot be used; the message names the field and problem."""


# --- statistics -----------------------------------------------------------------------------


def _proportions(counts: Iterable[float]) -> np.ndarray:
    values = np.asarray(list(counts) if not isinstance(counts, np.ndarray) else counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        raise ValueError("no counts")
    return values / total


def psi(baseline_counts: Iterable[float], current_counts: Iterable[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two count vectors over the same bins (empty bins -> epsilon)."""
    expected = np.maximum(_proportions(baseline_counts), epsilon)
    actual = np.maximum(_proportions(current_counts), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(p_counts: Iterable[float], q_counts: Iterable[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count or probability vectors."""
    p = _proportions(p_counts)
    q = _proportions(q_counts)
    from scipy.spatial.distance import jensenshannon  # scipy on first use (see decision._stats)

    return float(min(max(jensenshannon(p, q, base=2), 0.0), 1.0))


def chi_square(baseline_counts: Iterable[float], current_counts: Iterable[float]) -> dict:
    """Chi-square homogeneity test on the 2 x k table, without continuity correction.

    Columns that are empty in both rows are dropped. Returns ``statistic``, ``p_value`` and ``dof``.
    """
    table = np.array([list(baseline_counts), list(current_counts)], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return {"statistic": 0.0, "p_value": 1.0, "dof": max(table.shape[1] - 1, 0)}
    from scipy.stats import chi2_contingency

    statistic, p_value, dof, _ = chi2_contingency(table, correction=False)
    return {"statistic": float(statistic), "p_value": float(p_value), "dof": int(dof)}


def wasserstein_sd(edges: np.ndarray, baseline_counts: np.ndarray, current_counts: np.ndarray, std: "float | None") -> "float | None":
    """Wasserstein-1 distance between the two binned distributions (mass at bin midpoints), in
    units of the training standard deviation: an effect size people read as "shift in sd"."""
    if not std or std <= 0 or edges.size < 2 or current_counts.sum() <= 0:
        return None
    middles = (edges[:-1] + edges[1:]) / 2.0
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(middles, middles, baseline_counts, current_counts) / std)


def ks_bracket(baseline_cdf: np.ndarray, current_cdf: np.ndarray) -> "tuple[float, float]":
    """(lower, upper) bounds of the KS statistic from two CDFs known exactly at the same knots.

    The knots must be in increasing order and cover the support: both CDFs are 0 before the
    first knot's region and 1 after the last. Between consecutive knots a and b each CDF lies in
    [F(a), F(b)], so the gap is at most ``max(B(b) - C(a), C(b) - B(a))``.
    """
    b = np.asarray(baseline_cdf, dtype=np.float64)
    c = np.asarray(current_cdf, dtype=np.float64)
    lower = float(np.max(np.abs(b - c)))
    if b.size < 2:
        return lower, lower
    between = np.maximum(b[1:] - c[:-1], c[1:] - b[:-1])
    return lower, float(max(lower, np.max(between)))


class _Moments:
    """Count, mean, M2 (Chan et al.'s parallel update), min and max of a stream of floats."""

    __slots__ = ("n", "mean", "m2", "min", "max")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, values: np.ndarray) -> None:
        if values.size:
            mean = values.mean()
            self._combine(int(values.size), float(mean), float(((values - mean) ** 2).sum()))
            self.min = min(self.min, float(values.min()))
            self.max = max(self.max, float(values.max()))

    def _combine(self, n: int, mean: float, m2: float) -> None:
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def merge(self, other: "_Moments") -> None:
        if other.n:
            self._combine(other.n, other.mean, other.m2)
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)

    def result(self) -> dict:
        if not self.n:
            return {"mean": None, "std": None, "min": None, "max": None}
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return {"mean": self.mean, "std": std, "min": self.min, "max": self.max}


def to_float(value: object) -> "tuple[float | None, str]":
    """(number, status) of a feature value: status ``ok``, ``missing`` or ``invalid``."""
    if value is None:
        return None, "missing"
    if isinstance(value, (int, float)):  # bool is an int
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None, "missing"
        try:
            number = float(text)
        except ValueError:
            return None, "invalid"
    else:
        return None, "invalid"
    if math.isnan(number):
        return None, "missing"
    if math.isinf(number):
        return None, "invalid"
    return number, "ok"


def bulk_numbers(values: Iterable[object]) -> np.ndarray:
    """Raw values (numbers, numeric strings, ``None``, text) as floats in one vectorised pass:
    NaN for missing values, +inf for invalid ones (what :meth:`NumericDrift.update` counts), as
    :func:`to_float` would read them one by one. Only values the bulk parser rejects (blank,
    padded or non-numeric text: rare in clean data) are looked at individually."""
    import pandas as pd  # imported when used: a numeric-only job never needs it
    series = pd.Series(values if isinstance(values, list) else list(values), dtype=object)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for index in np.flatnonzero(np.isnan(numbers) & series.notna().to_numpy()):
        number, status = to_float(series.iat[index])
        numbers[index] = number if status == "ok" else (np.nan if status == "missing" else np.inf)
    return numbers


def factorize_integers(values: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """``pandas.factorize`` of an integer array with numpy alone: each value's code and the
    distinct values in the order they first appear."""
    distinct, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, dtype=np.intp)
    rank[order] = np.arange(order.size)
    return rank[inverse.reshape(-1)], distinct[order]


def _is_float(value: bytes) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def category_key(value: object) -> "str | None":
    """A categorical value as a string (``1``, ``1.0`` and ``"1"`` are the same category)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text if text else None


# --- numeric features -----------------------------------------------------------------------


_PARSED_SPECS: "dict[int, tuple[dict, str, np.ndarray, np.ndarray]]" = {}


def _numeric_spec(name: str, spec: dict) -> "tuple[np.ndarray, np.ndarray]":
    """``(bin edges, baseline counts)`` of a numeric spec, validated; read-only arrays, parsed once
    per spec object (the job builds one accumulator per capture file from the same baseline)."""
    parsed = _PARSED_SPECS.get(id(spec))
    if parsed is not None and parsed[0] is spec and parsed[1] == name:  # the entry holds ``spec``: its id is its own
        return parsed[2], parsed[3]
    edges, counts = _parse_numeric_spec(name, spec)
    edges.setflags(write=False)
    counts.setflags(write=False)
    if len(_PARSED_SPECS) >= 256:
        _PARSED_SPECS.clear()
    _PARSED_SPECS[id(spec)] = (spec, name, edges, counts)
    return edges, counts


def _parse_numeric_spec(name: str, spec: dict) -> "tuple[np.ndarray, np.ndarray]":
    histogram = spec.get("histogram")
    if not isinstance(histogram, dict):
        raise BaselineError(f"feature {name!r}: no histogram")
    try:
        edges = np.asarray(histogram["bin_edges"], dtype=np.float64)
        counts = np.asarray(histogram["counts"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise BaselineError(f"feature {name!r}: histogram needs numeric bin_edges and counts") from None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise BaselineError(f"feature {name!r}: histogram.bin_edges needs at least two finite edges")
    if np.any(np.diff(edges) < 0) or (edges.size > 2 and np.any(np.diff(edges) <= 0)):
        raise BaselineError(f"feature {name!r}: histogram.bin_edges must be strictly ascending")
    if counts.shape != (edges.size - 1,) or np.any(counts < 0) or counts.sum() <= 0:
        raise BaselineError(f"feature {name!r}: histogram.counts needs len(bin_edges) - 1 non-negative counts")
    return edges, counts


class NumericDrift:
    """PSI, binned KS bracket, JS distance and range checks of one numeric feature."""

    kind = "numeric"

    def __init__(self, name: str, spec: dict) -> None:
        self.name = name
        self.spec = spec
        self.edges, self.baseline_counts = _numeric_spec(name, spec)
        self.cells = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.above_max = 0
        self.missing = 0
        self.invalid = 0
        self.moments = _Moments()

    @property
    def count(self) -> int:
        return int(self.cells.sum())

    def update(self, values: "np.ndarray | Iterable[object]") -> None:
        """Add a batch of values: a float array (NaN = missing, +-inf = invalid) or raw values."""
        if not isinstance(values, np.ndarray) or values.dtype != np.float64:
            values = bulk_numbers(values)
        finite = np.isfinite(values)
        if not finite.all():
            nan = int(np.isnan(values).sum())
            self.missing += nan
            self.invalid += int(values.size - finite.sum()) - nan
            values = values[finite]
        if not values.size:
            return
        if self.edges.size <= 16:
            # cell k holds the values with exactly k edges <= them (searchsorted's side="right"):
            # with ascending edges, at least k edges are <= v exactly when edges[k - 1] <= v, so
            # one comparison per edge counts them (several times faster than the binary searches)
            at_least = [values.size, *(int(np.count_nonzero(values >= edge)) for edge in self.edges.tolist()), 0]
            self.cells -= np.diff(np.array(at_least, dtype=np.int64))
        else:
            self.cells += np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=self.cells.size)
        self.above_max += int(np.count_nonzero(values > self.edges[-1]))
        self.moments.update(values)

    def add_missing(self, count: int = 1) -> None:
        self.missing += count

    def merge(self, other: "NumericDrift") -> None:
        self.cells += other.cells
        self.above_max += other.above_max
        self.missing += other.missing
        self.invalid += other.invalid
        self.moments.merge(other.moments)

    def test_input(self) -> dict:
        """What the drift test reads (``decision.drift_test``): reference and window counts over
        the training bins (ordered), out-of-range values in the end bins."""
        return {"reference": self.baseline_counts.tolist(), "window": self.current_histogram().tolist(), "ordered": True}

    def current_histogram(self) -> np.ndarray:
        """Current counts over the baseline bins, out-of-range values in the end bins."""
        bins = self.edges.size - 1
        histogram = self.cells[1 : bins + 1].copy()
        histogram[0] += self.cells[0]
        histogram[-1] += self.cells[bins + 1]
        return histogram

    def result(self) -> dict:
        n = self.count
        seen = n + self.missing + self.invalid
        baseline = {key: self.spec.get(key) for key in ("count", "mean", "std", "min", "max")}
        result = {
            "type": "numeric",
            "status": "ok" if n else "no_data",
            "count": n,
            "missing": self.missing,
            "invalid": self.invalid,
            "missing_fraction": (self.missing + self.invalid) / seen if seen else None,
            "psi": None,
            "ks_statistic": None,
            "ks_upper_bound": None,
            "js_distance": None,
            "wasserstein_sd": None,
            "below_min": int(self.cells[0]),
            "above_max": self.above_max,
            "out_of_range_fraction": None,
        }
        result.update(self.moments.result())
        result["baseline"] = baseline
        current = self.current_histogram()
        result["histogram"] = {
            "bin_edges": [float(edge) for edge in self.edges],
            "baseline_counts": [int(c) if float(c).is_integer() else float(c) for c in self.baseline_counts],
            "current_counts": [int(c) for c in current],
        }
        if not n:
            return result
        result["psi"] = psi(self.baseline_counts, current)
        result["js_distance"] = js_distance(self.baseline_counts, current)
        result["wasserstein_sd"] = wasserstein_sd(self.edges, self.baseline_counts, current, self.spec.get("std"))
        result["out_of_range_fraction"] = (int(self.cells[0]) + self.above_max) / n
        bins = self.edges.size - 1
        baseline_cdf = np.concatenate([[0.0], np.cumsum(self.baseline_counts)]) / self.baseline_counts.sum()
        current_cdf = np.empty(bins + 1)
        current_cdf[:bins] = np.cumsum(self.cells[:bins]) / n
        current_cdf[bins] = 1.0 - self.above_max / n
        result["ks_statistic"], result["ks_upper_bound"] = ks_bracket(baseline_cdf, current_cdf)
        return result


# --- categorical features -------------------------------------------------------------------


class CategoricalDrift:
    """Chi-square homogeneity test, JS distance and unseen categories of one categorical feature."""

    kind = "categorical"

    def __init__(self, name: str, spec: dict) -> None:
        counts = spec.get("counts")
        if not isinstance(counts, dict) or not counts:
            raise BaselineError(f"feature {name!r}: a categorical feature needs a non-empty counts object")
        try:
            self.baseline = {str(key): float(value) for key, value in counts.items()}
        except (TypeError, ValueError):
            raise BaselineError(f"feature {name!r}: categorical counts must be numbers") from None
        if any(value < 0 for value in self.baseline.values()) or sum(self.baseline.values()) <= 0:
            raise BaselineError(f"feature {name!r}: categorical counts must be non-negative, not all 0")
        self.name = name
        self.counts: Counter = Counter()
        self.new_categories = 0
        self.missing = 0

    def update(self, values: Iterable[object]) -> None:
        """Add a batch of raw values: one hash factorisation of the batch, then a category key
        per *distinct* value (no per-value Python)."""
        import pandas as pd  # imported when used: a numeric-only job never needs it
        values = values if isinstance(values, list) else list(values)
        if pd.api.types.infer_dtype(values, skipna=True) != "string" and any(type(v) is bool for v in values):
            # hashing takes True for 1: booleans become their category key before factorising
            values = [("true" if v else "false") if type(v) is bool else v for v in values]
        self.update_codes(*pd.factorize(pd.Series(values, dtype=object)))

    def update_codes(self, codes: np.ndarray, distinct: list) -> None:
        """Add a factorised batch: ``codes`` (-1 = missing) into ``distinct`` values, as
        ``pandas.factorize`` gives them in :meth:`update`."""
        counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
        self.missing += int(np.count_nonzero(codes < 0))
        keyed: Counter = Counter()
        for value, count in zip(distinct, counts.tolist()):
            key = category_key(value)
            if key is None:
                self.missing += count
            else:
                keyed[key] += count
        for key, count in keyed.items():
            if key not in self.baseline and key not in self.counts:
                if self.new_categories >= MAX_NEW_CATEGORIES:
                    key = OTHER_CATEGORY
                else:
                    self.new_categories += 1
            self.counts[key] += count

    def add_missing(self, count: int = 1) -> None:
        self.missing += count

    def test_input(self) -> dict:
        """Reference and window counts over the baseline's categories plus one cell for every
        category the baseline never saw (unordered)."""
        names = sorted(self.baseline)
        window = [self.counts.get(key, 0) for key in names]
        unseen = sum(count for key, count in self.counts.items() if key not in self.baseline)
        return {"reference": [self.baseline[key] for key in names] + [0.0], "window": window + [unseen], "ordered": False}

    def merge(self, other: "CategoricalDrift") -> None:
        for key, count in other.counts.items():
            if key not in self.baseline and key not in self.counts:
                if self.new_categories >= MAX_NEW_CATEGORIES:
                    key = OTHER_CATEGORY
                else:
                    self.new_categories += 1
            self.counts[key] += count
        self.missing += other.missing

    def result(self) -> dict:
        n = sum(self.counts.values())
        seen = n + self.missing
        categories = sorted(self.baseline, key=lambda key: (-self.baseline[key], key))
        categories += sorted((key for key in self.counts if key not in self.baseline), key=lambda k: (-self.counts[k], k))
        baseline_counts = [self.baseline.get(key, 0.0) for key in categories]
        current_counts = [self.counts.get(key, 0) for key in categories]
        unseen = sum(count for key, count in self.counts.items() if key not in self.baseline)
        result = {
            "type": "categorical",
            "status": "ok" if n else "no_data",
            "count": n,
            "missing": self.missing,
            "missing_fraction": self.missing / seen if seen else None,
            "chi2_statistic": None,
            "chi2_p_value": None,
            "chi2_dof": None,
            "js_distance": None,
            "psi": None,
            "unseen_categories": len([key for key in self.counts if key not in self.baseline]),
            "unseen_fraction": unseen / n if n else None,
            "categories": {
                "names": categories,
                "baseline_counts": [int(c) if float(c).is_integer() else c for c in baseline_counts],
                "current_counts": current_counts,
            },
        }
        if n:
            test = chi_square(baseline_counts, current_counts)
            result.update(chi2_statistic=test["statistic"], chi2_p_value=test["p_value"], chi2_dof=test["dof"])
            result["js_distance"] = js_distance(baseline_counts, current_counts)
            result["psi"] = psi(baseline_counts, current_counts)
        return result


# --- predictions ----------------------------------------------------------------------------


class PredictionDrift:
    """Drift of the model's outputs (see the module docstring)."""

    def __init__(self, problem_type: str, baseline: "dict | None", score_threshold: float = 0.5) -> None:
        self.problem_type = problem_type
        self.score_threshold = score_threshold
        baseline = baseline or {}
        self.score = NumericDrift("prediction", baseline["prediction"]) if baseline.get("prediction") else None
        self.moments = _Moments()
        distribution = baseline.get("label_distribution") if problem_type == "binary" else None
        self.baseline_classes = None
        if isinstance(distribution, dict):
            self.baseline_classes = [float(distribution.get("0", 0)), float(distribution.get("1", 0))]
            if sum(self.baseline_classes) <= 0:
                self.baseline_classes = None
        self.reference_classes = None
        classes = baseline.get("prediction_classes") if problem_type == "binary" else None
        if isinstance(classes, dict) and sum(float(classes.get(k, 0)) for k in ("0", "1")) > 0:
            self.reference_classes = [float(classes.get("0", 0)), float(classes.get("1", 0))]
        self.classes = np.zeros(2, dtype=np.int64)
        self.other_labels = 0
        self.score_bins = np.zeros(len(SCORE_BIN_EDGES) - 1, dtype=np.int64)
        self.scores_outside_unit = 0
        self.count = 0

    def update(self, predictions: list) -> None:
        """Add :class:`capture.Prediction` ``(score, label)`` tuples."""
        if not predictions:
            return
        scores = np.fromiter(
            (p[0] if p[0] is not None else math.nan for p in predictions), dtype=np.float64, count=len(predictions)
        )
        self._add(scores, predictions)

    def update_scores(self, scores: np.ndarray) -> None:
        """Add predictions that are all scores (no label), as :meth:`update` would."""
        if scores.size:
            self._add(scores, ())

    def _add(self, scores: np.ndarray, predictions: "list | tuple") -> None:
        self.count += scores.size
        finite = np.isfinite(scores)
        values = scores[finite]
        self.moments.update(values)
        if self.score is not None:
            self.score.update(values)
        if self.problem_type != "binary":
            return
        self.scores_outside_unit += int(np.count_nonzero((values < 0) | (values > 1)))
        index = np.clip(np.searchsorted(SCORE_BIN_EDGES, values, side="right") - 1, 0, len(self.score_bins) - 1)
        self.score_bins += np.bincount(index, minlength=len(self.score_bins))
        labelled = [p[1] for p in predictions if p[1] is not None]
        if labelled:
            for label in labelled:
                if label == "1":
                    self.classes[1] += 1
                elif label == "0":
                    self.classes[0] += 1
                else:
                    self.other_labels += 1
            from_score = np.array([p[1] is None for p in predictions]) & finite
            values = scores[from_score]
        positives = int(np.count_nonzero(values >= self.score_threshold))
        self.classes[1] += positives
        self.classes[0] += int(values.size) - positives

    def test_inputs(self) -> dict:
        """The score test (against the baseline's ``prediction`` histogram) and the predicted-class
        test (against ``prediction_classes``: the model's own classes on held-out data; the
        training labels are no reference for a model's predictions), where the baseline has them."""
        inputs = {}
        if self.score is not None:
            inputs["prediction.score"] = self.score.test_input()
        if self.reference_classes is not None:
            inputs["prediction.class"] = {"reference": list(self.reference_classes),
                                          "window": [int(c) for c in self.classes], "ordered": False}
        return inputs

    def merge(self, other: "PredictionDrift") -> None:
        self.count += other.count
        self.moments.merge(other.moments)
        if self.score is not None and other.score is not None:
            self.score.merge(other.score)
        self.classes += other.classes
        self.other_labels += other.other_labels
        self.score_bins += other.score_bins
        self.scores_outside_unit += other.scores_outside_unit

    def result(self) -> dict:
        result: dict = {"count": self.count, "psi": None, "score_summary": self.moments.result()}
        result["score_summary"]["count"] = self.moments.n
        if self.score is not None:
            result["score"] = self.score.result()
            result["psi"] = result["score"]["psi"]
        if self.problem_type == "binary":
            total = int(self.classes.sum())
            classes: dict = {
                "current_counts": {"0": int(self.classes[0]), "1": int(self.classes[1])},
                "other_labels": self.other_labels,
                "positive_rate": float(self.classes[1]) / total if total else None,
                "baseline_counts": None,
                "baseline_positive_rate": None,
                "psi": None,
                "js_distance": None,
            }
            if self.baseline_classes is not None:
                base = self.baseline_classes
                classes["baseline_counts"] = {"0": base[0], "1": base[1]}
                classes["baseline_positive_rate"] = base[1] / sum(base)
                if total:
                    classes["psi"] = psi(base, self.classes)
                    classes["js_distance"] = js_distance(base, self.classes)
            result["classes"] = classes
            result["score_histogram"] = {
                "bin_edges": list(SCORE_BIN_EDGES),
                "current_counts": [int(c) for c in self.score_bins],
                "outside_0_1": self.scores_outside_unit,
            }
            if result["psi"] is None:
                result["psi"] = classes["psi"]
        result["status"] = "ok" if self.count else "no_data"
        return result


# --- text -----------------------------------------------------------------------------------


def tokenize(text: str) -> list:
    """Lowercase, then every run of Unicode word characters (``\\w+``)."""
    return TOKEN_PATTERN.findall(text.lower())


def documents_of(values: Iterable[object]) -> "tuple[list, int]":
    """(documents, missing count) of a text feature's raw values: strings are documents; ``None``
    and NaN are missing; numbers are read as their text (``3.0`` as ``3``, as a CSV field)."""
    import pandas as pd  # imported when used: a numeric-only job never needs it
    values = values if isinstance(values, list) else list(values)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values, 0
    documents = []
    for value in values:
        if isinstance(value, str):
            documents.append(value)
        elif value is not None and not (isinstance(value, float) and math.isnan(value)):
            documents.append(category_key(value) or "")
    return documents, len(values) - len(documents)


def tokenize_documents(documents: list) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """Every document's tokens at once: ``(codes, distinct, lengths)``, the tokens of all documents
    in order as codes into ``distinct`` (the distinct tokens), and each document's token count.

    One lowercase and one tokenizing pass over the documents joined by ``SEPARATOR`` (no token
    spans it, so none spans two documents; the separators are kept as tokens, which gives the
    lengths), and one hash factorisation: no Python loop per document or per token. ASCII text
    (most of it) is split by a byte translation, other text by the regex."""
    import pandas as pd  # imported when used: a numeric-only job never needs it
    joined = f" {SEPARATOR} ".join(documents).lower()
    if joined.count(SEPARATOR) != max(len(documents) - 1, 0):  # a document holds the separator itself
        words = [tokenize(document) for document in documents]
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        codes, distinct = pd.factorize(np.array(list(chain.from_iterable(words)), dtype=object))
        return codes, np.asarray(distinct, dtype=object), lengths
    if joined.isascii():
        found = joined.encode("ascii").translate(_ASCII_TOKENS).decode("ascii").split()
    else:
        found = SEPARATED_TOKENS.findall(joined)
    codes, distinct = pd.factorize(np.array(found, dtype=object))
    distinct = np.asarray(distinct, dtype=object)
    if len(documents) < 2:  # no separator
        return codes, distinct, np.array([len(found)] if documents else [], dtype=np.int64)
    separator = codes[found.index(SEPARATOR)]  # the first separator follows the first document's tokens
    is_separator = codes == separator
    boundaries = np.flatnonzero(is_separator)
    lengths = np.diff(np.concatenate(([-1], boundaries, [codes.size]))) - 1
    # renumber the tokens' codes so that ``distinct`` holds only tokens
    keep = np.ones(distinct.size, dtype=bool)
    keep[separator] = False
    renumber = np.cumsum(keep) - 1
    return renumber[codes[~is_separator]], distinct[keep], lengths.astype(np.int64)


def _length_spec(lengths: np.ndarray) -> dict:
    """Token-count statistics in the numeric-feature layout (deciles as bin edges)."""
    edges = np.unique(np.quantile(lengths, DECILES))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
        counts = np.array([lengths.size])
    else:
        counts, _ = np.histogram(lengths, bins=edges)
    return {
        "type": "numeric",
        "count": int(lengths.size),
        "mean": float(lengths.mean()),
        "std": float(lengths.std(ddof=1)) if lengths.size > 1 else 0.0,
        "min": float(lengths.min()),
        "max": float(lengths.max()),
        "histogram": {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def build_text_baseline(documents: Iterable[str], max_vocabulary: int = DEFAULT_MAX_VOCABULARY) -> dict:
    """Text baseline of a reference corpus (one string per document)::

        {"version": 1, "type": "text", "tokenizer": "...", "document_count": n, "token_count": t,
         "vocabulary": {"token": count, ...},   # the max_vocabulary most frequent tokens
         "oov_count": c,                        # corpus tokens outside that vocabulary
         "length": {numeric-feature layout of the documents' token counts}}
    """
    documents, _ = documents_of(documents)  # missing values are no documents
    if not documents:
        raise BaselineError("the reference corpus has no document")
    codes, distinct, lengths = tokenize_documents(documents)
    counts = np.bincount(codes, minlength=len(distinct)).tolist()
    ranked = sorted(zip(distinct.tolist(), counts), key=lambda item: (-item[1], item[0]))
    vocabulary = dict(ranked[:max_vocabulary])
    total = int(codes.size)
    return {
        "version": TEXT_BASELINE_VERSION,
        "type": "text",
        "tokenizer": TOKENIZER,
        "document_count": len(documents),
        "token_count": total,
        "vocabulary": vocabulary,
        "oov_count": total - sum(vocabulary.values()),
        "length": _length_spec(np.asarray(lengths, dtype=np.float64)),
    }


def load_text_baseline(path: Path, max_vocabulary: int = DEFAULT_MAX_VOCABULARY) -> dict:
    """A text baseline from a JSON vocabulary (``build_text_baseline``'s layout) or a corpus.

    A corpus is a ``.jsonl`` file (one JSON string, or object with a ``text`` field, per line)
    or any other text file (one document per non-empty line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read the text baseline ({exc})") from None
    if path.suffix == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise BaselineError(f"{path}: not valid JSON ({exc})") from None
        validate_text_baseline(document, str(path))
        return document
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                value = json.loads(line)
            except ValueError:
                raise BaselineError(f"{path}: line {number} is not valid JSON") from None
            value = value.get("text") if isinstance(value, dict) else value
            if not isinstance(value, str):
                raise BaselineError(f"{path}: line {number} has no text")
            documents.append(value)
        else:
            documents.append(line)
    return build_text_baseline(documents, max_vocabulary)


def validate_text_baseline(document: object, source: str) -> None:
    if not isinstance(document, dict) or not isinstance(document.get("vocabulary"), dict):
        raise BaselineError(f"{source}: a text baseline needs a vocabulary object")
    if not document["vocabulary"]:
        raise BaselineError(f"{source}: the text baseline's vocabulary is empty")
    if not isinstance(document.get("length"), dict):
        raise BaselineError(f"{source}: a text baseline needs the length statistics")
    if document.get("tokenizer", TOKENIZER) != TOKENIZER:
        raise BaselineError(f"{source}: built with tokenizer {document['tokenizer']!r}, this job tokenizes with "
                            f"{TOKENIZER!r}: rebuild the baseline")
    _numeric_spec("text length", document["length"])


class TextDrift:
    """Token-distribution JS distance, out-of-vocabulary rate and length PSI of text inputs (a text
    feature of the model's input, or whole-document requests), and the counts the calibrated text
    tests read: the window's tokens over ``TEXT_TEST_TOKENS`` cells of the vocabulary's most
    frequent tokens, the rest of the vocabulary and the out-of-vocabulary tokens, with the
    per-document sums that estimate their design effect."""

    kind = "text"

    def __init__(self, baseline: dict, name: str = "text") -> None:
        validate_text_baseline(baseline, f"text feature {name!r}" if name != "text" else "text baseline")
        self.name = name
        vocabulary = baseline["vocabulary"]
        self.tokens = list(vocabulary)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.oov = len(self.tokens)
        self.baseline_counts = np.array(
            [float(vocabulary[t]) for t in self.tokens] + [float(baseline.get("oov_count", 0))]
        )
        self.counts = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        self.length = NumericDrift("token_count", baseline["length"])
        self.documents = 0
        self.empty_documents = 0
        self.missing = 0
        # cell of every vocabulary index (and of the out-of-vocabulary index): the most frequent
        # tokens one cell each, then the rest of the vocabulary, then out of vocabulary
        ranked = np.argsort(-self.baseline_counts[:-1], kind="mergesort")
        top = min(TEXT_TEST_TOKENS, len(self.tokens))
        self.cell_of = np.full(len(self.tokens) + 1, top, dtype=np.int64)
        self.cell_of[ranked[:top]] = np.arange(top)
        self.cell_of[-1] = top + 1
        self.cells = top + 2
        self.reference_cells = np.bincount(self.cell_of, weights=self.baseline_counts, minlength=self.cells)
        self.cell_squares = np.zeros(self.cells)
        self.cell_by_length = np.zeros(self.cells)
        self.length_squares = 0.0

    def update(self, values: Iterable[object]) -> None:
        """Tokenise a batch of documents (strings; ``None``/NaN count as missing) in bulk
        (:func:`tokenize_documents`); the distinct tokens are looked up in the vocabulary once."""
        documents, missing = documents_of(values)
        self.missing += missing
        if not documents:
            return
        codes, distinct, lengths = tokenize_documents(documents)
        self.documents += len(documents)
        self.empty_documents += int(np.count_nonzero(lengths == 0))
        self.length.update(lengths.astype(np.float64))
        if not codes.size:
            return
        index, oov = self.index, self.oov
        ids = np.fromiter((index.get(token, oov) for token in distinct), dtype=np.int64, count=len(distinct))[codes]
        self.counts += np.bincount(ids, minlength=self.counts.size)
        document_of = np.repeat(np.arange(len(documents)), lengths)
        per_document = np.bincount(document_of * self.cells + self.cell_of[ids],
                                   minlength=len(documents) * self.cells).reshape(len(documents), self.cells)
        self.cell_squares += (per_document.astype(np.float64) ** 2).sum(axis=0)
        self.cell_by_length += (per_document * lengths[:, None]).sum(axis=0)
        self.length_squares += float((lengths.astype(np.float64) ** 2).sum())

    def add_missing(self, count: int = 1) -> None:
        self.missing += count

    def merge(self, other: "TextDrift") -> None:
        self.counts += other.counts
        self.length.merge(other.length)
        self.documents += other.documents
        self.empty_documents += other.empty_documents
        self.missing += other.missing
        self.cell_squares += other.cell_squares
        self.cell_by_length += other.cell_by_length
        self.length_squares += other.length_squares

    def test_inputs(self) -> dict:
        """The tests ``<name>.tokens``, ``<name>.oov`` and ``<name>.length``: token cells and the
        out-of-vocabulary share (tokens clustered in documents: with the sums of the design
        effect), and the documents' token counts (documents are the units)."""
        window = np.bincount(self.cell_of, weights=self.counts, minlength=self.cells)
        clustering = {"documents": self.documents, "cell_squares": self.cell_squares.tolist(),
                      "cell_by_length": self.cell_by_length.tolist(), "length_squares": self.length_squares}
        oov_clustering = {"documents": self.documents,
                          "cell_squares": [None, float(self.cell_squares[-1])],
                          "cell_by_length": [None, float(self.cell_by_length[-1])],
                          "length_squares": self.length_squares}
        return {
            f"{self.name}.tokens": {"reference": self.reference_cells.tolist(), "window": window.tolist(),
                                    "ordered": False, "clustering": clustering},
            f"{self.name}.oov": {"reference": [float(self.reference_cells[:-1].sum()), float(self.reference_cells[-1])],
                                 "window": [float(window[:-1].sum()), float(window[-1])], "ordered": False,
                                 "clustering": oov_clustering},
            f"{self.name}.length": self.length.test_input(),
        }

    def result(self) -> dict:
        tokens = int(self.counts.sum())
        base_total = self.baseline_counts.sum()
        length = self.length.result()
        seen = self.documents + self.missing
        result = {
            "type": "text",
            "status": "ok" if self.documents else "no_data",
            "count": self.documents,
            "missing": self.missing,
            "missing_fraction": self.missing / seen if seen else None,
            "documents": self.documents,
            "empty_documents": self.empty_documents,
            "tokens": tokens,
            "oov_tokens": int(self.counts[self.oov]),
            "oov_rate": int(self.counts[self.oov]) / tokens if tokens else None,
            "baseline_oov_rate": float(self.baseline_counts[self.oov] / base_total) if base_total else None,
            "vocabulary_size": len(self.tokens),
            "js_distance": js_distance(self.baseline_counts, self.counts) if tokens else None,
            "length_psi": length["psi"],
            "length": length,
            "top_token_changes": [],
        }
        if tokens:
            base = self.baseline_counts / base_total
            current = self.counts / tokens
            change = np.abs(current - base)
            order = np.argsort(-change, kind="mergesort")[:TOP_TOKEN_CHANGES]
            result["top_token_changes"] = [
                {
                    "token": self.tokens[i] if i < self.oov else "<out of vocabulary>",
                    "baseline_share": float(base[i]),
                    "current_share": float(current[i]),
                }
                for i in order
                if change[i] > 0
            ]
        return result


FEATURE_KINDS = {"numeric": NumericDrift, "categorical": CategoricalDrift,
                 "text": lambda name, spec: TextDrift(spec, name)}
"""A baseline feature's ``type`` -> its accumulator ``(name, spec)``."""


# --- all of one variant ---------------------------------------------------------------------


def validate_baseline(document: object, source: str = "baseline") -> None:
    """Raise :class:`BaselineError` naming the field when ``document`` is not a usable baseline."""
    if not isinstance(document, dict):
        raise BaselineError(f"{source}: not a JSON object")
    names = document.get("feature_names")
    features = document.get("features")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise BaselineError(f"{source}: feature_names must be a list of strings")
    if not isinstance(features, dict):
        raise BaselineError(f"{source}: features must be an object")
    for name in names:
        spec = features.get(name)
        if not isinstance(spec, dict):
            raise BaselineError(f"{source}: feature {name!r} is in feature_names but not in features")
        kind = spec.get("type", "numeric")
        if kind == "numeric":
            _numeric_spec(name, spec)
        elif kind == "categorical":
            CategoricalDrift(name, spec)
        elif kind == "text":
            validate_text_baseline(spec, f"{source}: text feature {name!r}")
        else:
            raise BaselineError(f"{source}: feature {name!r} has unknown type {kind!r}")
    if document.get("prediction") is not None:
        if not isinstance(document["prediction"], dict):
            raise BaselineError(f"{source}: prediction must be an object")
        _numeric_spec("prediction", document["prediction"])


class DriftAccumulator:
    """Every drift statistic of one stream of capture records (one variant, or all of them).

    ``update(records)`` takes a batch of :class:`capture.CaptureRecord`: positional rows are
    mapped to the baseline's ``feature_names`` by position (a row of another length is rejected
    and reported through ``issues``), named rows by name (a missing name counts as missing),
    text documents go to the text statistics, outputs to the prediction statistics.
    """

    def __init__(
        self,
        baseline: "dict | None",
        text_baseline: "dict | None" = None,
        problem_type: str = "binary",
        score_threshold: float = 0.5,
        issues: object = None,
    ) -> None:
        self.problem_type = problem_type
        self.score_threshold = score_threshold
        self.issues = issues
        self.names = list(baseline["feature_names"]) if baseline else []
        self.features: list = []
        for name in self.names:
            spec = baseline["features"][name]
            self.features.append(FEATURE_KINDS[spec.get("type", "numeric")](name, spec))
        self.all_numeric = all(feature.kind == "numeric" for feature in self.features)
        self.numeric_columns = [i for i, feature in enumerate(self.features) if feature.kind == "numeric"]
        self.other_columns = [i for i, feature in enumerate(self.features) if feature.kind != "numeric"]
        self.predictions = PredictionDrift(problem_type, baseline, score_threshold)
        self.text = TextDrift(text_baseline) if text_baseline else None
        # a whole-document request (a JSON string, a text body) is the input of a model whose one
        # input is a text feature
        only = self.features[0] if len(self.features) == 1 else None
        self.document_feature = only if only is not None and only.kind == "text" and self.text is None else None
        self.records = 0
        self.rows = 0
        self.rows_rejected = 0
        self.records_without_input = 0
        self.records_without_output = 0
        self.unmonitored_rows = 0
        self.unmonitored_documents = 0

    def _reject(self, record: object, reason: str) -> None:
        self.rows_rejected += 1
        if self.issues is not None:
            self.issues.add("rejected_row", record.file, record.line, reason)

    def update(self, records: list) -> None:
        width = len(self.names)
        positional: list = []
        named: list = []
        documents: list = []
        predictions: list = []
        for record in records:
            inputs = record.inputs
            if not inputs:
                self.records_without_input += 1
            for item in inputs:
                kind = type(item)
                if kind is list or isinstance(item, list):  # a row, or capture's CsvRow of raw fields
                    if len(item) == width:
                        positional.append(item)
                    elif width:
                        self._reject(record, f"row has {len(item)} values, the baseline has {width} features")
                    else:
                        self.unmonitored_rows += 1
                elif kind is dict:
                    if width:
                        named.append(item)
                    else:
                        self.unmonitored_rows += 1
                else:
                    documents.append(item)
            if record.outputs:
                predictions.extend(record.outputs)
            else:
                self.records_without_output += 1
        self.records += len(records)
        if positional:
            self._update_positional(positional)
        if named:
            self._update_named(named)
        if documents:
            if self.text is not None:
                self.text.update(documents)
            elif self.document_feature is not None:
                self.rows += len(documents)
                self.document_feature.update(documents)
            else:
                self.unmonitored_documents += len(documents)
        self.predictions.update(predictions)

    def _update_positional(self, rows: list) -> None:
        self.rows += len(rows)
        if self.all_numeric:
            try:
                matrix = np.array(rows, dtype=np.float64)
            except (TypeError, ValueError):
                matrix = None
            if matrix is not None and matrix.shape == (len(rows), len(self.names)):
                for column, feature in enumerate(self.features):
                    feature.update(matrix[:, column])
                return
        # mixed rows (numbers as text next to categories or documents): one object matrix, and each
        # numeric column converted by numpy in one pass (the per-value parser only when that fails)
        matrix = np.array(rows, dtype=object)
        if matrix.shape != (len(rows), len(self.names)):  # ragged values (lists inside a row): by column
            for column, values in enumerate(zip(*rows)):
                self.features[column].update(values)
            return
        for column, feature in enumerate(self.features):
            values = matrix[:, column]
            if feature.kind == "numeric":
                try:
                    values = values.astype(np.float64)
                except (TypeError, ValueError):  # blanks, None, text: read value by value
                    values = bulk_numbers(values.tolist())
                feature.update(values)
            else:
                feature.update(values.tolist())

    def update_csv(self, data: list, scores: np.ndarray) -> bool:
        """Add records of one CSV row each (``data``: each row's ASCII text as bytes) and one
        score each, in bulk: numpy's C reader parses the numeric columns (with Python's float
        parser), the other columns are factorised once per batch. The state is then exactly
        what :meth:`update` gives for the same records as :func:`capture.parse_capture_line`
        reads them. Returns False, having changed nothing, when a row needs the per-record
        path (another number of values, a value the C reader does not take, rows of which
        only some have every value numeric, no feature to map them to)."""
        count, width = len(data), len(self.names)
        if not BULK_CSV or not count or not width or len(scores) != count:
            return False
        text = b"\n".join(data)
        # the C reader takes a row with more values than the columns it is asked for
        if not self.all_numeric and np.count_nonzero(np.frombuffer(text, np.uint8) == 44) != count * (width - 1):
            return False
        columns = self._csv_columns(text, count, width)
        if columns is None:
            return False
        self.records += count
        self.rows += count
        for feature, values in zip(self.features, columns):
            if type(values) is tuple:
                feature.update_codes(*values)
            else:
                feature.update(values)
        self.predictions.update_scores(scores)
        return True

    def _csv_columns(self, text: bytes, count: int, width: int) -> "list | None":
        """Each feature's values of the rows in ``text``: what :meth:`_update_positional` passes
        to the feature (a float column, a list of values, or ``(codes, distinct)`` of a
        categorical column), or ``None``."""
        def read(columns: "list | None", dtype: object) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": the shape check says so
                values = np.loadtxt(io.BytesIO(text), dtype=dtype, delimiter=",", comments=None, ndmin=2,
                                    usecols=columns, encoding="latin-1")
            if values.shape != (count, width if columns is None else len(columns)):
                raise ValueError("rows")
            return values

        try:
            if self.all_numeric:
                # every row numeric, of ``width`` values (the reader checks that all rows have as
                # many): the matrix np.array(rows) makes, columns as its views
                matrix = read(None, np.float64)
                return [matrix[:, column] for column in range(width)]
            numeric = self.numeric_columns
            # >= width values in every row (the last column is read) and count * width in all
            numbers = read(numeric, np.float64) if numeric else None
            others = None
            if not any(self.features[column].kind == "text" for column in self.other_columns):
                # short values (categories) in 16 bytes: a quarter of the time of an unsized read;
                # a value that fills them may have been cut, and is read again unsized
                others = read(self.other_columns, "S16")
                if others.view(np.uint8).reshape(-1, 16)[:, 15].any():
                    others = None
            if others is None:
                others = read(self.other_columns, "S")
        except ValueError:
            return None
        columns: list = [None] * width
        factorised = []
        all_numbers = np.ones(count, dtype=bool)
        short = others.dtype.itemsize == 16 and not others.view(np.uint8).reshape(-1, 16)[:, 8:].any()
        for position, column in enumerate(self.other_columns):
            if short:  # values of at most 8 bytes: factorised as integers, without pandas
                codes, distinct = factorize_integers(others[:, position].astype("S8").view(np.uint64))
                distinct = distinct.view("S8").tolist()
            else:
                import pandas as pd  # imported when used: a numeric-only job never needs it

                codes, distinct = pd.factorize(others[:, position])
            factorised.append((codes, distinct))
            all_numbers &= np.array([_is_float(value) for value in distinct], dtype=bool)[codes]
        if all_numbers.any():
            if not all_numbers.all():
                return None
            # every value of every row is a number: the rows were floats, and so are these values
            try:
                numbers_too = read(self.other_columns, np.float64)
            except ValueError:
                return None
            for position, column in enumerate(self.other_columns):
                columns[column] = numbers_too[:, position].tolist()
        else:
            # each row has a value that is not a number: its values stayed text
            for position, column in enumerate(self.other_columns):
                codes, distinct = factorised[position]
                if self.features[column].kind == "categorical":
                    columns[column] = (codes, [value.decode("latin-1") for value in distinct])
                else:
                    columns[column] = [value.decode("latin-1") for value in others[:, position].tolist()]
        for position, column in enumerate(numeric):
            columns[column] = np.ascontiguousarray(numbers[:, position])  # what astype(np.float64) gives
        return columns

    def _update_named(self, rows: list) -> None:
        self.rows += len(rows)
        for feature in self.features:
            feature.update([row.get(feature.name) for row in rows])

    def merge(self, other: "DriftAccumulator") -> None:
        for mine, theirs in zip(self.features, other.features):
            mine.merge(theirs)
        self.predictions.merge(other.predictions)
        if self.text is not None and other.text is not None:
            self.text.merge(other.text)
        for name in (
            "records",
            "rows",
            "rows_rejected",
            "records_without_input",
            "records_without_output",
            "unmonitored_rows",
            "unmonitored_documents",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def test_inputs(self) -> dict:
        """Every test's counts (``decision.drift_test``), by name: the features, then
        ``prediction.score``, ``prediction.class`` and ``text.*`` where there is a reference."""
        inputs = {}
        for feature in self.features:
            inputs.update(feature.test_inputs() if feature.kind == "text" else {feature.name: feature.test_input()})
        inputs.update(self.predictions.test_inputs())
        if self.text is not None:
            inputs.update(self.text.test_inputs())
        return inputs

    def result(self) -> dict:
        return {
            "records": self.records,
            "rows": self.rows,
            "rows_rejected": self.rows_rejected,
            "records_without_input": self.records_without_input,
            "records_without_output": self.records_without_output,
            "unmonitored_rows": self.unmonitored_rows,
            "unmonitored_documents": self.unmonitored_documents,
            "features": {feature.name: feature.result() for feature in self.features},
            "prediction": self.predictions.result(),
            "text": self.text.result() if self.text is not None else None,
        }
