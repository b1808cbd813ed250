"""The model registry routes against an in-memory registry plugin ("memhub"): an import
answers 202 at once and its operation brings the files, reporting progress, into the
platform's storage; a refusal is a 422 that records nothing; exports are delivered once;
update checks list what changed and never move the pin; the search keeps the catalog's
part when the registry is away; roles and the audit log."""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from llmops import cli_models
from llmops.api.app import create_app
from llmops.cli import main as llmops_cli
from llmops.cli_examples import PlatformClient
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

PLUGIN = """
import fnmatch
import hashlib
import itertools
import threading

from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.registry import (
    ExportResult, FileChange, ImportPhase, ImportPlan, ImportProgress, ImportResult,
    RegistryCommit, RegistryFile, RegistryLink, RegistryModelMetadata, RegistryModelSummary,
    UpdateCheck,
)
from llmops.errors import IntegrationUnavailable, InvalidRequest, NotFound
from llmops.plugins.info import PluginInfo

BASE = "https://memhub.invalid"
#: repo id -> commits, oldest first: (sha, {path: bytes}, title)
REPOS = {}
#: switches the tests turn: the hub away, imports that fail or are refused, an export
#: whose answer is lost after its commit
STATE = {"down": False, "fail_imports": False, "refuse_imports": None, "lose_export": False}
#: imports wait here after their first file while it is clear
GATE = threading.Event()
GATE.set()
#: commits the "local cache" holds (what was checked or imported before)
CACHED = set()
EXPORTED = {}
COUNTER = itertools.count(1)


def push(repo_id, files, title="Update"):
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{repo_id}:{next(COUNTER)}".encode())
    for path in sorted(files):
        digest.update(path.encode() + b"\\0" + files[path])
    sha = digest.hexdigest()
    REPOS.setdefault(repo_id, []).append((sha, dict(files), title))
    return sha


def reset():
    REPOS.clear()
    CACHED.clear()
    EXPORTED.clear()
    STATE.update(down=False, fail_imports=False, refuse_imports=None, lose_export=False)
    GATE.set()


def _file(path, content):
    return RegistryFile(
        path=path, size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest()
    )


class MemHub:
    honours_deadline = True

    def _resolve(self, repo_id, revision):
        commits = REPOS.get(repo_id)
        if not commits:
            raise NotFound(f"memhub has no model {repo_id!r}")
        if STATE["down"]:
            if revision in CACHED:
                for sha, files, _ in commits:
                    if sha == revision:
                        return sha, files, "memhub is down: served from the local cache"
            raise IntegrationUnavailable("memhub is down", retry_after=1)
        if revision in (None, "main"):
            sha, files, _ = commits[-1]
            return sha, files, None
        for sha, files, _ in commits:
            if sha == revision:
                return sha, files, None
        raise NotFound(f"{repo_id} has no revision {revision!r}")

    def _metadata(self, repo_id, sha, files, degraded):
        return RegistryModelMetadata(
            repo_id=repo_id, revision=sha, license="mit", pipeline_tag="text-generation",
            library="transformers", tags=["tiny"], card="# A tiny model",
            files=[_file(p, c) for p, c in sorted(files.items())],
            url=f"{BASE}/{repo_id}", degraded=degraded,
        )

    def _checked(self, repo_id, revision, patterns):
        sha, files, degraded = self._resolve(repo_id, revision)
        for name in files:
            if name.startswith("/") or ".." in name.split("/"):
                raise InvalidRequest(f"refused, nothing was written: {name!r} is outside")
        chosen = {
            p: c for p, c in files.items()
            if not patterns or any(fnmatch.fnmatch(p, g) for g in patterns)
        }
        if not any(p.endswith(".safetensors") for p in chosen):
            raise InvalidRequest("refused: its weights are pickle files only", reason="pickle")
        if b"auto_map" in chosen.get("config.json", b""):
            raise InvalidRequest("refused: config.json maps classes to remote code")
        CACHED.add(sha)
        branch = None if revision == sha else revision
        return sha, chosen, degraded, branch

    def check_import(self, repo_id, revision="main", *, allow_patterns=None):
        sha, chosen, degraded, branch = self._checked(repo_id, revision, allow_patterns)
        return ImportPlan(
            repo_id=repo_id, revision=sha, branch=branch,
            files=[_file(p, c) for p, c in sorted(chosen.items())],
            metadata=self._metadata(repo_id, sha, chosen, degraded), degraded=degraded,
        )

    def search(self, query, *, limit=20, tags=None):
        if STATE["down"]:
            raise IntegrationUnavailable("memhub is down")
        return [
            RegistryModelSummary(repo_id=r, author=r.split("/")[0], url=f"{BASE}/{r}")
            for r in sorted(REPOS) if query.lower() in r.lower()
        ][:limit]

    def metadata(self, repo_id, revision=None):
        sha, files, degraded = self._resolve(repo_id, revision)
        return self._metadata(repo_id, sha, files, degraded)

    def import_model(self, request):
        if STATE["fail_imports"]:
            raise IntegrationUnavailable("memhub is down for imports")
        if STATE["refuse_imports"]:
            raise InvalidRequest(STATE["refuse_imports"])
        sha, chosen, degraded, branch = self._checked(
            request.repo_id, request.revision, request.allow_patterns
        )
        sink = request.progress or (lambda progress: None)
        total = sum(len(c) for c in chosen.values())
        sink(ImportProgress(phase=ImportPhase.RESOLVING))
        sink(ImportProgress(phase=ImportPhase.DOWNLOADING, files_total=len(chosen),
                            bytes_total=total))
        done = 0
        placed = []
        for index, (path, content) in enumerate(sorted(chosen.items())):
            target = request.destination / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            done += len(content)
            placed.append(_file(path, content))
            sink(ImportProgress(phase=ImportPhase.DOWNLOADING, files_total=len(chosen),
                                files_done=index + 1, bytes_total=total, bytes_done=done))
            while not GATE.wait(0.05):
                sink(ImportProgress(phase=ImportPhase.DOWNLOADING, files_total=len(chosen),
                                    files_done=index + 1, bytes_total=total, bytes_done=done))
        sink(ImportProgress(phase=ImportPhase.DONE, files_total=len(chosen),
                            files_done=len(chosen), bytes_total=total, bytes_done=total))
        return ImportResult(
            repo_id=request.repo_id, revision=sha, local_path=request.destination,
            files=placed, metadata=self._metadata(request.repo_id, sha, chosen, degraded),
            branch=branch, degraded=degraded,
        )

    def export_model(self, request):
        if STATE["down"]:
            raise IntegrationUnavailable("memhub is down")
        key = request.idempotency_key
        sha = EXPORTED.get(key)
        if sha is None:
            files = {
                p.relative_to(request.local_path).as_posix(): p.read_bytes()
                for p in sorted(request.local_path.rglob("*")) if p.is_file()
            }
            sha = push(request.repo_id, files, request.commit_message)
            EXPORTED[key] = sha
            if STATE["lose_export"]:
                STATE["lose_export"] = False
                raise IntegrationUnavailable("the answer to the commit was lost")
        return ExportResult(
            repo_id=request.repo_id, commit=sha, url=f"{BASE}/{request.repo_id}/commit/{sha}"
        )

    def check_update(self, repo_id, revision, *, branch=None):
        latest, latest_files, _ = self._resolve(repo_id, branch or "main")
        if STATE["down"]:
            raise IntegrationUnavailable("memhub is down")
        commits = REPOS[repo_id]
        shas = [sha for sha, _, _ in commits]
        current_files = commits[shas.index(revision)][1]
        between = [
            RegistryCommit(id=sha, title=title)
            for sha, _, title in reversed(commits[shas.index(revision) + 1:])
        ]
        return UpdateCheck(
            repo_id=repo_id, current_revision=revision, latest_revision=latest,
            update_available=latest != revision, branch=branch or "main",
            files_added=[_file(p, c) for p, c in sorted(latest_files.items())
                         if p not in current_files],
            files_removed=[_file(p, c) for p, c in sorted(current_files.items())
                           if p not in latest_files],
            files_modified=[
                FileChange(path=p, old_size_bytes=len(current_files[p]),
                           new_size_bytes=len(c))
                for p, c in sorted(latest_files.items())
                if p in current_files and current_files[p] != c
            ],
            commits=between,
        )

    def links(self, repo_id, revision=None):
        links = [RegistryLink(kind="model-page", url=f"{BASE}/{repo_id}", label=repo_id)]
        if revision:
            links.append(RegistryLink(kind="commit", url=f"{BASE}/{repo_id}/commit/{revision}",
                                      label=f"Commit {revision[:7]}"))
        return links

    def health(self):
        return Health(status=HealthStatus.DOWN if STATE["down"] else HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="memhub", version="1.0", display_name="In-memory hub",
        capabilities=frozenset({Capability.REGISTRY}),
    )


@hookimpl
def llmops_registry(settings, context):
    return MemHub()
"""

