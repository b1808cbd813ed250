"""The registry provider: the Hugging Face Hub through huggingface_hub.

An import resolves its revision to a commit first (``model_info`` at the revision: one
request that names the commit and lists its files with sizes, git blob ids and LFS
sha256), then decides from that list alone what it lets in (:mod:`llmops_hf.safety`),
reads the configs that could ask for remote code, and only then downloads, at the commit,
into huggingface_hub's cache (``hf_hub_download`` per file, ``max_workers`` at once).
Each file is checked against the listing (size, sha256 or git blob id), then hard-linked
(or copied) into the destination. What the Hub said of each commit is kept under the
plugin's data dir (:mod:`llmops_hf.state`), so metadata and imports of a commit in the
cache still work while the Hub is down or rate limiting, marked ``degraded``.

Every wait is the plugin's own (:mod:`llmops_hf.hub` turns huggingface_hub's off): a 429
is retried after its ``Retry-After``, a 5xx or a refused connection after a short backoff,
while the call's ``retry_budget_seconds`` lasts; then the local cache answers, or
:class:`~llmops.errors.IntegrationUnavailable` (503), which the platform's outbox retries
for exports. A pinned commit the cache holds is served at once, without waiting.

The provider imports huggingface_hub on its first call, not when it is built.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.registry import (
    ExportRequest,
    ExportResult,
    FileChange,
    ImportPhase,
    ImportPlan,
    ImportRequest,
    ImportResult,
    RegistryCommit,
    RegistryFile,
    RegistryLink,
    RegistryModelMetadata,
    RegistryModelSummary,
    RegistryRevision,
    UpdateCheck,
)
from llmops.deadlines import deadline_remaining
from llmops.errors import (
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
)
from llmops_hf import safety
from llmops_hf.settings import HfSettings
from llmops_hf.state import HubState, StoredCommit, StoredFile, check_repo_id, is_commit
from llmops_hf.transfer import Progress, cached_source, place, target_in

if TYPE_CHECKING:
    from huggingface_hub import HfApi, ModelInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The trailer an export's commit carries its idempotency key in.
KEY_TRAILER = "Llmops-Idempotency-Key"
#: How many commits of the branch an export looks through for its key, and an update
#: check lists at most.
SCAN_COMMITS = 100
#: How many of the newest pull requests an export with ``create_pr`` looks through.
SCAN_PULL_REQUESTS = 10
#: The most of a model card kept as its text.
MAX_CARD_BYTES = 1 << 20
_FIRST_WAIT = 0.2
_MAX_WAIT = 2.0


class _Budget:
    """The seconds one call may still spend waiting for the Hub (all its threads)."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds
        self._lock = threading.Lock()

    def take(self, seconds: float) -> bool:
        with self._lock:
            if seconds > self.left:
                return False
            self.left -= seconds
            return True


@dataclass(frozen=True)
class _Checked:
    """An import that passed its checks: the commit (with its card), why it came from
    the cache (or None), the branch its revision named, what it places and skips, and
    what is left of the call's retry budget."""

    commit: StoredCommit
    degraded: str | None
    branch: str | None
    weights: safety.WeightsPlan
    budget: _Budget


