"""Dataset versions through the API, against an in-memory versioning plugin ("memvc") that
keeps a remote the tests can take away: every upload makes a version, a version on demand
carries its message, tags and author, a diff names the files and counts the rows of a
JSONL file, a restore puts the old files back as a new version, a push the remote cannot
take waits in the outbox and goes once when it is back, and the lineage graph follows a
training job from the version it pinned."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services import catalog
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

PLUGIN = """
import hashlib
import itertools
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.versioning import (
    ChangeKind, DatasetVersionInfo, FileChange, Lineage, LineageEdge, LineageNode,
    PushResult, VersionDiff,
)
from llmops.errors import IntegrationUnavailable, NotFound
from llmops.plugins.info import PluginInfo

#: dataset id -> [(version id, {path: bytes}, message)], oldest first
VERSIONS = {}
#: version ids the remote holds, and how many times each was uploaded
REMOTE = {}
STATE = {"remote_down": False, "delay": 0.0}
COUNTER = itertools.count(1)
LOCK = threading.Lock()


def reset():
    VERSIONS.clear()
    REMOTE.clear()
    STATE.update(remote_down=False, delay=0.0)


def _read(folder):
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _info(dataset_id, index):
    version_id, files, message = VERSIONS[dataset_id][index]
    digest = hashlib.md5(usedforsecurity=False)
    for path in sorted(files):
        digest.update(path.encode() + b"\\0" + files[path])
    return DatasetVersionInfo(
        version_id=version_id, dataset_id=dataset_id, created_at=datetime.now(timezone.utc),
        message=message, file_count=len(files), size_bytes=sum(map(len, files.values())),
        checksum=digest.hexdigest(),
        parent_version_id=VERSIONS[dataset_id][index - 1][0] if index else None,
    )


def _find(dataset_id, version_id):
    for index, (vid, files, _) in enumerate(VERSIONS.get(dataset_id, [])):
        if vid == version_id:
            return index, files
    raise NotFound(f"no version {version_id} of {dataset_id}")


class MemVersioner:
    def create_version(self, spec):
        time.sleep(STATE["delay"])
        files = _read(spec.source_path)
        with LOCK:
            history = VERSIONS.setdefault(spec.dataset_id, [])
            if history and history[-1][1] == files:
                return _info(spec.dataset_id, len(history) - 1)
            history.append((f"c{next(COUNTER)}", files, spec.message))
            return _info(spec.dataset_id, len(history) - 1)

    def list_versions(self, dataset_id):
        return [_info(dataset_id, i) for i in range(len(VERSIONS.get(dataset_id, [])))][::-1]

    def diff(self, dataset_id, from_version_id, to_version_id):
        _, old = _find(dataset_id, from_version_id)
        _, new = _find(dataset_id, to_version_id)
        changes = [
            FileChange(path=p, change=ChangeKind.ADDED, size_after=len(new[p]))
            for p in new if p not in old
        ] + [
            FileChange(path=p, change=ChangeKind.REMOVED, size_before=len(old[p]))
            for p in old if p not in new
        ] + [
            FileChange(path=p, change=ChangeKind.MODIFIED, size_before=len(old[p]),
                       size_after=len(new[p]))
            for p in new if p in old and old[p] != new[p]
        ]
        return VersionDiff(
            from_version_id=from_version_id, to_version_id=to_version_id, changes=changes
        )

    def restore(self, dataset_id, version_id, destination):
        index, files = _find(dataset_id, version_id)
        destination = Path(destination)
        shutil.rmtree(destination, ignore_errors=True)
        for path, content in files.items():
            target = destination / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        destination.mkdir(parents=True, exist_ok=True)
        return _info(dataset_id, index)

    def lineage(self, dataset_id, version_id):
        index, _ = _find(dataset_id, version_id)
        node = LineageNode(kind="dataset-version", id=version_id, label=version_id)
        return Lineage(nodes=[node], edges=[])

    def push_version(self, dataset_id, version_id):
        _find(dataset_id, version_id)
        if STATE["remote_down"]:
            raise IntegrationUnavailable("the remote mem://remote cannot be reached")
        already = version_id in REMOTE
        if not already:
            REMOTE[version_id] = REMOTE.get(version_id, 0) + 1
        return PushResult(
            dataset_id=dataset_id, version_id=version_id, remote="mem://remote",
            uploaded_files=0 if already else 1, already_pushed=already,
        )

    def health(self):
        return Health(status=HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="memvc", version="1.0", display_name="In-memory versioning",
        capabilities=frozenset({Capability.VERSIONING}),
    )


@hookimpl
def llmops_versioning(settings, context):
    return MemVersioner()
