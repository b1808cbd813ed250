"""The test kit for plugin authors: the pytest plugin's fixtures, as an author's test suite
uses them (run with ``pytester``), and the tool double base."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# Imported here, outside the pytester runs: each run forgets the modules it imported, and
# importing the app again would cost every run a second.
import llmops.api.app
import llmops.builtin.local_executor  # noqa: F401
from llmops.testing.contracts import ContractSuite, requires
from llmops.testing.contracts.orchestration import OrchestrationContract
from llmops.testing.contracts.registry import RegistryContract
from llmops.testing.contracts.serving import ServingContract
from llmops.testing.contracts.tracking import TrackingContract
from llmops.testing.contracts.versioning import VersioningContract
from llmops.testing.doubles import (
    Fault,
    RecordedRequest,
    Reply,
    ToolDouble,
    ToolError,
    json_reply,
    route,
)

pytest_plugins = ["pytester"]

#: Plugins the inner runs do without: each run would import hypothesis again (a pytester
#: run forgets the modules it imported), which costs a second.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio")
OPT_IN = 'pytest_plugins = ["llmops.testing.pytest_plugin"]\n'

HELLO_PLUGIN = """
import llmops
from llmops.plugins import PluginInfo


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(name="hello", version="0.0.1", display_name="Hello")
"""


@pytest.fixture
def author(pytester: pytest.Pytester) -> pytest.Pytester:
    """A plugin author's test folder that opted in to the kit."""
    pytester.makeconftest(OPT_IN)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET_PLUGINS, "--strict-markers", *args)


# =====================================================================================
# The pytest plugin
# =====================================================================================


