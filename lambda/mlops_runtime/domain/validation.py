"""pydantic at the runtime's edges: the specs the stacks write, parsed strictly, and one-line errors.

The functions' settings (``mlops_runtime.settings``) hold the domain's specs (endpoint specs,
scaling entries, monitors, ...), built from the config when it loads, so a bad config fails there
with one line naming the field. :func:`parse` validates such a value as strict JSON (:data:`OURS`: a JSON
``true`` is not a count, an integer is a number, unknown keys are errors) and turns pydantic's
error into ``(field, reason)``: the field as a dotted path (``variants.champion.instance_type``,
``alarm_names[0]``) and a short reason, which each domain module raises as its own error type.
Value rules live in the types (:func:`matching`, :func:`int_between`, :func:`count_between`) or
in a dataclass's ``__post_init__``, which raises the domain error with the field it is about.

AWS's event shapes are read leniently instead (:data:`AWS`, :func:`parse_event`): unknown keys
are ignored and pydantic's lax conversions apply.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

# No pydantic plugins are used: skip their discovery, which scans the entry points of every installed
# distribution when the first model is built (tens of milliseconds of a Lambda cold start). Set
# before the first model is built; an explicit setting in the environment wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError

T = TypeVar("T")

# Specs the stacks write: strict JSON types, unknown keys are errors.
OURS = ConfigDict(strict=True, extra="forbid", defer_build=True)  # built when first used: cold start
# AWS's event shapes: keys AWS adds are ignored, values converted where pydantic's lax mode can.
AWS = ConfigDict(extra="ignore", defer_build=True)


def matching(pattern: re.Pattern[str], what: str, max_length: int | None = None) -> Any:
    """A string type that must match ``pattern`` (``what`` describes it in the error)."""

    def check(value: str) -> str:
        if max_length is not None and len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if not pattern.match(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return Annotated[str, AfterValidator(check)]


def int_between(low: int, high: int) -> Any:
    """An integer type from ``low`` to ``high`` inclusive."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value!r}")
        return value

    return Annotated[int, AfterValidator(check)]


def count_between(item: Any, low: int, high: int, what: str, *, distinct: bool = False) -> Any:
    """A tuple of ``item`` (a JSON list) holding ``low`` to ``high`` entries (``distinct``: no repeats)."""

    def check(values: tuple) -> tuple:
        if not low <= len(values) <= high:
            raise ValueError(f"must list {low} to {high} {what}" if low else f"at most {high} {what}")
        if distinct and len(set(values)) != len(values):
            raise ValueError(f"lists one of the {what} twice")
        return values

    return Annotated[tuple[item, ...], AfterValidator(check)]


def parse(
    target: type[T], data: object, error: Callable[[str, str], Exception], where: str = ""
) -> T:
    """Decoded JSON ``data`` validated as ``target``; ``error(field, reason)`` if it is not valid.

    ``where`` prefixes the field path (e.g. ``endpoints[0]``).
    """
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as failure:
        raise error(where, f"is not JSON data: {failure}") from None
    try:
        return _adapter(target).validate_json(text)  # JSON mode: a list is a tuple, an object a dataclass
    except ValidationError as failure:
        field, reason = first_problem(failure, target, data)
        raise error(_join(where, field), reason) from None


def json_object(raw: str | None, name: str, keyed_by: str, error: Callable[[str], Exception]) -> dict:
    """The JSON object in setting ``name`` (``raw``: its text); ``error(message)`` if unset or not one."""
    if raw is None or not raw.strip():
        raise error(f"{name} is not set")
    try:
        data = json.loads(raw)
    except ValueError as failure:
        raise error(f"{name} is not valid JSON: {failure}") from None
    if not isinstance(data, dict):
        raise error(f"{name} must be a JSON object keyed by {keyed_by}")
    return data


def parse_event(target: type[T], event: object, error: Callable[[str], Exception]) -> T:
    """An AWS event (or the part of it the caller reads) validated leniently as ``target``."""
    try:
        return _adapter(target).validate_python(event)
    except ValidationError as failure:
        field, reason = first_problem(failure, target, event)
        raise error(f"{field}: {reason}" if field else reason) from None


