"""Plugin secret settings are encrypted at rest, never shown by the API, never logged.

The first half drives a platform through HTTP on SQLite and on PostgreSQL (the
``database_url`` fixture) with a fake plugin whose settings hold two secrets; the second
half tests :class:`llmops.secrets.SecretCipher` on its own.
"""

from __future__ import annotations

import json
import logging
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from llmops.api.app import create_app
from llmops.capabilities.common import Capability
from llmops.config import CoreSettings
from llmops.db.models import IntegrationConfig
from llmops.integrations import IntegrationRuntime
from llmops.secrets import (
    ENCRYPTED,
    KEY_FILE_NAME,
    SecretCipher,
    SecretKeyError,
    SecretUndecryptable,
    derive_key,
    is_encrypted,
    parse_keys,
)
from llmops.testing.plugins import PluginInstaller

CANARY = "canary-secret-9d41f07be3a2"
API = "/llm-ops/v1"
KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()

VAULT_PLUGIN = """
import llmops
from pydantic import SecretStr
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.plugins.info import PluginInfo, PluginSettings

#: the token each provider was built with, in clear, in order
RECEIVED = []


class Settings(PluginSettings):
    url: str = "vault://default"
    timeout_seconds: float = 5.0
    token: SecretStr | None = None
    password: SecretStr | None = None


class VaultTracker:
    def __init__(self, settings):
        self.settings = settings

    def health(self):
        return Health(status=HealthStatus.OK, detail="vault")


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="vault",
        version="1.0.0",
        display_name="Vault tracker",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=Settings,
    )


@llmops.hookimpl
def llmops_tracking(settings, context):
    RECEIVED.append(settings.token.get_secret_value() if settings.token else None)
    return VaultTracker(settings)
"""

App = Callable[..., TestClient]


@pytest.fixture
def vault(install: PluginInstaller) -> str:
    """The module name of the installed (not yet imported) plugin "vault"."""
    return install("vault", VAULT_PLUGIN)


class AdminClient(TestClient):
    """A client that starts the app and then calls it with a new admin key."""

    def __init__(self, app: Any, authenticate: Callable[..., str]) -> None:
        super().__init__(app)
        self._authenticate = authenticate

    def __enter__(self) -> AdminClient:
        super().__enter__()
        self._authenticate(self)
        return self


@pytest.fixture
def app(make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]) -> App:
    """An app on the test's data dir and database with "vault" enabled; started by
    ``with app(...) as client``, so a test can stop it and start another."""

    def make(**overrides: Any) -> TestClient:
        settings = make_settings(**{"plugins": "vault", **overrides})
        return AdminClient(create_app(settings), authenticate)

    return make


def received(module: str) -> list[str | None]:
    found: list[str | None] = sys.modules[module].RECEIVED
    return found


def runtime_of(client: TestClient) -> IntegrationRuntime:
    runtime: IntegrationRuntime = client.app.state.platform.runtime  # type: ignore[attr-defined]
    return runtime


def put_config(client: TestClient, settings: dict[str, Any]) -> httpx.Response:
    response: httpx.Response = client.put(
        f"{API}/integrations/vault/config", json={"settings": settings}
    )
    return response


def stored_settings(database_url: str) -> dict[str, Any]:
    """The vault plugin's row of ``integration_configs``, as stored."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            row = session.get(IntegrationConfig, "vault")
            assert row is not None
            return dict(row.settings)
    finally:
        engine.dispose()


def raw_database_text(database_url: str) -> bytes:
    """Everything the database holds of the settings, without the ORM in between: the
    SQLite file and its write-ahead log byte for byte, or PostgreSQL's text of the column."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT settings::text FROM integration_configs")).all()
    finally:
        engine.dispose()
    return "\n".join(row[0] for row in rows).encode()


# -- through the API, on each database -------------------------------------------------


