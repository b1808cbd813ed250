"""Argo Workflows' Kubernetes manifests (``infra/k8s/argo``, the spec's T084-T086), and the
overlay of the platform's manifests that turns the Argo plugin on (``infra/k8s/argo/platform``).

Every object is validated against the Kubernetes JSON schemas that ``kubernetes-validate``
ships, in strict mode, for the oldest Kubernetes the manifests support and the newest the
package knows, plus the API server rules those schemas leave out; the overlay is built as
kustomize builds it (its JSON patches applied to the platform's objects) and its result
validated the same way. The controller's configuration is validated against Argo's
published JSON schema (``../shared/upstream-schemas``), fields it does not know refused.

Then what the setup depends on: the Argo Server in ``client`` auth mode and nothing else,
TLS with a certificate the platform verifies, the platform's Role equal to the Kubernetes
verbs behind the Argo Server routes the plugin calls (each route checked against Argo's
published API), nothing cluster-wide, the stage containers without a token, only the
platform's pods let through to the Argo Server, every Service in front of a workload's
pods, the images pinned to one Argo version, and the settings read by the plugin's own
``ArgoSettings``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from llmops.config import CoreSettings
from llmops.integrations import env_settings, secret_fields
from llmops.testing.kubernetes.patching import json_patch
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
    manifest_files,
    missing_labels,
    pod_spec,
    pod_template,
    resolve_port,
    secret_key_refs,
    service_routing_faults,
    walk_strings,
)
from llmops.testing.upstream import upstream_schema
from llmops_argo.settings import ArgoSettings

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "infra" / "k8s" / "argo"
OVERLAY = MANIFESTS / "platform"
PLATFORM_MANIFESTS = REPO / "infra" / "k8s" / "platform"
MLFLOW_MANIFESTS = REPO / "infra" / "k8s" / "mlflow"

ARGO = Manifests(MANIFESTS)
OBJECTS = ARGO.objects
the = ARGO.the
object_id = ARGO.object_id
namespace = ARGO.namespace
PLATFORM = Manifests(PLATFORM_MANIFESTS)

#: Argo's version: the images, the executor image, the CRDs' ref in the README.
VERSION = "3.6.10"
CONTROLLER_IMAGE = "quay.io/argoproj/workflow-controller"
SERVER_IMAGE = "quay.io/argoproj/argocli"
EXECUTOR_IMAGE = "quay.io/argoproj/argoexec"

SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"

#: Kinds that exist once per cluster: none belongs in this namespaced install (the CRDs
#: come from upstream, README.md).
CLUSTER_SCOPED = frozenset(
    {
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)

#: The Argo Server routes the Argo plugin calls (method, path in Argo's published API),
#: and the Kubernetes verbs the server exercises with the caller's token for each
#: (argo-workflows v3.6, server/workflow/workflow_server.go and util/logs): in client auth
#: mode these are the platform's own rights.
ARGO_ROUTES: dict[str, tuple[str, str, frozenset[tuple[str, str, str]]]] = {
    "lint": ("post", "/api/v1/workflows/{namespace}/lint", frozenset()),
    "create": (
        "post",
        "/api/v1/workflows/{namespace}",
        frozenset({("argoproj.io", "workflows", "create")}),
    ),
    "list by label": (
        "get",
        "/api/v1/workflows/{namespace}",
        frozenset({("argoproj.io", "workflows", "list")}),
    ),
    "get": (
        "get",
        "/api/v1/workflows/{namespace}/{name}",
        frozenset({("argoproj.io", "workflows", "get")}),
    ),
    "delete": (
        "delete",
        "/api/v1/workflows/{namespace}/{name}",
        frozenset({("argoproj.io", "workflows", "get"), ("argoproj.io", "workflows", "delete")}),
    ),
    # the failed nodes are reset in the workflow and their pods deleted
    "retry": (
        "put",
        "/api/v1/workflows/{namespace}/{name}/retry",
        frozenset(
            {
                ("argoproj.io", "workflows", "get"),
                ("argoproj.io", "workflows", "update"),
                ("", "pods", "delete"),
            }
        ),
    ),
    # a merge patch of spec.shutdown
    "stop": (
        "put",
        "/api/v1/workflows/{namespace}/{name}/stop",
        frozenset({("argoproj.io", "workflows", "get"), ("argoproj.io", "workflows", "patch")}),
    ),
    "terminate": (
        "put",
        "/api/v1/workflows/{namespace}/{name}/terminate",
        frozenset({("argoproj.io", "workflows", "get"), ("argoproj.io", "workflows", "patch")}),
    ),
    # a stage's log, not followed (logOptions.follow would watch the workflow as well):
    # the workflow's pods are watched and listed, their logs read
    "log": (
        "get",
        "/api/v1/workflows/{namespace}/{name}/log",
        frozenset(
            {
                ("argoproj.io", "workflows", "get"),
                ("", "pods", "list"),
                ("", "pods", "watch"),
                ("", "pods/log", "get"),
            }
        ),
    ),
}
#: The plugin's own calls to the Kubernetes API: the Secrets of a pipeline's secret env.
PIPELINE_SECRET_VERBS = frozenset(
    ("", "secrets", verb) for verb in ("create", "get", "list", "delete")
)


def controller() -> Object:
    return the("Deployment", "workflow-controller")


def server() -> Object:
    return the("Deployment", "argo-server")


def server_container() -> Object:
    containers = server()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["argo-server"]
    container: Object = containers[0]
    return container


def controller_container() -> Object:
    containers = controller()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["workflow-controller"]
    container: Object = containers[0]
    return container


def flag_values(args: list[str], flag: str) -> list[str]:
    """Every value given to ``flag``, as ``--flag=value`` or ``--flag value`` (pflag's two
    forms), in order."""
    values = []
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag:
            values.append(args[index + 1] if index + 1 < len(args) else "")
    return values


def rules_of(role: Object) -> set[tuple[str, str, str]]:
    """``(apiGroup, resource, verb)`` of every grant of a Role."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def pod_labels(workload: Object) -> dict[str, str]:
    template = pod_template(workload)
    assert template is not None
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def workloads() -> list[Object]:
    return [obj for _, obj in OBJECTS if pod_template(obj) is not None]


