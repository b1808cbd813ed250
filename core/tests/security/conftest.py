"""Fixtures of the security suite (the core's own, from core/tests/conftest.py, apply too:
every API-level test runs on SQLite and PostgreSQL through ``database_url``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.api.app import create_app
from llmops.config import CoreSettings

#: ``start(start_worker=True, **core_settings)``
StartApp = Callable[..., TestClient]


@pytest.fixture
def start(
    make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]
) -> Iterator[StartApp]:
    """``start(start_worker=True, **core_settings)``: a started platform on the test's
    database, called with an admin key, stopped at the end of the test."""
    with ExitStack() as stack:

        def start_app(*, start_worker: bool = True, **overrides: Any) -> TestClient:
            app = create_app(make_settings(**overrides), start_worker=start_worker)
            client = stack.enter_context(TestClient(app))
            authenticate(client)
            return client

        yield start_app
