"""Browser tests of the web console: Playwright drives Debian's Chromium against a real
``llmops up`` on 127.0.0.1 with a temp data dir, started once for all of them
(:mod:`llmops.testing.console`).

* ``console_server``: the running platform, its initial admin key, an admin API client
  to arrange data, and keys for the other roles.
* ``console``: a fresh browser context per test. It fails the test on any console error
  or uncaught page error the test did not announce with ``expect_console_error``, saves
  screenshots under ``test-artifacts/console/screenshots``, and times each page until it
  is interactive; the times are written to ``test-artifacts/console/timings.json`` and
  summarised at the end of the run.
"""

from __future__ import annotations

import json
import shutil
import statistics
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from llmops.testing.console import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMINGS,
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    """Screenshots and timings of this run only."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def console_server() -> Iterator[ConsoleServer]:
    try:
        # the example tracker only: the tests toggle it and expect no other tracker to
        # take over (the MLflow plugin, also installed, stays disabled here)
        with running_platform(env={"LLMOPS_PLUGINS": "example"}) as server:
            yield server
    except ConsoleNotBuilt as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (make system-deps)")
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def console(
    console_server: ConsoleServer, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(console_server, browser, request) as tab:
        yield tab


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def unique() -> Callable[[str], str]:
    """A fresh lower-case name: the server is shared by every console test."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not TIMINGS:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary = {
        page: {
            "samples": len(values),
            "median_ms": int(statistics.median(values)),
            "max_ms": max(values),
        }
        for page, values in sorted(TIMINGS.items())
    }
    (ARTIFACTS / "timings.json").write_text(json.dumps(summary, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("console: time until each page is interactive (ms)")
    for page, values in sorted(TIMINGS.items()):
        terminalreporter.write_line(
            f"{page:<24} median {int(statistics.median(values)):>5}  "
            f"max {max(values):>5}  ({len(values)} loads)"
        )
