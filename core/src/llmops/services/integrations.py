"""Integration settings: enable/disable plugins, configure them, choose defaults.

Every change is stored in ``integration_configs`` / ``capability_defaults`` and applied at
once to this process's runtime; other processes pick it up through the stored generation.
Secret settings are stored encrypted (:mod:`llmops.secrets`) and never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability, ReportsActiveWork
from llmops.db.models import CapabilityDefault, IntegrationConfig, utcnow
from llmops.errors import Conflict, InvalidRequest
from llmops.integrations import (
    BUILTIN_PLUGINS,
    IntegrationRuntime,
    PluginState,
    choice_needed_message,
    secret_fields,
)
from llmops.plugins.fields import operator_only_fields, url_fields
from llmops.secrets import is_encrypted
from llmops.url_policy import Allowlist, url_problem


def describe(state: PluginState) -> dict[str, Any]:
    info = state.loaded.info if state.loaded else None
    settings_public: dict[str, Any] = {}
    secrets_set: dict[str, bool] = {}
    schema = None
    if info is not None:
        schema = info.settings_model.model_json_schema()
        hidden = secret_fields(info.settings_model)
        if state.settings is not None:
            for key, value in state.settings:
                if key in hidden:
                    secrets_set[key] = isinstance(value, SecretStr) and bool(
                        value.get_secret_value()
                    )
            settings_public = {
                k: v for k, v in state.settings.model_dump(mode="json").items() if k not in hidden
            }
        else:
            secrets_set = {k: False for k in sorted(hidden)}
    providers: dict[str, list[str]] = {}
    for capability in state.providers:
        if capability is Capability.SERVING:
            providers[capability.value] = [p.framework().name for p in state.serving_providers()]
        else:
            providers[capability.value] = [state.installed.name]
    return {
        "name": state.installed.name,
        "display_name": info.display_name if info else None,
        "description": info.description if info else None,
        "version": info.version if info else state.installed.version,
        "distribution": state.installed.distribution,
        "builtin": state.builtin,
        "enabled": state.enabled,
        "loaded": state.loaded is not None,
        "capabilities": sorted(c.value for c in info.capabilities) if info else [],
        "default_for": sorted(c.value for c in state.is_default_for),
        "choice_needed_for": sorted(c.value for c in state.choice_needed_for),
        "not_configured_for": sorted(c.value for c in state.not_configured_for),
        "providers": providers,
        "error": (
            {"stage": state.failure.stage, "error": state.failure.error} if state.failure else None
        ),
        "settings": settings_public,
        "secrets_set": secrets_set,
        "settings_schema": schema,
        "links": dict(info.links) if info else {},
    }


def _config_row(session: Session, name: str) -> IntegrationConfig:
    row = session.get(IntegrationConfig, name)
    if row is None:
        row = IntegrationConfig(name=name, enabled=None, settings={})
        session.add(row)
    return row


def set_enabled(
    *, session: Session, runtime: IntegrationRuntime, name: str, enabled: bool, actor: str | None
) -> PluginState:
    runtime.state(name)  # 404 for a plugin that is not installed
    if name in BUILTIN_PLUGINS and not enabled:
        raise Conflict(
            f"{name!r} is built in and stays enabled (graceful degradation needs it); "
            "choose another default provider instead"
        )
    row = _config_row(session, name)
    row.enabled = enabled
    row.updated_at = utcnow()
    row.updated_by = actor
    session.flush()
    runtime.sync(session, committed=False)
    return runtime.state(name)


@dataclass(frozen=True)
class Configured:
    """A plugin after :func:`configure`, with the secrets the change cleared."""

    state: PluginState
    #: secret fields cleared because a URL they are sent to changed (sorted)
    secrets_cleared: tuple[str, ...] = ()


def _refused_settings(
    runtime: IntegrationRuntime, name: str, model: type[BaseModel], changes: Mapping[str, Any]
) -> dict[str, str]:
    """Why each guarded field in ``changes`` may not take its value through the API:
    :class:`~llmops.plugins.fields.OperatorOnly` fields (paths among them) never do, a
    :class:`~llmops.plugins.fields.ToolUrl` field must pass :func:`url_problem`. ``None``
    (remove the stored value) is always allowed: the environment or the default applies."""
    paths = operator_only_fields(model)
    urls = url_fields(model)
    allowlist = Allowlist.parse(runtime.settings.integration_url_allowlist)
    refused: dict[str, str] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key in paths:
            refused[key] = (
                f"{paths[key]}: only the environment sets it (LLMOPS_{name.upper()}__{key.upper()})"
            )
        elif key in urls:
            problem = url_problem(value, urls[key], allowlist)
            if problem is not None:
                refused[key] = problem
    return refused


def _effective(
    key: str, stored: Mapping[str, Any], environ: Mapping[str, Any], model: type[BaseModel]
) -> Any:
    """The raw value ``key`` takes: stored, else from the environment, else the default."""
    if key in stored:
        return stored[key]
    if key in environ:
        return environ[key]
    return model.model_fields[key].get_default(call_default_factory=True)


def _clear_credentials(
    model: type[BaseModel],
    *,
    before: Mapping[str, Any],
    merged: dict[str, Any],
    changes: Mapping[str, Any],
    environ: Mapping[str, Any],
) -> tuple[str, ...]:
    """Drop from ``merged`` the secrets of every URL that ``changes`` changes, unless the
    same request sets them; return those that had a value.

    A secret from the environment belongs to the environment's URL: while the URL differs
    from it, a stored ``None`` masks the environment's secret, so it cannot be sent to a
    host an admin chose either."""
    cleared: set[str] = set()
    for key, rule in url_fields(model).items():
        if key not in changes:
            continue
        new = _effective(key, merged, environ, model)
        if _effective(key, before, environ, model) == new:
            continue
        at_environments_url = new == _effective(key, {}, environ, model)
        for secret in rule.credentials:
            if secret in changes:
                continue
            had = merged.pop(secret) if secret in merged else environ.get(secret)
            if environ.get(secret) is not None and not at_environments_url:
                merged[secret] = None
            if had is not None:
                cleared.add(secret)
    return tuple(sorted(cleared))


def configure(
    *,
    session: Session,
    runtime: IntegrationRuntime,
    name: str,
    changes: dict[str, Any],
    actor: str | None,
) -> Configured:
    """Merge ``changes`` into the stored settings and validate before storing anything.

    A secret left out of ``changes`` keeps its stored value, unless a URL it is sent to
    changes (:class:`~llmops.plugins.fields.ToolUrl`'s ``credentials``); every secret is
    stored encrypted, a clear one stored before encryption existed included. URL and
    server path settings are checked first (:func:`_refused_settings`).
    """
    state = runtime.state(name)
    if state.loaded is None:
        raise Conflict(f"enable plugin {name!r} before configuring it")
    model = state.loaded.info.settings_model
    unknown = sorted(set(changes) - set(model.model_fields))
    if unknown:
        raise InvalidRequest(f"unknown settings for {name!r}: {', '.join(unknown)}", fields=unknown)
    forged = sorted(k for k, v in changes.items() if is_encrypted(v))
    if forged:  # only the platform encrypts: a client cannot plant another value's token
        raise InvalidRequest(
            f"settings of {name!r} take clear values, not encrypted ones: {', '.join(forged)}",
            fields=forged,
        )
    refused = _refused_settings(runtime, name, model, changes)
    if refused:
        raise InvalidRequest(
            f"settings of {name!r} refused: "
            + "; ".join(f"{key}: {reason}" for key, reason in sorted(refused.items())),
            fields=sorted(refused),
            errors=[{"location": [k], "message": refused[k]} for k in sorted(refused)],
        )
    busy = sum(
        provider.active_work()
        for providers in state.providers.values()
        for provider in providers
        if isinstance(provider, ReportsActiveWork)
    )
    if busy:
        raise Conflict(
            f"{name!r} has {busy} operation(s) in progress that new settings would stop "
            "(its providers are rebuilt); wait for them or cancel them first",
            active=busy,
        )
    row = _config_row(session, name)
    merged = dict(row.settings)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    cleared = _clear_credentials(
        model,
        before=row.settings,
        merged=merged,
        changes=changes,
        environ=runtime.environment_settings(name),
    )
    try:
        runtime.resolve_settings(name, merged)  # decrypts the stored secrets to validate
    except ValidationError as exc:  # not chained: its text holds the input, secrets included
        raise InvalidRequest(
            f"invalid settings for {name!r}",
            errors=[
                {"location": [str(p) for p in e["loc"]], "message": e["msg"]} for e in exc.errors()
            ],
        ) from None
    row.settings = runtime.secrets.seal(merged, secret_fields(model), plugin=name)
    row.updated_at = utcnow()
    row.updated_by = actor
    session.flush()
    runtime.sync(session, committed=False)
    return Configured(runtime.state(name), cleared)


def set_default(
    *, session: Session, runtime: IntegrationRuntime, capability: Capability, provider: str
) -> None:
    runtime.validate_default(capability, provider)
    row = session.get(CapabilityDefault, capability.value)
    if row is None:
        row = CapabilityDefault(capability=capability.value, provider=provider)
        session.add(row)
    row.provider = provider
    row.updated_at = utcnow()
    session.flush()
    runtime.sync(session, committed=False)


def defaults(runtime: IntegrationRuntime) -> dict[str, str | None]:
    return {c.value: runtime.default_provider_name(c) for c in Capability}


def choices_needed(runtime: IntegrationRuntime) -> list[dict[str, Any]]:
    """The capabilities an admin must choose a default for, with what to do."""
    return [
        {
            "capability": capability.value,
            "providers": tied,
            "detail": choice_needed_message(capability, tied),
        }
        for capability, tied in runtime.choices_needed().items()
    ]
