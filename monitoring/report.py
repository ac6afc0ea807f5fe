"""Thresholds, violations, ``report.json``, ``report.html`` and CloudWatch metric data.

Thresholds (``--thresholds``, merged over :data:`DEFAULT_THRESHOLDS`; ``null`` disables one):

=========================  ==========================================================  =====
key                        checked against                                             fires
=========================  ==========================================================  =====
``psi``                    numeric feature PSI                                         >
``ks``                     numeric feature ``ks_statistic`` (binned lower bound)       >
``out_of_range_fraction``  numeric feature share of values outside training min/max    >
``js_distance``            categorical feature JS distance (and text, unless           >
                           ``text_js_distance`` is set)
``chi2_p_value``           categorical feature chi-square p-value                      <
``unseen_fraction``        categorical feature share of categories not in the baseline >
``missing_fraction``       any feature's share of missing/invalid values               >
``prediction_psi``         prediction drift PSI (score PSI, else class PSI)            >
``text_js_distance``       text token-distribution JS distance                         >
``oov_rate``               text out-of-vocabulary rate                                 >
``length_psi``             text token-count PSI                                        >
``malformed_fraction``     (malformed lines + rejected rows) / lines read              >
``auc_min`` ...            ``accuracy_min``, ``precision_min``, ``recall_min``,        <
                           ``f1_min``, ``auc_min``: binary quality metrics
``rmse_max``, ``mae_max``  regression quality metrics                                  >
=========================  ==========================================================  =====

Violations are evaluated for every variant and for all variants together (scope ``_all``, a
name no SageMaker variant can have since variant names allow no underscore). A feature with at
least one violation in a scope is *drifted* in it. Quality metrics are checked only where the
status is ``ok`` (never on ``insufficient_data``).

CloudWatch metric data (namespace ``MlopsPlatform/Monitoring``), timestamp = window end (else
the report time):

- dimensions ``Endpoint``, ``Variant`` (each variant and ``_all``): ``RecordCount``,
  ``Violations``, ``DriftedFeatures``, ``MaxPSI``, ``MaxKS``, ``MaxJSDistance`` (categorical),
  ``PredictionPSI``, ``PositiveRate`` (binary), ``OOVRate``, ``TextJSDistance``, ``LengthPSI``
  (text), ``LabelCount``, and when quality is ``ok``: ``AUC``, ``Accuracy``, ``Precision``,
  ``Recall``, ``F1`` or ``RMSE``, ``MAE``; for ``_all`` also ``MalformedLines``;
- dimensions ``Endpoint``, ``Variant`` = ``_all``, ``Feature``: ``DriftEffect`` and, by the
  feature's type, ``metrics.FEATURE_METRICS`` (``PSI`` and ``KSStatistic`` for numeric,
  ``JSDistance`` for categorical, the text measures for text features), one per feature
  (per-variant feature metrics are left out to bound the number of custom metrics).

A metric without a value (no data, undefined) is left out rather than sent as 0.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

try:
    from . import decision
    from .metrics import ALL, FEATURE_METRICS, METRICS, NAMESPACE, SCOPE_MAXIMA, THRESHOLDS
    from .metrics import DEFAULT_THRESHOLDS, ThresholdError, parse_thresholds  # noqa: F401 (the job's names)
except ImportError:  # run as a script from a flat code directory (the processing job)
    import decision  # type: ignore[no-redef]
    from metrics import ALL, FEATURE_METRICS, METRICS, NAMESPACE, SCOPE_MAXIMA, THRESHOLDS  # type: ignore[no-redef]
    from metrics import DEFAULT_THRESHOLDS, ThresholdError, parse_thresholds  # type: ignore[no-redef]  # noqa: F401

REPORT_VERSION = 2
PUT_METRIC_CHUNK = 500
"""Metrics per PutMetricData call (the API allows 1000 and 1 MB per request)."""


def _fires(value: object, comparison: str, threshold: float) -> bool:
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    return value > threshold if comparison == ">" else value < threshold


def _violation(scope: str, section: str, metric: str, value: float, key: str, threshold: float, feature=None) -> dict:
    entry = {"variant": scope, "section": section, "metric": metric, "value": value}
    if feature is not None:
        entry["feature"] = feature
    entry.update(threshold_key=key, threshold=threshold, comparison=THRESHOLDS[key][2])
    return entry


def _text_checks(thresholds: dict) -> dict:
    """Threshold key -> field of a text section: ``js_distance`` applies to text unless
    ``text_js_distance`` is set."""
    checks = {"oov_rate": "oov_rate", "length_psi": "length_psi"}
    if "text_js_distance" in thresholds:
        checks["text_js_distance"] = "js_distance"
    elif "js_distance" in thresholds:
        checks["js_distance"] = "js_distance"
    return {key: field for key, field in checks.items() if key in thresholds}


def drift_violations(scope: str, drift: dict, thresholds: dict) -> list:
    """Point-threshold crossings of one scope's drift result (informational: whether a feature
    *drifted* is the calibrated decision, :func:`apply_decisions`); marks each feature's
    ``violations``."""
    found = []
    text_checks = _text_checks(thresholds)
    for name, feature in drift["features"].items():
        feature["violations"] = []
        checks = {key: THRESHOLDS[key][1] for key in thresholds
                  if THRESHOLDS[key][0] in (feature["type"], "feature") and feature["type"] != "text"}
        if feature["type"] == "text":
            checks = dict(text_checks, **({"missing_fraction": "missing_fraction"} if "missing_fraction" in thresholds else {}))
        for key, field in checks.items():
            value = feature.get(field)
            if _fires(value, THRESHOLDS[key][2], thresholds[key]):
                feature["violations"].append(key)
                found.append(_violation(scope, "feature", field, value, key, thresholds[key], name))
    prediction = drift["prediction"]
    if "prediction_psi" in thresholds and _fires(prediction.get("psi"), ">", thresholds["prediction_psi"]):
        found.append(
            _violation(scope, "prediction", "psi", prediction["psi"], "prediction_psi", thresholds["prediction_psi"])
        )
    text = drift.get("text")
    if text:
        text["violations"] = []
        for key, field in text_checks.items():
            if _fires(text.get(field), THRESHOLDS[key][2], thresholds[key]):
                text["violations"].append(key)
                found.append(_violation(scope, "text", field, text[field], key, thresholds[key]))
    return found


def quality_violations(scope: str, quality: dict, thresholds: dict) -> list:
    """Point crossings of the quality targets (informational; the alarm is the quality test's)."""
    found = []
    if quality.get("status") != "ok" or not quality.get("metrics"):
        return found
    for key, threshold in thresholds.items():
        section, field, comparison = THRESHOLDS[key]
        if section == "quality" and _fires(quality["metrics"].get(field), comparison, threshold):
            found.append(_violation(scope, "quality", field, quality["metrics"][field], key, threshold))
    return found


def input_violations(capture: dict, drift_all: dict, thresholds: dict) -> list:
    if "malformed_fraction" not in thresholds:
        return []
    lines = capture.get("lines", 0)
    if not lines:
        return []
    fraction = (capture.get("malformed_lines", 0) + drift_all.get("rows_rejected", 0)) / lines
    if _fires(fraction, ">", thresholds["malformed_fraction"]):
        return [_violation(ALL, "input", "malformed_fraction", fraction, "malformed_fraction", thresholds["malformed_fraction"])]
    return []


def _scopes(drift_variants: dict) -> list:
    """Scopes tested: all variants together, and each variant when there are several."""
    return [ALL] + (sorted(drift_variants) if len(drift_variants) > 1 else [])


_TEST_FIELDS = ("status", "decision", "why", "rows", "reference_rows", "n_eff", "cells", "dof", "statistic",
                "design_effect", "effect", "effect_lower", "effect_upper", "p_value", "estimate", "lower", "upper",
                "target", "metric", "comparison")


def _compact(test: dict) -> dict:
    return {key: test[key] for key in _TEST_FIELDS if key in test}


def _significance(test: dict) -> "tuple":
    """Sort key of a feature's tests, most significant first: drifted, then the smallest p-value,
    then the largest effect."""
    p_value = test.get("p_value")
    return (test.get("decision") != "drifted", 1.0 if p_value is None else p_value, -(test.get("effect") or 0.0))


def apply_decisions(drift_all: dict, drift_variants: dict, quality: dict, thresholds: dict, policy: dict,
                    test_inputs: dict, test_rows: dict, carry: "dict | None", baseline_id: str,
                    window_end: "str | None") -> dict:
    """Accumulate small windows, test, and decide the window (Holm at the page budget); marks each
    feature, the prediction and the text section of every scope with its ``decision``."""
    scopes = _scopes(drift_variants)
    results = {ALL: drift_all, **drift_variants}
    inputs = {scope: test_inputs[scope] for scope in scopes if scope in test_inputs}
    rows = {scope: test_rows.get(scope, 0) for scope in inputs}
    to_decide, next_carry, accumulation = decision.accumulate(carry, inputs, rows, baseline_id, policy)
    drift_tests = []
    for scope in scopes:
        if scope in to_decide:
            drift_tests += decision.scope_tests(scope, to_decide[scope], policy)
    quality_tests = []
    if quality.get("status") == "ok":
        from_quality = {ALL: quality.get("all"), **quality.get("variants", {})}
        for scope in scopes:
            result = from_quality.get(scope) or {}
            for key, target in thresholds.items():
                if key in decision.QUALITY_TARGETS:
                    test = decision.quality_test(key, target, quality_evidence(result))
                    test["scope"] = scope
                    quality_tests.append(test)
    window = decision.decide_window(drift_tests, quality_tests, policy)
    if len(drift_variants) == 1:  # the only variant is all variants: share the decisions
        results = {ALL: drift_all, "single": next(iter(drift_variants.values()))}
    for result in results.values():
        for feature in result["features"].values():
            feature["drifted"] = False
            if feature["type"] == "text":
                feature["tests"] = {}
        for section in ("prediction", "text"):
            if result.get(section):
                result[section]["tests"] = {}
                result[section]["drifted"] = False
    for test in drift_tests:
        for result in ([results[test["scope"]]] + ([results["single"]] if "single" in results else [])):
            compact = _compact(test)
            drifted = test.get("decision") == "drifted"
            section, _, part = test["name"].partition(".")
            feature_name, _, text_part = test["name"].rpartition(".")
            if test["name"] in result["features"]:
                result["features"][test["name"]]["decision"] = compact
                result["features"][test["name"]]["drifted"] = drifted
            elif result["features"].get(feature_name, {}).get("type") == "text":
                # a text feature's tests (tokens, oov, length): its decision is the most significant one
                feature = result["features"][feature_name]
                feature["tests"][text_part] = compact
                feature["drifted"] = feature["drifted"] or drifted
                feature["decision"] = min(feature["tests"].values(), key=_significance)
            elif section in ("prediction", "text") and result.get(section):
                result[section]["tests"][part] = compact
                result[section]["drifted"] = result[section]["drifted"] or drifted
    effects = {test["name"]: test["effect"] for test in drift_tests if test["scope"] == ALL and test.get("effect") is not None}
    if drift_tests:
        next_carry["history"].append({"window_end": window_end, "effects": effects, "drifted": window["drifted"]})
    untested = []
    if ALL in inputs and drift_all["prediction"].get("count"):
        if "prediction.score" not in inputs[ALL]:
            untested.append("model score: the baseline has no `prediction` (score deciles on held-out data)")
        if "prediction.class" not in inputs[ALL] and drift_all["prediction"].get("classes") is not None:
            untested.append("predicted class: the baseline has no `prediction_classes` (the model's classes on "
                            "held-out data; training labels are no reference for them)")
    window.update(
        untested=untested,
        min_effect=policy["min_effect"],
        accumulation=accumulation,
        accumulating=bool(accumulation) and all(note["state"] == "accumulating" for note in accumulation.values()),
        drift_tests=[dict(_compact(test), scope=test["scope"], name=test["name"]) for test in drift_tests],
        quality_tests=[dict(_compact(test), scope=test["scope"], key=test["key"]) for test in quality_tests],
        history=next_carry["history"],
        next_carry=next_carry,
    )
    return window


def quality_evidence(result: dict) -> "dict | None":
    metrics = result.get("metrics") if result and result.get("status") == "ok" else None
    if not metrics:
        return None
    return {"auc": metrics.get("auc"), "auc_se": metrics.get("auc_standard_error"),
            "confusion": metrics.get("confusion_matrix"), "squared_error": metrics.get("squared_error"),
            "absolute_error": metrics.get("absolute_error")}


def _iso(value: "datetime | None") -> "str | None":
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _max_of(features: dict, kind: str, field: str) -> "tuple[float | None, str | None]":
    best, best_name = None, None
    for name, feature in features.items():
        value = feature.get(field)
        if feature["type"] == kind and value is not None and (best is None or value > best):
            best, best_name = value, name
    return best, best_name


def build_report(
    *,
    endpoint: str,
    problem_type: str,
    window_start: "datetime | None",
    window_end: "datetime | None",
    inputs: dict,
    thresholds: dict,
    capture: dict,
    drift_all: dict,
    drift_variants: dict,
    quality: dict,
    issues: dict,
    generated_at: "datetime | None" = None,
    test_inputs: "dict | None" = None,
    test_rows: "dict | None" = None,
    policy: "dict | None" = None,
    carry: "dict | None" = None,
    baseline_id: str = "",
) -> dict:
    """Assemble ``report.json``: the calibrated decisions (``decision.py``; ``test_inputs`` and
    ``test_rows`` by scope, from ``DriftAccumulator.test_inputs``), the point-threshold
    crossings, and everything measured (see README.md for the layout). The state to carry to the
    next window is ``report["decision"]["next_carry"]`` (the caller stores it, not report.json)."""
    policy = decision.parse_policy(policy)
    verdict = apply_decisions(
        drift_all, drift_variants, quality, thresholds, policy, test_inputs or {}, test_rows or {}, carry, baseline_id,
        _iso(window_end),
    )
    violations = []
    for variant in sorted(drift_variants):
        violations += drift_violations(variant, drift_variants[variant], thresholds)
    violations += drift_violations(ALL, drift_all, thresholds)
    if quality.get("status") == "ok":
        for variant in sorted(quality["variants"]):
            violations += quality_violations(variant, quality["variants"][variant], thresholds)
        violations += quality_violations(ALL, quality["all"], thresholds)
    violations += input_violations(capture, drift_all, thresholds)

    max_psi, max_psi_feature = _max_of(drift_all["features"], "numeric", "psi")
    drifted = [name for name, feature in drift_all["features"].items() if feature.get("drifted")]
    records = capture.get("records", 0)
    quality_summary = {}
    if quality.get("status") == "ok":
        for scope, result in [(ALL, quality["all"])] + sorted(quality["variants"].items()):
            entry = {"status": result["status"], "label_count": result["label_count"]}
            for field in ("auc", "accuracy", "f1", "rmse", "mae"):
                if result.get("metrics") and field in result["metrics"]:
                    entry[field] = result["metrics"][field]
            quality_summary[scope] = entry
    text = drift_all.get("text")
    summary = {
        "records": records,
        "rows": drift_all["rows"],
        "variants": sorted(drift_variants),
        "max_psi": max_psi,
        "max_psi_feature": max_psi_feature,
        "drifted_features": drifted,
        "drifted_feature_count": len(drifted),
        "drifted_features_by_variant": {
            variant: [name for name, feature in result["features"].items() if feature.get("drifted")]
            for variant, result in sorted(drift_variants.items())
        },
        "prediction_psi": drift_all["prediction"].get("psi"),
        "text_drifted": bool(text and text.get("drifted"))
                        or any(f.get("drifted") for f in drift_all["features"].values() if f["type"] == "text"),
        "violation_count": len(violations),
        "malformed_lines": capture.get("malformed_lines", 0),
        "rows_rejected": drift_all.get("rows_rejected", 0),
        "quality_status": quality.get("status"),
        "quality": quality_summary,
    }
    summary["drift_detected"] = bool(verdict["drifted"])
    summary["quality_below_target"] = bool(verdict["quality_below_target"])
    if records == 0 and not verdict["tests"]:
        status = "no_data"
    elif verdict["drifted"] or verdict["quality_below_target"]:
        status = "alarm"
    else:
        status = "violations" if violations else "ok"
    return {
        "report_version": REPORT_VERSION,
        "generated_at": _iso(generated_at or datetime.now(timezone.utc)),
        "status": status,
        "endpoint": endpoint,
        "problem_type": problem_type,
        "window": {"start": _iso(window_start), "end": _iso(window_end)},
        "inputs": inputs,
        "thresholds": thresholds,
        "policy": policy,
        "decision": verdict,
        "summary": summary,
        "violations": violations,
        "capture": capture,
        "drift": {"all": drift_all, "variants": drift_variants},
        "quality": quality,
        "issues": issues,
    }


# --- CloudWatch -----------------------------------------------------------------------------


def _metric(name: str, value: object, dimensions: list, timestamp: str, unit: str = "None") -> "dict | None":
    if name not in METRICS:  # every published metric is declared once, in metrics.py
        raise KeyError(f"metric {name!r} is not in metrics.METRICS")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return {
        "MetricName": name,
        "Dimensions": [{"Name": key, "Value": str(val)} for key, val in dimensions],
        "Timestamp": timestamp,
        "Value": float(value),
        "Unit": unit,
    }


def cloudwatch_metric_data(report: dict) -> list:
    """The report's headline figures as CloudWatch ``MetricData`` entries (see the module docstring)."""
    endpoint = report["endpoint"]
    timestamp = report["window"]["end"] or report["generated_at"]
    data: list = []
    violations_by_scope: dict = {}
    for violation in report["violations"]:
        violations_by_scope[violation["variant"]] = violations_by_scope.get(violation["variant"], 0) + 1
    scopes = [(ALL, report["drift"]["all"])] + sorted(report["drift"]["variants"].items())
    quality = report["quality"]
    verdict = report["decision"]
    endpoint_dims = [("Endpoint", endpoint), ("Variant", ALL)]
    for name, value in (("DriftDetected", int(bool(verdict["drifted"]))),
                        ("QualityBelowTarget", int(bool(verdict["quality_below_target"]))),
                        ("DriftAccumulating", int(bool(verdict["accumulating"]))),
                        ("DriftTests", verdict["tests"])):
        data.append(_metric(name, value, endpoint_dims, timestamp, "Count"))
    effects_by_scope: dict = {}
    drifted_by_scope: dict = {}
    for test in verdict["drift_tests"]:
        if test.get("effect") is not None:
            effects_by_scope[test["scope"]] = max(effects_by_scope.get(test["scope"], 0.0), test["effect"])
        drifted_by_scope[test["scope"]] = drifted_by_scope.get(test["scope"], 0) + (test.get("decision") == "drifted")
    if len(report["drift"]["variants"]) == 1:
        only = next(iter(report["drift"]["variants"]))
        effects_by_scope.setdefault(only, effects_by_scope.get(ALL))
        drifted_by_scope.setdefault(only, drifted_by_scope.get(ALL, 0))
    for scope, drift in scopes:
        dims = [("Endpoint", endpoint), ("Variant", scope)]
        features = drift["features"]
        entries = [
            ("RecordCount", drift["records"], "Count"),
            ("Violations", violations_by_scope.get(scope, 0), "Count"),
            ("DriftedFeatures", drifted_by_scope.get(scope, 0), "Count"),
            ("MaxDriftEffect", effects_by_scope.get(scope), "None"),
            *((name, _max_of(features, kind, field)[0], "None") for name, (kind, field) in SCOPE_MAXIMA.items()),
            ("PredictionPSI", drift["prediction"].get("psi"), "None"),
            ("PositiveRate", (drift["prediction"].get("classes") or {}).get("positive_rate"), "None"),
        ]
        text = drift.get("text")
        if text:
            entries += [
                ("OOVRate", text.get("oov_rate"), "None"),
                ("TextJSDistance", text.get("js_distance"), "None"),
                ("LengthPSI", text.get("length_psi"), "None"),
            ]
        result = None
        if quality.get("status") == "ok":
            result = quality["all"] if scope == ALL else quality["variants"].get(scope)
        if result is not None:
            entries.append(("LabelCount", result["label_count"], "Count"))
            metrics = result.get("metrics") or {}
            for name, field in (
                ("AUC", "auc"),
                ("Accuracy", "accuracy"),
                ("Precision", "precision"),
                ("Recall", "recall"),
                ("F1", "f1"),
                ("RMSE", "rmse"),
                ("MAE", "mae"),
            ):
                entries.append((name, metrics.get(field), "None"))
        elif quality.get("status") == "ok":
            entries.append(("LabelCount", 0, "Count"))
        if scope == ALL:
            entries.append(("MalformedLines", report["capture"].get("malformed_lines", 0), "Count"))
        for name, value, unit in entries:
            entry = _metric(name, value, dims, timestamp, unit)
            if entry:
                data.append(entry)
    for name, feature in report["drift"]["all"]["features"].items():
        dims = [("Endpoint", endpoint), ("Variant", ALL), ("Feature", name)]
        effect = (feature.get("decision") or {}).get("effect")
        pairs = [("DriftEffect", effect)] + [(metric_name, feature.get(field))
                                             for metric_name, field in FEATURE_METRICS[feature["type"]]]
        for metric_name, value in pairs:
            entry = _metric(metric_name, value, dims, timestamp)
            if entry:
                data.append(entry)
    return data


def publish(metric_data: list, namespace: str = NAMESPACE, client=None, region: "str | None" = None) -> int:
    """``PutMetricData`` in chunks; returns the number of calls. boto3 is imported only here."""
    if client is None:
        import boto3

        client = boto3.client("cloudwatch", region_name=region) if region else boto3.client("cloudwatch")
    calls = 0
    for start in range(0, len(metric_data), PUT_METRIC_CHUNK):
        chunk = []
        for entry in metric_data[start : start + PUT_METRIC_CHUNK]:
            entry = dict(entry)
            stamp = entry.get("Timestamp")
            if isinstance(stamp, str):
                entry["Timestamp"] = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            chunk.append(entry)
        client.put_metric_data(Namespace=namespace, MetricData=chunk)
        calls += 1
    return calls


# --- HTML -----------------------------------------------------------------------------------

_BASE_COLOUR = "#7f8c9a"
_CURRENT_COLOUR = "#e67e22"


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _shares(counts: list) -> list:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def svg_bars(title: str, labels: list, baseline: "list | None", current: list) -> str:
    """A grouped bar chart (baseline vs current shares) as inline SVG, no script, no external asset."""
    groups = max(len(labels), 1)
    width, height, left, bottom, top = max(360, 28 * groups * (2 if baseline else 1) + 80), 230, 48, 64, 28
    plot_w, plot_h = width - left - 12, height - top - bottom
    series = ([("baseline", _shares(baseline), _BASE_COLOUR)] if baseline else []) + [
        ("current", _shares(current), _CURRENT_COLOUR)
    ]
    peak = max([max(values) if values else 0.0 for _, values, _ in series] + [1e-12])
    slot = plot_w / groups
    bar = slot * 0.8 / len(series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title, quote=True)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{peak:.0%}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for index, label in enumerate(labels):
        x0 = left + index * slot + slot * 0.1
        for number, (name, values, colour) in enumerate(series):
            value = values[index] if index < len(values) else 0.0
            h = plot_h * value / peak
            parts.append(
                f'<rect x="{x0 + number * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(str(label))} {name}: {value:.2%}</title></rect>'
            )
        cx = left + (index + 0.5) * slot
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 12}" font-size="9" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + plot_h + 12})">{html.escape(str(label)[:18])}</text>'
        )
    for number, (name, _, colour) in enumerate(series):
        x = width - 170 + number * 80
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="15" font-size="11">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bin_labels(edges: list) -> list:
    labels = []
    for i in range(len(edges) - 1):
        closing = "]" if i == len(edges) - 2 else ")"
        labels.append(f"[{edges[i]:.3g}, {edges[i + 1]:.3g}{closing}")
    return labels


