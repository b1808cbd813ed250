"""Load and check Kubernetes manifests in tests.

A test of a folder of manifests reads its objects (:class:`Manifests`), what their pods run
(:func:`pod_spec`, :func:`containers_of`) and asks whether the API server would take them:
:func:`kubernetes_refusals` validates an object against the Kubernetes JSON schemas that
``kubernetes-validate`` ships, in strict mode (unknown fields refused, types and required
fields checked), for the oldest Kubernetes the manifests are written for and the newest the
package knows, plus the API server rules that those schemas leave out. The schemas are
inside the package: no network, no cluster. ``kubernetes-validate`` is imported only there,
so this module imports without it.

The checks return what is wrong, ``[]`` when nothing is, so that a failed test shows every
fault at once::

    platform = Manifests(Path("infra/k8s/platform"))
    for path, obj in platform.objects:
        assert kubernetes_refusals(obj) == [], platform.object_id(path, obj)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "OLDEST_KUBERNETES",
    "RECOMMENDED_LABELS",
    "URL_WITH_PASSWORD",
    "KubernetesObject",
    "Manifests",
    "containers_of",
    "credential_faults",
    "first_container",
    "hardening_faults",
    "kubernetes_refusals",
    "kustomization",
    "kustomization_faults",
    "label_sets",
    "load_objects",
    "manifest_files",
    "missing_labels",
    "pod_spec",
    "pod_template",
    "resolve_port",
    "secret_key_refs",
    "secrets_created_in",
    "service_routing_faults",
    "walk_strings",
]

#: An object of a manifest as YAML loads it.
KubernetesObject = dict[str, Any]

#: The oldest Kubernetes the project's manifests are written for.
OLDEST_KUBERNETES = "1.30.0"

#: https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)

#: scheme://user:password@host
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)

_WITH_POD_TEMPLATE = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
_KUSTOMIZATION = "kustomization.yaml"
_RUNTIME_DEFAULT = {"type": "RuntimeDefault"}
_CONTAINER_SECURITY: dict[str, object] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": _RUNTIME_DEFAULT,
}


# --- loading ----------------------------------------------------------------------------


def load_objects(path: Path) -> list[KubernetesObject]:
    """The objects of a YAML file, empty documents left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The ``*.yaml`` files in ``folder`` (and below it when ``recursive``), sorted, but
    not the kustomizations."""
    found = folder.rglob("*.yaml") if recursive else folder.glob("*.yaml")
    return sorted(p for p in found if p.name != _KUSTOMIZATION)


def kustomization(folder: Path) -> KubernetesObject:
    """``folder``'s ``kustomization.yaml``."""
    loaded: KubernetesObject = yaml.safe_load((folder / _KUSTOMIZATION).read_text())
    return loaded


