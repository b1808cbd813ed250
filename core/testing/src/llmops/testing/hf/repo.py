"""The Hub's repositories as git keeps them: blobs (regular files in memory, LFS objects on
disk by sha256), commits with git's own object ids (blob, tree and commit sha1s computed
as ``git hash-object`` would), branches, tags and pull-request refs; plus what the Hub
reads out of a commit (the model card's YAML front matter, ``config.json``, safetensors
headers) and the rule that makes a file LFS."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GITATTRIBUTES",
    "LFS_THRESHOLD",
    "Commit",
    "LfsStore",
    "PullRequest",
    "Repo",
    "StoredFile",
    "card_metadata",
    "card_problems",
    "git_blob_id",
    "gitignored",
    "is_lfs",
    "lfs_patterns",
    "lfs_pointer",
    "new_work_dir",
    "safetensors_parameters",
    "unsafe_path",
]

#: Files this big or bigger are LFS whatever their name (the Hub refuses regular files
#: over 10 MB).
LFS_THRESHOLD = 10 * 1024 * 1024

#: The ``.gitattributes`` the Hub writes in the initial commit of a model repo.
GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<yaml>.*?)^---[ \t]*$", re.DOTALL | re.MULTILINE)
_FORBIDDEN_PARTS = {"", ".", ".."}


def git_blob_id(data: bytes) -> str:
    """git's object id of a blob: ``sha1("blob <size>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git keeps in the tree for an LFS object."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def unsafe_path(path: str) -> bool:
    """Whether the Hub would refuse ``path``: absolute, empty or ``.``/``..`` segments,
    backslashes, or under ``.git/``."""
    parts = path.split("/")
    return (
        "\\" in path
        or "\0" in path
        or any(part in _FORBIDDEN_PARTS for part in parts)
        or parts[0] == ".git"
    )


def lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """The patterns a ``.gitattributes`` sends through the LFS filter."""
    if not gitattributes:
        return []
    found = []
    for line in gitattributes.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            found.append(fields[0])
    return found


def is_lfs(path: str, size: int, sample: bytes, patterns: Iterable[str]) -> bool:
    """The Hub's preupload rule: LFS when ``.gitattributes`` says so, when the file is 10
    MB or more, or when its first bytes look binary (a NUL byte)."""
    if size >= LFS_THRESHOLD or b"\0" in sample[:512]:
        return True
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        target = path if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
            return True
    return False


def gitignored(path: str, gitignore: str | None) -> bool:
    """Whether a ``.gitignore`` (plain glob lines, ``#`` comments) ignores ``path``."""
    if not gitignore:
        return False
    name = path.rsplit("/", 1)[-1]
    ignored = False
    for raw in gitignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.rstrip("/")
        target = path if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")) or path.startswith(
            pattern.lstrip("/") + "/"
        ):
            ignored = not negate
    return ignored


