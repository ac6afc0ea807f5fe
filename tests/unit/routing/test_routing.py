"""Deterministic A/B routing: stability, proportions, minimal movement, ids and prediction records."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from fractions import Fraction
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from mlops_runtime.domain.routing import (
    Allocation,
    InvalidAllocation,
    InvalidInferenceId,
    InvalidRoutingInput,
    PredictionRecord,
    assign,
    assign_random,
    build_prediction_record,
    hash_subject,
    new_inference_id,
    validate_inference_id,
)

LAMBDA_DIR = Path(__file__).resolve().parents[3] / "lambda"
TWO = {"control": 1, "treatment": 1}
THREE = {"v1": 0.5, "v2": 0.3, "v3": 0.2}
FIVE = dict.fromkeys("abcde", 1)

# Computed once with the current algorithm: any change of hash, encoding or score must fail here,
# because it would silently move every subject of every running experiment.
GOLDEN = [
    ("user-1", "exp-2024-01", TWO, "control"),
    ("user-2", "exp-2024-01", TWO, "control"),
    ("user-3", "exp-2024-01", TWO, "control"),
    ("user-4", "exp-2024-01", TWO, "treatment"),
    ("alice@example.com", "churn-ab", THREE, "v2"),
    ("bob", "churn-ab", THREE, "v3"),
    ("carol", "churn-ab", THREE, "v1"),
    ("dave", "churn-ab", THREE, "v2"),
    ("session-ü-✓", "exp", {"a": 0.1, "b": 0.9}, "b"),
    ("42", "exp", {"a": 0.1, "b": 0.9}, "b"),
    ("7", "other", FIVE, "e"),
    ("8", "other", FIVE, "b"),
]
FINGERPRINT_SUBJECTS = 3000
FINGERPRINT = "fdf3bebbd11725bdb48a5d01bd0074e1c296d421cdc43e4e1ea4e951b8e55b45"


def fingerprint() -> str:
    """SHA-256 of the assignments of 3,000 subjects under three allocations (one string)."""
    arms = []
    for weights, salt in ((TWO, "exp-a"), (THREE, "exp-b"), (FIVE, "exp-c")):
        allocation = Allocation(weights)
        arms.extend(assign(f"subject-{i}", allocation, salt) for i in range(FINGERPRINT_SUBJECTS))
    return hashlib.sha256(",".join(arms).encode()).hexdigest()


# --- Allocation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "at least one arm"),
        ({"a": float("nan")}, "finite"),
        ({"a": 1, "b": float("inf")}, "finite"),
        ({"a": 1, "b": -0.5}, ">= 0"),
        ({"a": 0, "b": 0.0}, "at least one weight must be positive"),
        ({"a": True}, "must be a number"),
        ({"a": "1"}, "must be a number"),
        ({"": 1}, "non-empty strings"),
        ({3: 1}, "non-empty strings"),
        ([("a", 1)], "must be a mapping"),
    ],
)
def test_allocation_rejects_bad_weights(weights, message):
    with pytest.raises(InvalidAllocation, match=message) as raised:
        Allocation(weights)
    assert isinstance(raised.value, ValueError)


def test_allocation_is_an_immutable_mapping_with_shares():
    allocation = Allocation({"a": 1, "b": 3, "c": 0})
    assert dict(allocation) == {"a": 1.0, "b": 3.0, "c": 0.0}
    assert allocation == {"a": 1, "b": 3, "c": 0}
    assert allocation.shares == {"a": 0.25, "b": 0.75, "c": 0.0}
    assert allocation.live_arms == ("a", "b")
    assert len(allocation) == 3 and list(allocation) == ["a", "b", "c"]
    assert hash(allocation) == hash(Allocation({"a": 1, "b": 3, "c": 0}))
    allocation.shares["a"] = 99  # a copy: the allocation is unchanged
    assert allocation.shares["a"] == 0.25
    with pytest.raises(TypeError):
        allocation["a"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        allocation.extra = 1  # type: ignore[attr-defined]
    assert Allocation(allocation) == allocation


# --- Stability -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("subject", "salt", "weights", "expected"), GOLDEN)
def test_golden_assignments(subject, salt, weights, expected):
    assert assign(subject, Allocation(weights), salt) == expected
    assert assign(subject, weights, salt) == expected  # a plain mapping works too


def test_fingerprint_of_many_assignments_is_unchanged():
    assert fingerprint() == FINGERPRINT


def test_assignments_are_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from mlops_runtime.domain.routing import assign, Allocation;"
        "a = Allocation({'v1': 0.5, 'v2': 0.3, 'v3': 0.2});"
        "print(','.join(assign(f'subject-{i}', a, 'cross-process') for i in range(500)))"
    )
    allocation = Allocation(THREE)
    expected = ",".join(assign(f"subject-{i}", allocation, "cross-process") for i in range(500))
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        output = subprocess.run(
            [sys.executable, "-c", code, str(LAMBDA_DIR)], env=env, capture_output=True, text=True, check=True
        )
        assert output.stdout.strip() == expected


def test_field_encoding_is_unambiguous():
    # Same concatenated text, different fields: must be hashed as different inputs.
    allocation = Allocation(FIVE)
    first = [assign(f"ab{i}", allocation, "x") for i in range(200)]
    second = [assign(f"b{i}", allocation, "xa") for i in range(200)]
    assert first != second


# --- Proportions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "subjects"),
    [(THREE, 100_000), ({"a": 1, "b": 1}, 40_000), ({"a": 0.05, "b": 0.15, "c": 0.3, "d": 0.5}, 40_000)],
)
def test_shares_of_many_subjects_match_the_weights(weights, subjects):
    allocation = Allocation(weights)
    counts = Counter(assign(f"user-{i}", allocation, "proportions") for i in range(subjects))
    shares = allocation.shares
    expected = [subjects * shares[arm] for arm in allocation]
    observed = [counts[arm] for arm in allocation]
    assert scipy_stats.chisquare(observed, expected).pvalue > 1e-4
    for arm, share in shares.items():  # and each arm within 4.5 binomial standard deviations
        assert abs(counts[arm] - subjects * share) < 4.5 * math.sqrt(subjects * share * (1 - share))


def test_experiments_with_different_salts_assign_independently():
    allocation = Allocation(TWO)
    pairs = Counter(
        (assign(f"user-{i}", allocation, "experiment-1"), assign(f"user-{i}", allocation, "experiment-2"))
        for i in range(20_000)
    )
    table = [[pairs[("control", "control")], pairs[("control", "treatment")]],
             [pairs[("treatment", "control")], pairs[("treatment", "treatment")]]]
    assert scipy_stats.chi2_contingency(table).pvalue > 1e-4


def test_zero_weight_arms_get_nobody():
    allocation = Allocation({"a": 0.0, "b": 2.0, "c": 0.0, "d": 1.0})
    arms = {assign(f"user-{i}", allocation, "zeros") for i in range(5_000)}
    assert arms == {"b", "d"}
    only = Allocation({"off": 0, "on": 1})
    assert {assign(f"user-{i}", only, "zeros") for i in range(100)} == {"on"}


def test_scaling_every_weight_moves_nobody():
    before, after = Allocation(THREE), Allocation({arm: 7.5 * w for arm, w in THREE.items()})
    assert all(assign(f"u{i}", before, "s") == assign(f"u{i}", after, "s") for i in range(2_000))


def test_bad_subject_or_salt_is_rejected():
    with pytest.raises(InvalidRoutingInput, match="subject_id"):
        assign("", Allocation(TWO), "salt")
    with pytest.raises(InvalidRoutingInput, match="subject_id"):
        assign(123, Allocation(TWO), "salt")  # type: ignore[arg-type]
    with pytest.raises(InvalidRoutingInput, match="salt"):
        assign("user", Allocation(TWO), "")


# --- Minimal reassignment ------------------------------------------------------------------------

weight_lists = st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=2, max_size=5)


@st.composite
def weight_changes(draw):
    """Two weight vectors over the same arms, each with a positive weight; often sharing values."""
    before = draw(weight_lists.filter(lambda w: sum(w) > 0))
    after = [
        draw(st.one_of(st.just(w), st.just(w * 0.5), st.floats(min_value=0, max_value=10, allow_nan=False)))
        for w in before
    ]
    if sum(after) <= 0:
        after[0] = 1.0
    arms = [f"arm{i}" for i in range(len(before))]
    return dict(zip(arms, before)), dict(zip(arms, after))


def ratio(before: dict, after: dict, arm: str) -> Fraction | float:
    """after / before, exact (a float quotient overflows for subnormal weights), inf from 0."""
    return math.inf if before[arm] == 0 else Fraction(after[arm]) / Fraction(before[arm])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight_changes(), st.integers(min_value=0, max_value=10**6))
@example(({"arm0": 0.0, "arm1": 5e-324}, {"arm0": 1.0, "arm1": 1.0}), 0)  # float ratio overflowed
def test_a_subject_moves_only_to_a_relatively_grown_arm(change, salt_number):
    before, after = change
    old, new = Allocation(before), Allocation(after)
    salt = f"exp-{salt_number}"
    old_shares, new_shares = old.shares, new.shares
    for i in range(250):
        source, target = assign(f"s{i}", old, salt), assign(f"s{i}", new, salt)
        if source == target:
            continue
        # The exact rule of rendezvous hashing: the target's weight ratio beats the source's...
        assert ratio(before, after, target) > ratio(before, after, source)
        # ...hence only to an arm whose share grew, or away from an arm whose share shrank,
        assert new_shares[target] > old_shares[target] or new_shares[source] < old_shares[source]
        # ...and never between two arms scaled by the same factor (e.g. both halved).
        assert ratio(before, after, target) != ratio(before, after, source)


def p_minhash_stay_probability(before: dict, after: dict) -> float:
    """Probability that a subject keeps its arm (Moulton & Jiang 2018, P-MinHash collision)."""
    total = 0.0
    for arm in before:
        if before[arm] > 0 and after[arm] > 0:
            total += 1 / sum(max(before[j] / before[arm], after[j] / after[arm]) for j in before)
    return total


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}),
        ({"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}),
        ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 0.6, "b": 0.2, "c": 0.2}),
        ({"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.4, "b": 0.4, "c": 0.2}),
        ({"a": 0.5, "b": 0.5, "c": 0.0}, {"a": 0.4, "b": 0.4, "c": 0.2}),
    ],
)
def test_share_of_subjects_that_move_is_the_theoretical_one(before, after):
    subjects = 40_000
    old, new = Allocation(before), Allocation(after)
    stayed = sum(assign(f"u{i}", old, "moves") == assign(f"u{i}", new, "moves") for i in range(subjects))
    stay = p_minhash_stay_probability(before, after)
    assert abs(stayed / subjects - stay) < 4.5 * math.sqrt(stay * (1 - stay) / subjects) + 1e-9
    if len(before) == 2:  # two arms: exactly the unavoidable share moves
        assert math.isclose(1 - stay, abs(old.shares["a"] - new.shares["a"]), abs_tol=1e-12)
    if before.get("c") == 0:  # a new arm only takes subjects, in proportion: 1 - its share stays
        assert math.isclose(stay, 1 - new.shares["c"], abs_tol=1e-12)


# --- Random assignment ---------------------------------------------------------------------------


def test_assign_random_follows_the_weights_and_the_seed():
    allocation = Allocation({"a": 0.2, "b": 0.0, "c": 0.8})
    draws = 50_000
    counts = Counter()
    rng = random.Random(7)
    for _ in range(draws):
        counts[assign_random(allocation, rng)] += 1
    assert counts["b"] == 0
    assert abs(counts["a"] - 0.2 * draws) < 4.5 * math.sqrt(draws * 0.2 * 0.8)
    again = random.Random(7)
    replay = [assign_random(allocation, again) for _ in range(100)]
    rng = random.Random(7)
    assert replay == [assign_random(allocation, rng) for _ in range(100)]


def test_assign_random_never_picks_a_zero_weight_arm_at_the_edges():
    class Edge(random.Random):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def random(self):
            return self.value

    allocation = Allocation({"a": 1.0, "b": 0.0, "c": 2.0, "d": 0.0})
    assert assign_random(allocation, Edge(0.0)) == "a"
    assert assign_random(allocation, Edge(1 / 3)) == "c"
    assert assign_random(allocation, Edge(math.nextafter(1.0, 0.0))) == "c"


# --- Inference ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "x" * 64, "req 42/é", "ÄÖÜ-✓", "a b", "~!@#$%^&*()"])
def test_valid_inference_ids(value):
    assert validate_inference_id(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "1 to 64"),
        ("x" * 65, "1 to 64"),
        (" leading", "whitespace"),
        ("\tleading", "whitespace"),
        ("a\nb", "printable"),
        ("a\x00b", "printable"),
        ("a\x7fb", "printable"),
        ("a\u2028b", "printable"),
        (b"bytes", "string"),
        (None, "string"),
    ],
)
def test_invalid_inference_ids(value, message):
    with pytest.raises(InvalidInferenceId, match=message):
        validate_inference_id(value)


def test_new_inference_ids_are_valid_and_unique():
    ids = {new_inference_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(validate_inference_id(value) and len(value) == 32 for value in ids)


# --- Subject hashes and prediction records -------------------------------------------------------


def test_hash_subject_is_a_truncated_hmac_sha256():
    expected = hmac.new(b"pepper", b"user-1", hashlib.sha256).hexdigest()[:32]
    assert hash_subject("user-1", "pepper") == expected == "15da9a772389e8482ecfcc9f5fea6ddb"
    assert hash_subject("user-1", b"pepper") == expected
    assert hash_subject("user-1", "other") != expected
    assert "user-1" not in expected
    with pytest.raises(InvalidRoutingInput, match="pepper"):
        hash_subject("user-1", "")
    with pytest.raises(InvalidRoutingInput, match="subject_id"):
        hash_subject("", "pepper")


def test_prediction_record_is_a_dynamodb_ready_dict():
    item = build_prediction_record(
        "req-1", "churn-endpoint", "challenger", "arn:aws:sagemaker:eu-west-1:123:model-package/churn/3",
        "15da9a772389e8482ecfcc9f5fea6ddb", 1_700_000_000.987, 86_400,
    )
    assert item == {
        "inference_id": "req-1",
        "endpoint": "churn-endpoint",
        "variant": "challenger",
        "model_package_arn": "arn:aws:sagemaker:eu-west-1:123:model-package/churn/3",
        "subject_hash": "15da9a772389e8482ecfcc9f5fea6ddb",
        "created_at_ms": 1_700_000_000_987,
        "expires_at": 1_700_086_400,
    }
    assert all(isinstance(value, (str, int)) for value in item.values())  # boto3 refuses floats
    json.dumps(item)


def test_prediction_record_leaves_out_absent_optional_fields():
    item = build_prediction_record("req-2", "ep", "v1", None, None, 10.0, 60)
    assert set(item) == {"inference_id", "endpoint", "variant", "created_at_ms", "expires_at"}
    record = PredictionRecord("req-2", "ep", "v1", None, None, 10_000, 70)
    assert record.to_item() == item


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"inference_id": " x"}, InvalidInferenceId, "whitespace"),
        ({"endpoint": ""}, InvalidRoutingInput, "endpoint"),
        ({"variant": None}, InvalidRoutingInput, "variant"),
        ({"model_package_arn": ""}, InvalidRoutingInput, "model_package_arn"),
        ({"now_epoch": float("nan")}, InvalidRoutingInput, "now_epoch"),
        ({"now_epoch": -1.0}, InvalidRoutingInput, "now_epoch"),
        ({"ttl_seconds": 0}, InvalidRoutingInput, "ttl_seconds"),
        ({"ttl_seconds": 1.5}, InvalidRoutingInput, "ttl_seconds"),
    ],
)
def test_prediction_record_rejects_bad_fields(arguments, error, message):
    defaults = {
        "inference_id": "req", "endpoint": "ep", "variant": "v1", "model_package_arn": None,
        "subject_hash": None, "now_epoch": 1.0, "ttl_seconds": 60,
    }
    with pytest.raises(error, match=message):
        build_prediction_record(**{**defaults, **arguments})


# --- Purity --------------------------------------------------------------------------------------


def test_domain_modules_import_only_the_standard_library():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import mlops_runtime.domain.routing, mlops_runtime.domain.experiments;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'boto3', 'botocore', 'numpy', 'scipy', 'random', 'uuid', 'statistics', 'decimal'}))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, str(LAMBDA_DIR)], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"