def test_settings_use_the_tests_folder_and_sqlite_and_ignore_the_shell(
    author: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_PLUGINS", "all")
    monkeypatch.setenv("LLMOPS_DATABASE_URL", "postgresql://nowhere.invalid/llmops")
    monkeypatch.setenv("LLMOPS_STRICT_PLUGINS", "true")
    author.makepyfile(
        """
        def test_settings(llmops_settings, tmp_path):
            assert llmops_settings.plugins == "none"
            assert llmops_settings.data_dir.is_relative_to(tmp_path)
            assert llmops_settings.resolved_database_url == f"sqlite:///{tmp_path / 'llmops.db'}"
            assert llmops_settings.strict_plugins is False
        """
    )

    run(author).assert_outcomes(passed=1)


def test_the_marker_and_the_fixture_override_choose_the_enabled_plugins(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.llmops_plugins("example", "mlflow")
        def test_marked(llmops_settings):
            assert llmops_settings.plugins == "example,mlflow"

        @pytest.mark.llmops_plugins("mlflow")
        class TestClassMarker:
            def test_inherits(self, llmops_settings):
                assert llmops_settings.plugins == "mlflow"

            @pytest.mark.llmops_plugins("example")
            def test_closest_wins(self, llmops_settings):
                assert llmops_settings.plugins == "example"
        """,
        test_override="""
        import pytest

        @pytest.fixture
        def llmops_enabled_plugins():
            return ["hello"]

        def test_overridden(llmops_settings):
            assert llmops_settings.plugins == "hello"
        """,
    )

    run(author).assert_outcomes(passed=4)


def test_the_client_sends_the_admin_key_and_each_role_has_a_working_key(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        """
        from llmops.services.api_keys import hash_key
        from llmops.db.models import ApiKey
        from sqlalchemy import select

        API = "/llm-ops/v1"

        def test_keys(llmops_app, llmops_keys, llmops_client, llmops_client_as):
            assert llmops_client.headers["authorization"] == f"Bearer {llmops_keys.admin}"
            with llmops_app.state.platform.transaction() as session:
                rows = {r.key_hash: r for r in session.scalars(select(ApiKey))}
            for role in ("viewer", "editor", "admin"):
                row = rows[hash_key(llmops_keys[role])]
                assert (row.role, row.revoked_at) == (role, None)

            assert llmops_client.get(f"{API}/integrations").status_code == 200
            viewer = llmops_client_as("viewer")
            assert viewer.headers["authorization"] == f"Bearer {llmops_keys.viewer}"
            assert viewer.get(f"{API}/integrations").status_code == 200
            assert "authorization" not in llmops_client_as(None).headers
            assert llmops_client_as(None).get("/healthz").status_code == 200

        def test_an_unknown_role_has_no_key(llmops_keys):
            import pytest
            with pytest.raises(KeyError):
                llmops_keys["job"]
        """
    )

    run(author).assert_outcomes(passed=2)


def test_an_installed_plugin_is_loaded_by_the_app_and_gone_after_the_test(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        f"""
        import importlib.util
        import sys

        import pytest

        HELLO = {HELLO_PLUGIN!r}

        @pytest.fixture
        def llmops_enabled_plugins(llmops_install_plugin):
            llmops_install_plugin("hello", HELLO)
            return ["hello"]

        def test_loaded(llmops_client):
            found = llmops_client.get("/llm-ops/v1/integrations/hello")
            assert found.status_code == 200, found.text
            assert (found.json()["enabled"], found.json()["loaded"]) == (True, True)

        def test_gone_afterwards():
            assert "llmops_test_hello" not in sys.modules
            assert importlib.util.find_spec("llmops_test_hello") is None
        """
    )

    run(author).assert_outcomes(passed=2)


@pytest.mark.postgres
def test_an_author_runs_the_app_on_postgresql_by_overriding_the_database_url(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        """
        import pytest

        @pytest.fixture
        def llmops_database_url(llmops_postgres_url):
            return llmops_postgres_url

        def test_on_postgres(llmops_settings, llmops_client):
            assert llmops_settings.resolved_database_url.startswith("postgresql+psycopg://")
            assert llmops_client.get("/llm-ops/v1/integrations").status_code == 200
        """
    )

    run(author).assert_outcomes(passed=1)


def test_postgres_is_started_only_for_the_tests_that_ask(author: pytest.Pytester) -> None:
    author.makepyfile(
        """
        def test_plain(llmops_client, request):
            assert "llmops_postgres" not in request.fixturenames
            assert llmops_client.app.state.platform.engine.dialect.name == "sqlite"
        """
    )

    result = run(author, "--setup-show")

    result.assert_outcomes(passed=1)
    assert "llmops_postgres" not in result.stdout.str()


def test_the_summary_names_the_features_a_contract_subclass_left_out(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        """
        import pytest
        from llmops.builtin.local_executor import LocalExecutor
        from llmops.testing.contracts.orchestration import OrchestrationContract

        class TestPartial(OrchestrationContract):
            supports = frozenset({"logs", "cancel"})

            @pytest.fixture
            def provider(self, tmp_path):
                executor = LocalExecutor(tmp_path)
                yield executor
                executor.close()
        """
    )

    result = run(author, "-k", "provider_is_an_orchestration_provider")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*llmops contract suites*",
            "test_*.py::TestPartial (orchestration): features not declared, their tests not "
            "run: env, max_parallel, parallel, restart, retries, retry, timeout, unreachable",
        ]
    )


# -- the contract machinery ---------------------------------------------------------------


def test_tests_of_undeclared_features_do_not_exist_in_the_subclass() -> None:
    class Partial(OrchestrationContract):
        supports = frozenset({"cancel"})

    class Full(Partial):
        supports = frozenset(OrchestrationContract.features)

    assert callable(Partial.test_cancel_of_an_unknown_run_is_not_found)
    assert not callable(Partial.test_logs_tail_bytes_keeps_the_end)
    assert callable(Full.test_logs_tail_bytes_keeps_the_end), "a further subclass gets it back"
    assert Partial.not_supported == frozenset(OrchestrationContract.features) - {"cancel"}
    assert Full.not_supported == frozenset()


def test_an_unknown_feature_name_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="cancell"):

        class Typo(OrchestrationContract):
            supports = frozenset({"cancell"})

    with pytest.raises(TypeError, match="not the string"):

        class Bare(OrchestrationContract):
            supports = "cancel"  # type: ignore[assignment]


def test_a_test_needing_two_features_needs_both() -> None:
    class Suite(ContractSuite):
        features = {"a": "first", "b": "second"}

        @requires("a", "b")
        def test_both(self) -> None: ...

    class OnlyA(Suite):
        supports = frozenset({"a"})

    class Both(Suite):
        supports = frozenset({"a", "b"})

    assert not callable(OnlyA.test_both)
    assert callable(Both.test_both)
    assert Suite.contract_tests() == {
        "test_both": frozenset({"a", "b"}),
        "test_methods_take_the_protocols_parameters": frozenset(),  # from ContractSuite
    }


# =====================================================================================
# Tool doubles
# =====================================================================================


class CatalogDouble(ToolDouble):
    """A tool with items, files and the tool's own error shape."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, dict[str, Any]] = {}

    def reset_state(self) -> None:
        self.items.clear()

    def not_found(self, request: RecordedRequest) -> Reply:
        return json_reply({"code": "NoSuchRoute", "path": request.path}, status=404)

    @route("POST", "/api/items")
    def create_item(self, request: RecordedRequest) -> Reply:
        item = {"id": str(len(self.items) + 1), **request.json}
        self.items[item["id"]] = item
        return json_reply(item, status=201)

    @route("GET", "/api/items/{item_id}")
    def get_item(self, request: RecordedRequest, item_id: str) -> dict[str, Any]:
        if item_id not in self.items:
            raise ToolError(json_reply({"code": "NoSuchItem", "id": item_id}, status=404))
        return self.items[item_id]

    @route("GET", "/files/{path:path}")
    def get_file(self, request: RecordedRequest, path: str) -> Reply:
        return Reply(body=path.encode(), headers={"Content-Type": "text/plain"})

    @route("DELETE", "/api/items/{item_id}")
    def delete_item(self, request: RecordedRequest, item_id: str) -> None:
        self.items.pop(item_id, None)

    @route("GET", "/api/crash")
    def crash(self, request: RecordedRequest) -> None:
        raise RuntimeError("a bug in the double")


@pytest.fixture
def catalog() -> Iterator[CatalogDouble]:
    with CatalogDouble() as double:
        yield double


def test_a_double_records_every_request(catalog: CatalogDouble) -> None:
    with httpx.Client(base_url=catalog.url) as client:
        created = client.post(
            "/api/items?dry_run=false&tag=a&tag=b",
            json={"name": "gpt-tiny"},
            headers={"Authorization": "Bearer t0k"},
        )
        fetched = client.get(f"/api/items/{created.json()['id']}")

    assert (created.status_code, created.json()) == (201, {"id": "1", "name": "gpt-tiny"})
    assert fetched.json() == {"id": "1", "name": "gpt-tiny"}
    first, second = catalog.requests
    assert (first.method, first.path, first.route) == ("POST", "/api/items", "/api/items")
    assert first.query == {"dry_run": ["false"], "tag": ["a", "b"]}
    assert first.headers["authorization"] == "Bearer t0k"
    assert first.json == {"name": "gpt-tiny"}
    assert first.body == b'{"name":"gpt-tiny"}'
    assert first.received_at <= second.received_at
    assert (second.route, second.json) == ("/api/items/{item_id}", None)
    assert catalog.requests_to("GET", "/api/items/{item_id}") == [second]
    assert catalog.requests_to("post") == [first]


def test_a_double_routes_path_parameters_and_answers_with_the_tools_errors(
    catalog: CatalogDouble,
) -> None:
    with httpx.Client(base_url=catalog.url) as client:
        missing = client.get("/api/items/42")
        nested = client.get("/files/org/model/config.json")
        deleted = client.delete("/api/items/42")
        unrouted = client.get("/nowhere")

    assert (missing.status_code, missing.json()) == (404, {"code": "NoSuchItem", "id": "42"})
    assert nested.text == "org/model/config.json"
    assert deleted.status_code == 204
    assert (unrouted.status_code, unrouted.json()["code"]) == (404, "NoSuchRoute")
    catalog.check_errors()


def test_a_crashing_handler_answers_500_and_is_reported(catalog: CatalogDouble) -> None:
    assert httpx.get(f"{catalog.url}/api/crash").status_code == 500

    assert "a bug in the double" in catalog.errors[0]
    with pytest.raises(AssertionError, match="crashed on 1 request"):
        catalog.check_errors()


def test_a_status_fault_hits_its_route_and_method_the_given_number_of_times(
    catalog: CatalogDouble,
) -> None:
    catalog.items["1"] = {"id": "1"}
    catalog.inject(Fault.status(503, times=2), method="GET", route="/api/items/{item_id}")

    with httpx.Client(base_url=catalog.url) as client:
        codes = [client.get("/api/items/1").status_code for _ in range(3)]
        other_route = client.get("/files/x").status_code
        other_method = client.delete("/api/items/1").status_code

    assert codes == [503, 503, 200]
    assert (other_route, other_method) == (200, 204)
    assert len(catalog.requests) == 5, "faulted requests are recorded too"


def test_a_fault_can_answer_with_the_tools_own_error(catalog: CatalogDouble) -> None:
    throttled = json_reply({"code": "Throttled"}, status=429, headers={"Retry-After": "1"})
    catalog.inject(Fault(reply=throttled))

    answer = httpx.get(f"{catalog.url}/files/a")

    assert (answer.status_code, answer.json(), answer.headers["retry-after"]) == (
        429,
        {"code": "Throttled"},
        "1",
    )
    catalog.clear_faults()
    assert httpx.get(f"{catalog.url}/files/a").status_code == 200


def test_a_delay_fault_answers_late(catalog: CatalogDouble) -> None:
    catalog.inject(Fault(delay=0.3), route="/files/{path:path}")

    started = time.monotonic()
    late = httpx.get(f"{catalog.url}/files/a")
    took = time.monotonic() - started

    assert late.status_code == 200
    assert took >= 0.3
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{catalog.url}/files/a", timeout=0.05)


def test_a_dropped_connection_reaches_the_client_as_a_transport_error(
    catalog: CatalogDouble,
) -> None:
    catalog.inject(Fault(drop_connection=True, times=1))

    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{catalog.url}/files/a")
    assert httpx.get(f"{catalog.url}/files/a").status_code == 200


def test_faults_name_routes_that_exist(catalog: CatalogDouble) -> None:
    with pytest.raises(ValueError, match="no route"):
        catalog.inject(Fault.status(500), route="/api/itemz")


def test_wait_for_request_returns_once_a_matching_request_arrives(
    catalog: CatalogDouble,
) -> None:
    sender = threading.Timer(0.05, lambda: httpx.delete(f"{catalog.url}/api/items/7"))
    sender.start()
    try:
        request = catalog.wait_for_request(lambda r: r.method == "DELETE", timeout=5)
    finally:
        sender.join()

    assert request.path == "/api/items/7"
    with pytest.raises(AssertionError, match="no matching request"):
        catalog.wait_for_request(lambda r: r.method == "PUT", timeout=0.05)


def test_reset_forgets_requests_faults_and_state(catalog: CatalogDouble) -> None:
    httpx.post(f"{catalog.url}/api/items", json={"name": "x"})
    catalog.inject(Fault.status(500))

    catalog.reset()

    assert (catalog.requests, catalog.items) == ([], {})
    assert httpx.get(f"{catalog.url}/files/a").status_code == 200


def test_a_stopped_double_refuses_connections() -> None:
    double = CatalogDouble().start()
    port = double.port
    assert double.running
    double.stop()

    assert not double.running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(RuntimeError, match="not running"):
        _ = double.url


def test_a_double_fixture_starts_once_per_session_and_resets_for_each_test(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    ports = tmp_path / "ports.txt"
    pytester.makeconftest(
        """
        from llmops.testing.doubles import ToolDouble, double_fixture, route

        class Echo(ToolDouble):
            @route("GET", "/echo/{word}")
            def echo(self, request, word):
                return {"word": word}

        echo = double_fixture(Echo)
        other_echo = double_fixture(Echo, name="second_echo")
        """
    )
    pytester.makepyfile(
        f"""
        import httpx

        def test_one(echo, second_echo):
            assert echo.requests == []
            assert httpx.get(f"{{echo.url}}/echo/hi").json() == {{"word": "hi"}}
            assert echo.port != second_echo.port
            with open({str(ports)!r}, "a") as out:
                out.write(f"{{echo.port}}\\n")

        def test_two(echo):
            assert echo.requests == [], "reset before each test"
            with open({str(ports)!r}, "a") as out:
                out.write(f"{{echo.port}}\\n")
        """
    )

    run(pytester).assert_outcomes(passed=2)

    first, second = ports.read_text().split()
    assert first == second, "one double for the whole session"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(first))) != 0, "stopped after the session"


# =====================================================================================
# The author's guide
# =====================================================================================

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "plugins" / "testing.md"


def test_the_guide_quotes_the_projects_tests_verbatim() -> None:
    blocks = re.findall(
        r"^```\w*\n# (\S+)\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), flags=re.M | re.S
    )
    quoted = [(path, code) for path, code in blocks if (REPO / path).is_file()]

    assert {path for path, _ in quoted} >= {
        "tests/test_contract_example_tracker.py",
        "core/tests/test_contract_local_executor.py",
        "core/tests/test_testing_kit.py",
    }
    stale = [path for path, code in quoted if code not in (REPO / path).read_text("utf-8")]
    assert not stale, f"{GUIDE.name} quotes code that is no longer in {stale}"


@pytest.mark.parametrize(
    "suite",
    [
        TrackingContract,
        ServingContract,
        OrchestrationContract,
        RegistryContract,
        VersioningContract,
    ],
)
def test_the_guide_documents_every_feature_of_every_suite(suite: type[ContractSuite]) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    assert f"`llmops.testing.contracts.{suite.capability}.{suite.__name__}`" in guide
    rows = [line for line in guide.splitlines() if line.startswith("| ")]
    for feature in suite.features:
        assert any(
            f"| `{feature}` |" in row and (suite.capability in row or "every suite" in row)
            for row in rows
        ), f"{GUIDE.name} has no row for the {feature!r} feature of {suite.__name__}"