def json_text(value: object) -> object:
    """A ``BeforeValidator``: an object delivered as JSON text (as test invocations send ``detail``)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as failure:
        raise ValueError(f"is a string but not JSON ({failure})") from None


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(target: Any) -> TypeAdapter:
    if target not in _ADAPTERS:
        _ADAPTERS[target] = TypeAdapter(target)
    return _ADAPTERS[target]


def dump(value: Any) -> dict[str, Any]:
    """A spec as JSON-ready data, without the unset optional fields (what :func:`parse` reads back)."""
    return _adapter(type(value)).dump_python(value, mode="json", exclude_none=True)


# --- the error as one line -----------------------------------------------------------------------

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "an object",
    "dataclass_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def first_problem(failure: ValidationError, target: Any, data: object) -> tuple[str, str]:
    """``(field path, reason)`` of the first error of ``failure`` (``data``: the input validated)."""
    problem = failure.errors(include_url=False)[0]
    kind, ctx, value = problem["type"], problem.get("ctx") or {}, problem.get("input")
    field, cls = _walk(target, data, problem["loc"])
    cause = ctx.get("error")
    if kind == "value_error" and hasattr(cause, "field") and hasattr(cause, "reason"):
        return _join(field, cause.field), cause.reason  # a domain error raised by __post_init__
    if kind in ("value_error", "assertion_error"):
        return field, str(cause) if cause is not None else problem["msg"]
    if kind in ("missing", "missing_argument") or (kind in _TYPE_NAMES and value is None):
        return field, "is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _field_names(cls)
        return field, "unknown field" + (f"; expected one of {', '.join(known)}" if known else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ctx.get("discriminator", "").strip("'")
        tags = ctx.get("expected_tags", "").replace("'", "")
        got = f", got {ctx['tag']!r}" if "tag" in ctx else ""
        return _join(field, key), f"must be one of {tags}{got}"
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return field, f"must be one of {expected}, got {value!r}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return field, "must not be empty"
    if kind in _TYPE_NAMES:
        got = "a boolean" if isinstance(value, bool) else type(value).__name__
        return field, f"expected {_TYPE_NAMES[kind]}, got {got}"
    return field, problem["msg"]


def _join(prefix: str, field: str) -> str:
    if not prefix or not field:
        return prefix or field
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


def _walk(target: Any, data: object, loc: tuple) -> tuple[str, Any]:
    """The dotted path of ``loc`` and the dataclass that holds its last part.

    pydantic puts the tag of a discriminated union into ``loc`` (``variants.champion.realtime``);
    the unions here are tagged by ``kind``, so a part equal to the object's ``kind`` is left out.
    """
    path, node, tp, holder = "", data, target, None
    for part in loc:
        tp = _choose(tp, node)
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            tp = _item_type(tp, value=False)
            continue
        if isinstance(node, Mapping) and part not in node and node.get("kind") == part:
            continue  # a union's tag
        fields = getattr(tp, "__pydantic_fields__", None)
        if fields is not None:
            holder = tp
            tp = fields[part].annotation if part in fields else None
        else:
            tp = _item_type(tp, value=True)
        path = _join(path, str(part))
        node = node.get(part) if isinstance(node, Mapping) else None
    last = _choose(tp, node)
    if hasattr(last, "__pydantic_fields__"):
        holder = last
    return path, holder


def _choose(tp: Any, node: object) -> Any:
    """``tp`` without ``Annotated``/``None``; of a union of specs, the one whose ``kind`` ``node`` has."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        kind = node.get("kind") if isinstance(node, Mapping) else None
        for member in members:
            field = getattr(member, "__pydantic_fields__", {}).get("kind")
            if field is not None and field.default == kind:
                return member
        return members[0] if len(members) == 1 else None
    return tp


def _item_type(tp: Any, *, value: bool) -> Any:
    args = typing.get_args(tp)
    if not args:
        return None
    return args[-1] if value else args[0]


def _field_names(cls: Any) -> list[str]:
    return sorted(getattr(cls, "__pydantic_fields__", {}) or ())
