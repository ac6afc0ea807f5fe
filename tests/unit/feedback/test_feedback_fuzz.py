"""Fuzzing the feedback API with malformed bodies: always a 4xx, never a 5xx, and nothing stored.

The big run (5,000 bodies: 250 Hypothesis examples of 20 bodies each) goes through the Powertools
resolver in-process with API Gateway proxy events and in-memory fakes that count every call; a
smaller run (100 bodies) goes through the whole Lambda handler and the real adapters on moto, and
checks the tables, the bucket and the queue stay empty.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import timedelta
from typing import Any

import pytest
from lambda_context import LambdaContext
from feedback_fixtures import NOW, api_event, create_account, settings
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from mlops_runtime.adapters.feedback_store import InMemoryFeedbackStore
from mlops_runtime.adapters.ground_truth import InMemoryDeadLetters, InMemoryGroundTruth
from mlops_runtime.handlers import feedback_api

MAX_BATCH = 20  # small, so that "too many records" bodies stay cheap to build
FIELDS = (
    "inference_id",
    "feedback_type",
    "feedback_id",
    "label",
    "reward",
    "event_time",
    "subject_id",
    "metadata",
)
ID_CHARS = [chr(c) for c in range(0x21, 0x7F)] + list("éßø漢字✓€")
TYPE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
FEEDBACK_ID_CHARS = "ABCxyz0123456789._:-"
PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]

# Hypothesis chooses the kind of body and the corruptions; a seeded Random (drawn by Hypothesis, so
# every example is reproducible) fills in the content. Building content with Random is about a
# hundred times cheaper than drawing it value by value, which keeps 5,000 examples within seconds.


def _text(rnd: random.Random, chars: Any, low: int, high: int) -> str:
    return "".join(rnd.choice(chars) for _ in range(rnd.randint(low, high)))


def _number(rnd: random.Random) -> int | float:
    return rnd.choice([rnd.randint(-(10**12), 10**12), round(rnd.uniform(-1e6, 1e6), 3), 0, 1])


def _json_value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.randrange(8 if depth < 3 else 5)
    if roll == 0:
        return None
    if roll == 1:
        return rnd.random() < 0.5
    if roll == 2:
        return _number(rnd)
    if roll in (3, 4):
        return _text(rnd, PRINTABLE, 0, 12)
    if roll in (5, 6):
        return [_json_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {_text(rnd, PRINTABLE, 0, 6): _json_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}


def _value_not(rnd: random.Random, *unwanted: type, allow_none: bool = False) -> Any:
    while True:
        value = _json_value(rnd)
        if value is None and not allow_none:
            continue
        if (
            value is not None
            and isinstance(value, unwanted)
            and not (isinstance(value, bool) and bool not in unwanted)
        ):
            continue
        return value


def valid_record(rnd: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {
        "inference_id": _text(rnd, ID_CHARS, 1, 64),
        "feedback_type": _text(rnd, TYPE_CHARS, 1, 20),
    }
    choice = rnd.randrange(3)
    if choice in (0, 2):
        record["label"] = rnd.choice(
            [_number(rnd), _text(rnd, PRINTABLE, 0, 40), [_number(rnd), _text(rnd, "abc", 1, 5)]]
        )
    if choice in (1, 2):
        record["reward"] = rnd.choice([0, 1, rnd.random()])
    if rnd.random() < 0.3:
        record["feedback_id"] = _text(rnd, FEEDBACK_ID_CHARS, 1, 128)
    if rnd.random() < 0.3:
        record["event_time"] = (NOW - timedelta(seconds=rnd.randint(0, 29 * 86400))).isoformat()
    if rnd.random() < 0.3:
        record["subject_id"] = _text(rnd, PRINTABLE, 1, 40)
    if rnd.random() < 0.3:
        record["metadata"] = {
            _text(rnd, "abcdefgh_", 1, 10): rnd.choice([_number(rnd), "v", True])
            for _ in range(rnd.randint(0, 5))
        }
    return record


_DEEP: dict[str, str] = {}


def nested(depth: int, leaf: str = "1") -> str:
    """A placeholder that :func:`to_json` replaces by ``depth`` nested lists around ``leaf`` (JSON text):
    deeper than ``json.dumps`` itself could encode."""
    token = f"@@deep-{depth}-{leaf}@@"
    _DEEP[token] = "[" * depth + leaf + "]" * depth
    return token


def to_json(document: Any) -> str:
    text = json.dumps(document)  # a float out of range becomes Infinity: refused as invalid JSON
    if "@@deep-" in text:
        for token, replacement in list(_DEEP.items()):
            text = text.replace(json.dumps(token), replacement)
    return text


def _set(**fields: Any):
    return lambda record: record.update(fields)


# Each corruption (record, rnd) makes a record invalid.
CORRUPTIONS: dict[str, Any] = {
    "missing_inference_id": lambda r, rnd: r.pop("inference_id"),
    "missing_feedback_type": lambda r, rnd: r.pop("feedback_type"),
    "no_label_no_reward": lambda r, rnd: (r.pop("label", None), r.pop("reward", None)),
    "inference_id_type": lambda r, rnd: r.update(inference_id=_value_not(rnd, str, allow_none=True)),
    "feedback_type_type": lambda r, rnd: r.update(feedback_type=_value_not(rnd, str, allow_none=True)),
    "feedback_id_type": lambda r, rnd: r.update(feedback_id=_value_not(rnd, str)),
    "reward_type": lambda r, rnd: r.update(reward=_value_not(rnd, int, float)),
    "label_type": lambda r, rnd: r.update(
        label=rnd.choice([True, False, {"a": 1}, [[1]], [True], [{"x": 1}], [None], {}])
    ),
    "event_time_type": lambda r, rnd: r.update(event_time=_value_not(rnd, str)),
    "subject_type": lambda r, rnd: r.update(subject_id=_value_not(rnd, str)),
    "metadata_type": lambda r, rnd: r.update(metadata=_value_not(rnd, dict)),
    "huge_inference_id": lambda r, rnd: r.update(inference_id="x" * rnd.randint(65, 50_000)),
    "huge_feedback_type": lambda r, rnd: r.update(feedback_type="x" * rnd.randint(65, 50_000)),
    "huge_feedback_id": lambda r, rnd: r.update(feedback_id="x" * rnd.randint(129, 50_000)),
    "huge_label": lambda r, rnd: r.update(label="é" * rnd.randint(1025, 200_000)),
    "huge_label_item": lambda r, rnd: r.update(label=[1, "x" * rnd.randint(65, 5_000)]),
    "long_label_list": lambda r, rnd: r.update(label=[0] * rnd.randint(101, 2_000)),
    "huge_subject": lambda r, rnd: r.update(subject_id="x" * rnd.randint(513, 50_000)),
    "huge_event_time": lambda r, rnd: r.update(
        event_time="2026-11-27T12:00:00" + "0" * rnd.randint(60, 5_000) + "Z"
    ),
    "huge_metadata_value": lambda r, rnd: r.update(metadata={"k": "x" * rnd.randint(257, 50_000)}),
    "huge_metadata_key": lambda r, rnd: r.update(metadata={"k" * rnd.randint(65, 5_000): 1}),
    "too_many_metadata_keys": lambda r, rnd: r.update(
        metadata={f"k{i}": i for i in range(rnd.randint(21, 500))}
    ),
    "deep_label": lambda r, rnd: r.update(label=nested(rnd.choice([2, 3, 50, 999, 1_500, 20_000]))),
    "deep_metadata": lambda r, rnd: r.update(metadata={"k": nested(rnd.choice([1, 2, 900, 1_500, 20_000]))}),
    "deep_unknown": lambda r, rnd: r.update(extra=nested(rnd.choice([1, 10, 1_500, 20_000]), "{}")),
    "reward_high": lambda r, rnd: r.update(
        reward=rnd.choice([1.0000001, 2, 1e300, 1e999, rnd.uniform(1.01, 1e9)])
    ),
    "reward_low": lambda r, rnd: r.update(
        reward=rnd.choice([-1e-9, -1, -1e300, -1e999, -rnd.random() - 1e-6])
    ),
    "reward_bool": lambda r, rnd: r.update(reward=rnd.random() < 0.5),
    "label_out_of_range": lambda r, rnd: r.update(
        label=rnd.choice([1e-200, -1e-131, 1e126, -1e300, 10**38, -(10**60)])
    ),
    "future_time": lambda r, rnd: r.update(
        event_time=(NOW + timedelta(seconds=rnd.randint(301, 100 * 365 * 86400))).isoformat()
    ),
    "old_time": lambda r, rnd: r.update(
        event_time=(NOW - timedelta(seconds=rnd.randint(30 * 86400 + 1, 200 * 365 * 86400))).isoformat()
    ),
    "naive_time": lambda r, rnd: r.update(
        event_time=(NOW - timedelta(seconds=rnd.randint(0, 86400))).replace(tzinfo=None).isoformat()
    ),
    "garbage_time": lambda r, rnd: r.update(
        event_time=rnd.choice(
            [
                "",
                "yesterday",
                "2026-13-01T00:00:00Z",
                "now",
                "2026-11-27",
                "12:00Z",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                _text(rnd, PRINTABLE, 1, 30),
            ]
        )
    ),
    "unknown_field": lambda r, rnd: r.update(
        {
            rnd.choice(
                ["source_ip", "user_agent", "", "Reward", "labels", _text(rnd, PRINTABLE, 1, 20) + "!"]
            ): _json_value(rnd)
        }
    ),
    "leading_space_id": lambda r, rnd: r.update(inference_id=rnd.choice([" ", "\u3000", "\xa0"]) + "id"),
    "control_char_id": lambda r, rnd: r.update(
        inference_id="id" + rnd.choice(["\x00", "\t", "\n", "\x7f", "\u2028"])
    ),
    "bad_feedback_type": lambda r, rnd: r.update(
        feedback_type=rnd.choice(["Click", "click!", "a b", "ü", "x" * 3 + "/"])
    ),
    "bad_feedback_id": lambda r, rnd: r.update(
        feedback_id=rnd.choice(["a b", "a#b", "ü", "a/b", "a\n", "x?"])
    ),
    "lone_surrogate": lambda r, rnd: r.update(
        {rnd.choice(["label", "subject_id", "feedback_type", "event_time", "inference_id"]): "x\ud800y"}
    ),
    "empty_strings": lambda r, rnd: r.update(
        {rnd.choice(["inference_id", "feedback_type", "feedback_id", "subject_id"]): ""}
    ),
    "label_empty_list": lambda r, rnd: r.update(label=[]),
}
KINDS = (
    "record",
    "record",
    "record",
    "batch",
    "batch",
    "too_many",
    "envelope",
    "not_object",
    "junk_text",
    "junk_bytes",
    "bad_utf8",
    "bad_base64",
    "oversize",
    "deep_body",
    "empty",
)


def invalid_record(rnd: random.Random, corruptions: list[str]) -> Any:
    if rnd.random() < 0.05:
        return _value_not(rnd, dict, allow_none=True)  # not even an object
    record = valid_record(rnd)
    for name in corruptions:
        CORRUPTIONS[name](record, rnd)
    return record


def build_body(kind: str, corruptions: list[str], rnd: random.Random) -> tuple[str | None, bool]:
    """(body, base64) of a request that must be refused as a whole or record by record."""
    if kind == "record":
        return to_json(invalid_record(rnd, corruptions)), False
    if kind == "batch":
        records = [
            invalid_record(rnd, corruptions if i == 0 else rnd.sample(sorted(CORRUPTIONS), 1))
            for i in range(rnd.randint(1, 5))
        ]
        return to_json({"records": records}), False
    if kind == "too_many":
        good = valid_record(rnd)
        count = MAX_BATCH + rnd.randint(1, 3 * MAX_BATCH)
        return to_json({"records": [dict(good, feedback_id=f"f{i}") for i in range(count)]}), False
    if kind == "envelope":
        variant = rnd.randrange(3)
        if variant == 0:
            return to_json({"records": _value_not(rnd, list, allow_none=True)}), False
        if variant == 1:
            return to_json({"records": []}), False
        return to_json(
            {"records": [valid_record(rnd)], rnd.choice(["meta", "", "Records"]): _json_value(rnd)}
        ), False
    if kind == "not_object":
        return to_json(_value_not(rnd, dict, allow_none=True)), False
    if kind == "junk_text":
        text = _text(rnd, PRINTABLE + ["\x00", "é", "\ud800", "{", "}", '"'], 1, 200)
        return ("{" + text if text.startswith("{") and text.endswith("}") else text), False
    if kind == "junk_bytes":
        return base64.b64encode(rnd.randbytes(rnd.randint(1, 300))).decode(), True
    if kind == "bad_utf8":
        good = to_json(valid_record(rnd)).encode()
        bad = rnd.choice(
            [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x28\x8c\xbc", b"\xed\xa0\x80", b"\xc0\xaf"]
        )
        position = rnd.randint(0, len(good))
        return base64.b64encode(good[:position] + bad + good[position:]).decode(), True
    if kind == "bad_base64":
        return rnd.choice(["%%%", "abc", "{}", "a b c d", "====", "éé"]), True
    if kind == "oversize":
        return to_json(valid_record(rnd)) + " " * (1024 * 1024 + rnd.randint(1, 1000)), False
    if kind == "deep_body":
        depth = rnd.choice([1_000, 5_000, 20_000])
        opening, closing = rnd.choice([("[", "]"), ('{"a":', "}")])
        return opening * depth + "1" + closing * depth, False
    return rnd.choice([None, ""]), False


malformed_bodies = st.tuples(
    st.sampled_from(KINDS),
    st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=3, unique=True),
    st.integers(0, 2**32 - 1).map(random.Random),  # seeds the content; printed in a failing example
)
# Shrinking still narrows the kind and the corruptions of a failing example; no "explain" phase.
FUZZ_PHASES = (Phase.explicit, Phase.generate, Phase.shrink)


# --- the in-process run -------------------------------------------------------------------------


def fake_runtime():
    store, sink, queue = InMemoryFeedbackStore(), InMemoryGroundTruth(), InMemoryDeadLetters()
    runtime = feedback_api.Runtime(settings(max_batch=MAX_BATCH), store, sink, queue, clock=lambda: NOW)
    return runtime, store, sink, queue


def check(response: dict[str, Any]) -> None:
    status = response["statusCode"]
    assert 400 <= status < 500, (status, response["body"][:500])
    payload = json.loads(response["body"])
    assert payload.get("errors") or payload.get("results"), payload


BODIES_PER_EXAMPLE = 20  # Hypothesis costs a few ms per example here; each example checks 20 bodies
EXAMPLES = 250


def test_fuzz_malformed_bodies_are_4xx_and_store_nothing():
    runtime, store, sink, queue = fake_runtime()
    feedback_api.configure(runtime)
    kinds: dict[str, int] = {}
    used: dict[str, int] = {}
    context = LambdaContext()
    feedback_api.logger.setLevel("WARNING")  # thousands of info lines would only slow the run down
    try:

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=FUZZ_PHASES,
            suppress_health_check=list(HealthCheck),
        )
        @given(malformed_bodies)
        def run(case: tuple[str, list[str], random.Random]) -> None:
            kind, corruptions, rnd = case
            for _ in range(BODIES_PER_EXAMPLE):  # same kind and corruptions, different content
                body, is_base64 = build_body(kind, corruptions, rnd)
                kinds[kind] = kinds.get(kind, 0) + 1
                for name in corruptions if kind in ("record", "batch") else ():
                    used[name] = used.get(name, 0) + 1
                # The resolver itself (the Lambda handler adds only Powertools' logging and metrics flush).
                check(feedback_api.app.resolve(api_event(body, base64_encoded=is_base64), context))
                feedback_api.metrics.clear_metrics()
                # Nothing was looked up, stored, written or queued.
                assert (store.lookups, store.writes, sink.calls, len(queue.messages)) == (0, 0, 0, 0)

        run()
    finally:
        feedback_api.logger.setLevel("INFO")
        feedback_api.configure(None)
    assert sum(kinds.values()) >= 5000
    assert set(kinds) == set(KINDS), kinds  # every kind of body was generated
    assert len(used) >= 0.8 * len(CORRUPTIONS), sorted(set(CORRUPTIONS) - set(used))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_corruption_alone_is_refused(corruption):
    """Deterministic coverage of every corruption, as a single record and alone in a batch."""
    runtime, store, sink, queue = fake_runtime()
    feedback_api.configure(runtime)
    try:
        for seed in range(5):
            for kind in ("record", "batch"):
                body, is_base64 = build_body(kind, [corruption], random.Random(seed))
                if kind == "batch":  # exactly one record, with only this corruption
                    record = invalid_record(random.Random(seed), [corruption])
                    body = to_json({"records": [record]})
                check(feedback_api.app.resolve(api_event(body, base64_encoded=is_base64), LambdaContext()))
                feedback_api.metrics.clear_metrics()
        assert (store.lookups, store.writes, sink.calls, len(queue.messages)) == (0, 0, 0, 0)
    finally:
        feedback_api.configure(None)


def test_fuzz_against_moto_leaves_every_resource_untouched():
    from moto import mock_aws

    with mock_aws():
        account = create_account()
        feedback_api.configure(account.runtime(max_batch=MAX_BATCH))
        context = LambdaContext()
        feedback_api.logger.setLevel("WARNING")
        try:

            @hypothesis_settings(
                max_examples=100,
                deadline=None,
                database=None,
                derandomize=True,
                phases=FUZZ_PHASES,
                suppress_health_check=list(HealthCheck),
            )
            @given(malformed_bodies)
            def run(case: tuple[str, list[str], random.Random]) -> None:
                body, is_base64 = build_body(*case)
                check(feedback_api.handler(api_event(body, base64_encoded=is_base64), context))

            run()
        finally:
            feedback_api.logger.setLevel("INFO")
            feedback_api.configure(None)
        for table in ("predictions", "feedback", "statistics"):
            assert account.dynamodb.scan(TableName=table)["Count"] == 0
        assert account.objects() == {}
        assert account.queued() == []
