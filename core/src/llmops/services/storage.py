"""Platform file storage: uploads land under one root and nothing escapes it.

Names are sanitised, sizes are capped while streaming (413 before the limit is passed
on disk), and archives are checked member by member (no absolute paths, no ``..``, no
links or devices, bounded count and unpacked size) before anything is extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from llmops.errors import InvalidRequest, PayloadTooLarge

CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def safe_filename(name: str) -> str:
    """A file name that is safe on every file system, or InvalidRequest."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[:200]
    if not cleaned:
        raise InvalidRequest(f"unusable file name {name!r}", parameter="file")
    return cleaned


def safe_relative_path(name: str) -> PurePosixPath:
    """A relative path inside the storage root (for archive members)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part in {"..", ""} for part in path.parts) or not path.parts:
        raise InvalidRequest(f"archive member {name!r} points outside the dataset")
    return PurePosixPath(*(safe_filename(p) for p in path.parts))


def ensure_inside(root: Path, candidate: Path) -> Path:
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InvalidRequest(f"{candidate.name!r} points outside the storage root")
    return resolved


@dataclass(frozen=True)
class StoredFiles:
    files: list[str]
    size_bytes: int


def stream_to_file(source: BinaryIO, directory: Path, *, limit: int) -> tuple[Path, int]:
    """Copy ``source`` into a temp file in ``directory`` (same file system), capped."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".upload-")
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise PayloadTooLarge(
                        f"the upload is larger than the limit of {limit} bytes", limit=limit
                    )
                out.write(chunk)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return Path(tmp_name), written


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _members(archive: Path, name: str) -> Iterator[tuple[str, int, bool]]:
    """(member name, unpacked size, is_regular_file) for every member; refuses links."""
    lower = name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise InvalidRequest(f"archive member {info.filename!r} is a symbolic link")
                yield info.filename, info.file_size, not info.is_dir()
        return
    with tarfile.open(archive) as tf:
        for member in tf:
            if not (member.isfile() or member.isdir()):
                raise InvalidRequest(
                    f"archive member {member.name!r} is a link or device, which is not allowed"
                )
            yield member.name, member.size, member.isfile()


def check_archive(archive: Path, name: str, *, max_members: int, max_bytes: int) -> None:
    count = 0
    total = 0
    try:
        for member, size, _ in _members(archive, name):
            if member.rstrip("/"):
                safe_relative_path(member.rstrip("/"))
            count += 1
            total += size
            if count > max_members:
                raise InvalidRequest(f"the archive has more than {max_members} members")
            if total > max_bytes:
                raise PayloadTooLarge(f"the archive unpacks to more than {max_bytes} bytes")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InvalidRequest(f"{name!r} is not a readable archive: {exc}") from exc


def extract_archive(archive: Path, name: str, destination: Path) -> StoredFiles:
    """Extract a checked archive into ``destination``; every path is re-verified."""
    destination.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    total = 0
    if name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = safe_relative_path(info.filename)
                target = ensure_inside(destination, destination / rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                files.append(rel.as_posix())
                total += target.stat().st_size
    else:
        with tarfile.open(archive) as tf:
            for member in tf:
                if not member.isfile():
                    continue
                rel = safe_relative_path(member.name)
                target = ensure_inside(destination, destination / rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                member_file = tf.extractfile(member)
                if member_file is None:
                    continue
                with member_file, target.open("wb") as out:
                    shutil.copyfileobj(member_file, out, CHUNK)
                files.append(rel.as_posix())
                total += target.stat().st_size
    return StoredFiles(files=files, size_bytes=total)


def directory_stats(root: Path) -> tuple[int, int]:
    """(file count, total bytes) of the regular files under ``root``."""
    count = 0
    size = 0
    if root.exists():
        for path in root.rglob("*"):
            if path.is_file() and not path.name.startswith(".upload-"):
                count += 1
                size += path.stat().st_size
    return count, size
