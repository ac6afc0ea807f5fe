"""Calibrated decisions: "drifted" and "quality below target" as tests with a stated error rate.

Drift (every numeric and categorical feature, the model score, the predicted class, and the text
token distribution, out-of-vocabulary rate and document length) is decided by the same test:

* **Statistic.** The window's counts over the reference's bins (training deciles, categories, a
  fixed token grouping) and the reference's own counts form a 2 x k table; ``X2`` is Pearson's
  homogeneity statistic on it. With ``n`` window rows and ``N`` reference rows,
  ``n_eff = n N / (n + N)``, and for true bin shares ``p`` (window) and ``q`` (reference)
  ``X2`` is asymptotically noncentral chi-square with ``k - 1`` degrees of freedom and
  noncentrality ``n_eff * D``, ``D = sum (p - q)^2 / m`` (``m`` the pooled shares). ``D`` is the
  effect: to second order it equals PSI and the symmetric chi-square distance, so the minimum
  effect is given in PSI units. The reference's sample size enters through ``n_eff``: a window
  of 1,000,000 rows against 20,000 training rows has ``n_eff`` ~ 19,600, not 10^6.
* **Interval null.** H0: ``D <= min_effect``. The noncentral chi-square is stochastically
  increasing in its noncentrality, so the p-value ``P(ncx2(k - 1, n_eff * min_effect) >= X2)``
  bounds the false-alarm probability over the whole null, at any window size: a huge window
  does not page on a shift smaller than the minimum effect, and a small one is not noisier.
* **Valid cells.** Bins are merged (adjacent ones for ordered bins, the rare ones into one for
  categories) until every cell expects ``MIN_EXPECTED`` window rows under the reference, a rule
  that depends on the reference and ``n`` only, so the chi-square approximation holds in the
  tail; below ``min_rows`` rows a window is not judged alone but accumulated with the next ones
  (``Carry``).
* **Clustered text.** Tokens come in documents, so token counts are over-dispersed; the text
  tests divide ``X2`` and ``n_eff`` by the Rao-Scott design effect estimated from the window's
  per-document counts (at least 1).
* **Multiple testing.** Each window has ``alpha = false_pages / windows per period`` (default
  1 / 720: one false page in 30 days of hourly windows). Holm's step-down procedure at that
  level runs over every test of the window (features, score, class and text of every scope,
  and the quality tests), so the probability that a drift-free, on-target window pages anything
  is at most ``alpha``, and the expected number of false pages per period at most
  ``false_pages``.

Quality (``auc_min``, ``accuracy_min``, ``precision_min``, ``recall_min``, ``f1_min``,
``rmse_max``, ``mae_max``) is a one-sided test of "the metric is worse than its target" in the
same Holm family: AUC with DeLong's standard error; accuracy, precision, recall and F1 (through
``TP / (TP + FP + FN)``, which F1 is a monotone function of) as binomial proportions with Wilson
intervals; RMSE and MAE through the mean of squared / absolute errors with its standard error.

Everything here is pure (numpy, scipy); ``report.py`` calls :func:`decide_window`.
"""

from __future__ import annotations

import math

import numpy as np


def _stats():
    """scipy.stats, imported on first use: it takes most of the job's start-up (~0.7 CPU s) and
    the processes that only read capture files never need it."""
    from scipy import stats

    return stats

MIN_EXPECTED = 10.0
"""Expected window count per cell (under the reference) before cells are merged."""

DEFAULT_POLICY = {
    "min_effect": 0.002,
    "false_pages": 1.0,
    "per_days": 30.0,
    "window_hours": 1.0,
    "min_rows": 1000,
    "max_accumulated_windows": 24,
    "quality_looks": 1,
}
"""``min_effect`` in PSI units (0.002 ~ a 0.05 sd mean shift); one false page per 30 days of
hourly windows; windows below ``min_rows`` are accumulated for at most
``max_accumulated_windows`` windows; a window's quality is tested ``quality_looks`` times (the
run, then each late-label recheck), so each quality p-value is multiplied by it (Bonferroni over
the looks) before Holm."""


