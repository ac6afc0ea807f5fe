"""Reproducible ``sourcedir.tar.gz`` archives for SageMaker framework containers' script mode.

Framework containers download ``sagemaker_submit_directory`` as a gzipped tarball. CDK assets
of a directory are zipped, so the tarball is built here and uploaded as a file asset. The archive
is byte-identical for identical sources (sorted entries, fixed times, owners and modes), so the
asset hash, and with it the template, changes only when the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from ..wheels import WheelTarget, download

_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _included(path: Path, root: Path) -> bool:
    relative = path.relative_to(root)
    return (
        path.is_file()
        and not _SKIPPED_PARTS.intersection(relative.parts)
        and path.suffix not in _SKIPPED_SUFFIXES
    )


REQUIREMENTS = "requirements.txt"
WHEELS = "wheels"


def requirement_lines(requirements: Path) -> tuple[str, ...]:
    """The requirement specifiers of a ``requirements.txt`` (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line)


def offline_requirements(lines: tuple[str, ...]) -> str:
    """A ``requirements.txt`` that pip installs from the packaged ``wheels/`` only."""
    return ("# Written at synthesis: the container's `pip install -r requirements.txt` reads only the\n"
            "# wheels packaged beside this file, so the job needs no route to PyPI.\n"
            f"--no-index\n--find-links {WHEELS}\n" + "".join(f"{line}\n" for line in lines))


def _entries(source_dir: Path, wheels: WheelTarget | None) -> list[tuple[str, bytes | Path]]:
    """(name in the archive, content or file) in archive order."""
    files = sorted(p for p in source_dir.rglob("*") if _included(p, source_dir))
    requirements = source_dir / REQUIREMENTS
    if wheels is None or not requirements.is_file():
        return [(p.relative_to(source_dir).as_posix(), p) for p in files]
    lines = requirement_lines(requirements)
    folder = download(lines, wheels)
    entries: list[tuple[str, bytes | Path]] = [
        (p.relative_to(source_dir).as_posix(), offline_requirements(lines).encode() if p == requirements else p)
        for p in files]
    entries += [(f"{WHEELS}/{wheel.name}", wheel) for wheel in sorted(folder.glob("*.whl"))]
    return entries


def pack_source_dir(source_dir: Path, output_dir: Path, wheels: WheelTarget | None = None) -> Path:
    """Pack ``source_dir`` into ``output_dir/sourcedir-<hash>.tar.gz`` and return its path.

    ``<hash>`` identifies the archive's content (:func:`asset_hash` gives it to CDK, which then need
    not read the file to fingerprint it).

    With ``wheels`` (the job image's Python and platform), the packages its ``requirements.txt``
    names are downloaded as wheels for that target (cached, ``mlops_platform/wheels.py``) into
    ``wheels/`` of the archive, and the archived ``requirements.txt`` installs from them only.
    """
    if not source_dir.is_dir():
        raise FileNotFoundError(f"training source directory {source_dir} does not exist")
    entries = _entries(source_dir, wheels)
    digest = hashlib.sha256()
    for name, content in entries:  # the archive is a function of these: skip rebuilding it
        digest.update(name.encode())
        if isinstance(content, Path) and content.suffix == ".whl":
            # A wheel's file name names its content (an index never serves other bytes under a
            # published name), so the ~50 MB of wheels are not read again on every synthesis; the
            # size still tells a torn download from a whole one.
            digest.update(b"wheel-size:%d" % content.stat().st_size)
        else:
            digest.update(hashlib.sha256(content if isinstance(content, bytes) else content.read_bytes()).digest())
    target = output_dir / f"sourcedir-{digest.hexdigest()[:16]}.tar.gz"
    if target.exists():
        return target
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            data = content if isinstance(content, bytes) else content.read_bytes()
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    output_dir.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # concurrent synths never read half
    temporary.write_bytes(compressed.getvalue())
    temporary.replace(target)
    return target


def asset_hash(archive: Path) -> str:
    """The content hash in a :func:`pack_source_dir` archive's name (``sourcedir-<hash>.tar.gz``)."""
    return archive.name.removeprefix("sourcedir-").removesuffix(".tar.gz")
