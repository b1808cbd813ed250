"""``llmops plugins``, ``llmops db`` and ``llmops api-keys``, run through click's CliRunner."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from llmops.cli import main
from llmops.config import CoreSettings
from llmops.db import migrate
from llmops.db.models import ApiKey
from llmops.db.session import make_engine, make_session_factory
from llmops.platform import Platform
from llmops.services import integrations
from llmops.testing.plugins import PluginInstaller as InstallPlugin

TRACKER_PLUGIN = """
import llmops
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.plugins.info import PluginInfo, PluginSettings


class Tracker:
    max_metrics_per_batch = 10

    def health(self):
        return Health(status=HealthStatus.OK)


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name=NAME,
        version="3.1.4",
        display_name="CLI tracker",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=PluginSettings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return Tracker()
"""

BROKEN_PLUGIN = """
raise ImportError("no module named 'toolsdk': boom-93ab")
"""

Invoke = Callable[..., Result]


def tracker_plugin(name: str) -> str:
    return f"NAME = {name!r}\n" + TRACKER_PLUGIN


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def invoke(data_dir: Path) -> Invoke:
    """Run ``llmops ARGS`` with LLMOPS_DATA_DIR set to the test's own folder."""

    def run(*args: str, plugins: str = "none", database_url: str | None = None) -> Result:
        env = {"LLMOPS_DATA_DIR": str(data_dir), "LLMOPS_PLUGINS": plugins}
        if database_url is not None:
            env["LLMOPS_DATABASE_URL"] = database_url
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def rows_by_name(result: Result) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


# -- plugins list ----------------------------------------------------------------------


def test_plugins_list_json_shows_installed_plugins(install: InstallPlugin, invoke: Invoke) -> None:
    alpha = install("alpha", tracker_plugin("alpha"))
    beta = install("beta", tracker_plugin("beta"))

    rows = rows_by_name(invoke("plugins", "list", "--json", plugins="alpha"))

    assert rows["alpha"] == {
        "name": "alpha",
        "version": "3.1.4",
        "distribution": "llmops-test-alpha",
        "target": alpha,
        "enabled": True,
        "loaded": True,
        "builtin": False,
        "capabilities": ["tracking"],
        "default_for": ["tracking"],
        "choice_needed_for": [],
        "not_configured_for": [],
        "priority": 0,
        "error": None,
    }
    assert rows["beta"]["enabled"] is False
    assert rows["beta"]["loaded"] is False
    assert rows["beta"]["capabilities"] == []
    assert rows["beta"]["target"] == beta
    assert beta not in sys.modules
    assert rows["local"]["builtin"] is True
    assert rows["local"]["enabled"] is True
    assert rows["local"]["capabilities"] == ["orchestration"]
    assert rows["local"]["default_for"] == ["orchestration"]


def test_plugins_list_shows_a_table_with_load_errors(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("broken", BROKEN_PLUGIN)

    result = invoke("plugins", "list", plugins="alpha,broken")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "NAME", "VERSION", "ENABLED", "LOADED", "CAPABILITIES", "DEFAULT", "FOR", "ERROR"
    ]  # fmt: skip
    alpha = next(line for line in lines if line.startswith("alpha "))
    assert alpha.split()[:6] == ["alpha", "3.1.4", "yes", "yes", "tracking", "tracking"]
    broken = next(line for line in lines if line.startswith("broken "))
    assert "import: ImportError" in broken
    assert "boom-93ab" in broken