def is_requested_token(obj: Object) -> bool:
    """A Secret that asks Kubernetes for a service account's token: Kubernetes fills it
    in, the manifest carries nothing secret."""
    return (
        obj["kind"] == "Secret"
        and obj.get("type") == SERVICE_ACCOUNT_TOKEN
        and "data" not in obj
        and "stringData" not in obj
        and set(obj["metadata"].get("annotations", {})) == {"kubernetes.io/service-account.name"}
    )


# --- the platform overlay, as kustomize builds it ------------------------------------------


def kustomized(folder: Path) -> list[Object]:
    """The objects ``kubectl kustomize folder`` makes, for what these kustomizations use:
    resources (files, and folders with a kustomization of their own), the namespace, and
    JSON 6902 patches with a kind and name target. Checked once against kubectl's own
    build; kubectl is not needed here."""
    listing = kustomization(folder)
    objects: list[Object] = []
    for resource in listing["resources"]:
        path = folder / resource
        if path.is_dir():
            objects.extend(kustomized(path))
        else:
            objects.extend(load_objects(path))
    for obj in objects:
        obj["metadata"]["namespace"] = listing["namespace"]
    for patch in listing.get("patches", []):
        target = patch["target"]
        assert set(target) == {"kind", "name"}, target
        (index,) = [
            i
            for i, obj in enumerate(objects)
            if obj["kind"] == target["kind"] and obj["metadata"]["name"] == target["name"]
        ]
        objects[index] = json_patch(objects[index], yaml.safe_load(patch["patch"]))
    return objects


BUILT = kustomized(OVERLAY)


