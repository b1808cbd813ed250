"""``llmops up`` with the KServe plugin pointed at the Kubernetes API double: endpoints
deployed, chatted with through the gateway with the official OpenAI SDK, canaried,
promoted and deleted through the REST API; a predictor that is down while KServe says
Ready is reported unhealthy; an API server that is away delays writes (outbox) and serves
reads stale, and health says why."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from llmops.testing.console import ConsoleServer, running_platform
from llmops.testing.kubernetes import KubernetesApiDouble
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
NAMESPACE = "serving"


@pytest.fixture
def platform(cluster: KubernetesApiDouble, models: Any) -> Iterator[ConsoleServer]:
    env = {
        "LLMOPS_PLUGINS": "kserve",
        "LLMOPS_KSERVE__API_URL": cluster.url,
        "LLMOPS_KSERVE__TOKEN": "kserve-test-token",
        "LLMOPS_KSERVE__NAMESPACE": NAMESPACE,
        "LLMOPS_KSERVE__STORAGE_URI_PREFIXES": json.dumps(models.prefixes),
        "LLMOPS_SERVING_SYNC_INTERVAL_SECONDS": "1",
        "LLMOPS_HEALTH_CACHE_SECONDS": "0.1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    with running_platform(env=env, console=False) as server:
        yield server


def _ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200,)), response.text
    body: dict[str, Any] = response.json()
    return body


def _model(api: httpx.Client, name: str, uri: str) -> dict[str, Any]:
    return _ok(api.post(f"{API}/catalog/models", json={"name": name, "uri": uri}), 201)


def _endpoint(api: httpx.Client, name: str, model: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An endpoint on KServe serving ``model`` (201, or 202 when the write is queued)."""
    body = {"name": name, "modelId": model["id"], "framework": "kserve", **fields}
    return _ok(api.post(f"{API}/serving/endpoints", json=body), 201, 202)


