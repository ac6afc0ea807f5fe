"""Drift alarms: false pages without drift, detection of real drift, and the minimum effect.

Seeded data as in issue 19: a 20,000-row training reference with 16 numeric features (8 normal,
4 log-normal, 4 exponential: skewed), 4 categorical features with 3, 5, 10 and 20 levels, and a
model score (the logistic of a normal logit). The baseline is what training
writes (deciles of each numeric feature and of the score, category counts, the predicted-class
counts at the 0.5 threshold, the reference's row count).

Windows are drawn from the window distribution *as counts over the baseline's cells*: the
monitoring job's decision reads nothing else (``monitoring/decision.py``), so a multinomial
draw over the cells (a finer partition for the score, so that the score's deciles and the
predicted class stay consistent) is exactly what the job would see of a window of raw rows,
and a window of 1,000,000 rows costs as little as one of 100. Each window is decided as the
job does: the interval-null test per feature, the score and the predicted class, Holm over the
window at ``alpha = 1 / 720`` (one false page in 30 days of hourly windows), and windows under
``min_rows`` accumulated with the following ones.

Cases (issue 19's table):

* ``no_drift``: windows of 100, 300, 1k, 10k, 100k and 1M rows (1,000 windows each, 200 at 1M):
  share of windows paging, target <= 0.2 %;
* ``detect_100k``: mean +0.1 sd of a normal feature, spread x1.1, a 5-point move between two
  categories, the score shifted by 0.14 sd, at 100k rows: share flagged, target >= 90 % each;
* ``detect_1k``: mean +0.3 sd, spread x1.5, a 10-point move, at 1k rows: >= 90 % each;
* ``below_min_effect``: mean +0.02 sd at 1M rows: paged <= 5 %.

With Evidently installed (``pip install -r benchmarks/requirements-bench.txt``, optional), the
same scenarios also go through Evidently's default data-drift preset on raw rows (fewer windows:
it needs the rows and takes 5-20 s per window here: 3-5 windows per case, no 1M windows): its
false-page share (any column drifted: what would page), dataset-drift share (half the columns),
detection share and time per window are reported next to ours.

Writes ``benchmarks/results/drift.json``. Usage: ``.venv/bin/python -m benchmarks.bench_drift``
(``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy import special, stats

from benchmarks.measure import ROOT, machine, write_result
from monitoring import decision

SEED = 19
REFERENCE_ROWS = 20_000
NUMERIC = 16
CATEGORY_LEVELS = (3, 5, 10, 20)
SCORE_THRESHOLD = 0.5
NO_DRIFT_SIZES = (100, 300, 1_000, 10_000, 100_000, 1_000_000)
WINDOWS = 1_000
WINDOWS_AT_1M = 200
DETECTION_WINDOWS = 200
TARGET_FALSE_PAGE = 0.002
TARGET_DETECTION = 0.90
TARGET_BELOW_EFFECT = 0.05
SCORE_CELLS = 200  # fine partition of the score (deciles and the class threshold are unions of cells)


def _numeric_kind(index: int) -> str:
    return "normal" if index < 8 else ("lognormal" if index < 12 else "exponential")


def _numeric_cdf(kind: str):
    if kind == "normal":
        return special.ndtr
    if kind == "lognormal":
        return lambda x: special.ndtr(np.log(np.maximum(x, 1e-300)) / 0.75) * (x > 0)
    return lambda x: np.where(x > 0, -np.expm1(-np.maximum(x, 0)), 0.0)


def _numeric_sample(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=size)
    if kind == "lognormal":
        return rng.lognormal(sigma=0.75, size=size)
    return rng.exponential(size=size)


@lru_cache(maxsize=None)
def _moments(kind: str) -> "tuple[float, float]":
    distribution = {"normal": stats.norm(), "lognormal": stats.lognorm(s=0.75), "exponential": stats.expon()}[kind]
    return float(distribution.mean()), float(distribution.std())


def _category_shares(levels: int) -> np.ndarray:
    shares = 1.0 / np.arange(1, levels + 1) ** 0.8
    return shares / shares.sum()


def _deciles(values: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts


class Scenario:
    """The reference (baseline cells and counts) and the window distributions over those cells."""

    def __init__(self, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        self.kinds = [_numeric_kind(i) for i in range(NUMERIC)]
        reference = np.column_stack([_numeric_sample(kind, rng, REFERENCE_ROWS) for kind in self.kinds])
        self.numeric = [_deciles(reference[:, i]) for i in range(NUMERIC)]
        self.category_shares = [_category_shares(levels) for levels in CATEGORY_LEVELS]
        self.categories = [
            np.bincount(rng.choice(len(shares), size=REFERENCE_ROWS, p=shares), minlength=len(shares))
            for shares in self.category_shares
        ]
        # The score's logit is normal (a logistic model's logit of many features is close to it).
        self.logit_mean, self.logit_sd = -0.8, 1.6
        logits = rng.normal(self.logit_mean, self.logit_sd, size=REFERENCE_ROWS)
        scores = 1.0 / (1.0 + np.exp(-logits))
        self.scores = scores
        self.score_edges, self.score_counts = _deciles(scores)
        positives = int(np.count_nonzero(scores >= SCORE_THRESHOLD))
        self.class_counts = np.array([REFERENCE_ROWS - positives, positives])
        self.score_sd = float(scores.std())
        # Fine score cells: quantiles of the logit normal, plus the decile edges and the threshold.
        knots = np.concatenate([self.score_edges[1:-1], [SCORE_THRESHOLD],
                                1.0 / (1.0 + np.exp(-stats.norm.ppf(np.linspace(0, 1, SCORE_CELLS + 1)[1:-1],
                                                                     self.logit_mean, self.logit_sd)))])
        self.score_knots = np.unique(knots)

    def reference_tests(self) -> list:
        """(name, reference counts, ordered) of every test unit."""
        units = [(f"num_{i:02d}", counts, True) for i, (_, counts) in enumerate(self.numeric)]
        units += [(f"cat_{i}", counts, False) for i, counts in enumerate(self.categories)]
        units += [("score", self.score_counts, True), ("predicted_class", self.class_counts, False)]
        return units

    def window(self, rng: np.random.Generator, rows: int, drift: "dict | None" = None) -> dict:
        """Counts of one window over every unit's cells. ``drift``: ``{"mean": (feature, sd)}``,
        ``{"spread": (feature, factor)}``, ``{"move": (category feature, points)}``, ``{"score": sd}``."""
        drift = drift or {}
        counts = {}
        for i, (edges, _) in enumerate(self.numeric):
            kind = self.kinds[i]
            mean, sd = _moments(kind)
            inner = edges[1:-1]
            points = inner
            if "mean" in drift and drift["mean"][0] == i:
                points = inner - drift["mean"][1] * sd
            if "spread" in drift and drift["spread"][0] == i:
                points = mean + (inner - mean) / drift["spread"][1]
            cdf = np.concatenate([[0.0], _numeric_cdf(kind)(points), [1.0]])
            counts[f"num_{i:02d}"] = rng.multinomial(rows, np.clip(np.diff(cdf), 0, None) / np.diff(cdf).sum())
        for i, shares in enumerate(self.category_shares):
            shares = shares.copy()
            if "move" in drift and drift["move"][0] == i:
                points = drift["move"][1] / 100.0
                shares[0] -= points
                shares[1] += points
            counts[f"cat_{i}"] = rng.multinomial(rows, shares)
        shift = drift.get("score", 0.0) * self.score_sd
        # the score moves by `shift` (in score units): P(score + shift <= k) = P(score <= k - shift)
        knots = np.clip(self.score_knots - shift, 1e-12, 1 - 1e-12)
        cdf = special.ndtr((np.log(knots / (1 - knots)) - self.logit_mean) / self.logit_sd)
        cells = rng.multinomial(rows, np.diff(np.concatenate([[0.0], cdf, [1.0]])))
        cumulative = np.concatenate([[0], np.cumsum(cells)])
        upper = self.score_knots
        decile_index = [int(np.searchsorted(upper, edge)) + 1 for edge in self.score_edges[1:-1]]
        bounds = [0] + decile_index + [cells.size]
        counts["score"] = np.diff(cumulative[bounds])
        below = int(np.searchsorted(upper, SCORE_THRESHOLD)) + 1  # cells ending at or below the threshold
        counts["predicted_class"] = np.array([cumulative[below], rows - cumulative[below]])
        return counts


def decide(scenario: Scenario, counts: dict, policy: dict) -> "tuple[bool, list]":
    """Whether the window pages (Holm over its tests) and which tests rejected."""
    tests = []
    for name, reference, ordered in scenario.reference_tests():
        test = decision.drift_test(reference, counts[name], policy["min_effect"], ordered, p_value=False)
        test.update(scope="_all", name=name)
        tests.append(test)
    decision.fill_p_values(tests)
    summary = decision.decide_window(tests, [], policy, intervals=False)
    return bool(summary["drifted"]), summary["drifted"]


def run_windows(scenario: Scenario, rng: np.random.Generator, rows: int, windows: int, drift: "dict | None",
                policy: dict) -> dict:
    """Windows in sequence, with the job's accumulation rule; returns pages per window."""
    pages = 0
    decisions = 0
    carry: "dict | None" = None
    carried = 0
    for _ in range(windows):
        counts = scenario.window(rng, rows, drift)
        if carry is not None:
            counts = {name: counts[name] + carry[name] for name in counts}
        carried += 1
        total = int(counts["num_00"].sum())
        if total < policy["min_rows"] and carried < policy["max_accumulated_windows"]:
            carry = counts
            continue
        carry, carried = None, 0
        decisions += 1
        paged, _ = decide(scenario, counts, policy)
        pages += paged
    return {"rows": rows, "windows": windows, "decisions": decisions, "pages": pages,
            "page_share": pages / windows}


