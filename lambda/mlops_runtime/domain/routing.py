"""Deterministic A/B routing of subjects to arms, inference ids and prediction records (pure, stdlib only).

SageMaker splits an endpoint's traffic between production variants at random per request. The
inference API instead routes each *subject* (user, session, entity id) to an *arm* by hashing, so a
subject sees the same model on every request, with no assignment table::

    allocation = Allocation({"champion": 0.9, "challenger": 0.1})
    arm = assign(subject_id, allocation, salt=experiment_id)

An arm is just a name; the caller maps it to an (endpoint, variant) pair, so one experiment can split
traffic between variants of one endpoint or between endpoints.

Algorithm: weighted rendezvous hashing (highest random weight). For each arm with a positive weight
``w``, ``u`` is a uniform number in (0, 1) taken from BLAKE2b of (salt, subject, arm), and the score is
``-w / ln(u)``; the subject goes to the highest score. Equivalently each arm draws an exponential
``E = -ln(u)`` and the smallest ``E / w`` wins, which gives:

- the probability of an arm is exactly its weight share (an exponential race), so the share of
  subjects converges to the weight share;
- changing weights moves a subject from arm A to arm B only if ``w'_B / w_B > w'_A / w_A``: only to
  an arm that grew, or away from an arm that shrank, and never between arms scaled by the same
  factor. For two arms exactly the minimum (the difference of shares) moves; for more arms the
  probability that a subject stays is the P-MinHash similarity
  ``sum_i 1 / sum_j max(w_j / w_i, w'_j / w'_i)``, the Pareto optimum for a stateless assignment
  (truly minimal moves for every change would need a table);
- the result depends only on bytes hashed with BLAKE2b and on IEEE-754 arithmetic, not on Python's
  randomised ``hash()``: the same on every process, cold start and Python version. (Only a tie of two
  scores within one ulp, where ``math.log`` of two C libraries could differ, would decide otherwise.)

``salt`` is the experiment id: two experiments with the same arms assign independently.

Arm names, subject ids and salts are hashed as UTF-8 (lone surrogates passed through), each field
prefixed by its byte length so that no two different triples hash the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: keeps the import of this module light
    import random

__all__ = [
    "Allocation",
    "InvalidAllocation",
    "InvalidInferenceId",
    "InvalidRoutingInput",
    "PredictionRecord",
    "assign",
    "assign_random",
    "build_prediction_record",
    "hash_subject",
    "new_inference_id",
    "validate_inference_id",
]

# Domain separation: a change of algorithm must change this tag (and the golden values of the tests).
_HASH_PERSON = b"mlops-route-v1"
_MANTISSA_SCALE = 2.0**-53
# Copying a primed hasher is about twice as fast as constructing one with ``person=`` per arm.
_BASE_HASHER = hashlib.blake2b(digest_size=8, person=_HASH_PERSON)
MAX_INFERENCE_ID_LENGTH = 64  # SageMaker Runtime InvokeEndpoint InferenceId: 1-64, \A\S[\p{Print}]*\z
SUBJECT_HASH_LENGTH = 32


class InvalidRoutingInput(ValueError):
    """A routing argument (subject id, salt, pepper, record field) is not usable."""


class InvalidAllocation(InvalidRoutingInput):
    """Weights that cannot define an allocation (empty, NaN, infinite, negative, all zero, bad name)."""


class InvalidInferenceId(InvalidRoutingInput):
    """Not a SageMaker inference id: 1-64 printable characters, the first not whitespace."""


def _field(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"%d:" % len(data) + data


@lru_cache(maxsize=64)
def _salt_field(salt: str) -> bytes:
    return _field(salt)  # one or two experiment ids per function: encode each once


class Allocation(Mapping[str, float]):
    """Immutable mapping arm name -> weight (finite, non-negative, at least one positive).

    Weights need not sum to 1: ``shares`` gives them normalised. Arms keep their insertion order,
    which only breaks exact ties. Everything :func:`assign` needs is computed once here.
    """

    __slots__ = ("_weights", "_shares", "_live", "_live_arms", "_cumulative", "_total")

    def __init__(self, weights: Mapping[str, float]) -> None:
        if isinstance(weights, Allocation):
            weights = weights._weights
        if not isinstance(weights, Mapping):
            raise InvalidAllocation(
                f"weights must be a mapping arm name -> weight, got {type(weights).__name__}"
            )
        if not weights:
            raise InvalidAllocation("an allocation needs at least one arm, got no weights")
        clean: dict[str, float] = {}
        for arm, weight in weights.items():
            if not isinstance(arm, str) or not arm:
                raise InvalidAllocation(f"arm names must be non-empty strings, got {arm!r}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise InvalidAllocation(f"weight of arm {arm!r} must be a number, got {weight!r}")
            weight = float(weight)
            if not math.isfinite(weight):
                raise InvalidAllocation(f"weight of arm {arm!r} must be finite, got {weight!r}")
            if weight < 0:
                raise InvalidAllocation(f"weight of arm {arm!r} must be >= 0, got {weight!r}")
            clean[arm] = weight
        total = math.fsum(clean.values())
        if total <= 0:
            raise InvalidAllocation(f"at least one weight must be positive, got {clean!r}")
        self._weights = clean
        self._total = total
        self._shares = {arm: weight / total for arm, weight in clean.items()}
        live = [(arm, weight) for arm, weight in clean.items() if weight > 0]
        self._live = tuple((arm, _field(arm), weight) for arm, weight in live)
        self._live_arms = tuple(arm for arm, _ in live)
        cumulative, running = [], 0.0
        for _, weight in live:
            running += weight
            cumulative.append(running)
        self._cumulative = tuple(cumulative)

    def __getitem__(self, arm: str) -> float:
        return self._weights[arm]

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __hash__(self) -> int:
        return hash(tuple(self._weights.items()))

    def __repr__(self) -> str:
        return f"Allocation({self._weights!r})"

    @property
    def shares(self) -> dict[str, float]:
        """Weights normalised to sum to 1 (a fresh dict)."""
        return dict(self._shares)

    @property
    def live_arms(self) -> tuple[str, ...]:
        """Arms with a positive weight, in order: the only ones that can be assigned."""
        return self._live_arms


def _as_allocation(allocation: Allocation | Mapping[str, float]) -> Allocation:
    return allocation if isinstance(allocation, Allocation) else Allocation(allocation)


def assign(subject_id: str, allocation: Allocation | Mapping[str, float], salt: str) -> str:
    """The arm of ``subject_id`` under ``allocation`` for the experiment ``salt``; deterministic.

    Zero-weight arms are never returned. See the module docstring for the guarantees.
    """
    if not isinstance(subject_id, str) or not subject_id:
        raise InvalidRoutingInput(f"subject_id must be a non-empty string, got {subject_id!r}")
    if not isinstance(salt, str) or not salt:
        raise InvalidRoutingInput(f"salt (the experiment id) must be a non-empty string, got {salt!r}")
    live = _as_allocation(allocation)._live
    if len(live) == 1:
        return live[0][0]
    subject_hasher = _BASE_HASHER.copy()
    subject_hasher.update(_salt_field(salt) + _field(subject_id))
    best_arm, best_score = "", -1.0
    from_bytes, log = int.from_bytes, math.log
    for arm, arm_field, weight in live:
        arm_hasher = subject_hasher.copy()
        arm_hasher.update(arm_field)
        digest = arm_hasher.digest()
        # 53 random bits, centred in their cell: u is never 0 or 1, so log(u) is finite and < 0.
        u = ((from_bytes(digest, "big") >> 11) + 0.5) * _MANTISSA_SCALE
        score = -weight / log(u)
        if score > best_score:
            best_arm, best_score = arm, score
    return best_arm


def assign_random(allocation: Allocation | Mapping[str, float], rng: random.Random) -> str:
    """A random arm drawn with probability proportional to its weight (for requests without a subject)."""
    allocation = _as_allocation(allocation)
    cumulative = allocation._cumulative
    index = bisect_right(cumulative, rng.random() * cumulative[-1])
    # rng.random() < 1, but the product can round up to the total: stay on the last live arm.
    return allocation._live_arms[min(index, len(cumulative) - 1)]


def new_inference_id() -> str:
    """A fresh random inference id: 32 lowercase hex characters (128 bits from ``os.urandom``)."""
    return os.urandom(16).hex()


def validate_inference_id(value: object) -> str:
    """``value`` if it is a valid SageMaker ``InferenceId``, else :class:`InvalidInferenceId`.

    SageMaker's rule is 1-64 characters matching ``\\A\\S[\\p{Print}]*\\z``: the first character is not
    whitespace and every character is printable (``str.isprintable``: no control, separator other
    than the ASCII space, or unassigned characters).
    """
    if not isinstance(value, str):
        raise InvalidInferenceId(f"inference id must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_INFERENCE_ID_LENGTH:
        raise InvalidInferenceId(
            f"inference id must have 1 to {MAX_INFERENCE_ID_LENGTH} characters, got {len(value)}"
        )
    if value[0].isspace():
        raise InvalidInferenceId(f"inference id must not start with whitespace: {value!r}")
    if not value.isprintable():
        raise InvalidInferenceId(f"inference id must contain only printable characters: {value!r}")
    return value


_SHA256_BLOCK = 64
_hmac_pads: dict[bytes, tuple] = {}  # pepper -> primed (inner, outer) SHA-256 states; a handful at most


def _primed_hmac(pepper: bytes) -> tuple:
    """HMAC-SHA256 (RFC 2104) with the key pads hashed once: about twice as fast per call."""
    pads = _hmac_pads.get(pepper)
    if pads is None:
        key = hashlib.sha256(pepper).digest() if len(pepper) > _SHA256_BLOCK else pepper
        key = key.ljust(_SHA256_BLOCK, b"\0")
        pads = (hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key)))
        if len(_hmac_pads) >= 16:  # a pepper per deployment is expected; never grow without bound
            _hmac_pads.clear()
        _hmac_pads[pepper] = pads
    return pads


def hash_subject(subject_id: str, pepper: str | bytes) -> str:
    """HMAC-SHA256 of ``subject_id`` keyed by ``pepper``, hex, first 32 characters (128 bits).

    Stored instead of the raw id: records of one subject can be joined, but the id cannot be
    recovered (or guessed from a list of ids) without the pepper, a secret kept outside the table.
    """
    if not isinstance(subject_id, str) or not subject_id:
        raise InvalidRoutingInput(f"subject_id must be a non-empty string, got {subject_id!r}")
    if isinstance(pepper, str):
        pepper = pepper.encode("utf-8")
    if not isinstance(pepper, bytes) or not pepper:
        raise InvalidRoutingInput("pepper must be a non-empty string or bytes")
    inner_pad, outer_pad = _primed_hmac(pepper)
    inner = inner_pad.copy()
    inner.update(subject_id.encode("utf-8", "surrogatepass"))
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.hexdigest()[:SUBJECT_HASH_LENGTH]


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One prediction served by the inference API, as stored for joining with rewards later.

    ``created_at_ms`` is Unix epoch milliseconds; ``expires_at`` Unix epoch seconds (DynamoDB TTL).
    """

    inference_id: str
    endpoint: str
    variant: str
    model_package_arn: str | None
    subject_hash: str | None
    created_at_ms: int
    expires_at: int

    def to_item(self) -> dict:
        """A DynamoDB-ready plain dict: only ``str`` and ``int`` values (no floats, which boto3's
        serializer refuses), partition key ``inference_id``; absent optional fields are left out
        rather than stored as NULL."""
        return _item(
            self.inference_id, self.endpoint, self.variant, self.model_package_arn, self.subject_hash,
            self.created_at_ms, self.expires_at,
        )


