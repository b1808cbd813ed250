"""The plugin as the platform meets it: an import-light entry point, its identity and
settings (what only the operator sets), the token never shown or stored in clear, and
its connection test against the double."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.capabilities.common import Capability
from llmops.capabilities.registry import RegistryProvider
from llmops.config import CoreSettings
from llmops.plugins import PluginContext
from llmops.plugins.fields import operator_only_fields, url_fields
from llmops.testing.hf import HfHubDouble
from llmops.testing.pytest_plugin import started_client
from llmops_hf import plugin
from llmops_hf.provider import HfRegistry
from llmops_hf.settings import HfSettings

API = "/llm-ops/v1"


def test_the_entry_point_module_and_building_the_provider_import_no_huggingface_hub(
    tmp_path: Path,
) -> None:
    probe = (
        "import sys, pathlib, llmops_hf.plugin as p\n"
        "from llmops_hf.settings import HfSettings\n"
        f"p.build_registry(HfSettings(), pathlib.Path({str(tmp_path)!r}))\n"
        "heavy = sorted(m for m in ('huggingface_hub', 'httpx2') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "", f"the plugin imported {loaded}"
    assert list(tmp_path.iterdir()) == [], "building writes nothing"


def test_the_plugin_and_its_provider_are_named_hf_and_building_contacts_nothing(
    hub: HfHubDouble, tmp_path: Path
) -> None:
    info = plugin.llmops_plugin_info()
    context = PluginContext(
        plugin_name="hf",
        data_dir=tmp_path / "hf",
        api_url="http://127.0.0.1:8000",
        core_version="0",
    )

    provider = plugin.llmops_registry(settings=HfSettings(endpoint=hub.url), context=context)

    assert info.name == "hf"
    assert info.capabilities == frozenset({Capability.REGISTRY})
    assert info.settings_model is HfSettings
    assert isinstance(provider, RegistryProvider)
    assert isinstance(provider, HfRegistry)
    assert provider.cache_dir == tmp_path / "hf" / "hub-cache", "the cache is the plugin's"
    assert hub.requests == []


def test_the_settings_say_what_only_the_operator_sets_and_where_the_token_goes() -> None:
    assert operator_only_fields(HfSettings).keys() == {
        "cache_dir",
        "allow_pickle",
        "allow_remote_code",
    }
    assert url_fields(HfSettings)["endpoint"].credentials == ("token",)
    defaults = HfSettings()
    assert defaults.endpoint == "https://huggingface.co"
    assert (defaults.token, defaults.allow_pickle, defaults.allow_remote_code) == (
        None,
        False,
        False,
    )
    with pytest.raises(ValueError, match="git branch"):
        HfSettings(default_branch="a/../b")


# -------------------------------------------------------------------------------------
# A started platform with the plugin on, on SQLite and on PostgreSQL
# -------------------------------------------------------------------------------------


@pytest.fixture
def platform(
    hub: HfHubDouble, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The platform with the plugin pointed at the double through ``LLMOPS_HF__*``,
    called with an admin key."""
    for name in list(os.environ):
        if name.startswith("LLMOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LLMOPS_HF__ENDPOINT", hub.url)
    monkeypatch.setenv("LLMOPS_HF__TOKEN", hub.write_token)
    monkeypatch.setenv("LLMOPS_HF__REQUEST_TIMEOUT_SECONDS", "3")
    settings = CoreSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        plugins="hf",
        sync_interval_seconds=0.1,
        health_cache_seconds=0.1,
        circuit_reset_seconds=0.5,
    )
    with started_client(settings) as client:
        yield client


def test_on_the_platform_the_token_is_never_shown_and_operator_settings_are_refused(
    platform: TestClient, hub: HfHubDouble, tmp_path: Path
) -> None:
    shown = platform.get(f"{API}/integrations/hf")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["providers"]["registry"] == ["hf"]
    assert body["secretsSet"] == {"token": True}
    assert "token" not in body["settings"]
    tested = platform.post(f"{API}/integrations/hf/test")
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is True, tested.text
    assert hub.user in tested.text, "whoami with the token"

    for change in (
        {"allow_pickle": True},
        {"allow_remote_code": True},
        {"cache_dir": "/tmp"},
        {"endpoint": "http://127.0.0.1:1"},
    ):
        refused = platform.put(f"{API}/integrations/hf/config", json={"settings": change})
        assert refused.status_code == 422, (change, refused.text)
    stored = platform.put(
        f"{API}/integrations/hf/config",
        json={"settings": {"token": "hf_stored_through_the_api_0123456789"}},
    )
    assert stored.status_code == 200, stored.text

    answers = [shown.text, tested.text, stored.text, platform.get(f"{API}/integrations/hf").text]
    for secret in (hub.write_token, "hf_stored_through_the_api_0123456789"):
        assert all(secret not in text for text in answers)
    database = tmp_path / "llmops.db"
    if database.exists():  # SQLite: the file itself
        assert b"hf_stored_through_the_api_0123456789" not in database.read_bytes()
