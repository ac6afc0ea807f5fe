"""The definition cache returns exactly what a build returns, and only for the same inputs."""

from __future__ import annotations

import dataclasses

import pytest

from mlops_platform.pipelines import cache
from mlops_platform.pipelines.training_definition import TrainingPipelineSpec

SPEC = TrainingPipelineSpec(
    pipeline_name="p", region="eu-west-1", role_arn="arn:aws:iam::111111111111:role/r",
    default_bucket="b", input_data_uri="s3://b/in", output_uri="s3://b/out",
    model_package_group_name="g", preprocess_code_uri="s3://b/p.py", evaluate_code_uri="s3://b/e.py",
    train_source_uri="s3://b/s.tar.gz",
)


@pytest.fixture
def builds(monkeypatch):
    calls = []

    def fake_build(spec):
        calls.append(spec)
        return f'{{"built-for": "{spec.pipeline_name}", "n": {len(calls)}}}'

    monkeypatch.setattr(cache, "build_training_pipeline_definition", fake_build)
    return calls


def test_second_call_is_served_from_disk(tmp_path, builds):
    first = cache.cached_training_pipeline_definition(SPEC, tmp_path)
    second = cache.cached_training_pipeline_definition(SPEC, tmp_path)
    assert first == second and len(builds) == 1


def test_any_spec_change_misses(tmp_path, builds):
    cache.cached_training_pipeline_definition(SPEC, tmp_path)
    changed = dataclasses.replace(SPEC, hyperparameters={"eta": "0.1"})
    assert '"n": 2' in cache.cached_training_pipeline_definition(changed, tmp_path)


def test_builder_change_misses(tmp_path, builds, monkeypatch):
    cache.cached_training_pipeline_definition(SPEC, tmp_path)
    monkeypatch.setattr(cache.Path, "read_bytes", lambda self: b"a different builder")
    cache.cached_training_pipeline_definition(SPEC, tmp_path)
    assert len(builds) == 2


def test_token_numbers_do_not_change_the_key_and_come_back(tmp_path, builds, monkeypatch):
    """CDK numbers tokens differently from one synthesis to the next: same cache entry, own tokens."""
    monkeypatch.setattr(cache, "build_training_pipeline_definition",
                        lambda spec: builds.append(spec) or f'{{"role": "{spec.role_arn}", "key": "{spec.kms_key_arn}"}}')
    first = dataclasses.replace(SPEC, role_arn="${Token[TOKEN.1299]}", kms_key_arn="${Token[TOKEN.1203]}")
    second = dataclasses.replace(SPEC, role_arn="${Token[TOKEN.1295]}", kms_key_arn="${Token[TOKEN.1199]}")
    assert cache.cached_training_pipeline_definition(first, tmp_path) == \
        '{"role": "${Token[TOKEN.1299]}", "key": "${Token[TOKEN.1203]}"}'
    assert cache.cached_training_pipeline_definition(second, tmp_path) == \
        '{"role": "${Token[TOKEN.1295]}", "key": "${Token[TOKEN.1199]}"}'
    assert len(builds) == 1
