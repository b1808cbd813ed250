"""Register a plugin for the length of a test, without building or installing a package.

A temporary folder gets the plugin's module and a ``*.dist-info`` with its entry point;
the folder is put on ``sys.path`` so ``importlib.metadata`` and stevedore find it like an
installed distribution. Everything is undone on exit, the imported module included.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.orchestration import PipelineStatus, StageLog
from llmops.plugins.discovery import ENTRY_POINT_GROUP


@contextmanager
def temporary_plugin(
    root: Path,
    name: str,
    source: str,
    *,
    module: str | None = None,
    distribution: str | None = None,
    version: str = "0.0.1",
) -> Iterator[str]:
    """Install ``source`` as module ``module`` (default ``llmops_test_<name>``) with the
    entry point ``name`` in group ``llmops.plugins``; yields the module name."""
    module = module or f"llmops_test_{name}"
    distribution = distribution or f"llmops-test-{name}".replace("_", "-")
    site = root / f"site-{name}"
    site.mkdir(parents=True, exist_ok=False)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield module
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()


class PluginInstaller:
    """Installs temporary plugins under one folder and removes them all on ``close()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stack = ExitStack()

    def __call__(self, name: str, source: str, **kwargs: Any) -> str:
        """Install ``source`` as plugin ``name``; returns its module name."""
        return self._stack.enter_context(temporary_plugin(self.root, name, source, **kwargs))

    def close(self) -> None:
        self._stack.close()


class QuietOrchestrator:
    """The part of an orchestration provider a test's plugin seldom cares about: no logs,
    retry and cancel answer the current status, no UI link, always healthy. A test's
    plugin subclasses it and writes ``submit`` and ``status``."""

    honours_deadline = True

    def status(self, external_id: str) -> PipelineStatus:
        raise NotImplementedError

    def logs(
        self, external_id: str, *, stage: str | None = None, tail_bytes: int | None = None
    ) -> list[StageLog]:
        return []

    def retry(self, external_id: str) -> PipelineStatus:
        return self.status(external_id)

    def cancel(self, external_id: str) -> PipelineStatus:
        return self.status(external_id)

    def ui_url(self, external_id: str) -> str | None:
        return None

    def health(self) -> Health:
        return Health(status=HealthStatus.OK)


def orchestrator_plugin(name: str, source: str) -> str:
    """A plugin's source from ``source``, which defines a class ``Orchestrator`` (usually a
    :class:`QuietOrchestrator`): the hooks that name the plugin ``name`` and give one
    ``Orchestrator()`` as its orchestration provider are appended."""
    return (
        textwrap.dedent(source)
        + f"""

from llmops import hookimpl as _hookimpl
from llmops.capabilities.common import Capability as _Capability
from llmops.plugins.info import PluginInfo as _PluginInfo


@_hookimpl
def llmops_plugin_info():
    return _PluginInfo(
        name={name!r}, version="1.0", display_name={name.capitalize() + " orchestrator"!r},
        capabilities=frozenset({{_Capability.ORCHESTRATION}}),
    )


@_hookimpl
def llmops_orchestration(settings, context):
    return Orchestrator()
"""
    )
