"""Integration settings cannot be turned against the server's network or disk
(llmops.url_policy, applied by ``PUT /integrations/{name}/config``): a URL field
(``ToolUrl``) takes only its declared schemes and no loopback, link-local or private host
unless ``LLMOPS_INTEGRATION_URL_ALLOWLIST`` names it; a server path (``ServerPath``) is the
environment's; changing a URL clears the token sent to it; and the connection test shows
a short reason, never what the remote server answered. On SQLite and PostgreSQL, with the
shipped MLflow and KServe plugins."""

from __future__ import annotations

import functools
import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from llmops.config import CoreSettings
from llmops.plugins import PluginInfo, PluginSettings, ToolUrl
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for
from llmops.url_policy import Allowlist, url_problem

API = "/llm-ops/v1"
LOGS = f"{API}/governance/audit-logs"
CANARY = "canary-7d41c09be2f3"
PROBLEM = "application/problem+json"


#: the suite's ``start`` fixture (conftest.py)
StartApp = Callable[..., TestClient]


@pytest.fixture
def start(start: StartApp) -> StartApp:
    """The suite's ``start``, without the background worker: these tests queue nothing."""
    return functools.partial(start, start_worker=False)


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that records each request's Authorization header and
    answers what ``answer`` says (status, content type, body)."""

    server: ThreadingHTTPServer
    answer: tuple[int, str, bytes] = (200, "application/json", b'{"items": []}')
    authorizations: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def recorder() -> Iterator[Callable[[], Recorder]]:
    """``recorder()``: a new :class:`Recorder`, stopped when the test ends."""
    started: list[Recorder] = []

    def make() -> Recorder:
        holder: list[Recorder] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                target = holder[0]
                target.authorizations.append(self.headers.get("Authorization"))
                status, content_type, body = target.answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        holder.append(Recorder(server))
        started.append(holder[0])
        return holder[0]

    yield make
    for one in started:
        one.server.shutdown()
        one.server.server_close()


def configure(client: TestClient, name: str, settings: dict[str, Any]) -> httpx2.Response:
    response: httpx2.Response = client.put(
        f"{API}/integrations/{name}/config", json={"settings": settings}
    )
    return response


def refused(response: httpx2.Response, field_name: str) -> str:
    """The reason a 422 problem gives for ``field_name`` (and that it names only it)."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["fields"] == [field_name]
    [error] = body["errors"]
    assert error["location"] == [field_name]
    assert field_name in body["detail"]
    reason: str = error["message"]
    return reason


def settings_of(client: TestClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"{API}/integrations/{name}").json()
    return found


def connection_test(client: TestClient, name: str) -> dict[str, Any]:
    response = client.post(f"{API}/integrations/{name}/test")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# -- the address policy ----------------------------------------------------------------


def test_the_cloud_metadata_address_is_refused_for_kserve_api_url_and_nothing_is_stored(
    start: StartApp,
) -> None:
    client = start(plugins="kserve")

    response = configure(
        client, "kserve", {"api_url": "http://169.254.169.254/latest/meta-data/", "token": CANARY}
    )

    assert "link-local" in refused(response, "api_url")
    kserve = settings_of(client, "kserve")
    assert kserve["settings"]["api_url"] is None
    assert kserve["secretsSet"] == {"token": False}
    assert CANARY not in response.text


def test_a_loopback_url_is_refused_and_accepted_once_the_allow_list_names_it(
    start: StartApp,
) -> None:
    closed = start(plugins="mlflow")
    opened = start(plugins="mlflow", integration_url_allowlist="127.0.0.1")

    refusal = configure(closed, "mlflow", {"tracking_uri": "http://127.0.0.1:22/"})
    accepted = configure(opened, "mlflow", {"tracking_uri": "http://127.0.0.1:22/"})

    assert "loopback" in refused(refusal, "tracking_uri")
    assert "LLMOPS_INTEGRATION_URL_ALLOWLIST" in refused(refusal, "tracking_uri")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["settings"]["tracking_uri"] == "http://127.0.0.1:22/"


def test_a_host_name_that_resolves_to_loopback_is_refused(start: StartApp) -> None:
    client = start(plugins="mlflow")

    response = configure(client, "mlflow", {"tracking_uri": "http://localhost:5000"})

    reason = refused(response, "tracking_uri")
    assert "'localhost' resolves to" in reason
    assert "loopback" in reason


def test_a_private_network_address_is_refused_for_a_ray_cluster_address(
    start: StartApp,
) -> None:
    client = start(plugins="rayserve", integration_url_allowlist="10.20.0.0/16")

    bare = configure(client, "rayserve", {"address": "10.1.2.3:6379"})
    client_url = configure(client, "rayserve", {"address": "ray://192.168.1.5:10001"})
    listed = configure(client, "rayserve", {"address": "ray://10.20.3.4:10001"})

    assert "private" in refused(bare, "address")
    assert "private" in refused(client_url, "address")
    assert listed.status_code == 200, listed.text
    assert listed.json()["settings"]["address"] == "ray://10.20.3.4:10001"


