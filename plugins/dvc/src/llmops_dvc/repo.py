"""One dataset's git + DVC repository, through DVC's Python API (``dvc.repo.Repo``) and its
git layer (scmrepo), never the CLI.

Layout of a dataset's repository (``<repos dir>/<dataset id>``)::

    .git/            its history: one commit per version on ``main``; refs/llmops/keys/*
                     (idempotency keys) and refs/llmops/pushed/* (what each remote holds)
    .dvc/config      empty: every setting is handed to DVC in memory (:func:`dvc_config`)
    data/            the versioned files (links into the shared DVC cache)
    data.dvc         what DVC tracks: the ``.dir`` hash, size and file count of data/

The module imports DVC when it is first imported itself (the provider imports it on its
first call), after :func:`prepare_process` has pointed DVC's global and system config at
the plugin's own (empty) folders and turned its analytics off.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dvc.config import Config
from dvc.exceptions import ConfirmRemoveError, DvcException
from dvc.ignore import init as init_dvcignore
from dvc.repo import Repo
from dvc.utils.serialize import parse_yaml
from scmrepo.exceptions import RevError, SCMError
from scmrepo.git import Git

log = logging.getLogger(__name__)

#: The tracked folder in every dataset's repository, and DVC's file for it.
DATA = "data"
DVC_FILE = f"{DATA}.dvc"
#: tries of `dvc add` that meet a concurrent add of the same object (see DatasetRepo._add)
ADD_ATTEMPTS = 5
BRANCH = "main"
BRANCH_REF = f"refs/heads/{BRANCH}"
#: ``refs/llmops/keys/<sha256 of the key>`` names the version an idempotency key made.
KEY_REFS = "refs/llmops/keys/"
#: ``refs/llmops/pushed/<remote fingerprint>/<version>``: the version's data is on that remote.
PUSHED_REFS = "refs/llmops/pushed/"
#: The DVC remote's name in the in-memory config.
REMOTE = "llmops"
#: The trailers a version's commit message ends with (its dataset, key and tags).
DATASET_TRAILER = "Llmops-Dataset"
KEY_TRAILER = "Llmops-Idempotency-Key"
TAGS_TRAILER = "Llmops-Tags"
#: The committer of every version: the platform records the version's author itself.
IDENTITY = ("llmops", "llmops@localhost")
#: DVC's links from the workspace into its cache: a reflink where the file system has
#: them, else a hard link (the workspace costs no space; files are replaced, never
#: written in place), else a copy.
CACHE_TYPES = "hardlink,copy"


@dataclass(frozen=True)
class Tracked:
    """What ``data.dvc`` says at a version: the ``.dir`` hash of data/, its bytes, its files."""

    md5: str
    size: int
    nfiles: int


@dataclass(frozen=True)
class Commit:
    """A version as its commit holds it."""

    sha: str
    parent: str | None
    created_at: datetime
    message: str
    dataset_id: str | None
    key: str | None
    tags: dict[str, str]
    tracked: Tracked


# -- the process ---------------------------------------------------------------------------


def quiet_dvc_loggers() -> None:
    """``import dvc`` gives its loggers handlers of its own that print to stdout and
    stderr, as its CLI wants; in the platform's process its records go through the
    platform's logging instead."""
    from dvc.logger import LoggerHandler

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, LoggerHandler):
                logger.removeHandler(handler)
        logger.setLevel(logging.WARNING)


quiet_dvc_loggers()


# -- configuration -------------------------------------------------------------------------


def dvc_config(
    *, cache_dir: Path, site_cache_dir: Path, remote: Mapping[str, Any]
) -> dict[str, Any]:
    """DVC's configuration for a dataset's repository, handed to ``Repo(config=...)``
    on every open and written to no file: no credentials on disk, and a change of settings
    applies to every repository at once."""
    return {
        "core": {
            "analytics": False,
            "check_update": False,
            "autostage": True,
            "remote": REMOTE,
            "site_cache_dir": str(site_cache_dir),
        },
        "cache": {"dir": str(cache_dir), "type": CACHE_TYPES},
        "remote": {REMOTE: dict(remote)},
    }


# -- messages ----------------------------------------------------------------------------


