"""Generate ``docs/configuration.md`` from the pydantic models of ``config/<env>.yaml``.

    python -m mlops_platform.tools.config_reference [--check] [--output docs/configuration.md]

Walks :class:`mlops_platform.config.models.PlatformConfig` recursively and writes one section
per model (``PlatformConfig`` first, then the nested models depth-first in order of first
appearance), each a table of its fields: dotted path (``serving.endpoints[].variant.kind``),
human-readable type, default (``required`` when there is none; factories are called), the
constraints visible on the field (bounds, lengths, patterns, strictness, and the rule of each
annotated or single-field validator, read from the error it raises for an invalid probe value)
and the field's description. A discriminated union (e.g. the endpoint variant kinds) gets one
sub-section per member.

The output is deterministic: a re-generation without model changes is byte-identical.
``--check`` writes nothing and exits 1 with one line when the file differs from what would be
generated (``tests/unit/config/test_config_reference.py`` makes the same comparison).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..config.models import PlatformConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "configuration.md"
COMMAND = "python -m mlops_platform.tools.config_reference"
# Validator messages longer than this (e.g. the list of every SageMaker region) are cut at ": ".
_MAX_RULE = 320

EXAMPLE = """\
# Abridged from config/dev.yaml: every key not given takes the default documented below.
environment: dev
account: "111111111111"          # quoted: account ids are strings
region: eu-west-1
name_prefix: mlops-dev
removal_policy: destroy          # prod must use retain
tags:
  project: mlops-platform
  cost_centre: ml-research
training:
  pipelines:
    - name: example-classifier
      model_package_group: example-classifier
      input_prefix: example-classifier/
serving:
  endpoints:
    - name: example-classifier
      model_package_group: example-classifier
      variant: {kind: serverless, memory_mb: 2048, max_concurrency: 5}
      challenger_initial_weight: 0   # serverless endpoints hold one variant
      data_capture: null             # not supported on serverless
  api:
    rate_limit: 20
    burst_limit: 40
"""


# --- the model tree ---------------------------------------------------------------------------

@dataclass
class Row:
    path: str
    type: str
    default: str
    constraints: str
    description: str


@dataclass
class ModelSection:
    model: type[BaseModel]
    paths: list[str]
    rows: list[Row] = field(default_factory=list)
    discriminator: tuple[str, str] | None = None  # (field name, value) for a union member


@dataclass
class UnionSection:
    path: str
    discriminator: str
    members: list[ModelSection]


Section = ModelSection | UnionSection


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap_annotated(annotation: Any) -> tuple[Any, list[Any]]:
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], metadata + list(args[1:])
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _nested_models(annotation: Any, path: str) -> Iterator[tuple[type[BaseModel], str]]:
    """The models reachable from one field's annotation, each with its dotted path."""
    annotation, _ = _unwrap_annotated(annotation)
    if _is_model(annotation):
        yield annotation, path
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        for arg in args:
            yield from _nested_models(arg, path)
    elif origin in (tuple, list, set, frozenset):
        for arg in args:
            if arg is not Ellipsis:
                yield from _nested_models(arg, f"{path}[]")
    elif origin is dict and len(args) == 2:
        yield from _nested_models(args[1], f"{path}.<key>")


def _union_members(field_info: FieldInfo) -> list[type[BaseModel]] | None:
    """The member models of a discriminated union field, or None."""
    if not isinstance(field_info.discriminator, str):
        return None
    annotation, _ = _unwrap_annotated(field_info.annotation)
    members = [_unwrap_annotated(a)[0] for a in typing.get_args(annotation) if a is not type(None)]
    return members if members and all(_is_model(m) for m in members) else None


def _literal_value(model: type[BaseModel], name: str) -> str:
    annotation, _ = _unwrap_annotated(model.model_fields[name].annotation)
    values = typing.get_args(annotation)
    return str(values[0]) if typing.get_origin(annotation) is typing.Literal and values else model.__name__


