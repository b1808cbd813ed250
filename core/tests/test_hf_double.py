"""The Hugging Face Hub double (llmops.testing.hf) behaves like the Hub as huggingface_hub's
own client sees it: HfApi, snapshot_download, hf_hub_download and upload_folder, pointed at
the double with their ``endpoint`` argument. These tests also pin what huggingface_hub does
when the Hub is down or rate limits it, which the Hugging Face plugin relies on."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub import file_download as hub_file_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http as hub_http
from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars
from safetensors.numpy import save as save_safetensors

from llmops.testing.hf import HfHubDouble, running_hf_hub
from llmops.testing.hf import double as hub_double
from llmops.testing.hf.repo import git_blob_id

# huggingface_hub's LFS upload hands httpx a file object as ``data=``
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "acme/tiny-model"
CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfHubDouble]:
    """One double for the session: its LFS objects under a session temporary folder."""
    disable_progress_bars()
    with running_hf_hub(work_dir=tmp_path_factory.mktemp("hf-hub")) as hub:
        yield hub
    enable_progress_bars()


@pytest.fixture
def hub(started: HfHubDouble, monkeypatch: pytest.MonkeyPatch) -> Iterator[HfHubDouble]:
    """The session's double, reset before each test and checked for crashes after; the
    client configured as the plugin will: plain HTTP transfers (no Xet), no telemetry,
    online."""
    started.reset()
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield started
    started.check_errors()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits huggingface_hub's retry loops ask for (recorded, not slept)."""
    asked: list[float] = []
    fake = SimpleNamespace(sleep=asked.append)
    monkeypatch.setattr(hub_http, "time", fake)
    monkeypatch.setattr(hub_file_download, "time", fake)
    return asked