def _patch(api: httpx.Client, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{API}/serving/endpoints/{endpoint_id}/deployment"
    return _ok(api.patch(url, json=body), 200, 202)


def _deployment(api: httpx.Client, endpoint_id: str) -> dict[str, Any]:
    return _ok(api.get(f"{API}/serving/endpoints/{endpoint_id}/deployment"))


def _wait(
    api: httpx.Client, endpoint_id: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.clear()
        last.update(_deployment(api, endpoint_id))
        return dict(last) if check(last) else None

    try:
        return wait_for(reached, timeout=60, interval=0.2, what=what)
    except Exception as exc:
        raise AssertionError(f"{exc}; last deployment: {json.dumps(last)[:2000]}") from None


def _ready(deployment: dict[str, Any]) -> bool:
    return deployment["state"] == "ready" and deployment["status"]["ready"] is True


def _splits(deployment: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {s["tag"]: (s["modelUri"], s["percent"]) for s in deployment["status"]["traffic"]}


def _chat(client: OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "The town"}],
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    return answer.choices[0].message.content or ""


def test_deploy_chat_canary_promote_and_delete_through_the_platform(
    platform: ConsoleServer, cluster: KubernetesApiDouble, models: Any
) -> None:
    api = platform.api
    first = _model(api, "tiny-a", str(models.first))
    second = _model(api, "tiny-b", models.second.as_uri())
    frameworks: list[dict[str, Any]] = api.get(f"{API}/serving/frameworks").json()
    [kserve] = [f for f in frameworks if f["name"] == "kserve"]
    assert kserve["supportsCanary"] is True
    assert kserve["scaleMetrics"] == ["concurrency", "rps", "cpu", "memory"]
    assert kserve["runtimes"][0] == "kserve-huggingfaceserver"

    scaling = {"minReplicas": 1, "maxReplicas": 3, "scaleMetric": "concurrency", "scaleTarget": 4}
    endpoint = _endpoint(api, "chat", first, autoscaling=scaling)

    # the object as KServe got it: labels tie it to the endpoint, the model comes from the PVC
    obj = cluster.get_object("chat", NAMESPACE)
    assert obj is not None
    assert obj["metadata"]["labels"]["llmops.dev/endpoint-id"] == endpoint["id"]
    assert obj["metadata"]["labels"]["llmops.dev/idempotency-key"] == f"endpoint-{endpoint['id']}"
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "pvc://llmops-models/model-a"
    assert predictor["model"]["runtime"] == "kserve-huggingfaceserver"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 4)

    ready = _wait(api, endpoint["id"], _ready, "the endpoint to be ready")
    assert ready["status"]["target"]["baseUrl"].endswith("/openai/v1")
    assert ready["status"]["rollout"]["state"] == "stable"
    assert _splits(ready) == {"stable": (str(models.first), 100)}

    base = f"{platform.url}{API}/openai/v1"
    with OpenAI(base_url=base, api_key=platform.admin_key, max_retries=0) as client:
        stable_answer = _chat(client, "chat")
        streamed = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "The town"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
        assert "".join(pieces) == stable_answer, "streamed and plain answers agree"

        # a canary at 20%: the candidate takes 2 of each 10 requests
        _patch(api, endpoint["id"], {"canary": {"modelUri": second["uri"], "trafficPercent": 20}})
        canaried = _wait(
            api,
            endpoint["id"],
            lambda d: _ready(d) and "canary" in _splits(d),
            "the canary to take its share",
        )
        assert _splits(canaried) == {
            "stable": (str(models.first), 80),
            "canary": (second["uri"], 20),
        }
        assert canaried["status"]["rollout"]["state"] == "canary"
        assert canaried["spec"]["canary"]["trafficPercent"] == 20
        answers = [_chat(client, "chat") for _ in range(10)]
        candidate_answers = [a for a in answers if a != stable_answer]
        assert len(candidate_answers) == 2, answers

        # promote: the candidate serves everything and becomes the stable model
        _patch(api, endpoint["id"], {"promoteCanary": True})
        promoted = _wait(
            api,
            endpoint["id"],
            lambda d: _ready(d) and _splits(d) == {"stable": (second["uri"], 100)},
            "the promoted canary to serve everything",
        )
        assert [r["storageUri"] for r in cluster.revisions("chat", NAMESPACE)] == [
            "pvc://llmops-models/model-a",
            "pvc://llmops-models/model-b",
        ], "promoting moves traffic only: KServe rolls out no new revision"
        assert promoted["spec"]["modelUri"] == second["uri"]
        assert promoted["spec"]["canary"] is None
        assert {_chat(client, "chat") for _ in range(3)} == {candidate_answers[0]}

    deleted = api.delete(f"{API}/serving/endpoints/{endpoint['id']}")
    assert deleted.status_code in {202, 204}, deleted.text
    wait_for(
        lambda: cluster.get_object("chat", NAMESPACE) is None,
        timeout=30,
        what="the InferenceService to be deleted",
    )
    gone = api.post(
        f"{API}/openai/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert gone.status_code == 404, gone.text


def test_a_rolled_back_canary_leaves_the_stable_model_serving(
    platform: ConsoleServer, models: Any
) -> None:
    api = platform.api
    first = _model(api, "tiny-a", str(models.first))
    canary = {"modelUri": str(models.second), "trafficPercent": 30}
    endpoint = _endpoint(api, "rollback", first, canary=canary)
    # a canary in the create request starts once the stable revision serves
    _wait(
        api,
        endpoint["id"],
        lambda d: _ready(d) and _splits(d).get("canary") == (str(models.second), 30),
        "the canary given at creation to take its share",
    )

    _patch(api, endpoint["id"], {"rollbackCanary": True})

    rolled_back = _wait(
        api,
        endpoint["id"],
        lambda d: _ready(d) and _splits(d) == {"stable": (str(models.first), 100)},
        "the rollback to send everything to the stable model",
    )
    assert rolled_back["spec"]["canary"] is None
    assert rolled_back["spec"]["modelUri"] == str(models.first)
    assert rolled_back["status"]["rollout"]["state"] == "stable"


def test_a_predictor_that_is_down_while_kserve_says_ready_is_reported_unhealthy(
    platform: ConsoleServer, cluster: KubernetesApiDouble, models: Any
) -> None:
    api = platform.api
    first = _model(api, "tiny-a", str(models.first))
    endpoint = _endpoint(api, "flaky", first)
    _wait(api, endpoint["id"], _ready, "the endpoint to be ready")

    cluster.predictor_down("flaky", NAMESPACE)
    obj = cluster.get_object("flaky", NAMESPACE)
    assert obj is not None
    ready = {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"]
    assert ready == "True", "the double keeps saying Ready (kserve#1859)"

    down = _wait(
        api, endpoint["id"], lambda d: not d["status"]["ready"], "the endpoint to be unready"
    )
    assert down["state"] == "failed"
    assert "KServe reports Ready, but the predictor does not answer" in down["status"]["message"]
    health = _ok(api.get(f"{API}/serving/endpoints/{endpoint['id']}/health"))
    assert health["healthy"] is False, health

    cluster.predictor_down("flaky", NAMESPACE, down=False)
    _wait(api, endpoint["id"], _ready, "the endpoint to be ready again")
    assert _ok(api.get(f"{API}/serving/endpoints/{endpoint['id']}/health"))["healthy"] is True


def test_an_unreachable_api_server_queues_writes_serves_stale_reads_and_says_why(
    platform: ConsoleServer, cluster: KubernetesApiDouble, models: Any
) -> None:
    api = platform.api
    first = _model(api, "tiny-a", str(models.first))
    before = _endpoint(api, "steady", first)
    _wait(api, before["id"], _ready, "the first endpoint to be ready")

    cluster.api_down()
    try:
        queued = api.post(
            f"{API}/serving/endpoints",
            json={"name": "later", "modelId": first["id"], "framework": "kserve"},
        )
        assert queued.status_code == 202, queued.text
        stale = _deployment(api, before["id"])
        assert stale["degraded"] is True
        assert "unreachable" in stale["degradedReason"], stale["degradedReason"]
        assert stale["state"] == "ready", "the last known state is shown"

        def kserve_down() -> dict[str, Any] | None:
            health = _ok(api.get(f"{API}/health"))
            [entry] = [i for i in health["integrations"] if i["plugin"] == "kserve"]
            return entry if entry["status"] == "down" else None

        entry = wait_for(kserve_down, timeout=20, what="health to report KServe down")
        assert "unreachable" in entry["detail"], entry
        assert cluster.get_object("later", NAMESPACE) is None
    finally:
        cluster.api_up()

    later = _ok(api.get(f"{API}/serving/endpoints", params={"limit": 10}))["items"]
    [queued_endpoint] = [e for e in later if e["name"] == "later"]
    _wait(api, queued_endpoint["id"], _ready, "the queued endpoint to be deployed and ready")
    assert cluster.get_object("later", NAMESPACE) is not None
    assert not _deployment(api, before["id"])["degraded"]


def test_input_kserve_cannot_serve_is_refused_at_once_and_nothing_is_recorded(
    platform: ConsoleServer, cluster: KubernetesApiDouble, tmp_path: Any
) -> None:
    api = platform.api
    outside = _model(api, "outside", str(tmp_path))  # not on the volume KServe mounts

    refused = api.post(
        f"{API}/serving/endpoints",
        json={"name": "nowhere", "modelId": outside["id"], "framework": "kserve"},
    )

    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["parameter"] == "modelUri"
    assert "storage_uri_prefixes" in problem["detail"]
    names = [e["name"] for e in _ok(api.get(f"{API}/serving/endpoints"))["items"]]
    assert "nowhere" not in names
    assert cluster.objects(NAMESPACE) == []

    bad_runtime = api.post(
        f"{API}/serving/endpoints",
        json={"name": "nowhere", "modelId": outside["id"], "framework": "kserve",
              "runtime": "triton"},
    )  # fmt: skip
    assert bad_runtime.status_code == 422, bad_runtime.text
    assert bad_runtime.json()["parameter"] == "runtime"
