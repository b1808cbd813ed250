"""Serving in the console: the endpoint list, the deploy form (framework choice with its
capabilities, scaling, the API's errors next to their fields), the endpoint page (framework,
replicas, a real health probe, recent traffic and latency from the server, a snippet that
works as printed, scaling, delete) and the chat page (streamed answers, Stop, the gateway's
502/503).

This module starts its own platform: the shared one runs the example plugin only. Two
serving plugins are installed, both sending inference to a real model runtime
(llmops.model_runtime serving a tiny GPT-2 this module builds: real weights, real
generation, nothing downloaded):

* ``direct`` (llmops.testing.models): the "deployment" is the model URI itself; no
  autoscaling, no replicas to report.
* ``replicated`` (below): declares autoscaling, and keeps its deployments in the platform
  process: one replica record per minimum replica, so the pages' autoscaling settings,
  replica table and scaling edit have a framework to talk to. Its inference target is the
  model URI too.

The page logic knows neither: it reads the frameworks' declared capabilities.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from playwright.sync_api import Browser, Locator, Page, expect

from llmops.model_runtime.app import create_app as runtime_app
from llmops.model_runtime.engine import Engine, Finished, SamplingParams, TextPiece
from llmops.model_runtime.loader import load_model
from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    ok,
    running_platform,
)
from llmops.testing.models import DIRECT_SERVING_PLUGIN, serving_in_thread, tiny_causal_lm
from llmops.testing.plugins import temporary_plugin
from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"

#: A serving framework that declares autoscaling and reports one replica per minimum
#: replica; its deployments live in the platform process, its target is the model URI.
REPLICATED_SERVING_PLUGIN = """
from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.serving import (
    DeploymentState, DeploymentStatus, FrameworkInfo, InferenceProtocol, InferenceTarget,
    ReplicaStatus,
)
from llmops.errors import NotFound
from llmops.plugins.info import PluginInfo

DEPLOYED = {}  # external id -> [model URI, replicas]


class Replicated:
    honours_deadline = True

    def framework(self):
        return FrameworkInfo(
            name="replicated", display_name="Replicated", protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True,
        )

    def status(self, external_id):
        if external_id not in DEPLOYED:
            raise NotFound(f"no deployment {external_id!r}")
        uri, replicas = DEPLOYED[external_id]
        return DeploymentStatus(
            external_id=external_id, state=DeploymentState.READY, ready=True,
            desired_replicas=replicas,
            replicas=[
                ReplicaStatus(name=f"{external_id}-{i}", state="RUNNING") for i in range(replicas)
            ],
            target=InferenceTarget(
                base_url=uri, protocol=InferenceProtocol.OPENAI, model_name="tiny-gpt2"
            ),
        )

    def deploy(self, spec):
        DEPLOYED[spec.name] = [spec.model_uri, spec.autoscaling.min_replicas]
        return self.status(spec.name)

    def update(self, external_id, update):
        self.status(external_id)
        if update.autoscaling is not None:
            DEPLOYED[external_id][1] = update.autoscaling.min_replicas
        return self.status(external_id)

    def delete(self, external_id):
        DEPLOYED.pop(external_id, None)

    def inference_target(self, external_id):
        return self.status(external_id).target

    def health(self):
        return Health(status=HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="replicated", version="1.0", display_name="Replicated",
        capabilities=frozenset({Capability.SERVING}),
    )


@hookimpl
def llmops_serving(settings, context):
    return [Replicated()]
"""


@dataclass
class PacedEngine(Engine):
    """The tiny model at the pace of a real one on a CPU: ``seconds_per_piece`` between
    pieces of text (the tiny GPT-2 makes a token in about a millisecond). A person, and
    this test, can watch an answer grow and stop it while the model is still generating;
    a cancel ends the wait at once."""

    seconds_per_piece: float = 0.02

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[TextPiece | Finished]:
        cancel = cancel or threading.Event()
        for event in super().generate(prompt, params, cancel=cancel):
            yield event
            if isinstance(event, TextPiece):
                cancel.wait(self.seconds_per_piece)


async def _failing(scope: Any, receive: Any, send: Any) -> None:
    """A backend that answers every request with a 500."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"the backend broke"})


