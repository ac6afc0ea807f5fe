"""Content-addressed cache of pipeline definitions, so a warm ``cdk synth`` skips the SDK.

A definition is a deterministic function of its spec, the SDK version and the builder's code
(tests pin that), so those three are the cache key, and a hit returns exactly the bytes a fresh
build would. CDK token strings in the spec pass through the builder as opaque text, so a cached
definition is right for any process whose spec holds the same strings. Delete the folder (or
``make clean``) to force a rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from . import training_definition
from .training_definition import TrainingPipelineSpec, build_training_pipeline_definition

CACHE_DIR = Path(__file__).resolve().parents[2] / "build" / "pipeline-definitions"


def _key(spec: TrainingPipelineSpec) -> str:
    fields = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=list)
    builder = Path(training_definition.__file__).read_bytes()
    parts = (fields.encode(), importlib.metadata.version("sagemaker").encode(), builder)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def cached_training_pipeline_definition(spec: TrainingPipelineSpec, cache_dir: Path = CACHE_DIR) -> str:
    """:func:`build_training_pipeline_definition`, memoized on disk."""
    path = cache_dir / f"{_key(spec)}.json"
    if path.exists():
        return path.read_text(encoding="utf-8")
    definition = build_training_pipeline_definition(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")  # per process: concurrent synths never collide
    temporary.write_text(definition, encoding="utf-8")
    temporary.replace(path)  # atomic: a concurrent synth never reads half a file
    return definition
