"""The web console: the built single-page app, served at ``/`` by ``llmops up``.

The files are built from ``web/`` into ``llmops/console/`` (``make console``); they are
generated, not committed, and the core's wheel carries them. A path that names no file
and no API route is one of the console's own routes (``/models/abc``), so it gets
``index.html`` and the app's router takes over; API paths keep their problem+json 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: paths that belong to the API, never to the console
API_PATHS = ("llm-ops/", "healthz", "readyz", "metrics", "openapi.json", "docs", "redoc")

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"


def console_built(directory: Path = CONSOLE_DIR) -> bool:
    return (directory / "index.html").is_file()


class ConsoleFiles(StaticFiles):
    """Static files with a single-page-app fallback and cache headers: Vite's hashed
    assets never change (cached for a year), ``index.html`` is revalidated each time."""

    async def get_response(self, path: str, scope: Scope) -> Response:
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
        if path.startswith(API_PATHS) or path.startswith("assets/"):
            return False
        last = path.rsplit("/", 1)[-1]
        return "." not in last  # /models/abc is a route; /favicon.ico is a missing file
