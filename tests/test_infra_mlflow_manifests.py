"""The MLflow tracking server's Kubernetes manifests (``infra/k8s/mlflow``, the spec's T043-T045).

Every object is validated against the Kubernetes JSON schemas that ``kubernetes-validate``
ships, in strict mode (unknown fields refused, types and required fields checked), for the
oldest Kubernetes the manifests support and the newest the package knows, plus the API
server rules that those schemas leave out (a pod's container needs an image, an object a
name). The schemas are inside the package: no network, no cluster.

Then what this deployment depends on: secrets only from Secrets, the Service in front of
the Deployment's pods, probes on MLflow's ``/health``, the platform's ConfigMap naming the
Service, the image's MLflow version equal to the one in ``uv.lock``.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from llmops.integrations import env_settings, secret_fields
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
    load_objects,
    missing_labels,
    pod_spec,
    resolve_port,
    secret_key_refs,
    secrets_created_in,
    service_routing_faults,
    walk_strings,
)
from llmops_mlflow.plugin import MlflowSettings

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "infra" / "k8s" / "mlflow"
MLFLOW = Manifests(MANIFESTS, recursive=True)
OBJECTS = MLFLOW.objects
the = MLFLOW.the
object_id = MLFLOW.object_id
namespace = MLFLOW.namespace

MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow"

#: Variables whose values are credentials: a Secret, never a literal or a ConfigMap.
SECRET_VARIABLES = frozenset(
    {"MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
)
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL|STORE_URI", re.IGNORECASE)


def server() -> Object:
    return the("Deployment", "mlflow")


def server_container() -> Object:
    containers = server()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["mlflow"]
    container: Object = containers[0]
    return container


# --- expanding what the kubelet expands -------------------------------------------------


def config_map_value(name: str, key: str) -> str:
    data: dict[str, str] = the("ConfigMap", name)["data"]
    assert key in data, f"ConfigMap {name} has no key {key}"
    return data[key]


def env_value(container: Object, name: str) -> str:
    """The value the container sees for ``name``, from a literal or a ConfigMap."""
    entries = [entry for entry in container.get("env", []) if entry["name"] == name]
    assert len(entries) == 1, f"{name} is set {len(entries)} times"
    entry = entries[0]
    if "value" in entry:
        value: str = entry["value"]
        return value
    source = entry["valueFrom"]
    assert "configMapKeyRef" in source, f"{name} is not readable from the manifests"
    ref = source["configMapKeyRef"]
    return config_map_value(ref["name"], ref["key"])


def expand(container: Object, text: str) -> str:
    """``$(VAR)`` in an argument, as the kubelet expands it from the container's env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env_value(container, m.group(1)), text)


def option(container: Object, flag: str) -> str:
    args: list[str] = container["args"]
    assert args.count(flag) == 1, f"{flag} is given {args.count(flag)} times"
    return expand(container, args[args.index(flag) + 1])


def mlflow_allows_host(allowed: list[str], host: str) -> bool:
    """MLflow's Host header rule (mlflow/server/security_utils.py, is_allowed_host_header):
    exact match, port included, unless the entry has a ``*``. Importing MLflow to call
    it takes seconds; the rule was checked against a running 3.17 server."""
    if "*" in allowed:
        return True
    return any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed)


# --- the objects are valid Kubernetes objects ------------------------------------------


def test_the_manifests_hold_the_server_its_service_and_its_configuration() -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for _, obj in OBJECTS)
    for expected in [
        ("ConfigMap", "llmops-mlflow"),
        ("ConfigMap", "mlflow-server"),
        ("Deployment", "mlflow"),
        ("Job", "mlflow-db-upgrade"),
        ("Service", "mlflow"),
        ("ServiceAccount", "mlflow"),
    ]:
        assert expected in kinds
    assert (MANIFESTS / "mlflow-server.yaml").is_file()
    assert the("Deployment", "mlflow") in load_objects(MANIFESTS / "mlflow-server.yaml")
    assert the("Service", "mlflow") in load_objects(MANIFESTS / "mlflow-service.yaml")
    assert the("ConfigMap", "mlflow-server") in load_objects(MANIFESTS / "mlflow-configmap.yaml")


