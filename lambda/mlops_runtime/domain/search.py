"""Semantic search, pure part: index settings, documents, search requests, result shaping.

Nothing here touches AWS or imports anything heavy; the adapters (``adapters.embedders``,
``adapters.vector_store``), the indexing pipeline (``search.indexing``) and the handlers build on it.
The parsers are hand-written on purpose: the search API is on the request path and does not load
pydantic, which would add about 0.65x of an ``import boto3`` to its cold start
(``benchmarks/bench_handler_imports.py``).
Contracts: ``docs/search.md``.

- :class:`SearchSettings`: the settings of the indexer, the search API and the bulk job (their
  indexes keyed by name; the indexer's report location), parsed by :meth:`SearchSettings.parse`;
  :class:`ConfigurationError` (field, reason) when unusable. The stack builds them from the config
  (``mlops_platform/function_settings.py``), so a config they refuse fails ``make synth``.
- :func:`parse_document`: one JSON line -> :class:`Document`, :class:`Deletion` or ``None`` (blank line);
  :class:`InvalidDocument` (line, id, field, reason) otherwise.
- :func:`parse_search_request`: a decoded request body -> :class:`SearchRequest`; :class:`InvalidRequest`.
- :func:`metadata_matches`: the filter language, evaluated on one vector's metadata (the in-memory store).
- :func:`shape_results`: store hits -> the API's result objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_runtime.domain.chunking import check_sizes, split_chunk_key

# --- limits -------------------------------------------------------------------------------------
MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 200_000
MAX_LINE_BYTES = 2 * 1024 * 1024  # a JSON line: the text (escaped) and the metadata
MAX_METADATA_KEYS = 20
MAX_METADATA_BYTES = 1024  # compact JSON, UTF-8: with the id, within S3 Vectors' 2 KB of filterable metadata
MAX_METADATA_STRING_CHARS = 256
MAX_METADATA_LIST_ITEMS = 20
MAX_SAFE_INTEGER = 2**53  # metadata numbers are stored as doubles
MAX_QUERY_CHARS = 2_000
DEFAULT_TOP_K = 10
MAX_FILTER_KEYS = 10
MAX_FILTER_IN_VALUES = 50
MAX_REQUEST_BYTES = 64 * 1024
MAX_CHUNK_TEXT_BYTES = 32 * 1024  # S3 Vectors: 40 KB of metadata per vector in all
MAX_FILTERABLE_KEYS = 10
MAX_DIMENSION = {"s3vectors": 4096, "opensearch": 16_000, "memory": 16_000}
MAX_TOP_K_LIMIT = 100  # S3 Vectors' QueryVectors topK
MAX_CHUNK_SIZE = 2000
MAX_BATCH_SIZE = 256

# Metadata the indexer adds to every chunk (and "vector", the OpenSearch field of the embedding).
INTERNAL_KEYS = ("doc_id", "chunk", "chunk_count", "text")
RESERVED_KEYS = frozenset((*INTERNAL_KEYS, "vector"))
# Never filtered on: S3 Vectors indexes declare them non-filterable (they may be large).
NON_FILTERABLE_KEYS = ("text", "chunk_count")

DISTANCES = ("cosine", "euclidean")
STORE_KINDS = ("s3vectors", "opensearch", "memory")
EMBEDDER_KINDS = ("bedrock", "sagemaker", "deterministic")
OPENSEARCH_ID_MODES = ("field", "document_id")

INDEX_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
S3VECTORS_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{1,61}[a-z0-9])$")
OPENSEARCH_INDEX = re.compile(r"^[a-z0-9][a-z0-9_.+-]{0,254}$")
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,62}$")
BEDROCK_MODEL_ID = re.compile(r"^[A-Za-z0-9._:/-]{3,200}$")
GEO_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "jp.", "au.", "ca.", "global.")

# Amazon Titan Text Embeddings V2 produces only these sizes; V1 only 1536; Cohere Embed v3 1024
# (v4 lets the request choose).
TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_V1_DIMENSIONS = (1536,)
COHERE_V3_DIMENSIONS = (1024,)
FAMILY_DIMENSIONS = {"titan-v2": TITAN_V2_DIMENSIONS, "titan-v1": TITAN_V1_DIMENSIONS, "cohere-v3": COHERE_V3_DIMENSIONS}
DEFAULT_REPORT_PREFIX = "search-reports/"


# --- errors -------------------------------------------------------------------------------------


class SearchError(Exception):
    """A domain error: ``field`` (dotted path, may be empty) and a human-readable ``reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class ConfigurationError(SearchError):
    """The settings are missing or unusable: a deployment error."""


