"""Authentication and authorization: every route of the OpenAPI document against every
role, key revocation, job tokens, keys shown once and stored hashed, the initial admin
key of ``llmops up`` and ``llmops api-keys``. On SQLite and PostgreSQL (``database_url``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select

from llmops import auth
from llmops.api.app import create_app
from llmops.cli import main
from llmops.config import CoreSettings
from llmops.db.models import ApiKey
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
PROBLEM = "application/problem+json"
OWN_JOB = "0000000000000000000000000000a11c"
OTHER_JOB = "0000000000000000000000000000b0b0"

#: a plugin whose routes are mounted under /llm-ops/v1/plugins/gated: the policy covers
#: the routes that plugins add too
GATED_PLUGIN = """
from fastapi import APIRouter

import llmops
from llmops.auth import current_principal
from llmops.plugins.info import PluginInfo, PluginSettings


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="gated", version="1.0.0", display_name="Gated", settings_model=PluginSettings
    )


@llmops.hookimpl
def llmops_api_routes(settings, context):
    router = APIRouter()

    @router.get("/things")
    def list_gated_things():
        return []

    @router.post("/things")
    def make_gated_thing():
        principal = current_principal.get()
        return {"actor": principal.name if principal else None}

    return router
"""

# -- the policy, restated from the spec so that the test does not read it from the code

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
ADMIN_PREFIXES = (f"{API}/api-keys", f"{API}/operations", f"{API}/governance")
#: the governance routes every role reads (the audit log stays the admins')
GOVERNANCE_READS = {f"{API}/governance/{name}" for name in ("policies", "prices", "costs")}
#: a job's tracker proxy: the job's own token and admins
TRACKER_PROXY = f"{API}/training/jobs/{{jobId}}/experiment-run/tracker/{{path}}"
VIEWER_POSTS = {
    ("POST", f"{API}/experiments/search"),
    ("POST", f"{API}/experiments/compare"),
    # inference: reads a model, changes nothing
    ("POST", f"{API}/openai/v1/chat/completions"),
    ("POST", f"{API}/openai/v1/completions"),
    ("POST", f"{API}/openai/v1/embeddings"),
    ("POST", f"{API}/serving/endpoints/{{endpointId}}/chat/completions"),
}
JOB_ROUTES = {
    ("GET", f"{API}/training/jobs/{{jobId}}"),
    ("GET", f"{API}/training/jobs/{{jobId}}/experiment-run"),
    ("POST", f"{API}/training/jobs/{{jobId}}/experiment-run"),
    ("POST", f"{API}/training/jobs/{{jobId}}/experiment-run/metrics"),
    ("GET", f"{API}/training/jobs/{{jobId}}/logs"),
    ("GET", TRACKER_PROXY),
    ("POST", TRACKER_PROXY),
}
ROLES = ("anonymous", "viewer", "editor", "admin", "job")


def needed_role(method: str, path: str) -> str | None:
    """The least role that may call a route (None: public)."""
    if (method, path) in PUBLIC:
        return None
    if method == "GET" and path in GOVERNANCE_READS:
        return "viewer"
    if path.startswith(ADMIN_PREFIXES) or path == TRACKER_PROXY:
        return "admin"
    if path.startswith(f"{API}/integrations") and method != "GET":
        return "admin"
    if method == "GET" or (method, path) in VIEWER_POSTS:
        return "viewer"
    return "editor"


def may_call(role: str, method: str, path: str) -> bool:
    needed = needed_role(method, path)
    if needed is None:
        return True
    if role == "anonymous":
        return False
    if role == "job":
        return (method, path) in JOB_ROUTES  # with its own job id, as the matrix sends
    order = ["viewer", "editor", "admin"]
    return order.index(role) >= order.index(needed)


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def app_client(
    install: PluginInstaller, make_settings: Callable[..., CoreSettings]
) -> Iterator[TestClient]:
    """A started app with the gated plugin's routes, and no key sent."""
    install("gated", GATED_PLUGIN)
    with TestClient(create_app(make_settings(plugins="gated"))) as client:
        yield client


def new_key(client: TestClient, role: str, *, job: str | None = None, name: str = "") -> str:
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        _, key = create_api_key(
            session=session, name=name or f"key-{role}", role=Role(role), training_job_id=job
        )
    return key


@pytest.fixture
def keys(app_client: TestClient) -> dict[str, str | None]:
    """A key per role; ``job`` is the token of job OWN_JOB."""
    found: dict[str, str | None] = {"anonymous": None}
    for role in ("viewer", "editor", "admin"):
        found[role] = new_key(app_client, role)
    found["job"] = new_key(app_client, "job", job=OWN_JOB)
    return found


