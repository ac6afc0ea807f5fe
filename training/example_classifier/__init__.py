"""Example tabular binary classifier run by the platform's SageMaker Pipeline (see README.md)."""
