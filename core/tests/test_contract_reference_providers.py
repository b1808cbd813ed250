"""The contract suites are runnable and not vacuous.

No plugin offers serving, registry or versioning yet, so small in-memory reference
providers stand in: each passes its suite with every feature declared. Then one
deliberately broken provider per suite must fail it, on the tests that cover what it
breaks, and on those only; a suite that asserted nothing would let them all through.
(The broken tracker and the broken orchestrator are next to their real providers'
contract tests.)
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmops.capabilities.common import Health, HealthStatus, utcnow
from llmops.capabilities.registry import (
    ExportRequest,
    ExportResult,
    ImportRequest,
    ImportResult,
    RegistryFile,
    RegistryLink,
    RegistryModelMetadata,
    RegistryModelSummary,
    RegistryRevision,
    UpdateCheck,
)
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    DeploymentUpdate,
    FrameworkInfo,
    InferenceProtocol,
    InferenceTarget,
    TrafficSplit,
)
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
from llmops.errors import Conflict, IntegrationUnavailable, InvalidRequest, NotFound
from llmops.testing.contracts import read_tree, write_tree
from llmops.testing.contracts.registry import RegistryContract, SeededModel, SeededRevision
from llmops.testing.contracts.serving import ServingContract
from llmops.testing.contracts.versioning import VersioningContract

pytest_plugins = ["pytester"]

#: Plugins the pytester run does without: it forgets the modules it imported, so it would
#: import hypothesis again, which costs a second.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio")


def _down(detail: str) -> Health:
    return Health(status=HealthStatus.DOWN, latency_ms=0.0, detail=detail)


def _ok(detail: str) -> Health:
    return Health(status=HealthStatus.OK, latency_ms=0.0, detail=detail)


# =====================================================================================
# Serving
# =====================================================================================


@dataclass
class _Deployment:
    spec: DeploymentSpec
    model_uri: str
    autoscaling: AutoscalingSpec
    canary: CanarySpec | None
    #: status() calls left before the deployment is ready: callers must poll.
    warming: int = 1


@dataclass
class ServingStore:
    """What a serving cluster would hold; shared by providers "on the same cluster"."""

    deployments: dict[str, _Deployment] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class InMemoryServingBackend:
    """A ServingProvider whose cluster is a dict."""

    def __init__(self, store: ServingStore | None = None, *, reachable: bool = True) -> None:
        self.store = store or ServingStore()
        self.reachable = reachable

    def framework(self) -> FrameworkInfo:
        return FrameworkInfo(
            name="memory",
            display_name="In-memory serving",
            protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True,
            supports_canary=True,
        )

    def deploy(self, spec: DeploymentSpec) -> DeploymentStatus:
        with self.store.lock:
            key = spec.idempotency_key
            if key is not None and key in self.store.keys:
                return self._status(self.store.keys[key])
            if any(d.spec.name == spec.name for d in self.store.deployments.values()):
                raise Conflict(f"a deployment named {spec.name!r} exists")
            external_id = f"memory-{spec.name}"
            self.store.deployments[external_id] = _Deployment(
                spec, spec.model_uri, spec.autoscaling, spec.canary
            )
            if key is not None:
                self.store.keys[key] = external_id
            return self._status(external_id)

    def status(self, external_id: str) -> DeploymentStatus:
        with self.store.lock:
            deployment = self._get(external_id)
            deployment.warming = max(0, deployment.warming - 1)
            return self._status(external_id)

    def update(self, external_id: str, update: DeploymentUpdate) -> DeploymentStatus:
        with self.store.lock:
            deployment = self._get(external_id)
            if update.promote_canary and update.rollback_canary:
                raise InvalidRequest("promote_canary and rollback_canary exclude each other")
            if update.model_uri is not None:
                deployment.model_uri = update.model_uri
            if update.autoscaling is not None:
                deployment.autoscaling = update.autoscaling
            if update.canary is not None:
                deployment.canary = update.canary
            if update.promote_canary and deployment.canary is not None:
                deployment.model_uri = deployment.canary.model_uri
                deployment.canary = None
            if update.rollback_canary:
                deployment.canary = None
            deployment.warming = 1
            return self._status(external_id)

    def delete(self, external_id: str) -> None:
        with self.store.lock:
            self._get(external_id)
            del self.store.deployments[external_id]
            for key in [k for k, v in self.store.keys.items() if v == external_id]:
                del self.store.keys[key]

    def inference_target(self, external_id: str) -> InferenceTarget:
        with self.store.lock:
            return self._target(self._get(external_id))

    def health(self) -> Health:
        if not self.reachable:
            return _down("the in-memory cluster is switched off")
        return _ok(f"{len(self.store.deployments)} deployment(s)")

    def _get(self, external_id: str) -> _Deployment:
        try:
            return self.store.deployments[external_id]
        except KeyError:
            raise NotFound(f"no deployment {external_id!r}") from None

    def _target(self, deployment: _Deployment) -> InferenceTarget:
        return InferenceTarget(
            base_url=f"http://127.0.0.1:9/{deployment.spec.name}/v1",
            protocol=InferenceProtocol.OPENAI,
            model_name=deployment.spec.name,
        )

    def _status(self, external_id: str) -> DeploymentStatus:
        deployment = self.store.deployments[external_id]
        ready = deployment.warming == 0
        canary = deployment.canary
        traffic = [
            TrafficSplit(
                tag="stable",
                model_uri=deployment.model_uri,
                percent=100 - (canary.traffic_percent if canary else 0),
            )
        ]
        if canary is not None:
            traffic.append(
                TrafficSplit(
                    tag="canary", model_uri=canary.model_uri, percent=canary.traffic_percent
                )
            )
        return DeploymentStatus(
            external_id=external_id,
            state=DeploymentState.READY if ready else DeploymentState.DEPLOYING,
            ready=ready,
            desired_replicas=max(1, deployment.autoscaling.min_replicas),
            traffic=traffic,
            target=self._target(deployment) if ready else None,
        )


class TestInMemoryServingContract(ServingContract):
    supports = frozenset(ServingContract.features)
    ready_timeout = 5.0
    poll_interval = 0.001

    @pytest.fixture
    def provider(self) -> InMemoryServingBackend:
        return InMemoryServingBackend()

    @pytest.fixture
    def model_uris(self) -> tuple[str, str]:
        return ("hf://org/model-a@1", "hf://org/model-b@1")

    @pytest.fixture
    def restarted_provider(self, provider: InMemoryServingBackend) -> InMemoryServingBackend:
        return InMemoryServingBackend(provider.store)

    @pytest.fixture
    def unreachable_provider(self) -> InMemoryServingBackend:
        return InMemoryServingBackend(reachable=False)


class CanaryBlindServingBackend(InMemoryServingBackend):
    """Broken on purpose: reports all traffic on the stable model, canary or not."""

    def _status(self, external_id: str) -> DeploymentStatus:
        status = super()._status(external_id)
        stable = self.store.deployments[external_id].model_uri
        return status.model_copy(
            update={"traffic": [TrafficSplit(tag="stable", model_uri=stable, percent=100)]}
        )


class BrokenServingContract(TestInMemoryServingContract):
    ready_timeout = 0.5  # the canary tests wait this long for a split that never shows

    @pytest.fixture
    def provider(self) -> InMemoryServingBackend:
        return CanaryBlindServingBackend()


# =====================================================================================
# Registry
# =====================================================================================


@dataclass
class _Repo:
    commits: list[tuple[str, dict[str, bytes]]]
    tags: frozenset[str] = frozenset()


class InMemoryModelRegistry:
    """A RegistryProvider whose hub is a dict of repositories, each a list of commits."""

    base_url = "https://hub.invalid"

    def __init__(self, *, reachable: bool = True) -> None:
        self.repos: dict[str, _Repo] = {}
        self.reachable = reachable
        self._counter = itertools.count(1)
        self._exported: dict[tuple[str, str | None], str] = {}

    def push(
        self, repo_id: str, files: dict[str, bytes], tags: frozenset[str] = frozenset()
    ) -> str:
        """Add a commit (the test's seeding, and what export does)."""
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{repo_id}:{next(self._counter)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        commit = digest.hexdigest()
        repo = self.repos.setdefault(repo_id, _Repo(commits=[], tags=tags))
        repo.commits.append((commit, dict(files)))
        return commit

    def search(
        self, query: str, *, limit: int = 20, tags: list[str] | None = None
    ) -> list[RegistryModelSummary]:
        wanted = set(tags or [])
        found = [
            RegistryModelSummary(
                repo_id=repo_id,
                author=repo_id.split("/")[0],
                tags=sorted(repo.tags),
                url=f"{self.base_url}/{repo_id}",
            )
            for repo_id, repo in sorted(self.repos.items())
            if query.lower() in repo_id.lower() and wanted <= repo.tags
        ]
        return found[:limit]

    def metadata(self, repo_id: str, revision: str | None = None) -> RegistryModelMetadata:
        commit, files = self._resolve(repo_id, revision)
        return RegistryModelMetadata(
            repo_id=repo_id,
            revision=commit,
            tags=sorted(self.repos[repo_id].tags),
            files=[_registry_file(path, content) for path, content in sorted(files.items())],
            url=f"{self.base_url}/{repo_id}",
        )

    def import_model(self, request: ImportRequest) -> ImportResult:
        commit, files = self._resolve(request.repo_id, request.revision)
        chosen = {
            path: content
            for path, content in files.items()
            if not request.allow_patterns
            or any(fnmatch.fnmatch(path, pattern) for pattern in request.allow_patterns)
        }
        for path, content in chosen.items():
            target = request.destination / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        request.destination.mkdir(parents=True, exist_ok=True)
        return ImportResult(
            repo_id=request.repo_id,
            revision=commit,
            local_path=request.destination,
            files=[_registry_file(path, content) for path, content in sorted(chosen.items())],
            metadata=self.metadata(request.repo_id, commit),
        )

    def export_model(self, request: ExportRequest) -> ExportResult:
        key = (request.repo_id, request.idempotency_key)
        commit = self._exported.get(key) if request.idempotency_key else None
        if commit is None:
            commit = self.push(request.repo_id, read_tree(request.local_path))
            if request.idempotency_key:
                self._exported[key] = commit
        return ExportResult(
            repo_id=request.repo_id, commit=commit, url=f"{self.base_url}/{request.repo_id}"
        )

    def check_update(
        self, repo_id: str, revision: str, *, branch: str | None = None
    ) -> UpdateCheck:
        latest, _ = self._resolve(repo_id, branch)
        return UpdateCheck(
            repo_id=repo_id,
            current_revision=revision,
            latest_revision=latest,
            update_available=latest != revision,
        )

    def links(self, repo_id: str, revision: str | None = None) -> list[RegistryLink]:
        links = [RegistryLink(kind="model-page", url=f"{self.base_url}/{repo_id}", label="Model")]
        if revision is not None:
            links.append(
                RegistryLink(
                    kind="commit",
                    url=f"{self.base_url}/{repo_id}/commit/{revision}",
                    label=f"Commit {revision[:7]}",
                )
            )
        return links

    def revisions(self, repo_id: str) -> list[RegistryRevision]:
        commit, _ = self._resolve(repo_id, None)
        return [RegistryRevision(name="main", kind="branch", commit=commit)]

    def health(self) -> Health:
        if not self.reachable:
            return _down(f"{self.base_url} cannot be reached")
        return _ok(f"{len(self.repos)} repositories")

    def _resolve(self, repo_id: str, revision: str | None) -> tuple[str, dict[str, bytes]]:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise NotFound(f"no model {repo_id!r}")
        if revision in (None, "main"):
            return repo.commits[-1]
        for commit, files in repo.commits:
            if commit == revision:
                return commit, files
        raise NotFound(f"{repo_id} has no revision {revision!r}")


def _registry_file(path: str, content: bytes) -> RegistryFile:
    return RegistryFile(
        path=path, size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest()
    )


class TestInMemoryRegistryContract(RegistryContract):
    supports = frozenset(RegistryContract.features)

    @pytest.fixture
    def provider(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry()

    @pytest.fixture
    def seeded_model(self, provider: InMemoryModelRegistry) -> SeededModel:
        repo_id = "llmops-test/tiny-gpt"
        tags = frozenset({"text-generation"})
        provider.push("llmops-test/other-model", {"config.json": b"{}"})
        revisions = []
        for files in (
            {"config.json": b'{"layers": 1}', "model.safetensors": b"v1"},
            {"config.json": b'{"layers": 2}', "model.safetensors": b"v2", "README.md": b"# tiny"},
        ):
            revisions.append(SeededRevision(provider.push(repo_id, files, tags), files))
        return SeededModel(repo_id=repo_id, revisions=revisions, tags=tags)

    @pytest.fixture
    def unreachable_provider(self) -> InMemoryModelRegistry:
        return InMemoryModelRegistry(reachable=False)


class BranchNamingRegistry(InMemoryModelRegistry):
    """Broken on purpose: an import reports the branch it was asked for, not the commit."""

    def import_model(self, request: ImportRequest) -> ImportResult:
        result = super().import_model(request)
        return result.model_copy(update={"revision": request.revision})


class BrokenRegistryContract(TestInMemoryRegistryContract):
    @pytest.fixture
    def provider(self) -> InMemoryModelRegistry:
        return BranchNamingRegistry()


# =====================================================================================
# Versioning
# =====================================================================================


@dataclass(frozen=True)
class _Version:
    info: DatasetVersionInfo
    files: dict[str, bytes]


@dataclass
class VersionStore:
    """What a versioning repository would hold; shared by providers on it."""

    versions: dict[str, list[_Version]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    #: what its remote holds: the versions pushed (by dataset and version id)
    remote: set[tuple[str, str]] = field(default_factory=set)


class InMemoryDataVersioner:
    """A VersioningProvider (and PushesVersions) whose repository is a dict of
    snapshots, its remote a set of pushed versions."""

    def __init__(
        self,
        store: VersionStore | None = None,
        *,
        reachable: bool = True,
        remote_reachable: bool = True,
    ) -> None:
        self.store = store or VersionStore()
        self.reachable = reachable
        self.remote_reachable = remote_reachable

    def create_version(self, spec: VersionSpec) -> DatasetVersionInfo:
        key = spec.idempotency_key
        if key is not None and (spec.dataset_id, key) in self.store.keys:
            return self._find(spec.dataset_id, self.store.keys[(spec.dataset_id, key)]).info
        files = read_tree(spec.source_path)
        history = self.store.versions.setdefault(spec.dataset_id, [])
        info = DatasetVersionInfo(
            version_id=uuid.uuid4().hex[:12],
            dataset_id=spec.dataset_id,
            created_at=utcnow(),
            message=spec.message,
            file_count=len(files),
            size_bytes=sum(len(c) for c in files.values()),
            checksum=_checksum(files),
            parent_version_id=history[-1].info.version_id if history else None,
        )
        history.append(_Version(info, files))
        if key is not None:
            self.store.keys[(spec.dataset_id, key)] = info.version_id
        return info

    def list_versions(self, dataset_id: str) -> list[DatasetVersionInfo]:
        return [v.info for v in self.store.versions.get(dataset_id, [])]

    def diff(self, dataset_id: str, from_version_id: str, to_version_id: str) -> VersionDiff:
        before = self._find(dataset_id, from_version_id).files
        after = self._find(dataset_id, to_version_id).files
        changes = []
        for path in sorted(set(before) | set(after)):
            if path not in after:
                kind = ChangeKind.REMOVED
            elif path not in before:
                kind = ChangeKind.ADDED
            elif before[path] != after[path]:
                kind = ChangeKind.MODIFIED
            else:
                continue
            changes.append(
                FileChange(
                    path=path,
                    change=kind,
                    size_before=len(before[path]) if path in before else None,
                    size_after=len(after[path]) if path in after else None,
                )
            )
        return VersionDiff(
            from_version_id=from_version_id, to_version_id=to_version_id, changes=changes
        )

    def restore(self, dataset_id: str, version_id: str, destination: Path) -> DatasetVersionInfo:
        version = self._find(dataset_id, version_id)
        write_tree(destination, version.files)
        return version.info

    def lineage(self, dataset_id: str, version_id: str) -> Lineage:
        nodes: list[LineageNode] = []
        edges: list[LineageEdge] = []
        current: str | None = version_id
        while current is not None:
            info = self._find(dataset_id, current).info
            nodes.append(
                LineageNode(kind="dataset-version", id=info.version_id, label=info.message)
            )
            if info.parent_version_id is not None:
                edges.append(
                    LineageEdge(
                        source=info.version_id,
                        target=info.parent_version_id,
                        relation="derived-from",
                    )
                )
            current = info.parent_version_id
        return Lineage(nodes=nodes, edges=edges)

    def push_version(self, dataset_id: str, version_id: str) -> PushResult:
        version = self._find(dataset_id, version_id)
        pushed = (dataset_id, version_id) in self.store.remote
        if not pushed and not self.remote_reachable:
            raise IntegrationUnavailable("the in-memory remote is switched off")
        self.store.remote.add((dataset_id, version_id))
        return PushResult(
            dataset_id=dataset_id,
            version_id=version_id,
            remote="memory://",
            uploaded_files=0 if pushed else len(version.files),
            already_pushed=pushed,
        )

    def health(self) -> Health:
        if not self.reachable:
            return _down("the in-memory remote is switched off")
        return _ok(f"{len(self.store.versions)} dataset(s)")

    def _find(self, dataset_id: str, version_id: str) -> _Version:
        for version in self.store.versions.get(dataset_id, []):
            if version.info.version_id == version_id:
                return version
        raise NotFound(f"dataset {dataset_id!r} has no version {version_id!r}")


def _checksum(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


class TestInMemoryVersioningContract(VersioningContract):
    supports = frozenset(VersioningContract.features)

    @pytest.fixture
    def provider(self) -> InMemoryDataVersioner:
        return InMemoryDataVersioner()

    @pytest.fixture
    def restarted_provider(self, provider: InMemoryDataVersioner) -> InMemoryDataVersioner:
        return InMemoryDataVersioner(provider.store)

    @pytest.fixture
    def unreachable_provider(self) -> InMemoryDataVersioner:
        return InMemoryDataVersioner(reachable=False)

    @pytest.fixture
    def offline_remote_provider(self) -> InMemoryDataVersioner:
        return InMemoryDataVersioner(remote_reachable=False)


class AddOnlyDiffVersioner(InMemoryDataVersioner):
    """Broken on purpose: its diff never reports removed files."""

    def diff(self, dataset_id: str, from_version_id: str, to_version_id: str) -> VersionDiff:
        diff = super().diff(dataset_id, from_version_id, to_version_id)
        kept = [c for c in diff.changes if c.change is not ChangeKind.REMOVED]
        return diff.model_copy(update={"changes": kept})


class BrokenVersioningContract(TestInMemoryVersioningContract):
    @pytest.fixture
    def provider(self) -> InMemoryDataVersioner:
        return AddOnlyDiffVersioner()


class RenamedParameterRegistry(InMemoryModelRegistry):
    """Broken on purpose: ``export_model(req)`` still passes isinstance() with the
    Protocol, but a core call ``export_model(request=...)`` would fail."""

    def export_model(self, req: ExportRequest) -> ExportResult:  # type: ignore[override]
        return super().export_model(req)


class WrongSignatureRegistryContract(TestInMemoryRegistryContract):
    @pytest.fixture
    def provider(self) -> InMemoryModelRegistry:
        return RenamedParameterRegistry()


# =====================================================================================
# The suites catch broken providers
# =====================================================================================


BROKEN_SUITES = """
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location("reference_module", {path!r})
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses look their module up
_spec.loader.exec_module(_module)


class TestBrokenServing(_module.BrokenServingContract):
    pass


class TestBrokenRegistry(_module.BrokenRegistryContract):
    pass


class TestBrokenVersioning(_module.BrokenVersioningContract):
    pass


class TestWrongSignatureRegistry(_module.WrongSignatureRegistryContract):
    pass
"""


def test_each_suite_fails_its_broken_provider_on_the_tests_that_cover_the_break(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_broken=BROKEN_SUITES.format(path=str(__file__)))

    recorder = pytester.inline_run(*QUIET_PLUGINS)

    passed, skipped, failed = recorder.listoutcomes()
    failures: dict[str, list[str]] = {}
    for report in failed:
        _file, suite, test = report.nodeid.split("::")
        failures.setdefault(suite, []).append(test.split("[")[0])
    assert {suite: sorted(tests) for suite, tests in failures.items()} == {
        "TestBrokenServing": [
            "test_a_canary_deployed_with_the_spec_takes_its_share",
            "test_a_canary_takes_its_share_of_traffic",
        ],
        "TestBrokenRegistry": ["test_import_downloads_the_latest_commit_and_names_it"],
        "TestBrokenVersioning": ["test_diff_lists_added_removed_and_modified_files"],
        "TestWrongSignatureRegistry": ["test_methods_take_the_protocols_parameters"],
    }
    assert not skipped, "contract suites never skip"
    assert passed, "everything else in the suites runs and passes"


def test_the_reference_providers_declare_every_feature() -> None:
    for suite in (
        TestInMemoryServingContract,
        TestInMemoryRegistryContract,
        TestInMemoryVersioningContract,
    ):
        assert suite.not_supported == frozenset(), suite
