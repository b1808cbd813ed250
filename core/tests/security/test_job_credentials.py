"""A job reaches its tracker with the credential the platform issued for it, never with the
integration's own secret: the tracker is handed the job's ``JobAccess`` (its proxy URL and
its own token), and the proxy route serves the job's own token (and admins) for the job's
own run only, until the job ends. On SQLite and PostgreSQL (``database_url``).

The tracker here is the example plugin's, taught the two optional abilities: it echoes
what it is asked, so the test sees exactly what the core handed it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

CANARY = "canary-integration-secret-51c3"

#: A tracker whose jobs log through the platform's proxy; ``token`` is its integration
#: secret, which it never hands on.
JOB_TRACKER = """
from pydantic import SecretStr

import llmops
from llmops.capabilities.common import Capability
from llmops.capabilities.tracking import TrackerResponse
from llmops.plugins.info import PluginInfo, PluginSettings
from llmops_example.tracker import JsonFileTracker


class Settings(PluginSettings):
    token: SecretStr | None = None


class JobTracker(JsonFileTracker):
    def job_environment(self, run_id, access):
        return {"TOOL_RUN_ID": run_id, "TOOL_URI": access.tracker_url, "TOOL_TOKEN": access.token}

    def job_request(self, run_id, request):
        body = {"run": run_id, **request.model_dump(mode="json")}
        return TrackerResponse(status=201 if request.method == "POST" else 200, body=body)


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="jobtracker",
        version="1.0.0",
        display_name="Job tracker",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=Settings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return JobTracker(context.data_dir)
"""

#: The job: writes its environment, then waits for the test to say "go".
JOB = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    gate = pathlib.Path(sys.argv[1])
    (gate / "env.part").write_text(json.dumps(dict(os.environ)))
    (gate / "env.part").rename(gate / "env.json")  # whole when the test sees it
    deadline = time.monotonic() + 60
    while not (gate / "go").exists():
        assert time.monotonic() < deadline, "nobody said go"
        time.sleep(0.02)
    """
)