def built(kind: str, name: str) -> Object:
    (found,) = [o for o in BUILT if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_of(workload: Object) -> Object:
    spec = pod_spec(workload)
    assert spec is not None, f"a {workload['kind']} has no pods"
    return spec


def built_platform_container() -> Object:
    return first_container(built("Deployment", "llmops"))


def config_maps_the_platform_reads() -> dict[str, dict[str, str]]:
    """The ConfigMaps of the overlay's build and of infra/k8s/mlflow, by name."""
    mlflow = [obj for _, obj in Manifests(MLFLOW_MANIFESTS, recursive=True).objects]
    return {
        obj["metadata"]["name"]: obj.get("data", {})
        for obj in [*BUILT, *mlflow]
        if obj["kind"] == "ConfigMap"
    }


def platform_environment() -> dict[str, str]:
    """The LLMOPS_* variables the overlay's platform container sees, the Secrets' values
    stood in for."""
    container = built_platform_container()
    config_maps = config_maps_the_platform_reads()
    environment: dict[str, str] = {}
    for source in container["envFrom"]:
        environment.update(config_maps[source["configMapRef"]["name"]])
    for entry in container["env"]:
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            environment[entry["name"]] = f"stand-in for {ref['name']}/{ref['key']}"
    return {k: v for k, v in environment.items() if k.startswith("LLMOPS_")}


def argo_settings() -> ArgoSettings:
    # the platform's own reading of LLMOPS_ARGO__*, then the plugin's model, which refuses
    # unknown fields: a misspelt key fails here
    from_env = env_settings("argo", platform_environment())
    assert set(from_env) <= set(ArgoSettings.model_fields), set(from_env) - set(
        ArgoSettings.model_fields
    )
    return ArgoSettings.model_validate(from_env)


# --- Argo's published schema -----------------------------------------------------------------


@functools.cache
def argo_definitions() -> dict[str, Any]:
    """Argo's JSON schema definitions, strict (a field the schema does not know is refused:
    a typo fails here, where Argo might drop it unseen), with the IntOrString quirk of the
    upstream-schemas README corrected (declared a string, Argo takes integers there too)."""
    schema = json.loads(upstream_schema("argo-workflows-jsonschema.json").read_text())
    definitions: dict[str, Any] = copy.deepcopy(schema["definitions"])
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    for definition in definitions.values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return definitions


def argo_refusals(value: Any, definition: str) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": argo_definitions()}
    )
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(value)'}: {error.message}"
        for error in validator.iter_errors(value)
    ]


#: What workflowDefaults holds besides metadata.
WORKFLOW_SPEC = "io.argoproj.workflow.v1alpha1.WorkflowSpec"


def controller_config(key: str) -> Any:
    data: dict[str, str] = the("ConfigMap", "workflow-controller-configmap")["data"]
    return yaml.safe_load(data[key])


# --- the objects are valid Kubernetes objects ------------------------------------------------


def test_the_manifests_hold_argo_its_rbac_and_the_platforms_access() -> None:
    assert sorted((obj["kind"], obj["metadata"]["name"]) for _, obj in OBJECTS) == [
        ("ConfigMap", "workflow-controller-configmap"),
        ("Deployment", "argo-server"),
        ("Deployment", "workflow-controller"),
        ("NetworkPolicy", "argo-server"),
        ("NetworkPolicy", "deny-ingress"),
        ("PodDisruptionBudget", "argo-server"),
        ("Role", "argo-role"),
        ("Role", "argo-server-role"),
        ("Role", "llmops-pipeline"),
        ("Role", "llmops-workflows"),
        ("RoleBinding", "argo-binding"),
        ("RoleBinding", "argo-server-binding"),
        ("RoleBinding", "llmops-pipeline"),
        ("RoleBinding", "llmops-workflows"),
        ("Secret", "llmops-pipeline.service-account-token"),
        ("Service", "argo-server"),
        ("ServiceAccount", "argo"),
        ("ServiceAccount", "argo-server"),
        ("ServiceAccount", "llmops-pipeline"),
    ]
    # the spec's files: the controller, the server, the RBAC
    assert controller() in load_objects(MANIFESTS / "argo-workflows-controller.yaml")
    assert server() in load_objects(MANIFESTS / "argo-workflows-server.yaml")
    assert the("Role", "argo-role") in load_objects(MANIFESTS / "argo-rbac.yaml")


ALL_OBJECTS = [
    *((object_id(path, obj), obj) for path, obj in OBJECTS),
    *(
        (f"platform/{path.name}:{obj['kind']}/{obj['metadata']['name']}", obj)
        for path in manifest_files(OVERLAY)
        for obj in load_objects(path)
    ),
    *((f"built:{obj['kind']}/{obj['metadata']['name']}", obj) for obj in BUILT),
]


