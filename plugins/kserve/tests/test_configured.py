"""Without a way to a cluster the plugin offers no serving framework: it is shown as not
configured instead of being a provider every call to which fails, and it never ties with
a framework that works (a local Ray Serve) for the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.plugins import PluginContext
from llmops_kserve import plugin
from llmops_kserve.settings import KServeSettings


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginContext:
    """No kubeconfig anywhere, not in a pod."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return PluginContext(
        plugin_name="kserve", data_dir=tmp_path, api_url="http://127.0.0.1:8000", core_version="0"
    )


def test_without_any_way_to_a_cluster_the_plugin_offers_no_framework(
    no_cluster: PluginContext,
) -> None:
    assert plugin.llmops_serving(settings=KServeSettings(), context=no_cluster) == []


@pytest.mark.parametrize(
    "how", ["api_url", "kubeconfig", "in_cluster", "KUBECONFIG", "home", "pod"]
)
def test_each_way_to_a_cluster_makes_the_framework(
    no_cluster: PluginContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\n")
    settings = KServeSettings()
    if how == "api_url":
        settings = KServeSettings(api_url="https://k8s.example:6443")
    elif how == "kubeconfig":
        settings = KServeSettings(kubeconfig=config)
    elif how == "in_cluster":
        settings = KServeSettings(in_cluster=True)
    elif how == "KUBECONFIG":
        monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{config}")
    elif how == "home":
        (tmp_path / "home" / ".kube").mkdir(parents=True)
        (tmp_path / "home" / ".kube" / "config").write_text(config.read_text())
    else:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")

    [backend] = plugin.llmops_serving(settings=settings, context=no_cluster)

    assert backend.framework().name == "kserve"
