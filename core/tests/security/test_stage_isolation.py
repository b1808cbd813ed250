"""Stages of the local executor are code an editor submitted: they run in a sandbox that
hides the platform's data dir, database and key file, with an environment built from what
they declared (never the server's), and their output is scrubbed of every secret the
platform knows before it is stored and again before it is served."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.builtin import sandbox
from llmops.config import CoreSettings
from llmops.redaction import MASK
from llmops.testing.waiting import wait_for


def run_pipeline(client: TestClient, api: str, *stages: dict[str, Any]) -> Any:
    created = client.post(f"{api}/workflows/pipelines", json={"name": "probe", "stages": stages})
    assert created.status_code in (201, 202), created.text
    pipeline_id = created.json()["id"]

    def ended() -> Any:
        body = client.get(f"{api}/workflows/pipelines/{pipeline_id}").json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(ended, timeout=30)


def stage_log(client: TestClient, api: str, pipeline_id: str, stage: str) -> str:
    logs = client.get(f"{api}/workflows/pipelines/{pipeline_id}/logs", params={"stage": stage})
    assert logs.status_code == 200, logs.text
    [entry] = logs.json()["items"]
    return str(entry["text"])


def sh(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **fields}


def test_a_stage_cannot_read_the_key_file_the_database_or_the_data_dir(
    client: TestClient, api: str, make_settings: Callable[..., CoreSettings]
) -> None:
    settings = make_settings()
    data_dir = settings.data_dir.resolve()
    key_file = data_dir / "secret.key"
    # a secret setting makes the platform write its key file
    client.app.state.platform.runtime.secrets.encrypt("x")  # type: ignore[attr-defined]
    assert key_file.is_file()
    database = settings.sqlite_path()

    ended = run_pipeline(
        client,
        api,
        sh("key", f"cat {key_file}"),
        sh("listing", f"ls -A {data_dir}"),
        sh("database", f"cat {database or data_dir / 'llmops.db'} | wc -c"),
        sh("proc", "ls /proc | grep -c '^[0-9]'"),
    )

    assert ended["status"] == "failed"
    states = {s["name"]: s["state"] for s in ended["stages"]}
    assert states["key"] == "failed"  # no such file: the data dir is an empty folder
    key = key_file.read_text().strip()
    for stage in ("key", "listing", "database", "proc"):
        assert key not in stage_log(client, api, ended["id"], stage)
    # only the way to the stage's own work dir is there (plugins/local/runs/<id>/work)
    assert stage_log(client, api, ended["id"], "listing").splitlines()[1:] == ["plugins"]
    assert stage_log(client, api, ended["id"], "database").splitlines()[-1].strip() == "0"
    # a PID namespace of its own: the server's processes are not there to read through
    assert int(stage_log(client, api, ended["id"], "proc").splitlines()[-1]) < 10


def test_the_key_file_and_the_database_are_readable_by_their_owner_only(
    client: TestClient, make_settings: Callable[..., CoreSettings]
) -> None:
    settings = make_settings()
    client.app.state.platform.runtime.secrets.encrypt("x")  # type: ignore[attr-defined]

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(settings.data_dir) == 0o700
    assert mode(settings.data_dir / "secret.key") == 0o600
    database = settings.sqlite_path()
    if database is not None:  # on PostgreSQL the server's own files are PostgreSQL's
        assert mode(database) == 0o600
        for journal in (database.with_name(database.name + s) for s in ("-wal", "-shm")):
            if journal.exists():
                assert mode(journal) == 0o600


def test_a_stage_gets_what_it_declared_and_the_allow_list_never_the_servers_environment(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVER_ONLY_SECRET", "canary-server-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-aws")
    monkeypatch.setenv("HF_HOME", "/srv/hf")
    monkeypatch.setenv("LLMOPS_LOCAL__INHERIT_ENV", '["HF_*"]')
    with TestClient(create_app(make_settings())) as client:
        authenticate(client)
        ended = run_pipeline(client, api, sh("env", "env | sort", env={"DECLARED": "yes"}))
        log = stage_log(client, api, ended["id"], "env")

    assert ended["status"] == "succeeded", ended
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert env["DECLARED"] == "yes"
    assert env["PATH"] == os.environ["PATH"]
    assert env["HF_HOME"] == "/srv/hf"  # the operator's inherit_env
    assert "canary-server-environment" not in log
    assert "canary-aws" not in log
    assert env["LLMOPS_PIPELINE_ID"] == ended["id"]  # the platform's, for pipelineId
    given = {"LLMOPS_EXECUTOR_RUN_ID", "LLMOPS_PIPELINE_ID"}
    assert not [name for name in env if name.startswith("LLMOPS_") and name not in given]


def test_a_jobs_token_is_scrubbed_from_its_log_on_disk_and_in_the_answer(
    client: TestClient, api: str, make_settings: Callable[..., CoreSettings]
) -> None:
    job = client.post(
        f"{api}/training/jobs",
        json={
            "name": "leaky",
            "command": [
                "sh",
                "-c",
                'echo "token=$LLMOPS_JOB_TOKEN"; echo "$LLMOPS_JOB_TOKEN" | rev',
            ],
        },
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_for(
        lambda: client.get(f"{api}/training/jobs/{job_id}").json()["status"] == "succeeded",
        timeout=30,
    )

    text = client.get(f"{api}/training/jobs/{job_id}/logs").json()["items"][0]["text"]
    assert f"token={MASK.decode()}" in text
    on_disk = b"".join(
        p.read_bytes() for p in make_settings().data_dir.rglob("*.log") if p.is_file()
    )
    assert b"token=" + MASK in on_disk
    assert b"token=llmops_" not in on_disk


def test_an_integration_secret_a_stage_prints_is_scrubbed_before_the_log_is_served(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stage cannot know the secret; this one prints it because its author typed it:
    the platform still never serves it."""
    canary = "canary-integration-token-5f1c"
    monkeypatch.setenv("LLMOPS_MLFLOW__TOKEN", canary)
    with TestClient(create_app(make_settings(plugins="mlflow"))) as client:
        authenticate(client)
        ended = run_pipeline(client, api, sh("typed", f"echo 'the token is {canary}'"))
        log = stage_log(client, api, ended["id"], "typed")

    assert "the token is " + MASK.decode() in log
    assert canary not in log