def weights(seed: int = 0, rows: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    return save_safetensors(
        {
            "wte.weight": rng.standard_normal((rows, 16)).astype(np.float32),
            "ln_f.bias": np.zeros(16, dtype=np.float16),
        }
    )


def seed_model(hub: HfHubDouble, repo_id: str = REPO, **options: Any) -> str:
    return hub.add_repo(
        repo_id,
        {
            "config.json": json.dumps(CONFIG),
            "model.safetensors": weights(),
            "tokenizer/vocab.txt": "a\nb\nc\n",
        },
        license="mit",
        pipeline_tag="text-generation",
        library_name="transformers",
        tags=["tiny", "test"],
        **options,
    )


def api(hub: HfHubDouble, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_of(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (symlinks followed)."""
    return {
        p.relative_to(folder).as_posix(): sha256(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- metadata -----------------------------------------------------------------------------


def test_model_info_lists_siblings_with_sizes_blob_ids_and_lfs_sha256(hub: HfHubDouble) -> None:
    head = seed_model(hub)
    info = api(hub).model_info(REPO, files_metadata=True)

    assert info.sha == head
    assert info.author == "acme"
    assert info.private is False
    assert info.pipeline_tag == "text-generation"
    assert info.library_name == "transformers"
    assert info.card_data is not None
    assert info.card_data.license == "mit"
    assert {"tiny", "test", "transformers", "safetensors", "gpt2", "license:mit"} <= set(
        info.tags or []
    )
    assert info.config == {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
    assert info.safetensors is not None
    assert info.safetensors.parameters == {"F32": 64 * 16, "F16": 16}
    assert info.safetensors.total == 64 * 16 + 16

    siblings = {s.rfilename: s for s in info.siblings or []}
    assert sorted(siblings) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer/vocab.txt",
    ]
    model = siblings["model.safetensors"]
    assert model.lfs is not None
    assert model.lfs.sha256 == sha256(weights())
    assert model.lfs.size == model.size == len(weights())
    assert model.lfs.pointer_size > 100
    config = siblings["config.json"]
    assert config.lfs is None
    assert config.blob_id == git_blob_id(json.dumps(CONFIG).encode())
    assert config.size == len(json.dumps(CONFIG))


def test_model_info_without_files_metadata_lists_names_only(hub: HfHubDouble) -> None:
    seed_model(hub)
    info = api(hub).model_info(REPO)
    assert all(s.size is None and s.lfs is None for s in info.siblings or [])
    expanded = api(hub).model_info(REPO, expand=["sha", "downloads"])
    assert expanded.sha == hub.head(REPO)
    assert expanded.tags is None


def test_list_models_searches_ids_filters_tags_and_hides_private_repos(hub: HfHubDouble) -> None:
    seed_model(hub)
    seed_model(hub, "acme/tiny-private", private=True)
    hub.add_repo("other/tiny-bert", {"config.json": "{}"}, tags=["fill-mask"])
    hub.add_repo("other/large", {"config.json": "{}"})

    def ids(**options: Any) -> set[str]:
        token = options.pop("token", False)
        return {m.id for m in api(hub, token).list_models(**options)}

    assert ids(search="tiny") == {REPO, "other/tiny-bert"}
    assert ids(search="TINY", author="other") == {"other/tiny-bert"}
    assert ids(filter="fill-mask") == {"other/tiny-bert"}
    assert ids(pipeline_tag="text-generation") == {REPO}
    assert ids(search="tiny", token=hub.stranger_token) == {REPO, "other/tiny-bert"}
    hub.add_org("acme", [hub.user])
    assert "acme/tiny-private" in ids(search="tiny", token=hub.read_token)

    listed = next(iter(api(hub).list_models(search="tiny-model", full=True, cardData=True)))
    assert listed.sha == hub.head(REPO)
    assert next(s.rfilename for s in listed.siblings or []) == ".gitattributes"
    assert listed.card_data is not None
    assert listed.card_data.license == "mit"


def test_list_models_pages_through_the_link_header(
    hub: HfHubDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_double, "SEARCH_PAGE", 2)
    for n in range(5):
        hub.add_repo(f"acme/model-{n}", {"config.json": "{}"})
    assert len(list(api(hub).list_models(search="model-"))) == 5
    assert len(hub.requests_to("GET", "/api/models")) == 3


def test_list_repo_tree_lists_files_and_folders_with_lfs_metadata(
    hub: HfHubDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_model(hub)
    client = api(hub)

    recursive = {e.path: e for e in client.list_repo_tree(REPO, recursive=True)}
    assert sorted(recursive) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer",
        "tokenizer/vocab.txt",
    ]
    model = recursive["model.safetensors"]
    assert getattr(model, "lfs", None) is not None
    assert model.lfs.sha256 == sha256(weights())  # type: ignore[union-attr]
    assert len(getattr(recursive["tokenizer"], "tree_id", "")) == 40

    top = [e.path for e in client.list_repo_tree(REPO)]
    assert "tokenizer" in top
    assert "tokenizer/vocab.txt" not in top
    inside = [e.path for e in client.list_repo_tree(REPO, path_in_repo="tokenizer")]
    assert inside == ["tokenizer/vocab.txt"]

    expanded = {e.path: e for e in client.list_repo_tree(REPO, recursive=True, expand=True)}
    last = getattr(expanded["config.json"], "last_commit", None)
    assert last is not None
    assert last.oid == hub.head(REPO)

    monkeypatch.setattr(hub_double, "TREE_PAGE", 2)
    hub.clear_requests()
    assert len(list(client.list_repo_tree(REPO, recursive=True))) == 6
    assert len(hub.requests_to("GET", r"/api/models/acme/tiny-model/tree/main")) == 3

    paths = client.get_paths_info(REPO, ["config.json", "tokenizer", "missing.txt"])
    assert [p.path for p in paths] == ["config.json", "tokenizer"]


def test_refs_and_commits_follow_a_pushed_commit_and_the_old_sha_stays_resolvable(
    hub: HfHubDouble,
) -> None:
    first = seed_model(hub)
    second = hub.push_commit(
        REPO,
        {"config.json": json.dumps({**CONFIG, "n_layer": 4}), "extra.txt": "new"},
        deletions=["tokenizer/vocab.txt"],
        message="Grow the model",
        description="four layers",
        author="maintainer",
    )
    client = api(hub)

    refs = client.list_repo_refs(REPO)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", second)]
    commits = client.list_repo_commits(REPO)
    assert [c.commit_id for c in commits] == [second, first, hub.commits(REPO)[-1]]
    assert commits[0].title == "Grow the model"
    assert commits[0].message == "four layers"
    assert commits[0].authors == ["maintainer"]
    assert commits[-1].title == "initial commit"

    assert client.model_info(REPO).sha == second
    old = client.model_info(REPO, revision=first, files_metadata=True)
    assert old.sha == first
    assert "tokenizer/vocab.txt" in {s.rfilename for s in old.siblings or []}

    hub.create_branch(REPO, "v1", revision=first)
    hub.create_tag(REPO, "release", revision=first)
    refs = client.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second, "v1": first}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("release", first)]
    assert client.model_info(REPO, revision="release").sha == first


# -- downloads ----------------------------------------------------------------------------


def test_snapshot_download_of_a_branch_then_of_its_sha_builds_one_snapshot(
    hub: HfHubDouble, cache: Path
) -> None:
    head = seed_model(hub)

    by_branch = Path(snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False))
    by_sha = Path(
        snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
    )

    storage = cache / "models--acme--tiny-model"
    assert by_branch == by_sha == storage / "snapshots" / head
    assert (storage / "refs" / "main").read_text() == head
    assert tree_of(by_branch) == hub.file_hashes(REPO)
    blobs = {p.name for p in (storage / "blobs").iterdir()}
    assert sha256(weights()) in blobs  # LFS blobs are named by their sha256
    assert git_blob_id(json.dumps(CONFIG).encode()) in blobs  # others by their git blob id
    assert (by_branch / "model.safetensors").is_symlink()


def test_a_cached_pinned_sha_is_served_without_any_request_even_with_the_hub_down(
    hub: HfHubDouble, cache: Path
) -> None:
    head = seed_model(hub)
    first = snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
    hub.clear_requests()

    again = snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
    assert again == first
    assert hub.requests == []  # the tree listing of the commit is cached on disk

    hub.down()
    assert (
        snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
        == first
    )
    one = hf_hub_download(
        REPO, "config.json", revision=head, endpoint=hub.url, cache_dir=cache, token=False
    )
    assert Path(one).read_bytes() == json.dumps(CONFIG).encode()


def test_with_the_hub_down_a_cached_branch_is_served_from_its_last_known_commit(
    hub: HfHubDouble, cache: Path
) -> None:
    head = seed_model(hub)
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    hub.push_commit(REPO, {"extra.txt": "moved on"})
    hub.down()

    served = snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(served).name == head  # refs/main as last seen: the branch's move is unknown
    one = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(one).parent.name == head


def test_with_the_hub_down_and_nothing_cached_downloads_raise_local_entry_not_found(
    hub: HfHubDouble, cache: Path, sleeps: list[float]
) -> None:
    head = seed_model(hub)
    hub.down()
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    assert sleeps == []  # a branch is looked up once (repo_info): no retry
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
    assert sleeps == [1, 2, 4, 8, 8]  # a sha's tree listing retries refused connections


def test_offline_mode_and_local_files_only_read_the_cache_without_requests(
    hub: HfHubDouble, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = seed_model(hub)
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    hub.clear_requests()

    local = snapshot_download(
        REPO, endpoint=hub.url, cache_dir=cache, token=False, local_files_only=True
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(local).name == Path(offline).name == head
    assert hub.requests == []


def test_hf_hub_download_relies_on_etag_commit_and_size_headers_of_resolve(
    hub: HfHubDouble, cache: Path
) -> None:
    head = seed_model(hub, private=True)
    token = hub.read_token
    hub.add_org("acme", [hub.user])

    regular = get_hf_file_metadata(hf_hub_url(REPO, "config.json", endpoint=hub.url), token=token)
    assert regular.commit_hash == head
    assert regular.etag == git_blob_id(json.dumps(CONFIG).encode())
    assert regular.size == len(json.dumps(CONFIG))
    large = get_hf_file_metadata(
        hf_hub_url(REPO, "model.safetensors", endpoint=hub.url), token=token
    )
    assert large.commit_hash == head
    assert large.etag == sha256(weights())
    assert large.size == len(weights())
    assert large.location.startswith(hub.cdn_url + "/lfs/")  # the 302 to the storage host

    path = hf_hub_download(
        REPO, "model.safetensors", endpoint=hub.url, cache_dir=cache, token=token
    )
    assert Path(path).read_bytes() == weights()
    assert Path(path).parent.name == head
    cdn = hub.requests_to("GET", server="cdn")
    assert len(cdn) == 1
    assert not cdn[0].token_sent  # huggingface_hub drops the token off the Hub's origin
    assert all(r.token_sent and r.user == hub.user for r in hub.requests_to(server="hub"))


def test_an_interrupted_download_resumes_with_a_range_request(
    hub: HfHubDouble, cache: Path, sleeps: list[float]
) -> None:
    big = os.urandom(12 << 20)
    hub.add_repo(REPO, {"model.safetensors": big})
    hub.interrupt(11 << 20, path_prefix="/lfs/")

    path = hf_hub_download(
        REPO, "model.safetensors", endpoint=hub.url, cache_dir=cache, token=False
    )
    assert sha256(Path(path).read_bytes()) == sha256(big)
    gets = hub.requests_to("GET", server="cdn")
    # huggingface_hub writes 10 MB pieces: it resumes after the last whole one
    assert [r.headers.get("range") for r in gets] == [None, f"bytes={10 << 20}-"]
    assert [r.status for r in gets] == [200, 206]
    assert sleeps == [1]


# -- uploads ------------------------------------------------------------------------------


def test_create_repo_private_is_invisible_without_a_token_that_may_read_it(
    hub: HfHubDouble,
) -> None:
    owner = api(hub, hub.write_token)
    url = owner.create_repo("exported", private=True)
    repo_id = f"{hub.user}/exported"
    assert url.repo_id == repo_id
    assert url == f"{hub.url}/{repo_id}"
    assert hub.is_private(repo_id)

    assert owner.model_info(repo_id).private is True
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        api(hub).model_info(repo_id)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as stranger:
        api(hub, hub.stranger_token).model_info(repo_id)
    assert stranger.value.response.status_code == 404

    with pytest.raises(HfHubHTTPError) as again:
        owner.create_repo("exported", private=True)
    assert again.value.response.status_code == 409
    assert owner.create_repo("exported", private=True, exist_ok=True).repo_id == repo_id
    assert owner.create_repo("public-one").repo_id == f"{hub.user}/public-one"
    assert not hub.is_private(f"{hub.user}/public-one")


def test_upload_folder_sends_small_files_inline_and_large_ones_through_lfs(
    hub: HfHubDouble, tmp_path: Path, cache: Path
) -> None:
    folder = tmp_path / "export"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [fine-tuned]\n---\n# x\n")
    (folder / "model.safetensors").write_bytes(weights(seed=1))
    (folder / "tokenizer" / "vocab.txt").write_text("x" * (10 << 20))  # text, but 10 MB
    client = api(hub, hub.write_token)
    repo_id = client.create_repo("exported", private=True).repo_id

    commit = client.upload_folder(
        repo_id=repo_id, folder_path=folder, commit_message="Export from llmops"
    )

    assert commit.oid == hub.head(repo_id)
    assert hub.lfs_paths(repo_id) == {"model.safetensors", "tokenizer/vocab.txt"}
    assert len(hub.requests_to("PUT", server="cdn")) == 2
    assert hub.requests_to("POST", r"/llmops-tester/exported\.git/info/lfs/objects/batch")
    info = client.model_info(repo_id)
    assert info.card_data is not None
    assert info.card_data.license == "apache-2.0"
    assert client.list_repo_commits(repo_id)[0].authors == [hub.user]

    downloaded = Path(
        snapshot_download(repo_id, endpoint=hub.url, cache_dir=cache, token=hub.read_token)
    )
    local = tree_of(folder)
    assert {k: v for k, v in tree_of(downloaded).items() if k != ".gitattributes"} == local
    assert {k: v for k, v in hub.file_hashes(repo_id).items() if k != ".gitattributes"} == local


def test_upload_folder_as_a_pull_request_opens_refs_pr_and_leaves_main_alone(
    hub: HfHubDouble, tmp_path: Path, cache: Path
) -> None:
    seed_model(hub, "llmops-tester/base")
    before = hub.head("llmops-tester/base")
    folder = tmp_path / "change"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights(seed=2))
    client = api(hub, hub.write_token)

    commit = client.upload_folder(
        repo_id="llmops-tester/base", folder_path=folder, create_pr=True, commit_message="Tune"
    )

    assert commit.pr_revision == "refs/pr/1"
    assert commit.pr_num == 1
    assert commit.pr_url == f"{hub.url}/llmops-tester/base/discussions/1"
    assert hub.head("llmops-tester/base") == before
    refs = client.list_repo_refs("llmops-tester/base", include_pull_requests=True)
    assert [(p.ref, p.target_commit) for p in refs.pull_requests or []] == [
        ("refs/pr/1", commit.oid)
    ]
    snapshot = snapshot_download(
        "llmops-tester/base", revision="refs/pr/1", endpoint=hub.url, cache_dir=cache, token=False
    )
    assert (Path(snapshot) / "model.safetensors").read_bytes() == weights(seed=2)

    by_stranger = api(hub, hub.stranger_token).create_commit(
        "llmops-tester/base",
        [CommitOperationAdd("notes.md", io.BytesIO(b"a suggestion"))],
        commit_message="Suggest",
        create_pr=True,
    )
    assert by_stranger.pr_num == 2
    assert [p["author"] for p in hub.pull_requests("llmops-tester/base")] == [
        hub.user,
        hub.stranger,
    ]


def test_a_commit_on_a_stale_parent_is_refused_with_412(hub: HfHubDouble) -> None:
    first = seed_model(hub, "llmops-tester/base")
    hub.push_commit("llmops-tester/base", {"extra.txt": "someone else was faster"})
    with pytest.raises(HfHubHTTPError) as refused:
        api(hub, hub.write_token).create_commit(
            "llmops-tester/base",
            [CommitOperationAdd("mine.txt", b"late")],
            commit_message="Late",
            parent_commit=first,
        )
    assert refused.value.response.status_code == 412


# -- failures -----------------------------------------------------------------------------


def test_unknown_repo_revision_and_file_raise_huggingface_hubs_own_errors(
    hub: HfHubDouble, cache: Path
) -> None:
    seed_model(hub)
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        api(hub).model_info("acme/missing")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as authenticated:
        api(hub, hub.read_token).model_info("acme/missing")
    assert authenticated.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        api(hub).model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="0" * 40, endpoint=hub.url, cache_dir=cache, token=False)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", endpoint=hub.url, cache_dir=cache, token=False)
    head = hub.head(REPO)
    assert (cache / "models--acme--tiny-model" / ".no_exist" / head / "missing.bin").exists()


def test_a_bad_token_is_401_and_a_read_token_cannot_write(hub: HfHubDouble, tmp_path: Path) -> None:
    seed_model(hub)
    with pytest.raises(HfHubHTTPError) as bad:
        api(hub, "hf_" + "x" * 34).model_info(REPO)
    assert bad.value.response.status_code == 401
    assert not isinstance(bad.value, RepositoryNotFoundError)
    assert "Invalid credentials in Authorization header" in str(bad.value)

    reader = api(hub, hub.read_token)
    with pytest.raises(HfHubHTTPError) as create:
        reader.create_repo("nope")
    assert create.value.response.status_code == 403
    mine = api(hub, hub.write_token).create_repo("mine").repo_id
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(HfHubHTTPError) as upload:
        reader.upload_folder(repo_id=mine, folder_path=tmp_path)
    assert upload.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as elsewhere:
        api(hub, hub.stranger_token).upload_folder(repo_id=mine, folder_path=tmp_path)
    assert elsewhere.value.response.status_code == 403


def test_whoami_names_the_user_and_the_token_role(hub: HfHubDouble) -> None:
    hub.add_org("acme", [hub.user])
    me = api(hub, hub.read_token).whoami()
    assert me["name"] == hub.user
    assert me["auth"]["accessToken"]["role"] == "read"
    assert [o["name"] for o in me["orgs"]] == ["acme"]
    hub.revoke_token(hub.read_token)
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        api(hub, hub.read_token).whoami()


def test_a_gated_repo_shows_its_metadata_but_its_files_need_access(
    hub: HfHubDouble, cache: Path
) -> None:
    seed_model(hub, gated="manual")
    assert api(hub).model_info(REPO).gated == "manual"
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            REPO, "config.json", endpoint=hub.url, cache_dir=cache, token=hub.stranger_token
        )
    hub.grant_access(REPO, hub.stranger)
    assert Path(
        hf_hub_download(
            REPO, "config.json", endpoint=hub.url, cache_dir=cache, token=hub.stranger_token
        )
    ).exists()


def test_a_429_surfaces_with_retry_after_and_model_info_does_not_retry(
    hub: HfHubDouble, sleeps: list[float]
) -> None:
    seed_model(hub)
    hub.rate_limit(1, retry_after=7)
    with pytest.raises(HfHubHTTPError) as limited:
        api(hub).model_info(REPO)
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert "rate limit" in str(limited.value)
    assert len(hub.requests) == 1
    assert sleeps == []


def test_paginated_calls_retry_a_429_after_retry_after_plus_one_second(
    hub: HfHubDouble, sleeps: list[float]
) -> None:
    seed_model(hub)
    hub.rate_limit(2, retry_after=3)
    assert [m.id for m in api(hub).list_models(search="tiny")] == [REPO]
    assert sleeps == [4, 4]
    assert [r.status for r in hub.requests] == [429, 429, 200]


def test_a_429_on_a_branch_lookup_falls_back_to_the_cached_snapshot(
    hub: HfHubDouble, cache: Path, sleeps: list[float]
) -> None:
    head = seed_model(hub)
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    hub.clear_requests()
    hub.rate_limit(None, retry_after=30)

    served = snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(served).name == head
    assert [(r.path, r.status) for r in hub.requests] == [
        ("/api/models/acme/tiny-model/revision/main", 429)
    ]
    assert sleeps == []


def test_a_429_on_a_file_not_in_the_cache_is_retried_by_hf_hub_download(
    hub: HfHubDouble, cache: Path, sleeps: list[float]
) -> None:
    seed_model(hub)
    hub.rate_limit(2, retry_after=2)
    path = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(path).read_bytes() == json.dumps(CONFIG).encode()
    assert [r.status for r in hub.requests_to("HEAD")] == [429, 429, 200]
    assert sleeps == [3]


def test_fail_answers_the_hubs_error_shape_a_set_number_of_times(hub: HfHubDouble) -> None:
    seed_model(hub)
    hub.fail(503, path_prefix="/api/models/", times=1, message="Service Unavailable")
    with pytest.raises(HfHubHTTPError) as failed:
        api(hub).model_info(REPO)
    assert failed.value.response.status_code == 503
    assert failed.value.server_message == "Service Unavailable"
    assert api(hub).model_info(REPO).sha == hub.head(REPO)


def test_down_refuses_connections_on_the_same_port_until_up(hub: HfHubDouble) -> None:
    seed_model(hub)
    url = hub.url
    hub.down()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/models/{REPO}")
    hub.up()
    assert hub.url == url
    assert httpx.get(f"{url}/api/models/{REPO}").json()["sha"] == hub.head(REPO)


def test_names_that_escape_the_destination_are_served_and_huggingface_hub_refuses_them(
    hub: HfHubDouble, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="unsafe_paths"):
        hub.add_repo("evil/model", {"../evil.txt": "x"})
    hub.add_repo(
        "evil/model",
        {"config.json": "{}", "../evil.txt": "pwned", "a/../../evil2.txt": "pwned"},
        unsafe_paths=True,
    )
    listed = {e.path for e in api(hub).list_repo_tree("evil/model", recursive=True)}
    assert {"../evil.txt", "a/../../evil2.txt"} <= listed
    siblings = {s.rfilename for s in api(hub).model_info("evil/model").siblings or []}
    assert "../evil.txt" in siblings

    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ValueError, match=r"'\.\.' path segment"):
        snapshot_download("evil/model", endpoint=hub.url, cache_dir=cache, token=False)
    assert not list(tmp_path.rglob("evil*.txt"))


def test_recorded_requests_never_hold_the_token(hub: HfHubDouble, cache: Path) -> None:
    seed_model(hub, private=True)
    hub.add_org("acme", [hub.user])
    snapshot_download(REPO, endpoint=hub.url, cache_dir=cache, token=hub.read_token)
    assert hub.requests
    assert hub.read_token not in repr(hub.requests)
    assert {r.headers.get("authorization") for r in hub.requests_to(server="hub")} == {
        "Bearer <redacted>"
    }


def test_a_fresh_double_starts_and_stops_in_its_own_folder(tmp_path: Path) -> None:
    with running_hf_hub(work_dir=tmp_path / "hub") as other:
        other.add_repo("acme/x", {"w.bin": os.urandom(100)})
        assert list((tmp_path / "hub" / "lfs").iterdir())
        assert api(other).model_info("acme/x").sha == other.head("acme/x")
        other.check_errors()


def test_slow_holds_every_answer_back_until_switched_off(hub: HfHubDouble) -> None:
    seed_model(hub)
    hub.slow(2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{hub.url}/api/models/{REPO}", timeout=0.2)
    hub.slow(0)
    assert api(hub).model_info(REPO, timeout=2).sha == hub.head(REPO)


def test_a_dataset_repo_is_served_under_the_datasets_prefix(hub: HfHubDouble, cache: Path) -> None:
    head = hub.add_repo(
        "acme/corpus",
        {
            "data/train.parquet": b"PAR1" + os.urandom(200),
            "README.md": "---\nlicense: cc0-1.0\n---\n",
        },
        repo_type="dataset",
    )
    info = api(hub).dataset_info("acme/corpus", files_metadata=True)
    assert info.sha == head
    assert info.card_data is not None
    assert info.card_data.license == "cc0-1.0"
    folder = snapshot_download(
        "acme/corpus", repo_type="dataset", endpoint=hub.url, cache_dir=cache, token=False
    )
    assert tree_of(Path(folder)) == hub.file_hashes("acme/corpus", repo_type="dataset")
    assert hub.requests_to("GET", r"/datasets/acme/corpus/resolve/.*")
    assert [d.id for d in api(hub).list_datasets(search="corpus")] == ["acme/corpus"]


def test_branches_and_tags_made_through_the_api_show_in_the_refs(hub: HfHubDouble) -> None:
    first = seed_model(hub, "llmops-tester/base")
    client = api(hub, hub.write_token)
    client.create_branch("llmops-tester/base", branch="dev", revision=first)
    client.create_tag("llmops-tester/base", tag="v1.0", revision="dev")
    with pytest.raises(HfHubHTTPError) as twice:
        client.create_branch("llmops-tester/base", branch="dev")
    assert twice.value.response.status_code == 409
    refs = client.list_repo_refs("llmops-tester/base")
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.ref, t.target_commit) for t in refs.tags] == [("refs/tags/v1.0", first)]
    client.delete_branch("llmops-tester/base", branch="dev")
    client.delete_tag("llmops-tester/base", tag="v1.0")
    refs = client.list_repo_refs("llmops-tester/base")
    assert [b.name for b in refs.branches] == ["main"]
    assert refs.tags == []


def test_a_429_storm_on_an_uncached_sha_is_retried_five_times_then_reported_not_cached(
    hub: HfHubDouble, cache: Path, sleeps: list[float]
) -> None:
    head = seed_model(hub)
    hub.rate_limit(None, retry_after=30)
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, revision=head, endpoint=hub.url, cache_dir=cache, token=False)
    assert sleeps == [31] * 5  # the tree listing: Retry-After + 1 s, five times
    assert [r.status for r in hub.requests] == [429] * 6