class InvalidDocument(SearchError):
    """A document line was rejected: ``line`` (from 1), ``id`` when it could be read."""

    def __init__(self, line: int, field: str, reason: str, document_id: str | None = None) -> None:
        super().__init__(field, reason)
        self.line = line
        self.document_id = document_id

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"line": self.line}
        if self.document_id is not None:
            entry["id"] = self.document_id
        entry["field"] = self.field
        entry["reason"] = self.reason
        return entry


class InvalidRequest(SearchError):
    """A search request was rejected (HTTP 400; 413 when ``too_large``)."""

    def __init__(self, field: str, reason: str, *, too_large: bool = False) -> None:
        super().__init__(field, reason)
        self.too_large = too_large


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSettings:
    kind: str  # s3vectors | opensearch | memory
    vector_bucket: str | None = None  # s3vectors
    index: str | None = None  # s3vectors index name, or OpenSearch index
    endpoint: str | None = None  # opensearch: https://<id>.<region>.aoss.amazonaws.com
    region: str | None = None  # opensearch
    id_mode: str = "field"  # opensearch: "field" (VECTORSEARCH collections) or "document_id"


@dataclass(frozen=True)
class EmbedderSettings:
    kind: str  # bedrock | sagemaker | deterministic
    model_id: str | None = None  # bedrock
    endpoint: str | None = None  # sagemaker
    batch_size: int = 16


@dataclass(frozen=True)
class IndexSettings:
    name: str
    dimension: int
    distance: str
    filterable: tuple[str, ...]
    store: StoreSettings
    embedder: EmbedderSettings
    chunk_size: int = 200
    chunk_overlap: int = 40
    max_top_k: int = 20

    @property
    def default_top_k(self) -> int:
        return min(DEFAULT_TOP_K, self.max_top_k)


INDEX_KEYS = frozenset(
    {"dimension", "distance", "filterable", "store", "embedder", "chunk_size", "chunk_overlap", "max_top_k"}
)
STORE_KEYS = {
    "s3vectors": frozenset({"kind", "vector_bucket", "index"}),
    "opensearch": frozenset({"kind", "endpoint", "index", "region", "id_mode"}),
    "memory": frozenset({"kind"}),
}
EMBEDDER_KEYS = {
    "bedrock": frozenset({"kind", "model_id", "batch_size"}),
    "sagemaker": frozenset({"kind", "endpoint", "batch_size"}),
    "deterministic": frozenset({"kind", "batch_size"}),
}


def bedrock_family(model_id: str) -> str | None:
    """``titan-v2``, ``titan-v1``, ``cohere-v3`` or ``cohere-v4`` for a Bedrock embedding model id (a
    foundation-model id, its ARN, or a cross-Region inference profile id such as ``eu.cohere...``);
    ``None`` when the request format is unknown."""
    model = model_id.rsplit("/", 1)[-1].lower()
    for prefix in GEO_PREFIXES:
        if model.startswith(prefix):
            model = model[len(prefix) :]
            break
    if model.startswith("amazon.titan-embed-text-v2"):
        return "titan-v2"
    if model.startswith("amazon.titan-embed-text-v1") or model.startswith("amazon.titan-embed-g1-text"):
        return "titan-v1"
    if model.startswith("cohere.embed-v4"):
        return "cohere-v4"
    if model.startswith("cohere.embed-"):
        return "cohere-v3"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_setting(
    raw: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int | None
) -> int:
    value = raw.get(key, default)
    if value is None:
        raise ConfigurationError(f"{where}.{key}", "is required")
    if not _is_int(value) or not low <= value <= high:
        raise ConfigurationError(f"{where}.{key}", f"must be an integer from {low} to {high}")
    return value


