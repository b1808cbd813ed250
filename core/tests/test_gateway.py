"""The inference gateway, end to end over real HTTP: the platform on uvicorn, the official
OpenAI SDK as the client, and behind a serving plugin a real model runtime serving a tiny
GPT-2 (plus backends that are unreachable, answer 500, or hang)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from openai import OpenAI
from prometheus_client import CollectorRegistry

from llmops.api.app import create_app
from llmops.api.routers.openai import InferenceRoutes
from llmops.config import CoreSettings
from llmops.gateway import Gateway, GatewayMetrics, Route, Upstream
from llmops.model_runtime.app import create_app as runtime_app
from llmops.model_runtime.engine import Engine
from llmops.model_runtime.loader import load_model
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.models import DIRECT_SERVING_PLUGIN, serving_in_thread, tiny_causal_lm
from llmops.testing.plugins import PluginInstaller
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


class DroppingBackend:
    """An OpenAI-ish backend on a raw socket that keeps a connection alive after its first
    answer, and closes it, unanswered, when a second request comes on it: what a backend
    does to a kept-alive connection it times out just as the gateway reuses it."""

    def __init__(self) -> None:
        self.connections = 0
        self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for answered_here in (False, True):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            if answered_here:
                break  # the second request on this connection: hang up
            body = json.dumps(
                {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            self.answered += 1
        writer.close()

    def close(self) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@dataclass
class Backends:
    model: str  # the model runtime's OpenAI base URL
    unreachable: str
    failing: str  # answers 500
    hanging: str  # never answers
    cut: str  # starts a stream's answer, then hangs up before its first chunk
    dripping: str  # streams a chunk every 20 ms until its client leaves
    dropping: DroppingBackend  # closes a kept-alive connection when it is reused
    seen: list[dict[str, str]]  # headers the model runtime received
    left: list[float]  # when the dripping backend saw its client leave


def _recording(app: Any, seen: list[dict[str, str]]) -> Any:
    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return recorded


async def _failing(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"the backend broke"})


async def _hanging(scope: Any, receive: Any, send: Any) -> None:
    """A backend that never answers: it waits until the caller goes away."""
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass


async def _cut(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", SSE)]})
    # returns without a body: uvicorn closes the connection mid-answer


def _dripping(left: list[float]) -> Any:
    async def drip(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", SSE)]}
        )

        async def chunks() -> None:
            for n in range(1500):
                event = {"choices": [{"index": 0, "delta": {"content": f"{n} "}}]}
                body = f"data: {json.dumps(event)}\n\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await asyncio.sleep(0.02)

        streaming = asyncio.ensure_future(chunks())
        try:
            if (await receive())["type"] == "http.disconnect" and not streaming.done():
                left.append(time.monotonic())
        finally:
            streaming.cancel()

    return drip


SSE = b"text/event-stream"


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tiny_causal_lm(tmp_path_factory.mktemp("model"))
    engine = Engine(load_model(folder, device="cpu"), default_max_tokens=8)
    seen: list[dict[str, str]] = []
    left: list[float] = []
    app = _recording(runtime_app(engine, served_model_name="tiny-gpt2"), seen)
    dropping = DroppingBackend()
    try:
        with (
            serving_in_thread(app) as model,
            serving_in_thread(_failing) as failing,
            serving_in_thread(_hanging) as hanging,
            serving_in_thread(_cut) as cut,
            serving_in_thread(_dripping(left)) as dripping,
        ):
            yield Backends(
                model=f"{model}/v1",
                unreachable=f"http://127.0.0.1:{free_port()}/v1",
                failing=f"{failing}/v1",
                hanging=f"{hanging}/v1",
                cut=f"{cut}/v1",
                dripping=f"{dripping}/v1",
                dropping=dropping,
                seen=seen,
                left=left,
            )
    finally:
        dropping.close()
        torch.set_num_threads(threads)


@dataclass
class Platform:
    url: str
    keys: dict[str, str]

    def api(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=30
        )

    def sdk(self, role: str = "viewer") -> OpenAI:
        return OpenAI(base_url=f"{self.url}{API}/openai/v1", api_key=self.keys[role], max_retries=0)


@pytest.fixture
def platform(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings], database_url: str
) -> Iterator[Platform]:
    yield from _platform(install, make_settings)


@pytest.fixture
def platform_through_fastapi(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings], database_url: str
) -> Iterator[Platform]:
    """The platform without InferenceRoutes: the inference POSTs reach FastAPI's routes."""
    yield from _platform(install, make_settings, fast_path=False)


