"""The DVC plugin through the platform's API, on real git + DVC repositories: an upload
is version 1, a changed JSONL file version 2 whose diff names the file and counts its
rows, a restore of version 1 brings its bytes back as version 3, a remote that is away
delays pushes (degraded) and each version is pushed once when it is back, and uploads to
two datasets at once both get their version."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.config import CoreSettings
from llmops.testing.pytest_plugin import started_client
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "remote"


@pytest.fixture
def platform(tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The platform with the DVC plugin (its folder remote under ``tmp_path``), on SQLite,
    called with an admin key."""
    monkeypatch.setenv("LLMOPS_DVC__REMOTE_URL", str(remote))
    settings = CoreSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'llmops.db'}",
        plugins="dvc",
        sync_interval_seconds=0.1,
        health_cache_seconds=0.1,
        circuit_reset_seconds=0.5,
    )
    with started_client(settings) as client:
        yield client


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def dataset(client: TestClient, name: str = "reviews", **fields: Any) -> str:
    created = client.post(f"{API}/catalog/datasets", json={"name": name, **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def upload(client: TestClient, dataset_id: str, name: str, content: bytes) -> dict[str, Any]:
    answer = client.post(
        f"{API}/catalog/datasets/{dataset_id}/files", files={"file": (name, content)}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


ROWS = [{"id": i, "text": f"review {i}"} for i in range(1, 101)]


def test_uploads_make_versions_whose_diff_counts_rows_and_a_restore_brings_v1_back(
    platform: TestClient, tmp_path: Path
) -> None:
    ds = dataset(platform, rowKey="id")
    v1 = upload(platform, ds, "train.jsonl", jsonl(ROWS))["version"]
    edited = [dict(r) for r in ROWS[:-1]] + [{"id": 101, "text": "new"}]
    edited[9]["text"] = "review 10, edited"
    v2 = upload(platform, ds, "train.jsonl", jsonl(edited))["version"]

    diff = platform.get(
        f"{API}/catalog/datasets/{ds}/versions/{v2['id']}/diff", params={"against": v1["id"]}
    ).json()
    restored = platform.post(f"{API}/catalog/datasets/{ds}/versions/{v1['id']}/restore")

    assert (v1["number"], v2["number"], v2["parentId"]) == (1, 2, v1["id"])
    assert v1["provider"] == "dvc"
    assert v1["pushState"] == "pushed"
    [changed] = diff["files"]
    assert (changed["path"], changed["change"]) == ("train.jsonl", "modified")
    rows = changed["rows"]
    assert (rows["added"], rows["removed"], rows["changed"], rows["unchanged"]) == (1, 1, 1, 98)
    assert {(c["kind"], c["key"]) for c in rows["changes"]} == {
        ("changed", 10),
        ("removed", 100),
        ("added", 101),
    }
    assert restored.status_code == 201, restored.text
    v3 = restored.json()
    assert (v3["number"], v3["restoredFromId"], v3["checksum"]) == (3, v1["id"], v1["checksum"])
    stored = tmp_path / "data" / "storage" / "datasets" / ds / "files" / "train.jsonl"
    assert stored.read_bytes() == jsonl(ROWS)


def test_with_the_remote_away_versions_are_made_and_each_is_pushed_once_when_it_is_back(
    platform: TestClient, remote: Path
) -> None:
    remote.write_text("a file where the remote folder should be: DVC cannot write there")
    ds = dataset(platform)

    first = upload(platform, ds, "a.jsonl", jsonl(ROWS[:10]))
    second = upload(platform, ds, "b.jsonl", jsonl(ROWS[10:20]))

    for made in (first, second):
        assert made["degraded"] is True, made
        assert made["version"]["pushState"] == "pending"
    remote.unlink()  # the remote is back: the worker's retries push each version

    def pushed() -> bool:
        items = platform.get(f"{API}/catalog/datasets/{ds}/versions").json()["items"]
        return all(v["pushState"] == "pushed" for v in items)

    wait_for(pushed, timeout=60, what="both versions pushed once the remote is back")
    operations = platform.get(f"{API}/operations", params={"kind": "dataset.push"}).json()
    pushes = [o for o in operations["items"] if o["kind"] == "dataset.push"]
    assert len(pushes) == 2
    assert all(o["status"] == "succeeded" for o in pushes)
    objects = [p for p in remote.rglob("*") if p.is_file()]
    assert len(objects) == 2 + 2  # each version's file and its .dir listing, once


def test_uploads_to_two_datasets_at_once_both_get_their_version(platform: TestClient) -> None:
    first, second = dataset(platform, "one"), dataset(platform, "two")
    answers: dict[str, dict[str, Any]] = {}

    def send(ds: str) -> None:
        answers[ds] = upload(platform, ds, "train.jsonl", jsonl(ROWS))

    threads = [threading.Thread(target=send, args=(ds,)) for ds in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert all(a["version"] is not None for a in answers.values()), [
        a["degradedReason"] for a in answers.values()
    ]
    assert {ds: a["version"]["number"] for ds, a in answers.items()} == {first: 1, second: 1}
    assert all(a["degraded"] is False for a in answers.values())


def test_a_version_links_the_datasets_files_into_the_cache_and_an_upload_keeps_it_intact(
    platform: TestClient, tmp_path: Path
) -> None:
    ds = dataset(platform)
    v1 = upload(platform, ds, "train.jsonl", jsonl(ROWS))["version"]
    stored = tmp_path / "data" / "storage" / "datasets" / ds / "files" / "train.jsonl"
    cache = tmp_path / "data" / "plugins" / "dvc" / "cache"
    first = stored.stat()

    linked = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_ino == first.st_ino]
    upload(platform, ds, "train.jsonl", jsonl(ROWS[:10]))  # replaces the file: a new inode
    restored = platform.post(f"{API}/catalog/datasets/{ds}/versions/{v1['id']}/restore")

    assert len(linked) == 1, "the dataset's file is the cache's object: no copy was written"
    assert first.st_mode & 0o222 == 0, "read-only, as DVC keeps its cache"
    assert linked[0].read_bytes() == jsonl(ROWS), "the upload did not write through the link"
    assert restored.status_code == 201, restored.text
    assert stored.read_bytes() == jsonl(ROWS)
