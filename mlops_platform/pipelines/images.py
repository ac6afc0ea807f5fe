"""SageMaker framework images: their URIs through the SDK's public API, and the Python they run.

``image_uri`` calls ``sagemaker.core.image_uris.retrieve`` (the SDK's public lookup, not its
image table read by path) inside the training builder's offline SDK environment, and memoizes
the answer on disk per (framework, version, region, scope, SDK version): importing the SDK costs
seconds, so a warm synthesis skips it, like the pipeline-definition cache.

``IMAGE_PYTHON`` pins which Python each supported image runs, from the images' Dockerfiles
(github.com/aws/sagemaker-xgboost-container docker/<version>/base/Dockerfile.cpu,
github.com/aws/sagemaker-scikit-learn-container docker/<version>/base/Dockerfile.cpu): the job
code's syntax and the wheels packaged for a job (``mlops_platform/wheels.py``) follow it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

from ..paths import BUILD_DIR

CACHE_DIR = BUILD_DIR / "image-uris"
MINIMUM_PYTHON = (3, 10)

# (framework, version) -> the image's Python. Older images (Python 3.8) are listed so that a
# config naming one is told why it is refused.
IMAGE_PYTHON: dict[tuple[str, str], str] = {
    ("xgboost", "1.7-1"): "3.8",
    ("xgboost", "3.0-5"): "3.10",
    ("sklearn", "1.2-1"): "3.8",
    ("sklearn", "1.4-2"): "3.10",
    ("sklearn", "1.4-2-py312"): "3.12",
}
DEFAULT_XGBOOST = "3.0-5"
DEFAULT_SKLEARN = "1.4-2-py312"


def image_python(framework: str, version: str) -> str:
    """The Python of a supported image; ``ValueError`` (one line) for others and for Python < 3.10."""
    python = IMAGE_PYTHON.get((framework, version))
    supported = sorted(v for (f, v), p in IMAGE_PYTHON.items()
                       if f == framework and tuple(map(int, p.split("."))) >= MINIMUM_PYTHON)
    if python is None:
        raise ValueError(f"{framework} image {version!r} is not one the platform knows the Python of; "
                         f"allowed: {', '.join(supported)}")
    if tuple(map(int, python.split("."))) < MINIMUM_PYTHON:
        raise ValueError(f"the {framework} {version} image runs Python {python}; the job code needs "
                         f"Python >= {'.'.join(map(str, MINIMUM_PYTHON))}: use {', '.join(supported)}")
    return python


def _retrieve(framework: str, version: str, region: str, scope: str) -> str:
    from .training_definition import _offline_sdk_environment

    with _offline_sdk_environment(region):
        from sagemaker.core import image_uris

        options = {"py_version": "py3"} if framework == "sklearn" else {}
        return image_uris.retrieve(framework=framework, region=region, version=version, image_scope=scope,
                                   **options)


def image_uri(framework: str, version: str, region: str, scope: str = "training",
              cache_dir: Path = CACHE_DIR) -> str:
    """The image URI the SageMaker SDK gives for ``framework`` ``version`` in ``region``."""
    image_python(framework, version)
    key = hashlib.sha256(repr((framework, version, region, scope,
                               importlib.metadata.version("sagemaker"))).encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.txt"
    if path.exists():
        return path.read_text(encoding="utf-8")
    uri = _retrieve(framework, version, region, scope)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent synths never read half a file
    temporary.write_text(uri, encoding="utf-8")
    temporary.replace(path)
    return uri
