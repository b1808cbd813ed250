"""``llmops demo``'s dataset-version step against an API that answers as the platform does
while a push is in flight (the whole demo runs against a real platform in
tests/test_demo.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from llmops import cli_demo
from llmops.cli_demo import Progress, _version_dataset
from llmops.cli_examples import PlatformClient

DATASET = {"id": "d1", "name": "sample"}
VERSIONS = "/llm-ops/v1/catalog/datasets/d1/versions"


def _version(push_state: str) -> dict[str, Any]:
    return {
        "id": "v1id",
        "datasetId": "d1",
        "number": 1,
        "provider": "dvc",
        "fileCount": 1,
        "pushState": push_state,
        "pushOperationId": "op1",
    }


def _client(
    states: list[str], last_error: str | None = None, seen: list[str] | None = None
) -> PlatformClient:
    """A client of an API whose version reads ``states`` one after the other (the last one
    stays); the paths it is asked for go to ``seen``."""
    reads = iter(states)
    last = [states[0]]

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if seen is not None:
            seen.append(path)
        if path == "/llm-ops/v1/integrations":
            return httpx.Response(
                200,
                json={
                    "items": [
                        {
                            "name": "dvc",
                            "enabled": True,
                            "loaded": True,
                            "capabilities": ["versioning"],
                        }
                    ]
                },
            )
        if path == VERSIONS:
            return httpx.Response(200, json={"items": [_version(states[0])]})
        if path == f"{VERSIONS}/v1id":
            last[0] = next(reads, last[0])
            return httpx.Response(200, json=_version(last[0]))
        if path == "/llm-ops/v1/operations/op1":
            return httpx.Response(200, json={"id": "op1", "lastError": last_error})
        return httpx.Response(404, json={"title": "Not Found", "status": 404})

    client = PlatformClient("http://platform.test", "key")
    client.http = httpx.Client(
        base_url="http://platform.test/llm-ops/v1", transport=httpx.MockTransport(answer)
    )
    return client


def _run(client: PlatformClient, capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    version = _version_dataset(client, Progress(6), DATASET)
    return version, capsys.readouterr().out


@pytest.fixture(autouse=True)
def _look_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_demo, "PUSH_POLL_SECONDS", 0.0)


def test_the_demo_waits_for_a_push_still_in_flight_and_shows_it_pushed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    version, out = _run(_client(["pending", "pending", "pending", "pushed"]), capsys)
    assert version["pushState"] == "pushed"
    assert "version v1 (v1id) by dvc: 1 files, push pushed" in out


def test_the_demo_goes_on_with_a_push_that_stays_queued_and_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_demo, "PUSH_WAIT_SECONDS", 0.0)
    version, out = _run(_client(["pending"], last_error="the remote is away"), capsys)
    assert version["pushState"] == "pending"
    assert "push pending" in out
    assert (
        "still queued after 0 s (the remote is away); the platform retries it (operation op1)"
        in out
    )


def test_the_demo_says_when_a_push_failed_for_good(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _run(_client(["pending", "failed"]), capsys)
    assert "push failed" in out
    assert "failed for good: see operation op1" in out


def test_the_demo_does_not_wait_for_a_version_already_pushed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []
    _, out = _run(_client(["pushed"], seen=seen), capsys)
    assert "push pushed" in out
    assert f"{VERSIONS}/v1id" not in seen
