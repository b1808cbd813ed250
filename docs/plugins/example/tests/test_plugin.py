"""The plugin as the core sees it (its entry point, its info, its hook, its imports) and
what the registry does beyond the contract suite."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import llmops.hookspecs
import pluggy
import pytest
from llmops.capabilities.common import HealthStatus
from llmops.capabilities.registry import ExportRequest, ImportRequest, RegistryProvider
from llmops.errors import IntegrationUnavailable, InvalidRequest
from llmops.plugins import PluginContext
from llmops.testing.boundary import check_plugin
from llmops.testing.contracts import write_tree

from llmops_folder_registry import plugin
from llmops_folder_registry.plugin import FolderRegistrySettings
from llmops_folder_registry.registry import FolderRegistry

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_plugin_imports_only_the_plugin_api() -> None:
    assert check_plugin(SRC) == []


def test_the_entry_point_names_the_plugin_module_and_the_plugins_name() -> None:
    [entry_point] = importlib.metadata.entry_points(group="llmops.plugins", name="folder_registry")
    assert entry_point.value == "llmops_folder_registry.plugin"

    # what the core does when it loads the plugin: hooks checked against their specs
    pm = pluggy.PluginManager("llmops")
    pm.add_hookspecs(llmops.hookspecs)
    pm.register(entry_point.load(), name=entry_point.name)
    info = pm.hook.llmops_plugin_info()

    assert info.name == entry_point.name
    assert info.settings_model is FolderRegistrySettings
    for capability in info.capabilities:
        assert hasattr(plugin, f"llmops_{capability}"), f"{capability} has no hook"


def test_the_registry_is_kept_in_the_plugins_data_dir_unless_a_root_is_set(
    tmp_path: Path,
) -> None:
    context = PluginContext("folder_registry", tmp_path / "data", "http://api", "0.1.0")

    default = plugin.llmops_registry(FolderRegistrySettings(), context)
    chosen = plugin.llmops_registry(FolderRegistrySettings(root=tmp_path / "srv"), context)

    assert isinstance(default, RegistryProvider)
    assert default.root == tmp_path / "data"
    assert default.health().status is HealthStatus.OK
    assert chosen.root == tmp_path / "srv"
    assert not chosen.root.exists(), "a root named in the settings is never created"
    assert chosen.health().status is HealthStatus.DOWN


def test_settings_refuse_unknown_keys_and_links_that_are_not_http() -> None:
    with pytest.raises(ValueError, match="rooot"):
        FolderRegistrySettings.model_validate({"rooot": "/srv/models"})
    with pytest.raises(ValueError, match="web_url"):
        FolderRegistrySettings(web_url="file:///srv/models")


def test_importing_the_plugin_module_leaves_the_registry_unimported() -> None:
    code = "import sys, llmops_folder_registry.plugin\nprint(sorted(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "llmops_folder_registry.registry" not in result.stdout


def test_exporting_unchanged_files_again_makes_no_new_commit(tmp_path: Path) -> None:
    registry = FolderRegistry(tmp_path, web_url="http://127.0.0.1:8900")
    folder = write_tree(tmp_path / "model", {"config.json": b"{}"})
    request = ExportRequest(repo_id="acme/m", local_path=folder)

    first, again = registry.export_model(request), registry.export_model(request)

    assert again.commit == first.commit  # a retried export is harmless
    assert registry.check_update("acme/m", first.commit).update_available is False


@pytest.mark.parametrize("repo_id", ["../escape", "acme/../../etc", "no-owner", "/abs/path"])
def test_repository_ids_never_leave_the_folder(tmp_path: Path, repo_id: str) -> None:
    registry = FolderRegistry(tmp_path, web_url="http://127.0.0.1:8900")
    with pytest.raises(InvalidRequest):
        registry.import_model(ImportRequest(repo_id=repo_id, destination=tmp_path / "out"))


def test_a_missing_folder_is_an_outage_not_a_missing_model(tmp_path: Path) -> None:
    registry = FolderRegistry(tmp_path / "not-mounted", web_url="http://127.0.0.1:8900")
    with pytest.raises(IntegrationUnavailable):
        registry.metadata("acme/m")
    with pytest.raises(IntegrationUnavailable):
        registry.search("m")
