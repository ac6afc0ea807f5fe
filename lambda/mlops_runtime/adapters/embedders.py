"""Embedders: texts -> vectors of a fixed ``dimension``.

- :class:`BedrockEmbedder`: ``bedrock-runtime`` ``InvokeModel``. Amazon Titan Text Embeddings V2
  (``{"inputText", "dimensions", "normalize": true}``, one text per call; V1: ``{"inputText"}``) and
  Cohere Embed (``{"texts": [...], "input_type": "search_document" | "search_query", "truncate": "END"}``,
  up to 96 texts per call; v4 also ``"output_dimension"`` and ``"embedding_types": ["float"]``), chosen
  by the model id (``domain.search.bedrock_family``).
- :class:`SageMakerEmbedder`: ``sagemaker-runtime`` ``InvokeEndpoint`` with ``{"inputs": [texts]}``
  (JSON); the answer is a list of vectors, or ``{"embeddings": [...]}`` / ``{"vectors": [...]}``.
- :class:`DeterministicEmbedder`: offline feature hashing of word unigrams and bigrams into
  ``dimension`` signed buckets, L2-normalised: texts sharing words are close. Tests, benchmarks and
  local runs use it; it downloads nothing.

``embed(texts)`` sends batches of ``batch_size`` texts. Throttling (``ThrottlingException``, HTTP 429,
``ModelNotReadyException``) and transient failures (5xx, timeouts, connection errors) are retried
with bounded full-jitter back-off (``adapters.retrying.Retrying``); then :class:`EmbedderThrottled`
or :class:`EmbedderUnavailable` is raised. A vector of the wrong dimension, a wrong count, or a
non-finite value is :class:`EmbeddingDimensionError` / :class:`EmbedderError`. botocore's own
retries are off (one attempt per call): the retries here are the only ones, so their bound holds.
boto3 is imported when the first client is needed.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mlops_runtime.adapters.aws_errors import error_code_or_name, error_text
from mlops_runtime.adapters.retrying import Retrying
from mlops_runtime.domain.search import EmbedderSettings, IndexSettings, bedrock_family

COHERE_MAX_TEXTS = 96
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ModelNotReadyException",
        "ServiceQuotaExceededException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalFailure",
        "InternalDependencyException",
        "ModelTimeoutException",
    }
)
INPUT_TYPES = ("search_document", "search_query")


class EmbedderError(Exception):
    """The embedding could not be computed (not retryable, or a bad answer): ``message``, ``code``."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EmbedderThrottled(EmbedderError):
    """Still throttled after the retries: retry later (HTTP 429)."""


class EmbedderUnavailable(EmbedderError):
    """Still failing (5xx, timeouts, connections) after the retries: the service is unavailable."""


class EmbeddingDimensionError(EmbedderError):
    """A vector does not have the index's dimension (a deployment error: model and index disagree)."""


class Embedder(Protocol):
    dimension: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def check_vectors(vectors: Any, count: int, dimension: int, source: str) -> list[list[float]]:
    """``count`` vectors of ``dimension`` finite numbers, as lists of floats; EmbedderError otherwise."""
    if not isinstance(vectors, list):
        raise EmbedderError(f"{source} answered without a list of vectors")
    if len(vectors) != count:
        raise EmbedderError(f"{source} returned {len(vectors)} vectors for {count} texts")
    checked = []
    for vector in vectors:
        if not isinstance(vector, list):
            raise EmbedderError(f"{source} returned a vector that is not a list of numbers")
        if len(vector) != dimension:
            raise EmbeddingDimensionError(
                f"{source} returned a vector of {len(vector)} dimensions; the index has {dimension}"
            )
        try:
            floats = [float(value) for value in vector]
        except (TypeError, ValueError) as error:
            raise EmbedderError(f"{source} returned a vector with a non-numeric value") from error
        if not all(map(math.isfinite, floats)):
            raise EmbedderError(f"{source} returned a vector with a non-finite value")
        checked.append(floats)
    return checked


def _batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[start : start + size] for start in range(0, len(texts), size)]


# --- the deterministic embedder -----------------------------------------------------------------