def text_charts(name: str, text: dict) -> list:
    """A drifted text input: the largest token share changes and the document lengths."""
    changes = text["top_token_changes"]
    length = text["length"]["histogram"]
    return [
        svg_bars(f"{name}: largest token share changes", [c["token"] for c in changes],
                 [c["baseline_share"] for c in changes], [c["current_share"] for c in changes]),
        svg_bars(f"{name}: document length (tokens)", _bin_labels(length["bin_edges"]), length["baseline_counts"],
                 length["current_counts"]),
    ]


def feature_chart(name: str, feature: dict) -> str:
    if feature["type"] == "text":
        return "".join(text_charts(name, feature))
    if feature["type"] == "numeric":
        histogram = feature["histogram"]
        return svg_bars(
            f"{name}: PSI {_fmt(feature.get('psi'), 3)}",
            _bin_labels(histogram["bin_edges"]),
            histogram["baseline_counts"],
            histogram["current_counts"],
        )
    categories = feature["categories"]
    keep = 20
    labels = categories["names"][:keep]
    base = list(categories["baseline_counts"][:keep])
    cur = list(categories["current_counts"][:keep])
    if len(categories["names"]) > keep:
        labels.append("(others)")
        base.append(sum(categories["baseline_counts"][keep:]))
        cur.append(sum(categories["current_counts"][keep:]))
    return svg_bars(f"{name}: JS distance {_fmt(feature.get('js_distance'), 3)}", labels, base, cur)


