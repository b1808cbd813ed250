"""The module the ``argo`` entry point names: the plugin's hook implementations.

It stays import-light: hera, requests and the ``kubernetes`` client are imported when the
provider is built or first used, never when the plugin is listed or loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import llmops
from llmops.capabilities.common import Capability, Provider
from llmops.plugins import PluginContext, PluginInfo
from llmops_argo import __version__
from llmops_argo.settings import ArgoSettings

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from llmops_argo.provider import ArgoOrchestrator


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="argo",
        version=__version__,
        display_name="Argo Workflows",
        description="Pipelines and training jobs on Argo Workflows: one Workflow per "
        "pipeline (a DAG, a container per stage), submitted through the Argo Server, with "
        "links to the Argo UI.",
        capabilities=frozenset({Capability.ORCHESTRATION}),
        settings_model=ArgoSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://argo-workflows.readthedocs.io/"},
    )


def build_orchestrator(settings: ArgoSettings) -> ArgoOrchestrator:
    """The provider for ``settings``; it contacts nothing until it is called."""
    from llmops_argo.provider import ArgoOrchestrator

    return ArgoOrchestrator(settings)


@llmops.hookimpl
def llmops_orchestration(settings: ArgoSettings, context: PluginContext) -> ArgoOrchestrator | None:
    # without an Argo Server, no orchestrator: the console shows the plugin as not
    # configured, and pipelines run on the local executor instead of waiting for a server
    # nobody named
    return build_orchestrator(settings) if settings.server_url else None


@llmops.hookimpl
def llmops_metrics_collectors(
    settings: ArgoSettings,
    context: PluginContext,
    providers: Mapping[Capability, Sequence[Provider]],
) -> list[Collector]:
    """What the orchestrator ``llmops_orchestration`` just built saw of Argo (workflows by
    phase, submissions, API requests): read from its memory, never from Argo."""
    from llmops_argo.provider import ArgoOrchestrator

    built = providers.get(Capability.ORCHESTRATION, ())
    collectors: list[Collector] = [p.metrics for p in built if isinstance(p, ArgoOrchestrator)]
    return collectors[:1]
