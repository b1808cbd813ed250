"""The inference gateway, end to end over real HTTP: the platform on uvicorn, the official
OpenAI SDK as the client, and behind a serving plugin a real model runtime serving a tiny
GPT-2 (plus backends that are unreachable, answer 500, or hang)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from openai import OpenAI

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.model_runtime.app import create_app as runtime_app
from llmops.model_runtime.engine import Engine
from llmops.model_runtime.loader import load_model
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.models import DIRECT_SERVING_PLUGIN, serving_in_thread, tiny_causal_lm
from llmops.testing.plugins import PluginInstaller
from llmops.testing.processes import free_port

API = "/llm-ops/v1"


@dataclass
class Backends:
    model: str  # the model runtime's OpenAI base URL
    unreachable: str
    failing: str  # answers 500
    hanging: str  # never answers
    seen: list[dict[str, str]]  # headers the model runtime received


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
    if scope["type"] != "http":
        return
    await asyncio.sleep(30)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tiny_causal_lm(tmp_path_factory.mktemp("model"))
    engine = Engine(load_model(folder, device="cpu"), default_max_tokens=8)
    seen: list[dict[str, str]] = []
    app = _recording(runtime_app(engine, served_model_name="tiny-gpt2"), seen)
    try:
        with (
            serving_in_thread(app) as model,
            serving_in_thread(_failing) as failing,
            serving_in_thread(_hanging) as hanging,
        ):
            yield Backends(
                model=f"{model}/v1",
                unreachable=f"http://127.0.0.1:{free_port()}/v1",
                failing=f"{failing}/v1",
                hanging=f"{hanging}/v1",
                seen=seen,
            )
    finally:
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
    install("direct", DIRECT_SERVING_PLUGIN)
    app = create_app(make_settings(plugins="direct"))
    with serving_in_thread(app) as url:
        keys = {}
        with app.state.platform.transaction() as session:
            for role in (Role.ADMIN, Role.VIEWER):
                _, keys[role.value] = create_api_key(session=session, name=role.value, role=role)
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