def commit_message(
    message: str, *, dataset_id: str, key: str | None, tags: Mapping[str, str]
) -> str:
    """``message`` followed by the trailers (a blank line between them when there is a
    message): :func:`parse_message` gets all of them back exactly."""
    trailers = [f"{DATASET_TRAILER}: {dataset_id}"]
    if key is not None:
        trailers.append(f"{KEY_TRAILER}: {json.dumps(key)}")
    if tags:
        trailers.append(f"{TAGS_TRAILER}: {json.dumps(dict(tags), sort_keys=True)}")
    block = "\n".join(trailers) + "\n"
    return f"{message}\n\n{block}" if message else block


def parse_message(text: str) -> tuple[str, str | None, str | None, dict[str, str]]:
    """The message, dataset id, idempotency key and tags of a commit message written by
    :func:`commit_message` (a message written otherwise is all message)."""
    head = f"{DATASET_TRAILER}: "
    if text.startswith(head):
        message, block = "", text
    else:
        message, found, rest = text.rpartition(f"\n\n{head}")
        if not found:
            return text, None, None, {}
        block = head + rest
    dataset_id: str | None = None
    key: str | None = None
    tags: dict[str, str] = {}
    for line in block.splitlines():
        name, _, value = line.partition(": ")
        if name == DATASET_TRAILER:
            dataset_id = value
        elif name == KEY_TRAILER:
            key = json.loads(value)
        elif name == TAGS_TRAILER:
            tags = json.loads(value)
    return message, dataset_id, key, tags


# -- one repository -------------------------------------------------------------------------


