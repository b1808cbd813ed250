"""The module the ``folder_registry`` entry point names: the settings and the hooks.

It stays import-light: the core imports it to list and load the plugin, so the provider
(in a plugin for a real hub, the module that imports the hub's SDK) is imported inside
the hook that builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo, PluginSettings, ServerPath, ToolUrl
from pydantic import Field

from llmops_folder_registry import __version__

if TYPE_CHECKING:
    from llmops_folder_registry.registry import FolderRegistry


class FolderRegistrySettings(PluginSettings):
    """Read from ``LLMOPS_FOLDER_REGISTRY__<FIELD>``, overlaid by the stored configuration."""

    root: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="the folder that holds the repositories; the plugin's data dir when unset",
    )
    web_url: Annotated[str, ToolUrl(link=True)] = Field(
        default="http://127.0.0.1:8900",
        pattern=r"^https?://",
        description="where a web server publishes the folder "
        "(python -m http.server 8900 --directory <root>); links point there",
    )


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="folder_registry",
        version=__version__,
        display_name="Folder model registry",
        description="Model repositories in a local folder, each commit an immutable snapshot.",
        capabilities=frozenset({Capability.REGISTRY}),
        settings_model=FolderRegistrySettings,
        core_version=">=0.1,<0.2",
    )


@llmops.hookimpl
def llmops_registry(settings: FolderRegistrySettings, context: PluginContext) -> FolderRegistry:
    from llmops_folder_registry.registry import FolderRegistry

    # The plugin's own data dir is made here; a folder named in the settings never is: a
    # missing one (an unmounted share) is reported by health(), not silently recreated.
    root = settings.root if settings.root is not None else context.ensure_data_dir()
    return FolderRegistry(root, web_url=settings.web_url)
