"""SageMaker Pipelines definitions, built offline with the SageMaker Python SDK v3 at synth time."""

from mlops_platform.pipelines.training_definition import (
    TrainingPipelineSpec,
    build_training_pipeline_definition,
)

__all__ = ["TrainingPipelineSpec", "build_training_pipeline_definition"]
