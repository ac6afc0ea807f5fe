"""Content-addressed cache of pipeline definitions, so a warm ``cdk synth`` skips the SDK.

A definition is a deterministic function of its spec, the SDK version and the builder's code
(tests pin that), so those three are the cache key, and a hit returns exactly the bytes a fresh
build would. CDK token strings (``${Token[TOKEN.123]}``) pass through the builder as opaque text,
but their numbers change from one synthesis to the next; so they are swapped for stable
placeholders (numbered by first appearance) before keying and building, and swapped back in the
result. Delete the folder (or ``make clean``) to force a rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import training_definition
from .training_definition import CDK_TOKEN, TrainingPipelineSpec, build_training_pipeline_definition
from ..paths import BUILD_DIR

CACHE_DIR = BUILD_DIR / "pipeline-definitions"


def _key(spec: TrainingPipelineSpec) -> str:
    fields = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=list)
    builder = Path(training_definition.__file__).read_bytes()
    parts = (fields.encode(), importlib.metadata.version("sagemaker").encode(), builder)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _swap(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return CDK_TOKEN.sub(lambda match: mapping[match.group(0)], value)
    if isinstance(value, tuple):
        return tuple(_swap(item, mapping) for item in value)
    if isinstance(value, Mapping):
        return {key: _swap(item, mapping) for key, item in value.items()}
    return value


def _with_stable_tokens(spec: TrainingPipelineSpec) -> tuple[TrainingPipelineSpec, dict[str, str]]:
    """The spec with its tokens numbered by first appearance, and placeholder -> real token."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=list)
    tokens = list(dict.fromkeys(CDK_TOKEN.findall(text)))
    forward = {token: f"${{Token[CACHED.{index}]}}" for index, token in enumerate(tokens)}
    changes = {f.name: _swap(getattr(spec, f.name), forward) for f in dataclasses.fields(spec)}
    return dataclasses.replace(spec, **changes), {v: k for k, v in forward.items()}


def cached_training_pipeline_definition(spec: TrainingPipelineSpec, cache_dir: Path = CACHE_DIR) -> str:
    """:func:`build_training_pipeline_definition`, memoized on disk."""
    stable, back = _with_stable_tokens(spec)
    path = cache_dir / f"{_key(stable)}.json"
    if path.exists():
        definition = path.read_text(encoding="utf-8")
    else:
        definition = build_training_pipeline_definition(stable)
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")  # per process: concurrent synths never collide
        temporary.write_text(definition, encoding="utf-8")
        temporary.replace(path)  # atomic: a concurrent synth never reads half a file
    return CDK_TOKEN.sub(lambda match: back.get(match.group(0), match.group(0)), definition)
