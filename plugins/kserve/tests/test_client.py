"""How the plugin reaches the Kubernetes API: a kubeconfig (and its context's namespace),
the pod's service account, or an API URL with a token; and what health says when none
works."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.serving import AutoscalingSpec, DeploymentSpec
from llmops.errors import IntegrationUnavailable, InvalidRequest
from llmops.testing.kubernetes import KubernetesApiDouble
from llmops_kserve.backend import KServeBackend
from llmops_kserve.client import KubernetesApi
from llmops_kserve.settings import KServeSettings


def test_a_kubeconfig_and_its_contexts_namespace_are_used(
    cluster: KubernetesApiDouble, models: Any, tmp_path: Path
) -> None:
    path = cluster.kubeconfig(tmp_path / "config", namespace="serving", context="double")
    settings = KServeSettings(kubeconfig=path, storage_uri_prefixes=models.prefixes)
    backend = KServeBackend(KubernetesApi(settings), settings)

    health = backend.health()

    assert health.status is HealthStatus.OK, health.detail
    assert "namespace 'serving'" in health.detail
    assert cluster.requests[-1].path.startswith(
        "/apis/serving.kserve.io/v1beta1/namespaces/serving/"
    )
    assert cluster.requests[-1].headers["authorization"].startswith("Bearer ")


def test_the_pods_service_account_is_used_in_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (account / "namespace").write_text("llmops\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api = KubernetesApi(KServeSettings(in_cluster=True), service_account_dir=account)

    configured = api._api().api_client.configuration

    assert configured.host == "https://10.0.0.1:443"
    header = configured.auth_settings()["BearerToken"]["value"]
    assert header.lower() == "bearer pod-token", "the token is sent, re-read as it rotates"
    assert configured.ssl_ca_cert == str(account / "ca.crt")
    assert api.namespace == "llmops", "the pod's own namespace"


def test_without_any_configuration_health_is_down_and_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = KServeSettings()

    health = KServeBackend(KubernetesApi(settings), settings).health()

    assert health.status is HealthStatus.DOWN
    assert "KServe is not configured" in health.detail


def test_a_wrong_token_is_down_with_the_reason(
    make_backend: Callable[..., KServeBackend],
) -> None:
    backend = make_backend(token="wrong")

    health = backend.health()

    assert health.status is HealthStatus.DOWN
    assert "refused" in health.detail
    assert "401" in health.detail
    with pytest.raises(IntegrationUnavailable):
        backend.status("anything")


def test_an_unreachable_api_server_is_down_within_the_request_timeout(
    make_backend: Callable[..., KServeBackend], cluster: KubernetesApiDouble
) -> None:
    backend = make_backend(request_timeout_seconds=1)
    cluster.api_down()
    try:
        started = time.monotonic()
        health = backend.health()
        took = time.monotonic() - started
    finally:
        cluster.api_up()

    assert health.status is HealthStatus.DOWN
    assert "unreachable" in health.detail
    assert took < 3


def test_a_spec_kserves_webhook_refuses_is_invalid_input_not_an_outage(
    backend: KServeBackend, models: Any, cluster: KubernetesApiDouble
) -> None:
    spec = DeploymentSpec(
        endpoint_id="e1",
        name="upside-down",
        model_uri=str(models.first),
        autoscaling=AutoscalingSpec(min_replicas=3, max_replicas=2),
    )

    with pytest.raises(InvalidRequest) as refused:
        backend.deploy(spec)

    assert "admission webhook" in refused.value.detail
    assert cluster.objects("serving") == []
