"""Deploy and chat in the console with the real Ray Serve plugin: a platform whose only
serving framework is Ray Serve (a local Ray it starts on the first deployment), a tiny
real GPT-2 in the catalog, the deploy form, the endpoint page following the deployment
until Ready with its replica, and the chat page streaming the model's answer. On the same
platform (so the same Ray), a tiny GPT-2 imported from the Hub double through the Hub
plugin is deployed on Ray Serve through the API and answers a chat through the gateway."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)
from llmops.testing.hf import HfHubDouble, running_hf_hub
from llmops.testing.models import tiny_causal_lm
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
HUB_REPO = "acme/tiny-gpt2"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfHubDouble]:
    """The Hub double the platform's Hub plugin imports from; no handler may crash."""
    with running_hf_hub(work_dir=tmp_path_factory.mktemp("hf-hub")) as double:
        yield double
        double.check_errors()


@pytest.fixture(scope="module")
def ray_platform(
    hub: HfHubDouble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    home = tmp_path_factory.mktemp("ray-platform-home")
    env = {
        "LLMOPS_PLUGINS": "rayserve,hf",
        "LLMOPS_HF__ENDPOINT": hub.url,
        "LLMOPS_HF__TOKEN": hub.write_token,
        "LLMOPS_HF__CACHE_DIR": str(home / "hf-cache"),
        "HF_HOME": str(home / "hf-home"),
        # huggingface_hub online, or the Hub plugin takes the Hub for down; Ray Serve's
        # replicas are kept offline by the plugin (their runtime env: HF_HUB_OFFLINE=1)
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
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


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_model_imported_from_the_hub_is_deployed_on_ray_serve_and_answers_a_chat(
    ray_platform: ConsoleServer, hub: HfHubDouble, tmp_path: Path
) -> None:
    api = ray_platform.api
    sha = hub.add_repo(
        HUB_REPO,
        _files(tiny_causal_lm(tmp_path / "hub-model")),
        license="mit",
        pipeline_tag="text-generation",
        library_name="transformers",
    )

    accepted = api.post(
        f"{API}/catalog/models/import", json={"repoId": HUB_REPO, "name": "hub-tiny-on-ray"}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["source"] == f"hf://{HUB_REPO}@{sha}"
    model: dict[str, Any] = {}

    def imported() -> bool:
        model.update(api.get(f"{API}/catalog/models/{accepted.json()['id']}").json())
        return bool(model["status"] != "importing")

    wait_for(imported, timeout=60, what="the import from the Hub double")
    assert model["status"] == "ready", model["importStatus"]
    assert (model["task"], model["framework"]) == ("text-generation", "transformers")
    assert model["uri"].startswith("file://")

    created = api.post(
        f"{API}/serving/endpoints",
        json={
            "name": "hub-ray-chat",
            "modelId": model["id"],
            "framework": "rayserve",
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
        },
    )
    assert created.status_code in (201, 202), created.text
    endpoint = created.json()
    deployment: dict[str, Any] = {}

    def settled() -> bool:
        deployment.update(api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json())
        return deployment["state"] in ("ready", "failed")

    wait_for(settled, timeout=180, interval=1, what="the Hub model's replica on Ray Serve")
    assert deployment["state"] == "ready", deployment["status"]
    assert deployment["spec"]["modelUri"] == model["uri"]

    chat = {
        "model": "hub-ray-chat",
        "messages": [{"role": "user", "content": "The town"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    answer = api.post(f"{API}/openai/v1/chat/completions", json=chat)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"], answer.json()

    deleted = api.delete(f"{API}/serving/endpoints/{endpoint['id']}")
    assert deleted.status_code in (202, 204), deleted.text
    if deleted.status_code == 202:  # queued: the application leaves Ray from the outbox
        operation = f"{API}/operations/{deleted.json()['operationId']}"
        wait_for(
            lambda: api.get(operation).json()["status"] == "succeeded",
            timeout=60,
            what="the Serve application deleted",
        )
    gone = api.post(f"{API}/openai/v1/chat/completions", json=chat)
    assert gone.status_code == 404, gone.text