REPO = "acme/tiny-model"
CONFIG = b'{"model_type": "gpt2"}'
WEIGHTS = b"safetensors weights"
VOCAB = b"a\nb\nc\n"


def tiny_files(**extra: bytes) -> dict[str, bytes]:
    return {
        "config.json": CONFIG,
        "model.safetensors": WEIGHTS,
        "tokenizer/vocab.txt": VOCAB,
        **extra,
    }


@pytest.fixture
def memhub(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, ModuleType]]:
    """A started platform whose only registry is memhub, called with an admin key."""
    module = install("memhub", PLUGIN)
    with TestClient(create_app(make_settings(plugins="memhub"))) as client:
        authenticate(client)
        hub = sys.modules[module]
        hub.reset()
        try:
            yield client, hub
        finally:
            hub.GATE.set()


def import_model(client: TestClient, api: str, **body: Any) -> Any:
    answer = client.post(f"{api}/catalog/models/import", json={"repoId": REPO, **body})
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_for_model(
    client: TestClient, api: str, model_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def seen() -> bool:
        found.update(client.get(f"{api}/catalog/models/{model_id}").json())
        return check(found)

    wait_for(seen, timeout=15, what=f"model {model_id}")
    return found


def ready(client: TestClient, api: str, model_id: str) -> dict[str, Any]:
    return wait_for_model(client, api, model_id, lambda m: m["status"] != "importing")


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def folder_of(model: dict[str, Any]) -> Path:
    return Path(urlparse(model["uri"]).path)


# -- imports --------------------------------------------------------------------------------


def test_an_import_answers_202_at_once_then_its_operation_brings_the_files_with_progress(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    sha = hub.push(REPO, tiny_files())
    hub.GATE.clear()  # the import waits after its first file

    accepted = import_model(client, api)
    assert accepted["status"] == "importing"
    assert accepted["name"] == "acme-tiny-model"
    assert accepted["source"] == f"memhub://{REPO}@{sha}"
    assert accepted["importedFrom"]["revision"] == sha
    assert accepted["importedFrom"]["branch"] == "main"
    assert accepted["importedFrom"]["license"] == "mit"
    assert accepted["degraded"] is False
    assert accepted["uri"] is None
    assert [f["path"] for f in accepted["files"]] == sorted(tiny_files())
    operation_id = accepted["operationId"]
    assert accepted["importStatus"]["operationId"] == operation_id

    midway = wait_for_model(
        client,
        api,
        accepted["id"],
        lambda m: ((m["importStatus"] or {}).get("progress") or {}).get("filesDone") == 1,
    )
    progress = midway["importStatus"]["progress"]
    assert midway["status"] == "importing"
    assert progress["phase"] == "downloading"
    assert progress["filesTotal"] == 3
    assert progress["bytesTotal"] == sum(len(c) for c in tiny_files().values())
    assert 0 < progress["bytesDone"] < progress["bytesTotal"]
    operation = client.get(f"{api}/operations/{operation_id}").json()
    assert operation["status"] == "running"
    assert operation["progress"]["filesDone"] == 1

    hub.GATE.set()
    model = ready(client, api, accepted["id"])
    assert model["status"] == "ready"
    assert model["source"] == f"memhub://{REPO}@{sha}"
    assert {f["path"]: f["sha256"] for f in model["files"]} == {
        path: sha256(content) for path, content in tiny_files().items()
    }
    assert model["importStatus"]["state"] == "ready"
    assert model["importStatus"]["progress"]["phase"] == "done"
    assert model["importedFrom"]["importedAt"] is not None
    folder = folder_of(model)
    assert folder.name == model["id"]
    assert folder.parent.name == "models"
    assert (folder / "tokenizer" / "vocab.txt").read_bytes() == VOCAB
    assert model["card"] == "# A tiny model"
    done = client.get(f"{api}/operations/{operation_id}").json()
    assert done["status"] == "succeeded"
    assert done["result"]["revision"] == sha
    assert done["progress"]["filesDone"] == 3
    listed = client.get(f"{api}/catalog/models").json()["items"]
    assert [m["importedFrom"]["repoId"] for m in listed] == [REPO]


def test_a_model_still_importing_is_not_deployed_and_the_answer_says_why(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.GATE.clear()  # the import waits after its first file
    accepted = import_model(client, api)

    answer = client.post(
        f"{api}/serving/endpoints", json={"name": "too-soon", "modelId": accepted["id"]}
    )

    assert answer.status_code == 409, answer.text
    assert "still importing" in answer.json()["detail"]
    assert client.get(f"{api}/serving/endpoints").json()["items"] == []
    hub.GATE.set()
    assert ready(client, api, accepted["id"])["status"] == "ready"


def test_the_status_of_a_model_being_imported_follows_the_import_not_a_patch(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.GATE.clear()  # the import waits after its first file
    accepted = import_model(client, api)

    patched = client.patch(f"{api}/catalog/models/{accepted['id']}", json={"status": "ready"})

    assert patched.status_code == 409, patched.text
    assert "follows the import" in patched.json()["detail"]
    hub.GATE.set()
    assert ready(client, api, accepted["id"])["status"] == "ready"
    archived = client.patch(f"{api}/catalog/models/{accepted['id']}", json={"status": "archived"})
    assert archived.status_code == 200, archived.text


def test_an_import_starts_when_its_request_commits_not_at_the_workers_next_round(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    module = install("memhub", PLUGIN)
    # the worker's rounds are a minute apart: only the request's wake can start it
    with TestClient(create_app(make_settings(plugins="memhub", sync_interval_seconds=60))) as c:
        authenticate(c)
        hub = sys.modules[module]
        hub.reset()
        hub.push(REPO, tiny_files())

        accepted = import_model(c, api)

        assert ready(c, api, accepted["id"])["status"] == "ready"


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"config.json": CONFIG, "pytorch_model.bin": b"pickle"}, "pickle"),
        ({"config.json": b'{"auto_map": {"AutoModel": "x.Y"}}', "m.safetensors": b"w"}, "remote"),
        ({"config.json": CONFIG, "m.safetensors": b"w", "../evil.txt": b"x"}, "outside"),
    ],
)
def test_an_import_the_registry_refuses_is_a_422_at_once_and_records_nothing(
    memhub: tuple[TestClient, ModuleType], api: str, files: dict[str, bytes], why: str
) -> None:
    client, hub = memhub
    hub.push(REPO, files)

    refused = client.post(f"{api}/catalog/models/import", json={"repoId": REPO})

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert why in refused.json()["detail"]
    assert client.get(f"{api}/catalog/models").json()["items"] == []
    assert client.get(f"{api}/operations").json()["items"] == []


def test_the_registry_away_with_nothing_cached_is_a_503_that_records_nothing(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.STATE["down"] = True

    away = client.post(f"{api}/catalog/models/import", json={"repoId": REPO})

    assert away.status_code == 503, away.text
    assert client.get(f"{api}/catalog/models").json()["items"] == []
    assert client.get(f"{api}/operations").json()["items"] == []


def test_an_outage_during_an_import_keeps_the_model_importing_with_why_until_it_succeeds(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.STATE["fail_imports"] = True

    accepted = import_model(client, api)
    waiting = wait_for_model(
        client, api, accepted["id"], lambda m: bool(m["importStatus"]["reason"])
    )
    assert waiting["status"] == "importing"
    assert "memhub is down for imports" in waiting["importStatus"]["reason"]
    assert waiting["importStatus"]["attempts"] >= 1

    hub.STATE["fail_imports"] = False
    model = ready(client, api, accepted["id"])
    assert model["status"] == "ready"
    assert model["importStatus"]["reason"] is None


def test_an_import_refused_during_delivery_fails_the_model_with_why_and_removes_its_files(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.STATE["refuse_imports"] = "refused: the repository changed its mind"

    accepted = import_model(client, api)
    model = ready(client, api, accepted["id"])

    assert model["status"] == "failed"
    assert "changed its mind" in model["importStatus"]["reason"]
    assert model["uri"] is None
    operation = client.get(f"{api}/operations/{accepted['operationId']}").json()
    assert operation["status"] == "dead"
    storage = client.app.state.platform.settings.storage_dir  # type: ignore[attr-defined]
    assert not (storage / "models" / model["id"]).exists()


def test_an_import_served_from_the_registrys_cache_says_degraded_and_why(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    sha = hub.push(REPO, tiny_files())
    ready(client, api, import_model(client, api)["id"])
    hub.STATE["down"] = True

    again = import_model(client, api, revision=sha, name="tiny-again")

    assert again["degraded"] is True
    assert "served from the local cache" in again["degradedReason"]
    assert again["importedFrom"]["branch"] is None
    model = ready(client, api, again["id"])
    assert model["status"] == "ready"
    assert model["importedFrom"]["degraded"] is True


def test_a_second_import_under_a_taken_name_is_a_409(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    import_model(client, api)

    taken = client.post(f"{api}/catalog/models/import", json={"repoId": REPO})

    assert taken.status_code == 409
    assert len(client.get(f"{api}/operations").json()["items"]) == 1


def test_deleting_an_imported_model_removes_its_files(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    folder = folder_of(model)
    assert folder.is_dir()

    assert client.delete(f"{api}/catalog/models/{model['id']}").status_code == 204

    assert not folder.exists()


# -- exports --------------------------------------------------------------------------------


def test_an_export_is_delivered_once_even_when_its_first_answer_is_lost(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    hub.STATE["lose_export"] = True

    answer = client.post(
        f"{api}/catalog/models/{model['id']}/export",
        json={"repoId": "me/tiny-finetune", "commitMessage": "Fine-tuned"},
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["export"]["state"] == "pending"
    assert accepted["export"]["private"] is True

    def exported() -> bool:
        found = client.get(f"{api}/catalog/models/{model['id']}").json()["exports"]
        return bool(found[0]["state"] == "succeeded")

    wait_for(exported, timeout=15, what="the export")
    [export] = client.get(f"{api}/catalog/models/{model['id']}").json()["exports"]
    [(commit, files, title)] = hub.REPOS["me/tiny-finetune"]
    assert export["commit"] == commit
    assert title == "Fine-tuned"
    assert files == tiny_files()
    operation = client.get(f"{api}/operations/{accepted['operationId']}").json()
    assert operation["attempts"] == 2
    assert operation["result"]["commit"] == commit


def test_exporting_a_model_without_files_on_disk_is_a_409(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, _ = memhub
    model = client.post(
        f"{api}/catalog/models", json={"name": "elsewhere", "uri": "file:///etc"}
    ).json()

    answer = client.post(f"{api}/catalog/models/{model['id']}/export", json={"repoId": "me/x"})

    assert answer.status_code == 409
    assert "no files on the platform's disk" in answer.json()["detail"]
    assert client.get(f"{api}/operations").json()["items"] == []


# -- update checks and links ------------------------------------------------------------------


def test_check_updates_lists_what_changed_and_never_moves_the_pin(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    pinned = hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    newer = hub.push(
        REPO,
        {**tiny_files(), "model.safetensors": b"better weights", "README.md": b"# tiny"},
        "Better weights",
    )

    check = client.post(f"{api}/catalog/models/{model['id']}/check-updates")

    assert check.status_code == 200, check.text
    result = check.json()
    assert result["updateAvailable"] is True
    assert result["currentRevision"] == pinned
    assert result["latestRevision"] == newer
    assert result["branch"] == "main"
    assert [f["path"] for f in result["filesAdded"]] == ["README.md"]
    assert result["filesModified"] == [
        {
            "path": "model.safetensors",
            "oldSizeBytes": len(WEIGHTS),
            "newSizeBytes": len(b"better weights"),
            "oldSha256": None,
            "newSha256": None,
        }
    ]
    assert [c["id"] for c in result["commits"]] == [newer]
    assert result["degraded"] is False
    after = client.get(f"{api}/catalog/models/{model['id']}").json()
    assert after["source"] == f"memhub://{REPO}@{pinned}"
    assert after["importedFrom"]["revision"] == pinned
    assert after["importedFrom"]["updateAvailable"] is True
    assert after["importedFrom"]["lastCheckedAt"] is not None


def test_check_updates_with_the_registry_away_shows_the_last_check_marked_degraded(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    hub.STATE["down"] = True
    never = client.post(f"{api}/catalog/models/{model['id']}/check-updates")
    assert never.status_code == 503
    hub.STATE["down"] = False
    first = client.post(f"{api}/catalog/models/{model['id']}/check-updates").json()
    hub.STATE["down"] = True

    stale = client.post(f"{api}/catalog/models/{model['id']}/check-updates")

    assert stale.status_code == 200
    body = stale.json()
    assert body["degraded"] is True
    assert "memhub is down" in body["degradedReason"]
    assert body["checkedAt"] == first["checkedAt"]
    assert body["updateAvailable"] is False


def test_check_updates_of_a_model_that_was_not_imported_is_a_409(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, _ = memhub
    model = client.post(f"{api}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()

    assert client.post(f"{api}/catalog/models/{model['id']}/check-updates").status_code == 409


def test_registry_links_point_at_the_pinned_commit_and_at_each_export(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    sha = hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    export = client.post(
        f"{api}/catalog/models/{model['id']}/export", json={"repoId": "me/copy"}
    ).json()
    wait_for(
        lambda: (
            client.get(f"{api}/catalog/models/{model['id']}").json()["exports"][0]["state"]
            == "succeeded"
        ),
        timeout=15,
        what="the export",
    )
    [(exported, _, _)] = hub.REPOS["me/copy"]

    links = client.get(f"{api}/catalog/models/{model['id']}/registry-links").json()

    urls = {(link["origin"], link["kind"]): link["url"] for link in links["links"]}
    assert urls[("import", "model-page")] == f"https://memhub.invalid/{REPO}"
    assert urls[("import", "commit")] == f"https://memhub.invalid/{REPO}/commit/{sha}"
    assert urls[("export", "commit")] == f"https://memhub.invalid/me/copy/commit/{exported}"
    assert links["degraded"] is False
    assert export["operationId"]


# -- search and metadata ----------------------------------------------------------------------


def test_search_marks_catalog_and_registry_hits_and_keeps_the_catalog_part_when_it_is_away(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    hub.push("acme/tiny-other", tiny_files())
    model = ready(client, api, import_model(client, api)["id"])

    found = client.get(f"{api}/catalog/models/search", params={"q": "tiny"}).json()

    assert [(i["source"], (i["model"] or {}).get("id")) for i in found["items"][:1]] == [
        ("catalog", model["id"])
    ]
    registry_hits = {i["registryModel"]["repoId"]: i for i in found["items"][1:]}
    assert {i["source"] for i in registry_hits.values()} == {"memhub"}
    assert registry_hits[REPO]["catalogModelIds"] == [model["id"]]
    assert registry_hits["acme/tiny-other"]["catalogModelIds"] == []
    assert found["registryProvider"] == "memhub"
    assert found["degraded"] is False

    hub.STATE["down"] = True
    away = client.get(f"{api}/catalog/models/search", params={"q": "tiny"})

    assert away.status_code == 200
    assert [i["source"] for i in away.json()["items"]] == ["catalog"]
    assert away.json()["degraded"] is True
    assert "memhub is down" in away.json()["degradedReason"]
    only_catalog = client.get(
        f"{api}/catalog/models/search", params={"q": "tiny", "registry": "false"}
    ).json()
    assert only_catalog["degraded"] is False
    assert only_catalog["registryProvider"] is None


def test_search_without_a_registry_plugin_is_the_catalogs_search(
    client: TestClient, api: str
) -> None:
    client.post(f"{api}/catalog/models", json={"name": "tiny", "uri": "file:///m"})

    found = client.get(f"{api}/catalog/models/search", params={"q": "tin"}).json()

    assert [i["source"] for i in found["items"]] == ["catalog"]
    assert found["registryProvider"] is None
    assert found["degraded"] is False


def test_a_repository_is_described_before_it_is_imported(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    client, hub = memhub
    sha = hub.push(REPO, tiny_files())

    described = client.get(f"{api}/catalog/registry/memhub/models/{REPO}").json()

    assert described["revision"] == sha
    assert described["license"] == "mit"
    assert described["card"] == "# A tiny model"
    assert {f["path"]: f["sizeBytes"] for f in described["files"]} == {
        p: len(c) for p, c in tiny_files().items()
    }
    assert {link["kind"] for link in described["links"]} == {"model-page", "commit"}
    assert described["catalogModelIds"] == []
    missing = client.get(f"{api}/catalog/registry/memhub/models/acme/none")
    assert missing.status_code == 404


# -- roles, audit, CLI --------------------------------------------------------------------------


def test_a_viewer_reads_but_may_not_import_export_or_check_and_the_writes_are_audited(
    memhub: tuple[TestClient, ModuleType], api: str, authenticate: Callable[..., str]
) -> None:
    client, hub = memhub
    hub.push(REPO, tiny_files())
    model = ready(client, api, import_model(client, api)["id"])
    client.post(f"{api}/catalog/models/{model['id']}/check-updates")
    client.post(f"{api}/catalog/models/{model['id']}/export", json={"repoId": "me/copy"})
    admin = client.headers["Authorization"]

    audit = client.get(f"{api}/governance/audit-logs", params={"limit": 50}).json()["items"]
    actions = {entry["action"]: entry for entry in audit}
    assert actions["import_model"]["details"]["repoId"] == REPO
    assert actions["import_model"]["details"]["modelId"] == model["id"]
    assert actions["export_model"]["details"]["repoId"] == "me/copy"
    assert actions["check_model_updates"]["details"]["updateAvailable"] is False

    authenticate(client, "viewer")
    assert client.post(f"{api}/catalog/models/import", json={"repoId": REPO}).status_code == 403
    assert (
        client.post(f"{api}/catalog/models/{model['id']}/export", json={"repoId": "x/y"})
    ).status_code == 403
    assert client.post(f"{api}/catalog/models/{model['id']}/check-updates").status_code == 403
    assert client.get(f"{api}/catalog/models/{model['id']}/registry-links").status_code == 200
    assert client.get(f"{api}/catalog/models/search", params={"q": "t"}).status_code == 200
    assert client.get(f"{api}/catalog/registry/memhub/models/{REPO}").status_code == 200

    authenticate(client, "editor")
    other = client.post(f"{api}/catalog/models/import", json={"repoId": REPO, "name": "t2"})
    assert other.status_code == 202
    client.headers["Authorization"] = admin


@pytest.fixture
def cli(
    memhub: tuple[TestClient, ModuleType], api: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """``cli("models", ...)``: the ``llmops`` command, its client talking to the test's
    platform in process."""
    client, _ = memhub

    def connect(url: str, api_key: str | None) -> PlatformClient:
        connected = PlatformClient(url, api_key)
        connected.http.close()
        connected.http = TestClient(client.app, base_url=f"http://testserver{api}")  # type: ignore[assignment]
        connected.http.headers["Authorization"] = client.headers["Authorization"]
        return connected

    monkeypatch.setattr(cli_models, "_client", connect)
    monkeypatch.setattr(cli_models, "POLL_SECONDS", 0.05)
    return lambda *args: CliRunner().invoke(llmops_cli, list(args))


def test_llmops_models_import_waits_showing_progress_and_check_updates_lists_changes(
    memhub: tuple[TestClient, ModuleType], cli: Callable[..., Any]
) -> None:
    _, hub = memhub
    hub.push(REPO, tiny_files())

    imported = cli("models", "import", REPO, "--wait")

    assert imported.exit_code == 0, imported.output
    assert "importing acme-tiny-model" in imported.output
    assert "done: 3/3 files" in imported.output
    assert "model acme-tiny-model ready" in imported.output
    hub.push(REPO, {**tiny_files(), "README.md": b"# tiny"}, "Add a card")
    checked = cli("models", "check-updates", "acme-tiny-model")
    assert checked.exit_code == 0, checked.output
    assert "+ README.md" in checked.output
    assert "Add a card" in checked.output
    assert "the pin stays at" in checked.output
    refused_repo = "acme/pickled"
    hub.push(refused_repo, {"pytorch_model.bin": b"pickle"})
    refused = cli("models", "import", refused_repo)
    assert refused.exit_code == 1
    assert "HTTP 422" in refused.output
    assert "pickle" in refused.output


def test_llmops_models_search_marks_each_source_and_export_waits_for_its_commit(
    memhub: tuple[TestClient, ModuleType], cli: Callable[..., Any]
) -> None:
    _, hub = memhub
    hub.push(REPO, tiny_files())
    assert cli("models", "import", REPO, "--wait").exit_code == 0

    found = cli("models", "search", "tiny")

    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    assert any(line.startswith("catalog  acme-tiny-model (") for line in lines), lines
    [hit] = [line for line in lines if line.startswith("memhub")]
    assert REPO in hit
    assert "imported as" in hit
    exported = cli("models", "export", "acme-tiny-model", "acme/tiny-copy", "--wait")
    assert exported.exit_code == 0, exported.output
    [(commit, _, _)] = hub.REPOS["acme/tiny-copy"]
    assert f"commit {commit}" in exported.output


# -- long work ---------------------------------------------------------------------------------


def test_an_import_interrupted_by_a_stopping_platform_goes_on_when_it_starts_again(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    module = install("memhub", PLUGIN)
    settings = make_settings(plugins="memhub")
    hub = importlib.import_module(module)
    hub.reset()
    sha = hub.push(REPO, tiny_files())
    hub.GATE.clear()
    try:
        with TestClient(create_app(settings)) as client:
            authenticate(client)
            accepted = import_model(client, api)
            wait_for_model(
                client,
                api,
                accepted["id"],
                lambda m: ((m["importStatus"] or {}).get("progress") or {}).get("filesDone") == 1,
            )
        # the platform stopped mid-import: its delivery was told to stop, and it waits
        with TestClient(create_app(settings, start_worker=False)) as client:
            authenticate(client)
            waiting = client.get(f"{api}/catalog/models/{accepted['id']}").json()
            operation = client.get(f"{api}/operations/{accepted['operationId']}").json()
        assert waiting["status"] == "importing"
        assert operation["status"] == "pending"
        assert "interrupted" in operation["lastError"]
        hub.GATE.set()
        with TestClient(create_app(settings)) as client:
            authenticate(client)
            model = ready(client, api, accepted["id"])
        assert model["status"] == "ready"
        assert model["source"] == f"memhub://{REPO}@{sha}"
    finally:
        hub.GATE.set()


def test_a_long_deliverys_heartbeat_renews_its_claim_and_says_when_it_is_lost(
    memhub: tuple[TestClient, ModuleType], api: str
) -> None:
    from llmops.db.models import Operation
    from llmops.resilience.outbox import Outbox, enqueue

    client, _ = memhub
    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.transaction() as session:
        operation = enqueue(
            session,
            kind="test.long",
            provider="memhub",
            capability="registry",
            idempotency_key="test-long",
        )
        operation_id = operation.id
    mine = Outbox(platform.sessions, {}, worker_id="mine")
    assert mine.claim(operation_id, early=True)
    with platform.sessions() as session:
        claimed = session.get(Operation, operation_id)
        assert claimed is not None
        first_lease = claimed.lease_until

    assert mine.heartbeat(operation_id, {"phase": "downloading", "filesDone": 1}) is True

    with platform.sessions() as session:
        renewed = session.get(Operation, operation_id)
        assert renewed is not None
        assert renewed.progress == {"phase": "downloading", "filesDone": 1}
        assert renewed.lease_until is not None
        assert first_lease is not None
        assert renewed.lease_until >= first_lease
    assert Outbox(platform.sessions, {}, worker_id="another").heartbeat(operation_id) is False