def test_a_host_that_does_not_resolve_is_refused_unless_the_allow_list_names_it(
    start: StartApp,
) -> None:
    client = start(plugins="mlflow", integration_url_allowlist="*.svc.cluster.local")

    unknown = configure(client, "mlflow", {"job_tracking_uri": "http://mlflow.invalid:5000"})
    in_cluster = configure(
        client, "mlflow", {"job_tracking_uri": "http://mlflow.mlflow.svc.cluster.local:5000"}
    )

    assert "does not resolve" in refused(unknown, "job_tracking_uri")
    assert in_cluster.status_code == 200, in_cluster.text


def test_a_public_address_is_accepted(start: StartApp) -> None:
    client = start(plugins="kserve")

    response = configure(client, "kserve", {"api_url": "https://203.0.113.7:6443"})

    # 203.0.113.0/24 is TEST-NET-3: public as far as the policy goes, and never reached
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["api_url"] == "https://203.0.113.7:6443"


# -- schemes, paths and links -----------------------------------------------------------


def test_a_file_url_is_refused_for_the_mlflow_tracking_uri(start: StartApp) -> None:
    client = start(plugins="mlflow")

    as_file = configure(client, "mlflow", {"tracking_uri": "file:///etc/passwd"})
    as_sqlite = configure(client, "mlflow", {"tracking_uri": "sqlite:////etc/passwd"})

    assert "scheme 'file' is not allowed" in refused(as_file, "tracking_uri")
    assert "the server's disk" in refused(as_sqlite, "tracking_uri")
    assert settings_of(client, "mlflow")["settings"]["tracking_uri"] is None


def test_an_artifact_folder_on_the_server_is_refused_and_a_bucket_is_accepted(
    start: StartApp,
) -> None:
    client = start(plugins="mlflow")

    folder = configure(client, "mlflow", {"artifact_location": "/home"})
    bucket = configure(client, "mlflow", {"artifact_location": "s3://team-artifacts/llmops"})

    assert "the server's disk" in refused(folder, "artifact_location")
    assert bucket.status_code == 200, bucket.text


def test_a_javascript_link_is_refused_for_the_mlflow_ui_url_and_a_loopback_link_is_not(
    start: StartApp,
) -> None:
    client = start(plugins="mlflow")

    script = configure(client, "mlflow", {"ui_url": "javascript:alert(document.cookie)"})
    local_ui = configure(client, "mlflow", {"ui_url": "http://127.0.0.1:5000"})

    assert "scheme 'javascript' is not allowed" in refused(script, "ui_url")
    # a link is opened by the browser, never by the server: its host is not checked
    assert local_ui.status_code == 200, local_ui.text


def test_a_password_in_a_url_is_refused(start: StartApp) -> None:
    client = start(plugins="mlflow")

    response = configure(
        client, "mlflow", {"tracking_uri": f"postgresql://mlflow:{CANARY}@203.0.113.9/mlflow"}
    )

    assert "password" in refused(response, "tracking_uri")
    assert CANARY not in settings_of(client, "mlflow")["settings"].values()


def test_a_kubeconfig_or_ca_bundle_cannot_be_set_through_the_api_but_can_be_removed(
    start: StartApp,
) -> None:
    client = start(plugins="kserve")

    kubeconfig = configure(client, "kserve", {"kubeconfig": "/etc/passwd"})
    ca_cert = configure(client, "kserve", {"ca_cert": "/etc/shadow"})
    removed = configure(client, "kserve", {"kubeconfig": None, "ca_cert": None})

    assert "LLMOPS_KSERVE__KUBECONFIG" in refused(kubeconfig, "kubeconfig")
    assert "LLMOPS_KSERVE__CA_CERT" in refused(ca_cert, "ca_cert")
    assert removed.status_code == 200, removed.text


# -- a changed URL clears its token ------------------------------------------------------


def test_changing_the_url_without_the_token_clears_it_and_the_new_host_never_receives_it(
    start: StartApp, recorder: Callable[[], Recorder]
) -> None:
    trusted, other = recorder(), recorder()
    client = start(plugins="kserve", integration_url_allowlist="127.0.0.1")

    first = configure(client, "kserve", {"api_url": trusted.url, "token": CANARY})
    with_token = connection_test(client, "kserve")
    moved = configure(client, "kserve", {"api_url": other.url})
    without_token = connection_test(client, "kserve")
    entries = client.get(LOGS, params={"limit": 50}).json()["items"]

    assert first.status_code == 200, first.text
    assert first.json()["secretsCleared"] == []
    assert with_token["ok"] is True, with_token
    assert set(trusted.authorizations) == {f"Bearer {CANARY}"}
    assert moved.status_code == 200, moved.text
    assert moved.json()["secretsCleared"] == ["token"]
    assert moved.json()["secretsSet"] == {"token": False}
    assert without_token["ok"] is True, without_token
    assert other.authorizations
    assert set(other.authorizations) == {None}
    configured = [e for e in entries if e["action"] == "configure_integration"]
    assert [e["details"].get("secretsCleared") for e in configured] == [["token"], None]


