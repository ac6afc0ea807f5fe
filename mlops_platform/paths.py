"""Folders of the repository the infrastructure code reads from and builds into."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Lambda runtime code: the importable package `mlops_runtime` lives in this folder.
RUNTIME_ROOT = REPO_ROOT / "lambda"
# Reproducible build outputs (Lambda bundles, training sources, cached pipeline definitions);
# ignored by git, removed by `make clean`.
BUILD_DIR = REPO_ROOT / "build"
