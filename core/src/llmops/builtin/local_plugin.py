"""The built-in plugin "local": pipelines as subprocesses where no cluster exists.

It is the one orchestration provider the core ships, so a pipeline runs on a laptop or a
single VM. It keeps no state in this module: the core owns the executor it builds and
calls its ``close()`` at shutdown. Building the executor leaves the runs a dead server
left as they are (their stages go on): the core's worker, which knows which runs its
database still expects, takes those over (``adopt``) and ends the others (``recover``),
as :class:`~llmops.capabilities.orchestration.AdoptsRuns` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

import llmops
from llmops.builtin.local_executor import LocalExecutor
from llmops.builtin.sandbox import DEFAULT_ENV_ALLOWLIST, Isolation
from llmops.capabilities.common import Capability
from llmops.plugins.fields import OperatorOnly, ServerPath
from llmops.plugins.info import PluginContext, PluginInfo, PluginSettings


class LocalSettings(PluginSettings):
    """Settings of the local executor."""

    max_parallel: int = Field(4, ge=1, le=64, description="stages run at once per pipeline")
    kill_grace_seconds: float = Field(
        1.0, ge=0, le=60, description="between SIGTERM and SIGKILL when a stage is stopped"
    )
    isolation: Annotated[Isolation, OperatorOnly("it decides whether stages are sandboxed")] = (
        Field(
            Isolation.AUTO,
            description="'auto': stages run in a bubblewrap sandbox that hides the platform's "
            "data dir, database and key file where bubblewrap works, unisolated otherwise "
            "(refused when the server runs as root); 'sandbox': the sandbox or no stage; "
            "'none': unisolated (refused as root)",
        )
    )
    inherit_env: Annotated[
        list[str], OperatorOnly("it hands the server's environment to stages")
    ] = Field(
        default_factory=list,
        max_length=100,
        description="more variables of the server's environment that stages inherit "
        f"(names, * as a wildcard), besides {', '.join(DEFAULT_ENV_ALLOWLIST)}",
    )
    writable_paths: Annotated[list[Path], ServerPath()] = Field(
        default_factory=list,
        max_length=100,
        description="host paths sandboxed stages may write besides their work dir and /tmp "
        "(the rest of the host's filesystem is read-only to them)",
    )


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="local",
        version=llmops.__version__,
        display_name="Local executor",
        description="Runs pipeline stages as local subprocesses in dependency order, with "
        "retries, timeouts and per-stage logs; the orchestrator where no cluster exists.",
        capabilities=frozenset({Capability.ORCHESTRATION}),
        settings_model=LocalSettings,
        core_version=f"=={llmops.__version__}",
    )


@llmops.hookimpl
def llmops_orchestration(settings: BaseModel, context: PluginContext) -> LocalExecutor:
    """Build the executor on the plugin's data dir (the runs a dead server left are the
    core's to adopt or recover)."""
    if not isinstance(settings, LocalSettings):
        raise TypeError(f"expected LocalSettings, got {type(settings).__name__}")
    return LocalExecutor(
        context.ensure_data_dir(),
        max_parallel=settings.max_parallel,
        kill_grace_seconds=settings.kill_grace_seconds,
        isolation=settings.isolation,
        protected_paths=context.protected_paths,
        writable_paths=settings.writable_paths,
        env_allowlist=(*DEFAULT_ENV_ALLOWLIST, *settings.inherit_env),
    )
