"""The platform's own Kubernetes manifests (``infra/k8s/platform``): llmops on a cluster
with KServe.

Every object is validated against the Kubernetes JSON schemas that ``kubernetes-validate``
ships, in strict mode (unknown fields refused, types and required fields checked), for the
oldest Kubernetes the manifests support and the newest the package knows, plus the API
server rules that those schemas leave out. The schemas are inside the package: no network,
no cluster.

Then what the deployment depends on, checked against the code it runs rather than a copy
of it: the ConfigMap read by the platform's own settings models (``CoreSettings``, the
KServe plugin's ``KServeSettings``), the probes asked of the real app, the Role's verbs
equal to the ones the KServe plugin uses, the storage URI prefixes matching the volumes,
secrets only from the Secret, the image tagged with llmops-core's version.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

import llmops
from llmops.api.app import create_app
from llmops.cli import up
from llmops.config import CoreSettings
from llmops.integrations import env_settings, secret_fields
from llmops.services.registry import model_dir
from llmops.services.training import job_output_dir
from llmops.testing.manifests import KubernetesObject as Object
from llmops.testing.manifests import (
    Manifests,
    containers_of,
    credential_faults,
    first_container,
    hardening_faults,
    kubernetes_refusals,
    kustomization,
    kustomization_faults,
    label_sets,
    missing_labels,
    pod_spec,
    resolve_port,
    secret_key_refs,
    secrets_created_in,
    service_routing_faults,
    walk_strings,
)
from llmops.testing.pytest_plugin import FixtureSettings
from llmops_kserve.objects import API_VERBS, GROUP, PLURAL, Placement, storage_uri
from llmops_kserve.settings import KServeSettings

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "infra" / "k8s" / "platform"
MLFLOW_MANIFESTS = REPO / "infra" / "k8s" / "mlflow"
PLATFORM = Manifests(MANIFESTS)
OBJECTS = PLATFORM.objects
the = PLATFORM.the
object_id = PLATFORM.object_id
namespace = PLATFORM.namespace

IMAGE = "ghcr.io/llmops/llmops"

#: The settings of the core that are credentials: from the Secret, never a literal.
CORE_SECRETS = frozenset({"database_url"} | secret_fields(CoreSettings))
SECRET_LOOKING = re.compile(
    r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL|DATABASE_URL|PRIVATE", re.IGNORECASE
)
#: a Fernet key (what LLMOPS_SECRET_KEY holds): 32 bytes in URL-safe base64
FERNET_KEY = re.compile(r"\b[A-Za-z0-9_-]{43}=")

#: Kinds that exist once per cluster: none of them belongs in a namespaced install.
CLUSTER_SCOPED = frozenset(
    {
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ClusterServingRuntime",
    }
)


def platform() -> Object:
    return the("Deployment", "llmops")


def platform_pod() -> Object:
    spec = pod_spec(platform())
    assert spec is not None
    return spec


def platform_container() -> Object:
    containers = platform_pod()["containers"]
    assert [c["name"] for c in containers] == ["llmops"]
    container: Object = containers[0]
    return container


def config() -> dict[str, str]:
    data: dict[str, str] = the("ConfigMap", "llmops")["data"]
    return data


def volumes() -> dict[str, Object]:
    return {volume["name"]: volume for volume in platform_pod()["volumes"]}


def under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


# --- the objects are valid Kubernetes objects ------------------------------------------


def test_the_manifests_hold_the_platform_its_account_role_volumes_and_service() -> None:
    assert sorted((obj["kind"], obj["metadata"]["name"]) for _, obj in OBJECTS) == [
        ("ConfigMap", "llmops"),
        ("Deployment", "llmops"),
        ("PersistentVolumeClaim", "llmops-data"),
        ("PersistentVolumeClaim", "llmops-models"),
        ("Role", "llmops-inferenceservices"),
        ("RoleBinding", "llmops-inferenceservices"),
        ("Service", "llmops"),
        ("ServiceAccount", "llmops"),
    ]


@pytest.mark.parametrize(("path", "obj"), OBJECTS, ids=PLATFORM.object_ids())
def test_every_object_in_the_manifests_is_one_the_api_server_accepts(
    path: Path, obj: Object
) -> None:
    assert kubernetes_refusals(obj) == []


MISTAKES: dict[str, tuple[Callable[[Object], object], str]] = {
    "a misspelt field (replica)": (
        lambda d: d["spec"].__setitem__("replica", d["spec"].pop("replicas")),
        "'replica' was unexpected",
    ),
    "a misspelt field deep in the pod (readOnlyRootFileSystem)": (
        lambda d: first_container(d)["securityContext"].__setitem__(
            "readOnlyRootFileSystem",
            first_container(d)["securityContext"].pop("readOnlyRootFilesystem"),
        ),
        "'readOnlyRootFileSystem' was unexpected",
    ),
    "a container port given as a string": (
        lambda d: first_container(d)["ports"][0].__setitem__("containerPort", "8000"),
        "containerPort: '8000' is not of type 'integer'",
    ),
    "a secret reference without its key": (
        lambda d: first_container(d)["env"][0]["valueFrom"]["secretKeyRef"].pop("key"),
        "'key' is a required property",
    ),
    "an init container without an image": (
        lambda d: d["spec"]["template"]["spec"]["initContainers"][0].pop("image"),
        "initContainers[0].image: Required value",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_validator_refuses_the_platform_deployment_with_a_mistake_in_it(mistake: str) -> None:
    make_mistake, refusal = MISTAKES[mistake]
    deployment = copy.deepcopy(platform())  # accepted as it is (the test above)
    make_mistake(deployment)
    refusals = kubernetes_refusals(deployment)
    assert refusals, f"{mistake} was accepted"
    assert any(refusal in r for r in refusals), refusals


def test_the_kustomization_lists_exactly_the_manifests_in_the_folder() -> None:
    assert kustomization_faults(MANIFESTS, namespace="llmops") == []
    assert not [p for p in MANIFESTS.iterdir() if p.is_dir()], "no folder is listed"


def test_every_object_is_namespaced_and_left_to_the_kustomizations_namespace() -> None:
    for path, obj in OBJECTS:
        assert obj["kind"] not in CLUSTER_SCOPED, object_id(path, obj)
        assert obj["metadata"].get("namespace", namespace()) == namespace(), object_id(path, obj)


def test_every_object_carries_the_recommended_labels() -> None:
    for path, obj in OBJECTS:
        assert missing_labels(obj) == [], object_id(path, obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmops"


# --- the Kubernetes API: only what the KServe plugin uses ---------------------------------


def test_the_role_grants_exactly_the_kserve_plugins_verbs_on_inferenceservices_only() -> None:
    role = the("Role", "llmops-inferenceservices")
    (rule,) = role["rules"]
    assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, no URLs
    assert rule["apiGroups"] == [GROUP] == ["serving.kserve.io"]
    assert rule["resources"] == [PLURAL] == ["inferenceservices"]  # not their status
    assert len(rule["verbs"]) == len(set(rule["verbs"]))
    assert set(rule["verbs"]) == API_VERBS
    assert "*" not in rule["verbs"]


def test_the_role_is_bound_to_the_platforms_service_account_in_its_namespace() -> None:
    binding = the("RoleBinding", "llmops-inferenceservices")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": the("Role", "llmops-inferenceservices")["metadata"]["name"],
    }
    account = platform_pod()["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": namespace()}
    ]
    assert the("ServiceAccount", account)["automountServiceAccountToken"] is True
    # the KServe plugin's in-cluster configuration reads the mounted token
    assert platform_pod()["automountServiceAccountToken"] is True
    assert [obj["kind"] for _, obj in OBJECTS].count("RoleBinding") == 1


# --- settings: read by the platform's own models ----------------------------------------


def pod_environment() -> dict[str, str]:
    """The LLMOPS_* variables the container sees, the Secret's values stood in for."""
    environment = dict(config())
    for entry in platform_container()["env"]:
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            environment[entry["name"]] = f"stand-in for {ref['name']}/{ref['key']}"
    return {k: v for k, v in environment.items() if k.startswith("LLMOPS_")}


