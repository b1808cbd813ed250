"""Governance: the policies an admin sets (stored, versioned, readable by every role,
set by admins only) and their enforcement by the services (imports' licenses and
sources, endpoints' replicas and GPUs, the roles that deploy): each violation a 403
policy-violation that changes nothing and an audit entry marked denied. On SQLite and
PostgreSQL (``database_url``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.db.models import CatalogModel, Operation, RegistryModel, ServingEndpoint
from llmops.services.api_keys import Role, create_api_key
from llmops.testing.plugins import PluginInstaller, memory_serving_plugin, temporary_plugin

API = "/llm-ops/v1"
POLICIES = f"{API}/governance/policies"
PROBLEM = "application/problem+json"
VIOLATION = "https://llmops.dev/problems/policy-violation"

#: a serving framework in memory that runs GPUs: its deployments want minReplicas replicas
SERVING_PLUGIN = memory_serving_plugin("govserve", gpu=True)

#: a registry whose repositories carry the licenses LICENSES gives (None: not said)
REGISTRY_PLUGIN = """
from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.registry import ImportResult, RegistryModelMetadata, RegistryFile
from llmops.errors import NotFound
from llmops.plugins.info import PluginInfo

LICENSES = {"Qwen/tiny": "Apache-2.0", "Qwen/secret": None, "Qwen/odd": "cc-by-nc-4.0",
            "acme/tiny": "mit"}
ASKED = []
SHA = "0" * 40


class Hub:
    def _metadata(self, repo_id):
        if repo_id not in LICENSES:
            raise NotFound(repo_id)
        return RegistryModelMetadata(
            repo_id=repo_id, revision=SHA, license=LICENSES[repo_id],
            files=[RegistryFile(path="model.safetensors", size_bytes=1)],
        )

    def metadata(self, repo_id, revision=None):
        ASKED.append(repo_id)
        return self._metadata(repo_id)

    def import_model(self, request):
        request.destination.mkdir(parents=True, exist_ok=True)
        (request.destination / "model.safetensors").write_bytes(b"w")
        return ImportResult(
            repo_id=request.repo_id, revision=SHA, local_path=request.destination,
            files=[RegistryFile(path="model.safetensors", size_bytes=1)],
            metadata=self._metadata(request.repo_id),
        )

    def search(self, query, *, limit=20, tags=None):
        return []

    def export_model(self, request):
        raise NotImplementedError

    def check_update(self, repo_id, revision, *, branch=None):
        raise NotImplementedError

    def links(self, repo_id, revision=None):
        return []

    def health(self):
        return Health(status=HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="govhub", version="1.0", display_name="Governance hub",
        capabilities=frozenset({Capability.REGISTRY}),
    )


@hookimpl
def llmops_registry(settings, context):
    return Hub()
