"""Dataset versions and lineage in the console, with the real DVC plugin (git + DVC
repositories under the platform's data dir, a folder remote): the dataset page lists the
versions an upload made, makes one on demand and restores one after asking; the compare
page shows the file diff and the row diff with its added, removed and changed rows
highlighted; a training job shows the version it pinned and the model it produced; the
lineage graph links each node to its page; a viewer gets none of the controls; and a
remote that is away is shown as degraded until the push goes through."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)
from llmops.testing.models import tiny_causal_lm
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
DATASETS = f"{API}/catalog/datasets"

#: the page's CSS for an added, removed and changed row (styles.css's state colours)
ADDED_BG = "rgb(220, 245, 229)"

ROWS = [{"id": i, "text": f"review {i}", "stars": 1 + i % 5} for i in range(1, 21)]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def edited_rows() -> list[dict[str, Any]]:
    """ROWS with row 5's text changed, row 20 removed and a row 21 added."""
    rows = [dict(r) for r in ROWS[:-1]]
    rows[4]["text"] = "review 5, edited"
    return [*rows, {"id": 21, "text": "a new review", "stars": 5}]


@dataclass(frozen=True)
class DvcPlatform:
    server: ConsoleServer
    remote: Path


@pytest.fixture(scope="module")
def dvc_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DvcPlatform]:
    remote = tmp_path_factory.mktemp("dvc-console") / "remote"
    env = {
        "LLMOPS_PLUGINS": "dvc",
        "LLMOPS_DVC__REMOTE_URL": str(remote),
        "LLMOPS_CIRCUIT_RESET_SECONDS": "0.5",
        "LLMOPS_HEALTH_CACHE_SECONDS": "0.1",
    }
    try:
        with running_platform(env=env) as server:
            yield DvcPlatform(server, remote)
    except ConsoleNotBuilt as exc:
        pytest.fail(str(exc))


@pytest.fixture
def server(dvc_platform: DvcPlatform) -> ConsoleServer:
    return dvc_platform.server


