"""monitoring/metrics.py is the one table: the per-feature and per-scope metrics the report publishes are
declared there with matching dimensions, and a declared per-feature metric has a producer."""

from __future__ import annotations

from monitoring import drift, report
from monitoring import metrics as metric_table


def test_published_feature_and_scope_metrics_are_declared_with_their_dimensions():
    assert set(metric_table.FEATURE_METRICS) == set(drift.FEATURE_KINDS)  # every feature type publishes
    for kind, pairs in metric_table.FEATURE_METRICS.items():
        for name, _field in pairs:
            assert metric_table.METRICS[name][1] in ("feature", "scope"), (kind, name)
    for name, (kind, _field) in metric_table.SCOPE_MAXIMA.items():
        assert metric_table.METRICS[name][1] == "scope" and kind in drift.FEATURE_KINDS, name


def test_every_declared_feature_metric_is_published_per_feature():
    published = {"DriftEffect"} | {name for pairs in metric_table.FEATURE_METRICS.values() for name, _ in pairs}
    declared = {name for name, (_unit, dimensions, _) in metric_table.METRICS.items() if dimensions == "feature"}
    assert declared <= published, f"declared per feature but never published: {sorted(declared - published)}"


def test_threshold_sections_are_ones_the_report_checks():
    sections = {section for section, _field, _comparison in metric_table.THRESHOLDS.values()}
    assert sections <= set(drift.FEATURE_KINDS) | {"feature", "prediction", "input", "quality"}
    assert {comparison for *_, comparison in metric_table.THRESHOLDS.values()} <= {">", "<"}
    assert report.THRESHOLDS is metric_table.THRESHOLDS
