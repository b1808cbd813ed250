"""The module the ``dvc`` entry point names: the plugin's hook implementations.

It stays import-light: DVC (and its git layer) is imported when the provider is first
used, never when the plugin is listed, loaded or built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo
from llmops_dvc import __version__
from llmops_dvc.settings import DvcSettings

if TYPE_CHECKING:
    from pathlib import Path

    from llmops_dvc.provider import DvcVersioner


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="dvc",
        version=__version__,
        display_name="DVC",
        description="Dataset versions in DVC: a git + DVC repository per dataset, a version "
        "(a commit) on every upload, file-level diffs, restores, and pushes to any DVC "
        "remote (a local folder by default) that wait in the outbox while it is away.",
        capabilities=frozenset({Capability.VERSIONING}),
        settings_model=DvcSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://dvc.org/doc"},
    )


def build_versioning(settings: DvcSettings, data_dir: Path) -> DvcVersioner:
    """The provider for ``settings``, keeping its repositories, cache and default remote
    under ``data_dir``; it imports DVC and writes nothing until it is called."""
    from llmops_dvc.provider import DvcVersioner

    return DvcVersioner(settings, data_dir=data_dir)


@llmops.hookimpl
def llmops_versioning(settings: DvcSettings, context: PluginContext) -> DvcVersioner:
    return build_versioning(settings, context.data_dir)
