"""Update checks show what changed between the pin and the tracked branch's head, and
never move the pin; links point at the configured endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmops.capabilities.registry import FileChange, ImportRequest, RegistryFile
from llmops.errors import IntegrationUnavailable, NotFound
from llmops.testing.contracts import read_tree
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

MakeProvider = Callable[..., HfRegistry]


def test_after_pushed_commits_check_update_lists_the_changes_and_commits_and_the_pin_stays(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    kit.seed()
    registry = make_provider()
    pinned = registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "m"))
    bigger = json.dumps({**kit.config, "n_layer": 24})
    second = hub.push_commit(
        kit.repo,
        {"config.json": bigger, "extra.safetensors": kit.weights(1.0)},
        message="Grow to 24 layers",
        description="and more weights",
        author="maintainer",
    )
    third = hub.push_commit(
        kit.repo, deletions=["tokenizer/vocab.txt"], message="Drop the vocabulary"
    )

    check = registry.check_update(kit.repo, pinned.revision, branch=pinned.branch)

    assert (check.current_revision, check.latest_revision) == (pinned.revision, third)
    assert check.update_available is True
    assert check.branch == "main"
    new_weights = hub.file_hashes(kit.repo, third)["extra.safetensors"]
    assert check.files_added == [
        RegistryFile(path="extra.safetensors", size_bytes=len(kit.weights(1.0)), sha256=new_weights)
    ]
    assert check.files_removed == [RegistryFile(path="tokenizer/vocab.txt", size_bytes=6)]
    assert check.files_modified == [
        FileChange(
            path="config.json",
            old_size_bytes=len(json.dumps(kit.config)),
            new_size_bytes=len(bigger),
        )
    ]
    assert [(c.id, c.title, c.authors) for c in check.commits] == [
        (third, "Drop the vocabulary", [kit.repo.split("/")[0]]),
        (second, "Grow to 24 layers", ["maintainer"]),
    ]
    assert check.commits[1].message == "and more weights"
    assert check.commits[1].created_at is not None
    assert check.commits_truncated is False
    # the pin stays: the imported files and the pinned metadata are the old commit's
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == kit.config
    assert registry.metadata(kit.repo, pinned.revision).revision == pinned.revision
    assert "tokenizer/vocab.txt" in read_tree(tmp_path / "m")


def test_check_update_follows_the_branch_it_is_given(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit
) -> None:
    head = kit.seed()
    hub.create_branch(kit.repo, "dev")
    on_dev = hub.push_commit(kit.repo, {"notes.md": "wip"}, branch="dev", message="WIP")
    registry = make_provider()

    main = registry.check_update(kit.repo, head)
    dev = registry.check_update(kit.repo, head, branch="dev")

    assert (main.branch, main.update_available) == ("main", False)
    assert (dev.branch, dev.latest_revision, dev.update_available) == ("dev", on_dev, True)
    assert [f.path for f in dev.files_added] == ["notes.md"]
    assert [c.id for c in dev.commits] == [on_dev]
    with pytest.raises(NotFound):
        registry.check_update(kit.repo, head, branch="no-such-branch")


def test_check_update_lists_at_most_a_hundred_commits_and_says_so(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit
) -> None:
    head = kit.seed()
    for n in range(101):
        hub.push_commit(kit.repo, {"counter.txt": str(n)}, message=f"step {n}")

    check = make_provider().check_update(kit.repo, head)

    assert len(check.commits) == 100
    assert check.commits[0].title == "step 100"
    assert check.commits_truncated is True
    assert [f.path for f in check.files_added] == ["counter.txt"]


def test_an_update_check_with_the_hub_down_is_503_not_an_answer_from_the_cache(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit
) -> None:
    head = kit.seed()
    registry = make_provider(retry_budget_seconds=0)
    registry.metadata(kit.repo)
    hub.down()

    with pytest.raises(IntegrationUnavailable):
        registry.check_update(kit.repo, head)


def test_links_name_the_page_the_files_and_the_commit_on_the_configured_endpoint(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit
) -> None:
    sha = "a" * 40
    registry = make_provider(endpoint=hub.url + "/")

    pinned = {link.kind: link.url for link in registry.links(kit.repo, sha)}
    branch = {link.kind: link.url for link in registry.links(kit.repo, "refs/pr/1")}

    assert pinned == {
        "model-page": f"{hub.url}/{kit.repo}",
        "files": f"{hub.url}/{kit.repo}/tree/{sha}",
        "commit": f"{hub.url}/{kit.repo}/commit/{sha}",
    }
    assert branch["files"] == f"{hub.url}/{kit.repo}/tree/refs%2Fpr%2F1"
    assert hub.requests == [], "links ask the Hub nothing"
