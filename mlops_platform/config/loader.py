"""Read ``config/<env>.yaml`` files into :class:`PlatformConfig`, with one-line errors.

Every problem is reported as ``<file>: field '<path>' = <value>: <what is allowed>`` so that a
user sees the file, the field, the value and the rule without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import PlatformConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


class ConfigError(Exception):
    """A configuration file is missing or invalid. ``str(error)`` is ready to print."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _describe(error: dict[str, Any], allowed_fields: dict[tuple[Any, ...], list[str]]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "missing":
        return "is missing: required"
    if kind == "extra_forbidden":
        siblings = allowed_fields.get(loc[:-1])
        hint = f"allowed: {', '.join(siblings)}" if siblings else "not a known setting"
        return f"= {error['input']!r}: unknown field ({hint})"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"= {shown_value(error['input'])}: {message}"


def _at_named_field(error: dict[str, Any]) -> dict[str, Any]:
    """A rule shared with the runtime (a variant kind's ``check_sizing``) raises an error naming the field
    it is about (``field``, ``reason``): the line then names that field and shows its value."""
    cause = (error.get("ctx") or {}).get("error")
    field, reason = getattr(cause, "field", None), getattr(cause, "reason", None)
    if error["type"] != "value_error" or not field or reason is None or not isinstance(error["input"], dict):
        return error
    return {**error, "loc": (*error["loc"], *field.split(".")), "input": error["input"].get(field), "msg": reason}


LONGEST_VALUE = 200  # characters of a value shown in an error line; a longer section is abridged


def shown_value(value: Any) -> str:
    """The value as the error line shows it: a whole section (a rule across its fields, such as
    ``serving``'s) by its keys only, so that the line stays readable."""
    text = repr(value)
    if len(text) <= LONGEST_VALUE:
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: ..." for key in value) + "}"
    if isinstance(value, list):
        return f"[... {len(value)} items]"
    return text[:LONGEST_VALUE] + "..."


def _known_fields(model: type, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], list[str]]:
    """Field names of every nested section, keyed by its location, for 'unknown field' hints."""
    fields: dict[tuple[Any, ...], list[str]] = {prefix: list(model.model_fields)}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            fields.update(_known_fields(annotation, prefix + (name,)))
    return fields


def parse_config(data: Any, source: str) -> PlatformConfig:
    """Validate already-parsed YAML ``data``; ``source`` names it in error lines."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: must be a mapping of settings, got {type(data).__name__}"])
    try:
        config = PlatformConfig.model_validate(data)
    except ValidationError as exc:
        known = _known_fields(PlatformConfig)
        raise ConfigError(
            f"{source}: field '{_field_path(tuple(err['loc']))}' {_describe(err, known)}"
            for err in map(_at_named_field, exc.errors(include_url=False))
        ) from None
    # The functions' own settings rules (cross-field ones included), applied now rather than at run time.
    from ..function_settings import check  # imports the config models: not at module level

    problems = check(config, source)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: Path) -> PlatformConfig:
    """Load and validate one environment file; raises :class:`ConfigError`."""
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{shown}: no such configuration file"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{shown}:{where}: not valid YAML: {problem}"]) from None
    config = parse_config(data, shown)
    if config.environment != path.stem:
        raise ConfigError(
            [f"{shown}: field 'environment' = {config.environment!r}: must match the file name "
             f"({path.stem!r})"]
        )
    return config


def environment_names(config_dir: Path = CONFIG_DIR) -> tuple[str, ...]:
    """Names of the environments that have a file in ``config_dir``."""
    return tuple(path.stem for path in sorted(config_dir.glob("*.yaml")))


def load_environments(names: Iterable[str] | None = None, config_dir: Path = CONFIG_DIR) -> list[PlatformConfig]:
    """Load the named environments, or every ``*.yaml`` in ``config_dir`` when ``names`` is None.

    All files are validated before any error is raised, so one run reports every broken file.
    """
    paths = (
        [config_dir / f"{name}.yaml" for name in names]
        if names is not None
        else sorted(config_dir.glob("*.yaml"))
    )
    if not paths:
        raise ConfigError([f"{_display(config_dir)}: no environment files (*.yaml) found"])
    configs: list[PlatformConfig] = []
    problems: list[str] = []
    for path in paths:
        try:
            configs.append(load_config(path))
        except ConfigError as exc:
            problems.extend(exc.lines)
    if problems:
        raise ConfigError(problems)
    return configs


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
