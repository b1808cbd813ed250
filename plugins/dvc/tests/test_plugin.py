"""The plugin as the platform meets it: an import-light entry point, its identity and
settings (secrets, what only the operator sets), DVC and git kept out of ``$HOME`` and
credentials kept off the disk, and the plugin enabled on a started platform."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops.capabilities.common import Capability
from llmops.capabilities.versioning import PushesVersions, VersioningProvider
from llmops.config import CoreSettings
from llmops.integrations import secret_fields
from llmops.plugins import PluginContext
from llmops.plugins.fields import operator_only_fields, url_fields
from llmops.testing.pytest_plugin import started_client
from llmops_dvc import plugin
from llmops_dvc.provider import DvcVersioner
from llmops_dvc.settings import CREDENTIALS, DvcSettings

API = "/llm-ops/v1"


def test_the_entry_point_module_and_building_the_provider_import_no_dvc(tmp_path: Path) -> None:
    probe = (
        "import sys, pathlib, llmops_dvc.plugin as p\n"
        "from llmops_dvc.settings import DvcSettings\n"
        f"p.build_versioning(DvcSettings(), pathlib.Path({str(tmp_path)!r}))\n"
        "heavy = sorted(m for m in ('dvc', 'scmrepo', 'dulwich', 'pygit2') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "", f"the plugin imported {loaded}"
    assert list(tmp_path.iterdir()) == [], "building writes nothing"


def test_the_plugin_and_its_provider_are_named_dvc_and_keep_to_its_data_dir(
    tmp_path: Path,
) -> None:
    info = plugin.llmops_plugin_info()
    context = PluginContext(
        plugin_name="dvc",
        data_dir=tmp_path / "dvc",
        api_url="http://127.0.0.1:8000",
        core_version="0.1.0",
    )

    provider = plugin.llmops_versioning(settings=DvcSettings(), context=context)

    assert info.name == "dvc"
    assert info.capabilities == frozenset({Capability.VERSIONING})
    assert info.settings_model is DvcSettings
    assert isinstance(provider, VersioningProvider)
    assert isinstance(provider, PushesVersions)
    assert isinstance(provider, DvcVersioner)
    assert provider.repos_dir == tmp_path / "dvc" / "repos"
    assert provider.cache_dir == tmp_path / "dvc" / "cache"
    assert provider.remote_url == str(tmp_path / "dvc" / "remote")


def test_the_settings_say_which_are_secrets_what_only_the_operator_sets_and_where_secrets_go() -> (
    None
):
    assert secret_fields(DvcSettings) == set(CREDENTIALS)
    assert operator_only_fields(DvcSettings).keys() == {
        "keyfile",
        "gcs_credentials_file",
        "remote_options",
        "repos_dir",
        "cache_dir",
    }
    remote = url_fields(DvcSettings)["remote_url"]
    assert remote.credentials == CREDENTIALS
    assert {"s3", "gs", "azure", "ssh", "https"} <= set(remote.schemes)


def test_dvc_and_git_write_nothing_to_home_and_credentials_reach_no_file(tmp_path: Path) -> None:
    """In a process whose environment names none of DVC's folders, with ``$HOME`` an
    empty folder: a version made, pushed and restored leaves ``$HOME`` empty, and the S3
    secret given to the remote is in no file under the data dir."""
    home = tmp_path / "home"
    home.mkdir()
    data = tmp_path / "data"
    script = (
        "import pathlib\n"
        "from pydantic import SecretStr\n"
        "from llmops.capabilities.versioning import VersionSpec\n"
        "from llmops.testing.contracts import write_tree\n"
        "from llmops_dvc.provider import DvcVersioner\n"
        "from llmops_dvc.settings import DvcSettings\n"
        f"data = pathlib.Path({str(data)!r})\n"
        "src = write_tree(data.parent / 'src', {'a.txt': b'a'})\n"
        "local = DvcVersioner(DvcSettings(), data_dir=data)\n"
        "v = local.create_version(VersionSpec(dataset_id='ds', source_path=src))\n"
        "local.push_version('ds', v.version_id)\n"
        "local.restore('ds', v.version_id, data.parent / 'out')\n"
        "s3 = DvcVersioner(DvcSettings(remote_url='s3://bucket/path',\n"
        "    access_key_id=SecretStr('AKIA-THE-KEY-ID'),\n"
        "    secret_access_key=SecretStr('the-secret-access-key')), data_dir=data)\n"
        "s3.create_version(VersionSpec(dataset_id='other', source_path=src))\n"
        "print(s3.health().detail)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DVC_", "GIT_", "XDG_")) and k != "HOME"
    }
    env["HOME"] = str(home)

    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )

    assert run.returncode == 0, run.stderr
    assert list(home.iterdir()) == [], "nothing written to $HOME"
    assert (data / "site-cache").is_dir(), "DVC's site cache is the plugin's"
    assert "the-secret-access-key" not in run.stdout + run.stderr
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"the-secret-access-key" not in content, path
            assert b"AKIA-THE-KEY-ID" not in content, path


# -------------------------------------------------------------------------------------
# A started platform with the plugin on
# -------------------------------------------------------------------------------------


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The platform on SQLite with only this plugin enabled (its defaults: the folder
    remote under its data dir), called with an admin key."""
    for name in list(os.environ):
        if name.startswith("LLMOPS_"):
            monkeypatch.delenv(name)
    settings = CoreSettings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'llmops.db'}",
        plugins="dvc",
        sync_interval_seconds=0.1,
        health_cache_seconds=0.1,
        circuit_reset_seconds=0.5,
    )
    with started_client(settings) as client:
        yield client


def test_on_the_platform_the_plugin_provides_versioning_and_passes_its_connection_test(
    platform: TestClient, tmp_path: Path
) -> None:
    shown = platform.get(f"{API}/integrations/dvc")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["providers"]["versioning"] == ["dvc"]
    assert body["secretsSet"] == dict.fromkeys(CREDENTIALS, False)

    tested = platform.post(f"{API}/integrations/dvc/test")

    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is True, tested.text
    assert (tmp_path / "data" / "plugins" / "dvc" / "repos").is_dir()
    for change in ({"repos_dir": "/tmp"}, {"remote_url": "/srv/elsewhere"}):
        refused = platform.put(f"{API}/integrations/dvc/config", json={"settings": change})
        assert refused.status_code == 422, (change, refused.text)