def test_stages_that_cannot_be_isolated_are_refused_as_root_with_a_reason(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "running_as_root", lambda: True)
    monkeypatch.setenv("LLMOPS_LOCAL__ISOLATION", "none")
    with TestClient(create_app(make_settings())) as client:
        authenticate(client)
        refused = client.post(
            f"{api}/workflows/pipelines", json={"name": "p", "stages": [sh("a", "true")]}
        )
        health = client.post(f"{api}/integrations/local/test").json()

    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "refusing to run stages as root without a sandbox" in refused.json()["detail"]
    assert "apt-get install bubblewrap" in refused.json()["detail"]
    assert health["ok"] is False
    assert "refusing to run stages as root" in health["results"][0]["detail"]


def test_isolation_sandbox_refuses_stages_where_bubblewrap_is_missing(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "find_bubblewrap", lambda: None)
    monkeypatch.setenv("LLMOPS_LOCAL__ISOLATION", "sandbox")
    with TestClient(create_app(make_settings())) as client:
        authenticate(client)
        refused = client.post(
            f"{api}/workflows/pipelines", json={"name": "p", "stages": [sh("a", "true")]}
        )
        listed = client.get(f"{api}/workflows/pipelines").json()["items"]

    assert refused.status_code == 409
    assert "bubblewrap (bwrap) is not installed" in refused.json()["detail"]
    assert [p["status"] for p in listed] == ["failed"]  # recorded, never run


def test_a_training_job_reads_its_dataset_and_writes_its_output_dir_inside_the_sandbox(
    client: TestClient, api: str, make_settings: Callable[..., CoreSettings]
) -> None:
    dataset = client.post(f"{api}/catalog/datasets", json={"name": "rows"}).json()
    upload = client.post(
        f"{api}/catalog/datasets/{dataset['id']}/files",
        files={"file": ("train.jsonl", b'{"text": "hello"}\n', "application/json")},
    )
    assert upload.status_code in (200, 201), upload.text
    code = (
        "import os, pathlib; "
        "root = pathlib.Path(os.environ['LLMOPS_DATASET_PATH']); "
        "rows = sorted(p.name for p in root.rglob('*')); "
        "pathlib.Path(os.environ['LLMOPS_OUTPUT_DIR'], 'seen.txt').write_text(','.join(rows))"
    )
    job = client.post(
        f"{api}/training/jobs",
        json={"name": "reads", "datasetId": dataset["id"], "command": [sys.executable, "-c", code]},
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]

    def ended() -> Any:
        body = client.get(f"{api}/training/jobs/{job_id}").json()
        return body if body["status"] in ("succeeded", "failed") else None

    body = wait_for(ended, timeout=30)

    assert body["status"] == "succeeded", client.get(f"{api}/training/jobs/{job_id}/logs").text
    output = make_settings().storage_dir / "training-jobs" / job_id / "output"
    assert "train.jsonl" in (output / "seen.txt").read_text().split(",")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("isolation", "none"),
        ("inherit_env", ["*"]),
        ("writable_paths", ["/"]),
    ],
)
def test_the_sandbox_settings_cannot_be_loosened_through_the_api(
    client: TestClient, api: str, field: str, value: Any
) -> None:
    """An admin key could otherwise switch the sandbox off, hand stages the server's whole
    environment (LLMOPS_SECRET_KEY included), or let them write the data dir."""
    refused = client.put(f"{api}/integrations/local/config", json={"settings": {field: value}})

    assert refused.status_code == 422, refused.text
    assert f"LLMOPS_LOCAL__{field.upper()}" in refused.text
    assert client.get(f"{api}/integrations/local").json()["settings"]["isolation"] == "auto"
