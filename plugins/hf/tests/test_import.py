"""Imports: a revision pinned to its commit, what is let in (safetensors weights only by
default, no remote code, no file name out of the destination), the files checked and
placed, the progress reported."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmops.capabilities.registry import ImportPhase, ImportProgress, ImportRequest
from llmops.errors import IntegrationRejected, InvalidRequest, NotFound
from llmops.testing.contracts import read_tree
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

MakeProvider = Callable[..., HfRegistry]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def downloads(hub: HfHubDouble) -> list[str]:
    """The files the double served (resolve GETs and LFS GETs)."""
    return [
        r.path
        for r in hub.requests
        if r.method == "GET" and ("/resolve/" in r.path or r.server == "cdn")
    ]


def test_an_import_of_a_branch_pins_its_commit_and_a_later_push_changes_nothing(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    head = kit.seed()
    registry = make_provider()

    result = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision="main", destination=tmp_path / "model")
    )
    hub.push_commit(kit.repo, {"config.json": json.dumps({"n_layer": 24})})

    assert result.revision == head != "main"
    assert result.metadata.revision == head
    assert result.branch == "main", "the branch is what check_update follows"
    assert result.degraded is None
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == kit.config
    again = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "pinned")
    )
    assert again.revision == head
    assert again.branch is None, "a commit names no branch"
    assert read_tree(tmp_path / "pinned") == read_tree(tmp_path / "model")


def test_an_import_of_a_tag_names_no_branch(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    head = kit.seed()
    hub.create_tag(kit.repo, "v1.0")

    result = make_provider().import_model(
        ImportRequest(repo_id=kit.repo, revision="v1.0", destination=tmp_path / "model")
    )

    assert (result.revision, result.branch) == (head, None)


def test_every_placed_file_has_the_sha256_read_while_placing_and_matches_the_hub(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    head = kit.seed()

    result = make_provider().import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "model")
    )

    expected = hub.file_hashes(kit.repo, head)
    assert {f.path: f.sha256 for f in result.files} == expected
    held = read_tree(tmp_path / "model")
    assert {path: sha256(data) for path, data in held.items()} == expected
    assert {f.path: f.size_bytes for f in result.files} == {p: len(d) for p, d in held.items()}
    weights = tmp_path / "model" / "model.safetensors"
    assert not weights.is_symlink(), "a file of its own, not a link into the cache"
    assert weights.stat().st_nlink == 2, "hard-linked with the cache's blob"
    assert not os.access(weights, os.W_OK) or os.geteuid() == 0, "read-only: it shares a blob"
    listed = {f.path: f for f in result.metadata.files}
    assert listed["model.safetensors"].sha256 == expected["model.safetensors"]  # LFS
    assert listed["config.json"].sha256 is None, "the Hub lists only a git blob id for it"


def test_a_model_whose_weights_are_only_pickle_is_refused_with_422_and_nothing_is_fetched(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    kit.seed(
        files={"config.json": "{}", "pytorch_model.bin": b"\x80\x04pickled", "a/b.pt": b"\x80"}
    )
    destination = tmp_path / "out" / "model"
    hub.clear_requests()

    with pytest.raises(InvalidRequest) as refused:
        make_provider().import_model(ImportRequest(repo_id=kit.repo, destination=destination))

    assert "pickle" in refused.value.detail
    assert "pytorch_model.bin" in refused.value.detail
    assert "a/b.pt" in refused.value.detail
    assert refused.value.status == 422
    assert not destination.parent.exists(), "nothing written"
    assert downloads(hub) == [], "nothing downloaded"


def test_pickle_files_beside_safetensors_ones_are_left_out_and_never_downloaded(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    kit.seed(files=kit.files({"pytorch_model.bin": b"\x80\x04old", "training_args.bin": b"\x80"}))
    kit.hub.push_commit(
        kit.repo, {"pytorch_model.bin": b"\x80\x04weights", "training_args.bin": b"\x80\x04"}
    )
    hub.clear_requests()

    result = make_provider().import_model(
        ImportRequest(repo_id=kit.repo, destination=tmp_path / "model")
    )

    assert result.skipped == ["pytorch_model.bin", "training_args.bin"]
    assert "pytorch_model.bin" not in read_tree(tmp_path / "model")
    assert "model.safetensors" in read_tree(tmp_path / "model")
    assert not [p for p in downloads(hub) if p.endswith(".bin")]
    assert {f.path for f in result.files} == set(read_tree(tmp_path / "model"))


def test_the_operators_allow_pickle_lets_pickle_weights_in(
    make_provider: MakeProvider, kit: Kit, tmp_path: Path
) -> None:
    kit.seed(files={"config.json": "{}", "pytorch_model.bin": b"\x80\x04pickled"})

    result = make_provider(allow_pickle=True).import_model(
        ImportRequest(repo_id=kit.repo, destination=tmp_path / "model")
    )

    assert (tmp_path / "model" / "pytorch_model.bin").read_bytes() == b"\x80\x04pickled"
    assert result.skipped == []


def test_allow_patterns_that_pick_only_pickle_weights_are_refused(
    make_provider: MakeProvider, kit: Kit, tmp_path: Path
) -> None:
    kit.seed(files=kit.files({"pytorch_model.bin": b"\x80\x04"}))

    with pytest.raises(InvalidRequest, match="pickle"):
        make_provider().import_model(
            ImportRequest(
                repo_id=kit.repo, allow_patterns=["*.bin"], destination=tmp_path / "model"
            )
        )
    with pytest.raises(InvalidRequest, match="no file of the repository matches"):
        make_provider().import_model(
            ImportRequest(
                repo_id=kit.repo, allow_patterns=["*.gguf"], destination=tmp_path / "model"
            )
        )
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_a_config_that_needs_remote_code_is_refused_unless_the_operator_allows_it(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, config_file: str
) -> None:
    custom = {"auto_map": {"AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"}}
    files = kit.files({"modeling_tiny.py": "import os\n"})
    files[config_file] = json.dumps({**kit.config, **custom})
    kit.seed(files=files)

    with pytest.raises(InvalidRequest) as refused:
        make_provider().import_model(
            ImportRequest(repo_id=kit.repo, destination=tmp_path / "refused")
        )
    allowed = make_provider(allow_remote_code=True).import_model(
        ImportRequest(repo_id=kit.repo, destination=tmp_path / "allowed")
    )

    assert "auto_map" in refused.value.detail
    assert config_file in refused.value.detail
    assert "LLMOPS_HF__ALLOW_REMOTE_CODE" in refused.value.detail
    assert not (tmp_path / "refused").exists()
    assert "modeling_tiny.py" in read_tree(tmp_path / "allowed")
    assert allowed.revision == hub.head(kit.repo)


def test_a_config_that_is_not_json_is_refused_as_unreadable_for_remote_code(
    make_provider: MakeProvider, kit: Kit, tmp_path: Path
) -> None:
    kit.seed(files=kit.files({"config.json": "{not json"}))

    with pytest.raises(InvalidRequest, match="not valid JSON"):
        make_provider().import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "m"))


@pytest.mark.parametrize(
    "bad_name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "a\\..\\evil.txt", "a//b"]
)
def test_a_file_name_that_escapes_the_destination_refuses_the_import_and_nothing_is_written(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, bad_name: str
) -> None:
    kit.seed(files={**kit.files(), bad_name: "pwned"}, unsafe_paths=True)
    parent = tmp_path / "models"
    parent.mkdir()
    hub.clear_requests()

    with pytest.raises(InvalidRequest) as refused:
        make_provider().import_model(
            ImportRequest(repo_id=kit.repo, destination=parent / "tiny" / "files")
        )

    assert repr(bad_name) in refused.value.detail
    assert "nothing was written" in refused.value.detail
    assert list(parent.iterdir()) == [], "nothing in the destination's parent"
    assert not [p for p in tmp_path.rglob("*evil*")], "nothing anywhere else either"
    assert downloads(hub) == []


def test_progress_counts_files_and_bytes_up_to_the_totals_and_ends_done(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    big = os.urandom(3 << 20)
    kit.seed(files=kit.files({"big.safetensors": big}))
    seen: list[ImportProgress] = []

    result = make_provider().import_model(
        ImportRequest(repo_id=kit.repo, destination=tmp_path / "model", progress=seen.append)
    )

    total = sum(f.size_bytes or 0 for f in result.files)
    last = seen[-1]
    assert (last.phase, last.files_done, last.files_total) == (
        ImportPhase.DONE,
        len(result.files),
        len(result.files),
    )
    assert last.bytes_done == last.bytes_total == total
    phases = [p.phase for p in seen]
    assert phases[0] is ImportPhase.RESOLVING
    assert ImportPhase.CHECKING in phases
    assert ImportPhase.DOWNLOADING in phases
    assert phases.index(ImportPhase.CHECKING) < phases.index(ImportPhase.DOWNLOADING)
    counted = [p.bytes_done for p in seen]
    assert counted == sorted(counted), "bytes only grow"
    assert ImportRequest.model_fields["progress"].exclude is True
    assert (
        "progress"
        not in ImportRequest(
            repo_id=kit.repo, destination=tmp_path, progress=seen.append
        ).model_dump()
    )


def test_a_sink_that_raises_stops_the_import_before_its_downloads(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    kit.seed()

    def cancel(progress: ImportProgress) -> None:
        if progress.phase is ImportPhase.DOWNLOADING:
            raise RuntimeError("cancelled by the operation")

    with pytest.raises(RuntimeError, match="cancelled"):
        make_provider().import_model(
            ImportRequest(repo_id=kit.repo, destination=tmp_path / "model", progress=cancel)
        )

    assert not (tmp_path / "model").exists()
    assert not [p for p in downloads(hub) if p.endswith(".safetensors") or "/lfs/" in p]


def test_a_cached_file_whose_bytes_differ_from_the_listing_is_refused_and_fetched_again(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    head = kit.seed()
    registry = make_provider()
    registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "a")
    )
    weights = hub.file_hashes(kit.repo, head)["model.safetensors"]
    blob = tmp_path / "hf-cache" / "models--acme--tiny-model" / "blobs" / weights
    size = blob.stat().st_size
    blob.unlink()
    blob.write_bytes(b"x" * size)

    with pytest.raises(IntegrationRejected, match="sha256"):
        registry.import_model(
            ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "b")
        )
    again = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "c")
    )

    assert read_tree(tmp_path / "b") == {}, "the files this import placed are removed again"
    assert {f.path: f.sha256 for f in again.files}["model.safetensors"] == weights


def test_an_unknown_model_or_revision_is_not_found(
    make_provider: MakeProvider, kit: Kit, tmp_path: Path
) -> None:
    kit.seed()
    registry = make_provider()

    with pytest.raises(NotFound):
        registry.import_model(ImportRequest(repo_id="acme/missing", destination=tmp_path / "m"))
    with pytest.raises(NotFound):
        registry.import_model(
            ImportRequest(repo_id=kit.repo, revision="no-such-branch", destination=tmp_path / "m")
        )
    with pytest.raises(InvalidRequest, match="not a Hub model id"):
        registry.import_model(ImportRequest(repo_id="../etc", destination=tmp_path / "m"))