class Manifests:
    """The objects in the manifest files of a folder (and its subfolders when
    ``recursive``), loaded once, each with the file it is in."""

    def __init__(self, folder: Path, *, recursive: bool = False) -> None:
        self.folder = folder
        self.recursive = recursive
        self.objects: list[tuple[Path, KubernetesObject]] = [
            (path, obj) for path in self.files() for obj in load_objects(path)
        ]

    def files(self) -> list[Path]:
        return manifest_files(self.folder, recursive=self.recursive)

    def object_id(self, path: Path, obj: KubernetesObject) -> str:
        """``file:Kind/name``, the file relative to the folder: for messages and test ids."""
        name = obj.get("metadata", {}).get("name")
        return f"{path.relative_to(self.folder)}:{obj.get('kind')}/{name}"

    def object_ids(self) -> list[str]:
        """:meth:`object_id` of each of :attr:`objects`, in their order."""
        return [self.object_id(path, obj) for path, obj in self.objects]

    def the(self, kind: str, name: str) -> KubernetesObject:
        """The one object of ``kind`` named ``name``.

        :raises AssertionError: when there is none, or more than one.
        """
        found = [
            obj
            for _, obj in self.objects
            if obj["kind"] == kind and obj["metadata"]["name"] == name
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {name}, found {len(found)}")
        return found[0]

    def kustomization(self) -> KubernetesObject:
        """The folder's own ``kustomization.yaml``."""
        return kustomization(self.folder)

    def namespace(self) -> str:
        """The namespace the folder's kustomization puts the objects in."""
        name: str = self.kustomization()["namespace"]
        return name


def kustomization_faults(folder: Path, *, namespace: str) -> list[str]:
    """How ``folder``'s kustomization differs from one that puts exactly the manifests
    beside it, each once, in ``namespace`` and does nothing else; [] if it does not."""
    listed = kustomization(folder)
    faults = []
    if listed.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        faults.append(f"apiVersion: {listed.get('apiVersion')!r}")
    if listed.get("kind") != "Kustomization":
        faults.append(f"kind: {listed.get('kind')!r}")
    extra = set(listed) - {"apiVersion", "kind", "namespace", "resources"}
    if extra:
        faults.append(f"fields beyond namespace and resources: {sorted(extra)}")
    if listed.get("namespace") != namespace:
        faults.append(f"namespace: {listed.get('namespace')!r}, not {namespace!r}")
    resources = listed.get("resources") or []
    if len(resources) != len(set(resources)):
        faults.append("a resource is listed twice")
    in_folder = [p.name for p in manifest_files(folder)]
    if sorted(resources) != in_folder:
        faults.append(f"resources: {sorted(resources)}, the folder holds {in_folder}")
    faults.extend(f"{p.name}: use .yaml" for p in sorted(folder.glob("*.yml")))
    return faults


# --- what the pods run ------------------------------------------------------------------


def pod_template(obj: KubernetesObject) -> KubernetesObject | None:
    """The pod a workload makes (its template's metadata and spec; a Pod itself), or None
    for objects without pods."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        template: KubernetesObject = obj["spec"]["jobTemplate"]["spec"]["template"]
        return template
    if obj["kind"] in _WITH_POD_TEMPLATE:
        template = obj["spec"]["template"]
        return template
    return None


def pod_spec(obj: KubernetesObject) -> KubernetesObject | None:
    """The pod template's spec of a workload, or None for objects without pods."""
    template = pod_template(obj)
    if template is None:
        return None
    spec: KubernetesObject = template["spec"]
    return spec


def containers_of(obj: KubernetesObject) -> Iterator[tuple[str, KubernetesObject]]:
    """Each container of a workload's pods, init containers first, with where it is
    (``containers[0]``); none for objects without pods."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            yield f"{field}[{index}]", container


def first_container(workload: KubernetesObject) -> KubernetesObject:
    """The first of a workload's (not init) containers: its main one."""
    spec = pod_spec(workload)
    if spec is None:
        raise AssertionError(f"a {workload['kind']} has no pods")
    found: KubernetesObject = spec["containers"][0]
    return found


def label_sets(obj: KubernetesObject) -> list[dict[str, str]]:
    """The labels of ``obj`` and, for a workload, those of the pods it makes."""
    sets = [obj["metadata"].get("labels", {})]
    template = pod_template(obj)
    if template is not None and template is not obj:
        sets.append(template.get("metadata", {}).get("labels", {}))
    return sets


def missing_labels(obj: KubernetesObject, labels: Iterable[str] = RECOMMENDED_LABELS) -> list[str]:
    """Which of ``labels`` the object lacks (or leaves empty)."""
    present = obj["metadata"].get("labels", {})
    return [label for label in labels if not present.get(label)]


def hardening_faults(workload: KubernetesObject) -> list[str]:
    """How a workload's pods fall short of running unprivileged with bounded resources:
    non-root (a user id above 0), the runtime's seccomp profile, and in each container no
    privilege escalation, no capabilities, a read-only root filesystem, requests and limits
    of CPU and memory; [] if they do not."""
    spec = pod_spec(workload)
    if spec is None:
        return [f"a {workload['kind']} has no pods"]
    faults = []
    pod = spec.get("securityContext", {})
    if pod.get("runAsNonRoot") is not True:
        faults.append("pod: runAsNonRoot is not true")
    if not isinstance(pod.get("runAsUser"), int) or pod["runAsUser"] <= 0:
        faults.append(f"pod: runAsUser {pod.get('runAsUser')!r}")
    if pod.get("seccompProfile") != _RUNTIME_DEFAULT:
        faults.append(f"pod: seccompProfile {pod.get('seccompProfile')!r}")
    for where, container in containers_of(workload):
        security = container.get("securityContext", {})
        for field, wanted in _CONTAINER_SECURITY.items():
            if security.get(field) != wanted:
                faults.append(f"{where}: {field} {security.get(field)!r}, not {wanted!r}")
        for bound in ("requests", "limits"):
            unset = {"cpu", "memory"} - set(container.get("resources", {}).get(bound, {}))
            faults.extend(f"{where}: no {bound}.{name}" for name in sorted(unset))
    return faults


def service_routing_faults(service: KubernetesObject, workload: KubernetesObject) -> list[str]:
    """How a ClusterIP ``service`` fails to send TCP traffic to ``workload``'s pods: its
    selector is not the workload's own or misses the pods' labels, it is of another type,
    a port is of another protocol; [] if it does not."""
    spec = service["spec"]
    selector = spec.get("selector", {})
    faults = []
    if selector != workload["spec"]["selector"]["matchLabels"]:
        faults.append(f"selector {selector} is not the {workload['kind']}'s matchLabels")
    template = pod_template(workload)
    pod_labels = {} if template is None else template["metadata"]["labels"]
    if not selector.items() <= pod_labels.items():
        faults.append(f"selector {selector} misses the pods' labels {pod_labels}")
    if spec.get("type") != "ClusterIP":
        faults.append(f"type {spec.get('type')!r}, not 'ClusterIP'")
    for port in spec.get("ports", []):
        if port.get("protocol", "TCP") != "TCP":
            faults.append(f"port {port.get('port')}: protocol {port['protocol']}")
    return faults


def resolve_port(container: KubernetesObject, port: int | str) -> int:
    """The number of ``port``: itself, or the container's port of that name.

    :raises AssertionError: when the container has no port of that name.
    """
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    if len(numbers) != 1:
        raise AssertionError(f"no container port named {port!r}")
    number: int = numbers[0]
    return number


def walk_strings(value: Any) -> Iterator[str]:
    """Every string in a loaded YAML value, mapping keys included, depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


# --- secrets ----------------------------------------------------------------------------


def secret_key_refs(obj: KubernetesObject) -> set[tuple[str, str]]:
    """``(Secret, key)`` of each ``secretKeyRef`` in the environment of ``obj``'s
    containers."""
    return {
        (entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
        for _, container in containers_of(obj)
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }


def credential_faults(obj: KubernetesObject, secret_looking: re.Pattern[str]) -> list[str]:
    """Where ``obj`` holds a credential in the open: it is a Secret (one is created by
    hand, never kept with the manifests), a ConfigMap key or a container's literal
    environment variable is named like ``secret_looking``, a string is a URL with a
    password; [] if nowhere."""
    faults = []
    if obj["kind"] == "Secret":
        faults.append("a Secret: it is created by hand, not kept with the manifests")
    if obj["kind"] == "ConfigMap":
        faults.extend(
            f"ConfigMap key {key} belongs in a Secret"
            for key in obj.get("data", {})
            if secret_looking.search(key)
        )
    for where, container in containers_of(obj):
        faults.extend(
            f"{where}: {entry['name']} is a literal"
            for entry in container.get("env", [])
            if secret_looking.search(entry["name"]) and "value" in entry
        )
    if any(URL_WITH_PASSWORD.search(text) for text in walk_strings(obj)):
        faults.append("a URL with a password")
    return faults


_CREATE_SECRET = re.compile(
    r"create secret generic ([\w-]+)((?:\s*\\\n\s*--from-(?:literal|file)=\S+)+)"
)
_SECRET_KEY = re.compile(r"--from-(?:literal|file)=([\w.-]+)=")


def secrets_created_in(text: str) -> set[tuple[str, str]]:
    """``(Secret, key)`` of each key that the ``kubectl create secret generic`` commands in
    ``text`` (a README) set, one ``--from-literal=key=`` or ``--from-file=key=`` a line."""
    return {
        (name, key)
        for name, sources in _CREATE_SECRET.findall(text)
        for key in _SECRET_KEY.findall(sources)
    }


# --- the validator ----------------------------------------------------------------------


def kubernetes_refusals(obj: KubernetesObject, versions: Iterable[str] | None = None) -> list[str]:
    """Why the API server, with strict field validation, would refuse ``obj``; [] if not.

    :param versions: the Kubernetes versions whose schemas it is checked against; by
        default :data:`OLDEST_KUBERNETES` and the newest that ``kubernetes-validate`` knows.
    """
    import kubernetes_validate  # type: ignore[import-untyped]

    if versions is None:
        versions = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
    missing = [field for field in ("apiVersion", "kind") if not isinstance(obj.get(field), str)]
    if missing:
        return [f"{field}: Required value" for field in missing]
    refusals = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "(object)"
            refusals.append(f"Kubernetes {exc.version}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            refusals.append(exc.message)
    # The API server's own validation, beyond the published schema: there, metadata.name
    # is optional (generateName) and so is a container's image (for workload templates
    # that an admission controller completes), but a pod without them is refused.
    if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
        refusals.append("metadata.name: Required value")
    for where, container in containers_of(obj):
        if not isinstance(container, dict) or not container.get("image"):
            refusals.append(f"{where}.image: Required value")
    return refusals
