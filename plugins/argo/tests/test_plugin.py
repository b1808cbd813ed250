"""The plugin as the platform meets it: an import-light entry point, its identity and
settings, tokens never shown, URLs set through the API under the platform's URL policy,
and Argo as the default orchestrator."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from fastapi.testclient import TestClient

from llmops.capabilities.common import Capability
from llmops.capabilities.orchestration import OrchestrationProvider
from llmops.plugins import PluginContext
from llmops.testing.argo import ArgoServerDouble
from llmops_argo import plugin
from llmops_argo.settings import ArgoSettings

API = "/llm-ops/v1"


def test_the_entry_point_module_imports_neither_hera_nor_kubernetes_nor_requests() -> None:
    probe = (
        "import sys, llmops_argo.plugin\n"
        "heavy = sorted(m for m in ('hera', 'kubernetes', 'requests') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "", f"the plugin module imported {loaded}"


def test_the_plugin_and_its_provider_are_both_named_argo_and_building_contacts_nothing(
    argo: ArgoServerDouble, tmp_path: Any
) -> None:
    info = plugin.llmops_plugin_info()
    settings = ArgoSettings(server_url=argo.url, token=argo.token)
    context = PluginContext(
        plugin_name="argo", data_dir=tmp_path, api_url="http://127.0.0.1:8000", core_version="0"
    )

    provider = plugin.llmops_orchestration(settings=settings, context=context)

    assert info.name == "argo"
    assert info.capabilities == frozenset({Capability.ORCHESTRATION})
    assert info.settings_model is ArgoSettings
    assert isinstance(provider, OrchestrationProvider)
    assert argo.requests == [], "building the provider must not call Argo"
    provider.close()


def test_without_an_argo_server_the_plugin_offers_no_orchestrator(tmp_path: Any) -> None:
    context = PluginContext(
        plugin_name="argo", data_dir=tmp_path, api_url="http://127.0.0.1:8000", core_version="0"
    )
    assert plugin.llmops_orchestration(settings=ArgoSettings(), context=context) is None


def test_the_ui_link_defaults_to_the_argo_server_which_serves_the_ui() -> None:
    assert ArgoSettings(server_url="https://argo.example:2746/").ui_base == (
        "https://argo.example:2746"
    )
    assert ArgoSettings(server_url="https://a", ui_url="https://ui/").ui_base == "https://ui"
    assert ArgoSettings().ui_base is None


def test_the_tokens_are_never_shown_and_argo_can_be_the_default_orchestrator(
    platform: TestClient,
) -> None:
    shown = platform.get(f"{API}/integrations/argo")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert "token" not in body["settings"]
    assert "kubernetesToken" not in body["settings"]
    assert "kubernetes_token" not in body["settings"]
    assert body["secretsSet"] == {"token": True, "kubernetes_token": True}
    assert body["providers"]["orchestration"] == ["argo"]

    chosen = platform.put(f"{API}/integrations/defaults/orchestration", json={"provider": "argo"})
    assert chosen.status_code == 200, chosen.text
    pipeline = platform.post(
        f"{API}/workflows/pipelines",
        json={"name": "by-default", "stages": [{"name": "only", "command": ["true"]}]},
    )
    assert pipeline.status_code in (201, 202), pipeline.text
    assert pipeline.json()["provider"] == "argo"


def test_a_loopback_argo_url_set_through_the_api_is_refused(platform: TestClient) -> None:
    refused = platform.put(
        f"{API}/integrations/argo/config", json={"settings": {"server_url": "http://127.0.0.1:1"}}
    )

    assert refused.status_code == 422, refused.text
    assert "server_url" in refused.text
