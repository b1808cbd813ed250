"""Find plugins through entry points and load only the enabled ones.

Listing reads entry-point metadata only; loading goes through stevedore's
``NamedExtensionManager`` so a plugin that is not named is never imported. Every failure
(import error, invalid ``PluginInfo``, hook signature mismatch, unsupported core version)
becomes a :class:`PluginLoadFailure` that the API and ``llmops plugins doctor`` show.
"""

from __future__ import annotations

import functools
import importlib.metadata
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import ValidationError

from llmops import __version__, hookspecs
from llmops.capabilities import Capability, hook_name
from llmops.plugins.info import PluginInfo

ENTRY_POINT_GROUP = "llmops.plugins"

#: The hook that must be implemented for each declared capability.
CAPABILITY_HOOKS: dict[Capability, str] = {c: hook_name(c) for c in Capability}


@dataclass(frozen=True)
class InstalledPlugin:
    """A plugin as its entry point describes it, without importing it."""

    name: str
    target: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class PluginLoadFailure:
    name: str
    stage: str  # import | register | validate | configure | startup
    error: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, name: str, stage: str, exc: BaseException) -> PluginLoadFailure:
        return cls(
            name=name,
            stage=stage,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    module: Any
    info: PluginInfo


class PluginLoadError(RuntimeError):
    """Raised in strict mode instead of recording a failure."""


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with the llmops hook specs and nothing registered."""
    pm = pluggy.PluginManager("llmops")
    pm.add_hookspecs(hookspecs)
    return pm


def installed_plugins(group: str = ENTRY_POINT_GROUP) -> list[InstalledPlugin]:
    """Every plugin installed in this environment, from metadata only."""
    found: dict[str, InstalledPlugin] = {}
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist
        found.setdefault(
            ep.name,
            InstalledPlugin(
                name=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            ),
        )
    return sorted(found.values(), key=lambda p: p.name)


def call_one(pm: pluggy.PluginManager, plugin: object, hook: str, **kwargs: Any) -> Any:
    """Call ``hook`` on ``plugin`` alone (the calling rule of every per-plugin hook)."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)


@functools.cache
def _extension_manager_class() -> type[Any]:
    """stevedore's NamedExtensionManager, reading entry points afresh on every load.

    stevedore keeps a per-process list per group and an on-disk cache in the home
    directory; either goes stale when a plugin is installed while the platform runs.
    Imported on first use: stevedore is not cheap to import.
    """
    from stevedore import NamedExtensionManager

    class FreshNamedExtensionManager(NamedExtensionManager):  # type: ignore[type-arg]
        def list_entry_points(self) -> list[importlib.metadata.EntryPoint]:
            return list(importlib.metadata.entry_points(group=self.namespace))

    return FreshNamedExtensionManager


def load_plugins(
    names: Iterable[str],
    pm: pluggy.PluginManager,
    *,
    group: str = ENTRY_POINT_GROUP,
    core_version: str = __version__,
    strict: bool = False,
) -> tuple[list[LoadedPlugin], list[PluginLoadFailure]]:
    """Import the named plugins, register them in ``pm`` and validate their info.

    Names that are not installed are reported as failures too. In strict mode the first
    failure raises :class:`PluginLoadError`.
    """
    wanted = sorted(set(names))
    failures: list[PluginLoadFailure] = []

    def record(failure: PluginLoadFailure) -> None:
        if strict:
            raise PluginLoadError(f"plugin {failure.name!r} ({failure.stage}): {failure.error}")
        failures.append(failure)

    def on_load_failure(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        record(PluginLoadFailure.from_exception(entrypoint.name, "import", exc))

    def on_missing(missing: Iterable[str]) -> None:
        already = {f.name for f in failures}
        for name in sorted(set(missing) - already):
            record(PluginLoadFailure(name, "import", f"no plugin named {name!r} is installed"))

    if not wanted:
        return [], failures
    manager = _extension_manager_class()(
        namespace=group,
        names=wanted,
        invoke_on_load=False,
        on_load_failure_callback=on_load_failure,
        on_missing_entrypoints_callback=on_missing,
        name_order=True,
    )
    loaded: list[LoadedPlugin] = []
    for ext in manager.extensions:
        try:
            loaded.append(_register(pm, ext.name, ext.plugin, core_version))
        except _Refused as refused:
            record(refused.failure)
    return loaded, failures


class _Refused(Exception):
    def __init__(self, failure: PluginLoadFailure) -> None:
        super().__init__(failure.error)
        self.failure = failure


def _register(
    pm: pluggy.PluginManager, name: str, module: ModuleType | object, core_version: str
) -> LoadedPlugin:
    if pm.has_plugin(name):
        existing = pm.get_plugin(name)
        pm.unregister(existing)
    try:
        pm.register(module, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise _Refused(PluginLoadFailure.from_exception(name, "register", exc)) from exc
    try:
        info = _validate(pm, name, module, core_version)
    except _Refused:
        pm.unregister(module)
        raise
    return LoadedPlugin(name=name, module=module, info=info)


def _validate(pm: pluggy.PluginManager, name: str, module: object, core_version: str) -> PluginInfo:
    def refuse(message: str) -> _Refused:
        return _Refused(PluginLoadFailure(name, "validate", message))

    try:
        raw = call_one(pm, module, "llmops_plugin_info")
    except Exception as exc:  # a plugin's bug must not stop the platform
        raise _Refused(PluginLoadFailure.from_exception(name, "validate", exc)) from exc
    if raw is None:
        raise refuse("the plugin does not implement llmops_plugin_info")
    try:
        info = raw if isinstance(raw, PluginInfo) else PluginInfo.model_validate(raw)
    except ValidationError as exc:
        raise refuse(f"invalid PluginInfo: {exc}") from exc
    if info.name != name:
        raise refuse(f"PluginInfo.name is {info.name!r} but the entry point is named {name!r}")
    if not SpecifierSet(info.core_version).contains(Version(core_version), prereleases=True):
        raise refuse(
            f"supports llmops-core {info.core_version}, this is llmops-core {core_version}"
        )
    implemented = {caller.name for caller in pm.get_hookcallers(module) or []}
    missing = sorted(
        cap.value for cap in info.capabilities if CAPABILITY_HOOKS[cap] not in implemented
    )
    if missing:
        raise refuse(f"declares {', '.join(missing)} without implementing its hook")
    return info
