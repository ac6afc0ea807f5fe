"""Shared by the GNN tests: the example's modules loaded from their folders (they are not packages),
and a tiny trained model (torch tests only; imported by name, pytest puts this folder on sys.path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVING_DIR = REPO_ROOT / "serving" / "example_gnn"
TRAINING_DIR = REPO_ROOT / "training" / "example_gnn"


def load(directory: Path, name: str) -> ModuleType:
    """``directory/name.py`` as module ``name`` (the folder goes on sys.path: its siblings import it)."""
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