def collect(root: type[BaseModel] = PlatformConfig) -> list[Section]:
    """Every model under ``root``, depth-first in order of first appearance, with its rows."""
    sections: list[Section] = []
    by_model: dict[type[BaseModel], ModelSection] = {}

    def describe_fields(section: ModelSection) -> list[tuple[type[BaseModel], str, FieldInfo, str]]:
        prefix = section.paths[0]
        nested = []
        for name, info in section.model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            section.rows.append(_row(section.model, name, info, path))
            nested.append((section.model, name, info, path))
        return nested

    def visit(model: type[BaseModel], path: str) -> None:
        if model in by_model:
            if path not in by_model[model].paths:
                by_model[model].paths.append(path)
            return
        section = ModelSection(model, [path])
        by_model[model] = section
        sections.append(section)
        visit_fields(describe_fields(section))

    def visit_fields(fields: list[tuple[type[BaseModel], str, FieldInfo, str]]) -> None:
        for _owner, _name, info, path in fields:
            members = _union_members(info)
            if members is None:
                for model, sub_path in _nested_models(info.annotation, path):
                    visit(model, sub_path)
                continue
            discriminator = str(info.discriminator)
            union = UnionSection(path, discriminator, [])
            sections.append(union)
            pending = []
            for member in members:
                if member in by_model:
                    by_model[member].paths.append(path)
                    continue
                section = ModelSection(member, [path], discriminator=(discriminator, _literal_value(member, discriminator)))
                by_model[member] = section
                union.members.append(section)
                pending.extend(describe_fields(section))
            visit_fields(pending)

    visit(root, "")
    return sections


# --- rendering of one field -------------------------------------------------------------------

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _path_anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") + "-kinds"


