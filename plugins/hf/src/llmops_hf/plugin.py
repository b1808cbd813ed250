"""The module the ``hf`` entry point names: the plugin's hook implementations.

It stays import-light: huggingface_hub and httpx2 are imported when the provider is first
used, never when the plugin is listed, loaded or built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo
from llmops_hf import __version__
from llmops_hf.settings import HfSettings

if TYPE_CHECKING:
    from pathlib import Path

    from llmops_hf.provider import HfRegistry


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="hf",
        version=__version__,
        display_name="Hugging Face Hub",
        description="Models from the Hugging Face Hub (or a mirror, or a private hub) into "
        "the catalog at a pinned commit, safetensors weights only by default, served from "
        "the local cache when the Hub is down; exports back to the Hub; update checks that "
        "show what changed.",
        capabilities=frozenset({Capability.REGISTRY}),
        settings_model=HfSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://huggingface.co/docs/huggingface_hub"},
    )


def build_registry(settings: HfSettings, data_dir: Path) -> HfRegistry:
    """The provider for ``settings``, keeping its state under ``data_dir``; it contacts
    nothing and writes nothing until it is called."""
    from llmops_hf.provider import HfRegistry

    return HfRegistry(settings, data_dir=data_dir)


@llmops.hookimpl
def llmops_registry(settings: HfSettings, context: PluginContext) -> HfRegistry:
    return build_registry(settings, context.data_dir)
