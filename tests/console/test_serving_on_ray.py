"""Deploy and chat in the console with the real Ray Serve plugin: a platform whose only
serving framework is Ray Serve (a local Ray it starts on the first deployment), a tiny
real GPT-2 in the catalog, the deploy form, the endpoint page following the deployment
until Ready with its replica, and the chat page streaming the model's answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

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

API = "/llm-ops/v1"


@pytest.fixture(scope="module")
def ray_platform() -> Iterator[ConsoleServer]:
    env = {"LLMOPS_PLUGINS": "rayserve", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        with running_platform(env=env) as server:
            yield server
    except ConsoleNotBuilt as exc:
        pytest.fail(str(exc))


@pytest.fixture
def tab(
    ray_platform: ConsoleServer, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(ray_platform, browser, request) as console:
        yield console


def test_a_model_deployed_on_ray_serve_from_the_console_streams_its_answer_in_the_chat(
    tab: Console, ray_platform: ConsoleServer, tmp_path: Path
) -> None:
    folder = tiny_causal_lm(tmp_path / "model")
    created = ray_platform.api.post(
        f"{API}/catalog/models",
        json={"name": "tiny-on-ray", "uri": folder.as_uri(), "task": "text-generation"},
    )
    assert created.status_code == 201, created.text

    tab.sign_in("editor")
    page = tab.open("/serving/new", "endpoint-deploy")
    ray = page.locator('[data-framework="rayserve"]')
    expect(ray).to_contain_text("Ray Serve")
    expect(ray.locator('[data-capability="autoscaling"]')).to_have_attribute("data-on", "true")
    ray.get_by_role("radio").check()
    page.get_by_label(re.compile(r"^Name( \*)?$")).fill("ray-chat")
    page.get_by_label(re.compile(r"^Model( \*)?$")).select_option(label="tiny-on-ray (version 1)")
    page.get_by_label("Min replicas").fill("1")
    page.get_by_label("Max replicas").fill("2")
    page.get_by_role("button", name="Deploy", exact=True).click()
    tab.wait_ready("endpoint")

    # the page follows the deployment: Ray starts, the replica loads the model
    header = page.locator(".subtitle [data-status]")
    expect(header).to_have_attribute("data-status", "ready", timeout=180_000)
    replicas = page.get_by_test_id("replicas")
    expect(replicas).to_contain_text("Running")
    health = page.get_by_test_id("health")
    page.get_by_role("button", name="Check again").click()
    expect(health).to_contain_text("a one-token chat completion succeeded", timeout=30_000)
    tab.screenshot("serving-ray-endpoint")

    page.get_by_role("link", name="Open chat").click()
    tab.wait_ready("endpoint-chat")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("The town")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_test_id("chat-answer").last
    expect(answer).to_have_attribute("data-state", "done", timeout=60_000)
    text = answer.get_by_test_id("chat-text").text_content()
    assert text, "the model answered nothing"
    counted = re.match(r"(\d+) chunks", answer.get_by_test_id("chat-meta").inner_text())
    assert counted, answer.get_by_test_id("chat-meta").inner_text()
    assert int(counted.group(1)) >= 2, "the answer came in one piece, not streamed"
    tab.screenshot("serving-ray-chat")

    endpoint = next(
        e
        for e in ray_platform.api.get(f"{API}/serving/endpoints").json()["items"]
        if e["name"] == "ray-chat"
    )
    path = f"{API}/serving/endpoints/{endpoint['id']}/chat/completions"
    direct = ray_platform.api.post(
        path,
        json={
            "messages": [{"role": "user", "content": "The town"}],
            "max_tokens": 12,
            "temperature": 0,
        },
    ).json()
    assert text == direct["choices"][0]["message"]["content"]