class PolicyError(ValueError):
    pass


def parse_policy(given: "dict | None") -> dict:
    """The decision policy: ``given`` merged over :data:`DEFAULT_POLICY`, checked."""
    policy = dict(DEFAULT_POLICY)
    for key, value in (given or {}).items():
        if key not in DEFAULT_POLICY:
            raise PolicyError(f"unknown drift policy key {key!r} (known: {', '.join(sorted(DEFAULT_POLICY))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PolicyError(f"drift policy {key!r} must be a non-negative number, got {value!r}")
        policy[key] = value
    if policy["false_pages"] <= 0 or policy["per_days"] <= 0 or policy["window_hours"] <= 0:
        raise PolicyError("drift policy: false_pages, per_days and window_hours must be positive")
    return policy


def window_alpha(policy: dict) -> float:
    """False-page probability allowed per window: the page budget over the windows of its period."""
    windows = policy["per_days"] * 24.0 / policy["window_hours"]
    return min(1.0, policy["false_pages"] / windows)


# --- cells ------------------------------------------------------------------------------------


def merge_cells(reference: np.ndarray, window: np.ndarray, rows: float, ordered: bool) -> "tuple[np.ndarray, np.ndarray, list]":
    """Merge cells until each expects ``MIN_EXPECTED`` of ``rows`` under the reference.

    Ordered bins merge with their neighbours (left to right, a short tail joins the last group);
    unordered ones (categories, tokens) merge their rare cells into one, and the cells the
    reference never saw (unseen categories, out-of-vocabulary tokens) into another. Returns the merged reference and window counts and the groups of original cells.
    """
    reference = np.asarray(reference, dtype=np.float64)
    window = np.asarray(window, dtype=np.float64)
    shares = reference / reference.sum()
    need = MIN_EXPECTED / max(rows, 1.0)
    groups: list = []
    if ordered:
        current: list = []
        mass = 0.0
        for index, share in enumerate(shares):
            current.append(index)
            mass += share
            if mass >= need:
                groups.append(current)
                current, mass = [], 0.0
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
    else:
        rare = [i for i, share in enumerate(shares) if 0 < share < need]
        unseen = [i for i, share in enumerate(shares) if share == 0]
        groups = [[i] for i, share in enumerate(shares) if share >= need]
        if rare:
            if shares[rare].sum() >= need or not groups:
                groups.append(rare)
            else:  # too little mass to stand alone: join the smallest common cell
                smallest = min(range(len(groups)), key=lambda g: shares[groups[g]].sum())
                groups[smallest] = groups[smallest] + rare
        if unseen:  # what the reference never saw stays apart: under no drift the window has none either
            groups.append(unseen)
    merged_reference = np.array([reference[g].sum() for g in groups])
    merged_window = np.array([window[g].sum() for g in groups])
    return merged_reference, merged_window, groups


def pearson(reference: np.ndarray, window: np.ndarray) -> "tuple[float, int]":
    """Pearson's homogeneity statistic of the 2 x k table and its degrees of freedom."""
    # what scipy.stats.chi2_contingency(table, correction=False) returns, without its per-call
    # overhead (the job and the benchmark run it for every feature of every window)
    table = np.vstack([reference, window]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or (rows <= 0).any():
        return 0.0, 0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    return float(((table - expected) ** 2 / expected).sum()), table.shape[1] - 1


def design_effect(window: "list | np.ndarray", clustering: "dict | None") -> float:
    """Rao-Scott's mean design effect of cell shares estimated from clustered counts (tokens in
    documents), at least 1. ``clustering`` holds per cell the sums over documents of the squared
    cell count (``cell_squares``) and of the cell count times the document's length
    (``cell_by_length``; ``None`` for a cell left out), the sum of squared lengths and the number
    of documents."""
    if not clustering or clustering.get("documents", 0) < 2:
        return 1.0
    counts = np.asarray(window, dtype=np.float64)
    tokens = counts.sum()
    if tokens <= 0:
        return 1.0
    documents = clustering["documents"]
    numerator = weight = 0.0
    for index, (squares, by_length) in enumerate(zip(clustering["cell_squares"], clustering["cell_by_length"])):
        share = counts[index] / tokens
        if squares is None or not 0.0 < share < 1.0:
            continue
        clustered = documents / (documents - 1.0) * (squares - 2 * share * by_length + share * share * clustering["length_squares"])
        deff = clustered / (tokens * share * (1.0 - share))
        numerator += (1.0 - share) * deff
        weight += 1.0 - share
    return max(1.0, numerator / weight) if weight > 0 else 1.0


def scope_tests(scope: str, inputs: dict, policy: dict) -> list:
    """:func:`drift_test` of every test input of one scope (``DriftAccumulator.test_inputs``)."""
    tests = []
    for name, given in inputs.items():
        test = drift_test(given["reference"], given["window"], policy["min_effect"], given["ordered"],
                          design_effect(given["window"], given.get("clustering")), p_value=False)
        test.update(scope=scope, name=name)
        tests.append(test)
    fill_p_values(tests)
    return tests


# --- the drift test ---------------------------------------------------------------------------


def drift_test(
    reference: "list | np.ndarray",
    window: "list | np.ndarray",
    min_effect: float,
    ordered: bool,
    design_effect: float = 1.0,
    p_value: bool = True,
) -> dict:
    """The interval-null test of one feature (see the module docstring); no decision yet.

    Returns ``status`` (``ok`` or ``too_few_rows``), ``statistic``, ``dof``, ``n_eff``,
    ``effect`` (bias-corrected estimate of ``D``), ``p_value`` and ``cells``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    window = np.asarray(window, dtype=np.float64)
    rows, reference_rows = float(window.sum()), float(reference.sum())
    result = {"status": "too_few_rows", "rows": int(rows), "reference_rows": reference_rows, "statistic": None,
              "dof": 0, "n_eff": None, "effect": None, "p_value": None, "cells": 0,
              "design_effect": design_effect}
    if rows <= 0 or reference_rows <= 0:
        return result
    merged_reference, merged_window, groups = merge_cells(reference, window, rows / design_effect, ordered)
    statistic, dof = pearson(merged_reference, merged_window)
    result["cells"] = len(groups)
    if dof < 1:
        return result
    n_eff = rows * reference_rows / (rows + reference_rows) / design_effect
    statistic /= design_effect
    result.update(status="ok", statistic=statistic, dof=dof, n_eff=n_eff, effect=max(0.0, statistic - dof) / n_eff,
                  null_noncentrality=n_eff * min_effect)
    if p_value:
        fill_p_values([result])
    return result


def fill_p_values(tests: list) -> None:
    """``p_value = P(ncx2(dof, n_eff * min_effect) >= X2)`` of every ``ok`` test, in one
    vectorised call (the noncentral chi-square's tail is the costly part of a window)."""
    ready = [test for test in tests if test["status"] == "ok"]
    if not ready:
        return
    statistic = np.array([test["statistic"] for test in ready])
    dof = np.array([test["dof"] for test in ready], dtype=np.float64)
    noncentrality = np.array([test["null_noncentrality"] for test in ready])
    central = noncentrality <= 0
    values = np.empty(len(ready))
    if central.any():
        values[central] = _stats().chi2.sf(statistic[central], dof[central])
    if (~central).any():
        values[~central] = _stats().ncx2.sf(statistic[~central], dof[~central], noncentrality[~central])
    for test, value in zip(ready, np.clip(values, 0.0, 1.0)):
        test["p_value"] = float(value)


def effect_interval(test: dict, level: float) -> "tuple[float, float]":
    """``(lower, upper)`` bounds of the effect ``D`` from inverting the noncentral chi-square:
    each bound holds with probability ``1 - level`` (so the pair is a ``1 - 2 level`` interval)."""
    statistic, dof, n_eff = test["statistic"], test["dof"], test["n_eff"]

    def tail(noncentrality: float) -> float:
        return float(_stats().ncx2.sf(statistic, dof, noncentrality)) if noncentrality > 0 else float(_stats().chi2.sf(statistic, dof))

    high = statistic + 20.0 * math.sqrt(statistic + dof) + 50.0
    while tail(high) < 1.0 - level:
        high *= 2.0

    from scipy.optimize import brentq  # only the report's intervals need it: not on the import path

    def root(target: float) -> float:
        if tail(0.0) >= target:
            return 0.0
        return float(brentq(lambda lam: tail(lam) - target, 0.0, high, xtol=1e-6, rtol=1e-8))

    return root(level) / n_eff, root(1.0 - level) / n_eff


# --- quality tests ----------------------------------------------------------------------------


QUALITY_TARGETS = {
    "auc_min": ("auc", "<"),
    "accuracy_min": ("accuracy", "<"),
    "precision_min": ("precision", "<"),
    "recall_min": ("recall", "<"),
    "f1_min": ("f1", "<"),
    "rmse_max": ("rmse", ">"),
    "mae_max": ("mae", ">"),
}


def _proportion_test(successes: int, trials: int, target: float) -> "tuple[float | None, tuple]":
    """p-value of "the proportion is below ``target``" (score test) and the Wilson bounds' function."""
    if trials <= 0:
        return None, None
    estimate = successes / trials
    target = min(max(target, 1e-12), 1 - 1e-12)
    z = (estimate - target) / math.sqrt(target * (1 - target) / trials)
    return float(_stats().norm.cdf(z)), (successes, trials)


def _wilson(successes: int, trials: int, level: float) -> "tuple[float, float]":
    z = float(_stats().norm.isf(level))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def quality_test(key: str, target: float, evidence: dict) -> dict:
    """One quality test. ``evidence`` is ``quality.py``'s ``evidence`` of a scope."""
    metric, comparison = QUALITY_TARGETS[key]
    result = {"key": key, "metric": metric, "target": target, "comparison": comparison, "status": "too_few_labels",
              "estimate": None, "p_value": None}
    if not evidence:
        return result
    confusion = evidence.get("confusion")
    if metric == "auc":
        auc, se = evidence.get("auc"), evidence.get("auc_se")
        if auc is None or not se:
            return result
        result.update(status="ok", estimate=auc, standard_error=se,
                      p_value=float(_stats().norm.cdf((auc - target) / se)))
        return result
    if metric in ("accuracy", "precision", "recall", "f1") and confusion:
        tp, fp, fn, tn = (confusion[k] for k in ("tp", "fp", "fn", "tn"))
        successes, trials = {"accuracy": (tp + tn, tp + fp + fn + tn), "precision": (tp, tp + fp),
                             "recall": (tp, tp + fn), "f1": (tp, tp + fp + fn)}[metric]
        # F1 = 2u / (1 + u) with u = TP / (TP + FP + FN): test u against the target's u.
        proportion_target = target / (2.0 - target) if metric == "f1" else target
        p_value, _ = _proportion_test(successes, trials, proportion_target)
        if p_value is None:
            return result
        result.update(status="ok", estimate=(2 * successes / (successes + trials) if metric == "f1" else successes / trials),
                      p_value=p_value, successes=successes, trials=trials)
        return result
    if metric in ("rmse", "mae"):
        moments = evidence.get("squared_error" if metric == "rmse" else "absolute_error")
        if not moments or moments["count"] < 2:
            return result
        mean, sd, count = moments["mean"], moments["std"], moments["count"]
        threshold = target * target if metric == "rmse" else target
        se = sd / math.sqrt(count)
        p_value = float(_stats().norm.sf((mean - threshold) / se)) if se > 0 else float(mean <= threshold)
        estimate = math.sqrt(mean) if metric == "rmse" else mean
        result.update(status="ok", estimate=estimate, p_value=p_value, mean=mean, standard_error=se)
        return result
    return result


def quality_interval(test: dict, level: float) -> "tuple[float, float]":
    metric = test["metric"]
    if metric == "auc":
        z = float(_stats().norm.isf(level))
        return max(0.0, test["estimate"] - z * test["standard_error"]), min(1.0, test["estimate"] + z * test["standard_error"])
    if metric in ("accuracy", "precision", "recall"):
        return _wilson(test["successes"], test["trials"], level)
    if metric == "f1":
        low, high = _wilson(test["successes"], test["trials"], level)
        return 2 * low / (1 + low), 2 * high / (1 + high)
    z = float(_stats().norm.isf(level))
    low, high = max(0.0, test["mean"] - z * test["standard_error"]), test["mean"] + z * test["standard_error"]
    return (math.sqrt(low), math.sqrt(high)) if metric == "rmse" else (low, high)


# --- the window's decision --------------------------------------------------------------------


def holm(p_values: list, alpha: float) -> list:
    """Holm's step-down rejections (a list of booleans) at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    total = len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] <= alpha / (total - rank):
            rejected[index] = True
        else:
            break
    return rejected


def decide_window(drift_tests: list, quality_tests: list, policy: dict, intervals: bool = True) -> dict:
    """Holm over every ``ok`` test of the window; marks each with ``decision`` and ``why``
    (and, with ``intervals``, the effect's or the metric's interval at the Bonferroni level).

    ``drift_tests`` hold a :func:`drift_test` result plus ``scope`` and ``name``; ``quality_tests``
    a :func:`quality_test` result plus ``scope``. Returns the window summary.
    """
    alpha = window_alpha(policy)
    tests = [t for t in drift_tests + quality_tests if t["status"] == "ok"]
    looks = max(1.0, float(policy.get("quality_looks", 1)))
    quality_ids = {id(test) for test in quality_tests}
    rejected = holm([min(1.0, t["p_value"] * looks) if id(t) in quality_ids else t["p_value"] for t in tests], alpha)
    family = len(tests)
    level = alpha / family if family else alpha
    drift_ids = {id(test) for test in drift_tests}
    for test, reject in zip(tests, rejected):
        test["decision"] = ("drifted" if id(test) in drift_ids else "below_target") if reject else "ok"
        if not intervals:
            continue
        if "effect" in test:
            test["effect_lower"], test["effect_upper"] = effect_interval(test, level)
            test["why"] = (
                f"effect {test['effect']:.4g} (interval {test['effect_lower']:.4g}-{test['effect_upper']:.4g}) "
                f"{'exceeds' if reject else 'is not shown to exceed'} the minimum effect {policy['min_effect']:g}: "
                f"p = {test['p_value']:.3g} {'<=' if reject else '>'} Holm level over {family} tests at alpha {alpha:.3g}"
            )
        else:
            test["lower"], test["upper"] = quality_interval(test, level)
            worse = "below" if test["comparison"] == "<" else "above"
            test["why"] = (
                f"{test['metric']} {test['estimate']:.4g} (interval {test['lower']:.4g}-{test['upper']:.4g}) "
                f"{'is' if reject else 'is not shown to be'} {worse} the target {test['target']:g}: "
                f"p = {test['p_value']:.3g} over {family} tests at alpha {alpha:.3g}"
            )
    for test in drift_tests + quality_tests:
        if test["status"] != "ok":
            test["decision"] = "undecided"
            test["why"] = test.get("why") or ("too few labels" if "metric" in test else "too few rows for a valid test")
    return {
        "alpha": alpha,
        "tests": family,
        "level": level,
        "drifted": [f"{t['scope']}:{t['name']}" for t in drift_tests if t.get("decision") == "drifted"],
        "quality_below_target": [f"{t['scope']}:{t['metric']}" for t in quality_tests if t.get("decision") == "below_target"],
    }


# --- accumulation of small windows ------------------------------------------------------------

CARRY_VERSION = 1
HISTORY_WINDOWS = 48


def _merge_input(mine: dict, theirs: dict) -> dict:
    merged = dict(mine)
    merged["window"] = (np.asarray(mine["window"], dtype=np.float64) + np.asarray(theirs["window"], dtype=np.float64)).tolist()
    if mine.get("clustering") and theirs.get("clustering"):
        a, b = mine["clustering"], theirs["clustering"]
        merged["clustering"] = {
            "documents": a["documents"] + b["documents"],
            "length_squares": a["length_squares"] + b["length_squares"],
            "cell_squares": [None if x is None or y is None else x + y for x, y in zip(a["cell_squares"], b["cell_squares"])],
            "cell_by_length": [None if x is None or y is None else x + y for x, y in zip(a["cell_by_length"], b["cell_by_length"])],
        }
    return merged


def merge_inputs(mine: dict, theirs: dict) -> dict:
    """Test inputs of two windows added cell by cell (same baseline; a test only one has is kept)."""
    merged = dict(mine)
    for name, given in theirs.items():
        if name in merged and len(merged[name]["window"]) == len(given["window"]):
            merged[name] = _merge_input(merged[name], given)
        else:
            merged[name] = given
    return merged


def accumulate(carry: "dict | None", inputs: dict, rows: dict, baseline_id: str, policy: dict) -> "tuple[dict, dict, dict]":
    """Apply the small-window rule to every scope.

    ``inputs`` and ``rows`` are by scope (this window's test inputs and rows). A scope whose rows,
    with those carried from earlier undecided windows, reach ``min_rows`` (or that has waited
    ``max_accumulated_windows`` windows) is decided now; the others are carried to the next
    window. Returns ``(inputs to decide by scope, the new carry, accumulation notes by scope)``.
    A carry written against another baseline is dropped.
    """
    valid = bool(carry) and carry.get("version") == CARRY_VERSION and carry.get("baseline") == baseline_id
    carried = carry.get("scopes", {}) if valid else {}
    decide: dict = {}
    keep: dict = {}
    notes: dict = {}
    for scope in sorted(set(inputs) | set(carried)):
        previous = carried.get(scope) or {"windows": 0, "rows": 0, "inputs": {}}
        merged = merge_inputs(previous["inputs"], inputs.get(scope, {}))
        windows = previous["windows"] + 1
        total = previous["rows"] + rows.get(scope, 0)
        note = {"windows": windows, "rows": total, "min_rows": policy["min_rows"]}
        if total >= policy["min_rows"] or (windows >= policy["max_accumulated_windows"] and total > 0):
            decide[scope] = merged
            note["state"] = "decided"
            note["why"] = (f"{total:,} rows over {windows} window(s)" + ("" if total >= policy["min_rows"] else
                           f": fewer than {policy['min_rows']:,}, decided after the longest accumulation"))
        elif total > 0:
            keep[scope] = {"windows": windows, "rows": total, "inputs": merged}
            note["state"] = "accumulating"
            note["why"] = (f"{total:,} of the {policy['min_rows']:,} rows a decision needs, over {windows} window(s): "
                           "accumulated with the next window")
        else:
            continue
        notes[scope] = note
    new_carry = {"version": CARRY_VERSION, "baseline": baseline_id, "scopes": keep,
                 "history": list(carry.get("history", []))[-(HISTORY_WINDOWS - 1):] if valid else []}
    return decide, new_carry, notes
