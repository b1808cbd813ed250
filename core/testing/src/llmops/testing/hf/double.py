"""The Hugging Face Hub double: the Hub's REST API, its git-backed repositories with LFS,
the ``resolve`` download route and an LFS storage host (a second port, as the Hub's CDN
is another host). See the package's docstring for what is modelled."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets as token_source
import shutil
import string
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode

import yaml

from llmops.testing.hf import errors
from llmops.testing.hf.documents import EXPANDABLE, Documents, sort_found
from llmops.testing.hf.errors import INVALID_CREDENTIALS, HubError
from llmops.testing.hf.replies import (
    byte_range,
    content_type,
    decode_cursor,
    disposition,
    encode_cursor,
    error_answer,
    iso,
    json_answer,
    json_body,
    query_flag,
    query_int,
    query_value,
    s3_error,
)
from llmops.testing.hf.repo import (
    GITATTRIBUTES,
    LFS_THRESHOLD,
    Commit,
    LfsStore,
    PullRequest,
    Repo,
    StoredFile,
    card_problems,
    gitignored,
    is_lfs,
    lfs_patterns,
    new_work_dir,
    unsafe_path,
)
from llmops.testing.hf.server import Answer, HubHttpServer, Incoming

__all__ = ["HfHubDouble", "HubRequest", "TokenGrant", "running_hf_hub"]

FileContent = bytes | str | Path

#: Entries per page of a tree listing (50 with ``expand``), as on the Hub.
TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
#: Commits per page of a commit listing.
COMMITS_PAGE = 50
#: Models per page of a search when no ``limit`` is given.
SEARCH_PAGE = 1000
#: How long a signed LFS URL stays valid.
SIGNED_URL_SECONDS = 3600
_SHA = re.compile(r"[0-9a-f]{40}")
_REPO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?")
_KINDS = {"models": "model", "datasets": "dataset"}
_REPO = r"/api/(?P<kind>models|datasets)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_GIT = r"/(?:(?P<kind>datasets)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)\.git/info/lfs/objects"
_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")


@dataclass(frozen=True)
class TokenGrant:
    """Who a token authenticates and what it may do: ``read`` or ``write`` (write also
    reads). A user acts in its own namespace and in the organisations it belongs to."""

    user: str
    role: str = "write"


@dataclass(frozen=True)
class HubRequest:
    """One request as the double received it (secrets redacted from the headers)."""

    #: ``"hub"`` (the API and downloads) or ``"cdn"`` (the LFS storage host).
    server: str
    method: str
    #: The path as sent (percent-escapes kept), without the query string.
    path: str
    query: Mapping[str, list[str]]
    #: Header names in lower case; ``authorization`` reads ``Bearer <redacted>``.
    headers: Mapping[str, str]
    #: The user the request's token authenticated, or None (no token, or a bad one).
    user: str | None
    #: Whether the request carried a token at all.
    token_sent: bool
    status: int
    received_at: datetime


@dataclass
class _Fault:
    status: int
    message: str
    headers: dict[str, str]
    path_prefix: str | None
    method: str | None
    server: str | None
    remaining: int | None
    cut_after: int | None = None


@dataclass
class _Call:
    request: Incoming
    server: str
    grant: TokenGrant | None

    @property
    def authenticated(self) -> bool:
        return self.grant is not None


Handler = Callable[..., Answer]


class HfHubDouble:
    """The Hub on 127.0.0.1: :attr:`url` is its endpoint (``HfApi(endpoint=...)``,
    ``HF_ENDPOINT``), :attr:`cdn_url` the host its LFS downloads redirect to and uploads go
    to. ``work_dir`` holds the LFS objects (a temporary folder removed at :meth:`stop`
    when None). Tokens: :attr:`write_token` and :attr:`read_token` for :attr:`user`,
    :attr:`stranger_token` (write) for another user; :meth:`add_token` for more."""

    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        user: str = "llmops-tester",
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.user = user
        self.stranger = "someone-else"
        self.write_token = _new_token()
        self.read_token = _new_token()
        self.stranger_token = _new_token()
        self._initial_tokens = {
            self.write_token: TokenGrant(user, "write"),
            self.read_token: TokenGrant(user, "read"),
            self.stranger_token: TokenGrant(self.stranger, "write"),
        }
        self._tokens = dict(self._initial_tokens)
        self._orgs: dict[str, set[str]] = {}
        self._given_work_dir = work_dir
        self._work_dir: Path | None = None
        self._store: LfsStore | None = None
        self._documents: Documents | None = None
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._created = 0
        self._order: dict[tuple[str, str], int] = {}
        self._signing_key = token_source.token_bytes(32)
        self._faults: list[_Fault] = []
        self._slow = 0.0
        self._wake = threading.Event()
        self._recorded: list[HubRequest] = []
        self._errors: list[str] = []
        #: moves at each reset: a request that arrived before it is not recorded after it
        self._generation = 0
        self._changed = threading.Condition(self._lock)
        self._hub = HubHttpServer(self._dispatch_hub, name="hf-hub", host=host)
        self._cdn = HubHttpServer(self._dispatch_cdn, name="hf-cdn", host=host)
        self._routes = self._hub_routes()
        self._cdn_routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
            (frozenset({"GET", "HEAD"}), re.compile(r"/lfs/(?P<oid>[0-9a-f]{64})"), self._cdn_get),
            (
                frozenset({"PUT"}),
                re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})"),
                self._cdn_put,
            ),
        ]
        self._started = False

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("the Hub double is already running")
        if self._given_work_dir is not None:
            self._work_dir = Path(self._given_work_dir)
            self._work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._work_dir = new_work_dir()
        self._store = LfsStore(self._work_dir / "lfs")
        self._store.clear()
        self._documents = Documents(self._store)
        self._wake.clear()
        self._hub.start()
        self._cdn.start()
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._wake.set()
        self._hub.stop()
        self._cdn.stop()
        if self._given_work_dir is None and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback_: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to a fresh Hub: no repos (their LFS objects deleted), the first tokens, no
        organisations, no faults, both hosts up, the request log and errors empty.
        Requests held back by :meth:`slow` are answered at once."""
        self._wake.set()
        with self._lock:
            self._generation += 1
            self._repos.clear()
            self._order.clear()
            if self._documents is not None:
                self._documents.clear()
            self._tokens = dict(self._initial_tokens)
            self._orgs.clear()
            self._faults.clear()
            self._slow = 0.0
            self._recorded.clear()
            self._errors.clear()
            if self._store is not None:
                self._store.clear()
        self.up()

    # -- where it is ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Hub's endpoint: ``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self._hub.port}"

    @property
    def cdn_url(self) -> str:
        """The LFS storage host (another port: another origin, so huggingface_hub drops
        the Authorization header there, as it does for the Hub's CDN)."""
        return f"http://{self.host}:{self._cdn.port}"

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the Hub double is not running; call start() first")
        return self._work_dir

    @property
    def store(self) -> LfsStore:
        if self._store is None:
            raise RuntimeError("the Hub double is not running; call start() first")
        return self._store

    @property
    def documents(self) -> Documents:
        """What the Hub tells about repos (model_info documents, tree entries)."""
        if self._documents is None:
            raise RuntimeError("the Hub double is not running; call start() first")
        return self._documents

    def repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        """The repo's page, as the Hub links it."""
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    # -- tokens and users ---------------------------------------------------------------------

    def add_token(self, token: str, user: str, *, role: str = "write") -> None:
        """``token`` authenticates ``user`` from now on, with ``role`` read or write."""
        if role not in ("read", "write"):
            raise ValueError(f"role is 'read' or 'write', not {role!r}")
        with self._lock:
            self._tokens[token] = TokenGrant(user, role)

    def revoke_token(self, token: str) -> None:
        """The Hub forgets ``token``: requests carrying it are 401."""
        with self._lock:
            self._tokens.pop(token, None)

    def add_org(self, org: str, members: Iterable[str]) -> None:
        """An organisation whose members read its private repos and write its repos."""
        with self._lock:
            self._orgs.setdefault(org, set()).update(members)

    # -- seeding and changing repos ---------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileContent] | None = None,
        *,
        repo_type: str = "model",
        private: bool = False,
        gated: str | bool = False,
        card: str | None = None,
        tags: Sequence[str] | None = None,
        pipeline_tag: str | None = None,
        library_name: str | None = None,
        license: str | None = None,
        author: str | None = None,
        message: str = "Upload folder using huggingface_hub",
        downloads: int = 0,
        likes: int = 0,
        unsafe_paths: bool = False,
    ) -> str:
        """Create ``repo_id`` as the Hub does (an ``initial commit`` holding the Hub's
        ``.gitattributes``) and commit ``files`` to ``main``; the head's sha.

        Files are bytes, text or a local :class:`~pathlib.Path` (streamed in); they are LFS
        by the Hub's rule (``.gitattributes``, 10 MB, binary). ``card`` is the README.md
        text; or ``tags``/``pipeline_tag``/``library_name``/``license`` write one with that
        YAML front matter, which is where the Hub reads them (``cardData``).
        ``unsafe_paths`` lets names the Hub would refuse in (``../evil.txt``,
        ``a/../../evil``, ``/etc/x``): what a malicious hub could list, for traversal tests.
        """
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type is 'model' or 'dataset', not {repo_type!r}")
        _check_repo_id(repo_id)
        if gated not in (False, "auto", "manual"):
            raise ValueError(f"gated is False, 'auto' or 'manual', not {gated!r}")
        contents = dict(files or {})
        metadata = {
            key: value
            for key, value in (
                ("license", license),
                ("library_name", library_name),
                ("pipeline_tag", pipeline_tag),
                ("tags", list(tags) if tags is not None else None),
            )
            if value is not None
        }
        if card is not None or metadata:
            if "README.md" in contents:
                raise ValueError("give the card either as README.md in files or as card=...")
            if card is None:
                front = yaml.safe_dump(metadata, sort_keys=False)
                card = f"---\n{front}---\n\n# {repo_id.split('/')[-1]}\n"
            contents["README.md"] = card
        if not unsafe_paths:
            _check_paths(contents)
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                raise ValueError(f"the Hub double already has {repo_type} {repo_id}")
            repo = self._new_repo(repo_type, repo_id, private=private)
            repo.gated = gated
            repo.downloads = downloads
            repo.likes = likes
            if contents:
                self._commit_files(
                    repo,
                    "main",
                    contents,
                    (),
                    title=message,
                    description="",
                    author=author or repo.namespace,
                    unsafe_paths=unsafe_paths,
                )
            return repo.branches["main"]

    def push_commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent] | None = None,
        deletions: Iterable[str] = (),
        *,
        branch: str = "main",
        message: str = "Update files",
        description: str = "",
        author: str | None = None,
        repo_type: str = "model",
        unsafe_paths: bool = False,
    ) -> str:
        """A new commit on ``branch`` (as if someone pushed): ``files`` added or replaced,
        ``deletions`` (paths; a folder ending in ``/`` takes its content) removed; the new
        commit's sha."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if branch not in repo.branches:
                raise LookupError(f"{repo_id} has no branch {branch!r}")
            return self._commit_files(
                repo,
                branch,
                dict(files or {}),
                tuple(deletions),
                title=message,
                description=description,
                author=author or repo.namespace,
                unsafe_paths=unsafe_paths,
            )

    def create_branch(
        self, repo_id: str, branch: str, revision: str = "main", *, repo_type: str = "model"
    ) -> str:
        """A branch at ``revision``; its sha."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._revision(repo, revision)
            if branch in repo.branches:
                raise ValueError(f"{repo_id} already has a branch {branch!r}")
            repo.branches[branch] = commit.id
            return commit.id

    def create_tag(
        self, repo_id: str, tag: str, revision: str = "main", *, repo_type: str = "model"
    ) -> str:
        """A tag at ``revision``; its sha."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._revision(repo, revision)
            repo.tags[tag] = commit.id
            return commit.id

    def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None:
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)

    def set_private(self, repo_id: str, private: bool, *, repo_type: str = "model") -> None:
        with self._lock:
            self._repo(repo_type, repo_id).private = private

    def set_gated(self, repo_id: str, gated: str | bool, *, repo_type: str = "model") -> None:
        """Gate the repo's files (``"auto"``/``"manual"``) or open it (False)."""
        if gated not in (False, "auto", "manual"):
            raise ValueError(f"gated is False, 'auto' or 'manual', not {gated!r}")
        with self._lock:
            self._repo(repo_type, repo_id).gated = gated

    def grant_access(self, repo_id: str, user: str, *, repo_type: str = "model") -> None:
        """``user`` may download a gated repo's files."""
        with self._lock:
            self._repo(repo_type, repo_id).granted.add(user)

    # -- what tests read ----------------------------------------------------------------------

    def has_repo(self, repo_id: str, *, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, *, repo_type: str = "model") -> bool:
        with self._lock:
            return self._repo(repo_type, repo_id).private

    def resolve(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """The commit sha ``revision`` (a branch, tag, ``refs/pr/N`` or sha) points at."""
        with self._lock:
            return self._revision(self._repo(repo_type, repo_id), revision).id

    def head(self, repo_id: str, branch: str = "main", *, repo_type: str = "model") -> str:
        return self.resolve(repo_id, branch, repo_type=repo_type)

    def commits(
        self, repo_id: str, revision: str = "main", *, repo_type: str = "model"
    ) -> list[str]:
        """The shas of ``revision`` and its ancestors, newest first."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return [c.id for c in repo.history(self._revision(repo, revision))]

    def file_hashes(
        self, repo_id: str, revision: str = "main", *, repo_type: str = "model"
    ) -> dict[str, str]:
        """Path -> sha256 of every file at ``revision``."""
        with self._lock:
            commit = self._revision(self._repo(repo_type, repo_id), revision)
            return {path: stored.sha256 for path, stored in sorted(commit.files.items())}

    def lfs_paths(
        self, repo_id: str, revision: str = "main", *, repo_type: str = "model"
    ) -> set[str]:
        """The paths at ``revision`` stored as LFS objects."""
        with self._lock:
            commit = self._revision(self._repo(repo_type, repo_id), revision)
            return {path for path, stored in commit.files.items() if stored.lfs}

    def file_bytes(
        self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model"
    ) -> bytes:
        """A file's content at ``revision`` (read whole: for small files)."""
        with self._lock:
            commit = self._revision(self._repo(repo_type, repo_id), revision)
            stored = commit.files[path]
        return self.store.content(stored)

    def pull_requests(self, repo_id: str, *, repo_type: str = "model") -> list[dict[str, Any]]:
        """The repo's pull requests: ``num``, ``ref``, ``head``, ``base``, ``title``,
        ``author``."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return [
                {
                    "num": pr.num,
                    "ref": pr.ref,
                    "head": pr.head,
                    "base": pr.base,
                    "title": pr.title,
                    "author": pr.author,
                }
                for pr in sorted(repo.pulls.values(), key=lambda p: p.num)
            ]

    @property
    def requests(self) -> list[HubRequest]:
        """Every request both hosts received since the last reset, oldest first."""
        with self._lock:
            return list(self._recorded)

    def requests_to(
        self, method: str | None = None, path: str | None = None, *, server: str | None = None
    ) -> list[HubRequest]:
        """The requests with ``method`` (any when None) whose path matches the regular
        expression ``path`` in full (any when None), on ``server`` (``hub``/``cdn``)."""
        regex = re.compile(path) if path is not None else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (regex is None or regex.fullmatch(r.path))
            and (server is None or r.server == server)
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._recorded.clear()

    def wait_for_request(
        self, predicate: Callable[[HubRequest], bool], *, timeout: float = 5.0
    ) -> HubRequest:
        """The first recorded request matching ``predicate``, waiting up to ``timeout``."""
        with self._changed:
            found: list[HubRequest] = []

            def seen() -> bool:
                found[:] = [r for r in self._recorded if predicate(r)][:1]
                return bool(found)

            if not self._changed.wait_for(seen, timeout=timeout):
                raise AssertionError(f"no matching request reached the Hub double in {timeout} s")
            return found[0]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of route handlers that crashed (answered 500): bugs in the double."""
        with self._lock:
            return list(self._errors)

    def check_errors(self) -> None:
        """Raise AssertionError if the double crashed since the last reset."""
        found = self.errors
        if found:
            raise AssertionError(f"the Hub double crashed {len(found)} time(s):\n{found[0]}")

    # -- faults -------------------------------------------------------------------------------

    def down(self) -> None:
        """Both hosts refuse connections (listening sockets and open connections closed)."""
        self._wake.set()
        self._hub.stop()
        self._cdn.stop()

    def up(self) -> None:
        """Both hosts serve again, on the same ports."""
        if self._started:
            self._wake.clear()
            self._hub.start()
            self._cdn.start()

    def rate_limit(
        self, times: int | None, *, retry_after: int = 1, path_prefix: str | None = None
    ) -> None:
        """The next ``times`` requests to the Hub (None: all, until :meth:`clear_faults`),
        or those whose path starts with ``path_prefix``, answer 429 with ``Retry-After``
        and the Hub's ``RateLimit`` headers (``t`` = ``retry_after``)."""
        self._arm(
            _Fault(
                status=429,
                message=(
                    "You have been rate-limited; you can retry this action in about "
                    f"{retry_after} seconds."
                ),
                headers={
                    "Retry-After": str(retry_after),
                    "RateLimit": f'"api";r=0;t={retry_after}',
                    "RateLimit-Policy": '"fixed window";"api";q=1000;w=300',
                },
                path_prefix=path_prefix,
                method=None,
                server="hub",
                remaining=times,
            )
        )

    def fail(
        self,
        status: int,
        *,
        path_prefix: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        message: str | None = None,
        server: str | None = None,
    ) -> None:
        """The next ``times`` matching requests (None: all, until :meth:`clear_faults`)
        answer ``status`` with the Hub's error body. Matching: path prefix, method, host
        (``hub``/``cdn``; both when None). The newest fault wins."""
        self._arm(
            _Fault(
                status=status,
                message=message or f"injected fault: HTTP {status}",
                headers={},
                path_prefix=path_prefix,
                method=method.upper() if method else None,
                server=server,
                remaining=times,
            )
        )

    def interrupt(
        self, after_bytes: int, *, path_prefix: str | None = None, times: int | None = 1
    ) -> None:
        """The next ``times`` file bodies sent (resolve or the LFS host, GET only) stop
        after ``after_bytes`` bytes and the connection closes: a transfer cut mid-way.
        (huggingface_hub resumes with a Range request from the last whole 10 MB piece
        it wrote.)"""
        self._arm(
            _Fault(
                status=0,
                message="",
                headers={},
                path_prefix=path_prefix,
                method="GET",
                server=None,
                remaining=times,
                cut_after=max(0, after_bytes),
            )
        )

    def slow(self, seconds: float) -> None:
        """Every answer of both hosts waits ``seconds`` first (0: answer at once)."""
        self._slow = max(0.0, seconds)

    def clear_faults(self) -> None:
        """No more injected failures, rate limits, interruptions or delays."""
        with self._lock:
            self._faults.clear()
            self._slow = 0.0

    def _arm(self, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining <= 0:
            raise ValueError("times is a positive number of requests, or None for all")
        with self._lock:
            self._faults.insert(0, fault)

    def _take_fault(self, call: _Call, *, cut: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.cut_after is not None) != cut:
                    continue
                if fault.server not in (None, call.server):
                    continue
                if fault.method not in (None, call.request.method):
                    continue
                if fault.path_prefix is not None and not call.request.path.startswith(
                    fault.path_prefix
                ):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- HTTP: plumbing -----------------------------------------------------------------------

    def _dispatch_hub(self, request: Incoming, gone: Callable[[], bool]) -> Answer:
        return self._dispatch("hub", request, self._routes)

    def _dispatch_cdn(self, request: Incoming, gone: Callable[[], bool]) -> Answer:
        return self._dispatch("cdn", request, self._cdn_routes)

    def _dispatch(
        self,
        server: str,
        request: Incoming,
        routes: list[tuple[frozenset[str], re.Pattern[str], Handler]],
    ) -> Answer:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        with self._lock:
            grant = self._tokens.get(token) if token else None
            generation = self._generation
        call = _Call(request=request, server=server, grant=grant)
        answer = self._answer(call, token, routes)
        if server == "hub":
            answer.headers.setdefault("X-Request-Id", f"Root=1-{token_source.token_hex(12)}")
        self._record(call, token is not None, answer.status, generation)
        return answer

    def _answer(
        self,
        call: _Call,
        token: str | None,
        routes: list[tuple[frozenset[str], re.Pattern[str], Handler]],
    ) -> Answer:
        if self._slow:
            self._wake.wait(self._slow)
        fault = self._take_fault(call, cut=False)
        if fault is not None:
            return error_answer(HubError(fault.status, fault.message, headers=fault.headers))
        if call.server == "hub" and token is not None and call.grant is None:
            return error_answer(HubError(401, INVALID_CREDENTIALS))
        method = call.request.method
        allowed = False
        for methods, regex, handler in routes:
            found = regex.fullmatch(call.request.path)
            if found is None:
                continue
            allowed = True
            if method not in methods:
                continue
            params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
            try:
                answer = handler(call, **params)
            except HubError as error:
                return error_answer(error)
            except Exception:
                with self._lock:
                    self._errors.append(traceback.format_exc())
                return error_answer(HubError(500, "the Hub double crashed; see its errors"))
            if method == "GET" and (answer.file is not None or answer.length is not None):
                cut = self._take_fault(call, cut=True)
                if cut is not None:
                    answer.cut_after = cut.cut_after
            return answer
        if allowed:
            return error_answer(HubError(405, "Method not allowed"))
        return error_answer(HubError(404, "Sorry, we can't find the page you are looking for."))

    def _record(self, call: _Call, token_sent: bool, status: int, generation: int) -> None:
        headers = {
            name: ("Bearer <redacted>" if name == "authorization" else "<redacted>")
            if name in _SECRET_HEADERS
            else value
            for name, value in call.request.headers.items()
        }
        entry = HubRequest(
            server=call.server,
            method=call.request.method,
            path=call.request.path,
            query=call.request.query,
            headers=headers,
            user=call.grant.user if call.grant else None,
            token_sent=token_sent,
            status=status,
            received_at=datetime.now(UTC),
        )
        with self._changed:
            if generation != self._generation:
                return
            self._recorded.append(entry)
            self._changed.notify_all()

    def _hub_routes(self) -> list[tuple[frozenset[str], re.Pattern[str], Handler]]:
        get, post = frozenset({"GET"}), frozenset({"POST"})
        table: list[tuple[frozenset[str], str, Handler]] = [
            (get, r"/api/whoami-v2", self._whoami),
            (get, r"/api/(?P<kind>models|datasets)", self._search),
            (post, r"/api/repos/create", self._create_repo),
            (frozenset({"DELETE"}), r"/api/repos/delete", self._delete_repo),
            (post, r"/api/validate-yaml", self._validate_yaml),
            (get, _REPO, self._info),
            (get, _REPO + r"/revision/(?P<rev>[^/]+)", self._info),
            (get, _REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", self._tree),
            (post, _REPO + r"/paths-info/(?P<rev>[^/]+)", self._paths_info),
            (get, _REPO + r"/refs", self._refs),
            (get, _REPO + r"/commits/(?P<rev>[^/]+)", self._commits),
            (post, _REPO + r"/preupload/(?P<rev>[^/]+)", self._preupload),
            (post, _REPO + r"/commit/(?P<rev>[^/]+)", self._commit),
            (frozenset({"POST", "DELETE"}), _REPO + r"/branch/(?P<ref>[^/]+)", self._branch),
            (frozenset({"POST", "DELETE"}), _REPO + r"/tag/(?P<ref>[^/]+)", self._tag),
            (frozenset({"PUT"}), _REPO + r"/settings", self._settings),
            (
                frozenset({"GET", "HEAD"}),
                r"/(?:(?P<kind>datasets)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)"
                r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
                self._resolve,
            ),
            (post, _GIT + r"/batch", self._lfs_batch),
            (post, _GIT + r"/verify", self._lfs_verify),
        ]
        return [(methods, re.compile(pattern), handler) for methods, pattern, handler in table]

    # -- access -------------------------------------------------------------------------------

    def _member(self, user: str, namespace: str) -> bool:
        return user == namespace or user in self._orgs.get(namespace, set())

    def _may_read(self, grant: TokenGrant | None, repo: Repo) -> bool:
        return not repo.private or (grant is not None and self._member(grant.user, repo.namespace))

    def _readable(self, call: _Call, kind: str | None, ns: str, name: str) -> Repo:
        repo = self._repos.get((_KINDS.get(kind or "models", "model"), f"{ns}/{name}"))
        if repo is None or not self._may_read(call.grant, repo):
            raise errors.repo_not_found(call.authenticated)
        return repo

    def _writable(self, call: _Call, repo: Repo, *, pull_request: bool = False) -> TokenGrant:
        """The caller's grant when it may write to ``repo`` (or open a pull request on
        it: any write token of a user who can read the repo)."""
        grant = call.grant
        if grant is None:
            raise errors.repo_not_found(False)
        if grant.role != "write":
            raise HubError(
                403,
                "You have read access but not the required permissions for this operation: "
                "use a token with the write role.",
            )
        if not pull_request and not self._member(grant.user, repo.namespace):
            raise HubError(
                403, f"You don't have the rights to write to {repo.repo_type} {repo.repo_id}"
            )
        return grant

    # -- HTTP: account and search ---------------------------------------------------------------

    def _whoami(self, call: _Call) -> Answer:
        grant = call.grant
        if grant is None:
            raise HubError(401, INVALID_CREDENTIALS)
        with self._lock:
            orgs = sorted(org for org, members in self._orgs.items() if grant.user in members)
        return json_answer(
            {
                "type": "user",
                "id": hashlib.sha1(grant.user.encode(), usedforsecurity=False).hexdigest()[:24],
                "name": grant.user,
                "fullname": grant.user,
                "email": f"{grant.user}@example.com",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": f"{self.url}/avatars/{grant.user}.svg",
                "orgs": [{"type": "org", "name": org, "fullname": org} for org in orgs],
                "auth": {
                    "type": "access_token",
                    "accessToken": {
                        "displayName": "llmops-hub-double",
                        "role": grant.role,
                        "createdAt": "2024-01-01T00:00:00.000Z",
                    },
                },
            }
        )

    def _search(self, call: _Call, kind: str) -> Answer:
        query = call.request.query
        repo_type = _KINDS[kind]
        search = query_value(query, "search")
        author = query_value(query, "author")
        pipeline = query_value(query, "pipeline_tag")
        gated_filter = query_value(query, "gated")
        wanted = query.get("filter", [])
        limit = min(query_int(query_value(query, "limit"), SEARCH_PAGE), SEARCH_PAGE) or SEARCH_PAGE
        offset = decode_cursor(query_value(query, "cursor"))
        expand = query.get("expand", []) + query.get("expand[]", [])
        with self._lock:
            found: list[tuple[Repo, Commit, dict[str, Any]]] = []
            for key, repo in self._repos.items():
                if key[0] != repo_type or not self._may_read(call.grant, repo):
                    continue
                if search and search.lower() not in repo.repo_id.lower():
                    continue
                if author and repo.namespace != author:
                    continue
                commit = repo.head()
                document = self.documents.document(repo, commit, blobs=False)
                tags = document.get("tags", [])
                if pipeline and document.get("pipeline_tag") != pipeline:
                    continue
                if any(value not in tags for value in wanted):
                    continue
                if gated_filter is not None and bool(repo.gated) != query_flag(gated_filter):
                    continue
                found.append((repo, commit, document))
            sort_found(
                found, query_value(query, "sort"), query_value(query, "direction"), self._order
            )
            items = [
                self.documents.search_item(
                    document,
                    expand=expand,
                    full=query_flag(query_value(query, "full")),
                    card_data=query_flag(query_value(query, "cardData")),
                    config=query_flag(query_value(query, "config")),
                )
                for _repo, _commit, document in found[offset : offset + limit]
            ]
        headers = {}
        if offset + limit < len(found):
            headers["Link"] = self._next_link(call.request, cursor=offset + limit)
        return json_answer(items, headers=headers)

    # -- HTTP: repos ----------------------------------------------------------------------------

    def _create_repo(self, call: _Call) -> Answer:
        body = json_body(call.request)
        grant = call.grant
        if grant is None:
            raise HubError(401, "Invalid username or password.")
        repo_type = str(body.get("type") or "model")
        if repo_type not in ("model", "dataset"):
            raise HubError(400, f"the Hub double does not model {repo_type} repos")
        name = str(body.get("name") or "")
        namespace = str(body.get("organization") or grant.user)
        if not _REPO_NAME.fullmatch(name) or name.endswith(".git") or ".." in name:
            raise HubError(400, f"Invalid repo name: {name!r}")
        if grant.role != "write" or not self._member(grant.user, namespace):
            raise HubError(
                403,
                f"You don't have the rights to create a {repo_type} under the namespace "
                f'"{namespace}"',
            )
        visibility = body.get("visibility")
        private = visibility == "private" if visibility is not None else bool(body.get("private"))
        repo_id = f"{namespace}/{name}"
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return json_answer(
                    {
                        "error": f"You already created this {repo_type} repo",
                        "url": self.repo_url(repo_id, repo_type),
                    },
                    status=409,
                    headers={"X-Error-Message": f"You already created this {repo_type} repo"},
                )
            repo = self._new_repo(repo_type, repo_id, private=private)
        return json_answer(
            {"url": self.repo_url(repo_id, repo_type), "name": repo_id, "id": repo.object_id}
        )

    def _delete_repo(self, call: _Call) -> Answer:
        body = json_body(call.request)
        repo_type = str(body.get("type") or "model")
        namespace = str(body.get("organization") or (call.grant.user if call.grant else ""))
        repo_id = f"{namespace}/{body.get('name')}"
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None or not self._may_read(call.grant, repo):
                raise errors.repo_not_found(call.authenticated)
            self._writable(call, repo)
            del self._repos[(repo_type, repo_id)]
        return json_answer({})

    def _settings(self, call: _Call, kind: str, ns: str, name: str) -> Answer:
        body = json_body(call.request)
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            self._writable(call, repo)
            if "visibility" in body:
                repo.private = body["visibility"] == "private"
            if "private" in body:
                repo.private = bool(body["private"])
            if "gated" in body:
                if body["gated"] not in (False, "auto", "manual"):
                    raise HubError(400, "gated must be false, 'auto' or 'manual'")
                repo.gated = body["gated"]
        return json_answer({})

    def _validate_yaml(self, call: _Call) -> Answer:
        body = json_body(call.request)
        problems = card_problems(str(body.get("content") or ""))
        if problems:
            return json_answer(
                {"errors": [{"message": m} for m in problems], "warnings": []}, status=400
            )
        return json_answer({"errors": [], "warnings": []})

    def _info(self, call: _Call, kind: str, ns: str, name: str, rev: str = "main") -> Answer:
        query = call.request.query
        expand = query.get("expand", []) + query.get("expand[]", [])
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            commit = self._revision(repo, rev)
            document = self.documents.document(
                repo, commit, blobs=query_flag(query_value(query, "blobs"))
            )
            if query_flag(query_value(query, "securityStatus")):
                document["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        if expand:
            unknown = [key for key in expand if key not in EXPANDABLE]
            if unknown:
                raise HubError(400, f"Invalid expand value: {unknown[0]}")
            document = {k: v for k, v in document.items() if k in {"_id", "id", *expand}}
        return json_answer(document)

    def _refs(self, call: _Call, kind: str, ns: str, name: str) -> Answer:
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            document: dict[str, Any] = {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                    for b, sha in sorted(repo.branches.items())
                ],
                "converts": [],
                "tags": [
                    {"name": t, "ref": f"refs/tags/{t}", "targetCommit": sha}
                    for t, sha in sorted(repo.tags.items())
                ],
            }
            if query_flag(query_value(call.request.query, "include_prs")):
                document["pullRequests"] = [
                    {"name": pr.ref, "ref": pr.ref, "targetCommit": pr.head}
                    for pr in sorted(repo.pulls.values(), key=lambda p: p.num)
                ]
        return json_answer(document)

    def _commits(self, call: _Call, kind: str, ns: str, name: str, rev: str) -> Answer:
        query = call.request.query
        page = query_int(query_value(query, "p"), 0)
        formatted = "formatted" in query.get("expand[]", []) + query.get("expand", [])
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            history = list(repo.history(self._revision(repo, rev)))
        chunk = history[page * COMMITS_PAGE : (page + 1) * COMMITS_PAGE]
        items = []
        for commit in chunk:
            item: dict[str, Any] = {
                "id": commit.id,
                "title": commit.title,
                "message": commit.description,
                "authors": [
                    {"user": commit.author, "avatar": f"{self.url}/avatars/{commit.author}.svg"}
                ],
                "date": iso(commit.date),
            }
            if formatted:
                item["formatted"] = {
                    "title": html.escape(commit.title),
                    "message": html.escape(commit.description),
                }
            items.append(item)
        headers = {}
        if (page + 1) * COMMITS_PAGE < len(history):
            headers["Link"] = self._next_link(call.request, p=page + 1)
        return json_answer(items, headers=headers)

    def _tree(self, call: _Call, kind: str, ns: str, name: str, rev: str, path: str = "") -> Answer:
        query = call.request.query
        recursive = query_flag(query_value(query, "recursive"))
        expand = query_flag(query_value(query, "expand"))
        offset = decode_cursor(query_value(query, "cursor"))
        folder = path.strip("/")
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            commit = self._revision(repo, rev)
            if folder and folder not in commit.folders:
                raise errors.entry_not_found(folder, commit.id)
            paths = [
                p
                for p in sorted({*commit.files, *(f for f in commit.folders if f)})
                if (
                    (p.startswith(folder + "/") or not folder)
                    if recursive
                    else commit.folder_of(p) == folder
                )
            ]
            size = TREE_PAGE_EXPANDED if expand else TREE_PAGE
            entries = [
                self.documents.entry(repo, commit, p, expand=expand)
                for p in paths[offset : offset + size]
            ]
        headers = {}
        if offset + size < len(paths):
            headers["Link"] = self._next_link(call.request, cursor=offset + size)
        return json_answer(entries, headers=headers)

    def _paths_info(self, call: _Call, kind: str, ns: str, name: str, rev: str) -> Answer:
        content_type = call.request.headers.get("content-type", "")
        raw = call.request.read()
        if "json" in content_type:
            body = json.loads(raw or b"{}")
            wanted = [str(p) for p in body.get("paths", [])]
            expand = bool(body.get("expand"))
        else:
            form = parse_qs(raw.decode(), keep_blank_values=True)
            wanted = form.get("paths", [])
            expand = query_flag((form.get("expand") or ["false"])[0])
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            commit = self._revision(repo, rev)
            entries = [
                self.documents.entry(repo, commit, p.strip("/"), expand=expand)
                for p in wanted
                if p.strip("/") in commit.files or p.strip("/") in commit.folders
            ]
        return json_answer(entries)

    def _branch(self, call: _Call, kind: str, ns: str, name: str, ref: str) -> Answer:
        body = json_body(call.request)
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            self._writable(call, repo)
            if call.request.method == "DELETE":
                if ref not in repo.branches:
                    raise errors.revision_not_found(ref)
                if ref == "main":
                    raise HubError(403, "Cannot delete the default branch")
                del repo.branches[ref]
                return json_answer({})
            if ref.startswith("refs/") or not ref:
                raise HubError(400, f"Invalid reference for a branch: {ref}")
            if ref in repo.branches:
                raise HubError(409, "Reference already exists")
            start = self._revision(repo, str(body.get("startingPoint") or "main"))
            repo.branches[ref] = start.id
        return json_answer({})

    def _tag(self, call: _Call, kind: str, ns: str, name: str, ref: str) -> Answer:
        body = json_body(call.request)
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            self._writable(call, repo)
            if call.request.method == "DELETE":
                if ref not in repo.tags:
                    raise errors.revision_not_found(ref)
                del repo.tags[ref]
                return json_answer({})
            tag = str(body.get("tag") or "")
            if not tag:
                raise HubError(400, "tag is required")
            if tag in repo.tags:
                raise HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = self._revision(repo, ref).id
        return json_answer({})

    # -- HTTP: uploads --------------------------------------------------------------------------

    def _preupload(self, call: _Call, kind: str, ns: str, name: str, rev: str) -> Answer:
        body = json_body(call.request)
        pull_request = query_flag(query_value(call.request.query, "create_pr"))
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            self._writable(call, repo, pull_request=pull_request)
            commit = self._revision(repo, rev)
            patterns = lfs_patterns(self.store.small_content(commit.files.get(".gitattributes")))
            ignore = body.get("gitIgnore")
            if ignore is None:
                found = self.store.small_content(commit.files.get(".gitignore"))
                ignore = found.decode("utf-8", "replace") if found else None
            answers = []
            for item in body.get("files") or []:
                path = str(item.get("path") or "")
                if unsafe_path(path):
                    raise HubError(400, f"Invalid path: {path}")
                try:
                    sample = base64.b64decode(str(item.get("sample") or ""))
                except (ValueError, binascii.Error):
                    raise HubError(400, f"Invalid sample for {path}") from None
                size = int(item.get("size") or 0)
                entry: dict[str, Any] = {
                    "path": path,
                    "uploadMode": "lfs" if is_lfs(path, size, sample, patterns) else "regular",
                    "shouldIgnore": gitignored(path, ignore),
                }
                existing = commit.files.get(path)
                if existing is not None:
                    entry["oid"] = existing.sha256 if existing.lfs else existing.oid
                answers.append(entry)
        return json_answer({"files": answers, "commitOid": commit.id})

    def _lfs_batch(self, call: _Call, ns: str, name: str, kind: str | None = None) -> Answer:
        body = json_body(call.request)
        if body.get("operation") != "upload":
            raise HubError(422, "the Hub double models the LFS batch API for uploads only")
        if "basic" not in (body.get("transfers") or ["basic"]):
            raise HubError(422, "the Hub double offers the basic transfer only")
        ref = (body.get("ref") or {}).get("name")
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            self._writable(call, repo, pull_request=ref is None)
            objects = []
            for item in body.get("objects") or []:
                oid = str(item.get("oid") or "")
                size = int(item.get("size") or 0)
                if not re.fullmatch(r"[0-9a-f]{64}", oid):
                    objects.append(
                        {"oid": oid, "size": size, "error": {"code": 422, "message": "Invalid oid"}}
                    )
                    continue
                if oid in repo.lfs_objects and self.store.has(oid, size):
                    objects.append({"oid": oid, "size": size})
                    continue
                expires = int(time.time()) + SIGNED_URL_SECONDS
                params = {
                    "repo": f"{repo.repo_type}:{repo.repo_id}",
                    "size": str(size),
                    "expires": str(expires),
                }
                params["signature"] = self._sign("PUT", oid, params)
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {
                            "upload": {
                                "href": f"{self.cdn_url}/lfs-upload/{oid}?{urlencode(params)}",
                                "expires_at": iso(datetime.fromtimestamp(expires, UTC)),
                            },
                            "verify": {
                                "href": (
                                    f"{self.url}/{_git_prefix(repo)}{repo.repo_id}.git"
                                    "/info/lfs/objects/verify"
                                ),
                            },
                        },
                    }
                )
        return json_answer(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_verify(self, call: _Call, ns: str, name: str, kind: str | None = None) -> Answer:
        body = json_body(call.request)
        oid, size = str(body.get("oid") or ""), int(body.get("size") or -1)
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            present = oid in repo.lfs_objects and self.store.has(oid, size)
        if not present:
            raise HubError(404, f"Object {oid} not found")
        return json_answer({}, content_type="application/vnd.git-lfs+json")

    def _commit(self, call: _Call, kind: str, ns: str, name: str, rev: str) -> Answer:
        pull_request = query_flag(query_value(call.request.query, "create_pr"))
        raw = call.request.read(limit=1 << 30)
        try:
            lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "Invalid ndjson body") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0].get("value") or {}
        summary = str(header.get("summary") or "").strip()
        if not summary:
            raise HubError(400, "A commit needs a summary")
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            grant = self._writable(call, repo, pull_request=pull_request)
            target, pull = self._commit_target(repo, rev, pull_request=pull_request)
            base = self._revision(repo, rev)
            parent = header.get("parentCommit")
            if parent is not None and parent != base.id:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(base.files)
            for line in lines[1:]:
                self._apply(repo, files, line)
            commit = Commit.make(
                files=files,
                parents=(base.id,),
                title=summary,
                description=str(header.get("description") or ""),
                author=grant.user,
            )
            repo.commits[commit.id] = commit
            pr_url = None
            if pull_request:
                number = repo.next_discussion
                repo.next_discussion += 1
                pr = PullRequest(
                    num=number,
                    title=summary,
                    author=grant.user,
                    ref=f"refs/pr/{number}",
                    base=rev,
                    created_at=commit.date,
                )
                repo.pulls[number] = pr
                pr.head = commit.id
                pr_url = f"{self.repo_url(repo.repo_id, repo.repo_type)}/discussions/{number}"
            elif pull is not None:
                pull.head = commit.id
            else:
                repo.branches[target] = commit.id
        return json_answer(
            {
                "success": True,
                "commitOid": commit.id,
                "commitUrl": f"{self.repo_url(repo.repo_id, repo.repo_type)}/commit/{commit.id}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _commit_target(
        self, repo: Repo, rev: str, *, pull_request: bool
    ) -> tuple[str, PullRequest | None]:
        """Where a commit on ``rev`` goes: a branch, or an open pull request's ref."""
        branch = rev.removeprefix("refs/heads/")
        if branch in repo.branches:
            return branch, None
        found = re.fullmatch(r"refs/pr/(\d+)", rev)
        if found and int(found[1]) in repo.pulls and not pull_request:
            return rev, repo.pulls[int(found[1])]
        if rev in repo.tags or rev in repo.commits:
            raise HubError(400, f"Invalid rev id: {rev} is not a branch")
        raise errors.revision_not_found(rev)

    def _apply(self, repo: Repo, files: dict[str, StoredFile], line: dict[str, Any]) -> None:
        key, value = line.get("key"), line.get("value") or {}
        path = str(value.get("path") or "")
        if key in ("file", "lfsFile", "deletedFile") and unsafe_path(path):
            raise HubError(400, f"Invalid path: {path}")
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding for {path}")
            try:
                data = base64.b64decode(str(value.get("content") or ""))
            except (ValueError, binascii.Error):
                raise HubError(400, f"Invalid base64 content for {path}") from None
            if len(data) >= LFS_THRESHOLD:
                raise HubError(
                    400,
                    "Your push was rejected because it contains files larger than 10 MiB. "
                    "Please use https://git-lfs.github.com/ to store large files.",
                )
            if b"\0" in data[:8000]:
                raise HubError(
                    400,
                    "Your push was rejected because it contains binary files. Please use "
                    "https://git-lfs.github.com/ to store binary files.",
                )
            files[path] = StoredFile.regular(data)
        elif key == "lfsFile":
            oid = str(value.get("oid") or "")
            if value.get("algo", "sha256") != "sha256":
                raise HubError(400, f"Unsupported LFS hash algorithm for {path}")
            if oid not in repo.lfs_objects or not self.store.has(oid):
                raise HubError(
                    400,
                    f"Your push was rejected because an LFS pointer pointed to a file that "
                    f"does not exist. For instance: {path} ({oid})",
                )
            files[path] = StoredFile.large(oid, self.store.path(oid).stat().st_size)
        elif key == "deletedFile":
            if path not in files:
                raise HubError(
                    404, f"A file with this name doesn't exist: {path}", code="EntryNotFound"
                )
            del files[path]
        elif key == "deletedFolder":
            prefix = path.strip("/") + "/"
            gone = [p for p in files if p.startswith(prefix)]
            if not gone:
                raise HubError(
                    404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound"
                )
            for p in gone:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation: {key!r}")

    # -- HTTP: downloads ------------------------------------------------------------------------

    def _resolve(
        self, call: _Call, ns: str, name: str, rev: str, path: str, kind: str | None = None
    ) -> Answer:
        with self._lock:
            repo = self._readable(call, kind, ns, name)
            commit = self._revision(repo, rev)
            stored = commit.files.get(path)
            if stored is None:
                raise errors.entry_not_found(path, commit.id)
            if repo.gated and path not in ("README.md", ".gitattributes"):
                grant = call.grant
                if grant is None or not (
                    grant.user in repo.granted or self._member(grant.user, repo.namespace)
                ):
                    raise errors.gated(
                        repo.repo_id, self.repo_url(repo.repo_id, repo.repo_type), grant is not None
                    )
        filename = path.rsplit("/", 1)[-1]
        headers = {
            "X-Repo-Commit": commit.id,
            "Accept-Ranges": "bytes",
            "Content-Disposition": disposition(filename),
            "Vary": "Origin, Accept",
        }
        if stored.lfs:
            location = self._signed_download(stored.sha256, filename)
            return Answer(
                status=302,
                headers={
                    **headers,
                    "Location": location,
                    "X-Linked-Etag": f'"{stored.sha256}"',
                    "X-Linked-Size": str(stored.size),
                    "ETag": f'"{stored.oid}"',
                    "Content-Type": "text/plain; charset=utf-8",
                },
                body=f"Found. Redirecting to {location}".encode(),
            )
        headers["ETag"] = f'"{stored.oid}"'
        headers["Content-Type"] = content_type(filename)
        data = stored.data or b""
        span = byte_range(call.request.headers.get("range"), len(data))
        if span is None:
            return Answer(status=200, headers=headers, body=data, length=len(data))
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Answer(status=206, headers=headers, body=data[start : end + 1])

    def _cdn_get(self, call: _Call, oid: str) -> Answer:
        query = call.request.query
        params = {k: query_value(query, k) or "" for k in ("expires", "filename")}
        if not self._signed(
            "GET", oid, params, query_value(query, "signature")
        ) or time.time() > query_int(params["expires"], 0):
            return s3_error(403, "AccessDenied", "Request has expired or the signature is wrong")
        path = self.store.path(oid)
        try:
            total = path.stat().st_size
        except FileNotFoundError:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{oid}"',
            "Content-Disposition": disposition(params["filename"] or oid),
        }
        try:
            span = byte_range(call.request.headers.get("range"), total)
        except HubError:
            return Answer(
                status=416,
                headers={"Content-Range": f"bytes */{total}", "Content-Type": "application/xml"},
                body=b"<Error><Code>InvalidRange</Code></Error>",
            )
        if span is None:
            return Answer(status=200, headers=headers, file=path, offset=0, length=total)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return Answer(status=206, headers=headers, file=path, offset=start, length=end - start + 1)

    def _cdn_put(self, call: _Call, oid: str) -> Answer:
        query = call.request.query
        params = {k: query_value(query, k) or "" for k in ("repo", "size", "expires")}
        if not self._signed(
            "PUT", oid, params, query_value(query, "signature")
        ) or time.time() > query_int(params["expires"], 0):
            return s3_error(403, "AccessDenied", "Request has expired or the signature is wrong")
        sha256, size = self.store.put_stream(call.request.chunks())
        if sha256 != oid or size != query_int(params["size"], -1):
            return s3_error(400, "BadDigest", "The sha256 or the size you specified did not match")
        repo_type, _, repo_id = params["repo"].partition(":")
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is not None:
                repo.lfs_objects.add(oid)
        return Answer(status=200, headers={"ETag": f'"{oid}"'})

    # -- signing --------------------------------------------------------------------------------

    def _sign(self, method: str, oid: str, params: Mapping[str, str]) -> str:
        message = "\n".join([method, oid, *(f"{k}={params[k]}" for k in sorted(params))])
        return hmac.new(self._signing_key, message.encode(), hashlib.sha256).hexdigest()

    def _signed(
        self, method: str, oid: str, params: Mapping[str, str], signature: str | None
    ) -> bool:
        return signature is not None and hmac.compare_digest(
            self._sign(method, oid, params), signature
        )

    def _signed_download(self, oid: str, filename: str) -> str:
        params = {"expires": str(int(time.time()) + SIGNED_URL_SECONDS), "filename": filename}
        params["signature"] = self._sign("GET", oid, params)
        return f"{self.cdn_url}/lfs/{oid}?{urlencode(params)}"

    # -- state ----------------------------------------------------------------------------------

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise LookupError(f"the Hub double has no {repo_type} {repo_id}")
        return repo

    def _new_repo(self, repo_type: str, repo_id: str, *, private: bool) -> Repo:
        repo = Repo(
            repo_type=repo_type,
            repo_id=repo_id,
            private=private,
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
        initial = Commit.make(
            files={".gitattributes": StoredFile.regular(GITATTRIBUTES.encode())},
            parents=(),
            title="initial commit",
            description="",
            author="system",
        )
        repo.commits[initial.id] = initial
        repo.branches["main"] = initial.id
        self._created += 1
        self._order[(repo_type, repo_id)] = self._created
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _revision(self, repo: Repo, revision: str) -> Commit:
        """The commit a revision names: a branch (``refs/heads/`` optional), a tag, a pull
        request's ``refs/pr/N`` or a full sha."""
        for name in (revision, revision.removeprefix("refs/heads/")):
            if name in repo.branches:
                return repo.commits[repo.branches[name]]
        tag = revision.removeprefix("refs/tags/")
        if tag in repo.tags:
            return repo.commits[repo.tags[tag]]
        found = re.fullmatch(r"refs/pr/(\d+)", revision)
        if found and int(found[1]) in repo.pulls:
            return repo.commits[repo.pulls[int(found[1])].head]
        if _SHA.fullmatch(revision) and revision in repo.commits:
            return repo.commits[revision]
        raise errors.revision_not_found(revision)

    def _commit_files(
        self,
        repo: Repo,
        branch: str,
        contents: Mapping[str, FileContent],
        deletions: Sequence[str],
        *,
        title: str,
        description: str,
        author: str,
        unsafe_paths: bool,
    ) -> str:
        base = repo.head(branch)
        files = dict(base.files)
        for path in deletions:
            if path.endswith("/"):
                gone = [p for p in files if p.startswith(path)]
                if not gone:
                    raise LookupError(f"{repo.repo_id} has no folder {path!r}")
                for p in gone:
                    del files[p]
            elif path in files:
                del files[path]
            else:
                raise LookupError(f"{repo.repo_id} has no file {path!r}")
        gitattributes = contents.get(".gitattributes")
        patterns = lfs_patterns(
            _as_bytes(gitattributes)
            if gitattributes is not None
            else self.store.small_content(files.get(".gitattributes"))
        )
        if not unsafe_paths:
            _check_paths(contents)
        for path, content in contents.items():
            files[path] = self._stored(path, content, patterns)
            if files[path].lfs:
                repo.lfs_objects.add(files[path].sha256)
        commit = Commit.make(
            files=files,
            parents=(base.id,),
            title=title,
            description=description,
            author=author,
        )
        repo.commits[commit.id] = commit
        repo.branches[branch] = commit.id
        return commit.id

    def _stored(self, path: str, content: FileContent, patterns: list[str]) -> StoredFile:
        if isinstance(content, Path):
            size = content.stat().st_size
            with content.open("rb") as reader:
                sample = reader.read(512)
            if is_lfs(path, size, sample, patterns):
                sha256, size = self.store.put_file(content)
                return StoredFile.large(sha256, size)
            return StoredFile.regular(content.read_bytes())
        data = _as_bytes(content)
        if is_lfs(path, len(data), data[:512], patterns):
            sha256, size = self.store.put_bytes(data)
            return StoredFile.large(sha256, size)
        return StoredFile.regular(data)

    def _next_link(self, request: Incoming, **changes: int) -> str:
        pairs = [
            (k, v)
            for k, v in parse_qsl(request.raw_query, keep_blank_values=True)
            if k not in changes
        ]
        pairs += [(k, str(v) if k == "p" else encode_cursor(v)) for k, v in changes.items()]
        return f'<{self.url}{request.path}?{urlencode(pairs)}>; rel="next"'


@contextmanager
def running_hf_hub(
    *, work_dir: Path | None = None, user: str = "llmops-tester"
) -> Iterator[HfHubDouble]:
    """A started :class:`HfHubDouble`, stopped at the end."""
    with HfHubDouble(work_dir=work_dir, user=user) as hub:
        yield hub


# -----------------------------------------------------------------------------------------


def _new_token() -> str:
    alphabet = string.ascii_letters
    return "hf_" + "".join(token_source.choice(alphabet) for _ in range(34))


def _check_repo_id(repo_id: str) -> None:
    namespace, _, name = repo_id.partition("/")
    if not _REPO_NAME.fullmatch(namespace) or not _REPO_NAME.fullmatch(name) or "/" in name:
        raise ValueError(f"a repo id is '<namespace>/<name>', not {repo_id!r}")


def _check_paths(contents: Mapping[str, FileContent]) -> None:
    for path in contents:
        if unsafe_path(path):
            raise ValueError(f"the Hub refuses the path {path!r} (unsafe_paths=True lets it in)")


def _as_bytes(content: FileContent) -> bytes:
    if isinstance(content, Path):
        return content.read_bytes()
    return content.encode() if isinstance(content, str) else bytes(content)


def _git_prefix(repo: Repo) -> str:
    return "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
