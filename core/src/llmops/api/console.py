"""The web console: the built single-page app, served at ``/`` by ``llmops up``.

The files are built from ``web/`` into ``llmops/console/`` (``make console``); they are
generated, not committed, and the core's wheel carries them. A path that names no file
and no API route is one of the console's own routes (``/models/abc``), so it gets
``index.html`` and the app's router takes over. The console's mount never claims an API
path (:class:`ConsoleMount`): there the API's router answers, 405 with ``Allow`` for a
path served with other methods and 404 problem+json for an unknown one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: paths that belong to the API, never to the console
API_PATHS = ("llm-ops/", "healthz", "readyz", "metrics", "openapi.json", "docs", "redoc")

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"


def console_built(directory: Path = CONSOLE_DIR) -> bool:
    return (directory / "index.html").is_file()


def is_api_path(path: str) -> bool:
    """Whether a URL path (below the root path, with or without its leading slash)
    belongs to the API rather than to the console."""
    return path.lstrip("/").startswith(API_PATHS)


def route_path(scope: Scope) -> str:
    """The request's path as routes match it: without the app's root path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class ConsoleMount(Mount):
    """The console's catch-all mount at ``/``, which passes API paths over.

    A mount at ``/`` fully matches every path, so the router would hand it an API path
    whose route exists with other methods (a partial match, which loses to a full one),
    and the console would answer 404 where the API owes a 405. Matching nothing under the
    API's paths leaves them to the router: 405 with ``Allow``, or its problem+json 404.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and is_api_path(route_path(scope)):
            return Match.NONE, {}
        return super().matches(scope)


def console_route(directory: Path) -> BaseRoute:
    """The console's mount at ``/``; it must stay the app's last route."""
    return ConsoleMount("/", app=ConsoleFiles(directory=directory, html=True), name="console")


class ConsoleFiles(StaticFiles):
    """Static files with a single-page-app fallback and cache headers: Vite's hashed
    assets never change (cached for a year), ``index.html`` is revalidated each time."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not self._is_console_route(path):
                raise
            response = await super().get_response("index.html", scope)
        if response.status_code == 404 and self._is_console_route(path):
            response = await super().get_response("index.html", scope)
        if path.startswith("assets/") and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response

    @staticmethod
    def _is_console_route(path: str) -> bool:
        path = path.lstrip("/")
        if is_api_path(path) or path.startswith("assets/"):
            return False
        last = path.rsplit("/", 1)[-1]
        return "." not in last  # /models/abc is a route; /favicon.ico is a missing file
