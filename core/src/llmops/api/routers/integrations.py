"""Integration settings: installed plugins, feature flags, configuration, defaults."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from llmops.api.deps import PlatformDep, RuntimeDep, SessionDep
from llmops.api.idempotency import AnswerKeepingRoute
from llmops.api.routers.health import provider_health_out
from llmops.api.schemas import (
    ChoiceNeededOut,
    ConnectionTestOut,
    DefaultProviderIn,
    DefaultsOut,
    IntegrationConfigIn,
    IntegrationConfiguredOut,
    IntegrationOut,
    IntegrationPatch,
    ListPage,
)
from llmops.api.security import add_audit_details
from llmops.capabilities.common import Capability, HealthStatus
from llmops.integrations import IntegrationRuntime, PluginState
from llmops.platform import Platform
from llmops.services import integrations

router = APIRouter(route_class=AnswerKeepingRoute, prefix="/integrations", tags=["integrations"])

PluginName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


def integration_out(state: PluginState, platform: Platform) -> IntegrationOut:
    results, _ = platform.health.check()
    return IntegrationOut.model_validate(
        {
            **integrations.describe(state),
            "health": [provider_health_out(r) for r in results if r.plugin == state.installed.name],
        }
    )


@router.get("", response_model=ListPage[IntegrationOut], summary="Installed plugins")
def list_integrations(runtime: RuntimeDep, platform: PlatformDep) -> ListPage[IntegrationOut]:
    """Every installed plugin with version, capabilities, enabled, default, load error and
    the health of its providers."""
    return ListPage[IntegrationOut](items=[integration_out(s, platform) for s in runtime.states()])


def defaults_out(runtime: IntegrationRuntime) -> DefaultsOut:
    return DefaultsOut(
        defaults=integrations.defaults(runtime),
        choices_needed=[ChoiceNeededOut(**c) for c in integrations.choices_needed(runtime)],
    )


@router.get("/defaults", response_model=DefaultsOut, summary="Default provider per capability")
def get_integration_defaults(runtime: RuntimeDep) -> DefaultsOut:
    return defaults_out(runtime)


@router.put(
    "/defaults/{capability}", response_model=DefaultsOut, summary="Choose a capability's default"
)
def set_integration_default(
    capability: Capability, body: DefaultProviderIn, session: SessionDep, runtime: RuntimeDep
) -> DefaultsOut:
    integrations.set_default(
        session=session, runtime=runtime, capability=capability, provider=body.provider
    )
    return defaults_out(runtime)


@router.get("/{name}", response_model=IntegrationOut, summary="One plugin")
def get_integration(name: PluginName, runtime: RuntimeDep, platform: PlatformDep) -> IntegrationOut:
    return integration_out(runtime.state(name), platform)


@router.patch("/{name}", response_model=IntegrationOut, summary="Enable or disable a plugin")
def update_integration(
    name: PluginName, body: IntegrationPatch, session: SessionDep, runtime: RuntimeDep
) -> IntegrationOut:
    """The spec's feature flag: takes effect at once, without a restart."""
    state = integrations.set_enabled(
        session=session, runtime=runtime, name=name, enabled=body.enabled, actor=None
    )
    return IntegrationOut.model_validate(integrations.describe(state))


@router.put("/{name}/config", response_model=IntegrationConfiguredOut, summary="Configure a plugin")
def configure_integration(
    name: PluginName,
    body: IntegrationConfigIn,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
) -> IntegrationConfiguredOut:
    """Validated against the plugin's settings model before anything is stored. Secret
    fields are write-only: omit one to keep its stored value. A URL setting must pass the
    URL policy (its declared schemes; no loopback, link-local or private host unless
    LLMOPS_INTEGRATION_URL_ALLOWLIST names it), and changing it clears the secrets sent
    to it unless the request sets them again (`secretsCleared`). Settings that name a
    file on the server are set by the environment only."""
    configured = integrations.configure(
        session=session, runtime=runtime, name=name, changes=body.settings, actor=None
    )
    if configured.secrets_cleared:
        add_audit_details(request, secretsCleared=list(configured.secrets_cleared))
    return IntegrationConfiguredOut.model_validate(
        {
            **integrations.describe(configured.state),
            "secrets_cleared": list(configured.secrets_cleared),
        }
    )


@router.post("/{name}/test", response_model=ConnectionTestOut, summary="Test the connection")
def test_integration(
    name: PluginName, runtime: RuntimeDep, platform: PlatformDep
) -> ConnectionTestOut:
    runtime.state(name)
    results = platform.health.check_plugin(name)
    return ConnectionTestOut(
        name=name,
        ok=bool(results) and all(r.health.status is HealthStatus.OK for r in results),
        results=[provider_health_out(r) for r in results],
    )