CASES_NO_DRIFT = [(rows, WINDOWS_AT_1M if rows >= 1_000_000 else WINDOWS) for rows in NO_DRIFT_SIZES]
CASES_DETECT = [
    ("mean +0.1 sd", 100_000, {"mean": (0, 0.1)}),
    ("spread x1.1", 100_000, {"spread": (0, 1.1)}),
    ("categorical 5-point move", 100_000, {"move": (1, 5)}),
    ("score +0.14 sd", 100_000, {"score": 0.14}),
    ("mean +0.3 sd", 1_000, {"mean": (0, 0.3)}),
    ("spread x1.5", 1_000, {"spread": (0, 1.5)}),
    ("categorical 10-point move", 1_000, {"move": (1, 10)}),
]
CASE_BELOW_EFFECT = ("mean +0.02 sd", 1_000_000, {"mean": (0, 0.02)})


# --- Evidently (optional) -------------------------------------------------------------------


def _raw_window(scenario: Scenario, rng: np.random.Generator, rows: int, drift: "dict | None"):
    """Raw rows of a window (for Evidently), drawn like :meth:`Scenario.window`'s counts."""
    import pandas as pd

    drift = drift or {}
    columns = {}
    for i, kind in enumerate(scenario.kinds):
        values = _numeric_sample(kind, rng, rows)
        mean, sd = _moments(kind)
        if "mean" in drift and drift["mean"][0] == i:
            values = values + drift["mean"][1] * sd
        if "spread" in drift and drift["spread"][0] == i:
            values = mean + (values - mean) * drift["spread"][1]
        columns[f"num_{i:02d}"] = values
    for i, shares in enumerate(scenario.category_shares):
        shares = shares.copy()
        if "move" in drift and drift["move"][0] == i:
            shares[0] -= drift["move"][1] / 100.0
            shares[1] += drift["move"][1] / 100.0
        columns[f"cat_{i}"] = np.array([f"c{j}" for j in range(len(shares))])[rng.choice(len(shares), size=rows, p=shares)]
    logits = rng.normal(scenario.logit_mean, scenario.logit_sd, size=rows)
    columns["score"] = 1.0 / (1.0 + np.exp(-logits)) + drift.get("score", 0.0) * scenario.score_sd
    return pd.DataFrame(columns)