def call(client: TestClient, method: str, path: str, key: str | None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs.setdefault("json", {})
    return client.request(method, path, headers=headers, **kwargs)


def concrete(path: str) -> str:
    """Path parameters that name nothing, except the job token's own job."""
    path = path.replace("{jobId}", OWN_JOB)
    return re.sub(r"\{(\w+)\}", lambda m: f"no-such-{m.group(1).lower()}", path)


def operations(client: TestClient) -> list[tuple[str, str]]:
    document = client.app.openapi()  # type: ignore[attr-defined]
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )


# -- the endpoint x role matrix --------------------------------------------------------


def test_every_route_answers_each_role_as_the_policy_says(
    app_client: TestClient, keys: dict[str, str | None]
) -> None:
    routes = operations(app_client)
    assert ("POST", f"{API}/plugins/gated/things") in routes  # plugin routes are covered
    assert ("DELETE", f"{API}/api-keys/{{keyId}}") in routes
    assert ("GET", f"{API}/governance/audit-logs") in routes
    wrong = []
    for method, path in routes:
        for role in ROLES:
            response = call(app_client, method, concrete(path), keys[role])
            allowed = may_call(role, method, path)
            if allowed and response.status_code in (401, 403):
                wrong.append(f"{role} {method} {path}: refused {response.status_code}")
            elif not allowed:
                expected = 401 if role == "anonymous" else 403
                if response.status_code != expected:
                    wrong.append(f"{role} {method} {path}: {response.status_code} not {expected}")
                elif response.headers["content-type"] != PROBLEM:
                    wrong.append(f"{role} {method} {path}: refused without problem+json")
    assert wrong == []


def test_the_policy_table_classifies_every_route_and_each_rule_matches_one(
    app_client: TestClient,
) -> None:
    routes = operations(app_client)
    for method, path in routes:
        rule = auth.rule_for(method, path)
        expected = needed_role(method, path)
        assert (rule.role.value if rule.role else None) == expected, (method, path)
    for rule in auth.POLICY:
        assert any(rule.matches(m, p) for m, p in routes), f"{rule} matches no route"
    assert {(m, p) for m, p in routes if (m, p) in auth.JOB_ROUTES} == auth.JOB_ROUTES