@pytest.mark.parametrize(("where", "obj"), ALL_OBJECTS, ids=[where for where, _ in ALL_OBJECTS])
def test_every_object_and_the_built_platform_is_one_the_api_server_accepts(
    where: str, obj: Object
) -> None:
    assert kubernetes_refusals(obj) == [], where


def test_the_kustomizations_list_exactly_the_manifests_in_their_folders() -> None:
    assert kustomization_faults(MANIFESTS, namespace="argo") == []
    assert [p.name for p in MANIFESTS.iterdir() if p.is_dir()] == ["platform"]
    overlay = kustomization(OVERLAY)
    assert set(overlay) == {"apiVersion", "kind", "namespace", "resources", "patches"}
    assert overlay["namespace"] == PLATFORM.namespace()
    assert overlay["resources"] == [
        "../../platform",
        *(p.name for p in manifest_files(OVERLAY)),
    ]
    assert not [p for p in OVERLAY.iterdir() if p.is_dir()]


def test_every_object_is_namespaced_and_left_to_its_kustomizations_namespace() -> None:
    for path, obj in OBJECTS:
        assert obj["kind"] not in CLUSTER_SCOPED, object_id(path, obj)
        assert "namespace" not in obj["metadata"], object_id(path, obj)
    for path in manifest_files(OVERLAY):
        for obj in load_objects(path):
            assert obj["kind"] not in CLUSTER_SCOPED, path
            assert "namespace" not in obj["metadata"], path


def test_every_object_carries_the_recommended_labels() -> None:
    for path, obj in [
        *OBJECTS,
        *((p, o) for p in manifest_files(OVERLAY) for o in load_objects(p)),
    ]:
        assert missing_labels(obj) == [], f"{path}: {obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmops"


# --- the Argo Server: client auth mode, TLS ---------------------------------------------------


def auth_mode_faults(container: Object) -> list[str]:
    """How an Argo Server container could come to accept a request without a token, or
    with another mode than ``client``: [] if it cannot."""
    faults = []
    args: list[str] = container.get("args", [])
    if args[:1] != ["server"] or container.get("command", ["argo"]) != ["argo"]:
        faults.append(f"not `argo server`: {container.get('command')} {args}")
    modes = flag_values(args, "--auth-mode")
    if modes != ["client"]:
        faults.append(f"--auth-mode given as {modes}, not once as client")
    # the argo CLI reads ARGO_<FLAG> for a flag not on the command line (viper)
    for entry in container.get("env", []):
        if entry["name"].startswith("ARGO_"):
            faults.append(f"{entry['name']} would set a flag")
    if container.get("envFrom"):
        faults.append("envFrom could set ARGO_* flags")
    return faults


def test_the_argo_server_requires_a_token_for_every_request() -> None:
    container = server_container()
    assert auth_mode_faults(container) == []
    assert "server" not in flag_values(container["args"], "--auth-mode")
    assert "sso" not in flag_values(container["args"], "--auth-mode")
    assert "--auth-mode=client" in container["args"]


def without_auth_mode(container: Object) -> None:
    container["args"] = [a for a in container["args"] if not a.startswith("--auth-mode")]


def server_mode_apart(container: Object) -> None:
    without_auth_mode(container)
    container["args"] += ["--auth-mode", "server"]


def server_mode_from_the_environment(container: Object) -> None:
    without_auth_mode(container)
    container.setdefault("env", []).append({"name": "ARGO_AUTH_MODE", "value": "server"})


AUTH_MISTAKES: dict[str, Callable[[Object], object]] = {
    "server mode": lambda c: c["args"].__setitem__(
        c["args"].index("--auth-mode=client"), "--auth-mode=server"
    ),
    "server mode, flag and value apart": server_mode_apart,
    "server mode beside client": lambda c: c["args"].append("--auth-mode=server"),
    "sso beside client": lambda c: c["args"].append("--auth-mode=sso"),
    "no flag, ARGO_AUTH_MODE=server": server_mode_from_the_environment,
    "no flag at all": without_auth_mode,
}


@pytest.mark.parametrize("mistake", list(AUTH_MISTAKES))
def test_an_argo_server_that_could_run_in_another_auth_mode_is_caught(mistake: str) -> None:
    container = copy.deepcopy(server_container())  # passes as it is (the test above)
    AUTH_MISTAKES[mistake](container)
    assert auth_mode_faults(container), f"{mistake} passed"