@pytest.fixture
def tab(
    dvc_platform: DvcPlatform, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(dvc_platform.server, browser, request) as console:
        yield console


def _dataset(server: ConsoleServer, name: str, **fields: Any) -> str:
    created = server.api.post(DATASETS, json={"name": name, **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _upload(server: ConsoleServer, dataset_id: str, name: str, content: bytes) -> dict[str, Any]:
    answer = server.api.post(f"{DATASETS}/{dataset_id}/files", files={"file": (name, content)})
    assert answer.status_code == 201, answer.text
    version: dict[str, Any] = answer.json()["version"]
    return version


def _stored(server: ConsoleServer, dataset_id: str, name: str) -> bytes:
    files = server.data_dir / "data" / "storage" / "datasets" / dataset_id / "files"
    return (files / name).read_bytes()


def test_an_upload_makes_a_version_compared_row_by_row_and_a_restore_brings_v1_back(
    tab: Console, server: ConsoleServer, unique: Callable[[str], str], tmp_path: Path
) -> None:
    ds = _dataset(server, unique("reviews"), rowKey="id", format="jsonl")
    _upload(server, ds, "reviews.jsonl", jsonl(ROWS))
    (tmp_path / "reviews.jsonl").write_bytes(jsonl(edited_rows()))
    (tmp_path / "notes.txt").write_text("row 5 reworded\n")

    tab.sign_in("editor")
    page = tab.open(f"/datasets/{ds}", "dataset")
    versions = page.get_by_test_id("dataset-versions")
    expect(versions.get_by_test_id("version-row")).to_have_count(1)

    # an upload through the page makes version 2; the list shows it first
    page.get_by_label("Files", exact=True).set_input_files(
        [str(tmp_path / "reviews.jsonl"), str(tmp_path / "notes.txt")]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    rows = versions.get_by_test_id("version-row")
    expect(rows).to_have_count(3)  # one version per file of the batch
    expect(rows.first).to_have_attribute("data-version", "3")
    latest = rows.first
    expect(latest.locator("td").nth(4)).to_have_text("2")  # its files
    expect(latest).to_contain_text("console-editor")  # the key's name
    expect(latest.get_by_text("pushed")).to_be_visible()
    tab.screenshot("dataset-versions-list")

    # on demand, with a message and tags; with nothing changed the latest one is kept
    page.get_by_label("Message").fill("reviewed by the data team")
    page.get_by_label("Tags").fill("split=train, reviewed")
    page.get_by_role("button", name="Make a version").click()
    expect(page.get_by_text("Nothing changed since version 3")).to_be_visible()
    expect(rows).to_have_count(3)

    # compare v1 with v3: the files, then the rows highlighted by kind
    compare = page.get_by_test_id("compare-versions")
    compare.get_by_label("Compare from version").select_option(label="v1")
    compare.get_by_label("Compare to version").select_option(label="v3")
    compare.get_by_role("button", name="Compare").click()
    tab.wait_ready("dataset-compare")
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare v1 → v3")
    expect(page.get_by_test_id("file-diff-counts")).to_have_text("1 added, 0 removed, 1 modified")
    files = page.get_by_test_id("file-diff")
    expect(files.filter(has_text="notes.txt")).to_contain_text("added")
    expect(files.filter(has_text="reviews.jsonl")).to_contain_text("+1 \u22121 ~1")  # a minus sign
    diff = page.locator('[data-testid="row-diff"][data-path="reviews.jsonl"]')
    expect(diff.get_by_test_id("row-diff-counts")).to_contain_text(
        "rows matched by id: 20 → 20 rows; 1 added, 1 removed, 1 changed, 18 unchanged"
    )
    changes = diff.get_by_test_id("row-change")
    expect(changes).to_have_count(3)
    added = diff.locator('[data-kind="added"]')
    expect(added).to_contain_text("a new review")
    expect(added).to_have_css("background-color", ADDED_BG)
    expect(diff.locator('[data-kind="removed"]')).to_contain_text("review 20")
    changed = diff.locator('[data-kind="changed"]')
    expect(changed).to_contain_text("key 5")
    marked = changed.locator('tr[data-changed="true"]')
    expect(marked).to_have_count(1)  # only the text changed; id and stars did not
    expect(marked).to_contain_text("review 5 → review 5, edited")
    tab.screenshot("dataset-compare")

    # restore v1, after a confirmation: version 4 holds v1's files again
    page.get_by_role("link", name="← Dataset").click()
    tab.wait_ready("dataset")
    v1 = versions.locator('[data-version="1"]')
    v1.get_by_role("button", name="Restore").click()
    confirm = v1.get_by_role("group", name="Put back the files of v1 as a new version?")
    confirm.get_by_role("button", name="Keep").click()
    expect(rows).to_have_count(3)
    v1.get_by_role("button", name="Restore").click()
    confirm.get_by_role("button", name="Restore").click()
    expect(page.get_by_text("Version 1 restored as version 4")).to_be_visible()
    expect(rows).to_have_count(4)
    expect(rows.first.get_by_test_id("restored-from")).to_have_text("restored from v1")
    expect(page.get_by_role("heading", name="Files (1)")).to_be_visible()
    assert _stored(server, ds, "reviews.jsonl") == jsonl(ROWS)
    listed = server.api.get(f"{DATASETS}/{ds}/versions").json()["items"]
    by_number = {v["number"]: v for v in listed}
    assert by_number[4]["checksum"] == by_number[1]["checksum"]
    tab.screenshot("dataset-restored")


def test_a_job_shows_the_version_it_trained_on_and_its_model_and_the_graph_links_them(
    tab: Console, server: ConsoleServer, unique: Callable[[str], str], tmp_path: Path
) -> None:
    ds = _dataset(server, unique("corpus"))
    version = _upload(server, ds, "train.jsonl", jsonl(ROWS))
    model_folder = tiny_causal_lm(tmp_path / "tiny")
    save = (
        "import os, shutil, sys; "
        "shutil.copytree(sys.argv[1], os.path.join(os.environ['LLMOPS_OUTPUT_DIR'], 'model'))"
    )
    created = server.api.post(
        f"{API}/training/jobs",
        json={
            "name": unique("tune"),
            "datasetId": ds,
            "command": [sys.executable, "-c", save, str(model_folder)],
        },
    )
    assert created.status_code in (201, 202), created.text
    job = created.json()
    assert job["datasetVersionId"] == version["id"]
    wait_for(
        lambda: server.api.get(f"{API}/training/jobs/{job['id']}").json()["status"] == "succeeded",
        timeout=60,
        what="the training job to succeed",
    )
    registered = server.api.post(f"{API}/training/jobs/{job['id']}/model", json={})
    assert registered.status_code in (200, 201), registered.text
    model = registered.json()

    tab.sign_in("viewer")
    page = tab.open(f"/training/{job['id']}", "training-job")
    expect(page.get_by_test_id("job-output-models")).to_have_text(f"{model['name']} (version 1)")
    expect(page.get_by_test_id("job-dataset-version")).to_have_text("version 1")

    page.get_by_test_id("job-lineage").click()
    tab.wait_ready("lineage")
    graph = page.get_by_test_id("lineage-graph")
    nodes = graph.get_by_test_id("lineage-node")
    kinds = {(node.get_attribute("data-node") or "").split(":", 1)[0] for node in nodes.all()}
    assert {"dataset", "dataset-version", "training-job", "model"} <= kinds, kinds
    expect(graph.locator(f'[data-node="training-job:{job["id"]}"]')).to_have_class(
        re.compile(r"\broot\b")
    )
    relations = {edge.text_content() for edge in graph.get_by_test_id("lineage-edge").all()}
    assert len(relations) >= 3, relations
    tab.screenshot("lineage-of-a-job")

    graph.locator(f'[data-node="model:{model["id"]}"]').click()
    tab.wait_ready("model")
    expect(page.get_by_role("heading", level=1)).to_have_text(model["name"])

    # from the dataset page: its lineage, and from there the version's own graph
    page = tab.open(f"/datasets/{ds}", "dataset")
    page.get_by_test_id("dataset-lineage").click()
    tab.wait_ready("lineage")
    graph.locator(f'[data-node="dataset-version:{version["id"]}"]').click()
    tab.wait_ready("lineage")
    expect(page).to_have_url(f"{server.url}/lineage?node=dataset-version%3A{version['id']}")
    expect(graph.locator(f'[data-node="training-job:{job["id"]}"]')).to_be_visible()
    graph.locator(f'[data-node="dataset:{ds}"]').click()
    tab.wait_ready("dataset")


def test_a_viewer_sees_the_versions_without_making_or_restoring_one(
    tab: Console, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    ds = _dataset(server, unique("viewed"))
    _upload(server, ds, "a.jsonl", jsonl(ROWS[:5]))
    _upload(server, ds, "a.jsonl", jsonl(ROWS[:6]))

    tab.sign_in("viewer")
    page = tab.open(f"/datasets/{ds}", "dataset")
    versions = page.get_by_test_id("dataset-versions")
    expect(versions.get_by_test_id("version-row")).to_have_count(2)
    expect(versions.get_by_role("link", name="Lineage")).to_have_count(2)
    expect(versions.get_by_test_id("compare-versions")).to_be_visible()
    expect(page.get_by_test_id("make-version")).to_have_count(0)
    expect(versions.get_by_role("button", name="Restore")).to_have_count(0)


def test_with_the_remote_away_an_upload_says_degraded_and_the_version_is_pushed_later(
    tab: Console, dvc_platform: DvcPlatform, unique: Callable[[str], str], tmp_path: Path
) -> None:
    server, remote = dvc_platform.server, dvc_platform.remote
    ds = _dataset(server, unique("offline"))
    (tmp_path / "rows.jsonl").write_bytes(jsonl(ROWS))
    tab.sign_in("editor")
    page = tab.open(f"/datasets/{ds}", "dataset")

    # a file where the remote folder should be: DVC cannot write there
    moved = remote.with_name("remote-away")
    if remote.exists():
        remote.rename(moved)
    remote.write_text("not a folder")
    try:
        page.get_by_label("Files", exact=True).set_input_files(str(tmp_path / "rows.jsonl"))
        page.get_by_role("button", name="Upload", exact=True).click()
        expect(page.get_by_test_id("upload-degraded")).to_be_visible()
        row = page.get_by_test_id("version-row").first
        expect(row.get_by_text("pending")).to_be_visible()
        tab.screenshot("dataset-version-degraded")
    finally:
        remote.unlink()
        if moved.exists():
            moved.rename(remote)

    def pushed() -> bool:
        items = server.api.get(f"{DATASETS}/{ds}/versions").json()["items"]
        return bool(items) and all(v["pushState"] == "pushed" for v in items)

    wait_for(pushed, timeout=60, what="the version pushed once the remote is back")
    page = tab.open(f"/datasets/{ds}", "dataset")
    expect(page.get_by_test_id("version-row").first.get_by_text("pushed")).to_be_visible()


def test_a_pipeline_shows_the_versions_it_reads_and_writes_and_its_lineage_graph(
    tab: Console, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    raw_name = unique("raw")
    raw = _dataset(server, raw_name)
    read = _upload(server, raw, "train.jsonl", jsonl(ROWS))
    clean = _dataset(server, unique("clean"))
    created = server.api.post(
        f"{API}/workflows/pipelines",
        json={
            "name": unique("clean"),
            "stages": [{"name": "clean", "command": ["true"]}],
            "inputs": [{"datasetId": raw}],
        },
    )
    assert created.status_code == 201, created.text
    pipeline = created.json()
    # what its stage does with LLMOPS_PIPELINE_ID: the upload names the pipeline
    wrote = server.api.post(
        f"{DATASETS}/{clean}/files",
        params={"pipelineId": pipeline["id"]},
        files={"file": ("clean.jsonl", jsonl(ROWS[:5]))},
    )
    assert wrote.status_code == 201, wrote.text
    written = wrote.json()["version"]

    tab.sign_in("viewer")
    page = tab.open(f"/pipelines/{pipeline['id']}", "pipeline")
    expect(page.get_by_test_id("pipeline-inputs")).to_have_text(f"{raw_name} · version 1")
    page.get_by_test_id("pipeline-lineage").click()
    tab.wait_ready("lineage")
    graph = page.get_by_test_id("lineage-graph")
    expect(graph.locator(f'[data-node="dataset-version:{read["id"]}"]')).to_be_visible()
    expect(graph.locator(f'[data-node="dataset-version:{written["id"]}"]')).to_be_visible()
    relations = [edge.text_content() for edge in graph.get_by_test_id("lineage-edge").all()]
    assert {"read-by", "wrote"} <= set(relations), relations
    tab.screenshot("lineage-of-a-pipeline")

    page = tab.open(f"/datasets/{clean}", "dataset")
    page.get_by_test_id("written-by").click()
    tab.wait_ready("pipeline")
    expect(page).to_have_url(f"{server.url}/pipelines/{pipeline['id']}")


def test_the_pipeline_form_pins_the_datasets_a_pipeline_reads(
    tab: Console, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    name = unique("reads")
    raw = _dataset(server, name)
    _upload(server, raw, "train.jsonl", jsonl(ROWS))
    latest = _upload(server, raw, "train.jsonl", jsonl(ROWS[:3]))

    tab.sign_in("editor")
    page = tab.open("/pipelines/new", "pipeline-create")
    page.get_by_label("Pipeline name").fill(unique("reads"))
    stage = page.get_by_role("group", name="Stage 1", exact=True)
    stage.get_by_role("textbox", name="Name", exact=True).fill("a")
    stage.get_by_label("Command").fill("true")
    page.get_by_label("Reads datasets").select_option(label=name)
    page.get_by_role("button", name="Create pipeline").click()

    tab.wait_ready("pipeline")
    expect(page.get_by_test_id("pipeline-inputs")).to_have_text(f"{name} · version 2")
    pipeline_id = page.url.rsplit("/", 1)[-1]
    shown = server.api.get(f"{API}/workflows/pipelines/{pipeline_id}").json()
    assert [i["versionId"] for i in shown["inputs"]] == [latest["id"]]
