"""``Idempotency-Key`` across crashes: a key whose request died answers once its lease has
run out — the stored answer, the resource its write left, or a fresh run where nothing
was written — and a request that outlived its lease cannot commit any more.

A crash is simulated by what a dead process no longer does: it renews no lease and stores
no answer after the fact (``_renew_once`` and ``_finish`` do nothing), and a request that
dies mid-way raises out of the app. The crash harness (tests/crash) kills real processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmops.api import idempotency
from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.models import IdempotencyRecord, utcnow
from llmops.platform import Platform
from llmops.resilience.outbox import Outbox
from llmops.services import catalog, pipelines
from llmops.testing.waiting import wait_for

LEASE = 0.5


class ProcessDied(Exception):
    """What the rest of a request sees of a kill -9: nothing runs after it."""


@pytest.fixture
def crashable(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    """A platform with a short key lease whose requests can die: ``_finish`` and the
    renewals do nothing (a dead process does neither)."""
    monkeypatch.setattr(idempotency, "_finish", lambda *args: None)
    monkeypatch.setattr(idempotency, "_renew", lambda *args: None)
    settings = make_settings(idempotency_lease_seconds=LEASE)
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        authenticate(client)
        yield client


def platform_of(client: TestClient) -> Platform:
    platform: Platform = client.app.state.platform  # type: ignore[attr-defined]
    return platform


def lease_of(client: TestClient, key: str) -> datetime:
    with platform_of(client).sessions() as session:
        lease = session.scalar(
            select(IdempotencyRecord.lease_until).where(IdempotencyRecord.key == key)
        )
    assert lease is not None, f"no lease on {key!r}"
    return lease


def wait_until_the_lease_ran_out(client: TestClient, key: str) -> None:
    """What a replay waits for after a crash: the dead request's lease on its key."""
    wait_for(lambda: lease_of(client, key) < utcnow(), timeout=10, interval=0.02, what="the lease")


def count(client: TestClient, api: str, collection: str) -> int:
    return len(client.get(f"{api}{collection}").json()["items"])


def test_the_answer_commits_with_the_write_and_is_replayed_after_a_crash(
    crashable: TestClient, api: str
) -> None:
    headers = {"Idempotency-Key": "answer-in-the-same-transaction"}
    first = crashable.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
    assert first.status_code == 201
    # the process "died" right after its commit: no _finish ran
    wait_until_the_lease_ran_out(crashable, headers["Idempotency-Key"])
    again = crashable.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(crashable, api, "/catalog/models") == 1