def _str_setting(raw: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str], hint: str) -> str:
    value = raw.get(key)
    if value is None:
        raise ConfigurationError(f"{where}.{key}", "is required")
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigurationError(f"{where}.{key}", f"must be {hint}")
    return value


def _check_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigurationError(f"{where}.{unknown[0]}", f"unknown setting; allowed: {sorted(allowed)}")


def _store_settings(raw: Any, where: str) -> StoreSettings:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(where, "must be an object with a 'kind'")
    kind = raw.get("kind")
    if kind not in STORE_KINDS:
        raise ConfigurationError(f"{where}.kind", f"must be one of {list(STORE_KINDS)}")
    _check_keys(raw, STORE_KEYS[kind], where)
    if kind == "s3vectors":
        hint = "3-63 lower-case letters, digits, '.' and '-'"
        return StoreSettings(
            kind,
            vector_bucket=_str_setting(raw, "vector_bucket", where, S3VECTORS_NAME, hint),
            index=_str_setting(raw, "index", where, S3VECTORS_NAME, hint),
        )
    if kind == "opensearch":
        endpoint = raw.get("endpoint")
        if not isinstance(endpoint, str) or not re.match(r"^https://[A-Za-z0-9.-]+(:\d+)?/?$", endpoint):
            raise ConfigurationError(f"{where}.endpoint", "must be an https:// URL of the collection")
        id_mode = raw.get("id_mode", "field")
        if id_mode not in OPENSEARCH_ID_MODES:
            raise ConfigurationError(f"{where}.id_mode", f"must be one of {list(OPENSEARCH_ID_MODES)}")
        return StoreSettings(
            kind,
            endpoint=endpoint.rstrip("/"),
            index=_str_setting(raw, "index", where, OPENSEARCH_INDEX, "a lower-case OpenSearch index name"),
            region=_str_setting(raw, "region", where, REGION, "an AWS Region, e.g. eu-west-1"),
            id_mode=id_mode,
        )
    return StoreSettings(kind)


def _embedder_settings(raw: Any, where: str, dimension: int) -> EmbedderSettings:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(where, "must be an object with a 'kind'")
    kind = raw.get("kind")
    if kind not in EMBEDDER_KINDS:
        raise ConfigurationError(f"{where}.kind", f"must be one of {list(EMBEDDER_KINDS)}")
    _check_keys(raw, EMBEDDER_KEYS[kind], where)
    batch_size = _int_setting(raw, "batch_size", where, 1, MAX_BATCH_SIZE, 16)
    if kind == "bedrock":
        model_id = _str_setting(raw, "model_id", where, BEDROCK_MODEL_ID, "a Bedrock model id")
        family = bedrock_family(model_id)
        if family is None:
            raise ConfigurationError(
                f"{where}.model_id",
                "unsupported embedding model: use Amazon Titan Text Embeddings "
                "(amazon.titan-embed-text-v1/v2) or Cohere Embed (cohere.embed-...)",
            )
        sizes = FAMILY_DIMENSIONS.get(family)
        if sizes and dimension not in sizes:
            reason = f"{model_id} produces vectors of {list(sizes)} dimensions, not {dimension}"
            raise ConfigurationError(f"{where}.model_id", reason)
        return EmbedderSettings(kind, model_id=model_id, batch_size=batch_size)
    if kind == "sagemaker":
        endpoint = _str_setting(raw, "endpoint", where, SAGEMAKER_NAME, "a SageMaker endpoint name")
        return EmbedderSettings(kind, endpoint=endpoint, batch_size=batch_size)
    return EmbedderSettings(kind, batch_size=batch_size)


