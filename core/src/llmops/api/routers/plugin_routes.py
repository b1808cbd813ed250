"""Extra routes that plugins contribute (``llmops_api_routes``), mounted under
``/llm-ops/v1/plugins/<name>`` and answering 404 while their plugin is disabled."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI
from starlette.routing import Mount

from llmops.errors import NotFound
from llmops.platform import Platform
from llmops.plugins.discovery import PluginLoadFailure, call_one

log = logging.getLogger(__name__)


def _require_enabled(platform: Platform, name: str) -> object:
    def check() -> None:
        try:
            state = platform.runtime.state(name)
        except NotFound:
            state = None
        if state is None or not state.enabled or state.loaded is None:
            raise NotFound(f"plugin {name!r} is not enabled")

    return Depends(check)


def mount(app: FastAPI, platform: Platform, prefix: str, name: str) -> None:
    mounted: set[str] = app.state.__dict__.setdefault("plugin_routes", set())
    if name in mounted:
        return
    state = platform.runtime.state(name)
    if state.loaded is None or state.settings is None:
        return
    try:
        router = call_one(
            platform.runtime.plugin_manager,
            state.loaded.module,
            "llmops_api_routes",
            settings=state.settings,
            context=platform.runtime.context(name),
        )
    except Exception as exc:  # recorded and shown like any other plugin failure
        state.failure = PluginLoadFailure.from_exception(name, "routes", exc)
        return
    if router is None:
        return
    app.include_router(
        router,
        prefix=f"{prefix}/plugins/{name}",
        tags=[f"plugin:{name}"],
        dependencies=[_require_enabled(platform, name)],  # type: ignore[list-item]
    )
    # the console's catch-all Mount("/") must stay last, or it answers for these paths
    for route in [r for r in app.router.routes if isinstance(r, Mount) and r.name == "console"]:
        app.router.routes.remove(route)
        app.router.routes.append(route)
    mounted.add(name)
    app.openapi_schema = None


def mount_enabled(app: FastAPI, platform: Platform, prefix: str) -> None:
    for state in platform.runtime.states():
        if state.enabled and state.loaded is not None:
            mount(app, platform, prefix, state.installed.name)
