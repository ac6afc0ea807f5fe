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
import tarfile
from pathlib import Path

_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _included(path: Path, root: Path) -> bool:
    relative = path.relative_to(root)
    return (
        path.is_file()
        and not _SKIPPED_PARTS.intersection(relative.parts)
        and path.suffix not in _SKIPPED_SUFFIXES
    )


def pack_source_dir(source_dir: Path, output_dir: Path) -> Path:
    """Pack ``source_dir`` into ``output_dir/sourcedir-<hash>.tar.gz`` and return its path."""
    if not source_dir.is_dir():
        raise FileNotFoundError(f"training source directory {source_dir} does not exist")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in source_dir.rglob("*") if _included(p, source_dir)):
            info = tarfile.TarInfo(path.relative_to(source_dir).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    payload = compressed.getvalue()
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"sourcedir-{hashlib.sha256(payload).hexdigest()[:16]}.tar.gz"
    if not target.exists():
        target.write_bytes(payload)
    return target
