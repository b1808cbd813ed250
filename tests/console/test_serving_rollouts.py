"""Serving settings and canary rollouts in the console: the deploy form offers the chosen
framework's model servers (runtimes) and scale metrics; the endpoint page shows the
traffic split and where a rollout stands, and lets an editor start, re-weight, promote and
roll back a canary; a failed rollout says why and what still serves.

This module starts its own platform with one test plugin, ``canaried``, that offers two
serving frameworks and keeps their deployments in the platform process:

* ``canaried`` declares canaries, scale to zero, scale metrics (concurrency, rps) and two
  runtimes (server-a, server-b: the plugin's ``runtimes`` setting). It keeps revisions as
  KServe does: every change that makes a new revision (a new model) or moves traffic
  rolls out over ``SETTLE_SECONDS``, during which the previous traffic keeps serving
  (rollout "progressing"); then the new split serves ("canary" or "stable"), or, when a
  new revision's model files are not there, the rollout "failed" and the last good split
  stays. Model URIs are ``file://`` folders this module makes (a missing folder is a model
  that cannot load). Inference is not part of these tests: no model runs.
* ``plain`` declares autoscaling only: no runtimes, no scale metrics, no canaries.

The pages know neither: they read what each framework declares.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    ok,
    running_platform,
)
from llmops.testing.plugins import temporary_plugin
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
#: how long a rollout takes the framework, and how long the page may take to show its end
#: (the framework's settle plus the page's 2 s polling, with room for a slow machine)
SETTLE_SECONDS = 1.0
SETTLED_MS = 15_000

CANARIED_SERVING_PLUGIN = f"""
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.serving import (
    AutoscalingSpec, DeploymentState, DeploymentStatus, FrameworkInfo, InferenceProtocol,
    ReplicaStatus, RolloutState, RolloutStatus, TrafficSplit,
)
from llmops.errors import Conflict, IntegrationUnavailable, NotFound
from llmops.plugins.info import PluginInfo, PluginSettings

SETTLE_SECONDS = {SETTLE_SECONDS!r}
LOCK = threading.Lock()
DEPLOYED = {{}}  # external id -> Served (module state: survives a rebuild of the backends)


def loadable(uri):
    parsed = urlparse(uri)
    return parsed.scheme == "file" and Path(unquote(parsed.path)).is_dir()


@dataclass(frozen=True)
class Revision:
    name: str
    model_uri: str


@dataclass(frozen=True)
class Split:
    stable: Revision
    canary: Revision | None = None
    percent: int = 0  # the canary's share

    def traffic(self):
        if self.canary is None:
            return [TrafficSplit(tag="stable", model_uri=self.stable.model_uri, percent=100)]
        return [
            TrafficSplit(tag="stable", model_uri=self.stable.model_uri, percent=100 - self.percent),
            TrafficSplit(tag="canary", model_uri=self.canary.model_uri, percent=self.percent),
        ]


@dataclass
class Served:
    name: str
    runtime: str
    autoscaling: AutoscalingSpec
    serving: Split  # what takes traffic now
    wanted: Split  # what the last change asked for
    latest: Revision  # the newest revision made
    ready: Revision  # the newest revision that served
    counter: itertools.count = field(default_factory=lambda: itertools.count(2))
    changed_at: float | None = None  # a rollout on its way since then
    failure: str = ""

    def revision(self, model_uri):
        self.latest = Revision(f"{{self.name}}-{{next(self.counter):05d}}", model_uri)
        return self.latest

    def settle(self):
        if self.changed_at is None or time.monotonic() - self.changed_at < SETTLE_SECONDS:
            return
        self.changed_at = None
        broken = [
            r for r in (self.wanted.stable, self.wanted.canary)
            if r is not None and not loadable(r.model_uri)
        ]
        if broken:
            self.failure = (
                f"revision {{broken[0].name}} failed: no model files at {{broken[0].model_uri}}"
            )
            return
        self.serving = self.wanted
        newest = [r for r in (self.wanted.stable, self.wanted.canary) if r is not None]
        self.ready = max(newest, key=lambda r: r.name)

    def rollout(self):
        latest, ready = self.latest.name, self.ready.name
        stable = self.serving.stable.name
        if self.changed_at is not None:
            state, message = RolloutState.PROGRESSING, f"rolling out revision {{latest}}"
        elif self.failure:
            state, message = RolloutState.FAILED, self.failure
        elif self.serving.canary is not None:
            state = RolloutState.CANARY
            message = f"{{self.serving.percent}}% to revision {{self.serving.canary.name}}"
        else:
            state, message = RolloutState.STABLE, f"all traffic to revision {{stable}}"
        return RolloutStatus(
            state=state, message=message, latest_revision=latest, ready_revision=ready,
            stable_revision=stable,
        )


