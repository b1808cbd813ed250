"""Drive the web console in a real browser: a running ``llmops up`` and a tab on it.

Used by the platform's browser tests (``tests/console``) and usable by plugin authors who
add console pages. Playwright drives Debian's Chromium (``/usr/bin/chromium``, or
``LLMOPS_CHROMIUM``); nothing is downloaded. Needs the ``browser`` extra (playwright).

* :func:`running_platform` starts ``llmops up`` on a free port with a temp data dir and
  yields a :class:`ConsoleServer` (URL, initial admin key, an admin API client, keys for
  the other roles).
* :class:`Console` wraps one tab: it records console errors and page errors (a test fails
  on any it did not announce), signs in, opens pages and times each until it is
  interactive (the page's ``data-ready`` mark), and saves screenshots.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from llmops.api.console import CONSOLE_DIR, console_built
from llmops.config import embedded_database_url
from llmops.testing.processes import free_port, serving_process
from llmops.testing.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest
    from playwright.sync_api import Browser, ConsoleMessage, Page, Route

    URLMatch = str | re.Pattern[str] | Callable[[str], bool]

ARTIFACTS = Path(os.environ.get("LLMOPS_TEST_ARTIFACTS", "test-artifacts")) / "console"
CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")
#: Chromium on a machine without a network: no background connections, no first-run UI
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
KEY_LINE = re.compile(r"^(llmops_\S+)$", re.M)

#: time to interactive per page (ms since navigation start), across the whole run
TIMINGS: dict[str, list[int]] = defaultdict(list)


@dataclass
class ConsoleServer:
    url: str
    admin_key: str
    data_dir: Path
    api: httpx.Client
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """The platform's database: SQLite in its data dir (:func:`running_platform`
        never hands it ``LLMOPS_DATABASE_URL``)."""
        return embedded_database_url(self.data_dir / "data")

    def key(self, role: str = "admin") -> str:
        """An API key of ``role`` (viewer, editor, admin), made once per run."""
        if role == "admin":
            return self.admin_key
        if role not in self.keys:
            created = self.api.post(
                "/llm-ops/v1/api-keys", json={"name": f"console-{role}", "role": role}
            )
            created.raise_for_status()
            self.keys[role] = created.json()["key"]
        return self.keys[role]


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The JSON body of an answer that must have ``status`` (its text says why not)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


class ConsoleNotBuilt(RuntimeError):
    pass


@contextmanager
def running_platform(
    *, env: dict[str, str] | None = None, console: bool = True, data_dir: Path | None = None
) -> Iterator[ConsoleServer]:
    """``llmops up`` on 127.0.0.1, in a temp data dir; with ``console``, the built console
    must be there (API-only tests pass False). Given ``data_dir`` (the platform's data in
    ``data_dir/data``), it is kept afterwards, so a second platform can start on it."""
    if console and not console_built(CONSOLE_DIR):
        raise ConsoleNotBuilt(
            f"the console is not built ({CONSOLE_DIR}/index.html is missing): run `make console`"
        )
    keep = data_dir is not None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="llmops-console-"))
    port = free_port()
    log_path = data_dir / "server.log"
    env = {
        **os.environ,
        "LLMOPS_DATA_DIR": str(data_dir / "data"),
        "LLMOPS_HOST": "127.0.0.1",
        "LLMOPS_PORT": str(port),
        "LLMOPS_SYNC_INTERVAL_SECONDS": "0.5",
        **(env or {}),
    }
    env.pop("LLMOPS_DATABASE_URL", None)
    llmops = Path(sys.executable).with_name("llmops")
    url = f"http://127.0.0.1:{port}"
    try:
        with serving_process(
            [str(llmops), "up", "--log-level", "warning"],
            health_url=f"{url}/readyz",
            log_path=log_path,
            env=env,
            what="llmops up",
        ):
            found = KEY_LINE.search(log_path.read_text())
            key_file = data_dir / "admin-key"  # the key is printed on the first start only
            if found:
                key_file.write_text(found.group(1))
            assert key_file.exists(), f"llmops up printed no admin key:\n{log_path.read_text()}"
            admin_key = key_file.read_text()
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
            ) as api:
                yield ConsoleServer(url=url, admin_key=admin_key, data_dir=data_dir, api=api)
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


class Console:
    """One browser tab on the console, for one test."""

    def __init__(self, server: ConsoleServer, page: Page) -> None:
        self.server = server
        self.page = page
        self.errors: list[str] = []
        self.allowed: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location.get("url", "") if message.location else ""
            self.errors.append(f"{message.text} ({location})")

    # -- navigation ---------------------------------------------------------------------

    def open(self, path: str, ready: str, *, timed: bool = True) -> Page:
        """Load ``path`` from scratch and wait until page ``ready`` is interactive; its
        time since navigation start is recorded unless ``timed`` is false (a load whose
        answers the test faked says nothing about the platform's speed)."""
        self.page.goto(self.server.url + path)
        self.wait_ready(ready)
        if not timed:
            return self.page
        marks = self.page.evaluate("() => window.__llmopsReady || []")
        for mark in reversed(marks):
            if mark["page"] == ready:
                TIMINGS[ready].append(int(mark["sinceNavigation"]))
                break
        return self.page

    def wait_ready(self, ready: str, timeout: float = 15_000) -> Page:
        """Wait until page ``ready`` shows its data (after a click that navigates)."""
        self.page.wait_for_selector(
            f'html[data-ready="{ready}"]', state="attached", timeout=timeout
        )
        return self.page

    def sign_in(self, role: str = "admin") -> Page:
        """Sign in through the sign-in page with a key of ``role``."""
        self.open("/sign-in", "sign-in")
        self.page.get_by_label("API key").fill(self.server.key(role))
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(lambda url: "/sign-in" not in url)
        return self.page

    # -- evidence and expectations --------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        target = ARTIFACTS / "screenshots" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target), full_page=True)
        return target

    def expect_console_error(self, substring: str) -> None:
        """Allow console errors containing ``substring`` (say, a 503 the test provokes)."""
        self.allowed.append(substring)

    def fail_api(self, url: URLMatch, status: int = 503) -> None:
        """Make API calls matching ``url`` (a glob, a regular expression or a predicate,
        as Playwright takes them) answer ``status`` with a problem body."""

        def fulfil(route: Route) -> None:
            route.fulfill(
                status=status,
                content_type="application/problem+json",
                headers={"Retry-After": "5"},
                body=json.dumps(
                    {
                        "type": "https://llmops.dev/problems/test-outage",
                        "title": "Service unavailable",
                        "status": status,
                        "detail": "the test made this call fail",
                    }
                ),
            )

        self.page.route(url, fulfil)
        self.expect_console_error(f"status of {status}")

    def answer_api(self, url: URLMatch, body: object, status: int = 200) -> None:
        """Make API calls matching ``url`` answer ``body`` as JSON (an empty page, say)."""
        self.page.route(
            url,
            lambda route: route.fulfill(
                status=status, content_type="application/json", body=json.dumps(body)
            ),
        )

    def hold_api(self, url: URLMatch) -> list[Route]:
        """Hold API calls matching ``url`` unanswered (to see a loading state); continue
        them with ``route.continue_()`` on each of the returned list's routes."""
        held: list[Route] = []
        self.page.route(url, lambda route: held.append(route))
        return held

    def wait_until_held(self, held: list[Route], timeout: float = 10.0) -> None:
        """Wait until the page has made a call that :meth:`hold_api` holds. Route handlers
        run only inside a Playwright call, so each check is a round trip to the page."""

        def any_held() -> bool:
            self.page.evaluate("() => true")  # lets Playwright run the route handlers
            return bool(held)

        wait_for(any_held, timeout=timeout, what="the page to make its call")

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@contextmanager
def console_tab(
    server: ConsoleServer, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    """A fresh browser context and tab on ``server`` for the test of ``request``: a
    screenshot when the test failed (``rep_call``, set by tests/console/conftest.py);
    afterwards, any console error or uncaught page error the test did not announce with
    ``expect_console_error`` fails it."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    tab = Console(server, context.new_page())
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                tab.screenshot(f"failed-{request.node.name}")
        context.close()
    unexpected = tab.unexpected_errors()
    assert not unexpected, "the browser logged errors:\n" + "\n".join(unexpected)