def test_documentation_probes_and_metrics_are_public(app_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert app_client.get(path).status_code == 200, path
    # a wrong key does not spoil a public route
    assert app_client.get("/healthz", headers={"Authorization": "Bearer nonsense"}).is_success
    document = app_client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if needed_role(method.upper(), path) is None:
                assert "security" not in operation, path
                assert "401" not in operation["responses"], path
            else:
                assert operation["security"] == [{"apiKey": []}], (method, path)
                assert "401" in operation["responses"], (method, path)


def test_refusals_are_problem_json_with_a_bearer_challenge(
    app_client: TestClient, keys: dict[str, str | None]
) -> None:
    missing = app_client.get(f"{API}/catalog/models")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == PROBLEM
    assert missing.headers["www-authenticate"] == 'Bearer realm="llmops"'
    assert missing.json()["type"].endswith("/unauthenticated")

    for header in ("Bearer llmops_00000000_not-a-key", "Bearer ", "Basic dXNlcjpwdw==", "x"):
        response = app_client.get(f"{API}/catalog/models", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = app_client.get(
        f"{API}/catalog/models", headers={"Authorization": "Bearer llmops_00000000_nope"}
    )
    assert wrong.headers["www-authenticate"] == 'Bearer realm="llmops", error="invalid_token"'

    refused = call(app_client, "POST", f"{API}/catalog/models", keys["viewer"], json={"name": "m"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"].endswith("/forbidden")
    assert "editor" in refused.json()["detail"]


def test_the_handler_sees_the_principal_of_the_request(app_client: TestClient) -> None:
    key = new_key(app_client, "editor", name="ci-bot")
    response = call(app_client, "POST", f"{API}/plugins/gated/things", key)
    assert response.json() == {"actor": "ci-bot"}


# -- keys ------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_at_once(app_client: TestClient) -> None:
    admin = new_key(app_client, "admin")
    victim = call(
        app_client, "POST", f"{API}/api-keys", admin, json={"name": "v", "role": "editor"}
    )
    assert victim.status_code == 201
    key, key_id = victim.json()["key"], victim.json()["id"]
    assert call(app_client, "GET", f"{API}/catalog/models", key).status_code == 200

    revoked = call(app_client, "DELETE", f"{API}/api-keys/{key_id}", admin)

    assert revoked.status_code == 204
    refused = call(app_client, "GET", f"{API}/catalog/models", key)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    listed = call(app_client, "GET", f"{API}/api-keys", admin, params={"revoked": "true"}).json()
    assert [k["id"] for k in listed["items"]] == [key_id]
    assert listed["items"][0]["revokedAt"] is not None
    assert call(app_client, "DELETE", f"{API}/api-keys/nothing", admin).status_code == 404


def test_keys_are_shown_once_and_stored_only_as_hashes(app_client: TestClient) -> None:
    admin = new_key(app_client, "admin")
    created = call(
        app_client, "POST", f"{API}/api-keys", admin, json={"name": "ci", "role": "viewer"}
    )
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith(f"llmops_{body['prefix']}_")
    assert body["role"] == "viewer"

    listed = call(app_client, "GET", f"{API}/api-keys", admin)
    text = listed.text
    assert key not in text
    assert admin not in text
    assert all("key" not in item and "keyHash" not in item for item in listed.json()["items"])
    assert {item["name"] for item in listed.json()["items"]} >= {"ci", "key-admin"}
    one = call(app_client, "GET", f"{API}/api-keys", admin, params={"role": "viewer"}).json()
    assert [k["name"] for k in one["items"]] == ["ci"]

    with app_client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        rows = session.scalars(select(ApiKey)).all()
        stored = json.dumps(
            [[str(getattr(r, c.key)) for c in ApiKey.__table__.columns] for r in rows]
        )
        row = next(r for r in rows if r.id == body["id"])
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in stored
    assert admin not in stored


def test_a_job_cannot_be_given_a_key_through_the_api(app_client: TestClient) -> None:
    admin = new_key(app_client, "admin")
    response = call(app_client, "POST", f"{API}/api-keys", admin, json={"name": "j", "role": "job"})
    assert response.status_code == 422


def test_keys_list_pages(app_client: TestClient) -> None:
    admin = new_key(app_client, "admin")
    for n in range(5):
        new_key(app_client, "viewer", name=f"k{n}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "sort": "name", **({"cursor": cursor} if cursor else {})}
        page = call(app_client, "GET", f"{API}/api-keys", admin, params=params).json()
        seen += [k["name"] for k in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 6


def test_last_use_is_noted_at_most_once_a_minute(app_client: TestClient) -> None:
    key = new_key(app_client, "viewer")
    platform = app_client.app.state.platform  # type: ignore[attr-defined]

    def last_used() -> Any:
        with platform.transaction() as session:
            return session.scalars(
                select(ApiKey.last_used_at).where(ApiKey.name == "key-viewer")
            ).one()

    assert last_used() is None
    call(app_client, "GET", f"{API}/catalog/models", key)
    first = last_used()
    assert first is not None
    call(app_client, "GET", f"{API}/catalog/models", key)
    assert last_used() == first  # no write within the minute

    with platform.transaction() as session:
        later = auth.authenticate(session=session, token=key, now=first + timedelta(seconds=61))
        assert later.failure is None
    assert last_used() == first + timedelta(seconds=61)


# -- job tokens ------------------------------------------------------------------------


def test_a_job_token_reaches_its_own_job_and_nothing_else(app_client: TestClient) -> None:
    token = new_key(app_client, "job", job=OWN_JOB)
    for method, template in sorted(JOB_ROUTES):
        own = call(app_client, method, template.replace("{jobId}", OWN_JOB), token)
        other = call(app_client, method, template.replace("{jobId}", OTHER_JOB), token)
        assert own.status_code not in (401, 403), (method, template, own.text)
        assert other.status_code == 403, (method, template)
        assert "its own job" in other.json()["detail"]
    assert call(app_client, "GET", f"{API}/training/jobs", token).status_code == 403
    assert (
        call(app_client, "POST", f"{API}/training/jobs/{OWN_JOB}/cancel", token).status_code == 403
    )
    assert call(app_client, "GET", f"{API}/catalog/models", token).status_code == 403


def test_a_submitted_jobs_token_is_scoped_to_it_and_revoked_when_it_ends(
    client: TestClient, tmp_path: Path
) -> None:
    """The token a job's process gets in LLMOPS_JOB_TOKEN, end to end."""
    token_file, go = tmp_path / "token", tmp_path / "go"
    script = f"echo $LLMOPS_JOB_TOKEN > {token_file}; while [ ! -e {go} ]; do sleep 0.05; done"
    job = client.post(
        f"{API}/training/jobs", json={"name": "t", "command": ["sh", "-c", script]}
    ).json()
    other = client.post(f"{API}/training/jobs", json={"name": "o", "command": ["true"]}).json()
    token = wait_for(lambda: token_file.exists() and token_file.read_text().strip())
    assert isinstance(token, str)

    own = call(client, "GET", f"{API}/training/jobs/{job['id']}", token)
    assert own.status_code == 200
    assert call(client, "GET", f"{API}/training/jobs/{job['id']}/logs", token).status_code == 200
    assert call(client, "GET", f"{API}/training/jobs/{other['id']}", token).status_code == 403
    assert call(client, "GET", f"{API}/catalog/models", token).status_code == 403

    go.touch()
    wait_for(lambda: client.get(f"{API}/training/jobs/{job['id']}").json()["status"] == "succeeded")
    assert call(client, "GET", f"{API}/training/jobs/{job['id']}", token).status_code == 401


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def invoke(tmp_path: Path, database_url: str) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        env = {
            "LLMOPS_DATA_DIR": str(tmp_path / "data"),
            "LLMOPS_PLUGINS": "none",
            "LLMOPS_DATABASE_URL": database_url,
        }
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_up_creates_and_prints_an_initial_admin_key_once(
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))

    first = invoke("up")
    second = invoke("up")

    assert first.exit_code == 0, first.output
    [key] = [line for line in first.stdout.splitlines() if line.startswith("llmops_")]
    assert "initial-admin" in first.stdout
    assert "shown only now" in first.stdout
    assert second.exit_code == 0, second.output
    assert "llmops_" not in second.stdout
    assert len(served) == 2

    listed = json.loads(invoke("api-keys", "list", "--json").stdout)
    [initial] = listed
    assert initial["name"] == "initial-admin"
    assert initial["role"] == "admin"
    assert key not in json.dumps(listed)

    # with every admin key revoked, the next start makes a new one
    assert invoke("api-keys", "revoke", initial["id"]).exit_code == 0
    third = invoke("up")
    assert [line for line in third.stdout.splitlines() if line.startswith("llmops_")] != [key]
    assert "initial-admin" in third.stdout


def test_api_keys_list_and_revoke_on_the_command_line(invoke: Callable[..., Result]) -> None:
    created = invoke("api-keys", "create", "--name", "ops", "--role", "editor")
    key = created.stdout.strip().splitlines()[-1]

    table = invoke("api-keys", "list")
    rows = json.loads(invoke("api-keys", "list", "--json").stdout)

    assert table.exit_code == 0
    assert "ops" in table.stdout
    assert key not in table.stdout
    [row] = rows
    assert (row["name"], row["role"], row["revoked_at"]) == ("ops", "editor", None)

    revoked = invoke("api-keys", "revoke", row["id"])
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked key {row['id']} (ops)" in revoked.stdout
    assert json.loads(invoke("api-keys", "list", "--json").stdout) == []
    [shown] = json.loads(invoke("api-keys", "list", "--json", "--all").stdout)
    assert shown["revoked_at"] is not None
    missing = invoke("api-keys", "revoke", "nope")
    assert missing.exit_code == 1
    assert "no API key with id 'nope'" in missing.output


def test_revoked_on_the_command_line_is_refused_by_the_running_server(
    app_client: TestClient, make_settings: Callable[..., CoreSettings]
) -> None:
    key = new_key(app_client, "viewer", name="cli-victim")
    assert call(app_client, "GET", f"{API}/catalog/models", key).status_code == 200
    with app_client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.name == "cli-victim")).one()
    settings = make_settings()
    result = CliRunner().invoke(
        main,
        ["api-keys", "revoke", key_id],
        env={
            "LLMOPS_DATA_DIR": str(settings.data_dir),
            "LLMOPS_DATABASE_URL": settings.resolved_database_url,
        },
    )
    assert result.exit_code == 0, result.output
    assert call(app_client, "GET", f"{API}/catalog/models", key).status_code == 401


def test_a_key_cannot_revoke_itself_and_keeps_working(app_client: TestClient) -> None:
    new_key(app_client, "admin", name="other-admin")  # so the last-admin rule is not why
    admin = new_key(app_client, "admin")
    me = call(app_client, "GET", f"{API}/me", admin).json()

    refused = call(app_client, "DELETE", f"{API}/api-keys/{me['keyId']}", admin)

    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "cannot revoke itself" in refused.json()["detail"]
    assert call(app_client, "GET", f"{API}/catalog/models", admin).status_code == 200


def test_the_last_admin_key_cannot_be_revoked_but_one_of_two_can(
    app_client: TestClient,
) -> None:
    first = new_key(app_client, "admin", name="first")
    second = new_key(app_client, "admin", name="second")
    ids = {
        k["name"]: k["id"]
        for k in call(app_client, "GET", f"{API}/api-keys", first, params={"role": "admin"}).json()[
            "items"
        ]
    }

    revoked = call(app_client, "DELETE", f"{API}/api-keys/{ids['second']}", first)
    with app_client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        from llmops.errors import Conflict
        from llmops.services.api_keys import revoke_api_key

        with pytest.raises(Conflict, match="last admin key"):
            revoke_api_key(session=session, key_id=ids["first"])

    assert revoked.status_code == 204
    assert call(app_client, "GET", f"{API}/catalog/models", second).status_code == 401
    assert call(app_client, "GET", f"{API}/catalog/models", first).status_code == 200
