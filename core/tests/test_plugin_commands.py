"""``llmops <plugin> ...``: commands a plugin adds through ``llmops_cli_commands``, with the
platform (``PlatformCommands``) as click's context object, started only when asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmops.cli import main
from llmops.config import CoreSettings
from llmops.db.models import ExperimentRun
from llmops.platform import Platform
from llmops.testing.plugins import PluginInstaller as InstallPlugin

COMMANDS_PLUGIN = '''
import click
import llmops
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.errors import Conflict
from llmops.plugins import PluginInfo, PluginSettings


class Tracker:
    max_metrics_per_batch = 10

    def health(self):
        return Health(status=HealthStatus.OK)


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name=NAME,
        version="1.0.0",
        display_name="Commands test",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=PluginSettings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    return Tracker()


@llmops.hookimpl
def llmops_cli_commands(context):
    @click.command("hello")
    def hello():
        """Say which plugin's data dir this is."""
        click.echo(f"hello from {context.plugin_name} at {context.data_dir}")

    @click.command("move")
    @click.option("--to", default=NAME)
    @click.pass_obj
    def move(platform, to):
        """Move runs here (a dry run)."""
        report = platform.move_runs(to=to, dry_run=True)
        click.echo(f"report for {report.target}: {len(report.moves)} moves")

    @click.command("refuse")
    def refuse():
        raise Conflict("the tool says no: refused-7f2c")

    return [hello, move, refuse]
'''

PLAIN_PLUGIN = """
import llmops
from llmops.plugins import PluginInfo


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(name=NAME, version="1.0.0", display_name="No commands")
"""

Invoke = Callable[..., Result]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def invoke(data_dir: Path) -> Invoke:
    def run(*args: str, plugins: str = "all") -> Result:
        env = {"LLMOPS_DATA_DIR": str(data_dir), "LLMOPS_PLUGINS": plugins}
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_a_plugin_adds_commands_under_its_name_and_help_lists_them(
    install: InstallPlugin, invoke: Invoke, data_dir: Path
) -> None:
    install("cmdplug", f"NAME = 'cmdplug'\n{COMMANDS_PLUGIN}")
    install("plain", f"NAME = 'plain'\n{PLAIN_PLUGIN}")

    top = invoke("--help")
    group = invoke("cmdplug", "--help")
    hello = invoke("cmdplug", "hello")

    assert top.exit_code == 0, top.output
    assert "cmdplug" in top.output
    assert "plain" not in top.output, "a plugin without commands adds no group"
    assert group.exit_code == 0, group.output
    assert "Commands of the cmdplug plugin." in group.output
    assert "hello" in group.output
    assert "move" in group.output
    assert hello.exit_code == 0, hello.output
    assert f"hello from cmdplug at {data_dir / 'plugins' / 'cmdplug'}" in hello.output
    assert not (data_dir / "llmops.db").exists(), "no command asked for the platform"


def test_a_plugin_command_gets_the_platform_started_on_first_use(
    install: InstallPlugin, invoke: Invoke, data_dir: Path
) -> None:
    install("cmdplug", f"NAME = 'cmdplug'\n{COMMANDS_PLUGIN}")

    result = invoke("cmdplug", "move")

    assert result.exit_code == 0, result.output
    assert "nothing to move: every experiment run is in cmdplug" in result.output
    assert "report for cmdplug: 0 moves" in result.output
    assert (data_dir / "llmops.db").exists(), "the platform started: its database is migrated"


def test_a_domain_error_ends_a_plugin_command_with_its_message(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("cmdplug", f"NAME = 'cmdplug'\n{COMMANDS_PLUGIN}")

    result = invoke("cmdplug", "refuse")

    assert result.exit_code == 1
    assert "Error: the tool says no: refused-7f2c" in result.output
    assert "Traceback" not in result.output


def test_moving_to_a_provider_that_is_not_enabled_is_refused_with_the_reason(
    install: InstallPlugin, invoke: Invoke, data_dir: Path
) -> None:
    install("cmdplug", f"NAME = 'cmdplug'\n{COMMANDS_PLUGIN}")
    platform = Platform(CoreSettings(data_dir=data_dir, plugins="none"))
    platform.start()
    try:
        with platform.transaction() as session:
            session.add(ExperimentRun(experiment_name="e", run_name="r", status="FINISHED"))
    finally:
        platform.stop()

    result = invoke("cmdplug", "move", "--to", "nosuch")

    assert result.exit_code == 1
    assert "Error: tracking provider 'nosuch' is not enabled" in result.output


def test_a_plugin_named_like_a_core_command_cannot_replace_it(
    install: InstallPlugin, invoke: Invoke
) -> None:
    install("db", f"NAME = 'db'\n{COMMANDS_PLUGIN}")

    result = invoke("db", "--help")

    assert result.exit_code == 0, result.output
    assert "upgrade" in result.output, "the core's own `llmops db`"
    assert "hello" not in result.output