"""

Platform = tuple[TestClient, ModuleType]


@pytest.fixture
def memvc(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[Platform]:
    """A started platform whose versioning plugin is memvc (and the local executor),
    called with an admin key."""
    module = install("memvc", PLUGIN)
    with TestClient(create_app(make_settings(plugins="memvc"))) as client:
        authenticate(client)
        plugin = sys.modules[module]
        plugin.reset()
        yield client, plugin


def make_dataset(client: TestClient, api: str, **fields: Any) -> str:
    created = client.post(f"{api}/catalog/datasets", json={"name": "reviews", **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def upload(client: TestClient, api: str, dataset: str, name: str, content: bytes) -> Any:
    answer = client.post(f"{api}/catalog/datasets/{dataset}/files", files={"file": (name, content)})
    assert answer.status_code == 201, answer.text
    return answer.json()


def jsonl(*rows: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


ROWS = [{"id": i, "text": f"review {i}"} for i in range(1, 6)]


def test_every_upload_makes_a_version_numbered_in_order_with_its_parent_and_author(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)

    first = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))
    second = upload(client, api, dataset, "eval.jsonl", jsonl(ROWS[0]))

    assert first["version"]["number"] == 1
    assert first["version"]["fileCount"] == 1
    assert first["version"]["author"] == "test-admin"
    assert first["version"]["parentId"] is None
    assert first["version"]["message"] == "Upload train.jsonl"
    assert second["version"]["number"] == 2
    assert second["version"]["parentId"] == first["version"]["id"]
    assert second["version"]["fileCount"] == 2
    listed = client.get(f"{api}/catalog/datasets/{dataset}/versions").json()["items"]
    assert [v["number"] for v in listed] == [2, 1]
    assert listed[0]["checksum"]
    assert listed[0]["sizeBytes"] > 0


def test_a_version_on_demand_keeps_its_message_and_tags_and_unchanged_files_give_it_back(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)
    uploaded = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))["version"]

    again = client.post(
        f"{api}/catalog/datasets/{dataset}/versions",
        json={"message": "release", "tags": {"stage": "gold"}},
    )

    assert again.status_code == 200, again.text  # nothing changed since the upload's version
    assert again.json()["id"] == uploaded["id"]
    # a file the dataset's folder got another way than an upload (a pipeline's output)
    storage = client.app.state.platform.settings.storage_dir  # type: ignore[attr-defined]
    (catalog.dataset_dir(storage, dataset) / "labels.csv").write_bytes(b"id,label\n1,good\n")
    made = client.post(
        f"{api}/catalog/datasets/{dataset}/versions",
        json={"message": "release", "tags": {"stage": "gold"}},
    )
    assert made.status_code == 201, made.text
    version = made.json()
    assert (version["number"], version["message"], version["tags"]) == (
        2,
        "release",
        {"stage": "gold"},
    )
    assert version["author"] == "test-admin"
    assert version["fileCount"] == 2
    shown = client.get(f"{api}/catalog/datasets/{dataset}/versions/v2").json()
    assert shown["id"] == version["id"]


def test_a_version_request_with_bad_tags_is_refused_and_makes_nothing(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)

    refused = client.post(
        f"{api}/catalog/datasets/{dataset}/versions", json={"tags": {"bad name!": "x"}}
    )

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.get(f"{api}/catalog/datasets/{dataset}/versions").json()["items"] == []


def test_the_diff_names_the_files_and_counts_the_rows_of_a_changed_jsonl_file(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api, rowKey="id")
    v1 = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))["version"]
    changed = [dict(r) for r in ROWS[1:]] + [{"id": 6, "text": "review 6"}]
    changed[0]["text"] = "review 2, edited"
    upload(client, api, dataset, "train.jsonl", jsonl(*changed))
    v3 = upload(client, api, dataset, "notes.txt", b"hello")["version"]

    diff = client.get(
        f"{api}/catalog/datasets/{dataset}/versions/{v3['id']}/diff", params={"against": v1["id"]}
    )

    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["filesAdded"], body["filesModified"], body["filesRemoved"]) == (1, 1, 0)
    files = {f["path"]: f for f in body["files"]}
    assert files["notes.txt"]["change"] == "added"
    assert files["notes.txt"]["rows"] is None
    rows = files["train.jsonl"]["rows"]
    assert rows["key"] == "id"
    assert (rows["added"], rows["removed"], rows["changed"], rows["unchanged"]) == (1, 1, 1, 3)
    kinds = {(c["kind"], c["key"]) for c in rows["changes"]}
    assert kinds == {("added", 6), ("removed", 1), ("changed", 2)}
    [edit] = [c for c in rows["changes"] if c["kind"] == "changed"]
    assert edit["before"]["text"] == "review 2"
    assert edit["after"]["text"] == "review 2, edited"
    by_content = client.get(
        f"{api}/catalog/datasets/{dataset}/versions/{v3['id']}/diff",
        params={"against": "1", "key": "text", "path": "train.jsonl", "limit": 1},
    ).json()
    [only] = by_content["files"]
    assert only["rows"]["key"] == "text"
    assert len(only["rows"]["changes"]) == 1
    assert only["rows"]["hasMore"] is True


def test_restoring_a_version_puts_its_files_back_as_a_new_version(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)
    v1 = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))["version"]
    upload(client, api, dataset, "train.jsonl", jsonl(ROWS[0]))
    upload(client, api, dataset, "extra.jsonl", jsonl(ROWS[1]))

    restored = client.post(f"{api}/catalog/datasets/{dataset}/versions/{v1['id']}/restore")

    assert restored.status_code == 201, restored.text
    v4 = restored.json()
    assert v4["number"] == 4
    assert v4["restoredFromId"] == v1["id"]
    assert v4["checksum"] == v1["checksum"]
    files = client.get(f"{api}/catalog/datasets/{dataset}").json()["files"]
    assert [(f["path"], f["sizeBytes"]) for f in files] == [("train.jsonl", len(jsonl(*ROWS)))]
    numbers = [
        v["number"]
        for v in client.get(f"{api}/catalog/datasets/{dataset}/versions").json()["items"]
    ]
    assert numbers == [4, 3, 2, 1]  # history kept


def test_with_the_remote_away_a_version_is_made_and_its_push_goes_once_when_it_is_back(
    memvc: Platform, api: str
) -> None:
    client, plugin = memvc
    dataset = make_dataset(client, api)
    plugin.STATE["remote_down"] = True

    made = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))

    version = made["version"]
    assert made["degraded"] is True
    assert "versioned locally" in made["degradedReason"]
    assert version["pushState"] == "pending"
    assert plugin.REMOTE == {}
    plugin.STATE["remote_down"] = False

    def pushed() -> bool:
        shown = client.get(f"{api}/catalog/datasets/{dataset}/versions/{version['id']}")
        return bool(shown.json()["pushState"] == "pushed")

    wait_for(pushed, timeout=30, what="the push once the remote is back")
    assert plugin.REMOTE == {version["externalId"]: 1}


def test_a_version_pushed_at_once_says_so(memvc: Platform, api: str) -> None:
    client, plugin = memvc
    dataset = make_dataset(client, api)

    made = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))

    assert made["degraded"] is False, made["degradedReason"]
    assert made["version"]["pushState"] == "pushed"
    assert plugin.REMOTE == {made["version"]["externalId"]: 1}


def test_a_training_job_pins_the_datasets_latest_version_and_the_lineage_shows_it(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)
    version = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))["version"]

    job = client.post(
        f"{api}/training/jobs",
        json={"name": "tune", "datasetId": dataset, "command": ["true"], "track": False},
    )

    assert job.status_code in (201, 202), job.text
    assert job.json()["datasetVersionId"] == version["id"]
    graph = client.get(f"{api}/lineage", params={"node": f"dataset-version:{version['id']}"})
    assert graph.status_code == 200, graph.text
    edges = {(e["source"], e["target"], e["relation"]) for e in graph.json()["edges"]}
    assert (
        f"dataset-version:{version['id']}",
        f"training-job:{job.json()['id']}",
        "trained",
    ) in edges
    assert (f"dataset-version:{version['id']}", f"dataset:{dataset}", "version-of") in edges
    assert client.get(f"{api}/lineage", params={"node": "nothing"}).status_code == 422
    assert client.get(f"{api}/lineage", params={"node": "model:none"}).status_code == 404


def test_without_a_versioning_plugin_uploads_make_no_version_and_asking_for_one_is_409(
    make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str], api: str
) -> None:
    with TestClient(create_app(make_settings(plugins="none"))) as client:
        authenticate(client)
        dataset = make_dataset(client, api)

        uploaded = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))
        asked = client.post(f"{api}/catalog/datasets/{dataset}/versions", json={})

    assert uploaded["version"] is None
    assert uploaded["degraded"] is False
    assert asked.status_code == 409, asked.text


def _pipeline_done(client: TestClient, api: str, pipeline_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = wait_for(done, what=f"pipeline {pipeline_id} to finish")
    return result


def test_a_pipeline_pins_the_versions_it_reads_and_the_versions_its_stages_write(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    raw = make_dataset(client, api)
    clean = make_dataset(client, api, name="clean")
    v1 = upload(client, api, raw, "train.jsonl", jsonl(*ROWS))["version"]
    v2 = upload(client, api, raw, "train.jsonl", jsonl(*ROWS[:3]))["version"]

    created = client.post(
        f"{api}/workflows/pipelines",
        json={
            "name": "clean-reviews",
            "stages": [{"name": "clean", "command": ["sh", "-c", "echo run $LLMOPS_PIPELINE_ID"]}],
            "inputs": [{"datasetId": raw}, {"datasetId": raw, "version": "1"}],
        },
    )
    assert created.status_code == 201, created.text
    pipeline = created.json()
    # what the stage would do with its LLMOPS_PIPELINE_ID: upload, and make a version
    wrote = client.post(
        f"{api}/catalog/datasets/{clean}/files",
        params={"pipelineId": pipeline["id"]},
        files={"file": ("clean.jsonl", jsonl(*ROWS[:2]))},
    )
    tagged = client.post(
        f"{api}/catalog/datasets/{clean}/versions",
        json={"message": "checked", "pipelineId": pipeline["id"]},
    )
    finished = _pipeline_done(client, api, pipeline["id"])
    logs = client.get(f"{api}/workflows/pipelines/{pipeline['id']}/logs?stage=clean").json()
    graph = client.get(f"{api}/lineage", params={"node": f"pipeline:{pipeline['id']}"}).json()

    assert [(i["datasetId"], i["versionId"], i["number"]) for i in pipeline["inputs"]] == [
        (raw, v2["id"], 2),  # the latest when it was submitted
        (raw, v1["id"], 1),
    ]
    assert finished["inputs"] == pipeline["inputs"]
    assert f"run {pipeline['id']}" in logs["items"][0]["text"]
    assert wrote.status_code == 201, wrote.text
    assert wrote.json()["version"]["pipelineId"] == pipeline["id"]
    assert tagged.status_code == 200, tagged.text  # nothing changed: the upload's version
    edges = {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}
    node = f"pipeline:{pipeline['id']}"
    assert {
        (f"dataset-version:{v1['id']}", node, "read-by"),
        (f"dataset-version:{v2['id']}", node, "read-by"),
        (node, f"dataset-version:{wrote.json()['version']['id']}", "wrote"),
    } <= edges
    from_version = client.get(f"{api}/lineage", params={"node": f"dataset-version:{v1['id']}"})
    assert (f"dataset-version:{v1['id']}", node, "read-by") in {
        (e["source"], e["target"], e["relation"]) for e in from_version.json()["edges"]
    }


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ([{"datasetId": "nope"}], "inputs[0]: no dataset with id 'nope'"),
        ([{"datasetId": "{raw}", "version": "7"}], "has no version '7'"),
        ([{"datasetId": "{empty}"}], "has no version yet"),
    ],
)
def test_a_pipeline_whose_inputs_name_no_version_is_refused_and_nothing_is_submitted(
    memvc: Platform, api: str, inputs: list[dict[str, str]], says: str
) -> None:
    client, _ = memvc
    raw = make_dataset(client, api)
    empty = make_dataset(client, api, name="empty")
    upload(client, api, raw, "train.jsonl", jsonl(*ROWS))
    body = json.loads(json.dumps(inputs).replace("{raw}", raw).replace("{empty}", empty))

    refused = client.post(
        f"{api}/workflows/pipelines",
        json={"name": "reads", "stages": [{"name": "a", "command": ["true"]}], "inputs": body},
    )

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert says in refused.json()["detail"]
    assert client.get(f"{api}/workflows/pipelines").json()["items"] == []


def test_a_version_naming_a_pipeline_that_does_not_exist_is_refused_and_stores_nothing(
    memvc: Platform, api: str
) -> None:
    client, _ = memvc
    dataset = make_dataset(client, api)

    uploaded = client.post(
        f"{api}/catalog/datasets/{dataset}/files",
        params={"pipelineId": "nope"},
        files={"file": ("train.jsonl", jsonl(*ROWS))},
    )
    asked = client.post(f"{api}/catalog/datasets/{dataset}/versions", json={"pipelineId": "nope"})

    assert (uploaded.status_code, asked.status_code) == (422, 422), (uploaded.text, asked.text)
    assert "no pipeline nope" in uploaded.json()["detail"]
    shown = client.get(f"{api}/catalog/datasets/{dataset}").json()
    assert shown["files"] == []
    assert client.get(f"{api}/catalog/datasets/{dataset}/versions").json()["items"] == []


def test_a_version_that_takes_longer_than_a_tool_call_may_is_still_made(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    """Versioning a large dataset takes as long as its bytes need: its calls have the long
    work's deadline, not provider_timeout_seconds."""
    module = install("memvc", PLUGIN)
    settings = make_settings(plugins="memvc", provider_timeout_seconds=0.2)
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        plugin = sys.modules[module]
        plugin.reset()
        plugin.STATE["delay"] = 0.5
        dataset = make_dataset(client, api)

        uploaded = upload(client, api, dataset, "train.jsonl", jsonl(*ROWS))

    assert uploaded["degraded"] is False, uploaded
    assert uploaded["version"]["number"] == 1