def test_sending_the_token_again_with_the_new_url_keeps_it(
    start: StartApp, recorder: Callable[[], Recorder]
) -> None:
    trusted, moved_to = recorder(), recorder()
    client = start(plugins="kserve", integration_url_allowlist="127.0.0.1")
    assert configure(client, "kserve", {"api_url": trusted.url, "token": "old"}).status_code == 200

    moved = configure(client, "kserve", {"api_url": moved_to.url, "token": CANARY})
    tested = connection_test(client, "kserve")
    same_url = configure(client, "kserve", {"api_url": moved_to.url})

    assert moved.json()["secretsCleared"] == []
    assert tested["ok"] is True, tested
    assert set(moved_to.authorizations) == {f"Bearer {CANARY}"}
    assert same_url.json()["secretsCleared"] == []
    assert same_url.json()["secretsSet"] == {"token": True}


def test_a_token_from_the_environment_never_reaches_a_url_set_through_the_api(
    start: StartApp, recorder: Callable[[], Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    operators, elsewhere = recorder(), recorder()
    monkeypatch.setenv("LLMOPS_KSERVE__API_URL", operators.url)
    monkeypatch.setenv("LLMOPS_KSERVE__TOKEN", CANARY)
    client = start(plugins="kserve", integration_url_allowlist="127.0.0.1")

    before = connection_test(client, "kserve")
    moved = configure(client, "kserve", {"api_url": elsewhere.url})
    moved_again = configure(client, "kserve", {"api_url": f"{elsewhere.url}/"})
    away = connection_test(client, "kserve")
    operators.authorizations.clear()
    back = configure(client, "kserve", {"api_url": None})
    home = connection_test(client, "kserve")

    assert before["ok"] is True
    assert away["ok"] is True
    assert home["ok"] is True
    assert moved.json()["secretsCleared"] == ["token"]
    assert moved.json()["secretsSet"] == {"token": False}
    assert moved_again.json()["secretsCleared"] == []  # nothing left to clear
    assert moved_again.json()["secretsSet"] == {"token": False}
    assert elsewhere.authorizations
    assert set(elsewhere.authorizations) == {None}
    assert back.json()["secretsCleared"] == []
    assert back.json()["secretsSet"] == {"token": True}
    assert set(operators.authorizations) == {f"Bearer {CANARY}"}


def test_the_environments_own_urls_are_not_checked(
    start: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MLFLOW__TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("LLMOPS_MLFLOW__ARTIFACT_LOCATION", "/srv/artifacts")
    client = start(plugins="mlflow")

    mlflow = settings_of(client, "mlflow")
    unrelated = configure(client, "mlflow", {"request_timeout_seconds": 3})

    assert mlflow["error"] is None, mlflow["error"]
    assert mlflow["settings"]["tracking_uri"] == "http://127.0.0.1:5000"
    assert unrelated.status_code == 200, unrelated.text


# -- the connection test shows a reason, not the answer -----------------------------------

#: What a hostile or wrong server may answer, each with the canary in its body.
HOSTILE_ANSWERS = [
    (500, "text/plain", f"{CANARY} failed\nsecond line {CANARY}".encode()),
    (200, "text/html", f"<html><body>{CANARY}</body></html>".encode()),
    (200, "application/json", json.dumps({"experiments": CANARY, "items": CANARY}).encode()),
    (
        400,
        "application/json",
        json.dumps({"error_code": "BAD_REQUEST", "message": CANARY}).encode(),
    ),
    (401, "text/plain", CANARY.encode()),
    (
        403,
        "application/json",
        json.dumps({"error_code": "PERMISSION_DENIED", "message": CANARY}).encode(),
    ),
    (404, "application/json", json.dumps({"kind": "Nope", "message": CANARY}).encode()),
    (
        403,
        "application/json",
        json.dumps({"kind": "Status", "code": 403, "message": CANARY}).encode(),
    ),
]


def _after_mlflows_client_started(client: TestClient) -> None:
    wait_for(
        lambda: "starting" not in connection_test(client, "mlflow")["results"][0]["detail"],
        timeout=60,
        interval=0.2,
        what="MLflow's client to start",
    )


@pytest.mark.parametrize("plugin", ["mlflow", "kserve"])
def test_the_connection_test_never_returns_what_the_server_answered(
    start: StartApp, recorder: Callable[[], Recorder], plugin: str
) -> None:
    hostile = recorder()
    hostile.answer = HOSTILE_ANSWERS[0]
    client = start(plugins=plugin, integration_url_allowlist="127.0.0.1")
    url_field = {"mlflow": "tracking_uri", "kserve": "api_url"}[plugin]
    assert configure(client, plugin, {url_field: hostile.url}).status_code == 200
    if plugin == "mlflow":
        _after_mlflows_client_started(client)

    seen: list[str] = []
    for answer in HOSTILE_ANSWERS:
        hostile.answer = answer
        tested = client.post(f"{API}/integrations/{plugin}/test")
        listed = client.get(f"{API}/integrations/{plugin}")
        health = client.get(f"{API}/health")
        for response in (tested, listed, health):
            assert response.status_code == 200, response.text
            assert CANARY not in response.text, (answer, response.text)
        [result] = tested.json()["results"]
        if answer[0] >= 400:
            assert result["status"] == "down", (answer, result)
        seen.append(result["detail"])

    assert len(hostile.authorizations) >= len(HOSTILE_ANSWERS)
    assert any("401" in detail for detail in seen), seen


LOUD_PLUGIN = textwrap.dedent(
    """
    import llmops
    from llmops.capabilities.common import Capability, Health, HealthStatus
    from llmops.plugins.info import PluginInfo, PluginSettings


    class LoudTracker:
        def health(self):
            detail = "refused:\\x1b[31m\\u202e" + "x" * 5000 + "\\u2028second\\nthird"
            return Health(status=HealthStatus.DOWN, detail=detail)


    @llmops.hookimpl
    def llmops_plugin_info():
        return PluginInfo(
            name="loud", version="1.0", display_name="Loud",
            capabilities=frozenset({Capability.TRACKING}), settings_model=PluginSettings,
        )


    @llmops.hookimpl
    def llmops_tracking(settings, context):
        return LoudTracker()
    """
)


def test_every_providers_health_detail_is_one_short_line_whatever_the_plugin_says(
    start: StartApp, install: PluginInstaller
) -> None:
    install("loud", LOUD_PLUGIN)
    client = start(plugins="loud")

    [result] = connection_test(client, "loud")["results"]
    health = client.get(f"{API}/health").json()["integrations"]
    [listed] = [r for r in health if r["plugin"] == "loud"]

    for detail in (result["detail"], listed["detail"]):
        assert detail.startswith("refused: [31m xxx")
        assert len(detail) <= 300
        assert detail.isprintable()
        assert "second" not in detail
        assert "third" not in detail


# -- the policy itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://127.0.0.1:22/", "loopback"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://10.0.0.5/", "private"),
        ("http://172.20.1.1/", "private"),
        ("http://192.168.0.10/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://[fd00::1]/", "unique local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://u:p@203.0.113.5/", "password"),
        ("ftp://203.0.113.5/", "scheme 'ftp'"),
        ("http:///just/a/path", "with a host"),
        ("http://203.0.113.5:99999/", "not a valid URL"),
        ("http://203.0.113.5/\nx", "control characters"),
    ],
)
def test_the_policy_refuses_internal_and_malformed_urls(url: str, reason: str) -> None:
    problem = url_problem(url, ToolUrl(), Allowlist.parse(""))

    assert problem is not None
    assert reason in problem, problem


def test_the_policy_checks_every_address_a_name_resolves_to() -> None:
    def resolve(host: str) -> list[str]:
        return ["203.0.113.10", "10.0.0.7"] if host == "mixed.example" else ["203.0.113.10"]

    mixed = url_problem("https://mixed.example/", ToolUrl(), Allowlist.parse(""), resolve=resolve)
    public = url_problem("https://public.example/", ToolUrl(), Allowlist.parse(""), resolve=resolve)
    allowed = url_problem(
        "https://mixed.example/", ToolUrl(), Allowlist.parse("10.0.0.0/24"), resolve=resolve
    )

    assert mixed is not None
    assert "10.0.0.7" in mixed
    assert public is None
    assert allowed is None


def test_a_tool_url_naming_a_credential_the_settings_lack_fails_the_plugin_info() -> None:
    class Settings(PluginSettings):
        api_url: Annotated[str | None, ToolUrl(credentials=("tokn",))] = None
        token: SecretStr | None = None

    with pytest.raises(ValidationError, match="credentials name no field: tokn"):
        PluginInfo(name="typo", version="1", display_name="Typo", settings_model=Settings)


def test_an_allow_list_entry_that_is_no_host_or_network_stops_the_start() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        CoreSettings(integration_url_allowlist="10.0.0.0/8, not a host!")