_TOKEN = re.compile(r"\w+")


def _bucket(token: str, dimension: int) -> tuple[int, float]:
    data = token.encode("utf-8", "surrogatepass")
    index = zlib.crc32(data) % dimension
    sign = 1.0 if zlib.crc32(data, 0x9E3779B9) & 1 else -1.0
    return index, sign


CACHE_LIMIT = 200_000  # features remembered per embedder (cleared when full)


class DeterministicEmbedder:
    """Feature hashing of lower-cased word unigrams (weight 1) and bigrams (weight 0.5); L2-normalised.

    Deterministic across processes (CRC-32, not Python's salted ``hash``); no download, no network.
    A text without word characters hashes its stripped self, so no vector is zero.
    """

    def __init__(self, dimension: int, batch_size: int = 256) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self.batch_size = batch_size
        self.calls = 0  # embed() calls, for tests
        self._cache: dict[str, tuple[int, float]] = {}

    def _feature(self, feature: str) -> tuple[int, float]:
        found = self._cache.get(feature)
        if found is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[feature] = _bucket(feature, self.dimension)
        return found

    def embed_one(self, text: str) -> list[float]:
        dimension = self.dimension
        feature = self._feature
        vector = [0.0] * dimension
        tokens = _TOKEN.findall(text.casefold()) or [text.strip()]
        previous = None
        for token in tokens:
            index, sign = feature(token)
            vector[index] += sign
            if previous is not None:
                index, sign = feature(previous + " " + token)
                vector[index] += 0.5 * sign
            previous = token
        norm = math.hypot(*vector)
        if norm == 0.0:  # every feature cancelled out: fall back to one bucket of the whole text
            index, _ = _bucket(text, dimension)
            vector[index] = 1.0
            return vector
        scale = 1.0 / norm
        return [value * scale for value in vector]

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self.embed_one(text) for text in texts]


# --- AWS embedders ------------------------------------------------------------------------------