def svg_lines(title: str, points: list, reference: "float | None" = None, drifted: "list | None" = None) -> str:
    """A small line chart of one measure over recent windows (inline SVG); ``reference`` draws
    the minimum effect, ``drifted`` marks the windows decided drifted."""
    width, height, left, top, bottom = 260, 130, 40, 22, 18
    plot_w, plot_h = width - left - 8, height - top - bottom
    values = [v for v in points if v is not None]
    peak = max(values + [reference or 0.0, 1e-12]) * 1.1
    step = plot_w / max(len(points) - 1, 1)

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title, quote=True)}">',
        f'<text x="4" y="14" font-size="11" font-weight="bold">{html.escape(title[:44])}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="9" text-anchor="end">{peak:.2g}</text>',
    ]
    if reference is not None:
        parts.append(f'<line x1="{left}" y1="{y(reference):.1f}" x2="{left + plot_w}" y2="{y(reference):.1f}" '
                     f'stroke="{_BASE_COLOUR}" stroke-dasharray="4 3"><title>minimum effect {reference:g}</title></line>')
    line = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(points) if v is not None)
    parts.append(f'<polyline points="{line}" fill="none" stroke="{_CURRENT_COLOUR}" stroke-width="1.5"/>')
    for i, flag in enumerate(drifted or []):
        if flag and i < len(points) and points[i] is not None:
            parts.append(f'<circle cx="{left + i * step:.1f}" cy="{y(points[i]):.1f}" r="3" fill="#b03a2e"/>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="9">{len(points)} window(s), latest right</text>')
    parts.append("</svg>")
    return "".join(parts)


