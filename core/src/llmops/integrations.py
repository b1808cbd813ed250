"""The plugin runtime: which plugins are enabled, their settings and their providers.

It ties discovery (:mod:`llmops.plugins.discovery`) to the stored configuration
(``integration_configs`` and ``capability_defaults``). Enabling, disabling, reconfiguring
and choosing a default provider take effect without a restart: the API applies a change
at once in its own process, and every process re-reads the configuration when it sees
that the stored generation changed (see :meth:`IntegrationRuntime.sync_if_stale`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

import pluggy
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from llmops import __version__
from llmops.capabilities.common import (
    Capability,
    Closable,
    Provider,
    TranslatesErrors,
    honours_deadline,
)
from llmops.capabilities.orchestration import OrchestrationProvider
from llmops.capabilities.registry import RegistryProvider
from llmops.capabilities.serving import ServingProvider
from llmops.capabilities.tracking import TrackingProvider
from llmops.capabilities.versioning import VersioningProvider
from llmops.config import CoreSettings
from llmops.db.migrate import MIGRATIONS_LOCK
from llmops.db.models import CapabilityDefault, IntegrationConfig
from llmops.errors import (
    Conflict,
    InvalidRequest,
    NoProviderEnabled,
    NotFound,
    ProviderChoiceNeeded,
)
from llmops.plugins.discovery import (
    CAPABILITY_HOOKS,
    ENTRY_POINT_GROUP,
    InstalledPlugin,
    LoadedPlugin,
    PluginLoadFailure,
    call_one,
    installed_plugins,
    load_plugins,
    make_plugin_manager,
)
from llmops.plugins.info import PluginContext
from llmops.resilience.breaker import CircuitBreaker, CircuitState
from llmops.resilience.guard import Guard, GuardedProvider, GuardMetrics
from llmops.secrets import SecretCipher, SecretUndecryptable

log = logging.getLogger(__name__)

#: Plugins that ship inside the core and cannot be disabled: graceful degradation needs them.
BUILTIN_PLUGINS = frozenset({"local"})


def env_settings(plugin: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``LLMOPS_<PLUGIN>__<FIELD>`` variables as a settings dict (JSON values are parsed)."""
    environ = os.environ if environ is None else environ
    prefix = f"LLMOPS_{plugin.upper()}__"
    found: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            value: Any = raw
            if raw[:1] in "[{":
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError:
                    value = raw
            found[key[len(prefix) :].lower()] = value
    return found


def plugin_context(settings: CoreSettings, name: str) -> PluginContext:
    """What the core hands to the hooks of the plugin ``name``."""
    return PluginContext(
        plugin_name=name,
        data_dir=settings.plugin_data_dir(name),
        api_url=settings.api_url,
        core_version=__version__,
        migrations_lock=MIGRATIONS_LOCK,
        protected_paths=settings.protected_paths(),
    )


def secret_fields(model: type[BaseModel]) -> set[str]:
    secrets = set()
    for name, info in model.model_fields.items():
        annotation = str(info.annotation)
        if "SecretStr" in annotation or "SecretBytes" in annotation:
            secrets.add(name)
    return secrets


def public_settings(settings: BaseModel) -> dict[str, Any]:
    """Settings as the API shows them: secret fields left out entirely."""
    hidden = secret_fields(type(settings))
    return {k: v for k, v in settings.model_dump(mode="json").items() if k not in hidden}


@dataclass
class PluginState:
    installed: InstalledPlugin
    enabled: bool
    builtin: bool
    loaded: LoadedPlugin | None = None
    failure: PluginLoadFailure | None = None
    settings: BaseModel | None = None
    fingerprint: str | None = None
    providers: dict[Capability, list[Provider]] = field(default_factory=dict)
    collectors: list[Collector] = field(default_factory=list)
    is_default_for: list[Capability] = field(default_factory=list)
    #: capabilities this plugin offers with the same priority as another enabled one,
    #: none of them chosen by an admin: a choice is needed (``choices_needed``)
    choice_needed_for: list[Capability] = field(default_factory=list)
    #: capabilities the plugin declares but offers no provider for with its current
    #: settings (its hook answered None: the tool is not configured yet)
    not_configured_for: list[Capability] = field(default_factory=list)

    @property
    def priority(self) -> int:
        return self.loaded.info.priority if self.loaded is not None else 0

    def serving_providers(self) -> list[ServingProvider]:
        """The plugin's serving frameworks (their contract suite proves the Protocol)."""
        return [cast(ServingProvider, p) for p in self.providers.get(Capability.SERVING, [])]


