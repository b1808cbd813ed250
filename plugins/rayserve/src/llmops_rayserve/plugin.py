"""The module the ``rayserve`` entry point names: the plugin's hook implementations.

It stays import-light (``import ray`` takes seconds): Ray is imported by the backend, on
the first call that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import llmops
from llmops.capabilities.common import Capability
from llmops.plugins import PluginContext, PluginInfo, PluginSettings, ToolUrl
from llmops_rayserve import __version__

if TYPE_CHECKING:
    from llmops_rayserve.backend import RayServeBackend
    from llmops_rayserve.cluster import RayConfig


class RayServeSettings(PluginSettings):
    """Read from ``LLMOPS_RAYSERVE__<FIELD>``, overlaid by the stored configuration.

    Through the API, ``address`` and ``proxy_url`` must pass the platform's URL policy
    (a cluster on a private network needs LLMOPS_INTEGRATION_URL_ALLOWLIST).
    """

    address: Annotated[str | None, ToolUrl(schemes=("ray",), bare_address=True)] = Field(
        default=None,
        description="a Ray cluster to deploy on (host:6379 or ray://host:10001); unset: a "
        "local Ray the platform starts on demand (dashboard off, Serve's proxy on 127.0.0.1)",
    )
    http_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the port of Serve's HTTP proxy (127.0.0.1 only for the local Ray); "
        "unset or 0: a free port",
    )
    proxy_url: Annotated[str | None, ToolUrl()] = Field(
        default=None,
        description="where the platform reaches Serve's proxy on a Ray cluster "
        "(http://ray-head:8000); unset: the cluster address's host and http_port (8000)",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="CPUs the local Ray offers to replicas (each takes 0.5 by default); "
        "unset: the machine's",
    )
    object_store_memory_mb: int = Field(
        default=200,
        ge=78,
        le=1024 * 1024,
        description="the local Ray's object store; replicas pass little through it",
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="the longest one request of the plugin to Serve (status, health "
        "probes through the proxy) may take",
    )
    start_timeout_seconds: float = Field(
        default=180.0,
        gt=0,
        le=3600,
        description="how long a call outside the platform's deadlines waits for the local "
        "Ray to start",
    )


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="rayserve",
        version=__version__,
        display_name="Ray Serve",
        description="Model serving on Ray Serve: one application per endpoint running "
        "llmops' OpenAI-compatible model runtime, with autoscaling and in-place updates.",
        capabilities=frozenset({Capability.SERVING}),
        settings_model=RayServeSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://docs.ray.io/en/latest/serve/index.html"},
    )


def ray_config(settings: RayServeSettings, context: PluginContext) -> RayConfig:
    from llmops_rayserve.cluster import RayConfig

    return RayConfig(
        address=settings.address,
        data_dir=context.data_dir,
        http_port=settings.http_port or None,
        num_cpus=settings.num_cpus,
        object_store_memory_mb=settings.object_store_memory_mb,
        proxy_url=settings.proxy_url,
    )


def build_backend(settings: RayServeSettings, context: PluginContext) -> RayServeBackend:
    from llmops_rayserve.backend import RayServeBackend
    from llmops_rayserve.cluster import session_for

    return RayServeBackend(
        session_for(ray_config(settings, context)),
        request_timeout=settings.request_timeout_seconds,
        start_timeout=settings.start_timeout_seconds,
    )


@llmops.hookimpl
def llmops_serving(settings: RayServeSettings, context: PluginContext) -> list[RayServeBackend]:
    return [build_backend(settings, context)]


@llmops.hookimpl
def llmops_shutdown(context: PluginContext) -> None:
    """Stop the local Ray (and its replicas) this plugin started for ``context``."""
    from llmops_rayserve.cluster import shutdown_sessions

    shutdown_sessions(context.data_dir)
