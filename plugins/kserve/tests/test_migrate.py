"""`llmops kserve migrate` (the plugin's command through the CLI hook; the core moves the
records, the plugin adopts): endpoints the platform recorded without a framework move onto
KServe, on SQLite and on PostgreSQL. The one an old script already serves with an
InferenceService is adopted in place (its predictor untouched); the other gets a new
InferenceService. A dry run changes nothing, and running it again does nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client as k8s
from sqlalchemy import select

from llmops.cli import main
from llmops.config import CoreSettings
from llmops.db.models import CatalogModel, ServingDeployment, ServingEndpoint
from llmops.platform import Platform
from llmops.testing.kubernetes import KubernetesApiDouble
from llmops.testing.postgres import PostgresServer

NAMESPACE = "serving"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def environment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cluster: KubernetesApiDouble,
    models: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "LLMOPS_DATA_DIR": str(tmp_path / "data"),
        "LLMOPS_PLUGINS": "kserve",
        "LLMOPS_KSERVE__API_URL": cluster.url,
        "LLMOPS_KSERVE__TOKEN": "kserve-test-token",
        "LLMOPS_KSERVE__NAMESPACE": NAMESPACE,
        "LLMOPS_KSERVE__STORAGE_URI_PREFIXES": json.dumps(models.prefixes),
    }
    if request.param == "postgresql":
        values["LLMOPS_DATABASE_URL"] = request.getfixturevalue("postgres").create_database()
    else:
        monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _legacy_inference_service(cluster: KubernetesApiDouble) -> dict[str, Any]:
    """What a hand-written deployment script made, without llmops' labels."""
    configuration = k8s.Configuration(host=cluster.url)
    configuration.api_key = {"authorization": "kserve-test-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with k8s.ApiClient(configuration) as api_client:
        created: dict[str, Any] = k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
            "serving.kserve.io",
            "v1beta1",
            NAMESPACE,
            "inferenceservices",
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "legacy", "labels": {"team": "search"}},
                "spec": {
                    "predictor": {
                        "minReplicas": 2,
                        "maxReplicas": 2,
                        "model": {
                            "modelFormat": {"name": "huggingface"},
                            "runtime": "kserve-huggingfaceserver",
                            "storageUri": "pvc://llmops-models/model-a",
                        },
                    }
                },
            },
        )
    return created


@pytest.fixture
def recorded(environment: None, models: Any, cluster: KubernetesApiDouble) -> dict[str, str]:
    """Two endpoints recorded without a framework; one of them is already served by the
    old script's InferenceService."""
    platform = Platform(CoreSettings())
    platform.start()
    try:
        with platform.transaction() as session:
            model = CatalogModel(name="tiny", uri=str(models.first), framework="transformers")
            session.add(model)
            session.flush()
            ids = {}
            for name in ("legacy", "fresh"):
                endpoint = ServingEndpoint(name=name, model_id=model.id, framework=None)
                session.add(endpoint)
                session.flush()
                ids[name] = endpoint.id
    finally:
        platform.stop()
    _legacy_inference_service(cluster)
    cluster.wait_for_ready("legacy", NAMESPACE)
    return ids


def _writes(cluster: KubernetesApiDouble) -> list[str]:
    return [f"{r.method} {r.path}" for r in cluster.requests if r.method not in ("GET",)]


def _endpoints() -> dict[str, tuple[str | None, list[ServingDeployment]]]:
    platform = Platform(CoreSettings())
    platform.start()
    try:
        with platform.transaction() as session:
            out = {}
            for endpoint in session.scalars(select(ServingEndpoint)):
                deployments = list(
                    session.scalars(
                        select(ServingDeployment).where(
                            ServingDeployment.endpoint_id == endpoint.id
                        )
                    )
                )
                for row in deployments:
                    session.expunge(row)
                out[endpoint.name] = (endpoint.framework, deployments)
            return out
    finally:
        platform.stop()


def test_the_dry_run_says_what_would_happen_and_changes_nothing(
    recorded: dict[str, str], cluster: KubernetesApiDouble
) -> None:
    legacy_before = cluster.get_object("legacy", NAMESPACE)
    writes_before = _writes(cluster)

    result = CliRunner().invoke(main, ["kserve", "migrate", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert (
        f"would adopt the existing deployment 'legacy' for endpoint 'legacy' "
        f"({recorded['legacy']})" in result.output
    )
    assert "would deploy 'fresh' serving " in result.output
    assert f"for endpoint 'fresh' ({recorded['fresh']})" in result.output
    assert "would move 2 of 2 endpoint(s) to kserve (dry run: nothing changed)" in result.output
    assert _writes(cluster) == writes_before, "a dry run writes nothing to Kubernetes"
    assert cluster.get_object("legacy", NAMESPACE) == legacy_before
    assert cluster.get_object("fresh", NAMESPACE) is None
    assert {name: framework for name, (framework, _) in _endpoints().items()} == {
        "legacy": None,
        "fresh": None,
    }


def test_the_migration_adopts_the_old_object_creates_the_other_and_is_idempotent(
    recorded: dict[str, str], cluster: KubernetesApiDouble
) -> None:
    legacy_before = cluster.get_object("legacy", NAMESPACE)
    assert legacy_before is not None

    result = CliRunner().invoke(main, ["kserve", "migrate"])

    assert result.exit_code == 0, result.output
    assert "moved 2 of 2 endpoint(s) to kserve" in result.output
    legacy = cluster.get_object("legacy", NAMESPACE)
    assert legacy is not None
    assert legacy["metadata"]["labels"] == {
        "team": "search",
        "app.kubernetes.io/managed-by": "llmops",
        "llmops.dev/endpoint-id": recorded["legacy"],
        "llmops.dev/idempotency-key": f"endpoint-{recorded['legacy']}",
    }
    assert legacy["metadata"]["generation"] == legacy_before["metadata"]["generation"], (
        "adoption leaves the predictor as it is"
    )
    assert legacy["spec"] == legacy_before["spec"]
    fresh = cluster.get_object("fresh", NAMESPACE)
    assert fresh is not None
    assert fresh["metadata"]["labels"]["llmops.dev/endpoint-id"] == recorded["fresh"]
    assert fresh["spec"]["predictor"]["model"]["storageUri"] == "pvc://llmops-models/model-a"

    recorded_now = _endpoints()
    for name in ("legacy", "fresh"):
        framework, deployments = recorded_now[name]
        assert framework == "kserve"
        [deployment] = deployments
        assert (deployment.provider, deployment.external_id) == ("kserve", name)
    [adopted] = recorded_now["legacy"][1]
    assert adopted.spec["autoscaling"]["min_replicas"] == 2, "the record says what runs"
    assert adopted.spec["model_uri"] == "pvc://llmops-models/model-a"

    writes = _writes(cluster)
    again = CliRunner().invoke(main, ["kserve", "migrate"])

    assert again.exit_code == 0, again.output
    assert "nothing to migrate: every serving endpoint has a framework" in again.output
    assert _writes(cluster) == writes, "a second run writes nothing"


def test_the_first_name_of_the_command_still_runs_it(
    recorded: dict[str, str], cluster: KubernetesApiDouble
) -> None:
    script = Path(sys.executable).with_name("migrate-serving-to-kserve")
    writes_before = _writes(cluster)

    result = subprocess.run(
        [str(script), "--dry-run", "--endpoint", "fresh"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"for endpoint 'fresh' ({recorded['fresh']})" in result.stdout
    assert "would move 1 of 1 endpoint(s) to kserve (dry run: nothing changed)" in result.stdout
    assert _writes(cluster) == writes_before
