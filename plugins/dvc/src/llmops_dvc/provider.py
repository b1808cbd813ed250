"""The versioning provider: every dataset a git + DVC repository of its own, one commit per
version, through DVC's Python API.

A version is made locally: the dataset's files are copied into the repository's ``data/``
(only those whose size or modification time changed), ``dvc add data`` hashes what changed
into the DVC cache that every dataset's repository shares, and git commits ``data.dvc``.
Its id is the commit's sha. Nothing reaches the remote then: :meth:`DvcVersioner.push_version`
(the optional :class:`~llmops.capabilities.versioning.PushesVersions`) uploads a version's
data when the platform's outbox delivers it, so a remote that is away delays pushes and
never fails a version.

Writes to one dataset are made one at a time (a lock per repository in this process, a
file lock between processes, and DVC's own repository lock); writes to different datasets
never wait for each other, since each has its own repository and DVC lock. Reads (list,
diff, restore, lineage, push) take no lock: git writes its objects and refs atomically,
and DVC its cache's.

The provider imports DVC on its first call, not when it is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.versioning import (
    ChangeKind,
    DatasetVersionInfo,
    FileChange,
    Lineage,
    LineageEdge,
    LineageNode,
    PushResult,
    VersionDiff,
    VersionSpec,
)
from llmops.errors import IntegrationUnavailable, InvalidRequest, LlmopsError, NotFound
from llmops_dvc.settings import DvcSettings

if TYPE_CHECKING:
    from scmrepo.git import Git

    from llmops_dvc.repo import Commit, DatasetRepo

T = TypeVar("T")

#: A dataset id names its repository's folder: no separators, no leading dot.
DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: What ``health()`` leaves for everything but the remote, of the platform's 5 s.
_HEALTH_REMOTE_MAX = 4.0
_LOCK_POLL = 0.05
#: Remotes whose health is whether their host takes a connection, with default ports.
_PORTS = {"http": 80, "https": 443, "webdav": 80, "webdavs": 443, "ssh": 22}

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_prepared = threading.Lock()
_process_ready = False


def _thread_lock(root: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(root), threading.Lock())


def prepare_process(data_dir: Path) -> None:
    """Before DVC first runs in this process: its analytics off, its global and system
    config read from the plugin's own folders (absent, so empty) unless the operator's
    environment names others, never from ``$HOME`` or ``/etc``."""
    global _process_ready
    with _prepared:
        if _process_ready:
            return
        os.environ["DVC_NO_ANALYTICS"] = "1"
        os.environ.setdefault("DVC_GLOBAL_CONFIG_DIR", str(data_dir / "dvc-config" / "global"))
        os.environ.setdefault("DVC_SYSTEM_CONFIG_DIR", str(data_dir / "dvc-config" / "system"))
        _process_ready = True


class DvcVersioner:
    """A :class:`~llmops.capabilities.versioning.VersioningProvider` (and
    :class:`~llmops.capabilities.versioning.PushesVersions`) on DVC. Thread-safe; several
    providers (and processes) on the same folders share the repositories safely."""

    def __init__(self, settings: DvcSettings, *, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.repos_dir = Path(settings.repos_dir or data_dir / "repos")
        self.cache_dir = Path(settings.cache_dir or data_dir / "cache")
        self.site_cache_dir = data_dir / "site-cache"
        self.remote_url = settings.remote_url or str(data_dir / "remote")
        #: Names the remote in the refs that record pushes: a version pushed to one
        #: remote is pushed again to the next.
        self.remote_fingerprint = hashlib.sha256(self.remote_url.encode()).hexdigest()[:16]
        self._secrets = [
            value.get_secret_value()
            for value in (
                settings.access_key_id,
                settings.secret_access_key,
                settings.session_token,
                settings.password,
                settings.azure_connection_string,
                settings.azure_account_key,
            )
            if value is not None and value.get_secret_value()
        ]

    # -- VersioningProvider --------------------------------------------------------------

    def create_version(self, spec: VersionSpec) -> DatasetVersionInfo:
        """Commit the files of ``spec.source_path`` as the dataset's next version, locally.

        A key already used for the dataset returns the version it made; files that equal
        the latest version return that version (no empty commit)."""
        from llmops_dvc import repo as repo_module

        source = Path(spec.source_path)
        if not source.is_dir():
            raise InvalidRequest(f"{source} is not a folder", dataset_id=spec.dataset_id)
        repo = self._repo(spec.dataset_id, create=True)
        key_ref = (
            repo.key_ref(hashlib.sha256(spec.idempotency_key.encode()).hexdigest())
            if spec.idempotency_key is not None
            else None
        )
        where = f"version of dataset {spec.dataset_id}"
        with self._translated(where), self._writing(repo, spec.dataset_id):
            if key_ref is not None and repo.exists():
                with self._scm(repo) as scm:
                    known = scm.get_ref(key_ref)
                    if known is not None:
                        return self._info(repo.commit_of(scm, known))
            repo.init()
            try:
                repo.sync_workspace(source)
            except ValueError as exc:
                raise InvalidRequest(
                    f"the dataset's files cannot be versioned: {exc}",
                    dataset_id=spec.dataset_id,
                ) from exc
            message = repo_module.commit_message(
                spec.message,
                dataset_id=spec.dataset_id,
                key=spec.idempotency_key,
                tags=spec.tags,
            )
            sha, _ = repo.commit(message)
            with self._scm(repo) as scm:
                if key_ref is not None:
                    scm.set_ref(key_ref, sha, message=f"llmops: {where}")
                return self._info(repo.commit_of(scm, sha))

    def list_versions(self, dataset_id: str) -> list[DatasetVersionInfo]:
        """Oldest first."""
        repo = self._repo(dataset_id)
        if not repo.exists():
            return []
        with self._translated(f"versions of dataset {dataset_id}"), self._scm(repo) as scm:
            return [self._info(commit) for commit in reversed(list(repo.history(scm)))]

    def diff(self, dataset_id: str, from_version_id: str, to_version_id: str) -> VersionDiff:
        """The files added, removed and modified (by content hash) from one version to the
        other, with sizes where DVC's cache holds the files (a diff never downloads them)."""
        repo = self._repo(dataset_id)
        where = f"diff of dataset {dataset_id}"
        with self._translated(where):
            before_commit = self._version(repo, dataset_id, from_version_id)
            after_commit = self._version(repo, dataset_id, to_version_id)
            before = self._tree(repo, before_commit, where)
            after = self._tree(repo, after_commit, where)
        changes: list[FileChange] = []
        for path in sorted(before.keys() | after.keys()):
            old, new = before.get(path), after.get(path)
            if old is not None and new is not None and old[0] == new[0]:
                continue
            change = (
                ChangeKind.ADDED
                if old is None
                else ChangeKind.REMOVED
                if new is None
                else ChangeKind.MODIFIED
            )
            changes.append(
                FileChange(
                    path=path,
                    change=change,
                    size_before=self._size(old),
                    size_after=self._size(new),
                )
            )
        return VersionDiff(
            from_version_id=from_version_id, to_version_id=to_version_id, changes=changes
        )

    def restore(self, dataset_id: str, version_id: str, destination: Path) -> DatasetVersionInfo:
        """Make ``destination`` hold exactly the version's files (bytes equal; copies,
        never links into the cache). They are gathered in a sibling folder first, which
        then replaces ``destination`` whole; objects the cache lacks are fetched from the
        remote (``IntegrationUnavailable`` when it cannot be reached)."""
        repo = self._repo(dataset_id)
        destination = Path(destination)
        where = f"restore of dataset {dataset_id}"
        with self._translated(where):
            commit = self._version(repo, dataset_id, version_id)
            tree = self._tree(repo, commit, where, fetch=True)
            staging = destination.with_name(f".{destination.name}.restore-{uuid.uuid4().hex[:8]}")
            try:
                staging.mkdir(parents=True)
                for relative, (_, path) in tree.items():
                    assert path is not None  # _tree(fetch=True) fetched every object
                    target = staging / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                _replace(staging, destination)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return self._info(commit)

    def lineage(self, dataset_id: str, version_id: str) -> Lineage:
        """The version and its ancestors, each ``derived-from`` its parent. The platform's
        graph (training jobs, models, endpoints) is the core's."""
        repo = self._repo(dataset_id)
        nodes: list[LineageNode] = []
        edges: list[LineageEdge] = []
        with self._translated(f"lineage of dataset {dataset_id}"):
            commit: Commit | None = self._version(repo, dataset_id, version_id)
            with self._scm(repo) as scm:
                while commit is not None:
                    nodes.append(
                        LineageNode(
                            kind="dataset-version",
                            id=commit.sha,
                            label=commit.message.splitlines()[0]
                            if commit.message
                            else f"{dataset_id}@{commit.sha[:8]}",
                        )
                    )
                    if commit.parent is None:
                        break
                    edges.append(
                        LineageEdge(
                            source=commit.sha, target=commit.parent, relation="derived-from"
                        )
                    )
                    commit = repo.commit_of(scm, commit.parent)
        return Lineage(nodes=nodes, edges=edges)

    # -- PushesVersions --------------------------------------------------------------------

    def push_version(self, dataset_id: str, version_id: str) -> PushResult:
        """Upload what the remote lacks of the version's data (DVC asks the remote which
        objects it holds first), then record the push in the repository
        (``refs/llmops/pushed/<remote>/<version>``): a version pushed before is a success
        that asks nothing of the remote."""
        from llmops_dvc.repo import PUSHED_REFS

        repo = self._repo(dataset_id)
        where = f"push of dataset {dataset_id} to {self._remote_shown}"
        with self._translated(where):
            commit = self._version(repo, dataset_id, version_id)
            ref = f"{PUSHED_REFS}{self.remote_fingerprint}/{commit.sha}"
            with self._scm(repo) as scm:
                if scm.get_ref(ref) is not None:
                    return self._pushed(dataset_id, commit.sha, 0, already=True)
            with self._remote_errors(where), repo.open_dvc(rev=commit.sha) as dvc:
                uploaded = int(dvc.push() or 0)
            with self._scm(repo) as scm:
                scm.set_ref(ref, commit.sha, message="llmops: pushed")
        return self._pushed(dataset_id, commit.sha, uploaded, already=False)

    # -- health ------------------------------------------------------------------------

    def health(self) -> Health:
        """The repositories' folder (made when it is the plugin's own; written to and
        read back), then the remote within ``remote_timeout_seconds`` (at most 4 s): down
        when versions cannot be made, degraded when only pushes must wait. Never raises."""
        started = time.perf_counter()

        def answer(status: HealthStatus, detail: str) -> Health:
            return Health(
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=self._scrub(detail),
            )

        try:
            self._check_repos_dir(create=True)
            probe = self.repos_dir / f".llmops-health-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except (IntegrationUnavailable, OSError) as exc:
            detail = exc.detail if isinstance(exc, LlmopsError) else f"{type(exc).__name__}: {exc}"
            return answer(HealthStatus.DOWN, f"versions cannot be made: {detail}")
        count = sum(1 for p in self.repos_dir.iterdir() if (p / ".git").is_dir())
        timeout = min(self.settings.remote_timeout_seconds, _HEALTH_REMOTE_MAX)
        problem = _within(timeout, self._remote_problem)
        if problem is not None:
            return answer(
                HealthStatus.DEGRADED,
                f"{count} dataset repositories; the remote {self._remote_shown} cannot be "
                f"reached ({problem}): versions are made locally, pushes wait",
            )
        return answer(HealthStatus.OK, f"{count} dataset repositories; remote {self._remote_shown}")

    # -- the rest -------------------------------------------------------------------------

    @property
    def _remote_shown(self) -> str:
        """The remote without anything a URL could carry besides its place."""
        parts = urlsplit(self.remote_url)
        if not parts.scheme or len(parts.scheme) == 1:  # a folder (or a Windows drive)
            return self.remote_url
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def _remote_config(self) -> dict[str, Any]:
        """The DVC remote's options from the settings (credentials included, in memory)."""
        settings = self.settings
        scheme = urlsplit(self.remote_url).scheme if "://" in self.remote_url else ""
        config: dict[str, Any] = {"url": self.remote_url}
        secret: Callable[[Any], str | None] = lambda v: (  # noqa: E731
            v.get_secret_value() if v is not None else None
        )
        timeout = self.settings.remote_timeout_seconds
        if scheme == "s3":
            config |= {
                "access_key_id": secret(settings.access_key_id),
                "secret_access_key": secret(settings.secret_access_key),
                "session_token": secret(settings.session_token),
                "endpointurl": settings.endpoint_url,
                "region": settings.region,
                "connect_timeout": int(max(1, timeout)),
            }
        elif scheme == "gs":
            config["credentialpath"] = (
                str(settings.gcs_credentials_file) if settings.gcs_credentials_file else None
            )
        elif scheme == "azure":
            config |= {
                "connection_string": secret(settings.azure_connection_string),
                "account_name": settings.azure_account_name,
                "account_key": secret(settings.azure_account_key),
            }
        elif scheme == "ssh":
            config |= {
                "user": settings.user,
                "password": secret(settings.password),
                "keyfile": str(settings.keyfile) if settings.keyfile else None,
                "timeout": int(max(1, timeout)),
            }
        elif scheme in ("http", "https", "webdav", "webdavs"):
            config |= {"user": settings.user, "password": secret(settings.password)}
            if scheme in ("http", "https"):
                config["connect_timeout"] = timeout
                if settings.password is not None:
                    config["auth"] = "basic"
        config |= settings.remote_options
        return {k: v for k, v in config.items() if v is not None}

    def dvc_config(self) -> dict[str, Any]:
        """What DVC is configured with, on every open of a repository (credentials
        included: it is never written to a file)."""
        from llmops_dvc.repo import dvc_config

        return dvc_config(
            cache_dir=self.cache_dir,
            site_cache_dir=self.site_cache_dir,
            remote=self._remote_config(),
        )

    def _repo(self, dataset_id: str, *, create: bool = False) -> DatasetRepo:
        """The dataset's repository (not made yet); the repositories' folder must be
        usable: :class:`IntegrationUnavailable` otherwise."""
        if not DATASET_ID.match(dataset_id):
            raise InvalidRequest(f"{dataset_id!r} is not a dataset id", dataset_id=dataset_id)
        self._check_repos_dir(create=create)
        prepare_process(self.data_dir)
        from llmops_dvc.repo import DatasetRepo

        return DatasetRepo(self.repos_dir / dataset_id, self.dvc_config())

    def _check_repos_dir(self, *, create: bool) -> None:
        """The plugin's own folder is made on first use; one the settings name never is
        (a missing one is an unmounted volume, not an empty history)."""
        own = self.settings.repos_dir is None
        if create and own and not self.repos_dir.exists():
            try:
                self.repos_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IntegrationUnavailable(
                    f"the repositories' folder {self.repos_dir} cannot be made: {exc}"
                ) from exc
        if self.repos_dir.exists() and not self.repos_dir.is_dir():
            raise IntegrationUnavailable(f"{self.repos_dir} is not a folder")
        if not self.repos_dir.exists() and not own:
            raise IntegrationUnavailable(f"the repositories' folder {self.repos_dir} is not there")

    @contextlib.contextmanager
    def _writing(self, repo: DatasetRepo, dataset_id: str) -> Iterator[None]:
        """The dataset's write lock: this process's threads, then other processes
        (``flock`` on ``<repos dir>/.locks/<dataset id>``), within ``lock_timeout_seconds``."""
        deadline = time.monotonic() + self.settings.lock_timeout_seconds
        lock = _thread_lock(repo.root)
        if not lock.acquire(timeout=self.settings.lock_timeout_seconds):
            raise self._busy(dataset_id)
        try:
            locks = self.repos_dir / ".locks"
            locks.mkdir(exist_ok=True)
            with (locks / f"{dataset_id}.lock").open("a") as handle:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise self._busy(dataset_id) from None
                        time.sleep(_LOCK_POLL)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            lock.release()

    def _busy(self, dataset_id: str) -> IntegrationUnavailable:
        return IntegrationUnavailable(
            f"another version of dataset {dataset_id} is still being made after "
            f"{self.settings.lock_timeout_seconds:g} s",
            dataset_id=dataset_id,
        )

    @contextlib.contextmanager
    def _scm(self, repo: DatasetRepo) -> Iterator[Git]:
        scm = repo.scm()
        try:
            yield scm
        finally:
            scm.close()

    def _version(self, repo: DatasetRepo, dataset_id: str, version_id: str) -> Commit:
        missing = NotFound(
            f"dataset {dataset_id!r} has no version {version_id!r}",
            dataset_id=dataset_id,
            version_id=version_id,
        )
        if not repo.exists():
            raise missing
        with self._scm(repo) as scm:
            try:
                return repo.commit_of(scm, version_id)
            except LookupError:
                raise missing from None

    def _tree(
        self, repo: DatasetRepo, commit: Commit, where: str, *, fetch: bool = False
    ) -> dict[str, tuple[str, Path | None]]:
        """The version's files: relative path -> (md5, the object in DVC's cache, or None
        where the cache lacks it). With ``fetch``, missing objects are fetched from the
        remote first."""
        import json

        with repo.open_dvc(rev=commit.sha) as dvc:
            odb = dvc.cache.local
            directory = commit.tracked.md5

            def listing() -> dict[str, tuple[str, Path | None]] | None:
                path = Path(odb.oid_to_path(directory))
                if not path.is_file():
                    return None
                found: dict[str, tuple[str, Path | None]] = {}
                for entry in json.loads(path.read_text()):
                    obj = Path(odb.oid_to_path(entry["md5"]))
                    found[entry["relpath"]] = (entry["md5"], obj if obj.is_file() else None)
                return found

            tree = listing()
            if tree is None or (fetch and any(p is None for _, p in tree.values())):
                with self._remote_errors(where):
                    dvc.fetch()
                tree = listing()
            if tree is None or (fetch and any(p is None for _, p in tree.values())):
                raise IntegrationUnavailable(
                    f"{where}: the data of version {commit.sha} is neither in DVC's cache "
                    f"nor on the remote {self._remote_shown}"
                )
            return tree

    @staticmethod
    def _size(entry: tuple[str, Path | None] | None) -> int | None:
        if entry is None or entry[1] is None:
            return None
        return entry[1].stat().st_size

    def _info(self, commit: Commit) -> DatasetVersionInfo:
        return DatasetVersionInfo(
            version_id=commit.sha,
            dataset_id=commit.dataset_id or "",
            created_at=commit.created_at,
            message=commit.message,
            file_count=commit.tracked.nfiles,
            size_bytes=commit.tracked.size,
            checksum=commit.tracked.md5,
            parent_version_id=commit.parent,
        )

    def _pushed(self, dataset_id: str, sha: str, uploaded: int, *, already: bool) -> PushResult:
        return PushResult(
            dataset_id=dataset_id,
            version_id=sha,
            remote=self._remote_shown,
            uploaded_files=uploaded,
            already_pushed=already,
        )

    def _remote_problem(self) -> str | None:
        """Why the remote cannot be reached, or None when it can (a folder remote that
        is not there yet is made by the first push)."""
        if "://" not in self.remote_url:
            path = Path(self.remote_url)
            if path.exists() and not path.is_dir():
                return f"{path} is not a folder"
            return None
        parts = urlsplit(self.remote_url)
        if parts.scheme in _PORTS:
            # DVC's HTTP file system cannot list, and fsspec's exists() answers False for
            # a host that refuses the connection: whether the host answers is what tells
            host, port = parts.hostname or "", parts.port or _PORTS[parts.scheme]
            try:
                socket.create_connection((host, port), self.settings.remote_timeout_seconds).close()
            except OSError as exc:
                return f"{host}:{port}: {type(exc).__name__}: {exc}"
            return None
        try:
            from dvc.fs import get_cloud_fs

            from llmops_dvc.repo import REMOTE

            cls, config, fs_path = get_cloud_fs(self.dvc_config(), name=REMOTE)
            # a listing, not exists() (which answers False for some failures); an empty
            # remote is FileNotFoundError: an answer
            cls(**config).ls(fs_path, detail=False)
        except FileNotFoundError:
            return None
        except Exception as exc:
            return self._scrub(f"{type(exc).__name__}: {exc}".strip())
        return None

    @contextlib.contextmanager
    def _remote_errors(self, where: str) -> Iterator[None]:
        """DVC's failures to reach the remote, as :class:`IntegrationUnavailable`."""
        from dvc.exceptions import DvcException

        try:
            yield
        except LlmopsError:
            raise
        except (DvcException, OSError, ConnectionError, TimeoutError) as exc:
            raise IntegrationUnavailable(
                self._scrub(
                    f"{where}: the remote {self._remote_shown} cannot be reached "
                    f"({type(exc).__name__}: {exc})"
                )
            ) from exc

    @contextlib.contextmanager
    def _translated(self, where: str) -> Iterator[None]:
        """DVC's, git's and the disk's failures, as :class:`IntegrationUnavailable`."""
        from dvc.exceptions import DvcException
        from scmrepo.exceptions import SCMError

        try:
            yield
        except LlmopsError:
            raise
        except (DvcException, SCMError, OSError) as exc:
            raise IntegrationUnavailable(
                self._scrub(f"{where} failed: {type(exc).__name__}: {exc}")
            ) from exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _replace(staging: Path, target: Path) -> None:
    """``target`` replaced by ``staging`` (renames: never a mix of the two)."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _within(seconds: float, probe: Callable[[], str | None]) -> str | None:
    """``probe()`` in a daemon thread, given up on after ``seconds`` (a remote that does
    not answer must not hold health() up)."""
    result: list[str | None] = []
    thread = threading.Thread(target=lambda: result.append(probe()), daemon=True)
    thread.start()
    thread.join(seconds)
    if not result:
        return f"no answer within {seconds:g} s"
    return result[0]