class LfsStore:
    """LFS objects by sha256, one file each under ``folder``; written through a temporary
    file and renamed, so a reader never sees half an object."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        return self.folder / sha256

    def has(self, sha256: str, size: int | None = None) -> bool:
        path = self.path(sha256)
        try:
            found = path.stat().st_size
        except FileNotFoundError:
            return False
        return size is None or found == size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has(sha256, len(data)):
            self._place(sha256, [data])
        return sha256, len(data)

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy ``source`` in (read once, hashed while copied)."""
        digest = hashlib.sha256()
        size = 0
        temporary = self._temporary()
        with source.open("rb") as reader, temporary.open("wb") as writer:
            while piece := reader.read(1 << 20):
                digest.update(piece)
                writer.write(piece)
                size += len(piece)
        sha256 = digest.hexdigest()
        self._commit(temporary, sha256)
        return sha256, size

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write an upload as it arrives; its sha256 and size."""
        digest = hashlib.sha256()
        size = 0
        temporary = self._temporary()
        try:
            with temporary.open("wb") as writer:
                for piece in chunks:
                    digest.update(piece)
                    writer.write(piece)
                    size += len(piece)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        sha256 = digest.hexdigest()
        self._commit(temporary, sha256)
        return sha256, size

    def content(self, stored: StoredFile) -> bytes:
        """A file's bytes (read whole: for small files)."""
        if stored.data is not None:
            return stored.data
        return self.path(stored.sha256).read_bytes()

    def small_content(self, stored: StoredFile | None, limit: int = 1 << 20) -> bytes | None:
        """A file's bytes when it exists and is at most ``limit`` bytes, else None."""
        if stored is None or stored.size > limit:
            return None
        try:
            return self.content(stored)
        except FileNotFoundError:
            return None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _temporary(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f".incoming-{uuid.uuid4().hex}"

    def _commit(self, temporary: Path, sha256: str) -> None:
        with self._lock:
            os.replace(temporary, self.path(sha256))

    def _place(self, sha256: str, pieces: list[bytes]) -> None:
        temporary = self._temporary()
        with temporary.open("wb") as writer:
            for piece in pieces:
                writer.write(piece)
        self._commit(temporary, sha256)


@dataclass(frozen=True)
class StoredFile:
    """A file of a commit's tree. A regular file holds its bytes; an LFS file's bytes are
    the LFS store's object ``sha256`` and git keeps a pointer in the tree (``oid`` is the
    pointer's blob id, as on the Hub)."""

    size: int
    sha256: str
    lfs: bool
    oid: str
    data: bytes | None = None

    @classmethod
    def regular(cls, data: bytes) -> StoredFile:
        return cls(
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            lfs=False,
            oid=git_blob_id(data),
            data=data,
        )

    @classmethod
    def large(cls, sha256: str, size: int) -> StoredFile:
        return cls(size=size, sha256=sha256, lfs=True, oid=git_blob_id(lfs_pointer(sha256, size)))

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        """What the Hub sends as the file's ETag: the sha256 for LFS, the blob id else."""
        return self.sha256 if self.lfs else self.oid


@dataclass
class Commit:
    """A commit: its id is git's, computed from the tree, parents, author, date and
    message."""

    id: str
    parents: tuple[str, ...]
    files: Mapping[str, StoredFile]
    title: str
    description: str
    author: str
    date: datetime
    tree_id: str
    #: folder path ("" for the root) -> git tree id
    folders: Mapping[str, str]

    @classmethod
    def make(
        cls,
        *,
        files: Mapping[str, StoredFile],
        parents: tuple[str, ...],
        title: str,
        description: str,
        author: str,
        date: datetime | None = None,
    ) -> Commit:
        when = (date or datetime.now(UTC)).replace(microsecond=0)
        folders = _tree_ids(files)
        stamp = f"{author} <{author}@users.noreply.huggingface.co> {int(when.timestamp())} +0000"
        lines = [f"tree {folders['']}", *(f"parent {p}" for p in parents)]
        lines += [f"author {stamp}", f"committer {stamp}", ""]
        message = title + (f"\n\n{description}" if description else "") + "\n"
        body = ("\n".join(lines) + "\n" + message).encode()
        commit_id = hashlib.sha1(
            b"commit %d\0" % len(body) + body, usedforsecurity=False
        ).hexdigest()
        return cls(
            id=commit_id,
            parents=parents,
            files=dict(files),
            title=title,
            description=description,
            author=author,
            date=when,
            tree_id=folders[""],
            folders=folders,
        )

    def folder_of(self, path: str) -> str:
        return path.rsplit("/", 1)[0] if "/" in path else ""


@dataclass
class PullRequest:
    num: int
    title: str
    author: str
    ref: str
    base: str
    created_at: datetime
    #: The commit the pull request's ref points at.
    head: str = ""


@dataclass
class Repo:
    """A repository: its refs point into ``commits`` (every commit ever made here)."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    object_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    gated: str | bool = False
    granted: set[str] = field(default_factory=set)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: set[str] = field(default_factory=set)
    downloads: int = 0
    likes: int = 0
    next_discussion: int = 1

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def head(self, branch: str = "main") -> Commit:
        return self.commits[self.branches[branch]]

    def history(self, start: Commit) -> Iterator[Commit]:
        """``start`` and its ancestors, newest first (first parents: histories here are
        linear)."""
        current: Commit | None = start
        while current is not None:
            yield current
            current = self.commits.get(current.parents[0]) if current.parents else None


def _tree_ids(files: Mapping[str, StoredFile]) -> dict[str, str]:
    """git's tree id of every folder of ``files`` (the root is ``""``)."""
    children: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            children.setdefault(folder, {})
    for path, stored in files.items():
        parent, _, name = path.rpartition("/")
        children.setdefault(parent, {})[name] = ("100644", stored.oid)
    ids: dict[str, str] = {}
    for folder in sorted(children, key=lambda f: -f.count("/") if f else 1):
        entries = dict(children[folder])
        prefix = f"{folder}/" if folder else ""
        for other, tree in ids.items():
            if other and other.startswith(prefix) and "/" not in other[len(prefix) :]:
                entries[other[len(prefix) :]] = ("40000", tree)
        body = b"".join(
            f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)
            for name, (mode, oid) in sorted(
                entries.items(), key=lambda item: item[0] + ("/" if item[1][0] == "40000" else "")
            )
        )
        ids[folder] = hashlib.sha1(
            b"tree %d\0" % len(body) + body, usedforsecurity=False
        ).hexdigest()
    return ids


def card_metadata(readme: bytes | None) -> dict[str, Any] | None:
    """The YAML front matter of a model card (``README.md``), as the Hub serves it in
    ``cardData``; None when there is none or it is not a mapping."""
    if not readme:
        return None
    found = _FRONT_MATTER.match(readme.decode("utf-8", "replace"))
    if found is None:
        return None
    try:
        data = yaml.safe_load(found["yaml"])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def card_problems(content: str) -> list[str]:
    """What the Hub's ``validate-yaml`` refuses in a card's front matter."""
    found = _FRONT_MATTER.match(content)
    if found is None:
        return []
    try:
        data = yaml.safe_load(found["yaml"])
    except yaml.YAMLError as error:
        return [f"Invalid YAML in README.md metadata: {error}"]
    if data is not None and not isinstance(data, dict):
        return ['"metadata" must be a mapping']
    if isinstance(data, dict):
        tags = data.get("tags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str | int | float) for t in tags)
        ):
            return ['"tags" must be an array of strings']
        for key in ("license", "pipeline_tag", "library_name"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                return [f'"{key}" must be a string']
    return []


def safetensors_parameters(reader: Any) -> dict[str, int] | None:
    """Parameters per dtype from a safetensors file's header (``reader`` is a binary file
    at offset 0); None when it is not a safetensors file."""
    head = reader.read(8)
    if len(head) != 8:
        return None
    (length,) = struct.unpack("<Q", head)
    if length > 100 << 20:
        return None
    try:
        header = json.loads(reader.read(length))
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        count = 1
        for dimension in tensor.get("shape", []):
            count *= int(dimension)
        dtype = str(tensor.get("dtype"))
        counts[dtype] = counts.get(dtype, 0) + count
    return counts


def new_work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hf-hub-double-"))