class HfRegistry:
    """A :class:`~llmops.capabilities.registry.RegistryProvider` on one Hub endpoint.
    Thread-safe. Its state (the commits it has read) lives under ``data_dir``; the
    downloads in huggingface_hub's cache (``cache_dir``, else under ``data_dir``)."""

    def __init__(self, settings: HfSettings, *, data_dir: Path) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint.rstrip("/")
        self.data_dir = data_dir
        self.cache_dir = Path(settings.cache_dir or data_dir / "hub-cache")
        self.state = HubState(data_dir / "hub-state")
        self._api: HfApi | None = None
        self._lock = threading.Lock()

    # -- RegistryProvider ---------------------------------------------------------------

    def search(
        self, query: str, *, limit: int = 20, tags: list[str] | None = None
    ) -> list[RegistryModelSummary]:
        """The Hub's search of model ids, keeping to models with every tag; one page of
        at most 100 results."""
        if limit <= 0:
            return []
        from llmops_hf import hub

        params: list[tuple[str, str]] = [("search", query), ("limit", str(min(limit, 100)))]
        params += [("filter", tag) for tag in tags or []]
        where = f"search for {query!r}"
        with self._translated(where):
            items = self._retrying(
                where,
                lambda: hub.get_json(
                    f"{self.endpoint}/api/models",
                    token=self._token,
                    params=params,
                    timeout=self.settings.request_timeout_seconds,
                ).json(),
            )
        found = [self._summary(item) for item in items if isinstance(item, dict) and "id" in item]
        return found[:limit]

    def metadata(self, repo_id: str, revision: str | None = None) -> RegistryModelMetadata:
        """The model at ``revision`` (the default branch when None), read at its commit;
        from the plugin's state when the Hub cannot be asked (``degraded`` says so)."""
        check_repo_id(repo_id)
        revision = revision or self.settings.default_branch
        where = f"metadata of {repo_id}@{revision}"
        with self._translated(where):
            commit, degraded = self._listing(repo_id, revision, where)
            commit = self._carded(commit, where, degraded is not None, self._budget())
        return self._metadata(commit, degraded)

    def import_model(self, request: ImportRequest) -> ImportResult:
        """Resolve, check, download at the commit, place into ``request.destination``
        (created; files already there are replaced, others left alone)."""
        repo_id = check_repo_id(request.repo_id)
        where = f"import of {repo_id}@{request.revision}"
        progress = Progress(request.progress)
        with self._translated(where):
            checked = self._checked(
                repo_id, request.revision, request.allow_patterns, where, progress
            )
            files = self._place_all(
                checked.commit,
                checked.weights.keep,
                request.destination,
                progress,
                where,
                checked.degraded is not None,
                checked.budget,
            )
            progress.done()
        return ImportResult(
            repo_id=repo_id,
            revision=checked.commit.sha,
            local_path=request.destination,
            files=files,
            metadata=self._metadata(checked.commit, checked.degraded),
            branch=checked.branch,
            skipped=checked.weights.skipped,
            degraded=checked.degraded,
        )

    def check_import(
        self, repo_id: str, revision: str = "main", *, allow_patterns: list[str] | None = None
    ) -> ImportPlan:
        """What :meth:`import_model` would place for the same arguments, after the same
        resolution and checks (names, pickle weights, remote code: the configs and the
        card are read into the cache for them), without downloading anything else
        (:class:`~llmops.capabilities.registry.ChecksImports`)."""
        repo_id = check_repo_id(repo_id)
        where = f"import of {repo_id}@{revision}"
        with self._translated(where):
            checked = self._checked(repo_id, revision, allow_patterns or [], where, None)
        listed = {f.path: f for f in checked.commit.files}
        return ImportPlan(
            repo_id=repo_id,
            revision=checked.commit.sha,
            branch=checked.branch,
            files=[
                _registry_file(listed.get(name, StoredFile(path=name)))
                for name in checked.weights.keep
            ],
            skipped=checked.weights.skipped,
            metadata=self._metadata(checked.commit, checked.degraded),
            degraded=checked.degraded,
        )

    def export_model(self, request: ExportRequest) -> ExportResult:
        """``create_repo`` (private unless asked otherwise; an existing repo is kept as it
        is), then ``upload_folder`` as one commit on main or as a pull request. With an
        idempotency key, a commit that already carries it (its trailer) is returned
        instead of a second one. An outage is a 503, which the outbox retries."""
        repo_id = check_repo_id(request.repo_id)
        where = f"export to {repo_id}"
        if not self._secret:
            raise InvalidRequest(f"{where}: exports need a write token: set LLMOPS_HF__TOKEN")
        folder = request.local_path
        if not folder.is_dir():
            raise InvalidRequest(f"{where}: {folder} is not a folder")
        _check_export_folder(folder, where)
        key = request.idempotency_key
        if key is not None and (not key.strip() or any(c in key for c in "\r\n")):
            raise InvalidRequest(f"{where}: the idempotency key must be one line of text")
        with self._translated(where):
            api = self._client()
            self._retrying(
                where,
                lambda: api.create_repo(
                    repo_id, private=request.private, exist_ok=True, repo_type="model"
                ),
            )
            if key is not None:
                found = self._retrying(
                    where, lambda: self._exported_with(repo_id, key, request.create_pr)
                )
                if found is not None:
                    return found
            description = f"{KEY_TRAILER}: {key}" if key is not None else None
            # not retried here: a commit whose answer was lost is found by its key when
            # the outbox delivers the export again
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=request.commit_message,
                commit_description=description,
                create_pr=request.create_pr,
                repo_type="model",
            )
        url = commit.pr_url or f"{self.endpoint}/{repo_id}/commit/{commit.oid}"
        return ExportResult(repo_id=repo_id, commit=commit.oid, url=url)

    def check_update(
        self, repo_id: str, revision: str, *, branch: str | None = None
    ) -> UpdateCheck:
        """Compare ``revision`` with the head of ``branch`` (the default branch when
        None): the files added, removed and modified, and the commits in between. Asks
        the Hub (no answer from the cache); never moves anything."""
        check_repo_id(repo_id)
        branch = branch or self.settings.default_branch
        where = f"update check of {repo_id}@{revision} against {branch}"
        with self._translated(where):
            latest = self._retrying(where, lambda: self._read_commit(repo_id, branch))
            current = (self.state.commit(repo_id, revision) if is_commit(revision) else None) or (
                self._retrying(where, lambda: self._read_commit(repo_id, revision))
            )
            if current.sha == latest.sha:
                return UpdateCheck(
                    repo_id=repo_id,
                    current_revision=current.sha,
                    latest_revision=latest.sha,
                    update_available=False,
                    branch=branch,
                )
            commits, truncated = self._retrying(
                where, lambda: self._commits_between(repo_id, latest.sha, current.sha)
            )
        added, removed, modified = _changes(current, latest)
        return UpdateCheck(
            repo_id=repo_id,
            current_revision=current.sha,
            latest_revision=latest.sha,
            update_available=True,
            branch=branch,
            files_added=added,
            files_removed=removed,
            files_modified=modified,
            commits=commits,
            commits_truncated=truncated,
        )

    def revisions(self, repo_id: str) -> list[RegistryRevision]:
        """The repo's branches, then its tags (``list_repo_refs``' route; one request,
        pull requests left out), each with the commit it points at now."""
        from llmops_hf import hub

        check_repo_id(repo_id)
        where = f"branches and tags of {repo_id}"
        with self._translated(where):
            refs = self._retrying(
                where,
                lambda: hub.get_json(
                    f"{self.endpoint}/api/models/{repo_id}/refs",
                    token=self._token,
                    params=None,
                    timeout=self.settings.request_timeout_seconds,
                ).json(),
            )
        found: list[RegistryRevision] = []
        for kind, key in (("branch", "branches"), ("tag", "tags")):
            for ref in refs.get(key, []) if isinstance(refs, dict) else []:
                if isinstance(ref, dict) and ref.get("name") and ref.get("targetCommit"):
                    found.append(
                        RegistryRevision(
                            name=str(ref["name"]), kind=kind, commit=str(ref["targetCommit"])
                        )
                    )
        return found

    def links(self, repo_id: str, revision: str | None = None) -> list[RegistryLink]:
        """The model's page, its files at ``revision`` and, for a commit, the commit's
        page, on the configured endpoint (no request)."""
        check_repo_id(repo_id)
        page = f"{self.endpoint}/{repo_id}"
        shown = revision or self.settings.default_branch
        quoted = quote(shown, safe="")
        label = shown[:12] if is_commit(shown) else shown
        links = [
            RegistryLink(kind="model-page", url=page, label=repo_id),
            RegistryLink(kind="files", url=f"{page}/tree/{quoted}", label=f"Files at {label}"),
        ]
        if revision is not None and is_commit(revision):
            links.append(
                RegistryLink(
                    kind="commit", url=f"{page}/commit/{revision}", label=f"Commit {label}"
                )
            )
        else:
            links.append(
                RegistryLink(
                    kind="commits", url=f"{page}/commits/{quoted}", label=f"History of {label}"
                )
            )
        return links

    def health(self) -> Health:
        """``whoami`` with the token (reachable, token accepted), else one search result
        (reachable); 429 is degraded, a refused token or no answer is down. Never
        retried, never raises."""
        started = time.perf_counter()

        def answer(status: HealthStatus, detail: str) -> Health:
            return Health(
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=self._scrub(detail),
            )

        try:
            from llmops_hf import hub

            with hub.request_timeout(self.settings.request_timeout_seconds):
                if self._secret:
                    me = self._client().whoami()
                    who = f"as {me.get('name', 'an unnamed user')}"
                else:
                    hub.get_json(
                        f"{self.endpoint}/api/models",
                        token=False,
                        params={"limit": 1},
                        timeout=self.settings.request_timeout_seconds,
                    )
                    who = "anonymously (no token)"
        except Exception as exc:
            from llmops_hf import hub

            outage = hub.outage_of(exc)
            if outage is not None and outage.rate_limited:
                after = f"; retry after {outage.retry_after:g} s" if outage.retry_after else ""
                return answer(HealthStatus.DEGRADED, f"{self.endpoint}: rate limited{after}")
            error = hub.translate(exc, where=self.endpoint, secret=self._secret)
            detail = error.detail if error is not None else f"{self.endpoint}: {type(exc).__name__}"
            return answer(HealthStatus.DOWN, detail)
        return answer(HealthStatus.OK, f"{self.endpoint}, {who}")

    def translate_error(self, exc: BaseException) -> LlmopsError | None:
        """huggingface_hub's and httpx2's errors that escaped a call (it translates its
        own), in the core's terms and without the token."""
        from llmops_hf import hub

        return hub.translate(exc, where=f"{self.endpoint}", secret=self._secret)

    # -- the Hub ------------------------------------------------------------------------

    @property
    def _secret(self) -> str | None:
        token = self.settings.token
        return token.get_secret_value() if token is not None else None

    @property
    def _token(self) -> str | bool:
        """What huggingface_hub is given: the token, or False (never its own login)."""
        return self._secret or False

    def _client(self) -> HfApi:
        with self._lock:
            if self._api is None:
                from llmops_hf import hub

                self._api = hub.make_api(self.endpoint, self._token)
            return self._api

    def _scrub(self, text: str) -> str:
        secret = self._secret
        return text.replace(secret, "[redacted]") if secret else text

    @contextmanager
    def _translated(self, where: str) -> Iterator[None]:
        """huggingface_hub's errors as the core's, and no message holding the token."""
        try:
            yield
        except LlmopsError as exc:
            if self._secret and self._secret in exc.detail:
                exc.detail = self._scrub(exc.detail)
                exc.args = (exc.detail,)
            raise
        except Exception as exc:
            from llmops_hf import hub

            error = hub.translate(exc, where=where, secret=self._secret)
            if error is not None:
                raise error from exc
            if self._secret and self._secret in str(exc):
                raise IntegrationRejected(
                    self._scrub(f"{where}: {type(exc).__name__}: {exc}")
                ) from None
            raise

    def _budget(self) -> _Budget:
        seconds = self.settings.retry_budget_seconds
        left = deadline_remaining()
        if left is not None:
            seconds = min(seconds, max(0.0, left - self.settings.request_timeout_seconds))
        return _Budget(seconds)

    def _retrying(
        self,
        where: str,
        call: Callable[[], T],
        *,
        budget: _Budget | None = None,
        patient: bool = True,
    ) -> T:
        """``call()``, again after each outage while ``budget`` lasts (``Retry-After``
        for a 429, a short backoff otherwise); then 503. ``patient=False`` gives up at
        the first outage (the caller has the answer in the cache)."""
        from llmops_hf import hub

        budget = budget or self._budget()
        attempt = 0
        while True:
            try:
                with hub.request_timeout(self.settings.request_timeout_seconds):
                    return call()
            except Exception as exc:
                outage = hub.outage_of(exc)
                if outage is None:
                    raise
                pause = (
                    outage.retry_after
                    if outage.retry_after is not None
                    else min(_FIRST_WAIT * 2**attempt, _MAX_WAIT)
                )
                if not patient or not budget.take(pause):
                    extensions: dict[str, Any] = {}
                    if outage.retry_after is not None:
                        extensions["retry_after"] = outage.retry_after
                    if outage.status is not None:
                        extensions["upstream_status"] = outage.status
                    raise IntegrationUnavailable(
                        self._scrub(f"{where}: {outage.reason}"), **extensions
                    ) from exc
                log.info("%s: %s; trying again in %.1f s", where, outage.reason, pause)
                time.sleep(pause)
                attempt += 1

    def _read_commit(self, repo_id: str, revision: str) -> StoredCommit:
        """``model_info`` at ``revision`` (with the files' metadata), one request: the
        commit as kept in the plugin's state, else the listing without its card (see
        :meth:`_carded`); the branch or tag remembered at its commit."""
        info = self._client().model_info(
            repo_id,
            revision=revision,
            files_metadata=True,
            timeout=self.settings.request_timeout_seconds,
        )
        sha = info.sha
        if not sha or not is_commit(sha):
            raise IntegrationRejected(f"the Hub did not name the commit of {repo_id}@{revision}")
        if revision != sha:
            self._remember(lambda: self.state.save_ref(repo_id, revision, sha))
        return self.state.commit(repo_id, sha) or _stored_commit(repo_id, info)

    def _carded(
        self, commit: StoredCommit, where: str, offline: bool, budget: _Budget
    ) -> StoredCommit:
        """``commit`` with its card's text (README.md, read into the cache), kept in the
        plugin's state from then on. Imports call it after their checks: nothing is
        downloaded before them."""
        if commit.card_read:
            return commit
        card = None
        if commit.file("README.md") is not None:
            path = self._fetch(commit, "README.md", offline, budget, None, where)
            with path.open("rb") as stream:
                card = stream.read(MAX_CARD_BYTES).decode("utf-8", errors="replace")
        carded = commit.model_copy(update={"card": card, "card_read": True})
        self._remember(lambda: self.state.save_commit(carded))
        return carded

    def _remember(self, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:  # the answer stands; only the cache fallback loses it
            log.warning("could not keep what the Hub said under %s: %s", self.state.root, exc)

    def _download(self, repo_id: str, sha: str, name: str, tqdm_class: Any = None) -> str:
        from huggingface_hub import hf_hub_download

        from llmops_hf import hub

        hub.install()
        return hf_hub_download(
            repo_id,
            name,
            revision=sha,
            cache_dir=self.cache_dir,
            endpoint=self.endpoint,
            token=self._token,
            library_name=hub.LIBRARY,
            library_version=_version(),
            etag_timeout=self.settings.request_timeout_seconds,
            tqdm_class=tqdm_class,
        )

    def _cached(self, repo_id: str, sha: str, name: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, name, cache_dir=self.cache_dir, revision=sha)
        return Path(found) if isinstance(found, str) else None

    def _storage(self, repo_id: str) -> Path:
        from huggingface_hub.file_download import repo_folder_name

        return self.cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")

    def _listing(self, repo_id: str, revision: str, where: str) -> tuple[StoredCommit, str | None]:
        """The commit ``revision`` names and its listing, with why it came from the
        plugin's state (the Hub could not be asked), or None when the Hub answered."""
        known = self.state.commit(repo_id, revision) if is_commit(revision) else None
        try:
            return (
                self._retrying(
                    where, lambda: self._read_commit(repo_id, revision), patient=known is None
                ),
                None,
            )
        except IntegrationUnavailable as exc:
            sha = revision if is_commit(revision) else self.state.ref(repo_id, revision)
            stored = known or (self.state.commit(repo_id, sha) if sha else None)
            if stored is None:
                raise IntegrationUnavailable(
                    f"{exc.detail}; {repo_id}@{revision} is not in the local cache",
                    **exc.extensions,
                ) from exc
            seen = "" if is_commit(revision) else f" ({revision} as last seen: {stored.sha})"
            return stored, f"{exc.detail}: served from the local cache{seen}"

    def _branch_of(self, repo_id: str, revision: str, *, offline: bool) -> str | None:
        """``revision`` when it names a branch (not a commit, a tag or a pull request)."""
        if is_commit(revision) or revision.startswith("refs/"):
            return None
        if offline:
            return revision
        try:
            refs = self._retrying(
                f"refs of {repo_id}", lambda: self._client().list_repo_refs(repo_id)
            )
        except IntegrationUnavailable:
            return revision
        if any(tag.name == revision for tag in refs.tags):
            return None
        return revision

    def _checked(
        self,
        repo_id: str,
        revision: str,
        patterns: Sequence[str],
        where: str,
        progress: Progress | None,
    ) -> _Checked:
        """An import's first half: the revision resolved, the file list checked (names,
        selection, weights), the card and the configs read and cleared of remote code."""
        if progress is not None:
            progress.phase(ImportPhase.RESOLVING)
        commit, degraded = self._listing(repo_id, revision, where)
        branch = self._branch_of(repo_id, revision, offline=degraded is not None)
        if progress is not None:
            progress.phase(ImportPhase.CHECKING)
        names = [f.path for f in commit.files]
        safety.check_names(names, where)
        selected = self._select(names, patterns, where)
        allow_pickle = self.settings.allow_pickle
        weights = safety.plan_weights(selected, allow_pickle=allow_pickle, where=where)
        budget = self._budget()
        offline = degraded is not None
        commit = self._carded(commit, where, offline, budget)
        self._check_remote_code(commit, weights.keep, where, offline, budget)
        return _Checked(commit, degraded, branch, weights, budget)

    def _select(self, names: Sequence[str], patterns: Sequence[str], where: str) -> list[str]:
        from huggingface_hub.utils._paths import filter_repo_objects

        selected = list(filter_repo_objects(names, allow_patterns=list(patterns) or None))
        if not selected:
            raise InvalidRequest(
                f"{where}: no file of the repository matches allow_patterns {list(patterns)}",
                allow_patterns=list(patterns),
            )
        return selected

    def _check_remote_code(
        self, commit: StoredCommit, keep: Sequence[str], where: str, offline: bool, budget: _Budget
    ) -> None:
        """Refuse (422) a config that maps classes to the repository's code, unless the
        operator allows remote code. Reads each such config (into the cache) first."""
        if self.settings.allow_remote_code:
            return
        if commit.auto_map and "config.json" in keep:
            safety.refuse_remote_code("config.json", ["(in the Hub's summary of it)"], where)
        for name in safety.CODE_CONFIGS:
            if name not in keep:
                continue
            listed = commit.file(name)
            if listed is not None and (listed.size or 0) > safety.MAX_CONFIG_BYTES:
                raise InvalidRequest(f"{where}: refused: {name} is larger than a config is")
            path = self._fetch(commit, name, offline, budget, None, where)
            with path.open("rb") as stream:
                data = stream.read(safety.MAX_CONFIG_BYTES + 1)
            classes = safety.remote_code_of(safety.parse_config(name, data, where))
            if classes:
                safety.refuse_remote_code(name, classes, where)

    def _fetch(
        self,
        commit: StoredCommit,
        name: str,
        offline: bool,
        budget: _Budget,
        counter: Any,
        where: str,
    ) -> Path:
        """The cache's entry for ``name`` at the commit, downloaded when it is not there
        (unless offline: then 503)."""
        cached = self._cached(commit.repo_id, commit.sha, name)
        if cached is not None:
            return cached
        if offline:
            raise IntegrationUnavailable(
                f"{where}: the Hub cannot be asked and {name} at {commit.sha} is not in the "
                "local cache"
            )
        path = self._retrying(
            where,
            lambda: self._download(commit.repo_id, commit.sha, name, counter),
            budget=budget,
        )
        return Path(path)

    def _place_all(
        self,
        commit: StoredCommit,
        keep: Sequence[str],
        destination: Path,
        progress: Progress,
        where: str,
        offline: bool,
        budget: _Budget,
    ) -> list[RegistryFile]:
        """Every kept file fetched, checked and placed, ``max_workers`` at once; on a
        failure the files this import created are removed again."""
        listed = {f.path: f for f in commit.files}
        sizes = [listed[name].size for name in keep if name in listed]
        total = sum(s or 0 for s in sizes) if all(s is not None for s in sizes) else None
        progress.begin(len(keep), total)
        destination.mkdir(parents=True, exist_ok=True)
        root = destination.resolve()
        storage = self._storage(commit.repo_id)
        counter = progress.counter()
        created: list[Path] = []
        created_lock = threading.Lock()

        def one(name: str) -> RegistryFile:
            entry = self._fetch(commit, name, offline, budget, counter, where)
            source = cached_source(entry, storage)
            stored = listed.get(name, StoredFile(path=name))
            target = target_in(root, name)
            git_size = stored.size if stored.lfs_sha256 is None and stored.blob_id else None
            placed = place(source, target, link=True, git_size=git_size)
            if placed.created:
                with created_lock:
                    created.append(target)
            problem = _mismatch(stored, placed.size, placed.sha256, placed.git_sha1)
            if problem is not None:
                _forget(entry, source)
                raise IntegrationRejected(
                    f"{where}: {name} {problem}; it was dropped from the cache: import again"
                )
            progress.file_done(placed.size)
            return RegistryFile(path=name, size_bytes=placed.size, sha256=placed.sha256)

        workers = min(self.settings.max_workers, max(1, len(keep)))
        with ThreadPoolExecutor(workers, thread_name_prefix="llmops-hf-import") as pool:
            futures = [pool.submit(one, name) for name in keep]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                for future in pending:
                    future.cancel()
                wait(pending)
                for path in created:
                    path.unlink(missing_ok=True)
                error = failed.exception()
                assert error is not None
                raise error
        return [future.result() for future in futures]

    def _exported_with(self, repo_id: str, key: str, create_pr: bool) -> ExportResult | None:
        """The commit an earlier export with ``key`` made (its trailer), on main or, for a
        pull request, among the newest pull requests."""
        from huggingface_hub import constants

        line = f"{KEY_TRAILER}: {key}"
        if not create_pr:
            for item in self._commits(repo_id, constants.DEFAULT_REVISION, SCAN_COMMITS):
                if _carries(item, line):
                    sha = str(item["id"])
                    url = f"{self.endpoint}/{repo_id}/commit/{sha}"
                    return ExportResult(repo_id=repo_id, commit=sha, url=url)
            return None
        refs = self._client().list_repo_refs(repo_id, include_pull_requests=True)
        pulls = sorted(refs.pull_requests or [], key=lambda r: _pr_number(r.ref), reverse=True)
        for pull in pulls[:SCAN_PULL_REQUESTS]:
            for item in self._commits(repo_id, pull.ref, SCAN_COMMITS):
                if _carries(item, line):
                    number = _pr_number(pull.ref)
                    url = f"{self.endpoint}/{repo_id}/discussions/{number}"
                    return ExportResult(repo_id=repo_id, commit=str(item["id"]), url=url)
        return None

    def _commits(self, repo_id: str, revision: str, most: int) -> Iterator[dict[str, Any]]:
        """The commits of ``revision``, newest first, at most ``most``, a page at a time."""
        from llmops_hf import hub

        url = f"{self.endpoint}/api/models/{repo_id}/commits/{quote(revision, safe='')}"
        count = 0
        for page in hub.pages(
            url, token=self._token, params=None, timeout=self.settings.request_timeout_seconds
        ):
            for item in page:
                if count >= most:
                    return
                if isinstance(item, dict) and "id" in item:
                    count += 1
                    yield item

    def _commits_between(
        self, repo_id: str, latest: str, current: str
    ) -> tuple[list[RegistryCommit], bool]:
        """The commits after ``current`` up to ``latest``, newest first, and whether the
        list stopped before reaching ``current``."""
        found: list[RegistryCommit] = []
        for item in self._commits(repo_id, latest, SCAN_COMMITS + 1):
            if item["id"] == current:
                return found, False
            if len(found) == SCAN_COMMITS:
                break
            found.append(_commit_of(item))
        return found, True

    def _metadata(self, commit: StoredCommit, degraded: str | None) -> RegistryModelMetadata:
        return RegistryModelMetadata(
            repo_id=commit.repo_id,
            revision=commit.sha,
            license=commit.license,
            pipeline_tag=commit.pipeline_tag,
            library=commit.library,
            tags=commit.tags,
            card=commit.card,
            files=[_registry_file(f) for f in commit.files],
            last_modified=commit.last_modified,
            url=f"{self.endpoint}/{commit.repo_id}",
            degraded=degraded,
        )

    def _summary(self, item: dict[str, Any]) -> RegistryModelSummary:
        repo_id = str(item["id"])
        tags = item.get("tags")
        return RegistryModelSummary(
            repo_id=repo_id,
            author=item.get("author") or (repo_id.split("/")[0] if "/" in repo_id else None),
            pipeline_tag=item.get("pipeline_tag"),
            library=item.get("library_name"),
            tags=[str(t) for t in tags] if isinstance(tags, list) else [],
            downloads=item.get("downloads"),
            likes=item.get("likes"),
            last_modified=item.get("lastModified") or item.get("createdAt"),
            url=f"{self.endpoint}/{repo_id}",
        )


# -- helpers ------------------------------------------------------------------------------


def _version() -> str:
    from llmops_hf import __version__

    return __version__


def _stored_commit(repo_id: str, info: ModelInfo) -> StoredCommit:
    assert info.sha is not None
    files = [
        StoredFile(
            path=s.rfilename,
            size=s.size,
            blob_id=s.blob_id,
            lfs_sha256=s.lfs.sha256 if s.lfs is not None else None,
        )
        for s in info.siblings or []
    ]
    tags = list(info.tags or [])
    card_data = info.card_data
    license_ = getattr(card_data, "license", None) if card_data is not None else None
    if not isinstance(license_, str):
        license_ = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    config = info.config if isinstance(info.config, dict) else {}
    return StoredCommit(
        repo_id=repo_id,
        sha=info.sha,
        files=files,
        license=license_,
        pipeline_tag=info.pipeline_tag,
        library=info.library_name,
        tags=tags,
        auto_map=bool(config.get("auto_map")),
        last_modified=info.last_modified,
    )


def _registry_file(stored: StoredFile) -> RegistryFile:
    """As the Hub lists it: the sha256 of LFS files; the Hub gives only the git blob id
    of the others, so theirs is None (an import computes every file's)."""
    return RegistryFile(path=stored.path, size_bytes=stored.size, sha256=stored.lfs_sha256)


def _mismatch(stored: StoredFile, size: int, sha256: str, git_sha1: str) -> str | None:
    if stored.size is not None and size != stored.size:
        return f"has {size} bytes where the Hub lists {stored.size}"
    if stored.lfs_sha256 is not None and sha256 != stored.lfs_sha256:
        return f"has sha256 {sha256} where the Hub lists {stored.lfs_sha256}"
    if stored.lfs_sha256 is None and stored.blob_id and git_sha1 and git_sha1 != stored.blob_id:
        return f"has git blob id {git_sha1} where the Hub lists {stored.blob_id}"
    return None


def _forget(entry: Path, blob: Path) -> None:
    """Drop a cached file that does not match the listing, so that it is fetched again."""
    for path in (entry, blob):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s from the cache: %s", path, exc)


def _changes(
    current: StoredCommit, latest: StoredCommit
) -> tuple[list[RegistryFile], list[RegistryFile], list[FileChange]]:
    before = {f.path: f for f in current.files}
    after = {f.path: f for f in latest.files}
    added = [_registry_file(after[p]) for p in sorted(set(after) - set(before))]
    removed = [_registry_file(before[p]) for p in sorted(set(before) - set(after))]
    modified = [
        FileChange(
            path=p,
            old_size_bytes=before[p].size,
            new_size_bytes=after[p].size,
            old_sha256=before[p].lfs_sha256,
            new_sha256=after[p].lfs_sha256,
        )
        for p in sorted(set(before) & set(after))
        if _content_id(before[p]) != _content_id(after[p])
    ]
    return added, removed, modified


def _content_id(stored: StoredFile) -> tuple[str | None, str | None, int | None]:
    return (stored.lfs_sha256, stored.blob_id, stored.size)


def _commit_of(item: dict[str, Any]) -> RegistryCommit:
    authors = item.get("authors") or []
    return RegistryCommit(
        id=str(item["id"]),
        title=str(item.get("title") or ""),
        message=str(item.get("message") or ""),
        authors=[str(a.get("user")) for a in authors if isinstance(a, dict) and a.get("user")],
        created_at=item.get("date"),
    )


def _carries(item: dict[str, Any], line: str) -> bool:
    text = f"{item.get('title') or ''}\n{item.get('message') or ''}"
    return line in (part.strip() for part in text.splitlines())


def _pr_number(ref: str) -> int:
    tail = ref.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _check_export_folder(folder: Path, where: str) -> None:
    """Refuse (422) a folder with a link that leads out of it: upload_folder follows
    links, and would publish what they point at."""
    root = folder.resolve()
    for path in folder.rglob("*"):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise InvalidRequest(
                f"{where}: {path.relative_to(folder)} is a link out of {folder}: refused"
            )


__all__ = ["KEY_TRAILER", "HfRegistry"]
