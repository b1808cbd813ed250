"""The remote: versions are made while it is away, pushes wait and raise
IntegrationUnavailable, and once it is back each version's data is uploaded once."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.versioning import VersionSpec
from llmops.errors import IntegrationUnavailable
from llmops.testing.contracts import read_tree, write_tree
from llmops_dvc.provider import DvcVersioner

MakeProvider = Callable[..., DvcVersioner]

FILES = {"a.jsonl": b'{"a": 1}\n', "b/c.csv": b"x,y\n1,2\n", "b/d.txt": b"d"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def objects(remote: Path) -> set[str]:
    """The DVC objects a folder remote holds (their md5s)."""
    return {p.parent.name + p.name for p in remote.glob("files/md5/*/*")}


def test_the_default_remote_is_a_folder_under_the_plugins_data_dir(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    info = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(tmp_path / "src", FILES))
    )

    result = provider.push_version("ds", info.version_id)

    remote = tmp_path / "dvc" / "remote"
    assert result.remote == str(remote)
    assert result.uploaded_files == len(FILES) + 1, "the files and the folder's .dir object"
    assert info.checksum is not None
    assert info.checksum.removesuffix(".dir") in {o.removesuffix(".dir") for o in objects(remote)}
    assert provider.health().status is HealthStatus.OK


def test_while_the_remote_is_away_versions_are_made_and_once_back_each_is_pushed_once(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    remote.write_text("a file where the remote folder should be: DVC cannot write there")
    provider = make_provider(remote_url=str(remote))
    source = tmp_path / "src"
    first = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(source, FILES))
    )
    second = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(source, {**FILES, "e.txt": b"e"}))
    )
    health = provider.health()
    assert health.status is HealthStatus.DEGRADED
    assert "pushes wait" in health.detail
    for version in (first, second):
        with pytest.raises(IntegrationUnavailable, match="cannot be reached"):
            provider.push_version("ds", version.version_id)

    remote.unlink()  # the remote is back
    pushed = [provider.push_version("ds", v.version_id) for v in (first, second)]
    again = [
        make_provider(remote_url=str(remote)).push_version("ds", v.version_id)
        for v in (first, second)
    ]

    assert [p.uploaded_files for p in pushed] == [len(FILES) + 1, 2], (
        "the second version uploads only its new file and its .dir"
    )
    assert [(p.uploaded_files, p.already_pushed) for p in again] == [(0, True), (0, True)]
    assert len(objects(remote)) == len(FILES) + 1 + 2


def test_a_push_whose_record_is_lost_still_uploads_nothing_twice(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    info = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(tmp_path / "src", FILES))
    )
    provider.push_version("ds", info.version_id)
    repo = tmp_path / "dvc" / "repos" / "ds"
    refs = subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "--format=%(refname)", "refs/llmops/pushed/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(refs) == 1
    subprocess.run(["git", "-C", str(repo), "update-ref", "-d", refs[0]], check=True)

    result = provider.push_version("ds", info.version_id)

    assert (result.uploaded_files, result.already_pushed) == (0, False), (
        "DVC asks the remote what it holds before uploading"
    )


def test_a_restore_fetches_what_the_local_cache_lost_from_the_remote(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider()
    info = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(tmp_path / "src", FILES))
    )
    provider.push_version("ds", info.version_id)
    for obj in (tmp_path / "dvc" / "cache").glob("files/md5/*/*"):
        obj.unlink()

    provider.restore("ds", info.version_id, tmp_path / "out")

    assert read_tree(tmp_path / "out") == FILES


def test_an_http_remote_at_a_closed_port_degrades_health_and_refuses_pushes_not_versions(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider(remote_url=f"http://127.0.0.1:{closed_port()}/dvc")

    info = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(tmp_path / "src", FILES))
    )

    health = provider.health()
    assert health.status is HealthStatus.DEGRADED
    assert "Connection refused" in health.detail
    with pytest.raises(IntegrationUnavailable, match="cannot be reached"):
        provider.push_version("ds", info.version_id)
    assert [v.version_id for v in provider.list_versions("ds")] == [info.version_id]


def test_a_restore_of_data_neither_cached_nor_on_a_reachable_remote_is_unavailable(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    provider = make_provider(remote_url=f"http://127.0.0.1:{closed_port()}/dvc")
    info = provider.create_version(
        VersionSpec(dataset_id="ds", source_path=write_tree(tmp_path / "src", FILES))
    )
    for obj in (tmp_path / "dvc" / "cache").glob("files/md5/*/*"):
        obj.unlink()

    with pytest.raises(IntegrationUnavailable):
        provider.restore("ds", info.version_id, tmp_path / "out")

    assert not (tmp_path / "out").exists(), "nothing half restored"


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        (
            "s3://bucket/path",
            {
                "access_key_id": "AKIA",
                "secret_access_key": "secret",
                "session_token": "token",
                "endpoint_url": "http://minio:9000",
                "region": "eu-west-1",
            },
        ),
        ("gs://bucket/path", {"gcs_credentials_file": "/etc/gcs.json"}),
        (
            "azure://container/path",
            {
                "azure_connection_string": "conn",
                "azure_account_name": "account",
                "azure_account_key": "key",
            },
        ),
        ("ssh://host/path", {"user": "u", "password": "p", "keyfile": "/etc/key"}),
        ("https://host/path", {"user": "u", "password": "p"}),
        ("webdavs://host/path", {"user": "u", "password": "p"}),
        ("/srv/remote", {"remote_options": {"jobs": "4"}}),
    ],
)
def test_each_kind_of_remote_gets_a_configuration_dvc_accepts_with_its_credentials(
    make_provider: MakeProvider, url: str, settings: dict[str, object]
) -> None:
    from dvc.config import Config

    provider = make_provider(remote_url=url, **settings)

    config = provider.dvc_config()

    Config.validate(config)
    remote = config["remote"][config["core"]["remote"]]
    assert remote["url"] == url
    secrets = {"secret", "token", "p", "conn", "key"} & {str(v) for v in settings.values()}
    assert secrets <= set(map(str, remote.values())), "every credential reaches DVC"
