"""Plugins' commands in the ``llmops`` CLI: ``llmops <plugin> ...``.

:class:`LlmopsGroup` is the root group: a name that is not one of the core's commands is
looked up among the installed plugins, whose ``llmops_cli_commands`` hook gives the
commands of a group named after the plugin. Those commands get a :class:`PlatformSession`
as click's context object (:class:`~llmops.plugins.commands.PlatformCommands`): the
platform starts when a command first asks it for something and stops when the command
ends.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from llmops.errors import LlmopsError
from llmops.plugins.commands import MoveReport

if TYPE_CHECKING:
    from llmops.config import CoreSettings
    from llmops.platform import Platform


class PlatformSession:
    """The platform as a plugin's command sees it; started on first use."""

    def __init__(self, settings: Callable[[], CoreSettings], echo: Callable[[str], Any]) -> None:
        self._settings = settings
        self._echo = echo
        self._platform: Platform | None = None

    def _started(self) -> Platform:
        if self._platform is None:
            from llmops.platform import Platform

            platform = Platform(self._settings())
            platform.start()
            self._platform = platform
        return self._platform

    def close(self) -> None:
        if self._platform is not None:
            self._platform.stop()
            self._platform = None

    def move_runs(self, *, to: str, dry_run: bool = False) -> MoveReport:
        from llmops.services.moves import move_runs

        platform = self._started()
        return move_runs(
            platform.sessions, platform.runtime, target=to, dry_run=dry_run, echo=self._echo
        )

    def move_endpoints(
        self, *, to: str, dry_run: bool = False, names: Sequence[str] = ()
    ) -> MoveReport:
        from llmops.services.moves import move_endpoints

        platform = self._started()
        return move_endpoints(
            platform.sessions,
            platform.runtime,
            target=to,
            dry_run=dry_run,
            names=names,
            echo=self._echo,
        )


class PluginCommands(click.Group):
    """``llmops <plugin>``: the plugin's commands, with the platform as context object; a
    domain error ends the command with its message (exit 1), not a traceback.

    Lazy: the plugin is loaded (stevedore, pluggy) and its hook called only when the group
    is run or asked for its help, so ``llmops --help`` stays light."""

    def __init__(self, name: str, *, settings: Callable[[], CoreSettings]) -> None:
        super().__init__(name=name, help=f"Commands of the {name} plugin.")
        self._core_settings = settings
        self._loaded: dict[str, click.Command] | None = None

    def _commands(self) -> dict[str, click.Command]:
        if self._loaded is None:
            self._loaded = _plugin_commands(self.name or "", self._core_settings())
        return self._loaded

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._commands().get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        session = PlatformSession(self._core_settings, click.echo)
        ctx.obj = session
        ctx.call_on_close(session.close)
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            raise click.ClickException(exc.detail) from exc


def _plugin_commands(name: str, settings: CoreSettings) -> dict[str, click.Command]:
    """Load the plugin ``name`` and call its ``llmops_cli_commands``."""
    from llmops.integrations import plugin_context
    from llmops.plugins.discovery import call_one, load_plugins, make_plugin_manager

    pm = make_plugin_manager()
    loaded, failures = load_plugins([name], pm)
    if failures or not loaded:
        reason = failures[0].error if failures else "not installed"
        raise click.ClickException(f"plugin {name!r} could not be loaded: {reason}")
    context = plugin_context(settings, name)
    commands = call_one(pm, loaded[0].module, "llmops_cli_commands", context=context) or []
    return {command.name or "": command for command in commands}


def _offers_commands(target: str) -> bool:
    """Whether the plugin module ``target`` implements ``llmops_cli_commands``: imported
    (plugin modules are import-light), its hook not called."""
    try:
        module = importlib.import_module(target.split(":", 1)[0])
    except Exception:  # a broken plugin: `llmops plugins doctor` says why
        return False
    return callable(getattr(module, "llmops_cli_commands", None))


class LlmopsGroup(click.Group):
    """The root group: the core's commands, then one group per installed plugin that
    adds commands (a plugin named like a core command cannot)."""

    settings: Callable[[], CoreSettings]

    def _plugins(self, ctx: click.Context) -> dict[str, str]:
        from llmops.plugins.discovery import installed_plugins

        own = set(super().list_commands(ctx))
        return {p.name: p.target for p in installed_plugins() if p.name not in own}

    def list_commands(self, ctx: click.Context) -> list[str]:
        offering = [n for n, target in self._plugins(ctx).items() if _offers_commands(target)]
        return [*super().list_commands(ctx), *sorted(offering)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        if own is not None:
            return own
        target = self._plugins(ctx).get(cmd_name)
        if target is None or not _offers_commands(target):
            return None
        return PluginCommands(cmd_name, settings=self.settings)
