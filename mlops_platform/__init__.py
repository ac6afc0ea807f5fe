"""Infrastructure of the SageMaker MLOps platform: configuration, stages, stacks and constructs."""
