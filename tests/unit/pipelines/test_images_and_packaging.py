"""Framework images through the SDK's public lookup, and train sources packed with their wheels."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mlops_platform.pipelines import images, packaging
from mlops_platform.pipelines.images import DEFAULT_SKLEARN, DEFAULT_XGBOOST, image_python, image_uri
from mlops_platform.wheels import linux_target


def test_default_images_run_python_310_or_later():
    assert tuple(map(int, image_python("xgboost", DEFAULT_XGBOOST).split("."))) >= (3, 10)
    assert tuple(map(int, image_python("sklearn", DEFAULT_SKLEARN).split("."))) >= (3, 10)
    with pytest.raises(ValueError, match="runs Python 3.8"):
        image_python("xgboost", "1.7-1")


def test_image_uri_is_the_sdks_public_lookup_memoized_on_disk(tmp_path, monkeypatch):
    from sagemaker.core import image_uris

    uri = image_uri("sklearn", DEFAULT_SKLEARN, "eu-west-1", cache_dir=tmp_path)
    assert uri == image_uris.retrieve(framework="sklearn", region="eu-west-1", version=DEFAULT_SKLEARN,
                                      py_version="py3", image_scope="training")
    assert uri.endswith(f"/sagemaker-scikit-learn:{DEFAULT_SKLEARN}-cpu-py3")

    def no_sdk(*args):
        raise AssertionError("a warm lookup must not call the SDK")

    monkeypatch.setattr(images, "_retrieve", no_sdk)
    assert image_uri("sklearn", DEFAULT_SKLEARN, "eu-west-1", cache_dir=tmp_path) == uri


def archive(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def source_with_a_wheel(tmp_path, requirements: str, wheel_name: str) -> tuple[Path, Path, Path]:
    """A train source (train.py, ``requirements``) and a wheels folder holding one wheel: (source,
    wheels folder, wheel)."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    (source / "requirements.txt").write_text(requirements)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / wheel_name
    wheel.write_bytes(b"wheel")
    return source, wheels, wheel


def test_a_source_dir_with_requirements_ships_wheels_and_installs_without_an_index(tmp_path, monkeypatch):
    source, wheels, _ = source_with_a_wheel(
        tmp_path, "# tracking\nmlflow-skinny==3.0.0  # client\n\nwandb==0.19.11\n",
        "wandb-0.19.11-py3-none-manylinux2014_x86_64.whl")
    fetched = []
    monkeypatch.setattr(packaging, "download", lambda lines, target: fetched.append((lines, target)) or wheels)

    target = linux_target("3.10")
    packed = packaging.pack_source_dir(source, tmp_path / "out", wheels=target)
    files = archive(packed)
    assert fetched == [(("mlflow-skinny==3.0.0", "wandb==0.19.11"), target)]
    assert files["wheels/wandb-0.19.11-py3-none-manylinux2014_x86_64.whl"] == b"wheel"
    requirements = [line for line in files["requirements.txt"].decode().splitlines() if not line.startswith("#")]
    assert requirements == ["--no-index", "--find-links wheels", "mlflow-skinny==3.0.0", "wandb==0.19.11"]
    # identical inputs: the same archive, not rebuilt
    assert packaging.pack_source_dir(source, tmp_path / "out", wheels=target) == packed
    # without a target (or a requirements file) the directory is packed as it is
    plain = archive(packaging.pack_source_dir(source, tmp_path / "plain"))
    assert set(plain) == {"requirements.txt", "train.py"} and b"--no-index" not in plain["requirements.txt"]


def test_the_archive_name_changes_with_the_code_and_the_wheels_but_wheels_are_not_read(tmp_path, monkeypatch):
    """The name's hash is CDK's asset hash: it must follow the code's bytes and each wheel's name and
    size; a wheel's bytes are not read (a published wheel's name names its content)."""
    source, wheels, wheel = source_with_a_wheel(tmp_path, "wandb==0.19.11\n", "wandb-0.19.11-py3-none-any.whl")
    monkeypatch.setattr(packaging, "download", lambda lines, target: wheels)
    target = linux_target("3.10")

    def pack() -> str:
        return packaging.asset_hash(packaging.pack_source_dir(source, tmp_path / "out", wheels=target))

    first = pack()
    assert len(first) == 16 and first in packaging.pack_source_dir(source, tmp_path / "out", wheels=target).name
    (source / "train.py").write_text("print('hello')\n")
    edited = pack()
    wheel.write_bytes(b"a torn whee")  # another size
    resized = pack()
    wheel.rename(wheels / "wandb-0.19.12-py3-none-any.whl")
    renamed = pack()
    assert len({first, edited, resized, renamed}) == 4
    read = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.name) or real_read_bytes(self))
    assert pack() == renamed and not [name for name in read if name.endswith(".whl")]
