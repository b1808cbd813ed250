"""The plugin through the platform's API, against the Hub double: a tiny safetensors model
imported into the catalog with the double's files and hashes, refusals answered at once
with nothing written, an import served from the cache while the Hub is down, update
checks that list a pushed commit without moving the pin, an export imported back with
the same files, and the token in no answer, log record or database file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from llmops.model_runtime.loader import check_model_folder
from llmops.testing.hf import HfHubDouble
from llmops.testing.waiting import wait_for

# huggingface_hub's LFS upload hands httpx2 a file object as ``data=``
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

API = "/llm-ops/v1"
REPO = "acme/tiny-model"  # the repo kit.seed() makes


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny GPT-2 saved with save_pretrained (safetensors weights, a tokenizer): its
    files by name, made once for the module."""
    from llmops.testing.models import tiny_causal_lm

    folder = tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"), hidden=16, positions=64)
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def import_model(platform: TestClient, **body: Any) -> dict[str, Any]:
    answer = platform.post(f"{API}/catalog/models/import", json={"repoId": REPO, **body})
    assert answer.status_code == 202, answer.text
    accepted: dict[str, Any] = answer.json()
    return accepted


def settled(platform: TestClient, model_id: str) -> dict[str, Any]:
    """The model once its import has ended."""
    found: dict[str, Any] = {}

    def ended() -> bool:
        found.update(platform.get(f"{API}/catalog/models/{model_id}").json())
        return bool(found["status"] != "importing")

    wait_for(ended, timeout=30, what=f"the import of model {model_id}")
    return found


def folder_of(model: dict[str, Any]) -> Path:
    return Path(urlparse(model["uri"]).path)


def test_a_tiny_safetensors_model_is_imported_with_the_doubles_files_and_hashes(
    platform: TestClient, hub: HfHubDouble, tiny_model: dict[str, Path]
) -> None:
    sha = hub.add_repo(REPO, tiny_model, license="apache-2.0", pipeline_tag="text-generation")

    accepted = import_model(platform)

    assert accepted["source"] == f"hf://{REPO}@{sha}"
    assert accepted["status"] == "importing"
    assert accepted["importedFrom"]["branch"] == "main"
    assert accepted["importedFrom"]["license"] == "apache-2.0"
    model = settled(platform, accepted["id"])
    assert model["status"] == "ready", model["importStatus"]
    expected = hub.file_hashes(REPO, sha)
    assert {f["path"]: f["sha256"] for f in model["files"]} == expected
    folder = folder_of(model)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == (
        sorted(expected)
    )
    assert check_model_folder(folder).path.resolve() == folder.resolve()  # Ray Serve's check
    assert model["importedFrom"]["pipelineTag"] == "text-generation"
    progress = model["importStatus"]["progress"]
    assert progress["phase"] == "done"
    assert progress["filesDone"] == progress["filesTotal"] == len(expected)
    assert progress["bytesDone"] == sum(f["sizeBytes"] for f in model["files"])
    assert platform.delete(f"{API}/catalog/models/{model['id']}").status_code == 204
    assert not folder.exists()  # its read-only links to the cache go with it


def test_pickle_only_weights_are_refused_with_422_at_once(
    platform: TestClient, hub: HfHubDouble
) -> None:
    hub.add_repo(REPO, {"config.json": "{}", "pytorch_model.bin": b"\x80\x04pickle"})

    refused = platform.post(f"{API}/catalog/models/import", json={"repoId": REPO})

    assert refused.status_code == 422, refused.text
    assert "pickle" in refused.json()["detail"]
    assert platform.get(f"{API}/catalog/models").json()["items"] == []
    assert platform.get(f"{API}/operations").json()["items"] == []


def test_names_that_would_land_outside_are_refused_with_422_and_nothing_is_written(
    platform: TestClient, hub: HfHubDouble, kit: Any, tmp_path: Path
) -> None:
    hub.add_repo(REPO, kit.files({"../evil.txt": "gotcha"}), unsafe_paths=True)

    refused = platform.post(f"{API}/catalog/models/import", json={"repoId": REPO})

    assert refused.status_code == 422, refused.text
    assert "outside the destination" in refused.json()["detail"]
    assert platform.get(f"{API}/catalog/models").json()["items"] == []
    assert [p for p in tmp_path.rglob("evil.txt")] == []
    storage = platform.app.state.platform.settings.storage_dir  # type: ignore[attr-defined]
    assert not (storage / "models").exists()


def test_with_the_hub_down_a_cached_commit_is_imported_from_the_cache_marked_degraded(
    platform: TestClient, hub: HfHubDouble, kit: Any
) -> None:
    sha = kit.seed()
    first = settled(platform, import_model(platform)["id"])
    assert first["status"] == "ready"
    hub.down()

    again = import_model(platform, revision=sha, name="tiny-offline")

    assert again["degraded"] is True
    assert "local cache" in again["degradedReason"]
    model = settled(platform, again["id"])
    assert model["status"] == "ready", model["importStatus"]
    assert model["importedFrom"]["degraded"] is True
    assert {f["path"]: f["sha256"] for f in model["files"]} == {
        f["path"]: f["sha256"] for f in first["files"]
    }


