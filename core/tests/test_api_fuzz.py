"""Schemathesis over the whole OpenAPI document, authenticated as an admin: no request
it can make gets a 5xx, and no answer breaks the documented schema.

The run keeps its key: the API refuses a key's revocation of itself (409) and of the last
admin key, the run's key is the only admin key there is, and a key the platform accepted
is never blocked by the limit of failed authentications (schemathesis also sends invalid
keys of its own). The end of the run checks that the key still works and that hardly any
request that carried it was refused (401, 403, 429), so a run that fuzzed nothing but its
own refusals fails instead of passing. Schemathesis drops the key from its "missing
Authorization" cases on purpose: those are counted apart.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key

DATA = Path(tempfile.mkdtemp(prefix="llmops-fuzz-"))
APP = create_app(
    CoreSettings(
        data_dir=DATA,
        database_url=f"sqlite:///{DATA / 'llmops.db'}",
        plugins="none",
        max_upload_bytes=1024 * 1024,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
]


#: the status of every answer of the run, by whether its request carried the run's key
STATUSES: Counter[tuple[bool, int]] = Counter()
REFUSALS = (401, 403, 429)


@pytest.fixture(scope="module")
def admin_headers() -> Iterator[dict[str, str]]:
    """The app started once (database, plugins, worker) and an admin key for the run; at
    the end, the key still works and few answers refused it."""
    with TestClient(APP) as client:
        platform = client.app.state.platform  # type: ignore[attr-defined]
        with platform.transaction() as session:
            _, key = create_api_key(session=session, name="fuzz", role=Role.ADMIN)
        headers = {"Authorization": f"Bearer {key}"}
        client.post(
            "/llm-ops/v1/catalog/models",
            json={"name": "seed", "uri": "file:///seed"},
            headers=headers,
        )
        yield headers
        assert client.get("/llm-ops/v1/me", headers=headers).status_code == 200
        keyed = {status: n for (sent, status), n in STATUSES.items() if sent}
        refused = sum(keyed.get(status, 0) for status in REFUSALS)
        assert sum(keyed.values()) >= 0.75 * STATUSES.total(), f"few keyed requests: {STATUSES}"
        assert refused <= 0.01 * sum(keyed.values()), f"the run's key was refused: {keyed}"


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_no_answer_outside_the_schema(
    case: schemathesis.Case, admin_headers: dict[str, str]
) -> None:
    # what the platform promises for any request: no 5xx, and every answer as documented
    # (status, content type, headers, body, Allow). Rejection checks are left out: domain
    # rules refuse some schema-valid input on purpose (a forged cursor, a cycle).
    response = case.call_and_validate(headers=admin_headers, checks=CHECKS)
    sent = response.request.headers.get("Authorization") == admin_headers["Authorization"]
    STATUSES[sent, response.status_code] += 1
