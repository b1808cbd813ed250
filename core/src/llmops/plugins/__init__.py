"""Plugin discovery (stevedore), registration (pluggy) and the runtime that ties them to
the stored integration configuration."""

from llmops.plugins.discovery import (
    ENTRY_POINT_GROUP,
    InstalledPlugin,
    LoadedPlugin,
    PluginLoadFailure,
    installed_plugins,
    load_plugins,
    make_plugin_manager,
)
from llmops.plugins.info import PluginContext, PluginInfo, PluginSettings

__all__ = [
    "ENTRY_POINT_GROUP",
    "InstalledPlugin",
    "LoadedPlugin",
    "PluginContext",
    "PluginInfo",
    "PluginLoadFailure",
    "PluginSettings",
    "installed_plugins",
    "load_plugins",
    "make_plugin_manager",
]
