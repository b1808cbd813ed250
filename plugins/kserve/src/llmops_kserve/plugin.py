"""The module the ``kserve`` entry point names: the plugin's hook implementations.

It stays import-light: the ``kubernetes`` client is imported by the backend, on the first
call that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo
from llmops_kserve import __version__
from llmops_kserve.settings import KServeSettings

if TYPE_CHECKING:
    import click

    from llmops_kserve.backend import KServeBackend


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="kserve",
        version=__version__,
        display_name="KServe",
        description="Model serving on KServe: one InferenceService per endpoint on the "
        "Hugging Face runtime (OpenAI's API), with autoscaling and canary rollouts.",
        capabilities=frozenset({Capability.SERVING}),
        settings_model=KServeSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://kserve.github.io/website/"},
    )


def build_backend(settings: KServeSettings) -> KServeBackend:
    from llmops_kserve.backend import KServeBackend
    from llmops_kserve.client import KubernetesApi

    return KServeBackend(KubernetesApi(settings), settings)


@llmops.hookimpl
def llmops_serving(settings: KServeSettings, context: PluginContext) -> list[KServeBackend]:
    # without a way to a cluster, no framework: the console shows the plugin as not
    # configured, and it never takes serving over from one that works
    return [build_backend(settings)] if settings.reaches_a_cluster() else []


@llmops.hookimpl
def llmops_cli_commands(context: PluginContext) -> list[click.Command]:
    from llmops_kserve.commands import migrate

    return [migrate]
