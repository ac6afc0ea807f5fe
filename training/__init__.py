"""Training code the platform runs inside SageMaker containers (one sub-package per example project)."""
