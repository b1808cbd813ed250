"""What a plugin does on a tool on a user's behalf is in the audit log, under that user."""

from __future__ import annotations

from fastapi.testclient import TestClient

from llmops.testing.waiting import wait_for


def test_a_pipeline_submitted_to_its_tool_is_audited_for_the_caller(
    client: TestClient, api: str
) -> None:
    created = client.post(
        f"{api}/workflows/pipelines",
        json={"name": "p", "stages": [{"name": "a", "command": ["true"]}]},
        headers={"X-Request-ID": "req-tool-audit"},
    )
    assert created.status_code == 201, created.text
    pipeline_id = created.json()["id"]

    def entries() -> list[dict[str, object]]:
        items = client.get(
            f"{api}/governance/audit-logs", params={"action": "local.pipeline.submit"}
        ).json()["items"]
        return [e for e in items if e["resourceId"] == pipeline_id]

    entry = wait_for(entries)[0]
    assert entry["outcome"] == "success"
    assert entry["actor"] != "system"
    assert entry["role"] == "admin"
    assert entry["requestId"] == "req-tool-audit"
    assert entry["details"]["provider"] == "local"
