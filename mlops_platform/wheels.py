"""Python packages for code that runs somewhere else (a Lambda layer, a SageMaker job), as wheels
for that place's platform and Python, and installed from them without an index.

Wheels are downloaded once with ``pip download --only-binary=:all: --platform ... --python-version
...`` into ``build/wheels/<key>`` (the key hashes the requirements and the target), so a second
synthesis needs no network; ``make install`` fills the cache (``python -m mlops_platform.wheels``)
and synthesis after it works offline. Installing (``pip install --no-index --find-links``) reads
only that folder. Nothing binary is committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import BUILD_DIR

WHEEL_CACHE = BUILD_DIR / "wheels"


class WheelsUnavailable(RuntimeError):
    """One line: which wheels could not be fetched, and what to do."""


@dataclass(frozen=True)
class WheelTarget:
    """Where the packages will run: ``python_version`` like ``3.13``, pip ``--platform`` tags."""

    python_version: str
    platforms: tuple[str, ...]

    def pip_options(self) -> list[str]:
        options = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python_version]
        for platform in self.platforms:
            options += ["--platform", platform]
        return options


def linux_target(python_version: str, machine: str = "x86_64") -> WheelTarget:
    """A glibc Linux target (SageMaker images, Lambda), newest manylinux tags first."""
    return WheelTarget(python_version, tuple(f"{tag}_{machine}" for tag in
                                             ("manylinux_2_28", "manylinux_2_17", "manylinux2014")))


def local_target() -> WheelTarget:
    """This interpreter and machine (Linux): what the tests install packaged wheels into."""
    import platform

    return linux_target(f"{sys.version_info.major}.{sys.version_info.minor}", platform.machine())


def _key(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def _pip(args: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if done.returncode:
        reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise WheelsUnavailable(f"{what}: {reason} (run `make install` once with access to PyPI; "
                                f"wheels are cached in {WHEEL_CACHE.relative_to(BUILD_DIR.parent)})")


def _atomically(target: Path, fill) -> Path:
    """Fill a per-process staging folder and rename it into place: concurrent synths never see
    half a folder; if another process won the race, its identical copy stays."""
    if target.exists():
        return target
    staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fill(staging)
        staging.rename(target)
    except OSError:
        if not target.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download(requirements: Sequence[str], target: WheelTarget, cache: Path = WHEEL_CACHE) -> Path:
    """The folder holding wheels for ``requirements`` and all their dependencies on ``target``."""
    requirements = tuple(requirements)

    def fill(folder: Path) -> None:
        _pip(["download", "--quiet", "--dest", str(folder), *target.pip_options(), *requirements],
             f"cannot download wheels of {', '.join(requirements)} for Python {target.python_version}")

    return _atomically(cache / _key("download", requirements, target), fill)


def install(requirements: Sequence[str], target: WheelTarget, into: Path, cache: Path = WHEEL_CACHE) -> Path:
    """``requirements`` installed (from the cached wheels only) into ``into``, a folder like a
    layer's ``python/``; returns ``into``."""
    wheels = download(requirements, target, cache)

    def fill(folder: Path) -> None:
        _pip(["install", "--quiet", "--no-index", "--find-links", str(wheels), "--no-compile",
              "--target", str(folder), *target.pip_options(), *requirements],
             f"cannot install {', '.join(requirements)} from {wheels}")

    return _atomically(into, fill)


def _write_zip(path: Path, entries: Iterable[tuple[str, Path]], base: Path | None = None) -> Path:
    """Write ``entries`` (archive name, file) in their order, with fixed times and modes, so identical
    inputs give a byte-identical zip; with ``base`` (a zip written this way), its entries come first and
    are copied as they are. Per-process temporary file, renamed into place."""
    staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    if base is not None:
        shutil.copyfile(base, staging)
    with zipfile.ZipFile(staging, "a" if base is not None else "w", zipfile.ZIP_DEFLATED) as archive:
        for name, file in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    staging.replace(path)
    return path


def _files(folder: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """``folder``'s files (no bytecode) in path order, each with its name in the archive."""
    return [(f"{prefix}{file.relative_to(folder).as_posix()}", file)
            for file in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)]


def installed_zip(requirements: Sequence[str], target: WheelTarget, prefix: str,
                  cache: Path = WHEEL_CACHE) -> Path:
    """``requirements`` installed under ``prefix/`` (``python`` for a Lambda layer; ``""`` for the
    archive's root) in a zip file that is byte-identical for identical requirements (sorted
    entries, fixed times), so its asset hash changes only when they do, and CDK stages one file
    instead of a folder of thousands."""
    path = cache / f"{_key('zip', tuple(requirements), target, prefix)}.zip"
    if path.exists():
        return path
    folder = install(requirements, target, cache / f"{_key('install', tuple(requirements), target)}-installed")
    return _write_zip(path, _files(folder, f"{prefix}/" if prefix else ""))


def code_zip(code_dir: Path, requirements: Sequence[str], target: WheelTarget, cache: Path = WHEEL_CACHE) -> Path:
    """One zip holding ``requirements`` installed at its root and ``code_dir``'s files beside them,
    so ``python3 -m <module>`` run where it is extracted imports them without any index (a job's
    code asset). ``code_dir`` is named by its content (``lambda_bundles.stage_bundle``), so the zip
    is rebuilt only when the code or the requirements change, and then by appending the code to the
    cached packages' zip, not by compressing the packages again."""
    path = code_dir.with_name(f"{code_dir.name}-{_key(tuple(requirements), target)}.zip")
    if path.exists():
        return path
    packages = installed_zip(requirements, target, "", cache)
    code = _files(code_dir)
    with zipfile.ZipFile(packages) as archive:
        clashes = set(archive.namelist()) & {name for name, _ in code}
    if clashes:  # a zip may hold a name twice, and which one extraction keeps is not ours to leave open
        raise ValueError(f"{code_dir} and the packages {', '.join(requirements)} both hold {sorted(clashes)[:3]}")
    return _write_zip(path, code, base=packages)


def main() -> int:
    """Prefetch every wheel set synthesis needs (``make install`` runs this once)."""
    from .wheel_sets import all_wheel_sets

    try:
        for requirements, target in all_wheel_sets():
            download(requirements, target)
    except WheelsUnavailable as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
