"""Wrong methods and unknown paths under /llm-ops/v1, with the web console mounted at /.

A path that exists with other methods answers 405 problem+json naming them in ``Allow``;
a path that does not exist answers 404 problem+json; the console's own routes still get
its ``index.html``. The console is mounted in every test here (its catch-all once hid
every 405 behind a 404), whether or not this checkout has it built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.testing.plugins import PluginInstaller

ROUTED_PLUGIN = """
from fastapi import APIRouter

import llmops
from llmops.plugins.info import PluginInfo, PluginSettings


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="routed", version="1.0.0", display_name="Routed", settings_model=PluginSettings
    )


@llmops.hookimpl
def llmops_api_routes(settings, context):
    router = APIRouter()

    @router.post("/jobs")
    def start_job():
        return {}

    return router
"""


@pytest.fixture
def console_client(
    make_settings: Callable[..., CoreSettings],
    tmp_path: Path,
    authenticate: Callable[..., str],
    install: PluginInstaller,
) -> Iterator[TestClient]:
    """A started platform with a console and a plugin that adds a route, as an admin."""
    console = tmp_path / "console"
    (console / "assets").mkdir(parents=True)
    (console / "index.html").write_text('<!doctype html><div id="app"></div>')
    install("routed", ROUTED_PLUGIN)
    app = create_app(make_settings(plugins="routed"), console_dir=console)
    with TestClient(app) as client:
        authenticate(client)
        yield client


def test_get_on_a_post_only_route_is_405_with_allow_post(
    console_client: TestClient, api: str
) -> None:
    answer = console_client.get(f"{api}/experiments/search")

    assert answer.status_code == 405, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "POST"
    assert answer.json()["status"] == 405
    assert answer.json()["type"].endswith("/method-not-allowed")


def test_allow_lists_every_method_of_the_path_across_its_routes(
    console_client: TestClient, api: str
) -> None:
    model = console_client.post(f"{api}/catalog/models", json={"name": "m"}).json()

    answer = console_client.put(f"{api}/catalog/models/{model['id']}")

    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "DELETE, GET, PATCH"


def test_a_literal_path_allows_its_own_methods_not_those_of_a_template_that_matches_it(
    console_client: TestClient, api: str
) -> None:
    # /integrations/defaults (GET) comes before /integrations/{name} (GET, PATCH): the
    # resource is the first, as the OpenAPI document says
    answer = console_client.post(f"{api}/integrations/defaults")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"


def test_get_on_an_inference_route_is_405_with_allow_post(
    console_client: TestClient, api: str
) -> None:
    for path in ("/openai/v1/chat/completions", "/serving/endpoints/e1/chat/completions"):
        answer = console_client.get(f"{api}{path}")

        assert answer.status_code == 405, path
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["allow"] == "POST"


def test_get_on_a_plugins_post_route_is_405_with_allow_post(
    console_client: TestClient, api: str
) -> None:
    assert console_client.post(f"{api}/plugins/routed/jobs").status_code == 200

    answer = console_client.get(f"{api}/plugins/routed/jobs")

    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "POST"


def test_a_wrong_method_is_refused_before_the_key_is_asked_for(
    console_client: TestClient, api: str
) -> None:
    # the path and its methods are in the public OpenAPI document: a 405 tells no secret
    del console_client.headers["Authorization"]

    answer = console_client.delete(f"{api}/experiments/search")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "path",
    [
        "/no-such-thing",
        "/catalog/no-such-thing",
        "/catalog/models/abc/no-such-thing",
        "/catalog/models/",
        "/plugins/absent/jobs",
        "/plugins/routed/no-such-thing",
        "/openai/v1/no-such-thing",
    ],
)
def test_an_unknown_api_path_is_404_problem_json_for_any_method(
    console_client: TestClient, api: str, path: str
) -> None:
    for method in ("GET", "POST", "DELETE"):
        answer = console_client.request(method, f"{api}{path}")

        assert answer.status_code == 404, (method, path, answer.status_code)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "allow" not in answer.headers
        assert '<div id="app">' not in answer.text


def test_the_consoles_own_routes_still_get_the_app(console_client: TestClient) -> None:
    for path in ("/", "/training/123", "/admin/integrations/example", "/experiments/compare"):
        answer = console_client.get(path)

        assert answer.status_code == 200, path
        assert '<div id="app">' in answer.text


def test_a_write_to_a_console_path_is_405_allowing_get_and_head(
    console_client: TestClient,
) -> None:
    answer = console_client.post("/training/123")

    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["allow"] == "GET, HEAD"


def test_a_wrong_method_on_the_probes_is_405_not_the_console(console_client: TestClient) -> None:
    answer = console_client.post("/healthz")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