class DatasetRepo:
    """A dataset's repository at ``root``; callers hold the dataset's write lock around
    :meth:`commit` (reads need none: git's objects and refs are written atomically)."""

    def __init__(self, root: Path, config: Mapping[str, Any]) -> None:
        self.root = root
        self.config = dict(config)

    # -- reading ----------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.root / ".git").is_dir()

    @property
    def data(self) -> Path:
        return self.root / DATA

    def scm(self) -> Git:
        return Git(str(self.root))

    def head(self, scm: Git) -> str | None:
        sha: str | None = scm.get_ref(BRANCH_REF)
        return sha

    def commit_of(self, scm: Git, sha: str) -> Commit:
        """The version ``sha``; :class:`LookupError` when the repository has no such
        commit."""
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise LookupError(sha)
        try:
            commit = scm.resolve_commit(sha)
            raw = scm.get_fs(sha).cat_file(DVC_FILE)
        except (RevError, SCMError, FileNotFoundError, KeyError, ValueError) as exc:
            raise LookupError(sha) from exc
        if commit.hexsha != sha:
            raise LookupError(sha)
        message, dataset_id, key, tags = parse_message(commit.message)
        offset = timezone(timedelta(seconds=commit.commit_time_offset))
        return Commit(
            sha=sha,
            parent=commit.parents[0] if commit.parents else None,
            created_at=datetime.fromtimestamp(commit.commit_time, offset),
            message=message,
            dataset_id=dataset_id,
            key=key,
            tags=tags,
            tracked=_tracked(raw.decode()),
        )

    def history(self, scm: Git) -> Iterator[Commit]:
        """Every version, newest first (``main``'s first-parent chain)."""
        head = self.head(scm)
        if head is None:
            return
        sha: str | None = head
        while sha is not None:
            commit = self.commit_of(scm, sha)
            yield commit
            sha = commit.parent

    def key_ref(self, key_digest: str) -> str:
        return f"{KEY_REFS}{key_digest}"

    def open_dvc(self, rev: str | None = None) -> Repo:
        """DVC's ``Repo`` on the working tree (taking DVC's repository lock, waiting for it
        while another process holds it), or read-only at the commit ``rev`` (no lock)."""
        if rev is not None:
            return Repo(str(self.root), rev=rev, config=self.config)
        return Repo(str(self.root), config=self.config, _wait_for_lock=True)

    # -- writing ------------------------------------------------------------------------

    def init(self) -> None:
        """A git repository with DVC in it, on ``main``, committing as :data:`IDENTITY`;
        a repository with a version is left as it is, and each step is skipped when
        done (a crash between them leaves a repository this finishes). Nothing is
        committed: the first version's commit holds DVC's files."""
        if self.exists():
            scm = self.scm()
            try:
                if self.head(scm) is not None:
                    return
            finally:
                scm.close()
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".git").is_dir():
            Git.init(str(self.root))
        scm = self.scm()
        try:
            if scm.get_ref(BRANCH_REF) is None:
                scm.set_ref("HEAD", BRANCH_REF, symbolic=True)
            backend = scm.dulwich.repo
            config = backend.get_config()
            config.set((b"user",), b"name", IDENTITY[0].encode())
            config.set((b"user",), b"email", IDENTITY[1].encode())
            config.write_to_path()
        finally:
            scm.close()
        dvc_dir = self.root / Repo.DVC_DIR
        if not (dvc_dir / Config.CONFIG).is_file():
            dvc_dir.mkdir(exist_ok=True)
            (dvc_dir / Config.CONFIG).touch()
            init_dvcignore(str(self.root))
        with self.open_dvc() as repo:  # DVC writes .dvc/.gitignore on opening
            repo.scm.add([str(dvc_dir / Config.CONFIG), str(dvc_dir / ".gitignore")])
            repo.scm.add([str(self.root / ".dvcignore")])

    def sync_workspace(self, source: Path) -> None:
        """Make data/ hold exactly the files of ``source``: a file whose size and
        modification time match is kept (DVC does not hash it again), any other hard
        linked from ``source`` (a copy across file systems) under a temporary name, then
        renamed over (the links into DVC's cache are never written through), files and
        folders ``source`` lacks removed."""
        wanted = dict(_files(source))
        self.data.mkdir(exist_ok=True)
        for relative, (path, stat) in wanted.items():
            target = self.data / relative
            try:
                held = target.stat(follow_symlinks=False)
            except FileNotFoundError:
                held = None
            if held is not None and (held.st_size, held.st_mtime_ns) == (
                stat.st_size,
                stat.st_mtime_ns,
            ):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            temporary = target.with_name(f".{target.name}.llmops-{uuid.uuid4().hex[:8]}")
            try:
                # a link, no copy: the platform never writes a dataset's file in place
                # (uploads and restores write aside and rename over), so once DVC has
                # moved it into its cache (read-only) nothing writes through it
                os.link(path, temporary)
            except OSError:  # another file system (or links refused): a copy
                shutil.copyfile(path, temporary)
                os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            os.replace(temporary, target)
        for relative, _ in list(_files(self.data)):
            if relative not in wanted:
                (self.data / relative).unlink()
        for folder in sorted(
            (p for p in self.data.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            if not any(folder.iterdir()):
                folder.rmdir()

    def _add(self, repo: Repo) -> None:
        """``dvc add data``. When another repository moves the same file into the shared
        cache at the same moment, DVC refuses to replace data/'s file by the link to it
        (ConfirmRemoveError): data/ is the plugin's own mirror of the dataset's folder,
        and the object is whole once the other add is done, so it tries again."""
        for attempt in range(ADD_ATTEMPTS):
            try:
                repo.add(str(self.data))
                return
            except ConfirmRemoveError:
                if attempt == ADD_ATTEMPTS - 1:
                    raise
                log.info("dvc add met a concurrent add of the same object; trying again")
                time.sleep(0.2 * (attempt + 1))

    def commit(self, message: str) -> tuple[str, bool]:
        """``dvc add data`` and a git commit of it, unless data/ is what the head version
        holds; the version's sha and whether it is new."""
        with self.open_dvc() as repo:
            self._add(repo)
            tracked = _tracked((self.root / DVC_FILE).read_text())
            scm = repo.scm
            head = self.head(scm)
            if head is not None and self.commit_of(scm, head).tracked.md5 == tracked.md5:
                return head, False
            scm.commit(message)
            sha = self.head(scm)
            assert sha is not None  # a commit was just made on main
            return sha, True


def _tracked(text: str) -> Tracked:
    """``data.dvc``'s one output."""
    content = parse_yaml(text, DVC_FILE)
    (out,) = content["outs"]
    return Tracked(
        md5=str(out["md5"]), size=int(out.get("size", 0)), nfiles=int(out.get("nfiles", 0))
    )


def _files(root: Path) -> Iterator[tuple[str, tuple[Path, os.stat_result]]]:
    """Every file under ``root`` (relative POSIX path, (path, stat)); a link is refused,
    since it would version whatever it points at."""
    if not root.is_dir():
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise ValueError(f"{Path(entry.path).relative_to(root)} is a link")
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    path = Path(entry.path)
                    yield path.relative_to(root).as_posix(), (path, entry.stat())


def now() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "DATA",
    "DVC_FILE",
    "PUSHED_REFS",
    "REMOTE",
    "Commit",
    "DatasetRepo",
    "DvcException",
    "Tracked",
    "commit_message",
    "dvc_config",
    "parse_message",
]
