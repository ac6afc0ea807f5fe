"""The one table of the monitoring job's CloudWatch metrics, its alarms and its thresholds.

``report.py`` publishes only metrics named here (the per-feature ones and the per-scope maxima as
:data:`FEATURE_METRICS` and :data:`SCOPE_MAXIMA` say); ``mlops_platform/config/models.py`` validates
the ``thresholds`` keys against :data:`THRESHOLDS` and their values with :func:`parse_thresholds` (what the job runs); ``mlops_platform/stacks/monitoring.py`` builds
its alarms from :data:`ALARMS` and its dashboard from :data:`QUALITY_METRICS`. A test checks that
every alarmed metric is produced by a job run. Pure Python: the stack imports it at synthesis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

NAMESPACE = "MlopsPlatform/Monitoring"
ALL = "_all"

# Dimensions: "endpoint" = Endpoint, Variant=_all; "scope" = Endpoint, Variant (each variant and _all);
# "feature" = Endpoint, Variant=_all, Feature. The text measures are published per scope for
# whole-document text (--text-baseline) and per feature for the model's text features.
METRICS = {
    "DriftDetected": ("Count", "endpoint", "1 when a drift test of the window is decided drifted (Holm at the page budget)"),
    "QualityBelowTarget": ("Count", "endpoint", "1 when a quality test decides a metric is worse than its target"),
    "DriftAccumulating": ("Count", "endpoint", "1 while the window is too small and accumulated with the next"),
    "DriftTests": ("Count", "endpoint", "tests decided in the window (the Holm family)"),
    "RecordCount": ("Count", "scope", "capture records in the window"),
    "Violations": ("Count", "scope", "point-threshold crossings (informational, no alarm)"),
    "DriftedFeatures": ("Count", "scope", "tests of the scope decided drifted"),
    "MaxDriftEffect": ("None", "scope", "largest drift effect estimate of the scope (PSI units)"),
    "MaxPSI": ("None", "scope", "largest numeric-feature PSI"),
    "MaxKS": ("None", "scope", "largest numeric-feature binned KS lower bound"),
    "MaxJSDistance": ("None", "scope", "largest categorical JS distance"),
    "PredictionPSI": ("None", "scope", "score PSI, else predicted-class PSI"),
    "PositiveRate": ("None", "scope", "share of predicted class 1"),
    "OOVRate": ("None", "scope", "text out-of-vocabulary rate"),
    "TextJSDistance": ("None", "scope", "text token JS distance"),
    "LengthPSI": ("None", "scope", "text length PSI"),
    "LabelCount": ("Count", "scope", "labels joined to predictions"),
    "AUC": ("None", "scope", "ROC AUC from joined labels"),
    "Accuracy": ("None", "scope", "accuracy from joined labels"),
    "Precision": ("None", "scope", "precision of class 1"),
    "Recall": ("None", "scope", "recall of class 1"),
    "F1": ("None", "scope", "F1 of class 1"),
    "RMSE": ("None", "scope", "regression RMSE"),
    "MAE": ("None", "scope", "regression MAE"),
    "MalformedLines": ("Count", "endpoint", "capture lines that could not be read"),
    "DriftEffect": ("None", "feature", "drift effect estimate of the feature (PSI units)"),
    "PSI": ("None", "feature", "numeric feature PSI"),
    "KSStatistic": ("None", "feature", "numeric feature binned KS lower bound"),
    "JSDistance": ("None", "feature", "categorical feature JS distance"),
}

# Per feature ("feature" dimensions, all variants): the decision's DriftEffect and, by the feature's
# type, these (metric, field of the feature's drift result in report.json).
FEATURE_METRICS = {
    "numeric": (("PSI", "psi"), ("KSStatistic", "ks_statistic")),
    "categorical": (("JSDistance", "js_distance"),),
    "text": (("TextJSDistance", "js_distance"), ("OOVRate", "oov_rate"), ("LengthPSI", "length_psi")),
}

# Per scope ("scope" dimensions): metric -> (feature type, field), the largest over the scope's features.
SCOPE_MAXIMA = {
    "MaxPSI": ("numeric", "psi"),
    "MaxKS": ("numeric", "ks_statistic"),
    "MaxJSDistance": ("categorical", "js_distance"),
}

# What a late-label recheck of a window publishes (it must not re-raise the window's drift alarm).
QUALITY_FAMILY = frozenset({"QualityBelowTarget", "LabelCount", "AUC", "Accuracy", "Precision", "Recall", "F1",
                            "RMSE", "MAE"})

# alarm -> the metric it watches (Maximum over the window's period, >= 1)
ALARMS = {
    "drift": "DriftDetected",
    "quality": "QualityBelowTarget",
}

# threshold key -> (section, report field, comparison). Drift keys are point thresholds, reported
# as crossings next to the calibrated decision (no alarm); quality keys are the targets of the
# quality tests (the quality alarm).
THRESHOLDS = {
    "psi": ("numeric", "psi", ">"),
    "ks": ("numeric", "ks_statistic", ">"),
    "out_of_range_fraction": ("numeric", "out_of_range_fraction", ">"),
    "js_distance": ("categorical", "js_distance", ">"),
    "chi2_p_value": ("categorical", "chi2_p_value", "<"),
    "unseen_fraction": ("categorical", "unseen_fraction", ">"),
    "missing_fraction": ("feature", "missing_fraction", ">"),
    "prediction_psi": ("prediction", "psi", ">"),
    "text_js_distance": ("text", "js_distance", ">"),
    "oov_rate": ("text", "oov_rate", ">"),
    "length_psi": ("text", "length_psi", ">"),
    "malformed_fraction": ("input", "malformed_fraction", ">"),
    "auc_min": ("quality", "auc", "<"),
    "accuracy_min": ("quality", "accuracy", "<"),
    "precision_min": ("quality", "precision", "<"),
    "recall_min": ("quality", "recall", "<"),
    "f1_min": ("quality", "f1", "<"),
    "rmse_max": ("quality", "rmse", ">"),
    "mae_max": ("quality", "mae", ">"),
}

# quality threshold key -> the metric published for it (dashboard lines)
QUALITY_METRICS = {"auc_min": "AUC", "accuracy_min": "Accuracy", "precision_min": "Precision",
                   "recall_min": "Recall", "f1_min": "F1", "rmse_max": "RMSE", "mae_max": "MAE"}


# --- the job's --thresholds: parsed here (no numpy), so the config checks them as the job does ---

DEFAULT_THRESHOLDS: dict = {}
"""No point threshold by default: drift is decided by ``decision.py``; quality targets are given."""


class ThresholdError(ValueError):
    pass


def parse_thresholds(text: "str | None") -> dict:
    """Thresholds from a JSON object or the path of a JSON file, merged over the defaults."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    if not text:
        return thresholds
    source = "--thresholds"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ThresholdError(f"--thresholds: cannot read {path} ({exc.strerror or exc})") from None
        source = str(path)
    try:
        given = json.loads(text)
    except ValueError as exc:
        raise ThresholdError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(given, dict):
        raise ThresholdError(f"{source}: thresholds must be a JSON object")
    for key, value in given.items():
        if key not in THRESHOLDS:
            raise ThresholdError(f"{source}: unknown threshold {key!r} (known: {', '.join(sorted(THRESHOLDS))})")
        if value is None:
            thresholds.pop(key, None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ThresholdError(f"{source}: threshold {key!r} must be a number, got {value!r}")
        thresholds[key] = float(value)
    return thresholds