def test_the_argo_server_serves_tls_with_its_own_certificate_and_the_platform_verifies_it() -> None:
    container = server_container()
    args = container["args"]
    assert flag_values(args, "--secure") == ["true"]
    assert "-e" not in args
    assert flag_values(args, "--tls-certificate-secret-name") == ["argo-server-tls"]
    # the server reads that Secret with its own account, and no other Secret
    server_role = the("Role", "argo-server-role")
    (secret_rule,) = [r for r in server_role["rules"] if "secrets" in r["resources"]]
    assert secret_rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["argo-server-tls"],
        "verbs": ["get"],
    }
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    (port,) = the("Service", "argo-server")["spec"]["ports"]
    assert port["appProtocol"] == "https"
    settings = argo_settings()
    assert settings.server_url is not None
    assert urlsplit(settings.server_url).scheme == "https"
    assert settings.verify_ssl is True
    # the CA is a file of the ConfigMap llmops-argo-ca, mounted where the setting says
    assert settings.ca_cert is not None
    ca_cert = PurePosixPath(settings.ca_cert)
    (mount,) = [
        m
        for m in built_platform_container()["volumeMounts"]
        if m["mountPath"] == str(ca_cert.parent)
    ]
    assert mount["readOnly"] is True
    (volume,) = [
        v for v in pod_of(built("Deployment", "llmops"))["volumes"] if v["name"] == mount["name"]
    ]
    assert volume == {"name": mount["name"], "configMap": {"name": "llmops-argo-ca"}}
    readme = (MANIFESTS / "README.md").read_text()
    assert "kubectl -n argo create secret tls argo-server-tls" in readme
    assert f"create configmap llmops-argo-ca --from-file={ca_cert.name}=" in readme


# --- RBAC: the platform may do what the plugin does, nothing more --------------------------


def test_each_route_the_plugin_calls_is_one_of_the_argo_servers_published_api() -> None:
    swagger = json.loads(upstream_schema("argo-server-swagger.json").read_text())
    for route, (method, path, _) in ARGO_ROUTES.items():
        assert method in swagger["paths"].get(path, {}), f"{route}: {method} {path}"


def test_the_platforms_role_grants_exactly_the_verbs_behind_the_plugins_calls() -> None:
    role = the("Role", "llmops-workflows")
    for rule in role["rules"]:
        # no resourceNames, no nonResourceURLs, no wildcards
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        assert len(rule["verbs"]) == len(set(rule["verbs"])), rule
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
    needed = set(PIPELINE_SECRET_VERBS).union(*(verbs for _, _, verbs in ARGO_ROUTES.values()))
    assert rules_of(role) == needed
    # not the status, not the finalizers, no templates, nothing of Kubernetes' own beyond
    # the workflows' pods and the pipelines' Secrets
    assert {(group, resource) for group, resource, _ in rules_of(role)} == {
        ("argoproj.io", "workflows"),
        ("", "pods"),
        ("", "pods/log"),
        ("", "secrets"),
    }


def test_the_platforms_role_is_bound_to_its_service_account_in_the_platforms_namespace() -> None:
    binding = the("RoleBinding", "llmops-workflows")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "llmops-workflows",
    }
    platform_pod = pod_spec(PLATFORM.the("Deployment", "llmops"))
    assert platform_pod is not None
    account = platform_pod["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": PLATFORM.namespace()}
    ]
    # in-cluster access (LLMOPS_ARGO__IN_CLUSTER) reads the pod's mounted token
    assert platform_pod["automountServiceAccountToken"] is True
    assert argo_settings().in_cluster is True