def test_a_request_that_died_after_its_write_committed_is_answered_with_what_it_wrote(
    crashable: TestClient, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's 7 jobs and 2 datasets: created, the caller never answered, and the key
    then answered 409 for 24 hours."""

    def die(self: Outbox, operation_id: str) -> Any:
        raise ProcessDied

    monkeypatch.setattr(Outbox, "deliver_now", die)  # after the commit of row + operation
    headers = {"Idempotency-Key": "died-after-commit"}
    body = {"name": "p", "stages": [{"name": "a", "command": ["true"]}]}
    with pytest.raises(ProcessDied):
        crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers)
    monkeypatch.undo()  # the next process delivers as usual
    monkeypatch.setattr(idempotency, "_finish", lambda *args: None)
    monkeypatch.setattr(idempotency, "_renew", lambda *args: None)

    early = crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers)
    assert early.status_code == 409  # its lease has not run out yet
    assert early.json()["type"].endswith("/idempotency-key-in-use")
    assert 1 <= int(early.headers["retry-after"]) <= 1 + LEASE

    wait_until_the_lease_ran_out(crashable, headers["Idempotency-Key"])
    replay = crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    [pipeline] = crashable.get(f"{api}/workflows/pipelines").json()["items"]
    assert replay.json()["id"] == pipeline["id"]
    assert replay.headers["location"] == f"{api}/workflows/pipelines/{pipeline['id']}"
    # and the same answer from then on, never a second pipeline
    assert (
        crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers).json()["id"]
        == (pipeline["id"])
    )
    assert count(crashable, api, "/workflows/pipelines") == 1


def test_a_key_whose_request_died_before_writing_runs_again_after_its_lease(
    crashable: TestClient, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = catalog.create_model

    def die(**kwargs: Any) -> Any:
        raise ProcessDied

    monkeypatch.setattr(catalog, "create_model", die)
    headers = {"Idempotency-Key": "died-before-writing"}
    with pytest.raises(ProcessDied):
        crashable.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
    monkeypatch.setattr(catalog, "create_model", real)
    wait_until_the_lease_ran_out(crashable, headers["Idempotency-Key"])
    again = crashable.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers  # it ran: nothing had been written
    assert count(crashable, api, "/catalog/models") == 1


def test_a_request_that_outlived_its_lease_cannot_commit_after_a_replay_took_over(
    crashable: TestClient, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipelines.submit_pipeline
    release = threading.Event()
    stalled = threading.Event()

    def slow(**kwargs: Any) -> Any:
        if not stalled.is_set():
            stalled.set()
            release.wait(10)  # outlives its lease: a replay takes the key over
        return real(**kwargs)

    monkeypatch.setattr(pipelines, "submit_pipeline", slow)
    headers = {"Idempotency-Key": "stalled"}
    body = {"name": "p", "stages": [{"name": "a", "command": ["true"]}]}
    answers: list[Any] = []
    first = threading.Thread(
        target=lambda: answers.append(
            crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers)
        )
    )
    first.start()
    assert stalled.wait(10)
    wait_until_the_lease_ran_out(crashable, headers["Idempotency-Key"])
    takeover = crashable.post(f"{api}/workflows/pipelines", json=body, headers=headers)
    release.set()
    first.join(10)
    assert takeover.status_code == 201
    [late] = answers
    assert late.status_code == 409
    assert "taken over" in late.json()["detail"]
    [pipeline] = crashable.get(f"{api}/workflows/pipelines").json()["items"]
    assert pipeline["id"] == takeover.json()["id"]


def test_a_live_request_keeps_its_key_by_renewing_the_lease(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = catalog.create_model
    release = threading.Event()
    stalled = threading.Event()

    def slow(**kwargs: Any) -> Any:
        stalled.set()
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(catalog, "create_model", slow)
    with TestClient(create_app(make_settings(idempotency_lease_seconds=0.3))) as client:
        authenticate(client)
        headers = {"Idempotency-Key": "slow-but-alive"}
        answers: list[Any] = []
        first = threading.Thread(
            target=lambda: answers.append(
                client.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
            )
        )
        first.start()
        assert stalled.wait(10)
        first_lease = lease_of(client, headers["Idempotency-Key"])
        # renewed all along: a full lease past the time the first one ran out
        wait_for(
            lambda: (
                lease_of(client, headers["Idempotency-Key"])
                >= first_lease + timedelta(seconds=2 * 0.3)
            ),
            timeout=10,
            interval=0.02,
            what="the lease renewed",
        )
        assert utcnow() > first_lease  # the key would have been free without renewals
        twin = client.post(f"{api}/catalog/models", json={"name": "m"}, headers=headers)
        release.set()
        first.join(10)
        assert twin.status_code == 409
        assert answers[0].status_code == 201


def test_an_expired_unanswered_key_is_claimed_by_one_replay_only(
    client: TestClient, api: str
) -> None:
    """Two replays after a crash: one takes the key over and runs, the other waits."""
    platform = platform_of(client)
    past = utcnow() - timedelta(seconds=1)
    with platform.sessions() as session, session.begin():
        record = IdempotencyRecord(
            scope="s",
            key="k",
            method="POST",
            path="/p",
            request_hash="h",
            expires_at=utcnow() + timedelta(hours=1),
            owner="dead",
            lease_until=past,
        )
        session.add(record)
    verdicts = [
        idempotency._begin(platform, "s", "k", "/p", "h", token, 30.0)
        for token in ("first", "second")
    ]
    assert verdicts[0] == record.id
    assert isinstance(verdicts[1], float)  # 409: the first replay holds it now
    with platform.sessions() as session:
        owner = session.scalar(select(IdempotencyRecord.owner))
        assert owner == "first"
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1