def test_a_pushed_commit_is_listed_by_check_updates_and_the_pin_stays(
    platform: TestClient, hub: HfHubDouble, kit: Any
) -> None:
    pinned = kit.seed()
    model = settled(platform, import_model(platform)["id"])
    newer = hub.push_commit(
        REPO,
        {"model.safetensors": kit.weights(1.0, 2.0), "extra.txt": "more"},
        message="Retrained",
    )

    check = platform.post(f"{API}/catalog/models/{model['id']}/check-updates")

    assert check.status_code == 200, check.text
    result = check.json()
    assert result["updateAvailable"] is True
    assert (result["currentRevision"], result["latestRevision"]) == (pinned, newer)
    assert [f["path"] for f in result["filesAdded"]] == ["extra.txt"]
    assert [f["path"] for f in result["filesModified"]] == ["model.safetensors"]
    assert [c["title"] for c in result["commits"]] == ["Retrained"]
    after = platform.get(f"{API}/catalog/models/{model['id']}").json()
    assert after["source"] == f"hf://{REPO}@{pinned}"
    assert after["importedFrom"]["revision"] == pinned
    links = platform.get(f"{API}/catalog/models/{model['id']}/registry-links").json()
    assert f"{hub.url}/{REPO}/commit/{pinned}" in {link["url"] for link in links["links"]}


def test_an_export_imported_back_has_the_same_files_and_hashes(
    platform: TestClient, hub: HfHubDouble, kit: Any
) -> None:
    kit.seed()
    model = settled(platform, import_model(platform)["id"])
    target = f"{hub.user}/tiny-copy"

    exported = platform.post(
        f"{API}/catalog/models/{model['id']}/export",
        json={"repoId": target, "commitMessage": "From llmops"},
    )

    assert exported.status_code == 202, exported.text

    def done() -> bool:
        found = platform.get(f"{API}/catalog/models/{model['id']}").json()["exports"]
        return bool(found) and found[0]["state"] != "pending"

    wait_for(done, timeout=30, what="the export")
    [export] = platform.get(f"{API}/catalog/models/{model['id']}").json()["exports"]
    assert export["state"] == "succeeded", export
    assert export["commit"] == hub.head(target)
    assert hub.is_private(target)
    back = settled(platform, import_model(platform, repoId=target, name="tiny-back")["id"])
    assert back["status"] == "ready", back["importStatus"]
    hashes = {f["path"]: f["sha256"] for f in back["files"]}
    for original in model["files"]:
        assert hashes[original["path"]] == original["sha256"]


def test_the_token_is_in_no_answer_no_log_record_and_not_in_the_database_file(
    platform: TestClient,
    hub: HfHubDouble,
    kit: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = hub.write_token
    kit.seed()
    answers: list[str] = []

    def call(method: Callable[..., Any], path: str, **kwargs: Any) -> Any:
        response = method(f"{API}{path}", **kwargs)
        answers.append(response.text + repr(dict(response.headers)))
        return response.json()

    accepted = call(platform.post, "/catalog/models/import", json={"repoId": REPO})
    model = settled(platform, accepted["id"])
    call(platform.get, f"/catalog/models/{model['id']}")
    call(platform.get, "/catalog/models")
    call(platform.post, f"/catalog/models/{model['id']}/check-updates")
    call(platform.get, f"/catalog/models/{model['id']}/registry-links")
    call(platform.get, "/catalog/models/search", params={"q": "tiny"})
    call(platform.get, f"/catalog/registry/hf/models/{REPO}")
    call(platform.get, "/integrations/hf")
    call(platform.get, f"/operations/{accepted['operationId']}")
    call(platform.post, f"/catalog/models/{model['id']}/export", json={"repoId": "x/forbidden"})

    def refused() -> bool:  # the Hub refuses a write outside the token's namespace
        [export] = platform.get(f"{API}/catalog/models/{model['id']}").json()["exports"]
        answers.append(repr(export))
        return bool(export["state"] == "failed")

    wait_for(refused, timeout=30, what="the export's refusal")
    hub.down()
    call(platform.post, "/catalog/models/import", json={"repoId": "acme/unknown"})
    call(platform.get, "/catalog/models/search", params={"q": "tiny"})
    hub.up()

    assert all(token not in text for text in answers)
    assert all(token not in record.getMessage() for record in caplog.records)
    assert all(token not in (record.exc_text or "") for record in caplog.records)
    database = tmp_path / "data" / "llmops.db"
    for path in (database, database.with_name("llmops.db-wal")):
        if path.exists():
            assert token.encode() not in path.read_bytes()
    assert database.exists()


def test_a_repository_is_described_with_its_branches_and_tags_for_the_revision_picker(
    platform: TestClient, hub: HfHubDouble, kit: Any
) -> None:
    head = kit.seed()
    hub.create_branch(REPO, "dev", revision=head)
    hub.create_tag(REPO, "v1.0", revision=head)

    described = platform.get(f"{API}/catalog/registry/hf/models/{REPO}").json()

    assert described["revision"] == head
    assert described["revisions"] == [
        {"name": "dev", "kind": "branch", "commit": head},
        {"name": "main", "kind": "branch", "commit": head},
        {"name": "v1.0", "kind": "tag", "commit": head},
    ]
    hub.down()
    offline = platform.get(f"{API}/catalog/registry/hf/models/{REPO}").json()
    hub.up()
    assert offline["degraded"] is True
    assert offline["revisions"] == []
