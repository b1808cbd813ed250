"""An import's progress, and how its files go from huggingface_hub's cache into the
destination: checked, hashed and placed, never through a link out of either folder."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmops.capabilities.registry import ImportPhase, ImportProgress, ProgressSink
from llmops.errors import Conflict, IntegrationRejected

CHUNK = 1 << 20
#: Seconds between two progress reports (phase changes and the end are reported at once).
REPORT_INTERVAL = 0.25


class Progress:
    """Counts an import's files and bytes and reports them to the request's sink,
    throttled, one call at a time, from whichever thread moved them."""

    def __init__(self, sink: ProgressSink | None, *, interval: float = REPORT_INTERVAL) -> None:
        self._sink = sink
        self._interval = interval
        self._lock = threading.Lock()
        self._phase = ImportPhase.RESOLVING
        self._files_total = 0
        self._files_done = 0
        self._bytes_total: int | None = None
        self._bytes_done = 0
        self._inflight: dict[int, int] = {}
        self._last = 0.0

    def phase(self, phase: ImportPhase) -> None:
        with self._lock:
            self._phase = phase
            self._emit(force=True)

    def begin(self, files_total: int, bytes_total: int | None) -> None:
        with self._lock:
            self._phase = ImportPhase.DOWNLOADING
            self._files_total = files_total
            self._bytes_total = bytes_total
            self._emit(force=True)

    def received(self, count: int) -> None:
        """``count`` bytes of the file this thread downloads (negative: taken back)."""
        with self._lock:
            thread = threading.get_ident()
            self._inflight[thread] = self._inflight.get(thread, 0) + count
            self._emit(force=False)

    def file_done(self, size: int) -> None:
        """The file this thread worked on is in place, ``size`` bytes."""
        with self._lock:
            self._inflight.pop(threading.get_ident(), None)
            self._files_done += 1
            self._bytes_done += size
            self._emit(force=self._files_done == self._files_total)

    def done(self) -> None:
        with self._lock:
            self._phase = ImportPhase.DONE
            self._inflight.clear()
            self._emit(force=True)

    def snapshot(self) -> ImportProgress:
        with self._lock:
            return self._value()

    def _value(self) -> ImportProgress:
        done = self._bytes_done + sum(self._inflight.values())
        if self._bytes_total is not None:
            done = min(done, self._bytes_total)
        return ImportProgress(
            phase=self._phase,
            files_total=self._files_total,
            files_done=self._files_done,
            bytes_total=self._bytes_total,
            bytes_done=max(0, done),
        )

    def _emit(self, *, force: bool) -> None:
        if self._sink is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._sink(self._value())

    def counter(self) -> type[ByteCounter]:
        """A class huggingface_hub instantiates as its progress bar (``tqdm_class``) for
        each file it downloads, counting the bytes into this progress."""
        return type("ImportByteCounter", (ByteCounter,), {"progress": self})


class ByteCounter:
    """Enough of tqdm for huggingface_hub's per-file download bar (see
    :meth:`Progress.counter`)."""

    progress: ClassVar[Progress]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        initial = kwargs.get("initial") or 0
        if initial:
            self.progress.received(int(initial))

    def __enter__(self) -> ByteCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float | None = 1) -> None:
        if n:
            self.progress.received(int(n))

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Placed:
    """A file put into the destination: its size and hashes, as read."""

    path: str
    size: int
    sha256: str
    git_sha1: str
    created: bool


def inside(path: Path, folder: Path) -> bool:
    """Whether the real ``path`` lies in the real ``folder``."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def cached_source(snapshot_entry: Path, storage: Path) -> Path:
    """The file a cache's snapshot entry stands for: its blob (the entry is a link into
    the repo's own ``blobs``), or the entry itself where the cache copies. A link that
    leads anywhere else is refused, never followed."""
    real = Path(os.path.realpath(snapshot_entry))
    if not real.is_relative_to(os.path.realpath(storage)):
        raise IntegrationRejected(
            f"the cache's entry {snapshot_entry} leads out of the cache ({real}): refused"
        )
    if not real.is_file():
        raise IntegrationRejected(f"the cache's entry {snapshot_entry} is not a file")
    return real


def target_in(destination: Path, name: str) -> Path:
    """Where ``name`` (checked by :func:`llmops_hf.safety.name_problem`) lands in
    ``destination``; its folders are made, none of them may be a link."""
    parts = name.split("/")
    folder = destination
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise Conflict(f"{folder} is a link: the import does not write through it")
        folder.mkdir(exist_ok=True)
    target = folder / parts[-1]
    if not inside(folder, destination):
        raise Conflict(f"{target} would land outside {destination}: refused")
    if target.is_dir() and not target.is_symlink():
        raise Conflict(f"{target} is a folder; the model has a file there")
    return target


def place(source: Path, target: Path, *, link: bool, git_size: int | None) -> Placed:
    """Put ``source`` at ``target`` (a hard link, else a copy), appearing whole (a
    temporary name renamed over it); its size and sha256 (and git blob id) as read."""
    temporary = target.with_name(f".{target.name}.llmops-{uuid.uuid4().hex[:12]}")
    created = not (target.exists() or target.is_symlink())
    try:
        linked = False
        if link:
            try:
                os.link(source, temporary, follow_symlinks=False)
                linked = True
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
        if linked:
            size, sha256, git_sha1 = _hash(temporary, git_size)
            _read_only(temporary)
        else:
            size, sha256, git_sha1 = _copy(source, temporary, git_size)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Placed(target.name, size, sha256, git_sha1, created)


def _read_only(path: Path) -> None:
    """A hard link shares its data with the cache's blob: writing to the imported file
    in place would change the cache too, so neither is writable."""
    mode = path.stat().st_mode
    path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _hashers(git_size: int | None) -> tuple[Any, Any]:
    sha256 = hashlib.sha256()
    git = hashlib.sha1(usedforsecurity=False)
    if git_size is not None:
        git.update(f"blob {git_size}\0".encode())
    return sha256, git


def _hash(path: Path, git_size: int | None) -> tuple[int, str, str]:
    sha256, git = _hashers(git_size)
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            sha256.update(chunk)
            if git_size is not None:
                git.update(chunk)
    return size, sha256.hexdigest(), git.hexdigest() if git_size is not None else ""


def _copy(source: Path, target: Path, git_size: int | None) -> tuple[int, str, str]:
    sha256, git = _hashers(git_size)
    size = 0
    with source.open("rb") as stream, target.open("xb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            sha256.update(chunk)
            if git_size is not None:
                git.update(chunk)
            out.write(chunk)
    shutil.copymode(source, target)
    return size, sha256.hexdigest(), git.hexdigest() if git_size is not None else ""