def evidently_runner():
    """A function (reference frame, window frame) -> (any column drifted, dataset drift), or None."""
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        return None, None
    import evidently

    def run(reference, window):
        definition = DataDefinition(
            numerical_columns=[c for c in reference.columns if not c.startswith("cat_")],
            categorical_columns=[c for c in reference.columns if c.startswith("cat_")],
        )
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(window, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        for metric in snapshot.dict()["metrics"]:
            if metric["metric_name"].startswith("DriftedColumnsCount"):
                value = metric["value"]
                return value["count"] > 0, value["share"] >= 0.5
        raise RuntimeError("Evidently's preset has no DriftedColumnsCount metric")

    return run, evidently.__version__


def evidently_cases(scenario: Scenario, quick: bool) -> dict:
    run, version = evidently_runner()
    if run is None:
        return {"installed": False, "reason": "evidently is not installed (benchmarks/requirements-bench.txt)"}
    rng = np.random.default_rng(SEED + 1)
    reference = _raw_window(scenario, rng, REFERENCE_ROWS, None)
    plan = [("no drift", rows, None, 5 if rows <= 10_000 else 3) for rows in (100, 300, 1_000, 10_000, 100_000)]
    plan += [(name, rows, drift, 5 if rows <= 10_000 else 3) for name, rows, drift in CASES_DETECT]
    if quick:
        plan = [(name, rows, drift, 2) for name, rows, drift, _ in plan]
    results = []
    for name, rows, drift, windows in plan:
        any_column = dataset = 0
        started = time.perf_counter()
        for _ in range(windows):
            column_drift, dataset_drift = run(reference, _raw_window(scenario, rng, rows, drift))
            any_column += column_drift
            dataset += dataset_drift
        seconds = (time.perf_counter() - started) / windows
        results.append({"case": name, "rows": rows, "windows": windows, "any_column_drifted": any_column / windows,
                        "dataset_drift": dataset / windows, "seconds_per_window": round(seconds, 3)})
        print(f"evidently {name} @ {rows:,}: any column {any_column / windows:.0%}, dataset drift "
              f"{dataset / windows:.0%}, {seconds:.2f} s/window")
    return {"installed": True, "version": version, "preset": "DataDriftPreset() defaults", "cases": results}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the windows")
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    policy = decision.parse_policy(None)
    scenario = Scenario()
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    no_drift = []
    for rows, windows in CASES_NO_DRIFT:
        result = run_windows(scenario, rng, rows, max(windows // scale, 20), None, policy)
        result["meets_target"] = result["page_share"] <= TARGET_FALSE_PAGE
        no_drift.append(result)
        print(f"no drift @ {rows:,}: {result['pages']} pages in {result['windows']} windows "
              f"({result['decisions']} decisions) = {result['page_share']:.2%}")
    detect = []
    for name, rows, drift in CASES_DETECT:
        result = run_windows(scenario, rng, rows, max(DETECTION_WINDOWS // scale, 20), drift, policy)
        result.update(case=name, meets_target=result["page_share"] >= TARGET_DETECTION)
        detect.append(result)
        print(f"{name} @ {rows:,}: flagged {result['page_share']:.1%}")
    name, rows, drift = CASE_BELOW_EFFECT
    below = run_windows(scenario, rng, rows, max(DETECTION_WINDOWS // scale, 20), drift, policy)
    below.update(case=name, meets_target=below["page_share"] <= TARGET_BELOW_EFFECT)
    print(f"{name} @ {rows:,}: paged {below['page_share']:.1%}")
    ours_seconds = time.perf_counter() - started
    evidently_result = {"skipped": True} if args.no_evidently else evidently_cases(scenario, args.quick)
    met = all(r["meets_target"] for r in no_drift + detect + [below])
    path = write_result("drift", {
        "description": "Drift decisions (monitoring/decision.py) on seeded windows: false pages without drift, "
                       "detection of the issue-19 shifts, pages below the minimum effect; Evidently's default "
                       "data-drift preset on raw rows of the same scenarios when installed.",
        "policy": policy,
        "alpha_per_window": decision.window_alpha(policy),
        "quick": args.quick,
        "no_drift": no_drift,
        "detection": detect,
        "below_min_effect": below,
        "seconds": round(ours_seconds, 1),
        "evidently": evidently_result,
        "targets": {"false_page_share": TARGET_FALSE_PAGE, "detection_share": TARGET_DETECTION,
                    "below_min_effect_share": TARGET_BELOW_EFFECT},
        "meets_targets": met,
        "environment": machine(numpy=np.__version__),
    })
    print(f"targets {'met' if met else 'NOT met'} -> {path.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