def _join_or(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def render_type(annotation: Any, discriminator: str | None = None, nested: bool = False) -> str:
    """A human-readable type: ``list of string``, ``one of `a`, `b```, ``integer or null``...

    ``nested`` (inside a list or map): a union is put in parentheses."""
    annotation, _ = _unwrap_annotated(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if _is_model(annotation):
        return f"[{annotation.__name__}](#{_anchor(annotation)})"
    choices: list[Any] | None = None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = [member.value for member in annotation]
    elif origin is typing.Literal:
        choices = list(args)
    if choices is not None:
        if len(choices) == 1:
            return f"`{choices[0]}`"
        text = "one of " + ", ".join(f"`{value}`" for value in choices)
        return f"({text})" if nested else text
    if _is_union(annotation):
        members = [a for a in args if a is not type(None)]
        rendered = [render_type(a, nested=True) for a in members]
        if discriminator and all(_is_model(_unwrap_annotated(m)[0]) for m in members):
            text = "one of " + ", ".join(rendered) + f", chosen by `{discriminator}`"
        else:
            text = _join_or(rendered)
        if type(None) in args:
            if nested:
                return f"({_join_or(rendered + ['null'])})"
            return f"{text}, or null" if " " in text else f"{text} or null"
        return f"({text})" if nested and len(members) > 1 else text
    if origin in (tuple, list, set, frozenset):
        if len(args) == 2 and args[1] is Ellipsis or origin is not tuple:
            return f"list of {render_type(args[0], nested=True)}" if args else "list"
        return "tuple (" + ", ".join(render_type(a, nested=True) for a in args) + ")"
    if origin is dict:
        if not args:
            return "map"
        return f"map of {render_type(args[0], nested=True)} to {render_type(args[1], nested=True)}"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _yaml(value: Any) -> str:
    """A default as YAML flow text (what one would write in config/<env>.yaml)."""
    def plain(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json", exclude_unset=True)
        if isinstance(item, Enum):
            return item.value
        if isinstance(item, (tuple, list, set, frozenset)):
            return [plain(i) for i in item]
        if isinstance(item, dict):
            return {str(plain(k)): plain(v) for k, v in item.items()}
        return item

    text = yaml.safe_dump(plain(value), default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("\n...\n").rstrip("\n")


def render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        factory = info.default_factory
        value = factory({}) if getattr(info, "default_factory_takes_data", False) else factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    return f"`{_yaml(value)}`"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _rule(message: str) -> str:
    message = " ".join(message.split())
    if "allowed: " in message:  # "unknown x ['probe']; allowed: a, b" -> "allowed: a, b"
        message = message[message.index("allowed: "):]
    if len(message) > _MAX_RULE and ": " in message:
        message = message[: message.index(": ")] + " (the error message lists them)"
    return message


def _probe(validator: Callable[..., Any], annotation: Any) -> str | None:
    """The rule a validator enforces: the message it raises for a value no rule accepts."""
    annotation, _ = _unwrap_annotated(annotation)
    origin = typing.get_origin(annotation)
    if _is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(_unwrap_annotated(members[0])[0]) if members else None
        annotation = _unwrap_annotated(members[0])[0] if members else annotation
    if origin in (tuple, list, set, frozenset):
        probes: tuple[Any, ...] = ((),)
    elif origin is dict:
        probes = ({"": None},)
    elif annotation in (int, float):
        probes = (-1, 0)
    else:
        probes = ("", -1)
    for probe in probes:
        try:
            validator(probe)
        except (ValueError, AssertionError) as error:
            return _rule(str(error))
        except Exception:  # noqa: BLE001 - a probe of the wrong shape says nothing about the rule
            continue
    return None


def _metadata_constraints(metadata: list[Any], annotation: Any) -> list[str]:
    found: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found += _metadata_constraints(list(item.metadata), annotation)
        elif isinstance(item, annotated_types.Ge):
            found.append(f">= {_number(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            found.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            found.append(f"<= {_number(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            found.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.MinLen):
            found.append(f"length >= {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            found.append(f"length <= {item.max_length}")
        elif isinstance(item, annotated_types.MultipleOf):
            found.append(f"multiple of {_number(item.multiple_of)}")
        elif type(item).__name__ == "Strict" and getattr(item, "strict", False):
            found.append("strict type (no coercion)")
        elif getattr(item, "pattern", None) is not None:
            found.append(f"pattern `{item.pattern}`")
        elif type(item).__name__ in ("AfterValidator", "BeforeValidator", "PlainValidator"):
            rule = _probe(item.func, annotation)
            if rule:
                found.append(rule)
    return found


def _inner_constraints(annotation: Any) -> list[str]:
    """Constraints carried by the type itself (``Annotated`` aliases), also inside lists/maps."""
    annotation, metadata = _unwrap_annotated(annotation)
    found = _metadata_constraints(metadata, annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        for arg in args:
            found += _inner_constraints(arg)
    elif origin in (tuple, list, set, frozenset):
        for arg in args:
            if arg is not Ellipsis:
                found += [f"each item: {c}" for c in _inner_constraints(arg)]
    elif origin is dict and len(args) == 2:
        found += [f"each key: {c}" for c in _inner_constraints(args[0])]
        found += [f"each value: {c}" for c in _inner_constraints(args[1])]
    return found


def _field_validator_rules(model: type[BaseModel], name: str, info: FieldInfo) -> list[str]:
    """Rules of ``@field_validator``s that check this one field on its own (no ``info``)."""
    rules = []
    decorators = model.__pydantic_decorators__.field_validators
    for decorator_name in sorted(decorators):
        decorator = decorators[decorator_name]
        if name not in decorator.info.fields or decorator.info.mode != "after":
            continue
        try:
            parameters = inspect.signature(decorator.func).parameters
        except (TypeError, ValueError):
            continue
        if len(parameters) != 1:  # (value, info): a rule across fields, documented in the description
            continue
        rule = _probe(decorator.func, info.annotation)
        if rule:
            rules.append(rule)
    return rules


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split()) if doc.strip() else ""


def _row(model: type[BaseModel], name: str, info: FieldInfo, path: str) -> Row:
    annotation = info.annotation
    discriminator = info.discriminator if isinstance(info.discriminator, str) else None
    constraints = _metadata_constraints(list(info.metadata), annotation)
    constraints += _inner_constraints(annotation)
    constraints += _field_validator_rules(model, name, info)
    description = info.description or ""
    if not description and discriminator and _union_members(info):
        description = (f"One of the kinds in [`{path}` kinds](#{_path_anchor(path)}), "
                       f"chosen by its `{discriminator}`.")
    if not description:
        models = [m for m, _ in _nested_models(annotation, path)]
        if len(models) == 1:
            description = _docstring(models[0])
    return Row(
        path=path,
        type=render_type(annotation, discriminator),
        default=render_default(info),
        constraints="; ".join(_dedupe(constraints)),
        description=description,
    )


# --- the document -----------------------------------------------------------------------------

def _table(rows: list[Row]) -> list[str]:
    lines = ["| Field | Type | Default | Constraints | Description |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = [f"`{row.path}`", row.type, row.default, row.constraints, row.description]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _model_block(section: ModelSection, level: str, title: str) -> list[str]:
    lines = [f'<a id="{_anchor(section.model)}"></a>', "", f"{level} {title}", ""]
    where = ", ".join(f"`{p}`" for p in section.paths) if section.paths[0] else "the top level of the file"
    lines += [f"Where: {where}.", ""]
    doc = _docstring(section.model)
    if doc:
        lines += [doc, ""]
    return lines + _table(section.rows) + [""]


def render(sections: list[Section] | None = None) -> str:
    sections = collect() if sections is None else sections
    lines = [
        "<!-- Generated by `" + COMMAND + "` from mlops_platform/config/models.py. Do not edit. -->",
        "",
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `mlops_platform/config/models.py`; do not edit this file.",
        f"After changing a model, regenerate it with `make docs` (or `{COMMAND}`);",
        "`tests/unit/config/test_config_reference.py` fails while it is out of date.",
        "",
        "Each environment is one file, `config/<env>.yaml`, validated against `PlatformConfig` when the app",
        "is synthesized. Unknown keys are errors. A field path such as `serving.endpoints[].variant.kind`",
        "means: the key `kind` of the `variant` of each item of the list `serving.endpoints`. Defaults are",
        "written as YAML; a default of `{}` means the section is present with every field at its default.",
        "Constraints are those visible on the field; rules across fields (e.g. `monitoring` needs data",
        "capture) are checked too and reported with the file and field when synthesis starts.",
        "",
        "## Example",
        "",
        "The complete files are [config/dev.yaml](../config/dev.yaml),",
        "[config/staging.yaml](../config/staging.yaml) and [config/prod.yaml](../config/prod.yaml).",
        "",
        "```yaml",
        *EXAMPLE.rstrip("\n").split("\n"),
        "```",
        "",
        "## Sections",
        "",
    ]
    for section in sections:
        if isinstance(section, ModelSection):
            lines.append(f"- [{section.model.__name__}](#{_anchor(section.model)})"
                         + (f" (`{section.paths[0]}`)" if section.paths[0] else ""))
        else:
            members = ", ".join(f"[`{m.discriminator[1]}`](#{_anchor(m.model)})" for m in section.members
                                if m.discriminator)
            lines.append(f"- [`{section.path}` kinds](#{_path_anchor(section.path)}): {members}")
    lines.append("")
    for section in sections:
        if isinstance(section, ModelSection):
            lines += _model_block(section, "##", section.model.__name__)
            continue
        lines += [
            f'<a id="{_path_anchor(section.path)}"></a>',
            "",
            f"## `{section.path}` kinds",
            "",
            f"One of the following, chosen by its `{section.discriminator}`.",
            "",
        ]
        for member in section.members:
            value = member.discriminator[1] if member.discriminator else member.model.__name__
            lines += _model_block(member, "###", f"`{section.discriminator}: {value}` ({member.model.__name__})")
    return "\n".join(lines).rstrip("\n") + "\n"


def check(output: Path = DEFAULT_OUTPUT) -> str | None:
    """None when ``output`` is up to date, else the one-line reason."""
    expected = render()
    try:
        current = output.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{_display(output)} is missing; run `make docs` (or `{COMMAND}`)"
    if current != expected:
        return f"{_display(output)} is out of date with mlops_platform/config/models.py; run `make docs` (or `{COMMAND}`)"
    return None


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: docs/configuration.md")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the file differs from what would be generated")
    args = parser.parse_args(argv)
    if args.check:
        problem = check(args.output)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = render()
    if not args.output.exists() or args.output.read_text(encoding="utf-8") != text:
        args.output.write_text(text, encoding="utf-8")
    print(f"wrote {_display(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
