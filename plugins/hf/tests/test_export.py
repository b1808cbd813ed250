"""Exports: a private repo made when needed, one commit per idempotency key, as a pull
request when asked; a Hub that is down is a 503 for the platform's outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmops.capabilities.registry import ExportRequest, ImportRequest
from llmops.errors import IntegrationRejected, IntegrationUnavailable, InvalidRequest
from llmops.testing.contracts import read_tree, write_tree
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import KEY_TRAILER, HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

# huggingface_hub's LFS upload hands httpx2 a file object as ``data=``
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

MakeProvider = Callable[..., HfRegistry]


def fine_tuned(kit: Kit) -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "gpt2", "n_layer": 2}',
        "model.safetensors": kit.weights(3.0, 1.0, 4.0),
        "tokenizer/vocab.txt": b"x\ny\n",
    }


def test_an_export_then_an_import_returns_the_same_files_and_sha256s(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    files = fine_tuned(kit)
    source = write_tree(tmp_path / "out", files)
    registry = make_provider()
    repo_id = f"{hub.user}/tiny-tuned"

    exported = registry.export_model(
        ExportRequest(repo_id=repo_id, local_path=source, commit_message="Fine-tuned")
    )
    imported = registry.import_model(
        ImportRequest(repo_id=repo_id, revision=exported.commit, destination=tmp_path / "back")
    )

    assert hub.is_private(repo_id), "private by default"
    assert exported.commit == hub.head(repo_id)
    assert exported.url == f"{hub.url}/{repo_id}/commit/{exported.commit}"
    local = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    back = {f.path: f.sha256 for f in imported.files if f.path in files}
    assert back == local
    assert {p: d for p, d in read_tree(tmp_path / "back").items() if p in files} == files


def test_an_export_retried_with_its_key_commits_once_and_carries_the_key_as_a_trailer(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", fine_tuned(kit))
    registry = make_provider()
    request = ExportRequest(
        repo_id=f"{hub.user}/tiny-tuned", local_path=source, idempotency_key="export-42"
    )

    first = registry.export_model(request)
    commits = hub.commits(request.repo_id)
    again = make_provider().export_model(request)

    assert again == first
    assert hub.commits(request.repo_id) == commits, "no second commit"
    listed = {c["id"]: c for c in _commit_items(hub, request.repo_id)}
    assert f"{KEY_TRAILER}: export-42" in listed[first.commit]["message"]


def test_an_export_as_a_pull_request_leaves_main_alone_and_its_retry_finds_it(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    base = kit.seed(f"{hub.user}/base")
    source = write_tree(tmp_path / "out", {"model.safetensors": kit.weights(9.0)})
    request = ExportRequest(
        repo_id=f"{hub.user}/base", local_path=source, create_pr=True, idempotency_key="pr-1"
    )
    registry = make_provider()

    proposed = registry.export_model(request)
    again = registry.export_model(request)

    assert hub.head(f"{hub.user}/base") == base, "main is left alone"
    assert proposed.url == f"{hub.url}/{hub.user}/base/discussions/1"
    assert again == proposed
    assert [p["num"] for p in hub.pull_requests(f"{hub.user}/base")] == [1]


def test_an_export_with_the_hub_down_is_503_for_the_outbox_to_retry(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", fine_tuned(kit))
    hub.down()

    with pytest.raises(IntegrationUnavailable):
        make_provider(retry_budget_seconds=0).export_model(
            ExportRequest(repo_id=f"{hub.user}/tiny-tuned", local_path=source)
        )


def test_an_export_is_refused_without_a_token_a_folder_or_a_namespace_it_may_write(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", fine_tuned(kit))

    with pytest.raises(InvalidRequest, match="LLMOPS_HF__TOKEN"):
        make_provider(token=None).export_model(
            ExportRequest(repo_id=f"{hub.user}/x", local_path=source)
        )
    with pytest.raises(InvalidRequest, match="not a folder"):
        make_provider().export_model(
            ExportRequest(repo_id=f"{hub.user}/x", local_path=tmp_path / "missing")
        )
    with pytest.raises(IntegrationRejected) as elsewhere:
        make_provider().export_model(ExportRequest(repo_id="someone-else/x", local_path=source))
    assert elsewhere.value.extensions["upstream_status"] == 403


def test_an_export_folder_with_a_link_out_of_it_is_refused(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    source = write_tree(tmp_path / "out", fine_tuned(kit))
    (tmp_path / "secret.txt").write_text("not for the Hub")
    (source / "notes.txt").symlink_to(tmp_path / "secret.txt")

    with pytest.raises(InvalidRequest, match="link out of"):
        make_provider().export_model(ExportRequest(repo_id=f"{hub.user}/x", local_path=source))
    assert not hub.has_repo(f"{hub.user}/x")


def _commit_items(hub: HfHubDouble, repo_id: str) -> list[dict[str, str]]:
    import httpx

    answer = httpx.get(
        f"{hub.url}/api/models/{repo_id}/commits/main",
        headers={"Authorization": f"Bearer {hub.read_token}"},
    )
    answer.raise_for_status()
    items: list[dict[str, str]] = answer.json()
    return items