class Canaried:
    honours_deadline = True

    def __init__(self, runtimes):
        self.runtimes = list(runtimes)

    def framework(self):
        return FrameworkInfo(
            name="canaried", display_name="Canaried", protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True, supports_canary=True, supports_scale_to_zero=True,
            scale_metrics=["concurrency", "rps"], runtimes=self.runtimes,
        )

    def _served(self, external_id):
        if external_id not in DEPLOYED:
            raise NotFound(f"no deployment {{external_id!r}}")
        return DEPLOYED[external_id]

    def status(self, external_id):
        with LOCK:
            served = self._served(external_id)
            served.settle()
            replicas = served.autoscaling.min_replicas
            return DeploymentStatus(
                external_id=external_id, state=DeploymentState.READY, ready=True,
                message=f"runtime {{served.runtime}}", desired_replicas=replicas,
                replicas=[
                    ReplicaStatus(name=f"{{served.ready.name}}-{{i}}", state="RUNNING")
                    for i in range(replicas)
                ],
                traffic=served.serving.traffic(), rollout=served.rollout(),
            )

    def deploy(self, spec):
        with LOCK:
            if spec.name not in DEPLOYED:
                first = Revision(f"{{spec.name}}-00001", spec.model_uri)
                split = Split(first)
                served = Served(
                    spec.name, spec.runtime or self.runtimes[0], spec.autoscaling, split, split,
                    first, first,
                )
                if spec.canary is not None:
                    served.wanted = served.serving = Split(
                        first, served.revision(spec.canary.model_uri),
                        spec.canary.traffic_percent,
                    )
                    served.ready = served.latest
                DEPLOYED[spec.name] = served
        return self.status(spec.name)

    def update(self, external_id, update):
        with LOCK:
            served = self._served(external_id)
            served.settle()
            if update.autoscaling is not None:
                served.autoscaling = update.autoscaling
            wanted = served.wanted
            if update.promote_canary:
                if wanted.canary is None:
                    raise Conflict(f"{{external_id}} has no canary to promote")
                wanted = Split(wanted.canary)
            elif update.rollback_canary:
                wanted = Split(wanted.stable)
            elif update.canary is not None:
                same = wanted.canary is not None and (
                    wanted.canary.model_uri == update.canary.model_uri
                )
                canary = wanted.canary if same else served.revision(update.canary.model_uri)
                wanted = Split(wanted.stable, canary, update.canary.traffic_percent)
            elif update.model_uri is not None:
                wanted = Split(served.revision(update.model_uri))
            if wanted != served.wanted:
                served.wanted, served.changed_at, served.failure = wanted, time.monotonic(), ""
        return self.status(external_id)

    def delete(self, external_id):
        with LOCK:
            DEPLOYED.pop(external_id, None)

    def inference_target(self, external_id):
        raise IntegrationUnavailable("the canaried test framework runs no model server")

    def health(self):
        return Health(status=HealthStatus.OK)


PLAIN = {{}}  # external id -> its autoscaling