def test_plugins_list_says_which_capability_needs_an_admin_to_choose_its_provider(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("beta", tracker_plugin("beta"))

    result = invoke("plugins", "list", plugins="alpha,beta")
    as_json = rows_by_name(invoke("plugins", "list", "--json", plugins="alpha,beta"))

    assert result.exit_code == 0, result.output
    assert (
        "choice needed: 2 enabled plugins offer tracking with the same priority (alpha, beta)"
        in result.stderr
    )
    assert (
        as_json["alpha"]["choice_needed_for"]
        == as_json["beta"]["choice_needed_for"]
        == ["tracking"]
    )
    assert as_json["alpha"]["default_for"] == as_json["beta"]["default_for"] == []


def test_plugins_list_reads_the_stored_configuration(
    install: InstallPlugin, invoke: Invoke, data_dir: Path, database_url: str
) -> None:
    alpha = install("alpha", tracker_plugin("alpha"))
    platform = Platform(CoreSettings(data_dir=data_dir, database_url=database_url, plugins="alpha"))
    try:
        platform.start()
        with platform.transaction() as session:
            integrations.set_enabled(
                session=session, runtime=platform.runtime, name="alpha", enabled=False, actor=None
            )
    finally:
        platform.stop()
    sys.modules.pop(alpha)

    rows = rows_by_name(
        invoke("plugins", "list", "--json", plugins="alpha", database_url=database_url)
    )

    assert rows["alpha"]["enabled"] is False
    assert rows["alpha"]["loaded"] is False
    assert alpha not in sys.modules


# -- plugins doctor --------------------------------------------------------------------


def test_plugins_doctor_fails_and_prints_the_import_error(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("broken", BROKEN_PLUGIN)

    result = invoke("plugins", "doctor", plugins="alpha,broken")

    assert result.exit_code == 1, result.output
    assert "[FAIL] broken (llmops_test_broken)" in result.stdout
    assert "import: ImportError: no module named 'toolsdk': boom-93ab" in result.stdout
    assert "[  ok] alpha (llmops_test_alpha)" in result.stdout
    assert "1 plugin(s) failed" in result.stderr
    assert "all enabled plugins loaded" not in result.output


def test_plugins_doctor_succeeds_when_every_enabled_plugin_loads(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("broken", BROKEN_PLUGIN)  # installed but not enabled: never imported

    result = invoke("plugins", "doctor", plugins="alpha")

    assert result.exit_code == 0, result.output
    assert "[  ok] alpha (llmops_test_alpha)" in result.stdout
    assert "[  ok] local (llmops.builtin.local_plugin)" in result.stdout
    assert "[ off] broken (llmops_test_broken)" in result.stdout
    assert "all enabled plugins loaded" in result.stdout
    assert "llmops_test_broken" not in sys.modules


# -- database --------------------------------------------------------------------------


def test_db_upgrade_then_current_prints_the_head_revision(
    invoke: Invoke, database_url: str
) -> None:
    engine = make_engine(database_url)
    try:
        head = migrate.head_revision(engine)
    finally:
        engine.dispose()
    assert head

    before = invoke("db", "current", database_url=database_url)
    upgraded = invoke("db", "upgrade", database_url=database_url)
    current = invoke("db", "current", database_url=database_url)

    assert before.exit_code == 0, before.output
    assert "current: none (empty database)" in before.stdout
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.strip() == f"database at revision {head}"
    assert current.exit_code == 0, current.output
    assert current.stdout.splitlines() == [f"current: {head}", f"head:    {head}"]


# -- API keys --------------------------------------------------------------------------


def test_api_keys_create_prints_the_key_once_and_stores_only_its_hash(
    invoke: Invoke, database_url: str
) -> None:
    result = invoke(
        "api-keys", "create", "--name", "x", "--role", "admin", database_url=database_url
    )

    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("llmops_")
    assert result.output.count(key) == 1
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            [row] = session.scalars(select(ApiKey)).all()
            stored = [getattr(row, column.key) for column in ApiKey.__table__.columns]
    finally:
        engine.dispose()
    assert row.name == "x"
    assert row.role == "admin"
    assert row.key_hash != key
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.split("_")[1] == row.prefix
    assert f"created admin key {row.id} (x)" in result.stdout
    assert not any(isinstance(value, str) and key in value for value in stored)