"""


def key_of(client: TestClient, role: str) -> dict[str, str]:
    with client.app.state.platform.transaction() as session:  # type: ignore[attr-defined]
        _, key = create_api_key(session=session, name=f"gov-{role}", role=Role(role))
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def serving_client(
    tmp_path: Path, make_settings: Callable[..., CoreSettings], authenticate: Callable[..., str]
) -> Iterator[TestClient]:
    with (
        temporary_plugin(tmp_path, "govserve", SERVING_PLUGIN),
        TestClient(create_app(make_settings(plugins="govserve"))) as client,
    ):
        authenticate(client)
        yield client


@pytest.fixture
def hub_client(
    install: PluginInstaller,
    make_settings: Callable[..., CoreSettings],
    authenticate: Callable[..., str],
) -> Iterator[tuple[TestClient, Any]]:
    module = install("govhub", REGISTRY_PLUGIN)
    with TestClient(create_app(make_settings(plugins="govhub"))) as client:
        authenticate(client)
        hub = sys.modules[module]
        hub.ASKED.clear()
        yield client, hub


def set_policies(client: TestClient, **body: Any) -> dict[str, Any]:
    answer = client.put(POLICIES, json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def denied_entries(client: TestClient, action: str) -> list[dict[str, Any]]:
    entries = client.get(
        f"{API}/governance/audit-logs", params={"action": action, "outcome": "denied"}
    ).json()["items"]
    return list(entries)


def model_id(client: TestClient, name: str = "m") -> str:
    answer = client.post(f"{API}/catalog/models", json={"name": name, "uri": "file:///m"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def count(client: TestClient, what: Any) -> int:
    with client.app.state.platform.sessions() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(what)) or 0)


# -- the policies ----------------------------------------------------------------------


def test_the_policies_are_the_defaults_until_an_admin_sets_them_and_every_role_reads_them(
    client: TestClient,
) -> None:
    viewer = key_of(client, "viewer")
    defaults = client.get(POLICIES, headers=viewer)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json() == {
        "modelImports": {"allowedLicenses": None, "allowedSources": None},
        "endpoints": {
            "maxReplicas": None,
            "maxGpusPerReplica": None,
            "maxGpus": None,
            "deployRoles": ["admin", "editor"],
        },
        "version": 0,
        "updatedAt": None,
        "updatedBy": None,
    }

    saved = set_policies(
        client,
        modelImports={
            "allowedLicenses": ["Apache-2.0", "mit", "MIT"],
            "allowedSources": ["Qwen/*"],
        },
        endpoints={"maxReplicas": 4, "maxGpusPerReplica": 2, "maxGpus": 6},
    )

    assert saved["modelImports"] == {
        "allowedLicenses": ["apache-2.0", "mit"],
        "allowedSources": ["Qwen/*"],
    }
    assert saved["endpoints"] == {
        "maxReplicas": 4,
        "maxGpusPerReplica": 2,
        "maxGpus": 6,
        "deployRoles": ["admin", "editor"],
    }
    assert (saved["version"], saved["updatedBy"]) == (1, "test-admin")
    assert client.get(POLICIES, headers=viewer).json() == saved
    again = set_policies(client, endpoints={"maxReplicas": 2})
    assert again["version"] == 2
    assert again["modelImports"] == {"allowedLicenses": None, "allowedSources": None}  # replaced


def test_only_admins_set_policies_and_prices(client: TestClient) -> None:
    editor = key_of(client, "editor")
    for path, body in (
        (POLICIES, {}),
        (f"{API}/governance/prices", {"replicaHour": 1, "gpuHour": 2}),
    ):
        refused = client.put(path, json=body, headers=editor)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "https://llmops.dev/problems/forbidden"
    assert client.get(POLICIES).json()["version"] == 0


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"endpoints": {"maxReplicas": 0}}, ["body", "endpoints", "maxReplicas"]),
        ({"endpoints": {"deployRoles": ["viewer"]}}, ["body", "endpoints", "deployRoles", "0"]),
        ({"endpoints": {"deployRoles": []}}, ["body", "endpoints", "deployRoles"]),
        (
            {"modelImports": {"allowedLicenses": [" "]}},
            ["body", "modelImports", "allowedLicenses", "0"],
        ),
        ({"endpoints": {"maxReplicas": "3"}}, ["body", "endpoints", "maxReplicas"]),
    ],
)
def test_a_policy_out_of_bounds_is_a_validation_problem_naming_its_field(
    client: TestClient, body: dict[str, Any], location: list[str]
) -> None:
    refused = client.put(POLICIES, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert [e["location"] for e in refused.json()["errors"]] == [location]
    assert client.get(POLICIES).json()["version"] == 0


# -- endpoints -------------------------------------------------------------------------


def test_an_endpoint_asking_for_more_replicas_than_allowed_is_refused_and_audited(
    serving_client: TestClient,
) -> None:
    client = serving_client
    set_policies(client, endpoints={"maxReplicas": 3})
    body = {"name": "big", "modelId": model_id(client), "autoscaling": {"maxReplicas": 5}}

    refused = client.post(f"{API}/serving/endpoints", json=body)

    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["type"] == VIOLATION
    assert problem["title"] == "Policy violation"
    assert problem["policy"] == "endpoints.maxReplicas"
    assert (problem["requested"], problem["limit"]) == (5, 3)
    assert "endpoints.maxReplicas" in problem["detail"]
    assert "at most 3 replicas" in problem["detail"]
    assert "up to 5" in problem["detail"]
    assert count(client, ServingEndpoint) == 0  # nothing changed
    assert count(client, Operation) == 0
    [entry] = denied_entries(client, "create_serving_endpoint")
    assert entry["outcome"] == "denied"
    assert entry["details"]["policy"] == "endpoints.maxReplicas"
    assert (entry["details"]["requested"], entry["details"]["limit"]) == (5, 3)
    assert entry["details"]["reason"] == problem["detail"]

    body["autoscaling"] = {"maxReplicas": 3}
    assert client.post(f"{API}/serving/endpoints", json=body).status_code == 201


@pytest.mark.parametrize(
    ("policy", "autoscaling", "gpus", "requested", "limit"),
    [
        ({"maxGpusPerReplica": 1}, {"maxReplicas": 1}, 2, 2, 1),
        ({"maxGpus": 4}, {"minReplicas": 1, "maxReplicas": 3}, 2, 6, 4),
    ],
)
def test_an_endpoint_asking_for_more_gpus_than_allowed_is_refused(
    serving_client: TestClient,
    policy: dict[str, int],
    autoscaling: dict[str, int],
    gpus: int,
    requested: int,
    limit: int,
) -> None:
    client = serving_client
    set_policies(client, endpoints=policy)
    [name] = policy
    body = {
        "name": "gpu",
        "modelId": model_id(client),
        "autoscaling": autoscaling,
        "resources": {"gpus": gpus},
    }

    refused = client.post(f"{API}/serving/endpoints", json=body)

    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert (problem["policy"], problem["requested"], problem["limit"]) == (
        f"endpoints.{name}",
        requested,
        limit,
    )
    assert count(client, ServingEndpoint) == 0


def test_a_deployment_change_over_the_limits_is_refused_and_the_spec_stays(
    serving_client: TestClient,
) -> None:
    client = serving_client
    created = client.post(
        f"{API}/serving/endpoints",
        json={"name": "web", "modelId": model_id(client), "autoscaling": {"maxReplicas": 2}},
    ).json()
    deployment = f"{API}/serving/endpoints/{created['id']}/deployment"
    set_policies(client, endpoints={"maxReplicas": 2, "maxGpus": 2})

    more = client.patch(deployment, json={"autoscaling": {"maxReplicas": 4}})
    gpus = client.patch(deployment, json={"resources": {"gpus": 2}})  # 2 replicas x 2 GPUs

    assert more.status_code == 403, more.text
    assert (more.json()["policy"], more.json()["requested"]) == ("endpoints.maxReplicas", 4)
    assert gpus.status_code == 403, gpus.text
    assert (gpus.json()["policy"], gpus.json()["requested"]) == ("endpoints.maxGpus", 4)
    spec = client.get(deployment).json()["spec"]
    assert spec["autoscaling"]["maxReplicas"] == 2
    assert spec["resources"]["gpus"] == 0
    # a change that keeps within the limits, and a canary, still go through
    assert client.patch(deployment, json={"resources": {"gpus": 1}}).status_code == 200
    canary = {"canary": {"modelUri": "file:///m2", "trafficPercent": 10}}
    assert client.patch(deployment, json=canary).status_code == 200
    assert len(denied_entries(client, "update_serving_deployment")) == 2


def test_only_the_roles_the_policy_names_deploy(serving_client: TestClient) -> None:
    client = serving_client
    editor = key_of(client, "editor")
    model = model_id(client)
    made = client.post(f"{API}/serving/endpoints", json={"name": "kept", "modelId": model})
    endpoint = f"{API}/serving/endpoints/{made.json()['id']}"
    set_policies(client, endpoints={"deployRoles": ["admin"]})

    create = client.post(
        f"{API}/serving/endpoints", json={"name": "new", "modelId": model}, headers=editor
    )
    canary = client.patch(
        f"{endpoint}/deployment",
        json={"canary": {"modelUri": "file:///m2", "trafficPercent": 10}},
        headers=editor,
    )
    patch = client.patch(endpoint, json={"description": "x"}, headers=editor)
    delete = client.delete(endpoint, headers=editor)

    for answer in (create, canary, patch, delete):
        assert answer.status_code == 403, answer.text
        problem = answer.json()
        assert problem["type"] == VIOLATION
        assert (problem["policy"], problem["requested"], problem["limit"]) == (
            "endpoints.deployRoles",
            "editor",
            ["admin"],
        )
        assert "this key has the editor role" in problem["detail"]
    assert client.get(endpoint).json()["description"] == ""
    assert count(client, ServingEndpoint) == 1
    [entry] = denied_entries(client, "delete_serving_endpoint")
    assert entry["actor"] == "gov-editor"
    assert entry["details"]["policy"] == "endpoints.deployRoles"
    # the admin still deploys
    assert client.patch(endpoint, json={"description": "y"}).status_code == 200


# -- imports ---------------------------------------------------------------------------


def import_body(repo: str) -> dict[str, Any]:
    return {"repoId": repo, "provider": "govhub"}


def test_an_import_from_a_source_not_allowed_is_refused_before_the_registry_is_asked(
    hub_client: tuple[TestClient, Any],
) -> None:
    client, hub = hub_client
    set_policies(client, modelImports={"allowedSources": ["qwen/*", "meta-llama/Llama-3*"]})

    refused = client.post(f"{API}/catalog/models/import", json=import_body("acme/tiny"))

    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["type"] == VIOLATION
    assert (problem["policy"], problem["requested"], problem["limit"]) == (
        "modelImports.allowedSources",
        "acme/tiny",
        ["qwen/*", "meta-llama/Llama-3*"],
    )
    assert "'acme/tiny' matches none of them" in problem["detail"]
    assert hub.ASKED == []
    assert count(client, CatalogModel) == 0
    assert count(client, RegistryModel) == 0
    [entry] = denied_entries(client, "import_model")
    assert entry["details"]["policy"] == "modelImports.allowedSources"
    # the patterns match case-insensitively
    accepted = client.post(f"{API}/catalog/models/import", json=import_body("Qwen/tiny"))
    assert accepted.status_code == 202, accepted.text


def test_an_import_of_a_license_not_allowed_or_unknown_is_refused(
    hub_client: tuple[TestClient, Any],
) -> None:
    client, _ = hub_client
    set_policies(client, modelImports={"allowedLicenses": ["apache-2.0", "mit"]})

    odd = client.post(f"{API}/catalog/models/import", json=import_body("Qwen/odd"))
    unknown = client.post(f"{API}/catalog/models/import", json=import_body("Qwen/secret"))
    allowed = client.post(f"{API}/catalog/models/import", json=import_body("Qwen/tiny"))

    assert odd.status_code == 403, odd.text
    assert (odd.json()["policy"], odd.json()["requested"], odd.json()["limit"]) == (
        "modelImports.allowedLicenses",
        "cc-by-nc-4.0",
        ["apache-2.0", "mit"],
    )
    assert "has the license 'cc-by-nc-4.0'" in odd.json()["detail"]
    assert unknown.status_code == 403, unknown.text
    assert unknown.json()["requested"] is None
    assert "does not say which license 'Qwen/secret' has" in unknown.json()["detail"]
    assert allowed.status_code == 202, allowed.text  # "Apache-2.0" is apache-2.0
    assert count(client, CatalogModel) == 1
    assert len(denied_entries(client, "import_model")) == 2