def parse_index(name: Any, raw: Any) -> IndexSettings:
    """One index's settings (``name``: its key in the settings' ``indexes``)."""
    where = f"indexes.{name}"
    if not isinstance(name, str) or not INDEX_NAME.match(name):
        raise ConfigurationError(
            where, "index names are 1-63 lower-case letters, digits and '-' (not at the ends)"
        )
    if not isinstance(raw, Mapping):
        raise ConfigurationError(where, "must be an object")
    _check_keys(raw, INDEX_KEYS, where)
    store = _store_settings(raw.get("store"), f"{where}.store")
    dimension = _int_setting(raw, "dimension", where, 1, MAX_DIMENSION[store.kind], None)
    distance = raw.get("distance", "cosine")
    if distance not in DISTANCES:
        raise ConfigurationError(f"{where}.distance", f"must be one of {list(DISTANCES)}")
    filterable_raw = raw.get("filterable", [])
    if not isinstance(filterable_raw, list) or len(filterable_raw) > MAX_FILTERABLE_KEYS:
        raise ConfigurationError(
            f"{where}.filterable", f"must be a list of at most {MAX_FILTERABLE_KEYS} keys"
        )
    for key in filterable_raw:
        if not isinstance(key, str) or not METADATA_KEY.match(key):
            raise ConfigurationError(f"{where}.filterable", f"{key!r} is not a metadata key")
        if key in RESERVED_KEYS:
            raise ConfigurationError(f"{where}.filterable", f"{key!r} is reserved by the platform")
    if len(set(filterable_raw)) != len(filterable_raw):
        raise ConfigurationError(f"{where}.filterable", "has duplicates")
    embedder = _embedder_settings(raw.get("embedder"), f"{where}.embedder", dimension)
    chunk_size = _int_setting(raw, "chunk_size", where, 1, MAX_CHUNK_SIZE, 200)
    chunk_overlap = _int_setting(raw, "chunk_overlap", where, 0, MAX_CHUNK_SIZE, chunk_size // 5)
    if chunk_overlap >= chunk_size:
        raise ConfigurationError(f"{where}.chunk_overlap", "must be smaller than chunk_size")
    check_sizes(chunk_size, chunk_overlap)
    max_top_k = _int_setting(raw, "max_top_k", where, 1, MAX_TOP_K_LIMIT, 20)
    return IndexSettings(
        name=name,
        dimension=dimension,
        distance=distance,
        filterable=tuple(filterable_raw),
        store=store,
        embedder=embedder,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        max_top_k=max_top_k,
    )


def index_json(settings: IndexSettings) -> dict[str, Any]:
    """The JSON form of one index's settings (what :func:`parse_index` reads)."""
    store, embedder = settings.store, settings.embedder
    return {
        "dimension": settings.dimension,
        "distance": settings.distance,
        "filterable": list(settings.filterable),
        "store": {key: getattr(store, key) for key in sorted(STORE_KEYS[store.kind]) if getattr(store, key) is not None},
        "embedder": {key: getattr(embedder, key) for key in sorted(EMBEDDER_KEYS[embedder.kind])
                     if getattr(embedder, key) is not None},
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "max_top_k": settings.max_top_k,
    }


SETTINGS_KEYS = frozenset({"indexes", "report_bucket", "report_prefix"})


@dataclass(frozen=True)
class SearchSettings:
    """``handlers.search_indexer``, ``handlers.search_api`` and the bulk job (``search.bulk``): the
    indexes by name, and where the indexer writes its reports (``report_bucket``: the indexer's
    only; the API and the bulk job need none).

    Parsed by hand, not with pydantic like the other functions' settings: the search API is on the
    request path, and pydantic would take its cold import from 0.8x to 1.4x ``import boto3``."""

    indexes: dict[str, IndexSettings]
    report_bucket: str | None = None
    report_prefix: str = DEFAULT_REPORT_PREFIX

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any] | None) -> SearchSettings:
        """The settings from their JSON (text or already decoded); :class:`ConfigurationError` if unusable."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ConfigurationError("", "the settings are not set")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except (ValueError, RecursionError) as error:
                raise ConfigurationError("", f"the settings are not JSON: {error}") from error
        if not isinstance(raw, Mapping):
            raise ConfigurationError("", "the settings must be a JSON object")
        unknown = sorted(set(raw) - SETTINGS_KEYS)
        if unknown:
            raise ConfigurationError(unknown[0], f"unknown setting; allowed: {sorted(SETTINGS_KEYS)}")
        indexes = raw.get("indexes")
        if not isinstance(indexes, Mapping):
            raise ConfigurationError("indexes", "must be a JSON object keyed by index name")
        bucket = raw.get("report_bucket")
        if bucket is not None and (not isinstance(bucket, str) or not bucket):
            raise ConfigurationError("report_bucket", "must be a bucket name or null")
        prefix = raw.get("report_prefix", DEFAULT_REPORT_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigurationError("report_prefix", "must be a key prefix")
        return cls({name: parse_index(name, value) for name, value in indexes.items()}, bucket, prefix)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SearchSettings:
        from mlops_runtime.settings_env import SETTINGS_ENV, settings_text

        try:
            return cls.parse(settings_text(environ))
        except ConfigurationError as error:
            raise ConfigurationError(_join(SETTINGS_ENV, error.field), error.reason) from None

    def as_json(self) -> dict[str, Any]:
        return {"indexes": {name: index_json(index) for name, index in self.indexes.items()},
                "report_bucket": self.report_bucket, "report_prefix": self.report_prefix}

    def to_env(self) -> dict[str, str]:
        """The function's environment entry (what the stack and the rehearsal set)."""
        from mlops_runtime.settings_env import SETTINGS_ENV

        return {SETTINGS_ENV: json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))}