def _decision_section(report: dict) -> list:
    """The calibrated decision: per test the effect, its interval, the decision and why; the
    reference vs window of what drifted; each effect over recent windows."""
    esc = html.escape
    verdict = report.get("decision")
    if not verdict:
        return []
    policy = report.get("policy", {})
    parts = ["<h2>Decision</h2>", (
        f"<p>Drift: <span class=\"{'bad' if verdict['drifted'] else 'ok'}\">"
        f"{'DRIFT DETECTED' if verdict['drifted'] else 'no drift beyond the minimum effect'}</span>; quality: "
        f"<span class=\"{'bad' if verdict['quality_below_target'] else 'ok'}\">"
        f"{'BELOW TARGET' if verdict['quality_below_target'] else 'not shown below target'}</span>. "
        f"{verdict['tests']} test(s) under Holm at alpha {verdict['alpha']:.3g} per window "
        f"({_fmt(policy.get('false_pages'))} false page(s) per {_fmt(policy.get('per_days'))} days of "
        f"{_fmt(policy.get('window_hours'))} h windows); minimum effect {_fmt(verdict['min_effect'])} (PSI units).</p>")]
    for reason in verdict.get("untested") or []:
        parts.append(f'<p class="muted">Not tested: {esc(reason)}.</p>')
    notes = verdict.get("accumulation") or {}
    if notes:
        parts.append(_table(["scope", "state", "rows", "windows", "why"],
                            [[esc(scope), esc(note["state"]), note["rows"], note["windows"], esc(note["why"])]
                             for scope, note in sorted(notes.items())]))
    rows = []
    for test in verdict["drift_tests"]:
        flag = "bad" if test.get("decision") == "drifted" else "ok"
        rows.append([esc(test["scope"]), esc(test["name"]), test.get("rows"), test.get("effect"),
                     f"{_fmt(test.get('effect_lower'))} &ndash; {_fmt(test.get('effect_upper'))}",
                     test.get("p_value"), f'<span class="{flag}">{esc(test.get("decision", ""))}</span>',
                     esc(test.get("why", ""))])
    for test in verdict["quality_tests"]:
        flag = "bad" if test.get("decision") == "below_target" else "ok"
        rows.append([esc(test["scope"]), esc(f"{test['metric']} ({test['key']} {test['target']:g})"), None,
                     test.get("estimate"), f"{_fmt(test.get('lower'))} &ndash; {_fmt(test.get('upper'))}",
                     test.get("p_value"), f'<span class="{flag}">{esc(test.get("decision", ""))}</span>',
                     esc(test.get("why", ""))])
    if rows:
        parts.append(_table(["scope", "test", "rows", "effect / estimate", "interval", "p", "decision", "why"], rows))
    history = verdict.get("history") or []
    if history:
        names = sorted({name for entry in history for name in entry["effects"]})
        drifted = [set(entry.get("drifted", [])) for entry in history]
        parts.append("<h2>Drift effect over recent windows (all variants; dashed: minimum effect)</h2>"
                     '<div class="charts">')
        for name in names:
            points = [entry["effects"].get(name) for entry in history]
            marks = [f"{ALL}:{name}" in flags for flags in drifted]
            parts.append(svg_lines(name, points, verdict["min_effect"], marks))
        parts.append("</div>")
    return parts


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#f4f6f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b03a2e;font-weight:bold}.ok{color:#1e8449;font-weight:bold}.muted{color:#777}
.charts svg{margin:6px 12px 6px 0;border:1px solid #eee}
"""


def _table(headers: list, rows: list) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, (int, float)) and not isinstance(cell, bool) or cell is None:
                cells.append(f'<td class="num">{_fmt(cell)}</td>')
            else:
                cells.append(f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: dict) -> str:
    """A self-contained HTML page (inline CSS and SVG; no script, no external asset)."""
    esc = html.escape
    summary = report["summary"]
    status = report["status"]
    drift = report["drift"]["all"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Monitoring report: {esc(str(report['endpoint']))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Monitoring report: {esc(str(report['endpoint']))}</h1>",
        "<p>Window {} &ndash; {}; generated {}; problem type {}. Status: <span class=\"{}\">{}</span>.</p>".format(
            esc(str(report["window"]["start"] or "(open)")),
            esc(str(report["window"]["end"] or "(open)")),
            esc(report["generated_at"]),
            esc(report["problem_type"]),
            "ok" if status == "ok" else "bad",
            esc(status),
        ),
        "<h2>Summary</h2>",
        _table(
            ["records", "rows", "variants", "max PSI", "max PSI feature", "drifted features", "violations", "malformed lines"],
            [
                [
                    summary["records"],
                    summary["rows"],
                    esc(", ".join(summary["variants"])) or "&ndash;",
                    summary["max_psi"],
                    esc(str(summary["max_psi_feature"] or "")) or "&ndash;",
                    summary["drifted_feature_count"],
                    summary["violation_count"],
                    summary["malformed_lines"],
                ]
            ],
        ),
    ]
    parts.extend(_decision_section(report))
    if status == "no_data":
        parts.append(
            f"<p class=\"bad\">No capture record in the window (capture state: {esc(str(report['capture'].get('state')))}).</p>"
        )

    parts.append("<h2>Violations</h2>")
    if report["violations"]:
        parts.append(
            _table(
                ["variant", "section", "feature", "metric", "value", "threshold"],
                [
                    [
                        esc(v["variant"]),
                        esc(v["section"]),
                        esc(str(v.get("feature", ""))),
                        esc(v["metric"]),
                        v["value"],
                        f"{esc(v['comparison'])} {_fmt(v['threshold'])} ({esc(v['threshold_key'])})",
                    ]
                    for v in report["violations"]
                ],
            )
        )
    else:
        parts.append('<p class="ok">None.</p>')

    scopes = [("all variants", drift)]
    if len(report["drift"]["variants"]) > 1:
        scopes += [(f"variant {name}", result) for name, result in sorted(report["drift"]["variants"].items())]
    charts = [
        feature_chart(f"{name} ({scope})", feature)
        for scope, result in scopes
        for name, feature in result["features"].items()
        if feature.get("drifted")
    ]
    charts += [
        feature_chart(f"model score ({scope})", result["prediction"]["score"])
        for scope, result in scopes
        if (result["prediction"].get("tests") or {}).get("score", {}).get("decision") == "drifted"
        and result["prediction"].get("score")
    ]
    if charts:
        parts.append("<h2>Drifted: reference vs window</h2><div class=\"charts\">")
        parts.extend(charts)
        parts.append("</div>")

    if drift["features"]:
        parts.append("<h2>Feature drift (all variants)</h2>")
        rows = []
        for name, f in drift["features"].items():
            flag = '<span class="bad">drifted</span>' if f.get("drifted") else '<span class="ok">ok</span>'
            rows.append(
                [
                    esc(name),
                    esc(f["type"]),
                    f["count"],
                    (f.get("decision") or {}).get("effect"),
                    "{} &ndash; {}".format(_fmt((f.get("decision") or {}).get("effect_lower")),
                                           _fmt((f.get("decision") or {}).get("effect_upper"))),
                    f.get("wasserstein_sd"),
                    f.get("psi"),
                    f.get("ks_statistic"),
                    f.get("js_distance"),
                    f.get("chi2_p_value"),
                    f.get("missing_fraction"),
                    f.get("out_of_range_fraction", f.get("unseen_fraction")),
                    flag,
                ]
            )
        parts.append(
            _table(
                ["feature", "type", "count", "effect", "interval", "Wasserstein (sd)", "PSI", "KS", "JS distance",
                 "chi2 p", "missing", "out of range / unseen", "decision"],
                rows,
            )
        )

    prediction = drift["prediction"]
    parts.append("<h2>Prediction drift</h2>")
    classes = prediction.get("classes")
    rows = [["predictions", prediction["count"]], ["PSI", prediction.get("psi")]]
    if classes:
        rows += [
            ["positive rate", classes.get("positive_rate")],
            ["baseline positive rate", classes.get("baseline_positive_rate")],
            ["class JS distance", classes.get("js_distance")],
        ]
    parts.append(_table(["measure", "value"], rows))
    if prediction.get("score_histogram") and prediction["count"]:
        histogram = prediction["score_histogram"]
        parts.append('<div class="charts">')
        parts.append(svg_bars("score distribution (current)", _bin_labels(histogram["bin_edges"]), None, histogram["current_counts"]))
        if classes and classes.get("baseline_counts"):
            base = classes["baseline_counts"]
            cur = classes["current_counts"]
            parts.append(svg_bars("predicted classes vs training labels", ["0", "1"], [base["0"], base["1"]], [cur["0"], cur["1"]]))
        parts.append("</div>")

    text = drift.get("text")
    if text:
        parts.append("<h2>Text drift</h2>")
        parts.append(
            _table(
                ["documents", "tokens", "OOV rate", "baseline OOV rate", "token JS distance", "length PSI", "drifted"],
                [[text["documents"], text["tokens"], text.get("oov_rate"), text.get("baseline_oov_rate"),
                  text.get("js_distance"), text.get("length_psi"), bool(text.get("drifted"))]],
            )
        )
        if text.get("drifted") and text["documents"]:
            parts.append('<div class="charts">')
            parts.extend(text_charts("documents", text))
            parts.append("</div>")
    text_features = {name: f for name, f in drift["features"].items() if f["type"] == "text"}
    if text_features:
        parts.append("<h2>Text features</h2>")
        parts.append(
            _table(
                ["feature", "documents", "tokens", "OOV rate", "baseline OOV rate", "token JS distance", "length PSI",
                 "tests (p-value)", "drifted"],
                [[esc(name), f["documents"], f["tokens"], f.get("oov_rate"), f.get("baseline_oov_rate"),
                  f.get("js_distance"), f.get("length_psi"),
                  ", ".join(f"{part} {_fmt(test.get('p_value'), 3)}" for part, test in (f.get("tests") or {}).items()),
                  bool(f.get("drifted"))] for name, f in text_features.items()],
            )
        )

    quality = report["quality"]
    parts.append("<h2>Model quality</h2>")
    if quality.get("status") != "ok":
        parts.append(f"<p class=\"muted\">No quality figures: {esc(str(quality.get('status')))}.</p>")
    else:
        join = quality["join"]
        parts.append(
            f"<p>{join['labels']:,} labels read, {join['joined_records']:,} joined to a captured prediction, "
            f"{join['labels_without_prediction']:,} without a prediction in the window.</p>"
        )
        names = ["accuracy", "precision", "recall", "f1", "auc"] if report["problem_type"] == "binary" else ["rmse", "mae", "r2"]
        rows = []
        for scope, result in [(ALL, quality["all"])] + sorted(quality["variants"].items()):
            metrics = result.get("metrics") or {}
            rows.append([esc(scope), esc(result["status"]), result["label_count"]] + [metrics.get(n) for n in names])
        parts.append(_table(["variant", "status", "labels"] + names, rows))

    capture = report["capture"]
    issues = report["issues"]
    parts.append("<h2>Inputs</h2>")
    parts.append(
        _table(
            ["files read", "skipped (outside window)", "lines", "records", "outside window", "malformed lines", "unsupported", "rejected rows"],
            [[capture.get("files_read", 0), capture.get("files_skipped_outside_window", 0), capture.get("lines", 0),
              capture.get("records", 0), capture.get("records_outside_window", 0), capture.get("malformed_lines", 0),
              capture.get("unsupported_records", 0), drift.get("rows_rejected", 0)]],
        )
    )
    if issues["examples"]:
        parts.append(f"<p>{issues['total']:,} problem(s); the first {len(issues['examples'])}:</p>")
        parts.append(
            _table(
                ["category", "file", "line", "reason"],
                [[esc(e["category"]), esc(e["file"]), e["line"], esc(e["reason"])] for e in issues["examples"]],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_outputs(output_dir: Path, report: dict, metric_data: list) -> dict:
    """Write ``report.json``, ``report.html`` and ``cloudwatch_metrics.json``; returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": output_dir / "report.json",
        "html": output_dir / "report.html",
        "metrics": output_dir / "cloudwatch_metrics.json",
    }
    document = json.dumps(_finite(report), indent=2, allow_nan=False, default=_json_default)
    paths["report"].write_text(document + "\n", encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    paths["metrics"].write_text(json.dumps(metric_data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return paths


def _finite(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
