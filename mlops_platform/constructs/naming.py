"""Construct-id helpers."""

from __future__ import annotations


def pascal(name: str) -> str:
    """``example-classifier`` -> ``ExampleClassifier``, for construct ids derived from config names."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