class Plain:  # autoscaling only: one revision, no traffic split, no rollout to report

    honours_deadline = True

    def framework(self):
        return FrameworkInfo(
            name="plain", display_name="Plain", protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True,
        )

    def status(self, external_id):
        if external_id not in PLAIN:
            raise NotFound(f"no deployment {{external_id!r}}")
        replicas = PLAIN[external_id].min_replicas
        return DeploymentStatus(
            external_id=external_id, state=DeploymentState.READY, ready=True,
            desired_replicas=replicas,
            replicas=[
                ReplicaStatus(name=f"{{external_id}}-{{i}}", state="RUNNING")
                for i in range(replicas)
            ],
        )

    def deploy(self, spec):
        PLAIN[spec.name] = spec.autoscaling
        return self.status(spec.name)

    def update(self, external_id, update):
        self.status(external_id)
        if update.autoscaling is not None:
            PLAIN[external_id] = update.autoscaling
        return self.status(external_id)

    def delete(self, external_id):
        PLAIN.pop(external_id, None)

    def inference_target(self, external_id):
        raise IntegrationUnavailable("the plain test framework runs no model server")

    def health(self):
        return Health(status=HealthStatus.OK)


class Settings(PluginSettings):
    runtimes: list[str] = ["server-a", "server-b"]


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="canaried", version="1.0", display_name="Canaried",
        capabilities=frozenset({{Capability.SERVING}}), settings_model=Settings,
    )


@hookimpl
def llmops_serving(settings, context):
    return [Canaried(settings.runtimes), Plain()]