@pytest.fixture
def tracked(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> Iterator[TestClient]:
    """A started platform whose tracker is the job tracker, its secret set through the API
    (an admin key)."""
    install("jobtracker", JOB_TRACKER)
    with TestClient(create_app(make_settings(plugins="jobtracker"))) as client:
        authenticate(client)
        configured = client.put(
            f"{api}/integrations/jobtracker/config", json={"settings": {"token": CANARY}}
        )
        assert configured.status_code == 200, configured.text
        yield client


def _start_job(client: TestClient, api: str, tmp_path: Path, name: str) -> tuple[str, Path]:
    script, gate = tmp_path / f"{name}.py", tmp_path / name
    script.write_text(JOB)
    gate.mkdir()
    submitted = client.post(
        f"{api}/training/jobs",
        json={"name": name, "command": [sys.executable, str(script), str(gate)]},
    )
    assert submitted.status_code == 201, submitted.text
    wait_for((gate / "env.json").exists, timeout=30, what=f"job {name} to start")
    return submitted.json()["id"], gate


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_job_gets_its_own_token_and_proxy_from_the_tracker_never_the_integrations_secret(
    tracked: TestClient, api: str, tmp_path: Path
) -> None:
    job_id, gate = _start_job(tracked, api, tmp_path, "own")
    environment = json.loads((gate / "env.json").read_text())
    run = tracked.get(f"{api}/training/jobs/{job_id}/experiment-run").json()
    (gate / "go").touch()

    assert environment["TOOL_TOKEN"] == environment["LLMOPS_JOB_TOKEN"]
    assert environment["TOOL_URI"] == (
        f"{environment['LLMOPS_API_URL']}{api}/training/jobs/{job_id}/experiment-run/tracker"
    )
    assert environment["TOOL_RUN_ID"] == run["externalId"]
    assert not [name for name, value in environment.items() if CANARY in value]


def test_the_tracker_proxy_serves_the_jobs_own_token_and_admins_for_its_own_run_only(
    tracked: TestClient,
    api: str,
    tmp_path: Path,
    authenticate: Callable[..., str],
) -> None:
    job_id, gate = _start_job(tracked, api, tmp_path, "own")
    other_id, other_gate = _start_job(tracked, api, tmp_path, "other")
    token = json.loads((gate / "env.json").read_text())["LLMOPS_JOB_TOKEN"]
    run = tracked.get(f"{api}/training/jobs/{job_id}/experiment-run").json()
    admin = tracked.headers["Authorization"].removeprefix("Bearer ")
    editor, viewer = authenticate(tracked, "editor"), authenticate(tracked, "viewer")
    proxy = f"{api}/training/jobs/{job_id}/experiment-run/tracker"

    read = tracked.get(
        f"{proxy}/api/2.0/x/get", params=[("a", "1"), ("a", "2")], headers=_as(token)
    )
    written = tracked.post(f"{proxy}/api/2.0/x/set", json={"k": [1, "v"]}, headers=_as(token))
    by_admin = tracked.get(f"{proxy}/api/2.0/x/get", headers=_as(admin))
    by_editor = tracked.post(f"{proxy}/api/2.0/x/set", json={}, headers=_as(editor))
    by_viewer = tracked.get(f"{proxy}/api/2.0/x/get", headers=_as(viewer))
    other_job = tracked.get(
        f"{api}/training/jobs/{other_id}/experiment-run/tracker/api/2.0/x/get", headers=_as(token)
    )
    (gate / "go").touch()
    (other_gate / "go").touch()
    wait_for(
        lambda: (
            tracked.get(f"{api}/training/jobs/{job_id}", headers=_as(admin)).json()["status"]
            == "succeeded"
        ),
        timeout=30,
        what="the job to end",
    )
    ended = tracked.get(f"{proxy}/api/2.0/x/get", headers=_as(token))

    assert read.status_code == 200, read.text
    assert read.json() == {
        "run": run["externalId"],
        "method": "GET",
        "path": "api/2.0/x/get",
        "query": {"a": ["1", "2"]},
        "body": None,
    }
    assert written.status_code == 201  # the tracker's own status
    assert written.json()["body"] == {"k": [1, "v"]}
    assert by_admin.status_code == 200
    assert by_editor.status_code == 403
    assert by_viewer.status_code == 403
    assert other_job.status_code == 403
    assert "its own job" in other_job.json()["detail"]
    assert ended.status_code == 401


def test_a_jobs_proxy_without_a_run_or_a_tracker_that_serves_it_answers_404(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    with TestClient(create_app(make_settings(plugins="example"))) as client:
        authenticate(client)
        untracked = client.post(
            f"{api}/training/jobs", json={"name": "u", "command": ["true"], "track": False}
        ).json()
        tracked_job = client.post(f"{api}/training/jobs", json={"name": "t", "command": ["true"]})
        tracked_job_id = tracked_job.json()["id"]
        no_run = client.get(f"{api}/training/jobs/{untracked['id']}/experiment-run/tracker/x")
        no_proxy = client.get(f"{api}/training/jobs/{tracked_job_id}/experiment-run/tracker/x")
        no_job = client.post(f"{api}/training/jobs/nope/experiment-run/tracker/x", json={})

    assert no_run.status_code == 404, no_run.text
    assert no_proxy.status_code == 404, no_proxy.text
    assert "serves no requests" in no_proxy.json()["detail"]
    assert no_job.status_code == 404


def test_a_proxied_write_is_not_audited_like_the_metrics_it_carries(
    tracked: TestClient, api: str, tmp_path: Path
) -> None:
    job_id, gate = _start_job(tracked, api, tmp_path, "own")
    token = json.loads((gate / "env.json").read_text())["LLMOPS_JOB_TOKEN"]
    proxy = f"{api}/training/jobs/{job_id}/experiment-run/tracker"

    for step in range(3):
        written = tracked.post(f"{proxy}/api/2.0/x/log", json={"step": step}, headers=_as(token))
        assert written.status_code == 201
    (gate / "go").touch()
    entries: list[dict[str, Any]] = tracked.get(
        f"{api}/governance/audit-logs", params={"limit": 200}
    ).json()["items"]
    actions = {e["action"] for e in entries}

    assert {"configure_integration", "submit_training_job"} <= actions  # the log works
    assert "write_job_tracker" not in actions
