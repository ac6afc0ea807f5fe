"""Pure logic of the monitoring launcher: window, hour lists, manifests, tokens, names, MONITORS."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlops_runtime.domain import monitoring_window as mw
from mlops_runtime.settings.base import SETTINGS_ENV, SettingsError
from mlops_runtime.settings.monitoring import MonitoringLauncherSettings

H = timedelta(hours=1)
DISPLAY_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}$")

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-9, minutes=-45)), timezone.utc]
    )
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- window -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (utc(2024, 5, 1, 13, 0, 0), utc(2024, 5, 1, 13)),  # exactly on the hour: that hour is the end
        (utc(2024, 5, 1, 13, 0, 0, 1), utc(2024, 5, 1, 13)),
        (utc(2024, 5, 1, 13, 59, 59, 999999), utc(2024, 5, 1, 13)),
        (utc(2024, 5, 1, 0, 5), utc(2024, 5, 1, 0)),  # just past midnight
        (utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 31, 23)),
        (datetime(2024, 5, 1, 18, 45, tzinfo=timezone(timedelta(hours=5, minutes=30))), utc(2024, 5, 1, 13)),
        (datetime(2024, 5, 1, 13, 20), utc(2024, 5, 1, 13)),  # naive: taken as UTC
    ],
)
def test_window_end_is_now_floored_to_the_utc_hour(now, end):
    window = mw.window_for(now, 1)
    assert window.end == end and window.start == end - H
    assert window.end.tzinfo == UTC


def test_window_across_midnight_and_year():
    window = mw.window_for(utc(2025, 1, 1, 0, 10), 3)
    assert window.to_dict() == {"start": "2024-12-31T21:00:00Z", "end": "2025-01-01T00:00:00Z"}
    assert window.label == "20250101T0000Z" and window.hours == 3


@pytest.mark.parametrize("hours", [0, -1, 1.5, True, "1", None])
def test_window_hours_must_be_a_positive_integer(hours):
    with pytest.raises(ValueError):
        mw.window_for(utc(2024, 5, 1, 13), hours)


@settings(max_examples=50)
@given(moments, st.integers(1, 168))
def test_window_properties(now, hours):
    window = mw.window_for(now, hours)
    utc_now = now.astimezone(UTC)
    assert window.end <= utc_now < window.end + H
    assert (window.end.minute, window.end.second, window.end.microsecond) == (0, 0, 0)
    assert window.end - window.start == hours * H and window.hours == hours
    assert re.fullmatch(r"\d{8}T\d{2}00Z", window.label)
    assert window.to_dict()["end"] == window.end.strftime("%Y-%m-%dT%H:00:00Z")


# --- hour lists ---------------------------------------------------------------------------------


def test_hour_range_bounds():
    assert mw.hour_range(utc(2024, 5, 1, 12), utc(2024, 5, 1, 12)) == []
    assert mw.hour_range(utc(2024, 5, 1, 12), utc(2024, 5, 1, 12, 0, 0, 1)) == [utc(2024, 5, 1, 12)]
    assert mw.hour_range(utc(2024, 5, 1, 12, 0, 0, 1), utc(2024, 5, 1, 14)) == [utc(2024, 5, 1, 13)]
    assert mw.hour_range(utc(2024, 5, 1, 14), utc(2024, 5, 1, 12)) == []


def test_capture_hours_add_one_hour_each_side():
    window = mw.window_for(utc(2024, 5, 1, 13, 5), 2)  # [11:00, 13:00)
    assert mw.capture_hours(window) == [utc(2024, 5, 1, h) for h in (10, 11, 12, 13)]


def test_capture_hours_across_midnight():
    window = mw.window_for(utc(2024, 3, 1, 0, 1), 1)  # [2024-02-29 23:00, 2024-03-01 00:00), leap day
    assert [mw.hour_path(h) for h in mw.capture_hours(window)] == [
        "2024/02/29/22/", "2024/02/29/23/", "2024/03/01/00/",
    ]


@settings(max_examples=50)
@given(moments, st.integers(1, 168))
def test_capture_hours_properties(now, hours):
    window = mw.window_for(now, hours)
    listed = mw.capture_hours(window)
    assert len(listed) == hours + 2
    assert listed[0] == window.start - H and listed[-1] == window.end
    assert all(b - a == H for a, b in zip(listed, listed[1:], strict=False))


@pytest.mark.parametrize(
    ("now", "lookback", "expected"),
    [
        (utc(2024, 5, 1, 13, 5), 24, [12, 13]),  # capped by now: the current hour's folder counts
        (utc(2024, 5, 1, 13, 0), 24, [12]),  # now exactly on the hour: its folder has not begun
        (utc(2024, 5, 1, 13, 5), 1, [12]),  # capped by the lookback
        (utc(2024, 5, 1, 13, 5), 0, []),
        (utc(2024, 5, 1, 16, 30), 3, [12, 13, 14]),
    ],
)
def test_ground_truth_hours(now, lookback, expected):
    window = mw.Window(utc(2024, 5, 1, 12), utc(2024, 5, 1, 13))
    assert mw.ground_truth_hours(window, now, lookback) == [utc(2024, 5, 1, h) for h in expected]


@settings(max_examples=50)
@given(moments, st.integers(1, 168), st.integers(0, 744), st.integers(0, 7200))
def test_ground_truth_hours_properties(now, hours, lookback, delay_minutes):
    window = mw.window_for(now, hours)
    later = now + timedelta(minutes=delay_minutes)
    listed = mw.ground_truth_hours(window, later, lookback)
    limit = min(later.astimezone(UTC), window.start + lookback * H)
    assert all(window.start <= h < limit for h in listed)
    assert len(listed) == len(set(listed))
    if listed:
        assert listed[0] == window.start and listed[-1] + H >= limit


def test_hour_path_is_utc():
    assert mw.hour_path(datetime(2024, 5, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == "2024/04/30/23/"


def test_listing_prefixes():
    window = mw.Window(utc(2024, 5, 1, 12), utc(2024, 5, 1, 13))
    prefixes = mw.capture_listing_prefixes(["capture/ep/v2/", "capture/ep/champion/", "capture/ep/v2/"], window)
    assert prefixes == [
        "capture/ep/champion/2024/05/01/11/", "capture/ep/champion/2024/05/01/12/", "capture/ep/champion/2024/05/01/13/",
        "capture/ep/v2/2024/05/01/11/", "capture/ep/v2/2024/05/01/12/", "capture/ep/v2/2024/05/01/13/",
    ]
    assert mw.ground_truth_listing_prefixes("gt/", window, utc(2024, 5, 1, 13, 30), 24) == [
        "gt/2024/05/01/12/", "gt/2024/05/01/13/",
    ]


# --- keys and manifests -------------------------------------------------------------------------


def test_capture_and_ground_truth_file_filters():
    assert mw.is_capture_file("capture/ep/v1/2024/05/01/12/a.jsonl", "capture/ep/")
    assert not mw.is_capture_file("capture/ep/v1/2024/05/01/12/a.json", "capture/ep/")
    assert not mw.is_capture_file("capture/ep/v1/2024/05/01/12/.hidden.jsonl", "capture/ep/")
    assert not mw.is_capture_file("capture/ep/v1/2024/05/01/12/", "capture/ep/")
    assert not mw.is_capture_file("capture/other/v1/2024/05/01/12/a.jsonl", "capture/ep/")
    assert mw.is_ground_truth_file("gt/2024/05/01/12/stream-1-2024-05-01-12-00-00-abc", "gt/")
    assert not mw.is_ground_truth_file("gt/2024/05/01/12/", "gt/")
    assert not mw.is_ground_truth_file("gt/2024/05/01/12/.marker", "gt/")
    assert not mw.is_ground_truth_file("gt/", "gt/")


def test_build_manifest_sorted_relative_and_deduplicated():
    manifest = mw.build_manifest("cap", "capture/ep/", [
        "capture/ep/v2/2024/05/01/12/b.jsonl", "capture/ep/champion/2024/05/01/12/a.jsonl",
        "capture/ep/v2/2024/05/01/12/b.jsonl",
    ])
    assert manifest == [
        {"prefix": "s3://cap/capture/ep/"},
        "champion/2024/05/01/12/a.jsonl",
        "v2/2024/05/01/12/b.jsonl",
    ]
    assert json.loads(mw.manifest_body(manifest)) == manifest
    assert mw.manifest_keys(manifest) == [
        "s3://cap/capture/ep/champion/2024/05/01/12/a.jsonl", "s3://cap/capture/ep/v2/2024/05/01/12/b.jsonl",
    ]


def test_build_manifest_refuses_empty_and_outside_keys():
    with pytest.raises(ValueError):
        mw.build_manifest("cap", "capture/ep/", [])
    with pytest.raises(ValueError):
        mw.build_manifest("cap", "capture/ep/", ["capture/other/a.jsonl"])
    with pytest.raises(ValueError):
        mw.build_manifest("cap", "capture/ep/", ["capture/ep/"])


segment = st.text(alphabet="abz019-_", min_size=1, max_size=8)
relative_keys = st.builds(lambda parts: "/".join(parts) + ".jsonl", st.lists(segment, min_size=1, max_size=5))


@given(st.lists(relative_keys, min_size=1, max_size=20))
@settings(max_examples=30)
def test_manifest_round_trip(relatives):
    keys = ["capture/ep/" + r for r in relatives]
    manifest = mw.build_manifest("cap", "capture/ep/", keys)
    assert manifest[0] == {"prefix": "s3://cap/capture/ep/"}
    assert manifest[1:] == sorted(set(relatives))
    assert set(mw.manifest_keys(manifest)) == {"s3://cap/" + k for k in keys}


def test_manifest_locations_and_empty_ground_truth():
    window = mw.Window(utc(2024, 5, 1, 12), utc(2024, 5, 1, 13))
    locations = mw.manifest_locations("art", "monitoring/ep/", window)
    assert locations.capture_key == "monitoring/ep/20240501T1300Z/capture.manifest"
    assert locations.ground_truth_key == "monitoring/ep/20240501T1300Z/ground_truth.manifest"
    assert locations.marker_key == "monitoring/ep/20240501T1300Z/no-ground-truth/.empty"
    assert locations.uri(locations.capture_key) == "s3://art/monitoring/ep/20240501T1300Z/capture.manifest"
    assert mw.empty_ground_truth_manifest(locations) == [
        {"prefix": "s3://art/monitoring/ep/20240501T1300Z/no-ground-truth/"}, ".empty",
    ]


def test_s3_uris():
    assert mw.parse_s3_uri("s3://bucket-1/a/b.json") == ("bucket-1", "a/b.json")
    assert mw.parse_s3_uri("s3://bucket-1") == ("bucket-1", "")
    for bad in ("https://x/y", "s3://", "s3://Bad_Bucket/k", None):
        with pytest.raises(ValueError):
            mw.parse_s3_uri(bad)


# --- pipeline execution -------------------------------------------------------------------------


def test_pipeline_parameters():
    window = mw.Window(utc(2024, 5, 1, 12), utc(2024, 5, 1, 13))
    assert mw.pipeline_parameters(window, "s3://b/baseline.json", "s3://m/c.manifest", "s3://m/g.manifest") == [
        {"Name": "WindowStart", "Value": "2024-05-01T12:00:00Z"},
        {"Name": "WindowEnd", "Value": "2024-05-01T13:00:00Z"},
        {"Name": "BaselineS3Uri", "Value": "s3://b/baseline.json"},
        {"Name": "CaptureManifestS3Uri", "Value": "s3://m/c.manifest"},
        {"Name": "GroundTruthManifestS3Uri", "Value": "s3://m/g.manifest"},
        {"Name": "MetricScope", "Value": "all"},
        {"Name": "MetricTime", "Value": ""},
    ]
    recheck = mw.pipeline_parameters(window, "s3://b/baseline.json", "s3://m/c.manifest", "s3://m/g.manifest",
                                     recheck_at=utc(2024, 5, 3, 9, 15))
    assert recheck[-2:] == [{"Name": "MetricScope", "Value": "quality"},
                            {"Name": "MetricTime", "Value": "2024-05-03T09:15:00Z"}]


# --- late labels --------------------------------------------------------------------------------


def test_recheck_ages_double_until_the_lookback_closes():
    assert mw.recheck_ages(1, 72) == [1, 2, 4, 8, 16, 32, 64, 71]
    assert mw.recheck_ages(3, 24) == [3, 6, 12, 21]
    assert mw.recheck_ages(1, 1) == [] and mw.recheck_ages(6, 4) == []


@settings(max_examples=150, deadline=None)
@given(window_hours=st.integers(1, 48), lookback=st.integers(1, 240), delay=st.integers(0, 239))
def test_every_label_within_the_lookback_is_joined_by_a_recheck_soon_after(window_hours, lookback, delay):
    """A label collected ``delay`` hours after the window's start, within the lookback, is listed by
    the first analysis or by the first checkpoint after it was collected, which comes at most about
    twice its lateness (and one window) after it."""
    assume(delay < lookback)
    start = utc(2024, 5, 1, 0)
    window = mw.Window(start, start + window_hours * mw.HOUR)
    label_hour = start + delay * mw.HOUR
    first_run = window.end + timedelta(minutes=15)
    if label_hour in mw.ground_truth_hours(window, first_run, lookback):
        return
    for age in mw.recheck_ages(window_hours, lookback):
        at = window.end + age * mw.HOUR + timedelta(minutes=15)
        [recheck] = [r for r in mw.label_rechecks(at, window_hours, lookback) if r.window == window]
        if label_hour in mw.new_label_hours(recheck, at, lookback):
            lateness = label_hour + mw.HOUR - window.end
            assert at - label_hour <= max(2 * lateness, lateness + window_hours * mw.HOUR) + mw.HOUR
            return
    raise AssertionError(f"label hour {label_hour} never joined to {window}")


@settings(max_examples=50)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=4))
def test_request_token_is_deterministic_and_valid(parts):
    token = mw.request_token(*parts)
    assert token == mw.request_token(*parts)
    assert 32 <= len(token) <= 128 and re.fullmatch(r"[0-9a-f]+", token)


def test_request_token_separates_parts():
    assert mw.request_token("ab", "c") != mw.request_token("a", "bc")
    assert mw.request_token("monitoring", "p", "ep", "2024-05-01T13:00:00Z") != mw.request_token(
        "monitoring", "p", "ep", "2024-05-01T14:00:00Z"
    )


def test_display_name_keeps_the_window():
    name = mw.display_name("monitor", "e" * 63, "20240501T1300Z")
    assert len(name) <= 82 and name.endswith("-20240501T1300Z") and DISPLAY_PATTERN.match(name)
    assert mw.display_name("monitor", "churn-ep", "20240501T1300Z") == "monitor-churn-ep-20240501T1300Z"
    assert mw.display_name("retrain", "Drift alarm: churn/PSI > 0.2") == "retrain-Drift-alarm-churn-PSI-0-2"
    assert mw.display_name("--", "") == "execution"


@given(st.lists(st.text(max_size=200), min_size=1, max_size=4))
@settings(max_examples=100)
def test_display_name_always_matches_sagemaker_pattern(parts):
    assert DISPLAY_PATTERN.match(mw.display_name(*parts))


# --- the launcher's settings (settings.MonitoringLauncherSettings) ------------------------------


def entry(**changes):
    base = {
        "pipeline_name": "churn-monitoring", "window_hours": 1, "ground_truth_lookback_hours": 24,
        "capture_bucket": "capture-bucket", "capture_prefix": "capture/churn-ep/",
        "ground_truth_bucket": "feedback-bucket", "ground_truth_prefix": "ground-truth/",
        "manifest_bucket": "artifacts-bucket", "manifest_prefix": "monitoring/churn-ep/", "baseline_s3_uri": None,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def launcher_settings(raw: str):
    return MonitoringLauncherSettings.from_env({SETTINGS_ENV: raw})


def test_launcher_settings_valid():
    configs = launcher_settings(json.dumps({"monitors": {
        "churn-ep": entry(capture_prefix="/capture/churn-ep", baseline_s3_uri=...)}})).monitors
    config = configs["churn-ep"]
    assert config.endpoint == "churn-ep"  # named by its key
    assert config.capture_prefix == "capture/churn-ep/" and config.baseline_s3_uri is None
    assert config.window_hours == 1 and config.pipeline_name == "churn-monitoring"
    root = launcher_settings(json.dumps({"monitors": {"ep": entry(ground_truth_prefix="")}})).monitors["ep"]
    assert root.ground_truth_prefix == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "is not set"),
        ("{", "Invalid JSON"),
        ("[]", "Input should be an object"),
        (json.dumps({"monitors": {"bad_name": entry()}}), "SageMaker endpoint name"),
        (json.dumps({"monitors": {"ep": entry(endpoint="other-ep")}}), "'ep' holds the entry of 'other-ep'"),
        (json.dumps({"monitors": {"ep": []}}), "monitors.ep\n  Input should be an object"),
        (json.dumps({"monitors": {"ep": entry(window_hours=0)}}), "window_hours"),
        (json.dumps({"monitors": {"ep": entry(window_hours=169)}}), "window_hours"),
        (json.dumps({"monitors": {"ep": entry(window_hours=1.0)}}), "window_hours"),
        (json.dumps({"monitors": {"ep": entry(window_hours=True)}}), "window_hours"),
        (json.dumps({"monitors": {"ep": entry(window_hours=...)}}), "window_hours\n  Field required"),
        (json.dumps({"monitors": {"ep": entry(ground_truth_lookback_hours=-1)}}), "ground_truth_lookback_hours"),
        (json.dumps({"monitors": {"ep": entry(capture_bucket="Bad_Bucket")}}), "capture_bucket"),
        (json.dumps({"monitors": {"ep": entry(manifest_prefix=3)}}), "manifest_prefix"),
        (json.dumps({"monitors": {"ep": entry(capture_prefix="a//b/")}}), "capture_prefix"),
        (json.dumps({"monitors": {"ep": entry(pipeline_name="has space")}}), "pipeline_name"),
        (json.dumps({"monitors": {"ep": entry(baseline_s3_uri="https://x/baseline.json")}}), "baseline_s3_uri"),
        (json.dumps({"monitors": {"ep": entry(baseline_s3_uri="s3://bucket/folder/")}}), "baseline_s3_uri"),
        (json.dumps({"monitors": {"ep": entry(window_hour=1)}}), "window_hour\n  Extra inputs are not permitted"),
        (json.dumps({"monitors": {"ep": entry(window_hours=24, schedule_hours=1)}}), "must run once per window"),
    ],
)
def test_launcher_settings_errors(raw, message):
    with pytest.raises(SettingsError) as caught:
        launcher_settings(raw)
    assert message in str(caught.value)