@dataclass(frozen=True)
class StoredConfig:
    enabled: bool | None
    settings: dict[str, Any]


class IntegrationRuntime:
    """Holds the loaded plugins and their providers for one process."""

    def __init__(
        self,
        settings: CoreSettings,
        *,
        group: str = ENTRY_POINT_GROUP,
        metrics: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        secrets: SecretCipher | None = None,
    ) -> None:
        self.settings = settings
        #: this process's row in ``executor_instances`` (set by the platform): the owner of
        #: the runs its executor drives (:mod:`llmops.services.run_leases`)
        self.instance_id: str | None = None
        #: wakes this process's run watcher (a cancel was requested); set by the platform
        self.wake_runs: Callable[[], None] = lambda: None
        #: encrypts and decrypts the secret settings stored in ``integration_configs``
        self.secrets = secrets if secrets is not None else SecretCipher.from_settings(settings)
        self.group = group
        self.metrics = metrics
        self._environ = environ
        self._listeners: list[Callable[[str], None]] = []
        self._pm: pluggy.PluginManager = make_plugin_manager()
        self._lock = threading.RLock()
        self._states: dict[str, PluginState] = {}
        self._defaults: dict[Capability, str] = {}
        self._generation: tuple[Any, ...] | None = None
        self._checked_at = 0.0
        self._installed = {p.name: p for p in installed_plugins(group)}
        self.guard_metrics = GuardMetrics(metrics)
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._guarded: dict[int, tuple[Any, GuardedProvider]] = {}

    def add_configured_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` whenever a plugin's providers are (re)built."""
        self._listeners.append(listener)

    # -- reading the configuration -------------------------------------------------

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    def installed(self) -> list[InstalledPlugin]:
        return sorted(self._installed.values(), key=lambda p: p.name)

    def context(self, name: str) -> PluginContext:
        return plugin_context(self.settings, name)

    def environment_settings(self, name: str) -> dict[str, Any]:
        """The plugin's ``LLMOPS_<PLUGIN>__<FIELD>`` values in this process's environment."""
        return env_settings(name, self._environ)

    @staticmethod
    def generation(session: Session) -> tuple[Any, ...]:
        configs = session.execute(
            select(func.count(), func.max(IntegrationConfig.updated_at))
        ).one()
        defaults = session.execute(
            select(func.count(), func.max(CapabilityDefault.updated_at))
        ).one()
        return (*configs, *defaults)

    def sync(self, session: Session, *, committed: bool = True) -> None:
        """Apply the stored configuration (loads, unloads and rebuilds as needed).

        A request that changes the configuration applies it inside its own, not yet
        committed, transaction with ``committed=False``: the generation seen is then not
        recorded, so a concurrent :meth:`sync_if_stale` cannot mistake it for already
        seen. That concurrent sync may still apply the committed state, older than the
        request's, between the request's apply and its commit; so once the request's
        transaction commits, its thread applies the committed configuration again (before
        the answer goes out), and a sync reads and applies under one lock, so an older
        read is never applied after a newer one.
        """
        with self._lock:
            configs = {
                row.name: StoredConfig(row.enabled, dict(row.settings))
                for row in session.scalars(select(IntegrationConfig))
            }
            defaults: dict[Capability, str] = {}
            for row in session.scalars(select(CapabilityDefault)):
                try:
                    defaults[Capability(row.capability)] = row.provider
                except ValueError:
                    log.warning("ignoring default for unknown capability %r", row.capability)
            generation = self.generation(session) if committed else None
            self.apply(configs, defaults)
            if committed:
                self._generation = generation
                self._checked_at = time.monotonic()
        if not committed:
            bind = session.get_bind()

            def again(_: Session) -> None:
                with Session(bind) as fresh:
                    self.sync(fresh)

            event.listen(session, "after_commit", again, once=True)

    def sync_if_stale(self, factory: sessionmaker[Session], max_age: float = 2.0) -> None:
        """Re-read the configuration when another process changed it (throttled)."""
        if time.monotonic() - self._checked_at < max_age:
            return
        with factory() as session:
            generation = self.generation(session)
            if generation != self._generation:
                self.sync(session)
            else:
                self._checked_at = time.monotonic()

    def is_enabled(self, name: str, stored: StoredConfig | None) -> bool:
        if name in BUILTIN_PLUGINS:
            return True
        if stored is not None and stored.enabled is not None:
            return stored.enabled
        return self.settings.default_enabled(name)

    def apply(
        self, configs: Mapping[str, StoredConfig], defaults: Mapping[Capability, str]
    ) -> None:
        with self._lock:
            # metadata only (cheap): a plugin installed while the platform runs is seen here
            self._installed = {p.name: p for p in installed_plugins(self.group)}
            wanted = {name for name in self._installed if self.is_enabled(name, configs.get(name))}
            for name in list(self._states):
                if name not in wanted:
                    self._unload(name)
            for name in sorted(self._installed):
                if name not in wanted:
                    self._states[name] = PluginState(
                        installed=self._installed[name],
                        enabled=False,
                        builtin=name in BUILTIN_PLUGINS,
                    )
            to_load = [
                name
                for name in sorted(wanted)
                if name not in self._states or not self._states[name].enabled
            ]
            self._load(to_load)
            for name in sorted(wanted):
                state = self._states[name]
                if state.loaded is not None:
                    stored = configs.get(name)
                    self._configure(state, stored.settings if stored else {})
            self._defaults = dict(defaults)
            self._mark_defaults()

    # -- loading and configuring ---------------------------------------------------

    def _load(self, names: list[str]) -> None:
        if not names:
            return
        loaded, failures = load_plugins(
            names, self._pm, group=self.group, strict=self.settings.strict_plugins
        )
        for failure in failures:
            self._states[failure.name] = PluginState(
                installed=self._installed[failure.name],
                enabled=True,
                builtin=failure.name in BUILTIN_PLUGINS,
                failure=failure,
            )
        for plugin in loaded:
            self._states[plugin.name] = PluginState(
                installed=self._installed[plugin.name],
                enabled=True,
                builtin=plugin.name in BUILTIN_PLUGINS,
                loaded=plugin,
            )

    def resolve_settings(self, name: str, stored: Mapping[str, Any]) -> BaseModel:
        """The plugin's settings: environment overlaid by the stored configuration.

        Encrypted secrets in ``stored`` are decrypted for validation; one that cannot be
        is reported as an invalid setting of its field (the value is never shown).
        """
        state = self._states.get(name)
        if state is None or state.loaded is None:
            raise Conflict(f"plugin {name!r} is not loaded")
        model = state.loaded.info.settings_model
        from_env = env_settings(name, self._environ)
        ignored = sorted(set(from_env) - set(model.model_fields))
        if ignored:
            log.warning(
                "ignoring LLMOPS_%s__ variables that %s has no setting for: %s",
                name.upper(),
                name,
                ", ".join(k.upper() for k in ignored),
            )
        known = {k: v for k, v in from_env.items() if k in model.model_fields}
        try:
            clear = self.secrets.reveal(stored, plugin=name)
        except SecretUndecryptable as exc:
            raise exc.validation_error(model.__name__) from None
        return model.model_validate({**known, **clear})

    def _configure(self, state: PluginState, stored: Mapping[str, Any]) -> None:
        if state.loaded is None:
            raise Conflict(f"plugin {state.installed.name!r} is not loaded")
        name = state.installed.name
        try:
            settings = self.resolve_settings(name, stored)
        except ValidationError as exc:
            self._drop_providers(state)
            state.failure = PluginLoadFailure(  # without input values: they may be secrets
                name,
                "configure",
                "ValidationError: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            )
            state.fingerprint = None
            return
        fingerprint = hashlib.sha256(
            json.dumps(_plain(settings), sort_keys=True, default=str).encode()
        ).hexdigest()
        if fingerprint == state.fingerprint and state.failure is None:
            return
        self._drop_providers(state)
        context = self.context(name)
        module = state.loaded.module
        try:
            first_time = state.fingerprint is None and state.settings is None
            if first_time:
                call_one(self._pm, module, "llmops_startup", settings=settings, context=context)
            providers: dict[Capability, list[Provider]] = {}
            not_configured: list[Capability] = []
            for capability in sorted(state.loaded.info.capabilities, key=lambda c: c.value):
                result = call_one(
                    self._pm,
                    module,
                    CAPABILITY_HOOKS[capability],
                    settings=settings,
                    context=context,
                )
                if result is not None and capability is Capability.SERVING:
                    result = list(result)
                if result is None or result == []:
                    not_configured.append(capability)
                    continue
                providers[capability] = result if isinstance(result, list) else [result]
            collectors = call_one(
                self._pm,
                module,
                "llmops_metrics_collectors",
                settings=settings,
                context=context,
                providers=MappingProxyType({c: tuple(p) for c, p in providers.items()}),
            )
        except Exception as exc:  # a plugin's bug is shown, never fatal
            state.failure = PluginLoadFailure.from_exception(name, "configure", exc)
            state.fingerprint = None
            return
        state.settings = settings
        state.fingerprint = fingerprint
        state.failure = None
        state.providers = providers
        state.not_configured_for = not_configured
        state.collectors = list(collectors or [])
        if self.metrics is not None:
            for collector in state.collectors:
                self.metrics.register(collector)
        for listener in self._listeners:
            listener(name)

    def _drop_providers(self, state: PluginState) -> None:
        for providers in state.providers.values():
            for provider in providers:
                cached = self._guarded.pop(id(provider), None)
                if cached is not None:
                    cached[1].guard.close()
                if isinstance(provider, Closable):
                    try:
                        provider.close()
                    except Exception:
                        log.exception("closing a provider of %s failed", state.installed.name)
        state.providers = {}
        state.not_configured_for = []
        if self.metrics is not None:
            for collector in state.collectors:
                try:
                    self.metrics.unregister(collector)
                except KeyError:
                    log.warning("collector of %s was not registered", state.installed.name)
        state.collectors = []

    def _unload(self, name: str) -> None:
        state = self._states.pop(name)
        self._drop_providers(state)
        if state.loaded is not None:
            try:
                call_one(
                    self._pm, state.loaded.module, "llmops_shutdown", context=self.context(name)
                )
            except Exception:
                log.exception("shutdown of plugin %s failed", name)
            self._pm.unregister(state.loaded.module)

    def shutdown(self) -> None:
        with self._lock:
            for name in list(self._states):
                if self._states[name].enabled:
                    self._unload(name)

    def _mark_defaults(self) -> None:
        for state in self._states.values():
            state.is_default_for = []
            state.choice_needed_for = []
        for capability in Capability:
            chosen = self._default_name(capability)
            if chosen is not None:
                owner = self._owner_of(capability, chosen)
                if owner is not None:
                    owner.is_default_for.append(capability)
            for tied in self._tied(capability):
                owner = self._owner_of(capability, tied)
                if owner is not None and capability not in owner.choice_needed_for:
                    owner.choice_needed_for.append(capability)

    # -- providers -----------------------------------------------------------------

    def states(self) -> list[PluginState]:
        with self._lock:
            return [self._states[n] for n in sorted(self._states)]

    def state(self, name: str) -> PluginState:
        with self._lock:
            if name not in self._states:
                raise NotFound(f"no plugin named {name!r} is installed")
            return self._states[name]

    def _provider_names(self, capability: Capability) -> dict[str, tuple[PluginState, Provider]]:
        found: dict[str, tuple[PluginState, Provider]] = {}
        for state in self._states.values():
            if not state.enabled or state.failure is not None:
                continue
            if capability is Capability.SERVING:
                for backend in state.serving_providers():
                    found[backend.framework().name] = (state, backend)
            else:
                for provider in state.providers.get(capability, []):
                    found[state.installed.name] = (state, provider)
        return found

    def _owner_of(self, capability: Capability, provider_name: str) -> PluginState | None:
        entry = self._provider_names(capability).get(provider_name)
        return entry[0] if entry else None

    def _candidates(self, capability: Capability) -> tuple[str | None, list[str]]:
        """Who serves ``capability`` when a request names no provider, and the tie when
        nobody can be said to: the admin's choice where it is enabled; else, of the
        enabled plugins (a built-in one only when no other offers it), the one with the
        highest declared priority; a tie at the top is ``(None, [the tied names])``."""
        available = self._provider_names(capability)
        if not available:
            return None, []
        stored = self._defaults.get(capability)
        if stored in available:
            return stored, []
        third_party = {n: s for n, (s, _) in available.items() if not s.builtin}
        pool = third_party or {n: s for n, (s, _) in available.items()}
        top = max(state.priority for state in pool.values())
        best = sorted(n for n, state in pool.items() if state.priority == top)
        return (best[0], []) if len(best) == 1 else (None, best)

    def _default_name(self, capability: Capability) -> str | None:
        return self._candidates(capability)[0]

    def _tied(self, capability: Capability) -> list[str]:
        return self._candidates(capability)[1]

    def default_provider_name(self, capability: Capability) -> str | None:
        with self._lock:
            return self._default_name(capability)

    def choices_needed(self) -> dict[Capability, list[str]]:
        """The capabilities whose default nobody can tell: several enabled providers of
        the same priority, none chosen by an admin (``PUT /integrations/defaults/...``)."""
        with self._lock:
            return {c: tied for c in Capability if (tied := self._tied(c))}

    # -- guarded dispatch --------------------------------------------------------------

    def breaker(self, capability: Capability, provider_name: str) -> CircuitBreaker:
        """The circuit breaker of a provider; it outlives rebuilds of the provider."""
        key = (capability.value, provider_name)
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(
                    failure_threshold=self.settings.circuit_failure_threshold,
                    reset_timeout=self.settings.circuit_reset_seconds,
                )
                self._breakers[key] = breaker
            return breaker

    def _guard(
        self, state: PluginState, capability: Capability, name: str, raw: Provider
    ) -> GuardedProvider:
        cached = self._guarded.get(id(raw))
        if cached is not None and cached[0] is raw:
            return cached[1]
        guard = Guard(
            state.installed.name,
            capability.value,
            timeout=self.settings.provider_timeout_seconds,
            breaker=self.breaker(capability, name),
            metrics=self.guard_metrics,
            isolated=not honours_deadline(raw),
            translator=raw.translate_error if isinstance(raw, TranslatesErrors) else None,
        )
        guarded = GuardedProvider(raw, guard)
        self._guarded[id(raw)] = (raw, guarded)
        return guarded

    def paused_reason(self, capability: Capability, provider_name: str) -> str | None:
        """Why calls to a provider are paused now (its circuit is open), or None."""
        breaker = self.breaker(capability, provider_name)
        if breaker.state is not CircuitState.OPEN:
            return None
        return (
            f"{provider_name} ({capability.value}) is unavailable after repeated failures "
            f"(last: {breaker.last_error}); next try in {breaker.retry_after():.0f} s"
        )

    def paused_providers(self) -> frozenset[str]:
        with self._lock:
            return frozenset(
                name
                for (_, name), breaker in self._breakers.items()
                if breaker.state is CircuitState.OPEN
            )

    def count_fallback(self, capability: Capability, provider_name: str, operation: str) -> None:
        with self._lock:
            entry = self._provider_names(capability).get(provider_name)
        plugin = entry[0].installed.name if entry else provider_name
        self.guard_metrics.fallbacks.labels(plugin, capability.value, operation).inc()

    def tracking_provider(self, name: str | None = None) -> tuple[str, TrackingProvider]:
        """The named tracker, or the default one, behind its guard; 409 when none is on.

        The guard forwards every attribute of the provider it wraps; that the provider
        follows the capability's Protocol is what its contract suite proves (the core
        does not check it at run time): hence the casts.
        """
        found, guarded = self.provider(Capability.TRACKING, name)
        return found, cast(TrackingProvider, guarded)

    def serving_provider(self, name: str | None = None) -> tuple[str, ServingProvider]:
        """The named serving framework, or the default one, behind its guard."""
        found, guarded = self.provider(Capability.SERVING, name)
        return found, cast(ServingProvider, guarded)

    def orchestration_provider(self, name: str | None = None) -> tuple[str, OrchestrationProvider]:
        """The named workflow engine, or the default one, behind its guard."""
        found, guarded = self.provider(Capability.ORCHESTRATION, name)
        return found, cast(OrchestrationProvider, guarded)

    def registry_provider(
        self, name: str | None = None, *, deadline: float | None = None
    ) -> tuple[str, RegistryProvider]:
        """The named model registry, or the default one, behind its guard; ``deadline``
        replaces the request's deadline (``provider_timeout_seconds``) for long work the
        worker runs (an import, an export: ``long_work_timeout_seconds``)."""
        found, guarded = self.provider(Capability.REGISTRY, name)
        if deadline is not None:
            guarded = guarded.with_deadline(deadline)
        return found, cast(RegistryProvider, guarded)

    def versioning_provider(
        self, name: str | None = None, *, deadline: float | None = None
    ) -> tuple[str, VersioningProvider]:
        """The named dataset versioner, or the default one, behind its guard; ``deadline``
        replaces ``provider_timeout_seconds`` (a version of a large dataset, its restore
        and its push take as long as its bytes need: ``long_work_timeout_seconds``)."""
        found, guarded = self.provider(Capability.VERSIONING, name)
        if deadline is not None:
            guarded = guarded.with_deadline(deadline)
        return found, cast(VersioningProvider, guarded)

    def provider(
        self, capability: Capability, name: str | None = None
    ) -> tuple[str, GuardedProvider]:
        """The named provider, or the capability's default, behind its guard; 409 when
        none is enabled. The typed accessors (:meth:`tracking_provider`, ...) say which
        Protocol it follows."""
        with self._lock:
            available = self._provider_names(capability)
            if name is None:
                name, tied = self._candidates(capability)
                if tied:
                    raise ProviderChoiceNeeded(
                        choice_needed_message(capability, tied),
                        capability=capability.value,
                        providers=tied,
                    )
                if name is None:
                    raise NoProviderEnabled(
                        f"no {capability.value} provider enabled: enable a plugin that offers "
                        f"{capability.value} under /llm-ops/v1/integrations",
                        capability=capability.value,
                    )
            if name not in available:
                raise NoProviderEnabled(
                    f"{capability.value} provider {name!r} is not enabled",
                    capability=capability.value,
                    provider=name,
                )
            state, raw = available[name]
            return name, self._guard(state, capability, name, raw)

    def has_provider(self, capability: Capability) -> bool:
        """Whether an enabled plugin offers ``capability`` (a default exists, or a choice
        between several is needed)."""
        with self._lock:
            return bool(self._provider_names(capability))

    def providers(self, capability: Capability) -> dict[str, GuardedProvider]:
        with self._lock:
            return {
                n: self._guard(state, capability, n, p)
                for n, (state, p) in self._provider_names(capability).items()
            }

    def iter_providers(self) -> Iterator[tuple[str, Capability, str, Provider]]:
        """(plugin, capability, provider name, provider) for every live provider."""
        with self._lock:
            for capability in Capability:
                for pname, (state, provider) in sorted(self._provider_names(capability).items()):
                    yield state.installed.name, capability, pname, provider

    def iter_serving_providers(self) -> Iterator[tuple[str, str, ServingProvider]]:
        """(plugin, framework name, provider) for every live serving framework."""
        with self._lock:
            for name, (state, provider) in sorted(self._provider_names(Capability.SERVING).items()):
                yield state.installed.name, name, cast(ServingProvider, provider)

    def validate_default(self, capability: Capability, provider: str) -> None:
        with self._lock:
            if provider not in self._provider_names(capability):
                raise InvalidRequest(
                    f"{provider!r} is not an enabled {capability.value} provider",
                    capability=capability.value,
                )


def choice_needed_message(capability: Capability, tied: Sequence[str]) -> str:
    return (
        f"{len(tied)} enabled plugins offer {capability.value} with the same priority "
        f"({', '.join(tied)}) and none is chosen: choose the default in the console "
        f"(Admin, Integrations), with PUT /llm-ops/v1/integrations/defaults/"
        f"{capability.value}, or name the provider in the request"
    )


def _plain(settings: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in settings:
        data[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return data
