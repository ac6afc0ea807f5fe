"""Pure feedback domain: body parsing, record validation, normalisation, ground truth, settings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from feedback_fixtures import NOW, SUBJECT_KEY
from mlops_runtime.domain import feedback as fb


def valid(**fields):
    return {"inference_id": "inf-1", "feedback_type": "click", "reward": 1, **fields}


def errors_of(raw, now=NOW, **limits):
    with pytest.raises(fb.InvalidFeedback) as caught:
        fb.validate_record(raw, now=now, **limits)
    return {error["field"]: error["reason"] for error in caught.value.errors}


# --- body ---------------------------------------------------------------------------------------


def test_parse_body_accepts_text_and_base64():
    assert fb.parse_body('{"a": 1}', False) == {"a": 1}
    assert fb.parse_body(base64.b64encode(b'{"a": 1}').decode(), True) == {"a": 1}


@pytest.mark.parametrize(
    ("body", "is_base64", "status"),
    [
        (None, False, 400),
        ("", False, 400),
        ("{", False, 400),
        ("NaN", False, 400),
        ('{"reward": Infinity}', False, 400),
        ("[" * 100_000 + "]" * 100_000, False, 400),
        ("1" * 5000, False, 400),  # longer than Python's int conversion limit
        ("\ufeff{}", False, 400),
        ('{"a": "\ud800"}', False, 400),  # a lone surrogate cannot be UTF-8
        ("not base64!", True, 400),
        (base64.b64encode(b'{"a": "\xff"}').decode(), True, 400),
        ("x" * (fb.MAX_BODY_BYTES + 1), False, 413),
        ("é" * (fb.MAX_BODY_BYTES // 2 + 1), False, 413),  # 2 bytes per character
        (base64.b64encode(b" " * (fb.MAX_BODY_BYTES + 1)).decode(), True, 413),
    ],
)
def test_parse_body_rejects(body, is_base64, status):
    with pytest.raises(fb.RequestRejected) as caught:
        fb.parse_body(body, is_base64)
    assert caught.value.status == status
    assert caught.value.errors[0]["field"] == "body"


def test_split_records():
    assert fb.split_records({"inference_id": "x"}) == (False, [{"inference_id": "x"}])
    assert fb.split_records({"records": [{}, {}]}) == (True, [{}, {}])


@pytest.mark.parametrize(
    ("document", "status", "field"),
    [
        ([{"inference_id": "x"}], 400, "body"),
        ("text", 400, "body"),
        (None, 400, "body"),
        ({"records": "x"}, 400, "records"),
        ({"records": []}, 400, "records"),
        ({"records": [{}], "extra": 1}, 400, "body"),
        ({"records": [{}] * 3}, 413, "records"),
    ],
)
def test_split_records_rejects(document, status, field):
    with pytest.raises(fb.RequestRejected) as caught:
        fb.split_records(document, max_batch=2)
    assert (caught.value.status, caught.value.errors[0]["field"]) == (status, field)


# --- one record ---------------------------------------------------------------------------------


def test_minimal_records_validate():
    assert fb.validate_record(valid(), now=NOW).reward == 1.0
    label_only = fb.validate_record({"inference_id": "i", "feedback_type": "label", "label": "cat"}, now=NOW)
    assert label_only.label == "cat" and label_only.reward is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"feedback_type": "click", "reward": 1}, "inference_id"),
        (valid(inference_id=""), "inference_id"),
        (valid(inference_id="x" * 65), "inference_id"),
        (valid(inference_id=" leading-space"), "inference_id"),
        (valid(inference_id="tab\tinside"), "inference_id"),
        (valid(inference_id=7), "inference_id"),
        (valid(feedback_type="Click"), "feedback_type"),
        (valid(feedback_type=""), "feedback_type"),
        (valid(feedback_type="a" * 65), "feedback_type"),
        (valid(feedback_id="has space"), "feedback_id"),
        (valid(feedback_id="x" * 129), "feedback_id"),
        (valid(feedback_id="a#b"), "feedback_id"),
        (valid(reward=1.5), "reward"),
        (valid(reward=-0.1), "reward"),
        (valid(reward=True), "reward"),
        (valid(reward="1"), "reward"),
        (valid(reward=float("nan")), "reward"),
        (valid(label=True), "label"),
        (valid(label={"a": 1}), "label"),
        (valid(label="x" * 1025), "label"),
        (valid(label=[]), "label"),
        (valid(label=list(range(101))), "label"),
        (valid(label=[[1]]), "label"),
        (valid(label=["y" * 65]), "label"),
        (valid(label=[True]), "label"),
        (valid(label=1e-200), "label"),
        (valid(label=10**40), "label"),
        (valid(label=float("inf")), "label"),
        (valid(event_time="yesterday"), "event_time"),
        (valid(event_time="2026-11-27T12:00:00"), "event_time"),  # no time zone
        (valid(event_time="2026-11-27"), "event_time"),
        (valid(event_time=1732700000), "event_time"),
        (valid(event_time="0001-01-01T00:00:00+01:00"), "event_time"),
        (valid(event_time="9999-12-31T23:59:59-01:00"), "event_time"),
        (valid(subject_id=""), "subject_id"),
        (valid(subject_id=5), "subject_id"),
        (valid(metadata=[]), "metadata"),
        (valid(metadata={"k": {"nested": 1}}), "metadata"),
        (valid(metadata={"k": [1]}), "metadata"),
        (valid(metadata={"k": None}), "metadata"),
        (valid(metadata={"k": "v" * 257}), "metadata"),
        (valid(metadata={"": "v"}), "metadata"),
        (valid(metadata={"k" * 65: "v"}), "metadata"),
        (valid(metadata={f"k{i}": i for i in range(21)}), "metadata"),
        (valid(source_ip="1.2.3.4"), "source_ip"),
        ({"inference_id": "i", "feedback_type": "click"}, "record"),
        ({"inference_id": "i", "feedback_type": "click", "label": None, "reward": None}, "record"),
        ([], "record"),
        ("text", "record"),
    ],
)
def test_invalid_fields_are_named(raw, field):
    assert field in errors_of(raw)


def test_errors_never_echo_values():
    secret = "secret-subject-" + "z" * 600
    errors = errors_of(valid(subject_id=secret, reward="not-a-number", label={"pii": "alice@example.com"}))
    assert secret not in json.dumps(errors) and "alice" not in json.dumps(errors)


def test_unknown_field_names_are_clipped():
    errors = errors_of(valid(**{"k" * 5000: 1}))
    assert all(len(field) <= fb.MAX_ERROR_FIELD_CHARS for field in errors)


def test_all_problems_are_reported_at_once():
    errors = errors_of({"inference_id": "", "feedback_type": "BAD", "reward": 2, "extra": 1})
    assert set(errors) == {"inference_id", "feedback_type", "reward", "extra"}


def test_event_time_window_uses_the_given_clock():
    ok = fb.validate_record(valid(event_time="2026-11-27T13:00:00+01:00"), now=NOW)
    assert ok.event_time == "2026-11-27T12:00:00.000000Z"
    assert fb.validate_record(valid(event_time="2026-11-27T12:34:00Z"), now=NOW)  # within the skew
    assert "event_time" in errors_of(valid(event_time="2026-11-27T12:36:00Z"))
    assert "event_time" in errors_of(valid(event_time="2026-10-27T12:00:00Z"))  # 31 days old
    assert fb.validate_record(valid(event_time="2026-10-27T12:00:00Z"), now=NOW, max_age=timedelta(days=40))
    # The same record is valid or not depending on "now" only: no time is read at import.
    later = NOW + timedelta(days=60)
    assert "event_time" in errors_of(valid(event_time="2026-11-27T12:00:00Z"), now=later)


def test_accepted_shapes():
    record = fb.validate_record(
        valid(
            feedback_id="order-42:click.v1_A-z",
            label=[1, 2.5, "b"],
            event_time="2026-11-27T12:00:00.123456Z",
            subject_id="user-9",
            metadata={"page": "home", "position": 3, "score": 0.5, "mobile": True},
        ),
        now=NOW,
    )
    assert record.metadata["mobile"] is True
    assert fb.validate_record(valid(reward=0), now=NOW).reward == 0.0
    assert fb.validate_record(valid(inference_id="ünïcode id ✓"), now=NOW)


# --- normalisation ------------------------------------------------------------------------------


def test_feedback_id_is_derived_deterministically():
    first = fb.build_feedback(fb.validate_record(valid(), now=NOW), now=NOW)
    again = fb.build_feedback(fb.validate_record(valid(reward=0), now=NOW), now=NOW + timedelta(hours=1))
    other_type = fb.build_feedback(fb.validate_record(valid(feedback_type="purchase"), now=NOW), now=NOW)
    assert first.feedback_id == again.feedback_id == fb.derive_feedback_id("inf-1", "click")
    assert len(first.feedback_id) == 64 and first.feedback_id != other_type.feedback_id
    # Length-prefixed parts: shifting characters between the fields changes the id.
    assert fb.derive_feedback_id("ab", "c") != fb.derive_feedback_id("a", "bc")
    explicit = fb.build_feedback(fb.validate_record(valid(feedback_id="order-1"), now=NOW), now=NOW)
    assert explicit.feedback_id == "order-1"


def test_subject_is_stored_only_as_keyed_hash():
    record = fb.validate_record(valid(subject_id="alice@example.com"), now=NOW)
    built = fb.build_feedback(record, now=NOW, subject_hash_key=SUBJECT_KEY)
    assert built.subject_hash == fb.hash_subject("alice@example.com", SUBJECT_KEY)
    assert len(built.subject_hash) == 32 and "alice" not in json.dumps(built.to_dict())
    assert fb.hash_subject("alice@example.com", b"other-key") != built.subject_hash
    with pytest.raises(fb.ConfigurationError):
        fb.build_feedback(record, now=NOW, subject_hash_key=None)


def test_subject_hash_matches_the_router_form():
    routing = pytest.importorskip("mlops_runtime.domain.routing")
    if not hasattr(routing, "hash_subject"):
        pytest.skip("router has no hash_subject")
    assert fb.hash_subject("user-9", SUBJECT_KEY) == routing.hash_subject("user-9", SUBJECT_KEY)


def test_feedback_round_trips_through_a_dict():
    record = fb.validate_record(valid(label=["a", 1], metadata={"k": 1.5}, subject_id="s"), now=NOW)
    built = fb.build_feedback(record, now=NOW, subject_hash_key=SUBJECT_KEY, retention=timedelta(days=90))
    assert built.expires_at == int(NOW.timestamp()) + 90 * 86400
    assert fb.Feedback.from_dict(json.loads(json.dumps(built.to_dict()))) == built
    with pytest.raises(ValueError):
        fb.Feedback.from_dict({**built.to_dict(), "reward": 3})


# --- ground truth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "data", "encoding"),
    [
        (1, "1", "CSV"),
        (0, "0", "CSV"),
        (1.0, "1", "CSV"),
        (0.25, "0.25", "CSV"),
        (-3, "-3", "CSV"),
        ("cat", "cat", "CSV"),
        ("", "", "CSV"),
        ([1, 0, 1], "1,0,1", "CSV"),
        (["a", 2.5], "a,2.5", "CSV"),
        ("New York, NY", '"New York, NY"', "JSON"),
        ('say "hi"', '"say \\"hi\\""', "JSON"),
        (["a,b", "c"], '["a,b", "c"]', "JSON"),
        ("two\nlines", '"two\\nlines"', "JSON"),
    ],
)
def test_render_label(label, data, encoding):
    assert fb.render_label(label) == (data, encoding)


def test_ground_truth_line_is_exactly_sagemakers_format():
    line = fb.ground_truth_line("inf-1", 1)
    assert line == (
        b'{"groundTruthData": {"data": "1", "encoding": "CSV"}, '
        b'"eventMetadata": {"eventId": "inf-1"}, "eventVersion": "0"}\n'
    )
    assert line.count(b"\n") == 1
    multi = fb.ground_truth_line("ïd", "a,b\nc")
    assert multi.count(b"\n") == 1 and json.loads(multi)["groundTruthData"]["encoding"] == "JSON"
    assert json.loads(json.loads(multi)["groundTruthData"]["data"]) == "a,b\nc"


# --- predictions and credits --------------------------------------------------------------------


def test_prediction_from_router_items():
    full = fb.Prediction.from_item(
        {"inference_id": "i", "endpoint": "e", "variant": "v", "experiment": "x", "arm": "x/e/v"}
    )
    assert (full.experiment, full.arm) == ("x", "x/e/v")
    legacy = fb.Prediction.from_item({"inference_id": "i", "endpoint": "e", "variant": "v"})
    assert (legacy.experiment, legacy.arm) == ("e", "e/v")
    assert fb.Prediction.from_item({"inference_id": "i", "endpoint": "e"}) is None


def test_aggregate_credits_sums_per_round_arm_and_served_hour():
    def write(reward, arm, credit=True, round_id=1, at=None):
        feedback = fb.build_feedback(
            fb.validate_record(valid(reward=reward, feedback_id=f"f{reward}{arm}"), now=NOW), now=NOW
        )
        served = served_at if at is None else at
        prediction = fb.Prediction("inf-1", "e", arm, "e", f"e/{arm}", round=round_id, served_at=served)
        return fb.FeedbackWrite(feedback, prediction, credit)

    served_at, next_hour = 1_764_931_500.0, 1_764_931_500.0 + 3600  # 2025-12-05T10:45Z, then 11:45Z
    totals = fb.aggregate_credits(
        [write(1, "a"), write(0.5, "a"), write(0.25, "b"), write(1, "c", credit=False),
         write(1, "a", round_id=2), write(1, "a", at=next_hour)]
    )
    assert totals == {("e", "1#e/a#2025-12-05T10"): (1.5, 1.25, 2), ("e", "1#e/b#2025-12-05T10"): (0.25, 0.0625, 1),
                      ("e", "2#e/a#2025-12-05T10"): (1.0, 1.0, 1), ("e", "1#e/a#2025-12-05T11"): (1.0, 1.0, 1)}


def test_dead_letters_round_trip_and_reject_foreign_messages():
    feedback = fb.build_feedback(fb.validate_record(valid(label=1), now=NOW), now=NOW)
    message = fb.dead_letter_message("store", "boom", feedback, now=NOW, write_ground_truth=True)
    letter = fb.parse_dead_letter(json.dumps(message))
    assert (letter.stage, letter.feedback, letter.write_ground_truth) == ("store", feedback, True)
    line = fb.ground_truth_line("inf-1", 1)
    gt = fb.parse_dead_letter(
        fb.dead_letter_message("ground_truth", "x", feedback, now=NOW, ground_truth=line)
    )
    assert gt.ground_truth == line.decode()
    for body in (
        "nope",
        "{}",
        json.dumps({**message, "version": 9}),
        json.dumps({**message, "stage": "x"}),
        json.dumps({**message, "feedback": {"feedback_id": "a"}}),
    ):
        with pytest.raises(fb.InvalidDeadLetter):
            fb.parse_dead_letter(body)


def test_extreme_event_times_without_a_clock_are_refused_not_crashing():
    with pytest.raises(fb.ValidationError):
        fb.FeedbackRecord.model_validate(valid(event_time="0001-01-01T00:00:00+01:00"))


def test_now_must_be_passed_not_read():
    # A naive datetime is a programming error surfaced by the comparison, not silently "now".
    with pytest.raises(TypeError):
        fb.validate_record(valid(event_time="2026-11-27T12:00:00Z"), now=datetime(2026, 11, 27))
    assert fb.format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"


def test_retry_budget():
    now = [100.0]
    budget = fb.RetryBudget(lambda: now[0])
    assert budget.allows(1e9)  # unlimited until told otherwise
    budget.until = 110.0
    assert budget.allows(9.9) and not budget.allows(10.0)
    now[0] = 111.0
    assert not budget.allows()
