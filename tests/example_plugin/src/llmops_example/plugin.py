"""The module the ``example`` entry point names: the plugin's hook implementations.

It stays import-light: the core imports it to list and load the plugin, so the tracker
(and, in a real plugin, the tool's SDK) is imported inside the hook that builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo, PluginSettings
from llmops_example import __version__

if TYPE_CHECKING:
    from llmops_example.tracker import JsonFileTracker


class ExampleSettings(PluginSettings):
    """Read from ``LLMOPS_EXAMPLE__<FIELD>``, overlaid by the stored configuration."""

    root: Path | None = Field(
        default=None, description="where runs are kept; the plugin's data dir when unset"
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="unused by the tracker; shows how a secret field is declared "
        "(never returned by the API, never logged)",
    )


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="example",
        version=__version__,
        display_name="Example JSON tracker",
        description="Experiment runs kept as JSON files on the local disk.",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=ExampleSettings,
        core_version=">=0.1,<1",
        # an example: installed next to MLflow (the workspace's dev group), it never takes
        # tracking over unless an admin chooses it
        priority=-50,
    )


@llmops.hookimpl
def llmops_tracking(settings: ExampleSettings, context: PluginContext) -> JsonFileTracker:
    from llmops_example.tracker import JsonFileTracker

    return JsonFileTracker(settings.root or context.data_dir)
