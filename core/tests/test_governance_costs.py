"""Costs: intervals of replica and GPU use (written with known times, or recorded by
the serving service under a frozen clock) and training jobs' runs, priced at the prices an
admin set, per endpoint, per job and per bucket; intervals clipped to the window, those
still open counted up to now. On SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.governance import EndpointUsage
from llmops.db.models import ServingEndpoint, TrainingJob
from llmops.services import governance
from llmops.testing.plugins import memory_serving_plugin, temporary_plugin

API = "/llm-ops/v1"
COSTS = f"{API}/governance/costs"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """``frozen(t)``: the governance clock says ``t`` from now on."""
    now = {"at": NOW}
    monkeypatch.setattr(governance, "clock", lambda: now["at"])

    def set_to(value: datetime) -> None:
        now["at"] = value

    return set_to


def set_prices(client: TestClient, **body: Any) -> None:
    answer = client.put(f"{API}/governance/prices", json=body)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def usage(client: TestClient) -> dict[str, str]:
    """Endpoint A (still there): 2 replicas x 1 GPU from 03-09 22:00 to 03-10 02:00, then
    3 replicas without GPUs, still open; endpoint B (deleted): 1 replica x 2 GPUs from
    03-08 00:00 to 03-09 23:30; job J ran 03-10 09:00-10:30, job K runs since 11:00."""
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        a = ServingEndpoint(name="a")
        session.add(a)
        session.flush()
        session.add_all(
            [
                EndpointUsage(
                    endpoint_id=a.id,
                    endpoint_name="a",
                    replicas=2,
                    gpus_per_replica=1,
                    started_at=at("2026-03-09T22:00"),
                    ended_at=at("2026-03-10T02:00"),
                ),
                EndpointUsage(
                    endpoint_id=a.id,
                    endpoint_name="a",
                    replicas=3,
                    gpus_per_replica=0,
                    started_at=at("2026-03-10T02:00"),
                ),
                EndpointUsage(
                    endpoint_id="b" * 32,
                    endpoint_name="b",
                    replicas=1,
                    gpus_per_replica=2,
                    started_at=at("2026-03-08T00:00"),
                    ended_at=at("2026-03-09T23:30"),
                ),
            ]
        )
        j = TrainingJob(
            name="j",
            status="succeeded",
            started_at=at("2026-03-10T09:00"),
            finished_at=at("2026-03-10T10:30"),
        )
        k = TrainingJob(name="k", status="running", started_at=at("2026-03-10T11:00"))
        never = TrainingJob(name="queued", status="pending")
        session.add_all([j, k, never])
        session.flush()
        return {"a": a.id, "j": j.id, "k": k.id}


def sums(item: dict[str, Any]) -> tuple[float, float, float]:
    return item["replicaHours"], item["gpuHours"], item["cost"]


def test_costs_per_endpoint_job_and_day_at_the_admins_prices(
    client: TestClient, usage: dict[str, str], frozen: Callable[[datetime], None]
) -> None:
    set_prices(client, replicaHour=2.5, gpuHour=4, currency="EUR")

    answer = client.get(
        COSTS,
        params={"since": "2026-03-09T00:00:00Z", "until": "2026-03-11T00:00:00Z", "bucket": "day"},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["currency"] == "EUR"
    assert (report["prices"]["replicaHour"], report["prices"]["gpuHour"]) == (2.5, 4.0)
    # A: 4 h x 2 replicas (8 GPU-hours) + 10 h (02:00 to now) x 3 replicas
    # B: 23.5 h x 1 replica x 2 GPUs, from the window's start; J: 1.5 h; K: 1 h (to now)
    assert sums(report) == (64.0, 55.0, 380.0)
    endpoints = {e["name"]: e for e in report["endpoints"]}
    assert [e["name"] for e in report["endpoints"]] == ["b", "a"]  # the costliest first
    assert sums(endpoints["a"]) == (38.0, 8.0, 127.0)
    assert sums(endpoints["b"]) == (23.5, 47.0, 246.75)
    assert (endpoints["a"]["id"], endpoints["a"]["state"]) == (usage["a"], "active")
    assert endpoints["b"]["state"] == "deleted"
    jobs = {j["name"]: j for j in report["jobs"]}
    assert set(jobs) == {"j", "k"}  # a job that never started cost nothing
    assert sums(jobs["j"]) == (1.5, 0.0, 3.75)
    assert sums(jobs["k"]) == (1.0, 0.0, 2.5)
    assert (jobs["k"]["id"], jobs["k"]["state"]) == (usage["k"], "running")
    assert [(b["start"], b["end"]) for b in report["series"]] == [
        ("2026-03-09T00:00:00Z", "2026-03-10T00:00:00Z"),
        ("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"),
    ]
    assert [sums(b) for b in report["series"]] == [(27.5, 51.0, 272.75), (36.5, 4.0, 107.25)]
    assert [sums(b) for b in endpoints["a"]["series"]] == [(4.0, 4.0, 26.0), (34.0, 4.0, 101.0)]
    assert [sums(b) for b in jobs["j"]["series"]] == [(0.0, 0.0, 0.0), (1.5, 0.0, 3.75)]


def test_hourly_buckets_are_whole_hours_clipped_to_the_window(
    client: TestClient, usage: dict[str, str], frozen: Callable[[datetime], None]
) -> None:
    set_prices(client, replicaHour=2.5, gpuHour=4)

    report = client.get(
        COSTS,
        params={"since": "2026-03-10T01:30:00Z", "until": "2026-03-10T04:00:00Z", "bucket": "hour"},
    ).json()

    assert [(b["start"][11:16], b["end"][11:16]) for b in report["series"]] == [
        ("01:30", "02:00"),
        ("02:00", "03:00"),
        ("03:00", "04:00"),
    ]
    [a] = report["endpoints"]  # B ended before the window, the jobs ran after it
    assert a["name"] == "a"
    assert report["jobs"] == []
    assert [sums(b) for b in a["series"]] == [(1.0, 1.0, 6.5), (3.0, 0.0, 7.5), (3.0, 0.0, 7.5)]
    assert sums(a) == (7.0, 1.0, 21.5)
    assert sums(report) == (7.0, 1.0, 21.5)


def test_nothing_counts_after_now_and_prices_default_to_zero(
    client: TestClient, usage: dict[str, str], frozen: Callable[[datetime], None]
) -> None:
    frozen(at("2026-03-10T03:00"))  # before the jobs started; A's open interval 1 h old

    report = client.get(
        COSTS, params={"since": "2026-03-10T00:00:00Z", "until": "2026-03-12T00:00:00Z"}
    ).json()

    [a] = report["endpoints"]
    assert sums(a) == (2 * 2 + 1 * 3, 2 * 2 * 1, 0.0)
    assert report["jobs"] == []
    assert report["currency"] == "USD"
    assert report["prices"]["version"] == 0


def test_the_default_window_is_the_week_up_to_now(
    client: TestClient, usage: dict[str, str], frozen: Callable[[datetime], None]
) -> None:
    report = client.get(COSTS).json()

    assert (report["since"], report["until"]) == ("2026-03-03T12:00:00Z", "2026-03-10T12:00:00Z")
    assert report["bucket"] == "day"
    assert len(report["series"]) == 8
    assert report["replicaHours"] == 38.0 + 48.0 - 0.5 + 1.5 + 1.0  # B from 03-08 00:00


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "2026-03-10T00:00:00Z", "until": "2026-03-09T00:00:00Z"}, "since"),
        (
            {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z", "bucket": "hour"},
            "bucket",
        ),
    ],
)
def test_a_window_that_is_empty_or_too_long_for_its_buckets_is_refused(
    client: TestClient, params: dict[str, str], parameter: str
) -> None:
    refused = client.get(COSTS, params=params)

    assert refused.status_code == 422, refused.text
    assert refused.json()["parameter"] == parameter


def test_a_viewer_reads_costs_and_prices_but_sets_no_prices(
    client: TestClient, authenticate: Callable[..., str]
) -> None:
    set_prices(client, replicaHour=1, gpuHour=3, currency="GBP")
    authenticate(client, "viewer")

    assert client.get(COSTS).status_code == 200
    prices = client.get(f"{API}/governance/prices").json()
    assert (prices["replicaHour"], prices["gpuHour"], prices["currency"]) == (1.0, 3.0, "GBP")
    assert (prices["version"], prices["updatedBy"]) == (1, "test-admin")
    assert (
        client.put(f"{API}/governance/prices", json={"replicaHour": 0, "gpuHour": 0}).status_code
        == 403
    )


@pytest.mark.parametrize(
    "body",
    [
        {"replicaHour": -1, "gpuHour": 0},
        {"replicaHour": 1, "gpuHour": 0, "currency": "euro"},
        {"replicaHour": "1", "gpuHour": 0},
        {"gpuHour": 0},
    ],
)
def test_prices_out_of_bounds_are_refused(client: TestClient, body: dict[str, Any]) -> None:
    assert client.put(f"{API}/governance/prices", json=body).status_code == 422
    assert client.get(f"{API}/governance/prices").json()["version"] == 0


# -- usage recorded by the serving service ---------------------------------------------

SERVING_PLUGIN = memory_serving_plugin("costserve", framework="costmem", gpu=True)


@pytest.fixture
def serving_client(
    tmp_path: Path, make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]
) -> Iterator[TestClient]:
    with (
        temporary_plugin(tmp_path, "costserve", SERVING_PLUGIN),
        TestClient(create_app(make_settings(plugins="costserve"))) as client,
    ):
        authenticate(client)
        yield client


def create_endpoint(client: TestClient, name: str, model_id: str) -> httpx.Response:
    """An endpoint of 2 to 3 replicas of one GPU each."""
    return client.post(
        f"{API}/serving/endpoints",
        json={
            "name": name,
            "modelId": model_id,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 3},
            "resources": {"gpus": 1},
        },
    )


def test_an_endpoints_cost_comes_from_the_intervals_its_deployment_recorded(
    serving_client: TestClient, frozen: Callable[[datetime], None]
) -> None:
    client = serving_client
    set_prices(client, replicaHour=1, gpuHour=10)
    t0 = at("2026-03-10T08:00")
    model = client.post(f"{API}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()
    frozen(t0)
    created = create_endpoint(client, "priced", model["id"])
    assert created.status_code == 201, created.text
    assert created.json()["framework"] == "costmem"
    endpoint = f"{API}/serving/endpoints/{created.json()['id']}"
    frozen(t0 + timedelta(minutes=90))
    scaled = client.patch(
        f"{endpoint}/deployment", json={"autoscaling": {"minReplicas": 3, "maxReplicas": 3}}
    )
    assert scaled.status_code == 200, scaled.text
    frozen(t0 + timedelta(minutes=150))
    assert client.delete(endpoint).status_code == 204
    frozen(t0 + timedelta(hours=5))

    report = client.get(
        COSTS, params={"since": "2026-03-10T00:00:00Z", "until": "2026-03-11T00:00:00Z"}
    ).json()

    [priced] = report["endpoints"]
    # 1.5 h x 2 replicas + 1 h x 3 replicas, one GPU each
    assert (priced["name"], priced["state"]) == ("priced", "deleted")
    assert sums(priced) == (6.0, 6.0, 66.0)


def usage_rows(client: TestClient) -> list[tuple[int, int, bool]]:
    with client.app.state.platform.sessions() as session:  # type: ignore[attr-defined]
        rows = session.scalars(select(EndpointUsage).order_by(EndpointUsage.id)).all()
        return [(r.replicas, r.gpus_per_replica, r.ended_at is None) for r in rows]


def test_an_endpoints_usage_intervals_follow_its_replicas_and_gpus_until_it_is_deleted(
    serving_client: TestClient,
) -> None:
    client = serving_client
    model = client.post(f"{API}/catalog/models", json={"name": "m", "uri": "file:///m"}).json()
    created = create_endpoint(client, "tracked", model["id"]).json()
    endpoint = f"{API}/serving/endpoints/{created['id']}"
    assert usage_rows(client) == [(2, 1, True)]
    client.get(f"{endpoint}/deployment").raise_for_status()  # a sync that changes nothing
    assert usage_rows(client) == [(2, 1, True)]

    changed = client.patch(
        f"{endpoint}/deployment", json={"autoscaling": {"minReplicas": 3, "maxReplicas": 3}}
    )
    assert changed.status_code == 200, changed.text
    assert usage_rows(client) == [(2, 1, False), (3, 1, True)]

    assert client.delete(endpoint).status_code == 204
    assert usage_rows(client) == [(2, 1, False), (3, 1, False)]