def _join(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if field else prefix


# --- documents ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deletion:
    id: str


DOCUMENT_KEYS = frozenset({"id", "text", "metadata", "deleted"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` without NaN/Infinity; ValueError (incl. too deep nesting) otherwise."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as error:
        raise ValueError("nested too deeply") from error


def valid_unicode(value: str) -> bool:
    """False for strings with lone surrogates (``"\\ud800"`` escapes): they cannot be stored as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: str) -> str:
    """A string safe to put in a report or a log (lone surrogates escaped)."""
    return value if valid_unicode(value) else value.encode("utf-8", "backslashreplace").decode("utf-8")


def _finite_number(value: Any) -> bool:
    if _is_int(value):
        return abs(value) <= MAX_SAFE_INTEGER
    return isinstance(value, float) and math.isfinite(value)


def check_document_id(value: Any) -> str:
    """The id, or ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise ValueError(f"must be 1-{MAX_ID_CHARS} characters")
    if not value.isprintable() or not valid_unicode(value):
        raise ValueError("must contain only printable characters (valid Unicode)")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    """Flat metadata, or ``(field, reason)`` as ValueError args."""
    if not isinstance(value, dict):
        raise ValueError("metadata", "must be an object")
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError("metadata", f"has more than {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        where = f"metadata.{_shown(key)}"
        if not METADATA_KEY.match(key):
            raise ValueError(where, "keys are 1-64 letters, digits, '_' and '-' (not starting with '-')")
        if key in RESERVED_KEYS:
            raise ValueError(where, f"is reserved by the platform ({sorted(RESERVED_KEYS)})")
        if isinstance(item, str):
            if len(item) > MAX_METADATA_STRING_CHARS:
                raise ValueError(where, f"strings are at most {MAX_METADATA_STRING_CHARS} characters")
            if not valid_unicode(item):
                raise ValueError(where, "must be valid Unicode (no lone surrogates)")
        elif isinstance(item, bool):
            pass
        elif isinstance(item, (int, float)):
            if not _finite_number(item):
                raise ValueError(where, "numbers must be finite (integers within +-2^53)")
        elif isinstance(item, list):
            if not item or len(item) > MAX_METADATA_LIST_ITEMS:
                raise ValueError(where, f"lists hold 1-{MAX_METADATA_LIST_ITEMS} strings")
            for element in item:
                if (not isinstance(element, str) or len(element) > MAX_METADATA_STRING_CHARS
                        or not valid_unicode(element)):
                    raise ValueError(where, f"lists hold only strings of at most {MAX_METADATA_STRING_CHARS} "
                                            "characters (valid Unicode)")
        else:
            raise ValueError(where, "values are strings, numbers, booleans or lists of strings (flat)")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError("metadata", f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    return value


def parse_document(line: str | bytes, line_number: int) -> Document | Deletion | None:
    """One JSON line -> a document, a deletion, or ``None`` for a blank line; :class:`InvalidDocument`."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise InvalidDocument(line_number, "", f"line is {len(line)} bytes; at most {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"not UTF-8 ({error.reason} at byte {error.start})"
            raise InvalidDocument(line_number, "", reason) from error
    if line.startswith("\ufeff"):
        line = line[1:]  # a byte-order mark (first line of a file saved by some editors)
    if not line.strip():
        return None
    if len(line) > MAX_LINE_BYTES:
        raise InvalidDocument(line_number, "", f"line is longer than {MAX_LINE_BYTES} characters")
    try:
        raw = loads_strict(line)
    except ValueError as error:
        raise InvalidDocument(line_number, "", f"not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise InvalidDocument(line_number, "", "each line must be a JSON object")
    raw_id = raw.get("id")
    try:
        document_id = check_document_id(raw_id)
    except ValueError as error:
        shown = _shown(raw_id[:MAX_ID_CHARS]) if isinstance(raw_id, str) and raw_id else None
        raise InvalidDocument(line_number, "id", str(error) if raw_id is not None else "is required",
                              shown) from error
    unknown = sorted(set(raw) - DOCUMENT_KEYS)
    if unknown:
        reason = f"unknown field; allowed: {sorted(DOCUMENT_KEYS)}"
        raise InvalidDocument(line_number, _shown(unknown[0]), reason, document_id)
    deleted = raw.get("deleted", False)
    if not isinstance(deleted, bool):
        raise InvalidDocument(line_number, "deleted", "must be true or false", document_id)
    if deleted:
        return Deletion(document_id)
    text = raw.get("text")
    if not isinstance(text, str):
        reason = "is required (a string)" if text is None else "must be a string"
        raise InvalidDocument(line_number, "text", reason, document_id)
    if not text.strip():
        raise InvalidDocument(line_number, "text", "must not be empty", document_id)
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidDocument(line_number, "text", f"is {len(text)} characters; at most {MAX_TEXT_CHARS}",
                              document_id)
    if not valid_unicode(text):
        raise InvalidDocument(line_number, "text", "must be valid Unicode (no lone surrogates)", document_id)
    try:
        metadata = check_metadata(raw.get("metadata", {}))
    except ValueError as error:
        where, reason = error.args
        raise InvalidDocument(line_number, where, reason, document_id) from error
    return Document(document_id, text, metadata)


def chunk_metadata(document: Document, number: int, count: int, text: str) -> dict[str, Any]:
    """What the indexer stores with chunk ``number`` of ``count`` of ``document``."""
    return {**document.metadata, "doc_id": document.id, "chunk": number, "chunk_count": count, "text": text}


# --- search requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int
    filter: dict[str, Any] | None  # canonical: {key: scalar} or {key: {"$in": [scalars]}}


REQUEST_KEYS = frozenset({"query", "top_k", "filter"})


def _filter_scalar(value: Any, where: str) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_METADATA_STRING_CHARS:
            raise InvalidRequest(where, f"strings are at most {MAX_METADATA_STRING_CHARS} characters")
        if not valid_unicode(value):
            raise InvalidRequest(where, "must be valid Unicode (no lone surrogates)")
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not _finite_number(value):
            raise InvalidRequest(where, "numbers must be finite (integers within +-2^53)")
        return value
    raise InvalidRequest(where, "must be a string, a number, a boolean or {\"$in\": [...]}")


def parse_filter(raw: Any, filterable: Sequence[str]) -> dict[str, Any] | None:
    """The filter, validated and in canonical form; ``None`` for none (absent, null or ``{}``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("filter", "must be an object of metadata key -> value or {\"$in\": [values]}")
    if not raw:
        return None
    if len(raw) > MAX_FILTER_KEYS:
        raise InvalidRequest("filter", f"has more than {MAX_FILTER_KEYS} keys")
    result: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"filter.{_shown(key)}"
        if key not in filterable:
            allowed = ", ".join(filterable) if filterable else "none"
            raise InvalidRequest(where, f"is not a filterable key of this index (filterable: {allowed})")
        if isinstance(value, dict):
            if set(value) != {"$in"}:
                raise InvalidRequest(where, "the only operator is $in: {\"$in\": [values]}")
            values = value["$in"]
            if not isinstance(values, list) or not 1 <= len(values) <= MAX_FILTER_IN_VALUES:
                raise InvalidRequest(f"{where}.$in", f"must be a list of 1-{MAX_FILTER_IN_VALUES} values")
            result[key] = {"$in": [_filter_scalar(item, f"{where}.$in") for item in values]}
        else:
            result[key] = _filter_scalar(value, where)
    return result


def parse_search_request(body: Any, settings: IndexSettings) -> SearchRequest:
    """A decoded body ``{"query", "top_k"?, "filter"?}`` -> :class:`SearchRequest`, or
    :class:`InvalidRequest`."""
    if not isinstance(body, dict):
        raise InvalidRequest("", "the body must be a JSON object: {\"query\": ..., \"top_k\"?, \"filter\"?}")
    unknown = sorted(set(body) - REQUEST_KEYS)
    if unknown:
        raise InvalidRequest(_shown(unknown[0]), f"unknown field; allowed: {sorted(REQUEST_KEYS)}")
    query = body.get("query")
    if not isinstance(query, str):
        raise InvalidRequest("query", "is required (a string)" if query is None else "must be a string")
    if not query.strip():
        raise InvalidRequest("query", "must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest("query", f"is {len(query)} characters; at most {MAX_QUERY_CHARS}")
    if not valid_unicode(query):
        raise InvalidRequest("query", "must be valid Unicode (no lone surrogates)")
    top_k = body.get("top_k")
    if top_k is None:
        top_k = settings.default_top_k
    elif not _is_int(top_k) or not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequest("top_k", f"must be an integer from 1 to {settings.max_top_k}")
    return SearchRequest(query, top_k, parse_filter(body.get("filter"), settings.filterable))


def filter_document(filter_: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The filter as an S3 Vectors filter document: one condition as is, several under ``$and``."""
    if not filter_:
        return None
    if len(filter_) == 1:
        return dict(filter_)
    return {"$and": [{key: value} for key, value in filter_.items()]}


def _same(a: Any, b: Any) -> bool:
    """Equality as a JSON store sees it: booleans equal only booleans (``True != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def _value_matches(stored: Any, wanted: Iterable[Any]) -> bool:
    candidates = stored if isinstance(stored, list) else [stored]  # a list matches if any element does
    return any(_same(item, value) for item in candidates for value in wanted)


def metadata_matches(metadata: Mapping[str, Any], filter_: Mapping[str, Any] | None) -> bool:
    """Does a vector's metadata satisfy a canonical filter (every key; ``$in``: any value)?"""
    if not filter_:
        return True
    for key, condition in filter_.items():
        if key not in metadata:
            return False
        wanted = condition["$in"] if isinstance(condition, dict) else [condition]
        if not _value_matches(metadata[key], wanted):
            return False
    return True


# --- results ------------------------------------------------------------------------------------


def score_of(distance: float, metric: str) -> float:
    """cosine: the similarity ``1 - distance`` (higher is better); euclidean: the distance (lower is
    better)."""
    return 1.0 - distance if metric == "cosine" else distance


def shape_results(hits: Iterable[tuple[str, float, Mapping[str, Any]]], metric: str) -> list[dict[str, Any]]:
    """Store hits ``(key, distance, metadata)`` -> the API's results ``[{"id", "chunk", "score",
    "distance", "metadata", "text"}]``, nearest first."""
    results = []
    for key, distance, metadata in sorted(hits, key=lambda hit: (hit[1], hit[0])):
        metadata = metadata or {}
        document_id, chunk = metadata.get("doc_id"), metadata.get("chunk")
        if not isinstance(document_id, str) or not _is_int(chunk):
            try:
                document_id, chunk = split_chunk_key(key)
            except ValueError:
                document_id, chunk = key, 0
        distance = float(distance)
        text = metadata.get("text")
        results.append(
            {
                "id": document_id,
                "chunk": chunk,
                "score": score_of(distance, metric),
                "distance": distance,
                "metadata": {k: v for k, v in metadata.items() if k not in INTERNAL_KEYS},
                "text": text if isinstance(text, str) else None,
            }
        )
    return results
