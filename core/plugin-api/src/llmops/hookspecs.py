"""The plugin contract: every hook a plugin may implement.

Plugins implement these with ``@llmops.hookimpl`` in the module their entry point names
(group ``llmops.plugins``). That module must be import-light: import the tool's SDK inside
the provider, not at the top of the module.

Calling rules. ``llmops_plugin_info`` is called once per plugin when it loads. Every other
hook is called **once per enabled plugin with that plugin's own validated settings**: the
core uses a pluggy subset caller that holds only that plugin, so an implementation never
sees another plugin's settings. A plugin that does not offer a capability simply does not
implement its hook. docs/plugins/hooks.md documents each hook and a test keeps it in step
with this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy
from pydantic import BaseModel

from llmops.capabilities.common import Capability, Provider
from llmops.capabilities.orchestration import OrchestrationProvider
from llmops.capabilities.registry import RegistryProvider
from llmops.capabilities.serving import ServingProvider
from llmops.capabilities.tracking import TrackingProvider
from llmops.capabilities.versioning import VersioningProvider
from llmops.plugins.info import PluginContext, PluginInfo

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter
    from prometheus_client.registry import Collector

hookspec = pluggy.HookspecMarker("llmops")


# -------------------------------------------------------------------------------------
# Identity
# -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def llmops_plugin_info() -> PluginInfo:  # type: ignore[empty-body]
    """Describe the plugin: name, version, capabilities, settings model, core range.

    :returns: a :class:`~llmops.plugins.info.PluginInfo`. The core refuses the plugin
        (and shows why) when ``name`` differs from the entry point's name, when the
        running core's version is outside ``core_version``, or when a capability is
        declared without its hook.

    Calling rule: called once per plugin at load time; first non-None result wins.

    .. versionadded:: 0.1
    """


# -------------------------------------------------------------------------------------
# Capabilities: each returns providers built from the plugin's validated settings
# -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def llmops_tracking(settings: BaseModel, context: PluginContext) -> TrackingProvider | None:
    """Build the plugin's experiment tracker.

    :param settings: the plugin's settings, an instance of ``PluginInfo.settings_model``
        built from the environment overlaid by the stored configuration.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: a :class:`~llmops.capabilities.tracking.TrackingProvider`, or None.

    Calling rule: called for this plugin only, again whenever its settings change; the
    result is cached until then. Must not contact the tool: do that in ``health()``.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_serving(settings: BaseModel, context: PluginContext) -> Sequence[ServingProvider] | None:
    """Build the plugin's serving backends (one plugin may offer several runtimes).

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: a sequence of :class:`~llmops.capabilities.serving.ServingProvider`; each
        backend's ``framework().name`` must be unique across all plugins.

    Calling rule: called for this plugin only, again whenever its settings change.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_orchestration(
    settings: BaseModel, context: PluginContext
) -> OrchestrationProvider | None:
    """Build the plugin's workflow engine.

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: an :class:`~llmops.capabilities.orchestration.OrchestrationProvider`, or None.

    Calling rule: called for this plugin only, again whenever its settings change.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_registry(settings: BaseModel, context: PluginContext) -> RegistryProvider | None:
    """Build the plugin's model registry client.

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: a :class:`~llmops.capabilities.registry.RegistryProvider`, or None.

    Calling rule: called for this plugin only, again whenever its settings change.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_versioning(settings: BaseModel, context: PluginContext) -> VersioningProvider | None:
    """Build the plugin's dataset versioner.

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: a :class:`~llmops.capabilities.versioning.VersioningProvider`, or None.

    Calling rule: called for this plugin only, again whenever its settings change.

    .. versionadded:: 0.1
    """


# -------------------------------------------------------------------------------------
# Cross-cutting
# -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def llmops_metrics_collectors(
    settings: BaseModel,
    context: PluginContext,
    providers: Mapping[Capability, Sequence[Provider]],
) -> Sequence[Collector] | None:
    """Contribute Prometheus collectors to ``/metrics`` (runs by status, workflows by phase).

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :param providers: the providers the plugin's capability hooks just built from the same
        settings, by capability: a collector reads through them instead of building a
        second client.
    :returns: collectors; each ``collect()`` must be quick and must not raise.

    Calling rule: called for this plugin only, after its capability hooks, whenever its
    providers are (re)built; its collectors are unregistered when it is disabled.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_api_routes(settings: BaseModel, context: PluginContext) -> APIRouter | None:
    """Contribute extra REST routes, mounted under ``/llm-ops/v1/plugins/<name>``.

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: a FastAPI ``APIRouter``; its paths are relative to the plugin's prefix.

    Calling rule: called for this plugin only, once: when the app starts with the plugin
    enabled, or when it is first enabled later. Routes of a plugin that is disabled
    answer 404 until it is enabled again.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def llmops_cli_commands(context: PluginContext) -> Sequence[click.Command] | None:
    """Contribute commands to the ``llmops`` CLI, under ``llmops <plugin-name> ...``.

    :param context: the plugin's data dir, the API's URL and the core's version.
    :returns: click commands (or groups). Each command that needs the platform takes
        it with ``@click.pass_obj``: a :class:`~llmops.plugins.commands.PlatformCommands`
        (move records between providers, ...), started on first use and stopped when the
        command ends.

    Calling rule: called for this plugin only, when ``llmops <plugin-name> ...`` runs (a
    command, or its help) and the plugin is installed; ``llmops --help`` only imports the
    plugin's module. Must stay import-light (import the tool's SDK inside the command). A
    plugin named like one of the core's own commands (``up``, ``plugins``, ...) cannot add
    commands.

    .. versionadded:: 0.1
    """


@hookspec
def llmops_startup(settings: BaseModel, context: PluginContext) -> None:
    """Prepare the plugin when the platform starts or the plugin is enabled.

    :param settings: the plugin's validated settings.
    :param context: the plugin's data dir, the API's URL and the core's version.

    Calling rule: called for this plugin only; an exception is recorded as the plugin's
    load error and the plugin is left out, never fatal to the platform.

    .. versionadded:: 0.1
    """


@hookspec
def llmops_shutdown(context: PluginContext) -> None:
    """Release what ``llmops_startup`` took (threads, servers, connections).

    :param context: the plugin's data dir, the API's URL and the core's version.

    Calling rule: called for this plugin only, when the platform stops or the plugin is
    disabled; exceptions are logged and the shutdown goes on.

    .. versionadded:: 0.1
    """