"""


@dataclass(frozen=True)
class Rollouts:
    server: ConsoleServer
    models: Path  # the model folders (file:// URIs point here)

    @property
    def api(self) -> httpx.Client:
        return self.server.api


@pytest.fixture(scope="module")
def rollouts() -> Iterator[Rollouts]:
    root = Path(tempfile.mkdtemp(prefix="console-rollouts-"))
    (root / "models").mkdir()
    try:
        with (
            temporary_plugin(root, "canaried", CANARIED_SERVING_PLUGIN),
            running_platform(
                env={"LLMOPS_PLUGINS": "canaried", "PYTHONPATH": str(root / "site-canaried")}
            ) as server,
        ):
            yield Rollouts(server, root / "models")
    except ConsoleNotBuilt as exc:
        pytest.fail(str(exc))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tab(rollouts: Rollouts, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Console]:
    """A fresh browser tab on this module's platform (any console error the test did not
    announce fails it)."""
    with console_tab(rollouts.server, browser, request) as console:
        yield console


# -- arranging through the API ------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    uri: str

    @property
    def label(self) -> str:
        return f"{self.name} (version 1)"


def _model(rollouts: Rollouts, name: str, *, loadable: bool = True) -> Model:
    """A catalog model whose files are a folder (or, not ``loadable``, a missing one)."""
    folder = rollouts.models / name
    if loadable:
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    uri = folder.as_uri()
    body = {"name": name, "uri": uri, "task": "text-generation"}
    created = ok(rollouts.api.post(f"{API}/catalog/models", json=body), 201)
    return Model(str(created["id"]), name, uri)


def _endpoint(rollouts: Rollouts, name: str, model: Model, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "modelId": model.id, "framework": "canaried", **extra}
    created = ok(rollouts.api.post(f"{API}/serving/endpoints", json=body), 201)
    assert created["status"] == "ready", created
    return created


def _deployment(rollouts: Rollouts, endpoint_id: str) -> dict[str, Any]:
    return ok(rollouts.api.get(f"{API}/serving/endpoints/{endpoint_id}/deployment"))


def _rollout_state(rollouts: Rollouts, endpoint_id: str) -> str:
    rollout = _deployment(rollouts, endpoint_id)["status"]["rollout"]
    return str(rollout["state"]) if rollout else ""


# -- reading the pages --------------------------------------------------------------------


def _input(page: Page | Locator, label: str) -> Locator:
    """The input labelled ``label`` exactly (a required field's label ends with " *")."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def _field(page: Page | Locator, label: str) -> Locator:
    """The form field (label, input, hint, error) whose input is labelled ``label``."""
    return page.locator(".field").filter(has=_input(page, label))


def _detail(page: Page, field: str) -> Locator:
    return page.locator(f'[data-field="{field}"]')


def _split(page: Page, tag: str) -> Locator:
    """The traffic split's row for ``tag`` (stable, canary)."""
    return page.get_by_test_id("traffic-splits").locator(f'tr[data-tag="{tag}"]')


def _expect_split(page: Page, tag: str, model: Model, percent: int) -> None:
    row = _split(page, tag)
    expect(row.locator('[data-field="percent"]')).to_have_text(f"{percent}%", timeout=SETTLED_MS)
    expect(row.locator('[data-field="model"]')).to_have_text(model.label)


def _expect_rollout(page: Page, state: str) -> Locator:
    badge = page.get_by_test_id("rollout-state")
    expect(badge).to_have_attribute("data-state", state, timeout=SETTLED_MS)
    return badge


def _start_canary(page: Page, model: Model, percent: int) -> None:
    traffic = page.get_by_test_id("traffic")
    traffic.get_by_role("button", name="Start canary").click()
    form = page.get_by_test_id("canary-form")
    _input(form, "Canary model").select_option(label=model.label)
    _input(form, "Canary traffic (%)").fill(str(percent))
    form.get_by_role("button", name="Start canary").click()


def _confirm(page: Page, action: str, question: str) -> None:
    """Click ``action``, then confirm it in the question that follows."""
    page.get_by_test_id("traffic").get_by_role("button", name=action, exact=True).click()
    page.get_by_role("group", name=question).get_by_role("button", name=action).click()


PROMOTE = "Promote the canary? Its model becomes the stable one and takes all traffic."
ROLL_BACK = "Roll back the canary? The stable model takes all traffic again."
ROLLOUT_BUTTONS = ("Start canary", "Change canary %", "Promote", "Roll back")


# -- the deploy form ------------------------------------------------------------------------


def test_the_deploy_form_offers_runtimes_and_scale_metrics_only_where_the_framework_has_them(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    stable = _model(rollouts, unique("form-stable"))
    canary = _model(rollouts, unique("form-canary"))
    name = unique("deployed")
    tab.sign_in("editor")
    page = tab.open("/serving/new", "endpoint-deploy")

    # a framework with neither: no runtime, no scale metric, no canary
    page.locator('[data-framework="plain"]').get_by_role("radio").check()
    expect(page.get_by_label("Max replicas")).to_be_visible()
    expect(_input(page, "Runtime")).to_have_count(0)
    expect(page.get_by_label("Scale metric")).to_have_count(0)
    expect(page.get_by_label("Scale target")).to_have_count(0)
    expect(page.get_by_test_id("canary")).to_have_count(0)

    # one with both: its runtimes, the default first and chosen; its metrics
    canaried = page.locator('[data-framework="canaried"]')
    expect(canaried.locator('[data-capability="scale-to-zero"]')).to_have_attribute(
        "data-on", "true"
    )
    canaried.get_by_role("radio").check()
    runtime = _input(page, "Runtime")
    expect(runtime).to_have_value("server-a")
    expect(runtime.locator("option")).to_have_text(["server-a (default)", "server-b"])
    metric = page.get_by_label("Scale metric")
    expect(metric.locator("option")).to_have_text(["The framework's default", "concurrency", "rps"])
    expect(_field(page, "Min replicas")).to_contain_text("scale to zero")
    expect(page.get_by_test_id("canary")).to_be_visible()

    _input(page, "Name").fill(name)
    _input(page, "Model").select_option(label=stable.label)
    runtime.select_option("server-b")
    page.get_by_label("Min replicas").fill("0")
    page.get_by_label("Max replicas").fill("3")
    metric.select_option("rps")
    page.get_by_label("Scale target").fill("50")
    page.get_by_test_id("canary").get_by_role("checkbox").check()
    page.get_by_label("Canary model URI").fill(canary.uri)
    page.get_by_label("Canary traffic (%)").fill("10")
    tab.screenshot("serving-deploy-kserve-style")
    page.get_by_role("button", name="Deploy", exact=True).click()

    # the spec holds what the form sent
    tab.wait_ready("endpoint")
    endpoint_id = page.url.rsplit("/", 1)[-1]
    spec = _deployment(rollouts, endpoint_id)["spec"]
    assert spec["runtime"] == "server-b"
    assert spec["autoscaling"] == {
        "minReplicas": 0,
        "maxReplicas": 3,
        "targetOngoingRequests": None,
        "scaleMetric": "rps",
        "scaleTarget": 50,
    }
    assert spec["canary"] == {"modelUri": canary.uri, "trafficPercent": 10}

    # and the endpoint page shows it, with the canary's split
    expect(_detail(page, "runtime")).to_have_text("server-b")
    expect(_detail(page, "scale-metric")).to_have_text("rps, target 50 per replica")
    expect(_detail(page, "scaling")).to_contain_text("0 to 3 (scales to zero when idle)")
    _expect_split(page, "stable", stable, 90)
    _expect_split(page, "canary", canary, 10)
    _expect_rollout(page, "canary")


def test_a_runtime_the_framework_dropped_after_the_form_loaded_is_refused_under_its_field(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    model = _model(rollouts, unique("runtime-model"))
    name = unique("runtime")
    tab.sign_in("editor")
    page = tab.open("/serving/new", "endpoint-deploy")
    page.locator('[data-framework="canaried"]').get_by_role("radio").check()
    _input(page, "Name").fill(name)
    _input(page, "Model").select_option(label=model.label)
    _input(page, "Runtime").select_option("server-b")

    # an operator removes server-b while the form is open: the platform refuses it
    configure = f"{API}/integrations/canaried/config"
    ok(rollouts.api.put(configure, json={"settings": {"runtimes": ["server-a"]}}))
    try:
        tab.expect_console_error("status of 422")
        page.get_by_role("button", name="Deploy", exact=True).click()
        error = _field(page, "Runtime").get_by_role("alert")
        expect(error).to_have_text("canaried has no runtime 'server-b'; it has server-a")
        expect(_input(page, "Runtime")).to_have_attribute("aria-invalid", "true")
        assert page.url.endswith("/serving/new")
        tab.screenshot("serving-deploy-runtime-error")

        # picking one it has clears the error, and the endpoint deploys with it
        _input(page, "Runtime").select_option("server-a")
        expect(error).to_have_count(0)
        page.get_by_role("button", name="Deploy", exact=True).click()
        tab.wait_ready("endpoint")
        spec = _deployment(rollouts, page.url.rsplit("/", 1)[-1])["spec"]
        assert spec["runtime"] == "server-a"
    finally:
        ok(rollouts.api.put(configure, json={"settings": {"runtimes": None}}))
    frameworks: list[dict[str, Any]] = rollouts.api.get(f"{API}/serving/frameworks").json()
    restored = next(f for f in frameworks if f["name"] == "canaried")
    assert restored["runtimes"] == ["server-a", "server-b"]


# -- the endpoint page: traffic and rollouts -------------------------------------------------


def test_an_editor_starts_reweights_promotes_and_rolls_back_a_canary(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    first = _model(rollouts, unique("first"))
    second = _model(rollouts, unique("second"))
    third = _model(rollouts, unique("third"))
    endpoint = _endpoint(rollouts, unique("rolled"), first)
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")

    # all traffic on the stable model, named as the catalog names it
    _expect_split(page, "stable", first, 100)
    expect(_split(page, "canary")).to_have_count(0)
    _expect_rollout(page, "stable")
    expect(page.get_by_role("table", name="Traffic split")).to_be_visible()

    # a canary at 20%: it rolls out while the stable model keeps serving everything
    _start_canary(page, second, 20)
    badge = _expect_rollout(page, "progressing")
    expect(badge).to_have_class(re.compile(r"\bbadge-running\b"))
    expect(page.get_by_test_id("rollout-serves")).to_have_text(
        f"Meanwhile the previous configuration keeps serving: 100% stable ({first.label})."
    )
    tab.screenshot("serving-rollout-progressing")
    _expect_rollout(page, "canary")
    _expect_split(page, "stable", first, 80)
    _expect_split(page, "canary", second, 20)
    name = endpoint["name"]
    expect(page.locator('[data-field="latest-revision"]')).to_have_text(f"{name}-00002")
    expect(page.locator('[data-field="ready-revision"]')).to_have_text(f"{name}-00002")
    expect(page.locator('[data-field="stable-revision"]')).to_have_text(f"{name}-00001")
    tab.screenshot("serving-rollout-canary")

    # its share changes
    page.get_by_test_id("traffic").get_by_role("button", name="Change canary %").click()
    form = page.get_by_test_id("canary-form")
    expect(_input(form, "Canary traffic (%)")).to_have_value("20")
    _input(form, "Canary traffic (%)").fill("50")
    form.get_by_role("button", name="Change canary %").click()
    _expect_split(page, "canary", second, 50)
    _expect_split(page, "stable", first, 50)
    _expect_rollout(page, "canary")

    # promoted, after a confirmation: the canary's model serves everything as the stable one
    _confirm(page, "Promote", PROMOTE)
    _expect_rollout(page, "stable")
    _expect_split(page, "stable", second, 100)
    expect(_split(page, "canary")).to_have_count(0)
    spec = _deployment(rollouts, endpoint["id"])["spec"]
    assert (spec["modelUri"], spec["canary"]) == (second.uri, None)

    # another canary, rolled back: the stable model stays
    _start_canary(page, third, 30)
    _expect_split(page, "canary", third, 30)
    _expect_rollout(page, "canary")
    page.get_by_test_id("traffic").get_by_role("button", name="Roll back", exact=True).click()
    page.get_by_role("group", name=ROLL_BACK).get_by_role("button", name="Keep").click()
    _expect_split(page, "canary", third, 30)  # kept
    _confirm(page, "Roll back", ROLL_BACK)
    _expect_rollout(page, "stable")
    _expect_split(page, "stable", second, 100)
    expect(_split(page, "canary")).to_have_count(0)
    spec = _deployment(rollouts, endpoint["id"])["spec"]
    assert (spec["modelUri"], spec["canary"]) == (second.uri, None)
    assert _deployment(rollouts, endpoint["id"])["status"]["traffic"] == [
        {"tag": "stable", "modelUri": second.uri, "percent": 100}
    ]


def test_a_failed_rollout_shows_its_message_and_that_the_last_good_revision_still_serves(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    good = _model(rollouts, unique("good"))
    broken = _model(rollouts, unique("broken"), loadable=False)
    endpoint = _endpoint(rollouts, unique("failing"), good)
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")

    _start_canary(page, broken, 25)
    _expect_rollout(page, "progressing")
    badge = _expect_rollout(page, "failed")
    expect(badge).to_have_class(re.compile(r"\bbadge-failure\b"))
    expect(page.get_by_test_id("rollout")).to_have_class(re.compile(r"\brollout-failure\b"))
    revision = f"{endpoint['name']}-00002"
    expect(page.get_by_test_id("rollout-message")).to_have_text(
        f"revision {revision} failed: no model files at {broken.uri}"
    )
    expect(page.get_by_test_id("rollout-serves")).to_have_text(
        f"The newest revision is not serving; the last good one still is: 100% stable "
        f"({good.label})."
    )
    _expect_split(page, "stable", good, 100)
    expect(_split(page, "canary")).to_have_count(0)
    expect(page.locator('[data-field="latest-revision"]')).to_have_text(revision)
    expect(page.locator('[data-field="ready-revision"]')).to_have_text(f"{endpoint['name']}-00001")
    tab.screenshot("serving-rollout-failed")

    # rolling the failed canary back settles the rollout on the good model
    _confirm(page, "Roll back", ROLL_BACK)
    _expect_rollout(page, "stable")
    _expect_split(page, "stable", good, 100)
    expect(
        page.get_by_test_id("traffic").get_by_role("button", name="Start canary")
    ).to_be_visible()


def test_an_action_on_a_canary_someone_else_ended_shows_the_apis_error_and_the_current_state(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    stable = _model(rollouts, unique("kept"))
    canary = _model(rollouts, unique("ended"))
    endpoint = _endpoint(
        rollouts,
        unique("raced"),
        stable,
        canary={"modelUri": canary.uri, "trafficPercent": 40},
    )
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")
    _expect_split(page, "canary", canary, 40)

    # another editor rolls the canary back through the API while this page shows it
    patch = f"{API}/serving/endpoints/{endpoint['id']}/deployment"
    ok(rollouts.api.patch(patch, json={"rollbackCanary": True}))
    tab.expect_console_error("status of 422")
    _confirm(page, "Promote", PROMOTE)
    error = page.get_by_test_id("traffic").get_by_role("alert")
    expect(error).to_contain_text("the deployment has no canary to promote")
    # the page reads the deployment again: no canary left, so a new one may start
    expect(
        page.get_by_test_id("traffic").get_by_role("button", name="Start canary")
    ).to_be_visible()
    _expect_rollout(page, "stable")
    _expect_split(page, "stable", stable, 100)
    assert _deployment(rollouts, endpoint["id"])["spec"]["modelUri"] == stable.uri


def test_a_viewer_sees_the_traffic_and_rollout_but_no_rollout_controls(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    stable = _model(rollouts, unique("viewed-stable"))
    canary = _model(rollouts, unique("viewed-canary"))
    endpoint = _endpoint(rollouts, unique("viewed"), stable)
    patch = f"{API}/serving/endpoints/{endpoint['id']}/deployment"
    body = {"canary": {"modelUri": canary.uri, "trafficPercent": 20}}
    ok(rollouts.api.patch(patch, json=body))
    wait_for(
        lambda: _rollout_state(rollouts, endpoint["id"]) == "canary",
        timeout=SETTLED_MS / 1000,
        interval=0.2,
        what="the canary to roll out",
    )
    tab.sign_in("viewer")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")

    _expect_rollout(page, "canary")
    _expect_split(page, "stable", stable, 80)
    _expect_split(page, "canary", canary, 20)
    expect(page.get_by_test_id("rollout-actions")).to_have_count(0)
    traffic = page.get_by_test_id("traffic")
    for action in ROLLOUT_BUTTONS:
        expect(traffic.get_by_role("button", name=action)).to_have_count(0)
    expect(page.get_by_role("button", name="Edit scaling")).to_have_count(0)


def test_a_framework_without_canaries_shows_no_traffic_section(
    tab: Console, rollouts: Rollouts, unique: Callable[[str], str]
) -> None:
    model = _model(rollouts, unique("plain-model"))
    body = {"name": unique("plain"), "modelId": model.id, "framework": "plain"}
    endpoint = ok(rollouts.api.post(f"{API}/serving/endpoints", json=body), 201)
    tab.sign_in("editor")
    page = tab.open(f"/serving/{endpoint['id']}", "endpoint")
    expect(page.get_by_test_id("deployment")).to_contain_text("Replicas")
    expect(_detail(page, "runtime")).to_have_count(0)
    expect(_detail(page, "scale-metric")).to_have_count(0)
    expect(page.get_by_test_id("traffic")).to_have_count(0)