def core_settings_of_the_pod(monkeypatch: pytest.MonkeyPatch) -> CoreSettings:
    for name in [n for n in os.environ if n.startswith("LLMOPS_")]:
        monkeypatch.delenv(name)
    environment = pod_environment()
    environment["LLMOPS_DATABASE_URL"] = "postgresql://db.example/llmops"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return CoreSettings()


def test_the_configmap_sets_only_settings_the_core_or_an_enabled_plugin_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = core_settings_of_the_pod(monkeypatch)
    enabled = {name.strip() for name in settings.plugins.split(",")}
    assert enabled == {"kserve", "mlflow"}
    for key in config():
        assert key.startswith("LLMOPS_"), key
        name = key.removeprefix("LLMOPS_")
        if "__" in name:
            plugin, _ = name.split("__", 1)
            assert plugin.lower() in enabled, f"{key}: the plugin is not enabled"
        else:
            # CoreSettings ignores unknown variables: a typo would pass unseen
            assert name.lower() in CoreSettings.model_fields, f"{key} is no core setting"
    assert settings.default_enabled("kserve")
    assert settings.default_enabled("mlflow")
    assert not settings.default_enabled("rayserve")


def test_the_platform_listens_where_the_service_and_the_probes_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = core_settings_of_the_pod(monkeypatch)
    container = platform_container()
    assert settings.host == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [settings.port] == [8000]
    assert resolve_port(container, "http") == settings.port
    # `llmops up` takes these arguments, and none that would override the ConfigMap
    assert container["command"] == ["llmops", "up"]
    parsed = up.make_context("up", list(container.get("args", []))).params
    assert parsed["host"] is None
    assert parsed["port"] is None
    assert parsed["data_dir"] is None