def test_no_role_reaches_beyond_its_namespace_or_hands_out_rights() -> None:
    roles = {obj["metadata"]["name"]: obj for _, obj in OBJECTS if obj["kind"] == "Role"}
    accounts = {obj["metadata"]["name"] for _, obj in OBJECTS if obj["kind"] == "ServiceAccount"}
    for name, role in roles.items():
        for group, resource, verb in rules_of(role):
            assert "*" not in (group, resource, verb), name
            assert verb not in {"escalate", "bind", "impersonate"}, name
            assert group != "rbac.authorization.k8s.io", name
    bound = set()
    for _, binding in [(p, o) for p, o in OBJECTS if o["kind"] == "RoleBinding"]:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] in roles
        bound.add(binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", subject
            # the API server requires a ServiceAccount subject's namespace
            assert subject.get("namespace"), subject
            if subject["namespace"] == namespace():
                assert subject["name"] in accounts, subject
    assert bound == set(roles)


def test_the_argo_servers_own_account_can_change_nothing() -> None:
    # in client mode it makes no call for callers; were it ever run in server mode, an
    # anonymous caller would act as this account
    writes = {
        (group, resource, verb)
        for group, resource, verb in rules_of(the("Role", "argo-server-role"))
        if verb not in {"get", "list", "watch"}
    }
    assert writes == {("", "events", "create"), ("", "events", "patch")}


def test_a_stages_code_gets_no_token_and_the_executor_may_only_report_results() -> None:
    defaults = controller_config("workflowDefaults")
    assert set(defaults) == {"spec"}
    spec = defaults["spec"]
    assert spec["automountServiceAccountToken"] is False
    executor = spec["executor"]["serviceAccountName"]
    account = the("ServiceAccount", executor)
    assert account["automountServiceAccountToken"] is False
    # the controller mounts <account>.service-account-token into the executor's containers
    token = the("Secret", f"{executor}.service-account-token")
    assert is_requested_token(token)
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == executor
    (binding,) = [
        obj
        for _, obj in OBJECTS
        if obj["kind"] == "RoleBinding"
        and {"kind": "ServiceAccount", "name": executor, "namespace": namespace()}
        in obj["subjects"]
    ]
    assert rules_of(the("Role", binding["roleRef"]["name"])) == {
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
    }
    # the stages' own account is left to Argo's default, which the workflows do not mount
    assert argo_settings().service_account is None
    assert "serviceAccountName" not in spec


# --- the controller's configuration, by Argo's schema -------------------------------------


def test_the_controllers_configuration_is_what_argo_accepts() -> None:
    data = the("ConfigMap", "workflow-controller-configmap")["data"]
    assert set(data) == {"executor", "workflowDefaults"}
    assert argo_refusals(controller_config("workflowDefaults")["spec"], WORKFLOW_SPEC) == []
    executor = controller_config("executor")
    assert set(executor) == {"resources", "securityContext"}
    assert argo_refusals(executor["resources"], "io.k8s.api.core.v1.ResourceRequirements") == []
    assert argo_refusals(executor["securityContext"], "io.k8s.api.core.v1.SecurityContext") == []
    assert {"cpu", "memory"} <= set(executor["resources"]["limits"])
    assert executor["securityContext"]["allowPrivilegeEscalation"] is False
    assert executor["securityContext"]["runAsNonRoot"] is True
    assert executor["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # a finished workflow is deleted at last, not kept forever
    assert controller_config("workflowDefaults")["spec"]["ttlStrategy"] == {
        "secondsAfterCompletion": 7 * 24 * 3600
    }
    # the controller and the server read this ConfigMap
    assert flag_values(controller_container()["args"], "--configmap") == [
        "workflow-controller-configmap"
    ]


@pytest.mark.parametrize(
    ("mistake", "refusal"),
    [
        (
            {"ttlStrategy": {"secondsAfterCompletionn": 60}},
            "'secondsAfterCompletionn' was unexpected",
        ),
        ({"automountServiceAccountToken": "false"}, "'false' is not of type 'boolean'"),
        ({"executor": {"serviceAccount": "x"}}, "'serviceAccount' was unexpected"),
    ],
    ids=["a misspelt field", "a boolean as a string", "a field of another type"],
)
def test_the_schema_check_refuses_workflow_defaults_argo_would_not_read(
    mistake: dict[str, Any], refusal: str
) -> None:
    refusals = argo_refusals(mistake, WORKFLOW_SPEC)
    assert any(refusal in r for r in refusals), refusals


# --- images and pods ------------------------------------------------------------------------


def test_the_images_are_pinned_to_one_argo_version() -> None:
    images = {
        (object_id(path, obj), at): c["image"]
        for path, obj in OBJECTS
        for at, c in containers_of(obj)
    }
    assert sorted(images.values()) == [
        f"{SERVER_IMAGE}:v{VERSION}",
        f"{CONTROLLER_IMAGE}:v{VERSION}",
    ]
    assert flag_values(controller_container()["args"], "--executor-image") == [
        f"{EXECUTOR_IMAGE}:v{VERSION}"
    ]
    for path, obj in OBJECTS:
        for text in walk_strings(obj):
            assert ":latest" not in text, object_id(path, obj)
        for labels in label_sets(obj):
            if "app.kubernetes.io/version" in labels:
                assert labels["app.kubernetes.io/version"] == VERSION, object_id(path, obj)
    # the CRDs come from upstream at the same version
    readme = (MANIFESTS / "README.md").read_text()
    assert f"argo-workflows/manifests/base/crds/minimal?ref=v{VERSION}" in readme


@pytest.mark.parametrize("name", ["workflow-controller", "argo-server"])
def test_the_pods_run_without_privileges_and_with_bounded_resources(name: str) -> None:
    workload = the("Deployment", name)
    assert hardening_faults(workload) == []
    spec = pod_spec(workload)
    assert spec is not None
    # the argo CLI reads ARGO_* variables as flags, and a Service named argo-server would
    # put ARGO_SERVER_* into the pods
    assert spec["enableServiceLinks"] is False
    # both talk to the Kubernetes API with their own account
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] in {
        obj["metadata"]["name"] for _, obj in OBJECTS if obj["kind"] == "ServiceAccount"
    }
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for _, container in containers_of(workload):
        for mount in container.get("volumeMounts", []):
            assert "sizeLimit" in volumes[mount["name"]]["emptyDir"], mount


def test_every_probe_asks_a_port_the_container_listens_on() -> None:
    for workload in workloads():
        for _, container in containers_of(workload):
            ports = {p["containerPort"] for p in container["ports"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in container:
                    assert resolve_port(container, container[probe]["httpGet"]["port"]) in ports


def test_the_argo_server_is_highly_available_and_drained_one_pod_at_a_time() -> None:
    spec = server()["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = the("PodDisruptionBudget", "argo-server")["spec"]
    assert selects(budget["selector"]["matchLabels"], pod_labels(server()))
    assert budget["maxUnavailable"] < spec["replicas"]


# --- Services and the network ------------------------------------------------------------


def test_every_service_sends_traffic_to_the_pods_of_a_workload_in_the_manifests() -> None:
    services = [obj for _, obj in OBJECTS if obj["kind"] == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        (workload,) = [w for w in workloads() if selects(selector, pod_labels(w))]
        assert service_routing_faults(service, workload) == []
        container = first_container(workload)
        for port in service["spec"]["ports"]:
            assert isinstance(port["targetPort"], str), "a named container port"
            assert resolve_port(container, port["targetPort"]) == port["port"]


def test_only_the_platforms_pods_reach_the_argo_server_and_nothing_reaches_the_rest() -> None:
    policies = [obj for _, obj in OBJECTS if obj["kind"] == "NetworkPolicy"]
    deny = the("NetworkPolicy", "deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    allowing = [p for p in policies if p["spec"].get("ingress")]
    assert [p["metadata"]["name"] for p in allowing] == ["argo-server"]
    policy = allowing[0]["spec"]
    covered = [
        w for w in workloads() if selects(policy["podSelector"]["matchLabels"], pod_labels(w))
    ]
    assert covered == [server()]
    ((rule),) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"namespaceSelector", "podSelector"}, "one peer: both must match"
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": PLATFORM.namespace()}
    }
    platform = PLATFORM.the("Deployment", "llmops")
    assert selects(peer["podSelector"]["matchLabels"], pod_labels(platform))
    assert peer["podSelector"]["matchLabels"] == platform["spec"]["selector"]["matchLabels"]
    assert [(p["protocol"], p["port"]) for p in rule["ports"]] == [
        ("TCP", resolve_port(server_container(), "web"))
    ]


# --- how the platform is pointed at it ----------------------------------------------------


def test_the_overlay_turns_the_argo_plugin_on_beside_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("LLMOPS_")]:
        monkeypatch.delenv(name)
    environment = platform_environment()
    environment["LLMOPS_DATABASE_URL"] = "postgresql://db.example/llmops"
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = CoreSettings()
    assert {p.strip() for p in settings.plugins.split(",")} == {"kserve", "mlflow", "argo"}
    assert settings.default_enabled("argo")
    names = [source["configMapRef"]["name"] for source in built_platform_container()["envFrom"]]
    assert names == ["llmops", "llmops-mlflow", "llmops-argo"]
    # the overlay only adds to the platform's Deployment: without the ConfigMap, the token,
    # the CA's mount and volume it is infra/k8s/platform's
    added = copy.deepcopy(built("Deployment", "llmops"))
    container, pod = first_container(added), pod_of(added)
    assert container["envFrom"].pop() == {"configMapRef": {"name": "llmops-argo"}}
    assert container["env"].pop()["name"] == "LLMOPS_ARGO__TOKEN"
    assert container["volumeMounts"].pop()["name"] == pod["volumes"].pop()["name"] == "argo-ca"
    added["metadata"].pop("namespace")
    assert added == PLATFORM.the("Deployment", "llmops")


def test_the_argo_settings_point_at_the_argo_servers_service_and_the_workflows_namespace() -> None:
    config = built("ConfigMap", "llmops-argo")["data"]
    assert all(key.startswith("LLMOPS_ARGO__") for key in config)
    # no credentials in a ConfigMap
    assert not secret_fields(ArgoSettings) & set(env_settings("argo", config))
    settings = argo_settings()
    service = the("Service", "argo-server")
    (port,) = service["spec"]["ports"]
    assert settings.server_url == (
        f"https://{service['metadata']['name']}.{namespace()}.svc:{port['port']}"
    )
    assert settings.namespace == namespace()
    assert settings.ui_url is not None
    assert urlsplit(settings.ui_url).scheme == "https"
    # the pod's own account for the pipelines' Secrets, not a URL and a token of its own
    assert settings.in_cluster is True
    assert settings.kubernetes_api_url is None
    assert settings.kubernetes_token is None


def test_the_platforms_token_is_its_service_accounts_and_comes_from_a_secret() -> None:
    env = {entry["name"]: entry for entry in built_platform_container()["env"]}
    token = env["LLMOPS_ARGO__TOKEN"]
    assert set(token) == {"name", "valueFrom"}
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref.get("optional") is not True
    assert ref["key"] == "token"  # what Kubernetes writes into a service-account-token Secret
    secret = built("Secret", ref["name"])
    assert is_requested_token(secret)
    account = pod_of(built("Deployment", "llmops"))["serviceAccountName"]
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == account
    assert argo_settings().token is not None


def test_no_manifest_carries_a_secret_value() -> None:
    overlay = [(path, obj) for path in manifest_files(OVERLAY) for obj in load_objects(path)]
    for path, obj in [*OBJECTS, *overlay]:
        where = f"{path.name}:{obj['kind']}/{obj['metadata']['name']}"
        faults = credential_faults(obj, SECRET_LOOKING)
        if is_requested_token(obj):
            # Kubernetes fills it in: the manifest asks for a token, it holds none
            faults = [f for f in faults if not f.startswith("a Secret")]
        assert faults == [], where
        for _, container in containers_of(obj):
            assert all("secretRef" not in s for s in container.get("envFrom", [])), where
    for obj in BUILT:
        assert credential_faults(obj, SECRET_LOOKING) == [] or is_requested_token(obj)
    refs = {ref for obj in BUILT for ref in secret_key_refs(obj)}
    assert refs == {
        ("llmops", "database-url"),
        ("llmops", "secret-key"),
        ("llmops-argo-token", "token"),
    }


def test_the_readmes_say_how_to_install_it_and_point_at_each_other() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    for command in (
        "kubectl apply -k infra/k8s/argo\n",
        "kubectl apply -k infra/k8s/argo/platform\n",
        "--auth-mode=client",
    ):
        assert command in readme, command
    assert "../shared" not in readme
    platform_readme = (PLATFORM_MANIFESTS / "README.md").read_text()
    assert "../argo/README.md" in platform_readme
    assert "kubectl apply -k infra/k8s/argo/platform" in platform_readme