def _item(
    inference_id: str,
    endpoint: str,
    variant: str,
    model_package_arn: str | None,
    subject_hash: str | None,
    created_at_ms: int,
    expires_at: int,
) -> dict:
    item = {
        "inference_id": inference_id,
        "endpoint": endpoint,
        "variant": variant,
        "created_at_ms": created_at_ms,
        "expires_at": expires_at,
    }
    if model_package_arn is not None:
        item["model_package_arn"] = model_package_arn
    if subject_hash is not None:
        item["subject_hash"] = subject_hash
    return item


def _required_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRoutingInput(f"{name} must be a non-empty string, got {value!r}")
    return value


def build_prediction_record(
    inference_id: str,
    endpoint: str,
    variant: str,
    model_package_arn: str | None,
    subject_hash: str | None,
    now_epoch: float,
    ttl_seconds: int,
) -> dict:
    """Validate the fields and return the item of the record (as :meth:`PredictionRecord.to_item`).

    ``now_epoch`` is the current Unix time in seconds (passed in, never read here); the item expires
    ``ttl_seconds`` (> 0) after it, rounded down to the second.
    """
    validate_inference_id(inference_id)
    _required_text("endpoint", endpoint)
    _required_text("variant", variant)
    if model_package_arn is not None:
        _required_text("model_package_arn", model_package_arn)
    if subject_hash is not None:
        _required_text("subject_hash", subject_hash)
    if isinstance(now_epoch, bool) or not isinstance(now_epoch, (int, float)) or not math.isfinite(now_epoch):
        raise InvalidRoutingInput(f"now_epoch must be a finite number of seconds, got {now_epoch!r}")
    if now_epoch < 0:
        raise InvalidRoutingInput(f"now_epoch must be >= 0, got {now_epoch!r}")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise InvalidRoutingInput(f"ttl_seconds must be a positive int, got {ttl_seconds!r}")
    # Same item as PredictionRecord(...).to_item(), without the frozen dataclass on the hot path.
    return _item(
        inference_id, endpoint, variant, model_package_arn, subject_hash,
        int(now_epoch * 1000), int(now_epoch) + ttl_seconds,
    )