def _platform(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings], *, fast_path: bool = True
) -> Iterator[Platform]:
    install("direct", DIRECT_SERVING_PLUGIN)
    app = create_app(make_settings(plugins="direct"))
    if not fast_path:
        fast: Any = InferenceRoutes
        app.user_middleware = [m for m in app.user_middleware if m.cls is not fast]
    with serving_in_thread(app) as url:
        keys = {}
        with app.state.platform.transaction() as session:
            for role in (Role.ADMIN, Role.VIEWER):
                _, keys[role.value] = create_api_key(session=session, name=role.value, role=role)
            _, keys["job"] = create_api_key(
                session=session, name="job", role=Role.JOB, training_job_id="0" * 32
            )
        yield Platform(url, keys)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The gateway reads endpoints only: one database backend is enough here."""
    return f"sqlite:///{tmp_path / 'llmops.db'}"


def endpoint(platform: Platform, name: str, uri: str, **extra: Any) -> dict[str, Any]:
    with platform.api() as api:
        model = api.post(f"{API}/catalog/models", json={"name": f"model-{name}", "uri": uri})
        assert model.status_code == 201, model.text
        body = {"name": name, "modelId": model.json()["id"], "framework": "direct", **extra}
        created = api.post(f"{API}/serving/endpoints", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "ready"
        answer: dict[str, Any] = created.json()
        return answer


def events(response: httpx.Response) -> list[str]:
    return [
        line[len("data: ") :]
        for line in response.read().decode().split("\n")
        if line.startswith("data: ")
    ]


CHAT = {
    "messages": [{"role": "user", "content": "Hi"}],
    "temperature": 0,
    "max_tokens": 6,
    "ignore_eos": True,
}


def test_the_openai_sdk_calls_an_endpoint_by_name_and_the_callers_key_stays_home(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "tiny", backends.model)
    sdk = platform.sdk("viewer")

    listed = [m.id for m in sdk.models.list()]
    chat = sdk.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=6,
        extra_body={"ignore_eos": True},
    )
    streamed = sdk.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=6,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    completion = sdk.completions.create(model="tiny", prompt="The town", max_tokens=4)
    embedding = sdk.embeddings.create(model="tiny", input="The town")

    assert listed == ["tiny"]
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 6
    assert "".join(pieces) == chat.choices[0].message.content
    assert completion.choices[0].text is not None
    assert len(embedding.data[0].embedding) == 32
    platform_keys = set(platform.keys.values())
    assert backends.seen
    for headers in backends.seen:
        assert headers.get("authorization") == "Bearer backend-secret"
        assert not any(key in value for key in platform_keys for value in headers.values())
    with platform.api() as api:
        metrics = api.get("/metrics").text
    assert 'llmops_inference_requests_total{endpoint="tiny",outcome="ok",route="chat"} 2.0' in (
        metrics
    )
    assert 'llmops_inference_tokens_total{endpoint="tiny",kind="completion"}' in metrics


def test_a_stream_passes_every_chunk_the_backend_sends_one_for_one(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "tiny", backends.model)
    body = {**CHAT, "stream": True, "max_tokens": 12}

    with httpx.Client(timeout=30) as direct:
        upstream = events(
            direct.post(f"{backends.model}/chat/completions", json={**body, "model": "tiny-gpt2"})
        )
    with platform.api("viewer") as api:
        answer = api.post(f"{API}/openai/v1/chat/completions", json={**body, "model": "tiny"})
        through = events(answer)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert len(through) == len(upstream) > 3
    assert through[-1] == "[DONE]"

    def text(payloads: list[str]) -> str:
        return "".join(
            json.loads(p)["choices"][0]["delta"].get("content") or ""
            for p in payloads[:-1]
            if json.loads(p)["choices"]
        )

    assert text(through) == text(upstream)


def test_a_primary_that_fails_before_its_first_byte_falls_back(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "tiny", backends.model)
    endpoint(platform, "gone", backends.unreachable, fallbackEndpoint="tiny")
    endpoint(platform, "broken", backends.failing, fallbackEndpoint="tiny")

    with platform.api("viewer") as api:
        answers = {
            name: api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": name})
            for name in ("gone", "broken")
        }

    for answer in answers.values():
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-llmops-endpoint"] == "tiny"
        assert answer.json()["choices"][0]["message"]["content"]


def test_when_no_backend_answers_the_gateway_says_502_or_503_with_retry_after(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "gone", backends.unreachable)
    endpoint(platform, "broken", backends.failing)
    endpoint(platform, "slow", backends.hanging, requestTimeoutSeconds=0.5)

    with platform.api("viewer") as api:
        gone = api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": "gone"})
        broken = api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": "broken"})
        started = time.monotonic()
        slow = api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": "slow"})
        waited = time.monotonic() - started
        unknown = api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": "nope"})

    assert gone.status_code == 503
    assert gone.headers["retry-after"] == "5"
    assert gone.json()["error"]["code"] == "endpoint_unavailable"
    assert "unreachable" in gone.json()["error"]["message"]
    assert broken.status_code == 502
    assert broken.headers["retry-after"] == "5"
    assert "answered 500" in broken.json()["error"]["message"]
    assert slow.status_code == 503
    assert "did not answer within 0.5 s" in slow.json()["error"]["message"]
    assert waited < 5
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


def test_the_endpoints_own_chat_route_needs_no_model(
    platform: Platform, backends: Backends
) -> None:
    created = endpoint(platform, "tiny", backends.model)

    with platform.api("viewer") as api:
        answer = api.post(f"{API}/serving/endpoints/{created['id']}/chat/completions", json=CHAT)

    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]


def test_an_endpoint_is_healthy_only_when_a_real_inference_succeeds(
    platform: Platform, backends: Backends
) -> None:
    tiny = endpoint(platform, "tiny", backends.model)
    broken = endpoint(platform, "broken", backends.failing, fallbackEndpoint="tiny")
    gone = endpoint(platform, "gone", backends.unreachable)

    with platform.api("viewer") as api:
        healths = {
            e["name"]: api.get(f"{API}/serving/endpoints/{e['id']}/health").json()
            for e in (tiny, broken, gone)
        }

    assert healths["tiny"]["healthy"] is True
    assert healths["tiny"]["latencyMs"] > 0
    # the deployment says ready, but the backend cannot answer: not healthy, whatever the
    # fallback could do
    assert healths["broken"]["healthy"] is False
    assert "answered 500" in healths["broken"]["detail"]
    assert healths["broken"]["endpoint"] == "broken"
    assert healths["gone"]["healthy"] is False


def test_a_stream_that_breaks_before_its_first_chunk_falls_back(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "tiny", backends.model)
    endpoint(platform, "cut", backends.cut, fallbackEndpoint="tiny")
    endpoint(platform, "alone", backends.cut)
    body = {**CHAT, "stream": True}

    with platform.api("viewer") as api:
        fell_back = api.post(f"{API}/openai/v1/chat/completions", json={**body, "model": "cut"})
        alone = api.post(f"{API}/openai/v1/chat/completions", json={**body, "model": "alone"})

    assert fell_back.status_code == 200, fell_back.text
    assert fell_back.headers["x-llmops-endpoint"] == "tiny"
    assert events(fell_back)[-1] == "[DONE]"
    assert alone.status_code == 503
    assert alone.headers["retry-after"] == "5"
    assert "before its first chunk" in alone.json()["error"]["message"]


def test_a_client_that_leaves_a_stream_ends_the_backends_stream(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "drip", backends.dripping)
    before = len(backends.left)

    with (
        platform.api("viewer") as api,
        api.stream(
            "POST",
            f"{API}/openai/v1/chat/completions",
            json={**CHAT, "model": "drip", "stream": True},
        ) as answer,
    ):
        lines = answer.iter_lines()
        received = [next(lines) for _ in range(3)]
    # the client has closed its connection in the middle of a 30 s stream

    assert answer.status_code == 200
    assert received[0].startswith("data: ")
    wait_for(lambda: len(backends.left) > before, timeout=10, what="the backend to see it")


def test_inference_needs_a_viewer_key_and_is_not_audited_unless_refused(
    platform: Platform, backends: Backends
) -> None:
    endpoint(platform, "tiny", backends.model)
    path = f"{API}/openai/v1/chat/completions"
    body = {**CHAT, "model": "tiny"}

    with platform.api("viewer") as viewer, platform.api("job") as job, platform.api() as admin:
        allowed = viewer.post(path, json=body)
        anonymous = httpx.post(f"{platform.url}{path}", json=body, timeout=30)
        forbidden = job.post(path, json=body)
        audited = admin.get(f"{API}/governance/audit-logs", params={"limit": 100}).json()

    assert allowed.status_code == 200
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert forbidden.status_code == 403
    inference = [e for e in audited["items"] if e["action"] == "openai_chat_completions"]
    assert [(e["outcome"], e["details"]["status"]) for e in inference] == [
        ("denied", 403),
        ("denied", 401),
    ]
    assert all(e["requestId"] for e in inference)
    assert allowed.headers["x-request-id"]


def test_the_fastapi_routes_answer_as_the_inference_middleware_does(
    platform_through_fastapi: Platform, backends: Backends
) -> None:
    platform = platform_through_fastapi
    created = endpoint(platform, "tiny", backends.model)
    sdk = platform.sdk("viewer")

    chat = sdk.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    pieces = list(
        sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, stream=True
        )
    )
    with platform.api("viewer") as api:
        own = api.post(f"{API}/serving/endpoints/{created['id']}/chat/completions", json=CHAT)
        unknown = api.post(f"{API}/openai/v1/embeddings", json={"model": "nope", "input": "x"})
    anonymous = httpx.post(f"{platform.url}{API}/openai/v1/completions", json={}, timeout=30)

    assert chat.choices[0].message.content is not None
    assert pieces
    assert own.status_code == 200
    assert own.headers["x-llmops-endpoint"] == "tiny"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert anonymous.status_code == 401


def test_a_model_asked_for_by_many_requests_at_once_is_resolved_once() -> None:
    resolved: list[str] = []

    class Counting(Gateway):
        def route(self, session: Any, model: str) -> Route:
            resolved.append(model)
            return Route(Upstream("e1", model, None, 1.0, "not deployed"))

    gateway = Counting(runtime=None, metrics=GatewayMetrics(CollectorRegistry()))  # type: ignore[arg-type]

    sessions: Any = nullcontext

    async def crowd() -> list[Route]:
        routes = await asyncio.gather(*(gateway.find("tiny", sessions) for _ in range(20)))
        gateway.forget()  # an endpoint changed: the next request resolves afresh
        return [*routes, await gateway.find("tiny", sessions)]

    routes = asyncio.run(crowd())

    assert resolved == ["tiny", "tiny"]
    assert {r.primary.endpoint_name for r in routes} == {"tiny"}


def test_a_kept_alive_connection_the_backend_closed_is_tried_again_on_a_new_one(
    platform: Platform, backends: Backends
) -> None:
    dropping = backends.dropping
    endpoint(platform, "dropping", f"http://127.0.0.1:{dropping.port}/v1")
    before = dropping.connections, dropping.answered

    with platform.api("viewer") as api:
        answers = [
            api.post(f"{API}/openai/v1/chat/completions", json={**CHAT, "model": "dropping"})
            for _ in range(3)
        ]

    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    assert dropping.answered - before[1] == 3
    assert dropping.connections - before[0] == 3  # the 2nd and 3rd took a dropped one first


def test_the_endpoints_traffic_route_counts_the_requests_it_forwarded(
    platform: Platform, backends: Backends
) -> None:
    created = endpoint(platform, "tiny", backends.model)
    sdk = platform.sdk("viewer")
    for _ in range(2):
        sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )

    with platform.api("viewer") as api:
        answer = api.get(f"{API}/serving/endpoints/{created['id']}/traffic")
        missing = api.get(f"{API}/serving/endpoints/{'0' * 32}/traffic")
        too_long = api.get(
            f"{API}/serving/endpoints/{created['id']}/traffic", params={"windowSeconds": 7200}
        )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["endpointId"], body["endpoint"]) == (created["id"], "tiny")
    assert body["requests"] == 2
    assert body["outcomes"] == {"ok": 2}
    assert body["errorRate"] == 0.0
    assert body["duration"]["p95Ms"] is not None
    assert sum(point["requests"] for point in body["series"]) == 2
    assert missing.status_code == 404
    assert too_long.status_code == 422
