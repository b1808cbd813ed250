"""Versions on real git + DVC repositories beyond the contract: what a version records and
where, what is refused, restores byte for byte, and concurrent writers."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from llmops.capabilities.versioning import DatasetVersionInfo, VersionSpec
from llmops.errors import InvalidRequest
from llmops.testing.contracts import read_tree, write_tree
from llmops_dvc.provider import DvcVersioner

MakeProvider = Callable[..., DvcVersioner]

FILES = {"train.jsonl": b'{"text": "a"}\n', "nested/deeper/eval.csv": b"id,text\n1,b\n"}


def spec(dataset_id: str, source: Path, **fields: object) -> VersionSpec:
    return VersionSpec.model_validate({"dataset_id": dataset_id, "source_path": source, **fields})


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def test_a_version_is_a_commit_of_the_datasets_own_repository_with_the_dvc_hash_as_checksum(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    source = write_tree(tmp_path / "src", FILES)

    info = provider.create_version(spec("ds-a", source, message="first", tags={"k": "v"}))

    repo = tmp_path / "dvc" / "repos" / "ds-a"
    assert git(repo, "rev-parse", "main").strip() == info.version_id
    assert git(repo, "status", "--porcelain") == "", "everything of the version is committed"
    committed = set(git(repo, "ls-tree", "-r", "--name-only", "main").split())
    assert committed == {".dvc/.gitignore", ".dvc/config", ".dvcignore", ".gitignore", "data.dvc"}
    dvc_file = git(repo, "show", "main:data.dvc")
    assert f"md5: {info.checksum}" in dvc_file
    assert info.checksum is not None
    assert info.checksum.endswith(".dir")
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert message.startswith("first\n\nLlmops-Dataset: ds-a\n")
    assert 'Llmops-Tags: {"k": "v"}' in message
    assert (tmp_path / "dvc" / "cache" / "files" / "md5").is_dir(), "the shared cache"
    assert (info.file_count, info.size_bytes) == (2, sum(len(c) for c in FILES.values()))


def test_unchanged_files_return_the_latest_version_instead_of_an_empty_commit(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    source = write_tree(tmp_path / "src", FILES)
    first = provider.create_version(spec("ds", source, message="one"))

    again = provider.create_version(spec("ds", source, message="two"))

    assert again == first
    assert [v.version_id for v in provider.list_versions("ds")] == [first.version_id]


def test_a_retried_key_returns_its_version_even_after_other_versions(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    source = tmp_path / "src"
    keyed = provider.create_version(spec("ds", write_tree(source, FILES), idempotency_key="up-1"))
    later = provider.create_version(spec("ds", write_tree(source, {"x.txt": b"x"})))

    retried = make_provider().create_version(
        spec("ds", write_tree(source, {"y.txt": b"y"}), idempotency_key="up-1")
    )

    assert retried == keyed
    assert [v.version_id for v in provider.list_versions("ds")] == [
        keyed.version_id,
        later.version_id,
    ]


def test_messages_survive_a_restart_exactly(make_provider: MakeProvider, tmp_path: Path) -> None:
    message = "line one\n\nLlmops-Dataset: not-a-trailer\n  indented\n"
    info = make_provider().create_version(
        spec("ds", write_tree(tmp_path / "src", FILES), message=message, tags={"a=b": "c: d"})
    )

    (listed,) = make_provider().list_versions("ds")

    assert listed == info
    assert listed.message == message


def test_a_link_in_the_dataset_is_refused_and_nothing_is_committed(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    source = write_tree(tmp_path / "src", FILES)
    (tmp_path / "secret").write_text("server file")
    os.symlink(tmp_path / "secret", source / "leak.txt")

    with pytest.raises(InvalidRequest, match=r"leak\.txt is a link"):
        provider.create_version(spec("ds", source))

    assert provider.list_versions("ds") == []


@pytest.mark.parametrize("dataset_id", ["../escape", ".hidden", "a/b", ""])
def test_a_dataset_id_that_is_no_folder_name_is_refused(
    make_provider: MakeProvider, tmp_path: Path, dataset_id: str
) -> None:
    with pytest.raises(InvalidRequest):
        make_provider().create_version(spec(dataset_id, write_tree(tmp_path / "src", FILES)))

    assert not (tmp_path / "escape").exists()


def test_restore_gives_back_every_byte_and_replaces_what_the_destination_held(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    blob = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB of binary
    files = {**FILES, "weights/part.bin": blob, "empty.txt": b""}
    first = provider.create_version(spec("ds", write_tree(tmp_path / "src", files)))
    provider.create_version(spec("ds", write_tree(tmp_path / "src", {"other.txt": b"o"})))
    destination = write_tree(tmp_path / "dest", {"stale.txt": b"old", "train.jsonl": b"x"})

    restored = provider.restore("ds", first.version_id, destination)

    assert restored == first
    assert read_tree(destination) == files
    copy = destination / "weights" / "part.bin"
    assert copy.stat().st_nlink == 1, "a copy, never a link into DVC's cache"
    copy.write_bytes(b"changed in place")
    provider.restore("ds", first.version_id, tmp_path / "second")
    assert read_tree(tmp_path / "second") == files, "the cache is untouched by the edit"


def test_an_empty_dataset_is_a_version_with_no_files(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    empty = tmp_path / "empty"
    empty.mkdir()

    info = provider.create_version(spec("ds", empty))

    assert (info.file_count, info.size_bytes) == (0, 0)
    provider.restore("ds", info.version_id, tmp_path / "out")
    assert read_tree(tmp_path / "out") == {}


# -- concurrency -----------------------------------------------------------------------------


def run_together(*calls: Callable[[], DatasetVersionInfo]) -> list[DatasetVersionInfo]:
    """The calls at once, one thread each, released by one barrier; their results in
    order (an exception in any fails the test with it)."""
    barrier = threading.Barrier(len(calls))
    results: list[DatasetVersionInfo | BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, DatasetVersionInfo)]


def test_versions_of_two_datasets_are_made_at_once(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    big = {f"part-{i:03d}.jsonl": f'{{"i": {i}}}\n'.encode() * 200 for i in range(200)}
    left = write_tree(tmp_path / "left", big)
    right = write_tree(tmp_path / "right", {**big, "extra.txt": b"right"})

    one, two = run_together(
        lambda: provider.create_version(spec("left", left)),
        lambda: make_provider().create_version(spec("right", right)),
    )

    assert [v.version_id for v in provider.list_versions("left")] == [one.version_id]
    assert [v.version_id for v in provider.list_versions("right")] == [two.version_id]
    assert (one.file_count, two.file_count) == (200, 201)


def test_versions_of_one_dataset_asked_at_once_are_made_one_after_the_other(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    first = write_tree(tmp_path / "first", {"a.txt": b"first"})
    second = write_tree(tmp_path / "second", {"a.txt": b"second"})

    one, two = run_together(
        lambda: provider.create_version(spec("ds", first, message="first")),
        lambda: make_provider().create_version(spec("ds", second, message="second")),
    )

    listed = provider.list_versions("ds")
    assert {v.version_id for v in listed} == {one.version_id, two.version_id}
    older, newer = listed
    assert newer.parent_version_id == older.version_id
    assert older.parent_version_id is None


def test_another_process_writing_the_same_dataset_waits_its_turn(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    """Each process makes three versions of the same dataset at once: six versions in
    one line of parents, none lost (the file lock between processes)."""
    data_dir = tmp_path / "dvc"
    script = (
        "import sys, pathlib\n"
        "from llmops.capabilities.versioning import VersionSpec\n"
        "from llmops.testing.contracts import write_tree\n"
        "from llmops_dvc.provider import DvcVersioner\n"
        "from llmops_dvc.settings import DvcSettings\n"
        f"p = DvcVersioner(DvcSettings(), data_dir=pathlib.Path({str(data_dir)!r}))\n"
        f"src = pathlib.Path({str(tmp_path / 'child')!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "for i in range(3):\n"
        "    write_tree(src, {'a.txt': f'child {i}'.encode()})\n"
        "    p.create_version(VersionSpec(dataset_id='ds', source_path=src))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    provider = make_provider()
    source = tmp_path / "parent"
    child.stdin.write("go\n")
    child.stdin.flush()
    for i in range(3):
        provider.create_version(spec("ds", write_tree(source, {"a.txt": f"parent {i}".encode()})))
    assert child.wait(timeout=120) == 0

    listed = provider.list_versions("ds")
    assert len(listed) == 6
    for older, newer in itertools.pairwise(listed):
        assert newer.parent_version_id == older.version_id
