"""Plugins' commands in the ``llmops`` CLI: ``llmops <plugin> ...``.

:class:`LlmopsGroup` is the root group: a name that is not one of the core's commands is
looked up among the installed plugins, whose ``llmops_cli_commands`` hook gives the
commands of a group named after the plugin. Those commands get a :class:`PlatformSession`
as click's context object (:class:`~llmops.plugins.commands.PlatformCommands`): the
platform starts when a command first asks it for something and stops when the command
ends.
"""

from __future__ import annotations

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
    """``llmops <plugin>``: the plugin's commands, with the platform as context object;
    a domain error ends the command with its message (exit 1), not a traceback."""

    def __init__(self, *args: Any, settings: Callable[[], CoreSettings], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._core_settings = settings

    def invoke(self, ctx: click.Context) -> Any:
        session = PlatformSession(self._core_settings, click.echo)
        ctx.obj = session
        ctx.call_on_close(session.close)
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            raise click.ClickException(exc.detail) from exc


class LlmopsGroup(click.Group):
    """The root group: the core's commands, then one group per plugin that adds commands."""

    settings: Callable[[], CoreSettings]

    def list_commands(self, ctx: click.Context) -> list[str]:
        from llmops.plugins.discovery import installed_plugins

        own = super().list_commands(ctx)
        extra = [
            plugin.name
            for plugin in installed_plugins()
            if plugin.name not in own and self._plugin_group(plugin.name) is not None
        ]
        return [*own, *sorted(extra)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugin_group(cmd_name)

    def _plugin_group(self, name: str) -> click.Command | None:
        from llmops.integrations import plugin_context
        from llmops.plugins.discovery import (
            call_one,
            installed_plugins,
            load_plugins,
            make_plugin_manager,
        )

        if name not in {plugin.name for plugin in installed_plugins()}:
            return None
        pm = make_plugin_manager()
        loaded, failures = load_plugins([name], pm)
        if failures or not loaded:
            return None  # `llmops plugins doctor` says why
        context = plugin_context(self.settings(), name)
        commands = call_one(pm, loaded[0].module, "llmops_cli_commands", context=context)
        if not commands:
            return None
        return PluginCommands(
            name=name,
            commands=list(commands),
            help=f"Commands of the {loaded[0].info.display_name} plugin.",
            settings=self.settings,
        )
