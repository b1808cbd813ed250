"""Deploy and roll out in the console with the real KServe plugin, against the Kubernetes
API double (llmops.testing.kubernetes): the deploy form offers KServe's runtimes and
scale metrics, the endpoint page follows the InferenceService to Ready, shows the traffic
split and the rollout state, and an editor canaries a second model and promotes it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)
from llmops.testing.kubernetes import KubernetesApiDouble
from llmops.testing.models import tiny_causal_lm

API = "/llm-ops/v1"
TOKEN = "console-kserve-token"
SETTLED_MS = 60_000


@dataclass(frozen=True)
class KServePlatform:
    server: ConsoleServer
    cluster: KubernetesApiDouble
    models: Path


@pytest.fixture(scope="module")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServePlatform]:
    root = tmp_path_factory.mktemp("kserve-console-models")
    tiny_causal_lm(root / "first", seed=0)
    tiny_causal_lm(root / "second", seed=1)
    with KubernetesApiDouble(token=TOKEN, storage={"llmops-models": root}) as cluster:
        env = {
            "LLMOPS_PLUGINS": "kserve",
            "LLMOPS_KSERVE__API_URL": cluster.url,
            "LLMOPS_KSERVE__TOKEN": TOKEN,
            "LLMOPS_KSERVE__STORAGE_URI_PREFIXES": json.dumps({f"{root}/": "pvc://llmops-models/"}),
            "LLMOPS_SERVING_SYNC_INTERVAL_SECONDS": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        try:
            with running_platform(env=env) as server:
                yield KServePlatform(server, cluster, root)
        except ConsoleNotBuilt as exc:
            pytest.fail(str(exc))
        cluster.check_errors()


@pytest.fixture
def tab(
    kserve: KServePlatform, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(kserve.server, browser, request) as console:
        yield console


def _split_percent(page: Page, tag: str) -> object:
    return (
        page.get_by_test_id("traffic-splits")
        .locator(f'tr[data-tag="{tag}"]')
        .locator('[data-field="percent"]')
    )


def test_an_endpoint_on_kserve_is_deployed_canaried_and_promoted_from_the_console(
    tab: Console, kserve: KServePlatform
) -> None:
    api = kserve.server.api
    for name in ("first", "second"):
        created = api.post(
            f"{API}/catalog/models",
            json={"name": f"kserve-{name}", "uri": str(kserve.models / name)},
        )
        assert created.status_code == 201, created.text

    tab.sign_in("editor")
    page = tab.open("/serving/new", "endpoint-deploy")
    framework = page.locator('[data-framework="kserve"]')
    expect(framework).to_contain_text("KServe")
    expect(framework.locator('[data-capability="canary"]')).to_have_attribute("data-on", "true")
    framework.get_by_role("radio").check()
    page.get_by_label(re.compile(r"^Name( \*)?$")).fill("kserve-chat")
    page.get_by_label(re.compile(r"^Model( \*)?$")).select_option(label="kserve-first (version 1)")
    expect(page.get_by_label("Runtime")).to_have_value("kserve-huggingfaceserver")
    page.get_by_label("Min replicas").fill("1")
    page.get_by_label("Max replicas").fill("3")
    page.get_by_label("Scale metric").select_option("concurrency")
    page.get_by_label("Scale target").fill("4")
    page.get_by_role("button", name="Deploy", exact=True).click()
    tab.wait_ready("endpoint")

    # the InferenceService as KServe got it
    obj = kserve.cluster.get_object("kserve-chat")
    assert obj is not None
    predictor = obj["spec"]["predictor"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 4)
    assert predictor["model"]["storageUri"] == "pvc://llmops-models/first"

    header = page.locator(".subtitle [data-status]")
    expect(header).to_have_attribute("data-status", "ready", timeout=SETTLED_MS)
    expect(page.locator('[data-field="runtime"]')).to_have_text("kserve-huggingfaceserver")
    expect(page.locator('[data-field="scale-metric"]')).to_contain_text("concurrency")
    expect(_split_percent(page, "stable")).to_have_text("100%")
    expect(page.get_by_test_id("rollout-state")).to_have_attribute("data-state", "stable")

    # a canary at 20%, then promoted
    traffic = page.get_by_test_id("traffic")
    traffic.get_by_role("button", name="Start canary").click()
    form = page.get_by_test_id("canary-form")
    form.get_by_label("Canary model").select_option(label="kserve-second (version 1)")
    form.get_by_label("Canary traffic (%)").fill("20")
    form.get_by_role("button", name="Start canary").click()
    expect(page.get_by_test_id("rollout-state")).to_have_attribute(
        "data-state", "canary", timeout=SETTLED_MS
    )
    expect(_split_percent(page, "stable")).to_have_text("80%")
    expect(_split_percent(page, "canary")).to_have_text("20%")
    expect(page.locator('[data-field="stable-revision"]')).to_have_text(
        "kserve-chat-predictor-00001"
    )
    tab.screenshot("serving-kserve-canary")

    traffic.get_by_role("button", name="Promote", exact=True).click()
    page.get_by_role(
        "group", name="Promote the canary? Its model becomes the stable one and takes all traffic."
    ).get_by_role("button", name="Promote").click()
    expect(_split_percent(page, "stable")).to_have_text("100%", timeout=SETTLED_MS)
    expect(page.get_by_test_id("traffic-splits").locator('tr[data-tag="canary"]')).to_have_count(0)
    expect(
        page.get_by_test_id("traffic-splits")
        .locator('tr[data-tag="stable"]')
        .locator('[data-field="model"]')
    ).to_contain_text("kserve-second")
    obj = kserve.cluster.get_object("kserve-chat")
    assert obj is not None
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    tab.screenshot("serving-kserve-promoted")