def test_the_public_url_is_the_services_dns_name_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = core_settings_of_the_pod(monkeypatch)
    service = the("Service", "llmops")
    (port,) = service["spec"]["ports"]
    url = urlsplit(settings.api_url)
    assert url.scheme == "http"
    assert url.hostname == f"{service['metadata']['name']}.{namespace()}.svc"
    assert (url.port or 80) == port["port"]
    assert url.path == ""


def test_the_data_dir_and_the_models_folder_are_on_their_volumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = core_settings_of_the_pod(monkeypatch)
    mounts = {m["mountPath"]: m for m in platform_container()["volumeMounts"]}
    data = mounts[str(settings.data_dir)]
    assert volumes()[data["name"]]["persistentVolumeClaim"]["claimName"] == "llmops-data"
    assert "subPath" not in data
    models = mounts["/var/lib/llmops/models"]
    assert volumes()[models["name"]]["persistentVolumeClaim"]["claimName"] == "llmops-models"
    assert the("PersistentVolumeClaim", "llmops-data")["spec"]["accessModes"] == ["ReadWriteOnce"]
    # KServe's storage initializer reads it from the predictor pods, on any node
    assert the("PersistentVolumeClaim", "llmops-models")["spec"]["accessModes"] == ["ReadWriteMany"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes().values()
        if "persistentVolumeClaim" in v
    }
    assert claims == {
        obj["metadata"]["name"] for _, obj in OBJECTS if obj["kind"] == "PersistentVolumeClaim"
    }


def kserve_settings() -> KServeSettings:
    # the platform's own reading of LLMOPS_KSERVE__*, then the plugin's model, which
    # refuses unknown fields: a misspelt key fails here
    from_env = env_settings("kserve", config())
    assert set(from_env) <= set(KServeSettings.model_fields), set(from_env) - set(
        KServeSettings.model_fields
    )
    return KServeSettings.model_validate(from_env)


def test_the_kserve_plugin_reaches_the_cluster_from_inside_it() -> None:
    settings = kserve_settings()
    assert settings.in_cluster is True
    assert settings.use_cluster_address is True
    # the pod's own namespace, where the Role grants its verbs
    assert settings.namespace is None
    assert settings.api_url is None
    assert settings.kubeconfig is None
    # no credentials in a ConfigMap: the service account's token is mounted
    assert not secret_fields(KServeSettings) & set(env_settings("kserve", config()))


def test_a_typo_in_a_kserve_key_of_the_configmap_would_be_refused() -> None:
    data = {**config(), "LLMOPS_KSERVE__USE_CLUSTER_ADRESS": "true"}
    with pytest.raises(ValueError, match="use_cluster_adress"):
        KServeSettings.model_validate(env_settings("kserve", data))