def test_stored_secret_is_in_no_response_no_log_line_and_not_in_clear_in_the_database(
    app: App, vault: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQL with its parameters
    responses: list[httpx.Response] = []
    with app(secret_key=KEY) as client:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response: httpx.Response = client.request(method, f"{API}{path}", **kwargs)
            responses.append(response)
            return response

        stored = call(
            "PUT",
            "/integrations/vault/config",
            json={"settings": {"token": CANARY, "url": "v://a"}},
        )

        assert stored.status_code == 200, stored.text
        assert stored.json()["secretsSet"] == {"token": True, "password": False}
        assert received(vault)[-1] == CANARY
        tracker = runtime_of(client).provider(Capability.TRACKING)[1]
        assert tracker.settings.token.get_secret_value() == CANARY
        assert call("GET", "/integrations").status_code == 200
        assert call("GET", "/integrations/vault").json()["secretsSet"]["token"] is True
        assert call("GET", "/integrations/defaults").status_code == 200
        assert call("POST", "/integrations/vault/test").json()["ok"] is True
        assert call("GET", "/health").status_code == 200
        assert call("PATCH", "/integrations/vault", json={"enabled": True}).status_code == 200
        kept = call("PUT", "/integrations/vault/config", json={"settings": {"timeout_seconds": 2}})
        assert kept.json()["secretsSet"]["token"] is True
        assert received(vault)[-1] == CANARY
        paths = client.get("/openapi.json").json()["paths"]
        for path, operations in paths.items():
            if "get" in operations and "{" not in path:
                responses.append(client.get(path))
        assert CANARY.encode() not in raw_database_text(database_url)  # WAL not yet merged

    for response in responses:
        assert CANARY not in response.text, (response.request.method, response.request.url)
    assert "UPDATE integration_configs" in caplog.text  # the SQL and its parameters
    assert CANARY not in caplog.text
    for record in caplog.records:  # arguments a handler with another format would show
        assert CANARY not in repr(record.args), record.name
    settings = stored_settings(database_url)
    assert is_encrypted(settings["token"])
    assert settings["url"] == "v://a"
    assert CANARY.encode() not in raw_database_text(database_url)


def test_secret_left_out_of_a_change_keeps_its_value_and_none_removes_it(
    app: App, vault: str, database_url: str
) -> None:
    with app(secret_key=KEY) as client:
        put_config(client, {"token": CANARY, "password": "hunter2-7f3c"})

        changed = put_config(client, {"url": "v://b"})

        assert changed.json()["secretsSet"] == {"token": True, "password": True}
        assert received(vault)[-1] == CANARY
        stored = stored_settings(database_url)
        assert is_encrypted(stored["token"])
        assert is_encrypted(stored["password"])
        password = SecretCipher([KEY.encode()]).decrypt(
            stored["password"], plugin="vault", field="password"
        )
        assert password == "hunter2-7f3c"

        removed = put_config(client, {"token": None})

        assert removed.json()["secretsSet"] == {"token": False, "password": True}
        assert "token" not in stored_settings(database_url)
        assert received(vault)[-1] is None


def test_invalid_settings_are_refused_without_echoing_the_secret(
    app: App, vault: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with app(secret_key=KEY) as client:
        bad_neighbour = put_config(client, {"token": CANARY, "timeout_seconds": "slow"})
        bad_type = put_config(client, {"token": [CANARY]})
        forged = put_config(client, {"token": {ENCRYPTED: CANARY}})

        for response in (bad_neighbour, bad_type, forged):
            assert response.status_code == 422, response.text
            assert CANARY not in response.text
        assert [e["location"] for e in bad_neighbour.json()["errors"]] == [["timeout_seconds"]]
        assert [e["location"][0] for e in bad_type.json()["errors"]] == ["token"]
        assert forged.json()["fields"] == ["token"]
        item = client.get(f"{API}/integrations/vault").json()
        assert item["secretsSet"]["token"] is False
        assert CANARY.encode() not in raw_database_text(database_url)
    assert CANARY not in caplog.text


def test_key_file_is_created_private_on_first_secret_and_reused_after_a_restart(
    app: App, vault: str, make_settings: Callable[..., CoreSettings], database_url: str
) -> None:
    key_file = make_settings().data_dir / KEY_FILE_NAME
    with app() as client:
        assert not key_file.exists()  # nothing secret stored yet

        assert put_config(client, {"token": CANARY}).status_code == 200

        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_bytes()
    received(vault).clear()

    with app() as client:
        item = client.get(f"{API}/integrations/vault").json()

        assert item["error"] is None
        assert item["secretsSet"]["token"] is True
        assert received(vault) == [CANARY]
    assert key_file.read_bytes() == key
    token = stored_settings(database_url)["token"]
    assert SecretCipher([key.strip()]).decrypt(token, plugin="vault", field="token") == CANARY


def test_rotated_key_second_in_the_list_still_decrypts_until_the_next_change(
    app: App, vault: str, database_url: str
) -> None:
    with app(secret_key=OTHER_KEY) as client:
        put_config(client, {"token": CANARY})
    received(vault).clear()

    with app(secret_key=f"{KEY},{OTHER_KEY}") as client:
        assert client.get(f"{API}/integrations/vault").json()["error"] is None
        assert received(vault) == [CANARY]

        assert put_config(client, {"timeout_seconds": 1}).status_code == 200

    token = stored_settings(database_url)["token"]
    assert SecretCipher([KEY.encode()]).decrypt(token, plugin="vault", field="token") == CANARY
    received(vault).clear()
    with app(secret_key=KEY) as client:
        assert client.get(f"{API}/integrations/vault").json()["error"] is None
        assert received(vault) == [CANARY]


def test_wrong_key_shows_a_configure_error_naming_the_field_and_a_new_value_recovers(
    app: App, vault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with app(secret_key=OTHER_KEY) as client:
        put_config(client, {"token": CANARY})
    received(vault).clear()

    with app(secret_key=KEY) as client:
        item = client.get(f"{API}/integrations/vault")

        error = item.json()["error"]
        assert error["stage"] == "configure"
        assert "token" in error["error"]
        assert "decrypt" in error["error"]
        assert item.json()["providers"] == {}
        assert received(vault) == []
        other_change = put_config(client, {"timeout_seconds": 1})
        assert other_change.status_code == 422
        assert [e["location"] for e in other_change.json()["errors"]] == [["token"]]
        for response in (item, other_change, client.get(f"{API}/integrations")):
            assert CANARY not in response.text

        again = put_config(client, {"token": CANARY})

        assert again.status_code == 200, again.text
        assert again.json()["error"] is None
        assert received(vault) == [CANARY]
        assert CANARY not in again.text
    assert CANARY not in caplog.text


def test_secret_stored_in_clear_before_encryption_is_read_and_encrypted_on_next_change(
    app: App, vault: str, database_url: str
) -> None:
    with app(secret_key=KEY, plugins="none"):
        pass  # migrates the database
    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        session.add(IntegrationConfig(name="vault", enabled=True, settings={"token": CANARY}))
    engine.dispose()

    with app(secret_key=KEY) as client:
        assert client.get(f"{API}/integrations/vault").json()["secretsSet"]["token"] is True
        assert received(vault) == [CANARY]
        assert stored_settings(database_url)["token"] == CANARY

        assert put_config(client, {"timeout_seconds": 1}).status_code == 200

        assert is_encrypted(stored_settings(database_url)["token"])
        assert received(vault)[-1] == CANARY


def test_key_file_readable_by_others_is_refused_at_start(
    app: App, vault: str, make_settings: Callable[..., CoreSettings]
) -> None:
    data_dir = make_settings().data_dir
    data_dir.mkdir(parents=True)
    key_file = data_dir / KEY_FILE_NAME
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)

    with pytest.raises(SecretKeyError, match="chmod 600") as raised, app():
        pass

    assert str(key_file) in str(raised.value)
    assert "0644" in str(raised.value)


# -- the cipher on its own -------------------------------------------------------------


def test_encrypted_value_round_trips_and_never_holds_the_clear_text() -> None:
    cipher = SecretCipher([KEY.encode()])

    for value in (CANARY, {"header": CANARY}, [CANARY, 1], 42):
        stored = cipher.encrypt(value)

        assert is_encrypted(stored)
        assert CANARY not in json.dumps(stored)
        assert cipher.decrypt(stored, plugin="p", field="f") == value
    assert cipher.encrypt(CANARY) != cipher.encrypt(CANARY)


def test_clear_values_are_returned_as_they_are() -> None:
    cipher = SecretCipher([KEY.encode()])

    for value in (CANARY, None, 3, {"other": "x"}, {ENCRYPTED: 1}, {ENCRYPTED: "t", "more": 1}):
        assert not is_encrypted(value)
        assert cipher.decrypt(value, plugin="p", field="f") == value


def test_wrong_key_names_plugin_and_field_but_not_the_value() -> None:
    stored = SecretCipher([OTHER_KEY.encode()]).encrypt(CANARY)

    with pytest.raises(SecretUndecryptable) as raised:
        SecretCipher([KEY.encode()]).decrypt(stored, plugin="vault", field="token")

    assert raised.value.plugin == "vault"
    assert raised.value.fields == ("token",)
    assert "'vault'" in str(raised.value)
    assert "token" in str(raised.value)
    assert CANARY not in str(raised.value)
    assert stored[ENCRYPTED] not in str(raised.value)


def test_reveal_names_every_field_it_cannot_decrypt() -> None:
    other = SecretCipher([OTHER_KEY.encode()])
    settings = {"url": "x", "token": other.encrypt("a"), "password": other.encrypt("b")}

    with pytest.raises(SecretUndecryptable) as raised:
        SecretCipher([KEY.encode()]).reveal(settings, plugin="vault")

    assert raised.value.fields == ("token", "password")
    error = raised.value.validation_error("Settings")
    assert [e["loc"] for e in error.errors()] == [("token",), ("password",)]
    assert "a" not in [e["input"] for e in error.errors()]


def test_seal_encrypts_clear_secrets_and_re_encrypts_with_the_first_key() -> None:
    old = SecretCipher([OTHER_KEY.encode()])
    both = SecretCipher([KEY.encode(), OTHER_KEY.encode()])
    new_only = SecretCipher([KEY.encode()])
    settings = {"url": "x", "token": old.encrypt("t"), "password": "p", "empty": None}

    sealed = both.seal(settings, {"token", "password", "empty"}, plugin="vault")

    assert sealed["url"] == "x"
    assert sealed["empty"] is None
    assert new_only.reveal(sealed, plugin="vault") == {
        "url": "x",
        "token": "t",
        "password": "p",
        "empty": None,
    }


def test_first_key_of_a_list_encrypts_and_every_key_decrypts() -> None:
    first, second = Fernet.generate_key(), Fernet.generate_key()
    cipher = SecretCipher(parse_keys(f" {first.decode()} , {second.decode()} ", source="test"))
    older = SecretCipher([second]).encrypt("old")

    stored = cipher.encrypt("new")

    assert SecretCipher([first]).decrypt(stored, plugin="p", field="f") == "new"
    with pytest.raises(SecretUndecryptable):
        SecretCipher([second]).decrypt(stored, plugin="p", field="f")
    assert cipher.decrypt(older, plugin="p", field="f") == "old"


def test_passphrase_derives_a_stable_key_and_a_fernet_key_is_used_as_it_is() -> None:
    assert parse_keys(KEY, source="test") == [KEY.encode()]
    assert parse_keys("correct horse battery staple", source="test") == [
        derive_key("correct horse battery staple")
    ]
    assert derive_key("a") != derive_key("b")
    Fernet(derive_key("a"))  # a valid Fernet key
    stored = SecretCipher(parse_keys("a passphrase", source="t")).encrypt(CANARY)
    again = SecretCipher(parse_keys("a passphrase", source="t"))
    assert again.decrypt(stored, plugin="p", field="f") == CANARY


def test_secret_key_setting_without_a_key_is_refused(tmp_path: Path) -> None:
    settings = CoreSettings(data_dir=tmp_path, secret_key=" , ")

    with pytest.raises(SecretKeyError, match="LLMOPS_SECRET_KEY holds no key"):
        SecretCipher.from_settings(settings)


def test_secret_key_comes_from_the_environment_and_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_SECRET_KEY", f"{KEY},{OTHER_KEY}")
    settings = CoreSettings(data_dir=tmp_path)

    cipher = SecretCipher.from_settings(settings)

    stored = cipher.encrypt("x")
    assert SecretCipher([KEY.encode()]).decrypt(stored, plugin="p", field="f") == "x"
    assert KEY not in repr(settings)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_key_file_is_created_only_when_a_secret_is_first_encrypted(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / KEY_FILE_NAME
    cipher = SecretCipher.from_settings(CoreSettings(data_dir=tmp_path / "data"))
    stored_elsewhere = SecretCipher([KEY.encode()]).encrypt("x")

    with pytest.raises(SecretUndecryptable, match="LLMOPS_SECRET_KEY is unset"):
        cipher.decrypt(stored_elsewhere, plugin="p", field="f")
    assert not key_file.exists()

    stored = cipher.encrypt("x")

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    reread = SecretCipher.from_settings(CoreSettings(data_dir=tmp_path / "data"))
    assert reread.decrypt(stored, plugin="p", field="f") == "x"
    assert sorted(p.name for p in key_file.parent.iterdir()) == [KEY_FILE_NAME]


def test_processes_creating_the_key_file_at_once_agree_on_one_key(tmp_path: Path) -> None:
    ciphers = [SecretCipher(key_file=tmp_path / KEY_FILE_NAME) for _ in range(8)]
    stored: list[dict[str, str]] = []
    barrier = threading.Barrier(len(ciphers))

    def encrypt(cipher: SecretCipher) -> None:
        barrier.wait()
        stored.append(cipher.encrypt("x"))

    threads = [threading.Thread(target=encrypt, args=(c,)) for c in ciphers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    key = tmp_path.joinpath(KEY_FILE_NAME).read_bytes().strip()
    assert len(stored) == len(ciphers)
    for value in stored:
        assert SecretCipher([key]).decrypt(value, plugin="p", field="f") == "x"
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o640)

    with pytest.raises(SecretKeyError, match="accessible by other users"):
        SecretCipher(key_file=key_file)