class _AwsEmbedder(Retrying, ABC):
    """Shared retry loop of the Bedrock and SageMaker embedders."""

    service = ""

    def __init__(
        self,
        dimension: int,
        batch_size: int,
        client: Any | None,
        *,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        read_timeout: float,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
        budget: Any = None,
    ) -> None:
        super().__init__(
            client, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep,
            jitter=jitter, budget=budget,
        )
        if dimension < 1 or batch_size < 1:
            raise ValueError("dimension and batch_size must be positive")
        self.dimension = dimension
        self.batch_size = batch_size
        self.read_timeout = read_timeout

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                self.service,
                config=Config(
                    retries={"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=2,
                    read_timeout=self.read_timeout,
                ),
            )
        return self._client

    def _invoke(self, call: Callable[[], Any], what: str) -> Any:
        """``call()`` with retries of throttling and transient errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        last: Exception | None = None
        throttled = False
        for attempt in range(self._max_attempts):
            try:
                return call()
            except ClientError as error:
                code = error_code_or_name(error)
                status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
                if code in THROTTLING_CODES or status == 429:
                    throttled = True
                elif code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
                    throttled = False
                else:
                    raise EmbedderError(f"{what} failed: {error_text(error)}", code) from error
                last = error
            except BotoCoreError as error:  # connection errors, timeouts
                throttled = False
                last = error
            if attempt + 1 < self._max_attempts and not self._back_off(attempt):
                break
        assert last is not None
        kind = EmbedderThrottled if throttled else EmbedderUnavailable
        raise kind(f"{what} failed after retries: {error_text(last)}", error_code_or_name(last)) from last

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in _batches(texts, self.batch_size):
            vectors.extend(self._embed_batch(list(batch)))
        return vectors

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        """One embedding call for at most ``batch_size`` texts."""


def _read_json(payload: Any, source: str) -> Any:
    data = payload.read() if hasattr(payload, "read") else payload
    try:
        return json.loads(data)
    except (TypeError, ValueError) as error:
        raise EmbedderError(f"{source} answered with something other than JSON") from error


class BedrockEmbedder(_AwsEmbedder):
    """Bedrock embedding models (see the module docstring); ``input_type`` matters to Cohere only."""

    service = "bedrock-runtime"

    def __init__(
        self,
        model_id: str,
        dimension: int,
        *,
        batch_size: int = 16,
        input_type: str = "search_document",
        client: Any | None = None,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        read_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        family = bedrock_family(model_id)
        if family is None:
            raise ValueError(f"unsupported Bedrock embedding model {model_id!r}")
        if input_type not in INPUT_TYPES:
            raise ValueError(f"input_type must be one of {INPUT_TYPES}")
        if family.startswith("cohere"):
            batch_size = min(batch_size, COHERE_MAX_TEXTS)
        super().__init__(
            dimension, batch_size, client, max_attempts=max_attempts, base_delay=base_delay,
            max_delay=max_delay, read_timeout=read_timeout, sleep=sleep, jitter=jitter, budget=budget,
        )
        self.model_id = model_id
        self.family = family
        self.input_type = input_type

    def _call(self, body: dict[str, Any]) -> Any:
        response = self._invoke(
            lambda: self.client.invoke_model(
                modelId=self.model_id,
                body=json.dumps(body).encode("utf-8"),
                contentType="application/json",
                accept="application/json",
            ),
            f"InvokeModel on {self.model_id}",
        )
        return _read_json(response["body"], self.model_id)

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        if self.family.startswith("titan"):
            vectors = []
            for text in texts:
                body: dict[str, Any] = {"inputText": text}
                if self.family == "titan-v2":
                    body.update(dimensions=self.dimension, normalize=True)
                answer = self._call(body)
                vector = answer.get("embedding") if isinstance(answer, dict) else None
                vectors.append(vector)
            return check_vectors(vectors, len(texts), self.dimension, self.model_id)
        body = {"texts": texts, "input_type": self.input_type, "truncate": "END"}
        if self.family == "cohere-v4":
            body.update(output_dimension=self.dimension, embedding_types=["float"])
        answer = self._call(body)
        embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
        if isinstance(embeddings, dict):  # embeddings by type
            embeddings = embeddings.get("float")
        return check_vectors(embeddings, len(texts), self.dimension, self.model_id)


class SageMakerEmbedder(_AwsEmbedder):
    """A SageMaker real-time endpoint serving an embedding model over JSON."""

    service = "sagemaker-runtime"

    def __init__(
        self,
        endpoint: str,
        dimension: int,
        *,
        batch_size: int = 16,
        client: Any | None = None,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        read_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        budget: Any = None,
    ) -> None:
        super().__init__(
            dimension, batch_size, client, max_attempts=max_attempts, base_delay=base_delay,
            max_delay=max_delay, read_timeout=read_timeout, sleep=sleep, jitter=jitter, budget=budget,
        )
        self.endpoint = endpoint

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        response = self._invoke(
            lambda: self.client.invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps({"inputs": texts}).encode("utf-8"),
            ),
            f"InvokeEndpoint on {self.endpoint}",
        )
        answer = _read_json(response["Body"], f"endpoint {self.endpoint}")
        if isinstance(answer, dict):
            answer = answer.get("embeddings", answer.get("vectors"))
        return check_vectors(answer, len(texts), self.dimension, f"endpoint {self.endpoint}")


# --- construction from settings -----------------------------------------------------------------


def embedder_for(
    settings: IndexSettings, *, input_type: str = "search_document", **options: Any
) -> Embedder:
    """The embedder of an index. ``input_type``: ``search_query`` for the search API. ``options`` go to
    the AWS embedders (``client``, ``max_attempts``, ``read_timeout``, ``sleep``, ``jitter``, ...)."""
    config: EmbedderSettings = settings.embedder
    if config.kind == "bedrock":
        assert config.model_id is not None
        return BedrockEmbedder(config.model_id, settings.dimension, batch_size=config.batch_size,
                               input_type=input_type, **options)
    if config.kind == "sagemaker":
        assert config.endpoint is not None
        return SageMakerEmbedder(config.endpoint, settings.dimension, batch_size=config.batch_size, **options)
    return DeterministicEmbedder(settings.dimension, batch_size=config.batch_size)