def test_each_storage_uri_prefix_names_the_volume_mounted_at_that_folder() -> None:
    prefixes = kserve_settings().storage_uri_prefixes
    assert prefixes["/var/lib/llmops/models/"] == "pvc://llmops-models/"
    mounts = {m["mountPath"]: m for m in platform_container()["volumeMounts"]}
    for local, remote in prefixes.items():
        assert local.endswith("/"), local
        assert remote.endswith("/"), remote
        uri = urlsplit(remote)
        assert uri.scheme == "pvc"
        # a file at <local>/x is at pvc://<claim>/<subPath>/x for KServe's initializer
        mount = mounts[local.rstrip("/")]
        volume = volumes()[mount["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == uri.netloc, local
        assert uri.path.strip("/") == mount.get("subPath", ""), local
        claim = the("PersistentVolumeClaim", uri.netloc)
        assert "ReadWriteMany" in claim["spec"]["accessModes"]


def on_volume(pod_path: str) -> tuple[str, str]:
    """``(claim, path in the claim)`` of a file the platform's container sees at
    ``pod_path``: the deepest mount that holds it decides, its subPath included."""
    mounts = [m for m in platform_container()["volumeMounts"] if under(pod_path, m["mountPath"])]
    assert mounts, f"{pod_path} is on no volume"
    mount = max(mounts, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))
    inside = PurePosixPath(mount.get("subPath", "")) / PurePosixPath(pod_path).relative_to(
        mount["mountPath"]
    )
    claim: str = volumes()[mount["name"]]["persistentVolumeClaim"]["claimName"]
    return claim, str(inside)


@pytest.mark.parametrize(
    "model",
    [
        "/var/lib/llmops/models/acme/gpt2-small",
        "file:///var/lib/llmops/models/gpt2",
        "a training job's registered model",
        "a model imported from a registry",
    ],
)
def test_a_model_in_the_platforms_folders_is_served_from_the_file_on_the_models_volume(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if model == "a training job's registered model":
        # what POST /training/jobs/{id}/model registers: its output's model/ folder
        model = (job_output_dir(core_settings_of_the_pod(monkeypatch), "job-1") / "model").as_uri()
    if model == "a model imported from a registry":
        # where POST /catalog/models/import places a model's files
        model = model_dir(core_settings_of_the_pod(monkeypatch).storage_dir, "m-1").as_uri()
    settings = kserve_settings()
    # the KServe plugin's own translation into the URI the storage initializer reads
    served = urlsplit(
        storage_uri(
            model,
            Placement(
                storage_uri_prefixes=settings.storage_uri_prefixes, runtimes=settings.runtimes
            ),
        )
    )
    assert served.scheme == "pvc"
    claim, inside = on_volume(urlsplit(model).path)
    assert (served.netloc, served.path.strip("/")) == (claim, inside)
    assert claim == "llmops-models"


def test_every_mount_point_inside_a_volume_is_made_by_the_init_container_first() -> None:
    # a mount point the runtime creates in a volume is root's; the platform (non-root)
    # could then not write beside it
    mounts = platform_container()["volumeMounts"]
    (init,) = platform_pod()["initContainers"]
    made = init["args"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    needed: set[str] = set()
    for mount in mounts:
        for outer in mounts:
            if outer is mount or not under(mount["mountPath"], outer["mountPath"]):
                continue
            if "persistentVolumeClaim" not in volumes()[outer["name"]]:
                continue
            inside = PurePosixPath(mount["mountPath"]).relative_to(outer["mountPath"])
            needed.add(str(PurePosixPath(init_mounts[outer["name"]]) / inside))
        if "subPath" in mount:
            needed.add(str(PurePosixPath(init_mounts[mount["name"]]) / mount["subPath"]))
    assert needed == {
        "/var/lib/llmops/models",
        "/var/lib/llmops/storage/training-jobs",
        "/var/lib/llmops/storage/models",
        "/mnt/models/training-jobs",
        "/mnt/models/imported",
    }
    assert set(made) == needed
    assert init["image"] == platform_container()["image"]
    assert init["securityContext"] == platform_container()["securityContext"]


def test_the_deployment_loads_the_configmaps_that_the_installs_ship() -> None:
    sources = platform_container()["envFrom"]
    assert all(set(source) == {"configMapRef"} for source in sources)
    names = [source["configMapRef"]["name"] for source in sources]
    assert names == ["llmops", "llmops-mlflow"]
    assert all(source["configMapRef"].get("optional") is not True for source in sources)
    mlflow = [
        obj
        for _, obj in Manifests(MLFLOW_MANIFESTS).objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "llmops-mlflow"
    ]
    assert len(mlflow) == 1, "infra/k8s/mlflow ships the ConfigMap llmops-mlflow"
    assert kustomization(MLFLOW_MANIFESTS)["namespace"] == namespace()


# --- secrets ----------------------------------------------------------------------------


def test_the_database_url_and_the_secret_key_come_from_the_secret() -> None:
    env = {entry["name"]: entry for entry in platform_container()["env"]}
    names = [entry["name"] for entry in platform_container()["env"]]
    assert len(names) == len(set(names))
    for setting in CORE_SECRETS:
        name = f"LLMOPS_{setting.upper()}"
        assert set(env[name]) == {"name", "valueFrom"}, name
        assert set(env[name]["valueFrom"]) == {"secretKeyRef"}, name
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "llmops", name
        assert ref.get("optional") is not True, name
        assert name not in config(), name
    assert {f"LLMOPS_{s.upper()}" for s in CORE_SECRETS} == {
        "LLMOPS_DATABASE_URL",
        "LLMOPS_SECRET_KEY",
    }


def test_no_manifest_carries_a_secret_value() -> None:
    for path, obj in OBJECTS:
        where = object_id(path, obj)
        # the Secret is created by hand (README.md)
        assert credential_faults(obj, SECRET_LOOKING) == [], where
        for container_at, container in containers_of(obj):
            assert "envFrom" not in container or all(
                "secretRef" not in source for source in container["envFrom"]
            ), f"{where} {container_at}: whole Secrets are not loaded"
            for entry in container.get("env", []):
                if SECRET_LOOKING.search(entry["name"]):
                    assert set(entry) == {"name", "valueFrom"}, f"{where}: {entry['name']}"
                    assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry["name"]
        for text in walk_strings(obj):
            assert not FERNET_KEY.search(text), f"{where}: a key"
            assert "postgresql" not in text, f"{where}: a database URL"


def test_the_readme_says_how_to_create_the_secret_the_platform_reads() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    documented = secrets_created_in(readme)
    used = {ref for _, obj in OBJECTS for ref in secret_key_refs(obj)}
    assert used == {("llmops", "database-url"), ("llmops", "secret-key")}
    assert used <= documented, used - documented
    assert "kubectl apply -k infra/k8s/platform" in readme


# --- the Service and the probes -----------------------------------------------------------


def test_the_service_sends_traffic_to_the_deployments_named_port() -> None:
    deployment, service = platform(), the("Service", "llmops")
    assert service_routing_faults(service, deployment) == []
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert isinstance(port["targetPort"], str), "a named container port"
    assert resolve_port(platform_container(), port["targetPort"]) == 8000


def probe_paths() -> dict[str, str]:
    container = platform_container()
    paths = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert resolve_port(container, get["port"]) == resolve_port(container, "http"), probe
        assert get.get("scheme", "HTTP") == "HTTP", probe
        assert "httpHeaders" not in get, probe  # the kubelet sends no API key
        paths[probe] = get["path"]
    return paths


def test_liveness_asks_the_cheap_probe_and_readiness_the_database_probe() -> None:
    # a database outage makes the pod unready, it does not restart it
    assert probe_paths() == {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }


@pytest.fixture
def started_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The real app, started (migrated, worker running) as llmops.testing's llmops_app
    starts it, with a client that sends no API key: the kubelet holds none."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = FixtureSettings(
        data_dir=tmp_path / "llmops-data",
        database_url=f"sqlite:///{tmp_path / 'llmops.db'}",
        plugins="none",
        sync_interval_seconds=0.1,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_probes_ask_routes_the_platform_answers_without_a_key(
    started_platform: TestClient,
) -> None:
    for probe, path in probe_paths().items():
        answer = started_platform.get(path)
        assert answer.status_code == 200, (probe, path, answer.text)
        assert answer.json()["status"] == "ok", (probe, path)
    # and a route that needs a key is refused without one: the probes are public routes,
    # not every route
    assert started_platform.get("/llm-ops/v1/health").status_code == 401


# --- the image and the pod --------------------------------------------------------------


def test_the_image_is_tagged_with_llmops_cores_version() -> None:
    version = llmops.__version__
    images = [
        (object_id(path, obj), at, c["image"])
        for path, obj in OBJECTS
        for at, c in containers_of(obj)
    ]
    assert len(images) == 2  # the platform and its init container
    for where, at, image in images:
        assert image == f"{IMAGE}:{version}", (where, at)
    for path, obj in OBJECTS:
        for labels in label_sets(obj):
            if "app.kubernetes.io/version" in labels:
                assert labels["app.kubernetes.io/version"] == version, object_id(path, obj)


def test_one_pod_replaced_not_rolled_while_the_data_volume_is_readwriteonce() -> None:
    spec = platform()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "ReadWriteOnce" in the("PersistentVolumeClaim", "llmops-data")["spec"]["accessModes"]


def test_the_pod_runs_without_privileges_and_with_bounded_resources() -> None:
    spec = platform_pod()
    # a Service named llmops would otherwise put LLMOPS_PORT=tcp://... into the pod
    assert spec["enableServiceLinks"] is False
    assert hardening_faults(platform()) == []
    assert spec["securityContext"]["fsGroup"] > 0
    container = platform_container()
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "sizeLimit" in volumes()[tmp["name"]]["emptyDir"]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["HOME"] == "/tmp"
    assert env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # every writable place is a volume: the data dir, the models, /tmp
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    assert writable == {
        "/var/lib/llmops",
        "/var/lib/llmops/models",
        "/var/lib/llmops/storage/training-jobs",
        "/var/lib/llmops/storage/models",
        "/tmp",
    }