@pytest.mark.parametrize(("path", "obj"), OBJECTS, ids=MLFLOW.object_ids())
def test_every_object_in_the_manifests_is_one_the_api_server_accepts(
    path: Path, obj: Object
) -> None:
    assert kubernetes_refusals(obj) == []


MISTAKES: dict[str, tuple[Callable[[Object], object], str]] = {
    "a misspelt field (replica)": (
        lambda d: d["spec"].__setitem__("replica", d["spec"].pop("replicas")),
        "'replica' was unexpected",
    ),
    "a container port given as a string": (
        lambda d: first_container(d)["ports"][0].__setitem__("containerPort", "5000"),
        "containerPort: '5000' is not of type 'integer'",
    ),
    "a container without an image": (
        lambda d: first_container(d).pop("image"),
        "containers[0].image: Required value",
    ),
    "a misspelt field deep in the pod (readOnlyRootFileSystem)": (
        lambda d: first_container(d)["securityContext"].__setitem__(
            "readOnlyRootFileSystem",
            first_container(d)["securityContext"].pop("readOnlyRootFilesystem"),
        ),
        "'readOnlyRootFileSystem' was unexpected",
    ),
    "a deployment without a selector": (
        lambda d: d["spec"].pop("selector"),
        "'selector' is a required property",
    ),
    "a container without a name": (
        lambda d: first_container(d).pop("name"),
        "'name' is a required property",
    ),
    "a label value that is not a string": (
        lambda d: d["spec"]["template"]["metadata"]["labels"].__setitem__("release", 3.17),
        "3.17 is not of type 'string'",
    ),
    "a resource quantity that is not one": (
        lambda d: first_container(d)["resources"]["limits"].__setitem__("memory", True),
        "limits.memory",
    ),
    "a kind that does not exist (Deploymnet)": (
        lambda d: d.__setitem__("kind", "Deploymnet"),
        "Couldn't find schema for kind Deploymnet",
    ),
    "an object without a name": (
        lambda d: d["metadata"].pop("name"),
        "metadata.name: Required value",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_validator_refuses_the_server_deployment_with_a_mistake_in_it(mistake: str) -> None:
    make_mistake, refusal = MISTAKES[mistake]
    deployment = copy.deepcopy(server())  # accepted as it is (the test above)
    make_mistake(deployment)
    refusals = kubernetes_refusals(deployment)
    assert refusals, f"{mistake} was accepted"
    assert any(refusal in r for r in refusals), refusals


def test_each_manifest_file_is_listed_by_the_kustomization_of_its_folder() -> None:
    assert MLFLOW.files()
    for path in MLFLOW.files():
        listing = path.parent / "kustomization.yaml"
        assert listing.is_file(), f"{path} has no kustomization.yaml beside it"
        assert path.name in kustomization(path.parent)["resources"], f"{listing} omits {path.name}"


@pytest.mark.parametrize(
    "directory",
    sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml")),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_a_kustomization_lists_exactly_the_manifests_in_its_folder(directory: Path) -> None:
    assert kustomization_faults(directory, namespace=namespace()) == []


# --- secrets ----------------------------------------------------------------------------


def test_the_database_uri_and_the_object_store_keys_come_from_secrets() -> None:
    env = {entry["name"]: entry for entry in server_container()["env"]}
    for name in SECRET_VARIABLES:
        assert set(env[name]) == {"name", "valueFrom"}, name
        assert set(env[name]["valueFrom"]) == {"secretKeyRef"}, name
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == (
        "mlflow-backend-store"
    )
    # MLflow reads MLFLOW_BACKEND_STORE_URI itself: as an argument the URI would be in the
    # pod spec after expansion and in every process list
    arguments = " ".join(server_container()["command"] + server_container()["args"])
    assert "--backend-store-uri" not in arguments
    assert "MLFLOW_BACKEND_STORE_URI" not in arguments
    job = the("Job", "mlflow-db-upgrade")
    ((_, job_container),) = containers_of(job)
    job_env = {entry["name"]: entry for entry in job_container["env"]}
    assert (
        job_env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
        == env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    )
    # the shell expands it when the pod runs, not the kubelet into the spec
    assert "$(MLFLOW_BACKEND_STORE_URI)" not in " ".join(job_container["command"])


def test_no_manifest_carries_a_secret_value() -> None:
    for path, obj in OBJECTS:
        where = object_id(path, obj)
        # Secrets are created by hand (README.md)
        assert credential_faults(obj, SECRET_LOOKING) == [], where
        for container_at, container in containers_of(obj):
            for entry in container.get("env", []):
                if entry["name"] in SECRET_VARIABLES:
                    assert "value" not in entry, f"{where} {container_at}: {entry['name']}"
        for text in walk_strings(obj):
            assert "postgresql://" not in text, where
            assert "postgresql+" not in text, where


def test_the_readme_says_how_to_create_every_secret_the_manifests_read() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    documented = secrets_created_in(readme)
    used = {ref for _, obj in OBJECTS for ref in secret_key_refs(obj)}
    assert used, "the server reads no Secret"
    assert used <= documented, used - documented
    assert "kubectl apply -k infra/k8s/mlflow" in readme


# --- the server, its Service and its probes ----------------------------------------------


def test_the_service_sends_traffic_to_the_deployments_pods() -> None:
    deployment, service = server(), the("Service", "mlflow")
    assert service_routing_faults(service, deployment) == []
    (port,) = service["spec"]["ports"]
    assert port["port"] == 5000
    assert resolve_port(server_container(), port["targetPort"]) == int(
        option(server_container(), "--port")
    )


def test_the_probes_ask_mlflow_health_on_the_port_the_server_listens_on() -> None:
    container = server_container()
    assert container["command"] == ["mlflow", "server"]
    assert option(container, "--host") == "0.0.0.0"
    listening = int(option(container, "--port"))
    assert listening == 5000
    assert [p["containerPort"] for p in container["ports"]] == [listening]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert resolve_port(container, get["port"]) == listening, probe
        assert get.get("scheme", "HTTP") == "HTTP", probe


def test_every_variable_in_the_server_arguments_is_defined_in_its_environment() -> None:
    # the kubelet leaves an undefined $(VAR) as it is: MLflow would get the literal text
    container = server_container()
    names = [entry["name"] for entry in container["env"]]
    assert len(names) == len(set(names))
    referenced = re.findall(r"\$\((\w+)\)", " ".join(container["command"] + container["args"]))
    assert referenced
    for name in referenced:
        assert name in names, name
        assert name not in SECRET_VARIABLES, f"{name} would be expanded into the pod spec"


def test_every_configmap_key_the_pods_read_exists_and_the_server_reads_all_of_its_own() -> None:
    read: set[tuple[str, str]] = set()
    for _, obj in OBJECTS:
        for _, container in containers_of(obj):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("configMapKeyRef")
                if ref is not None:
                    assert ref.get("optional") is not True, entry["name"]
                    config_map_value(ref["name"], ref["key"])
                    read.add((ref["name"], ref["key"]))
    own = {("mlflow-server", key) for key in the("ConfigMap", "mlflow-server")["data"]}
    assert own == {pair for pair in read if pair[0] == "mlflow-server"}


def test_the_server_proxies_artifacts_to_the_object_store() -> None:
    container = server_container()
    assert "--serve-artifacts" in container["args"]
    assert "--no-serve-artifacts" not in container["args"]
    assert "--default-artifact-root" not in container["args"]
    assert option(container, "--artifacts-destination").startswith("s3://")
    endpoint = urlsplit(env_value(container, "MLFLOW_S3_ENDPOINT_URL"))
    assert endpoint.scheme in {"http", "https"}
    assert endpoint.hostname
    assert int(option(container, "--workers")) >= 1
    assert env_value(container, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION") == "false"


def test_the_server_answers_the_host_names_that_the_platform_and_the_ui_use() -> None:
    container = server_container()
    allowed = option(container, "--allowed-hosts").split(",")
    assert "*" not in allowed
    assert allowed == [host.strip() for host in allowed]
    platform = the("ConfigMap", "llmops-mlflow")["data"]
    service, ns = the("Service", "mlflow"), namespace()
    name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    for host in [
        urlsplit(platform["LLMOPS_MLFLOW__TRACKING_URI"]).netloc,
        urlsplit(platform["LLMOPS_MLFLOW__UI_URL"]).netloc,
        f"{name}:{port}",
        f"{name}.{ns}:{port}",
        f"{name}.{ns}.svc.cluster.local:{port}",
        "localhost:5000",  # kubectl port-forward
    ]:
        assert mlflow_allows_host(allowed, host), host
    for host in ["evil.example", f"{name}.evil.example:{port}", f"{name}.{ns}.svc.evil:{port}"]:
        assert not mlflow_allows_host(allowed, host), host
    origins = option(container, "--cors-allowed-origins").split(",")
    assert "*" not in origins
    ui = urlsplit(platform["LLMOPS_MLFLOW__UI_URL"])
    assert f"{ui.scheme}://{ui.netloc}" in origins


def test_the_image_is_the_mlflow_version_in_uv_lock() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (version,) = [p["version"] for p in lock["package"] if p["name"] == "mlflow"]
    images = [
        (object_id(path, obj), c["image"])
        for path, obj in OBJECTS
        for _, c in containers_of(obj)
        if c["image"].split(":")[0] == MLFLOW_IMAGE
    ]
    assert len(images) == 2  # the server and the schema migration
    for where, image in images:
        assert image == f"{MLFLOW_IMAGE}:v{version}-full", where
    for path, obj in OBJECTS:
        for labels in label_sets(obj):
            if "app.kubernetes.io/version" in labels:
                assert labels["app.kubernetes.io/version"] == version, object_id(path, obj)


# --- how the platform is pointed at it --------------------------------------------------


def test_the_platform_configmap_points_at_the_services_dns_name_and_port() -> None:
    data = the("ConfigMap", "llmops-mlflow")["data"]
    assert all(key.startswith("LLMOPS_MLFLOW__") for key in data)
    # the platform's own reading of LLMOPS_MLFLOW__* and the plugin's settings model,
    # which refuses unknown fields
    settings = MlflowSettings.model_validate(env_settings("mlflow", data))
    assert not secret_fields(MlflowSettings) & set(env_settings("mlflow", data))
    service = the("Service", "mlflow")
    port = service["spec"]["ports"][0]["port"]
    assert settings.tracking_uri == f"http://{service['metadata']['name']}.{namespace()}.svc:{port}"
    assert settings.ui_url is not None
    assert urlsplit(settings.ui_url).scheme in {"http", "https"}
    # new experiments use the server's proxied default, mlflow-artifacts:/
    assert settings.artifact_location is None


# --- production hygiene -------------------------------------------------------------------


@pytest.mark.parametrize(
    "workload", [("Deployment", "mlflow"), ("Job", "mlflow-db-upgrade")], ids="/".join
)
def test_the_pods_run_without_privileges_and_with_bounded_resources(
    workload: tuple[str, str],
) -> None:
    obj = the(*workload)
    spec = pod_spec(obj)
    assert spec is not None
    assert spec["automountServiceAccountToken"] is False
    # a Service named mlflow would otherwise put MLFLOW_PORT=tcp://... into the pods,
    # and MLflow reads MLFLOW_PORT
    assert spec["enableServiceLinks"] is False
    assert hardening_faults(obj) == []
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for _, c in containers_of(obj):
        (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[tmp["name"]]
        assert "sizeLimit" in volumes[tmp["name"]]["emptyDir"]
        assert env_value(c, "HOME") == "/tmp"


def test_every_object_carries_the_recommended_labels() -> None:
    for path, obj in OBJECTS:
        assert missing_labels(obj) == [], object_id(path, obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmops"


def test_the_network_policy_and_the_disruption_budget_cover_the_servers_pods() -> None:
    deployment = server()
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    policy = the("NetworkPolicy", "mlflow")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= template_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    ports = [port["port"] for rule in policy["ingress"] for port in rule["ports"]]
    assert ports == [resolve_port(server_container(), "http")]
    budget = the("PodDisruptionBudget", "mlflow")["spec"]
    assert budget["selector"]["matchLabels"].items() <= template_labels.items()
    assert budget["maxUnavailable"] < deployment["spec"]["replicas"]