@dataclass(frozen=True)
class Backends:
    model: str  # the model runtime's OpenAI base URL
    failing: str  # answers 500
    unreachable: str  # nothing listens there
    engine: PacedEngine


@dataclass(frozen=True)
class Served:
    server: ConsoleServer
    backends: Backends

    @property
    def api(self) -> httpx.Client:
        return self.server.api


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"))
    engine = PacedEngine(load_model(folder, device="cpu"), default_max_tokens=32)
    try:
        with (
            serving_in_thread(runtime_app(engine, served_model_name="tiny-gpt2")) as model,
            serving_in_thread(_failing) as failing,
        ):
            yield Backends(
                model=f"{model}/v1",
                failing=f"{failing}/v1",
                unreachable=f"http://127.0.0.1:{free_port()}/v1",
                engine=engine,
            )
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served(backends: Backends) -> Iterator[Served]:
    root = Path(tempfile.mkdtemp(prefix="console-serving-"))
    try:
        with (
            temporary_plugin(root, "direct", DIRECT_SERVING_PLUGIN),
            temporary_plugin(root, "replicated", REPLICATED_SERVING_PLUGIN),
            running_platform(
                env={
                    "LLMOPS_PLUGINS": "direct,replicated",
                    # the plugins' modules and dist-info: found like installed ones
                    "PYTHONPATH": os.pathsep.join(
                        str(root / f"site-{name}") for name in ("direct", "replicated")
                    ),
                }
            ) as server,
        ):
            yield Served(server, backends)
    except ConsoleNotBuilt as exc:
        pytest.fail(str(exc))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tab(served: Served, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Console]:
    """A fresh browser tab on this module's platform (as the shared ``console`` fixture:
    any console error the test did not announce fails it)."""
    with console_tab(served.server, browser, request) as console:
        yield console


# -- arranging through the API ------------------------------------------------------------


def _model(api: httpx.Client, name: str, uri: str) -> str:
    """A catalog model whose URI is a backend's OpenAI base URL (what both plugins serve)."""
    body = {"name": name, "uri": uri, "task": "text-generation"}
    return str(ok(api.post(f"{API}/catalog/models", json=body), 201)["id"])


def _endpoint(
    served: Served, name: str, uri: str, framework: str = "direct", **extra: Any
) -> dict[str, Any]:
    model = _model(served.api, f"model-{name}", uri)
    body = {"name": name, "modelId": model, "framework": framework, **extra}
    created = ok(served.api.post(f"{API}/serving/endpoints", json=body), 201)
    assert created["status"] == "ready", created
    return created


