"""How the API serves the web console, and what the console needs from it: who the
caller is (``GET /me``) and the OpenAPI document its typed client is generated from."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.cli import main
from llmops.config import CoreSettings


@pytest.fixture
def console_dir(tmp_path: Path) -> Path:
    console = tmp_path / "console"
    (console / "assets").mkdir(parents=True)
    (console / "index.html").write_text('<!doctype html><div id="app"></div>')
    (console / "assets" / "index-abc123.js").write_text("console.log('app')")
    return console


@pytest.fixture
def console_client(
    make_settings: Callable[..., CoreSettings],
    console_dir: Path,
    authenticate: Callable[..., str],
) -> Iterator[TestClient]:
    app = create_app(make_settings(plugins="none"), console_dir=console_dir)
    with TestClient(app) as client:
        authenticate(client)
        yield client


def test_the_console_is_served_at_the_root(console_client: TestClient) -> None:
    response = console_client.get("/")

    assert response.status_code == 200
    assert '<div id="app">' in response.text
    assert response.headers["cache-control"] == "no-cache"


def test_a_console_route_loaded_directly_gets_the_app(console_client: TestClient) -> None:
    for path in ("/models", "/models/01HZX", "/admin/integrations/example"):
        response = console_client.get(path)
        assert response.status_code == 200, path
        assert '<div id="app">' in response.text


def test_hashed_assets_are_cached_for_good(console_client: TestClient) -> None:
    response = console_client.get("/assets/index-abc123.js")

    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]


def test_a_missing_file_is_a_404_not_the_app(console_client: TestClient) -> None:
    assert console_client.get("/assets/gone-123.js").status_code == 404
    assert console_client.get("/favicon.ico").status_code == 404


def test_an_unknown_api_path_stays_a_problem_404(console_client: TestClient, api: str) -> None:
    response = console_client.get(f"{api}/no-such-thing")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_me_tells_the_caller_its_name_and_role(
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
    api: str,
) -> None:
    with TestClient(create_app(make_settings(plugins="none"))) as client:
        authenticate(client, "viewer")
        me = client.get(f"{api}/me")
        client.headers.pop("Authorization")
        anonymous = client.get(f"{api}/me")

    assert me.status_code == 200
    body = me.json()
    assert body["role"] == "viewer"
    assert body["keyId"]
    assert "key" not in body
    assert anonymous.status_code == 401


def test_the_openapi_command_prints_the_core_document(tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    result = CliRunner().invoke(
        main, ["openapi", "-o", str(target)], env={"LLMOPS_DATA_DIR": str(tmp_path / "d")}
    )

    assert result.exit_code == 0, result.output
    document = json.loads(target.read_text())
    assert "/llm-ops/v1/me" in document["paths"]
    assert not any("/plugins/" in path for path in document["paths"])
    assert not (tmp_path / "d").exists(), "printing the document must not create a data dir"