def _answer(served: Served, endpoint_id: str, message: str, max_tokens: int) -> str:
    """The endpoint's whole answer at temperature 0, not streamed, through the API."""
    body = {
        "messages": [{"role": "user", "content": message}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    path = f"{API}/serving/endpoints/{endpoint_id}/chat/completions"
    answer = ok(served.api.post(path, json=body))
    return str(answer["choices"][0]["message"]["content"])


# -- reading the pages --------------------------------------------------------------------


def _input(page: Page | Locator, label: str) -> Locator:
    """The input labelled ``label`` exactly (a required field's label ends with " *")."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def _field(page: Page, label: str) -> Locator:
    """The form field (label, input, hint, error) whose input is labelled ``label``."""
    return page.locator(".field").filter(has=_input(page, label))


def _detail(page: Page, term: str) -> Locator:
    """The value next to ``term`` in a details list."""
    return page.locator(f'xpath=//dt[normalize-space()="{term}"]/following-sibling::dd[1]')


#: the text of each answer in the conversation
ANSWER_TEXT = '[data-testid="chat-answer"] [data-testid="chat-text"]'


def _last_answer(page: Page) -> Locator:
    return page.get_by_test_id("chat-answer").last


def _answer_text(page: Page) -> str:
    """The last answer's exact text (textContent: the model's newlines included)."""
    text = page.evaluate(
        """(selector) => {
            const all = document.querySelectorAll(selector);
            return all.length ? all[all.length - 1].textContent : null;
        }""",
        ANSWER_TEXT,
    )
    assert isinstance(text, str)
    return text


def _record_answer_states(page: Page) -> None:
    """Record the last answer's text at every change of the conversation's DOM."""
    page.evaluate(
        """(selector) => {
            window.__answerStates = [];
            const log = document.querySelector('[data-testid="chat-log"]');
            new MutationObserver(() => {
                const all = log.querySelectorAll(selector);
                if (all.length) window.__answerStates.push(all[all.length - 1].textContent);
            }).observe(log, { subtree: true, childList: true, characterData: true });
        }""",
        ANSWER_TEXT,
    )


def _ask(page: Page, message: str, *, max_tokens: int, temperature: float = 0) -> None:
    page.get_by_label("Max tokens").fill(str(max_tokens))
    page.get_by_label("Temperature").fill(str(temperature))
    page.get_by_label("Message").fill(message)
    page.get_by_role("button", name="Send").click()


# -- the list and the deploy form -----------------------------------------------------------


def test_deploying_through_the_form_lists_the_endpoint_and_it_becomes_ready(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    model_name = unique("served-model")
    _model(served.api, model_name, served.backends.model)
    name = unique("deployed")
    tab.sign_in("editor")
    page = tab.open("/serving", "endpoints")
    page.get_by_role("link", name="Deploy", exact=True).first.click()
    tab.wait_ready("endpoint-deploy")

    # each framework with what it can do; the settings follow the chosen one
    direct = page.locator('[data-framework="direct"]')
    replicated = page.locator('[data-framework="replicated"]')
    expect(direct).to_contain_text("Direct")

    def capability(framework: Locator, name: str) -> Locator:
        return framework.locator(f'[data-capability="{name}"]')

    expect(capability(direct, "autoscaling")).to_have_attribute("data-on", "false")
    expect(capability(replicated, "autoscaling")).to_have_attribute("data-on", "true")
    expect(capability(replicated, "canary")).to_have_attribute("data-on", "false")
    direct.get_by_role("radio").check()
    expect(page.get_by_test_id("no-autoscaling")).to_be_visible()
    expect(_input(page, "Replicas")).to_be_visible()
    expect(page.get_by_label("Max replicas")).to_have_count(0)
    expect(page.get_by_test_id("canary")).to_have_count(0)  # neither framework has canaries
    replicated.get_by_role("radio").check()
    expect(page.get_by_test_id("no-autoscaling")).to_have_count(0)

    _input(page, "Name").fill(name)
    _input(page, "Model").select_option(label=f"{model_name} (version 1)")
    page.get_by_label("Min replicas").fill("2")
    page.get_by_label("Max replicas").fill("3")
    page.get_by_label("Target ongoing requests").fill("4")
    page.get_by_label("Request timeout (s)").fill("30")
    page.get_by_role("button", name="Add option").click()
    page.get_by_label("Option 1 name").fill("threads")
    page.get_by_label("Option 1 value").fill("2")
    tab.screenshot("serving-deploy-form")
    page.get_by_role("button", name="Deploy", exact=True).click()

    tab.wait_ready("endpoint")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    created = served.api.get(f"{API}/serving/endpoints", params={"limit": 200}).json()["items"]
    endpoint = next(e for e in created if e["name"] == name)
    assert page.url.endswith(f"/serving/{endpoint['id']}")
    deployment = served.api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json()
    assert deployment["spec"]["autoscaling"] == {
        "minReplicas": 2,
        "maxReplicas": 3,
        "targetOngoingRequests": 4.0,
        "scaleMetric": None,
        "scaleTarget": None,
    }
    assert deployment["spec"]["options"] == {"threads": 2}
    assert endpoint["requestTimeoutSeconds"] == 30

    page.get_by_role("link", name="Serving endpoints").click()
    tab.wait_ready("endpoints")
    row = page.locator(f'tr[data-endpoint="{name}"]')
    expect(row).to_contain_text("Replicated")
    expect(row).to_contain_text(f"{model_name} (version 1)")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "ready")
    expect(row).to_contain_text("Ready")
    tab.screenshot("serving-list")


def test_invalid_deploy_input_shows_the_apis_error_next_to_its_field(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    taken = _endpoint(served, unique("taken"), served.backends.model)
    model_name = unique("form-model")
    _model(served.api, model_name, served.backends.model)
    tab.sign_in("editor")
    page = tab.open("/serving/new", "endpoint-deploy")
    page.locator('[data-framework="direct"]').get_by_role("radio").check()
    _input(page, "Name").fill(unique("invalid"))
    _input(page, "Model").select_option(label=f"{model_name} (version 1)")
    deploy = page.get_by_role("button", name="Deploy", exact=True)

    # the platform's request validation (the form lets any positive timeout through)
    tab.expect_console_error("status of 422")
    page.get_by_label("Request timeout (s)").fill("5000")
    deploy.click()
    timeout = _field(page, "Request timeout (s)")
    expect(timeout.get_by_role("alert")).to_contain_text("less than or equal to 3600")
    expect(page.get_by_label("Request timeout (s)")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Request timeout (s)").fill("60")
    expect(timeout.get_by_role("alert")).to_have_count(0)

    # a rule only the platform knows: the fallback must name an endpoint
    page.get_by_label("Fallback endpoint").fill("no-such-endpoint")
    deploy.click()
    expect(_field(page, "Fallback endpoint").get_by_role("alert")).to_contain_text(
        "no endpoint 'no-such-endpoint' to fall back to"
    )
    tab.screenshot("serving-deploy-errors")

    # a name that is taken
    tab.expect_console_error("status of 409")
    page.get_by_label("Fallback endpoint").fill(taken["name"])
    _input(page, "Name").fill(taken["name"])
    deploy.click()
    expect(_field(page, "Name").get_by_role("alert")).to_contain_text("already exists")
    assert page.url.endswith("/serving/new")


# -- the endpoint's page ----------------------------------------------------------------------


def test_the_endpoint_page_shows_framework_replicas_health_latency_and_a_snippet_that_works(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    name = unique("shown")
    endpoint = _endpoint(
        served,
        name,
        served.backends.model,
        framework="replicated",
        autoscaling={"minReplicas": 2, "maxReplicas": 4},
    )
    _answer(served, endpoint["id"], "Hello", max_tokens=4)  # one request in the metrics
    tab.sign_in("viewer")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")

    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator('[data-field="framework"]')).to_contain_text("Replicated")
    expect(page.locator('[data-field="scaling"]')).to_contain_text("2 to 4")
    replicas = page.get_by_test_id("replicas").locator("tbody tr")
    expect(replicas).to_have_count(2)
    expect(replicas.first).to_contain_text(f"{name}-0")
    expect(replicas.first.locator("[data-status]")).to_have_attribute("data-status", "RUNNING")

    # health: a real probe through the gateway, with its latency
    health = page.get_by_test_id("health")
    expect(health.locator('[data-status="healthy"]')).to_be_visible()
    expect(health.locator('[data-field="latency"]')).to_have_text(
        re.compile(r"^\d+(\.\d+)? (ms|s)$")
    )
    expect(health.locator('[data-field="health-detail"]')).to_have_text(
        "a one-token chat completion succeeded"
    )
    probe_url = f"/serving/endpoints/{endpoint['id']}/health"
    with page.expect_response(lambda r: r.url.endswith(probe_url)) as probed:
        health.get_by_role("button", name="Check again").click()
    assert probed.value.json()["healthy"] is True

    # traffic and latency as the server counts them: the request made above
    latency = page.get_by_test_id("latency")
    since_start = latency.locator('tr[data-period="total"]')
    expect(since_start.locator('[data-field="requests"]')).to_have_text("1")
    expect(since_start.locator('[data-field="p50"]')).to_have_text(re.compile(r"\d"))

    # the snippets name the endpoint and the gateway, and work as printed
    snippet = page.get_by_test_id("snippet-code")
    base_url = f"{served.server.url}{API}/openai/v1"
    expect(snippet).to_contain_text(f'base_url="{base_url}"')
    expect(snippet).to_contain_text(f'model="{name}"')
    tab.screenshot("serving-endpoint")
    env = {
        **os.environ,
        "LLMOPS_API_KEY": served.server.key("viewer"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    python = subprocess.run(
        [sys.executable, "-c", snippet.text_content() or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert python.returncode == 0, python.stderr
    page.get_by_role("tab", name="curl").click()
    expect(snippet).to_have_attribute("data-language", "curl")
    expect(snippet).to_contain_text(f"curl {base_url}/chat/completions")
    curl = subprocess.run(
        ["bash", "-c", snippet.text_content() or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert curl.returncode == 0, curl.stderr
    assert json.loads(curl.stdout)["model"] == "tiny-gpt2", curl.stdout

    # both calls show at the next refresh, in the last minute as in the last hour
    latency.get_by_role("button", name="Refresh").click()
    recent = latency.locator('tr[data-period="recent"]')
    expect(recent.locator('[data-field="requests"]')).to_have_text("3")
    expect(since_start.locator('[data-field="requests"]')).to_have_text("3")
    expect(recent.locator('[data-field="p95"]')).to_have_text(re.compile(r"\d"))


def test_editing_the_scaling_changes_the_replicas_the_framework_runs(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    endpoint = _endpoint(
        served,
        unique("scaled"),
        served.backends.model,
        framework="replicated",
        autoscaling={"minReplicas": 1, "maxReplicas": 2},
    )
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")
    replicas = page.get_by_test_id("replicas").locator("tbody tr")
    expect(replicas).to_have_count(1)

    page.get_by_role("button", name="Edit scaling").click()
    form = page.get_by_test_id("scale-form")
    form.get_by_label("Min replicas").fill("4")
    form.get_by_label("Max replicas").fill("3")
    form.get_by_role("button", name="Save scaling").click()
    expect(_field(page, "Max replicas").get_by_role("alert")).to_have_text("At least the minimum.")
    form.get_by_label("Max replicas").fill("5")
    form.get_by_role("button", name="Save scaling").click()

    expect(form).to_have_count(0)
    expect(replicas).to_have_count(4)
    expect(page.locator('[data-field="scaling"]')).to_contain_text("4 to 5")
    scaling = served.api.get(f"{API}/serving/endpoints/{endpoint['id']}/deployment").json()
    assert scaling["spec"]["autoscaling"]["minReplicas"] == 4
    assert scaling["spec"]["autoscaling"]["maxReplicas"] == 5


def test_deleting_an_endpoint_asks_first_and_returns_to_the_list(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    endpoint = _endpoint(served, unique("doomed"), served.backends.model)
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")
    page.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("group", name="Delete this endpoint and its deployment?")
    confirm.get_by_role("button", name="Keep").click()
    assert served.api.get(f"{API}/serving/endpoints/{endpoint['id']}").status_code == 200

    page.get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete").click()
    tab.wait_ready("endpoints")
    assert page.url.endswith("/serving")
    expect(page.locator(f'tr[data-endpoint="{endpoint["name"]}"]')).to_have_count(0)
    assert served.api.get(f"{API}/serving/endpoints/{endpoint['id']}").status_code == 404


# -- the chat page ------------------------------------------------------------------------------


def test_the_chat_streams_an_answer_that_grows_piece_by_piece_into_the_unstreamed_one(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    endpoint = _endpoint(served, unique("chatty"), served.backends.model)
    expected = _answer(served, endpoint["id"], "Hi", max_tokens=40)
    assert expected
    tab.sign_in("viewer")  # calling a model is a viewer's right
    page = tab.open(f"/serving/{endpoint['id']}/chat", "endpoint-chat")
    _record_answer_states(page)

    _ask(page, "Hi", max_tokens=40)

    answer = _last_answer(page)
    expect(answer).to_have_attribute("data-state", "streaming")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    assert _answer_text(page) == expected
    states: list[str] = page.evaluate("() => window.__answerStates")
    grown = [s for i, s in enumerate(states) if s and (i == 0 or s != states[i - 1])]
    assert len(grown) >= 5, f"the answer did not grow in steps: {grown!r}"
    for shorter, longer in itertools.pairwise(grown):
        assert longer.startswith(shorter), (shorter, longer)
        assert len(longer) > len(shorter), (shorter, longer)
    assert grown[-1] == expected
    counted = re.match(r"(\d+) chunks", answer.get_by_test_id("chat-meta").inner_text())
    assert counted, answer.get_by_test_id("chat-meta").inner_text()
    assert int(counted.group(1)) >= len(grown), (counted.group(1), len(grown))
    expect(answer.get_by_test_id("chat-meta")).to_contain_text("stopped at max tokens")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    tab.screenshot("serving-chat")


def test_stop_aborts_the_stream_and_the_model_stops_generating(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    endpoint = _endpoint(served, unique("stopped"), served.backends.model)
    engine = served.backends.engine
    cancelled = engine.stats.cancelled
    tab.sign_in("viewer")
    page = tab.open(f"/serving/{endpoint['id']}/chat", "endpoint-chat")

    _ask(page, "Hi", max_tokens=900)  # about 9 s of text at the model's pace
    answer = _last_answer(page)
    page.wait_for_function(
        """(selector) => {
            const t = document.querySelector(selector);
            return t && t.textContent.length >= 5;
        }""",
        arg=ANSWER_TEXT,
    )
    page.get_by_role("button", name="Stop").click()

    expect(answer).to_have_attribute("data-state", "stopped")
    expect(answer.get_by_test_id("chat-meta")).to_contain_text("Stopped after")
    # the abort reached the model through the gateway: it stopped before its 900 tokens
    wait_for(lambda: engine.stats.cancelled > cancelled, timeout=15, what="a cancelled generation")
    assert engine.stats.last_finish_reason == "cancelled"
    stopped_at = _answer_text(page)
    assert len(stopped_at) >= 5
    # nothing arrives after Stop: the page has no stream left (and the model none)
    page.get_by_label("Message").fill("again")
    assert _answer_text(page) == stopped_at
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


@pytest.mark.parametrize(
    ("backend", "status", "code", "reason"),
    [
        ("unreachable", 503, "endpoint_unavailable", "the backend did not answer"),
        ("failing", 502, "upstream_error", "the backend answered 500: the backend broke"),
    ],
)
def test_an_endpoint_whose_backend_is_down_is_unhealthy_and_its_chat_shows_the_gateways_error(
    tab: Console,
    served: Served,
    unique: Callable[[str], str],
    backend: str,
    status: int,
    code: str,
    reason: str,
) -> None:
    endpoint = _endpoint(served, unique(f"down-{backend}"), getattr(served.backends, backend))
    tab.sign_in("viewer")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")

    health = page.get_by_test_id("health")
    expect(health.locator('[data-status="unhealthy"]')).to_be_visible()
    expect(health.locator('[data-field="health-detail"]')).to_contain_text(reason)
    expect(_detail(page, "Reason")).to_contain_text(reason)
    with page.expect_response(lambda r: r.url.endswith("/health")) as probed:
        health.get_by_role("button", name="Check again").click()
    assert probed.value.json()["healthy"] is False
    tab.screenshot(f"serving-unhealthy-{backend}")

    tab.expect_console_error(f"status of {status}")
    page.get_by_role("link", name="Open chat").click()
    tab.wait_ready("endpoint-chat")
    _ask(page, "Hi", max_tokens=8)

    error = page.get_by_test_id("chat-error")
    expect(error).to_contain_text(f"{status} {code}: no backend could answer")
    expect(error).to_contain_text("Try again in 5 s.")
    expect(_last_answer(page)).to_have_attribute("data-state", "failed")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    tab.screenshot(f"serving-chat-{status}")


# -- roles ------------------------------------------------------------------------------------


def test_a_viewer_sees_no_deploy_delete_or_scaling_control(
    tab: Console, served: Served, unique: Callable[[str], str]
) -> None:
    endpoint = _endpoint(served, unique("viewed"), served.backends.model, framework="replicated")
    tab.sign_in("viewer")
    page = tab.open("/serving", "endpoints")
    expect(page.locator(f'tr[data-endpoint="{endpoint["name"]}"]')).to_be_visible()
    expect(page.get_by_role("link", name="Deploy", exact=True)).to_have_count(0)

    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")
    expect(page.get_by_test_id("replicas")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.get_by_role("button", name="Edit scaling")).to_have_count(0)
    expect(page.get_by_role("link", name="Open chat")).to_be_visible()

    page = tab.open("/serving/new", "not-found")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")


# -- every serving page: timed, and its loading, empty and error states -------------------------


@pytest.fixture(scope="module")
def shown(served: Served) -> dict[str, str]:
    endpoint = _endpoint(served, f"tour-{uuid.uuid4().hex[:6]}", served.backends.model)
    return {"endpoint": endpoint["id"]}


PAGES = [
    ("endpoints", "/serving"),
    ("endpoint", "/serving/{endpoint}"),
    ("endpoint-deploy", "/serving/new"),
    ("endpoint-chat", "/serving/{endpoint}/chat"),
]
#: pages that load something, with the call their content is made of
LOADED = [
    ("endpoints", "/serving", rf"{API}/serving/endpoints(\?|$)"),
    ("endpoint", "/serving/{endpoint}", rf"{API}/serving/endpoints/[^/?]+$"),
    ("endpoint-chat", "/serving/{endpoint}/chat", rf"{API}/serving/endpoints/[^/?]+$"),
]


def _matcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda url: compiled.search(url.split("#", 1)[0]) is not None


@pytest.mark.parametrize(("ready", "template"), PAGES, ids=[p[0] for p in PAGES])
def test_every_serving_page_becomes_interactive(
    tab: Console, shown: dict[str, str], ready: str, template: str
) -> None:
    tab.sign_in("admin")
    for _ in range(3):  # timed three times from a full load; the report takes the median
        page = tab.open(template.format(**shown), ready)
    expect(page.locator("h1")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    tab.screenshot(f"page-{ready}")


@pytest.mark.parametrize(("ready", "template", "call"), LOADED, ids=[p[0] for p in LOADED])
def test_every_serving_page_says_when_it_cannot_load(
    tab: Console, shown: dict[str, str], ready: str, template: str, call: str
) -> None:
    tab.sign_in("admin")
    tab.fail_api(_matcher(call), status=503)
    page = tab.open(template.format(**shown), ready, timed=False)
    error = page.get_by_role("alert").filter(has_text="the test made this call fail")
    expect(error.first).to_be_visible()
    expect(page.get_by_role("button", name="Try again").first).to_be_visible()


@pytest.mark.parametrize(("ready", "template", "call"), LOADED, ids=[p[0] for p in LOADED])
def test_every_serving_page_shows_that_it_is_loading(
    tab: Console, shown: dict[str, str], ready: str, template: str, call: str
) -> None:
    tab.sign_in("admin")
    held = tab.hold_api(_matcher(call))
    tab.page.goto(tab.server.url + template.format(**shown))
    loading = tab.page.get_by_role("status").filter(has_text="Loading")
    expect(loading.first).to_be_visible()
    tab.wait_until_held(held)
    what = loading.first.inner_text()
    for route in held:
        route.continue_()
    tab.wait_ready(ready)
    tab.page.unroute_all(behavior="ignoreErrors")
    expect(tab.page.get_by_role("status").filter(has_text=what)).to_have_count(0)


def test_the_endpoint_list_has_an_empty_state_with_the_deploy_action(tab: Console) -> None:
    tab.sign_in("editor")
    tab.answer_api(_matcher(rf"{API}/serving/endpoints(\?|$)"), {"items": [], "nextCursor": None})
    page = tab.open("/serving", "endpoints", timed=False)
    empty = page.get_by_test_id("empty-state")
    expect(empty).to_contain_text("No serving endpoints yet")
    expect(empty.get_by_role("link", name="Deploy", exact=True)).to_be_visible()
