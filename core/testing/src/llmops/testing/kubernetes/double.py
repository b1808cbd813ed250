"""The Kubernetes API double: kube-apiserver's REST API for InferenceServices, KServe's
controller in a background thread, and one ingress per InferenceService. See the package's
docstring for what is modelled."""

from __future__ import annotations

import base64
import copy
import functools
import json
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from llmops.testing.doubles import RecordedRequest, Reply, ToolDouble, route
from llmops.testing.kubernetes import api_errors as errors
from llmops.testing.kubernetes.api_errors import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ApiStatusError,
    Cause,
    status_reply,
)
from llmops.testing.kubernetes.ingress import (
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    IngressApp,
    IngressServer,
    MeshAnswer,
    Upstream,
)
from llmops.testing.kubernetes.patching import (
    JsonPatchError,
    field_matcher,
    json_patch,
    label_matcher,
    merge_patch,
)
from llmops.testing.kubernetes.revisions import (
    LOADING,
    PENDING,
    READY,
    RETIRED,
    Revision,
    ServiceState,
    reconcile_status,
    runtime_problem,
    served_model_name,
    template,
    timestamp,
)
from llmops.testing.kubernetes.schema import admit, inference_service_schema

#: (model folder, served model name) -> an ASGI app serving OpenAI's routes under /v1
#: and /health: what a revision runs.
PredictorFactory = Callable[[Path, str], Any]

FINALIZER = "inferenceservice.finalizers"
#: How long KServe's controller takes to clean up after a delete before it removes its
#: finalizer (and the API server the object).
FINALIZE_SECONDS = 0.2
RESOURCE_PATH = f"/apis/{GROUP}/{VERSION}"
COLLECTION = RESOURCE_PATH + "/namespaces/{namespace}/inferenceservices"
ITEM = COLLECTION + "/{name}"
STATUS = ITEM + "/status"
ALL_NAMESPACES = RESOURCE_PATH + "/inferenceservices"
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_PATCH_TYPES = (_JSON_PATCH, _MERGE_PATCH, "application/apply-patch+yaml")
_BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_SERVER_FIELDS = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "namespace",
)
_DEFAULT_FAILURE = "Back-off restarting failed container"
#: The Go type kube-apiserver decodes apiVersion and kind into, as its messages print it.
_TYPE_META = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)


def runtime_predictor(folder: Path, served_model_name: str) -> Any:
    """The default predictor: llmops' model runtime (loaded and warmed up here, in the
    revision's loader thread) behind its OpenAI-compatible app."""
    from llmops.model_runtime.app import create_app
    from llmops.model_runtime.engine import Engine
    from llmops.model_runtime.loader import load_model

    engine = Engine(load_model(folder))
    engine.warm_up()
    return create_app(engine, served_model_name=served_model_name)


class _RevisionFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _api(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Authenticate, then answer ApiStatusError as a Kubernetes Status."""

    @functools.wraps(handler)
    def answer(self: KubernetesApiDouble, request: RecordedRequest, **params: str) -> Any:
        try:
            self._authenticate(request)
            return handler(self, request, **params)
        except ApiStatusError as error:
            return error.reply()

    return answer


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "object"


def _first(request: RecordedRequest, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


class KubernetesApiDouble(ToolDouble):
    """kube-apiserver with KServe installed, for InferenceServices; see the package's
    docstring. ``storage`` maps PVC claim names to local folders (``pvc://claim/path``),
    ``predictor`` builds a revision's app (default: llmops' model runtime)."""

    #: Route patterns, for :meth:`inject` (a fault on one verb of one path).
    COLLECTION_ROUTE: ClassVar[str] = COLLECTION
    ITEM_ROUTE: ClassVar[str] = ITEM
    STATUS_ROUTE: ClassVar[str] = STATUS

    def __init__(
        self,
        *,
        namespaces: Iterable[str] = ("default",),
        token: str | None = None,
        storage: Mapping[str, Path] | None = None,
        predictor: PredictorFactory | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.namespaces: tuple[str, ...] = tuple(namespaces)
        self.token = token
        self.storage: dict[str, Path] = {k: Path(v) for k, v in (storage or {}).items()}
        self._predictor: PredictorFactory = predictor or runtime_predictor
        #: the one lock around all state; the controller waits on it for changes
        self._lock = threading.Condition(threading.RLock())
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._services: dict[tuple[str, str], ServiceState] = {}
        self._resource_version = 0
        self._ready_delay = 0.0
        self._fail_next: tuple[str, str] | None = None
        self._fail_count: int | None = None
        self._dirty = False
        self._controller: threading.Thread | None = None
        self._controller_stopping = False
        self._loaders: set[threading.Thread] = set()
        self._api_port: int | None = None
        self._controller_errors: list[str] = []
        #: ingresses of services replaced before the controller saw them go, to stop
        self._orphans: list[IngressServer] = []
        self._namespace_uids = {ns: str(uuid.uuid4()) for ns in self.namespaces}
        self._started_at = timestamp()
        self._add_refusals()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> KubernetesApiDouble:
        inference_service_schema()  # parse the CRD now, not in the first request
        super().start()
        self._api_port = super().port
        with self._lock:
            self._controller_stopping = False
        self._controller = threading.Thread(
            target=self._control_loop, name=f"kserve-controller-{self._api_port}", daemon=True
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._controller_stopping = True
            self._lock.notify_all()
        if self._controller is not None:
            self._controller.join()
            self._controller = None
        self._stop_everything()
        super().stop()

    @property
    def port(self) -> int:
        """The API server's port (also while :meth:`api_down` holds it down)."""
        if not self.running and self._api_port is not None:
            return self._api_port
        return super().port

    def api_down(self) -> None:
        """The API server stops answering (connections are refused on its port); the
        controller and the ingresses go on, and the state is kept."""
        if self.running:
            self._api_port = super().port
            super().stop()

    def api_up(self) -> None:
        """The API server comes back on the same port, with its state."""
        if not self.running and self._api_port is not None:
            self._requested_port = self._api_port  # ToolDouble.start binds this port
            super().start()

    def reset_state(self) -> None:
        """Delete every object at once (their predictors and ingresses stop), bring the
        API server up, and forget the controller behaviours set by tests."""
        self.api_up()
        with self._lock:
            self._objects.clear()
            self._controller_errors.clear()
            self._ready_delay = 0.0
            self._fail_next = None
            self._fail_count = None
            self._dirty = True
            self._lock.notify_all()
        self._stop_everything()

    def _stop_everything(self) -> None:
        with self._lock:
            services = list(self._services.values())
            self._services.clear()
            ingresses = [self._retire(s) for s in services] + self._orphans
            self._orphans = []
            loaders = list(self._loaders)
        for ingress in ingresses:
            if ingress is not None:
                ingress.stop()
        for loader in loaders:
            loader.join()

    # -- objects ------------------------------------------------------------------------

    def get_object(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """The stored InferenceService (a copy), or None."""
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, namespace: str = "default") -> list[dict[str, Any]]:
        """The stored InferenceServices of ``namespace`` (copies), by name."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects.items())
                if ns == namespace
            ]

    def revisions(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """The Knative revisions of an InferenceService's predictor, oldest first:
        ``name``, ``state`` (Pending, Loading, Ready, Failed, Retired), ``reason``,
        ``message``, ``servedModelName``, ``storageUri``."""
        with self._lock:
            state = self._services.get((namespace, name))
            return [
                {
                    "name": r.name,
                    "state": r.state,
                    "reason": r.reason,
                    "message": r.message,
                    "servedModelName": r.served_name,
                    "storageUri": r.storage_uri,
                }
                for r in (state.revisions if state is not None else [])
            ]

    def wait_for_ready(
        self, name: str, namespace: str = "default", timeout: float = 30.0
    ) -> dict[str, Any]:
        """The InferenceService once its ``Ready`` condition is True for its current
        generation (a copy).

        :raises AssertionError: after ``timeout`` seconds, with the conditions seen.
        """
        found: list[dict[str, Any]] = []

        def ready() -> bool:
            obj = self._objects.get((namespace, name))
            if obj is None:
                return False
            status = obj.get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            if (
                status.get("observedGeneration") == obj["metadata"].get("generation")
                and conditions.get("Ready", {}).get("status") == "True"
            ):
                found[:] = [copy.deepcopy(obj)]
                return True
            return False

        with self._lock:
            if not self._lock.wait_for(ready, timeout=timeout):
                obj = self._objects.get((namespace, name))
                conditions = (obj or {}).get("status", {}).get("conditions")
                raise AssertionError(
                    f"InferenceService {namespace}/{name} was not Ready within {timeout:g} s; "
                    f"conditions: {json.dumps(conditions)}"
                )
        return found[0]

    # -- controller behaviour -----------------------------------------------------------

    def set_ready_delay(self, seconds: float) -> None:
        """A revision takes ``seconds`` from its creation to start loading its model (as
        a pod takes to start); revisions still waiting take the new delay too."""
        with self._lock:
            self._ready_delay = max(0.0, seconds)
            for state in self._services.values():
                for revision in state.revisions:
                    if revision.state == PENDING:
                        revision.due = revision.created + self._ready_delay
            self._changed_state()

    def fail_next_revisions(
        self,
        reason: str | None = "ContainerCrashLooping",
        message: str = _DEFAULT_FAILURE,
        *,
        count: int | None = None,
    ) -> None:
        """Every revision created from now on fails (``count`` of them, or all until
        ``fail_next_revisions(None)``): it never becomes ready, and KServe reports
        ``Revision "<name>" failed with message: <message>.``. ``reason`` is the
        revision's own (see :meth:`revisions`)."""
        with self._lock:
            self._fail_next = None if reason is None else (reason, message)
            self._fail_count = count

    def fail_revision(
        self,
        name: str,
        namespace: str = "default",
        *,
        reason: str = "ContainerCrashLooping",
        message: str = _DEFAULT_FAILURE,
    ) -> None:
        """The latest revision of the InferenceService fails now (one still starting
        never becomes ready; a ready one crashes and its traffic gets 503s)."""
        with self._lock:
            self._state(name, namespace).fail_latest = (reason, message)
            self._changed_state()

    def predictor_down(self, name: str, namespace: str = "default", down: bool = True) -> None:
        """The predictor stops answering (every route: 503 ``no healthy upstream``)
        while its conditions stay as they are: kserve#1859."""
        with self._lock:
            self._state(name, namespace).down = down

    def kubeconfig(
        self, path: Path, *, namespace: str = "default", context: str = "double"
    ) -> Path:
        """Write a kubeconfig for this API server (and its token) to ``path``."""
        import yaml

        user: dict[str, Any] = {} if self.token is None else {"token": self.token}
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": user}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def _state(self, name: str, namespace: str) -> ServiceState:
        state = self._services.get((namespace, name))
        if state is None:
            raise LookupError(f"no InferenceService {namespace}/{name} in the double")
        return state

    def _changed_state(self) -> None:
        self._dirty = True
        self._lock.notify_all()

    # -- HTTP: authentication and fallbacks ---------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> None:
        if self.token is None:
            return
        if request.headers.get("authorization", "") != f"Bearer {self.token}":
            raise errors.unauthorized()

    def not_found(self, request: RecordedRequest) -> Reply:
        try:
            self._authenticate(request)
        except ApiStatusError as error:
            return error.reply()
        return errors.path_not_found().reply()

    def _add_refusals(self) -> None:
        """405 for the methods a known path does not take."""
        allowed = {
            "/version": {"GET"},
            "/version/": {"GET"},
            "/api": {"GET"},
            "/api/v1": {"GET"},
            "/api/v1/namespaces": {"GET"},
            "/api/v1/namespaces/{namespace}": {"GET"},
            "/apis": {"GET"},
            f"/apis/{GROUP}": {"GET"},
            RESOURCE_PATH: {"GET"},
            ALL_NAMESPACES: {"GET"},
            COLLECTION: {"GET", "POST", "DELETE"},
            ITEM: {"GET", "PUT", "PATCH", "DELETE"},
            STATUS: {"GET", "PUT", "PATCH"},
        }
        for pattern, methods in allowed.items():
            for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - methods:
                self.add_route(method, pattern, self._refuse)

    @_api
    def _refuse(self, request: RecordedRequest, **params: str) -> Reply:
        raise errors.method_not_allowed()

    def _reply(self, value: Any, status: int = 200, warnings: Iterable[str] = ()) -> Reply:
        headers = {"Audit-Id": str(uuid.uuid4()), "Cache-Control": "no-cache, private"}
        texts = [f"299 - {json.dumps(w)}" for w in warnings]
        if texts:
            headers["Warning"] = ", ".join(texts)
        return status_reply(value, status, headers)

    # -- HTTP: discovery ----------------------------------------------------------------

    @route("GET", "/version")
    @route("GET", "/version/")
    @_api
    def _version(self, request: RecordedRequest) -> Reply:
        return self._reply(
            {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    @route("GET", "/api")
    @_api
    def _core_versions(self, request: RecordedRequest) -> Reply:
        return self._reply(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                ],
            }
        )

    @route("GET", "/api/v1")
    @_api
    def _core_resources(self, request: RecordedRequest) -> Reply:
        return self._reply(
            {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                        "shortNames": ["ns"],
                    }
                ],
            }
        )

    def _namespace(self, name: str) -> dict[str, Any]:
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": self._namespace_uids[name],
                "resourceVersion": "1",
                "creationTimestamp": self._started_at,
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    @route("GET", "/api/v1/namespaces")
    @_api
    def _list_namespaces(self, request: RecordedRequest) -> Reply:
        items = [self._namespace(ns) for ns in sorted(self.namespaces)]
        for item in items:
            del item["kind"], item["apiVersion"]
        return self._reply(
            {
                "kind": "NamespaceList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }
        )

    @route("GET", "/api/v1/namespaces/{namespace}")
    @_api
    def _read_namespace(self, request: RecordedRequest, namespace: str) -> Reply:
        if namespace not in self.namespaces:
            raise errors.namespace_not_found(namespace)
        return self._reply(self._namespace(namespace))

    def _group(self) -> dict[str, Any]:
        version = {"groupVersion": API_VERSION, "version": VERSION}
        return {"name": GROUP, "versions": [version], "preferredVersion": version}

    @route("GET", "/apis")
    @_api
    def _groups(self, request: RecordedRequest) -> Reply:
        return self._reply({"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group()]})

    @route("GET", f"/apis/{GROUP}")
    @_api
    def _group_info(self, request: RecordedRequest) -> Reply:
        return self._reply({"kind": "APIGroup", "apiVersion": "v1", **self._group()})

    @route("GET", RESOURCE_PATH)
    @_api
    def _resources(self, request: RecordedRequest) -> Reply:
        names = inference_service_schema().names
        return self._reply(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": API_VERSION,
                "resources": [
                    {
                        "name": PLURAL,
                        "singularName": names.get("singular", "inferenceservice"),
                        "namespaced": True,
                        "kind": KIND,
                        "verbs": [
                            "delete",
                            "deletecollection",
                            "get",
                            "list",
                            "patch",
                            "create",
                            "update",
                            "watch",
                        ],
                        "shortNames": list(names.get("shortNames", ["isvc"])),
                        "storageVersionHash": "kWbmdS0Tkx0=",
                    },
                    {
                        "name": f"{PLURAL}/status",
                        "singularName": "",
                        "namespaced": True,
                        "kind": KIND,
                        "verbs": ["get", "patch", "update"],
                    },
                ],
            }
        )

    # -- HTTP: InferenceServices --------------------------------------------------------

    @route("GET", ALL_NAMESPACES)
    @_api
    def _list_everywhere(self, request: RecordedRequest) -> Reply:
        return self._list(request, None)

    @route("GET", COLLECTION)
    @_api
    def _list_namespaced(self, request: RecordedRequest, namespace: str) -> Reply:
        return self._list(request, namespace)

    @route("POST", COLLECTION)
    @_api
    def _create(self, request: RecordedRequest, namespace: str) -> Reply:
        body = self._body(request)
        validation = self._field_validation(request)
        dry_run = self._dry_run(request)
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            if metadata.get("resourceVersion"):
                raise ApiStatusError(
                    500,
                    "InternalError",
                    "resourceVersion should not be set on objects to be created",
                )
            if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
                prefix = metadata["generateName"][:58]
                suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
                metadata["name"] = prefix + suffix
        if namespace not in self.namespaces:
            raise errors.namespace_not_found(namespace)
        body.pop("status", None)  # the status subresource: create ignores it
        if isinstance(metadata, dict):
            for key in (*_SERVER_FIELDS, "selfLink", "managedFields"):
                metadata.pop(key, None)
            metadata["namespace"] = namespace
            metadata["generation"] = 1
        admission = admit(body, field_validation=validation)
        obj = admission.obj
        name = obj["metadata"]["name"]
        with self._lock:
            existing = self._objects.get((namespace, name))
            if existing is not None:
                raise errors.already_exists(
                    name, being_deleted=bool(existing["metadata"].get("deletionTimestamp"))
                )
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["creationTimestamp"] = timestamp()
            if dry_run:
                return self._reply(obj, 201, admission.warnings)
            stored = self._commit((namespace, name), None, obj)
            return self._reply(stored, 201, admission.warnings)

    @route("DELETE", COLLECTION)
    @_api
    def _delete_collection(self, request: RecordedRequest, namespace: str) -> Reply:
        labels = label_matcher(_first(request, "labelSelector"))
        fields = field_matcher(_first(request, "fieldSelector"))
        dry_run = self._dry_run(request)
        with self._lock:
            keys = [
                key
                for key, obj in sorted(self._objects.items())
                if key[0] == namespace
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
            ]
            items = [self._delete_locked(key, {}, dry_run) for key in keys]
            return self._reply(self._list_document(items, None))

    @route("GET", ITEM)
    @_api
    def _read(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        with self._lock:
            return self._reply(self._current(namespace, name))

    @route("PUT", ITEM)
    @_api
    def _replace(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        return self._write_whole(request, namespace, name, status_only=False)

    @route("PATCH", ITEM)
    @_api
    def _patch(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        return self._patch_object(request, namespace, name, status_only=False)

    @route("DELETE", ITEM)
    @_api
    def _delete(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        options = request.json if isinstance(request.json, dict) else {}
        dry_run = self._dry_run(request)
        with self._lock:
            self._current(namespace, name)
            return self._reply(self._delete_locked((namespace, name), options, dry_run))

    @route("GET", STATUS)
    @_api
    def _read_status(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        with self._lock:
            return self._reply(self._current(namespace, name))

    @route("PUT", STATUS)
    @_api
    def _replace_status(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        return self._write_whole(request, namespace, name, status_only=True)

    @route("PATCH", STATUS)
    @_api
    def _patch_status(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        return self._patch_object(request, namespace, name, status_only=True)

    # -- the verbs ----------------------------------------------------------------------

    def _list(self, request: RecordedRequest, namespace: str | None) -> Reply:
        if _first(request, "watch") in ("true", "1"):
            raise errors.method_not_allowed("watch is not modelled by the Kubernetes API double")
        labels = label_matcher(_first(request, "labelSelector"))
        fields = field_matcher(_first(request, "fieldSelector"))
        limit_text = _first(request, "limit")
        limit = int(limit_text) if limit_text and limit_text.isdigit() else 0
        start = self._continue_from(_first(request, "continue"))
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects.items())
                if (namespace is None or key[0] == namespace)
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
                and (start is None or key > start)
            ]
            token = None
            remaining = 0
            if limit and len(items) > limit:
                remaining = len(items) - limit
                items = items[:limit]
                last = items[-1]["metadata"]
                token = base64.urlsafe_b64encode(
                    json.dumps([last["namespace"], last["name"]]).encode()
                ).decode()
            document = self._list_document(items, token)
            if remaining:
                document["metadata"]["remainingItemCount"] = remaining
            return self._reply(document)

    def _continue_from(self, token: str | None) -> tuple[str, str] | None:
        if not token:
            return None
        try:
            namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError) as exc:
            raise errors.bad_request(f"continue key is not valid: {exc}") from exc
        return str(namespace), str(name)

    def _list_document(self, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": str(self._resource_version)}
        if token:
            metadata["continue"] = token
        return {
            "apiVersion": API_VERSION,
            "kind": f"{KIND}List",
            "metadata": metadata,
            "items": items,
        }

    def _current(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.get((namespace, name))
        if obj is None:
            raise errors.not_found(name)
        return obj

    def _write_whole(
        self, request: RecordedRequest, namespace: str, name: str, *, status_only: bool
    ) -> Reply:
        body = self._body(request)
        validation = self._field_validation(request)
        dry_run = self._dry_run(request)
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        assert isinstance(metadata, dict)
        if metadata.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        if metadata.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        with self._lock:
            current = self._current(namespace, name)
            version = metadata.get("resourceVersion")
            if not version:
                raise errors.invalid(
                    name,
                    [
                        Cause(
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                            "metadata.resourceVersion",
                        )
                    ],
                )
            return self._update_locked(
                current, body, validation=validation, status_only=status_only, dry_run=dry_run
            )

    def _patch_object(
        self, request: RecordedRequest, namespace: str, name: str, *, status_only: bool
    ) -> Reply:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/strategic-merge-patch+json":
            raise errors.unsupported_media_type(_PATCH_TYPES)
        if content_type == "application/apply-patch+yaml":
            raise errors.unsupported_media_type(
                [
                    _JSON_PATCH,
                    _MERGE_PATCH,
                    "(server-side apply is not modelled by the Kubernetes API double)",
                ]
            )
        if content_type not in (_JSON_PATCH, _MERGE_PATCH):
            raise errors.unsupported_media_type(_PATCH_TYPES)
        try:
            patch = json.loads(request.body or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        validation = self._field_validation(request)
        dry_run = self._dry_run(request)
        with self._lock:
            current = self._current(namespace, name)
            if content_type == _JSON_PATCH:
                try:
                    patched = json_patch(current, patch)
                except JsonPatchError as exc:
                    raise errors.rejected_patch(str(exc)) from exc
            else:
                if patch is None:
                    raise errors.bad_request("Invalid JSON Patch")
                patched = merge_patch(current, patch)
            if not isinstance(patched, dict):
                text = json.dumps(patched, separators=(",", ":"))
                message = (
                    "couldn't get version/kind; json parse error: json: cannot unmarshal "
                    f"{_json_kind(patched)} into Go value of type {_TYPE_META}"
                )
                raise ApiStatusError(  # kube-apiserver's words, leading space included
                    422,
                    "Invalid",
                    f' "" is invalid: patch: Invalid value: {json.dumps(text)}: {message}',
                    details={
                        "causes": [
                            {
                                "reason": "FieldValueInvalid",
                                "message": f"Invalid value: {json.dumps(text)}: {message}",
                                "field": "patch",
                            }
                        ]
                    },
                )
            metadata = patched.get("metadata") if isinstance(patched.get("metadata"), dict) else {}
            assert isinstance(metadata, dict)
            if metadata.get("name") != name:
                raise errors.bad_request(
                    f"the name of the object ({metadata.get('name')}) does not match the name "
                    f"on the URL ({name})"
                )
            return self._update_locked(
                current, patched, validation=validation, status_only=status_only, dry_run=dry_run
            )

    def _update_locked(
        self,
        current: dict[str, Any],
        body: dict[str, Any],
        *,
        validation: str,
        status_only: bool,
        dry_run: bool,
    ) -> Reply:
        """PUT and PATCH, once the new object is known: optimistic concurrency, the
        server's fields kept, status (or everything but status) from the old object."""
        meta = current["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        given = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        assert isinstance(given, dict)
        version = given.get("resourceVersion")
        if version and version != meta["resourceVersion"]:
            raise errors.conflict(name, errors.STALE)
        if given.get("uid") not in (None, "", meta["uid"]):
            raise errors.conflict(
                name,
                f"Precondition failed: UID in precondition: {given.get('uid')}, UID in object "
                f"meta: {meta['uid']}",
            )
        if status_only:
            new = copy.deepcopy(current)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new["metadata"] = copy.deepcopy(given)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
            for key in _SERVER_FIELDS:
                if key in meta:
                    new["metadata"][key] = copy.deepcopy(meta[key])
                else:
                    new["metadata"].pop(key, None)
            new["metadata"]["name"] = name
            new["metadata"].pop("selfLink", None)
            added = set(new["metadata"].get("finalizers") or []) - set(meta.get("finalizers") or [])
            if meta.get("deletionTimestamp") and added:
                raise errors.invalid(
                    name,
                    [
                        Cause(
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being "
                            "deleted, found new finalizers " + json.dumps(sorted(added)),
                            "metadata.finalizers",
                        )
                    ],
                )
        new["metadata"]["resourceVersion"] = meta["resourceVersion"]
        admission = admit(new, field_validation=validation, status_only=status_only)
        if dry_run:
            return self._reply(admission.obj, 200, admission.warnings)
        stored = self._commit((namespace, name), current, admission.obj)
        return self._reply(stored, 200, admission.warnings)

    def _delete_locked(
        self, key: tuple[str, str], options: Mapping[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        current = self._objects[key]
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta["uid"]):
            raise errors.conflict(
                meta["name"],
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in "
                f"object meta: {meta['uid']}",
            )
        if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
            raise errors.conflict(
                meta["name"],
                "Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )
        if dry_run or meta.get("deletionTimestamp"):
            return copy.deepcopy(current)
        if not meta.get("finalizers"):
            del self._objects[key]
            self._resource_version += 1
            self._changed_state()
            return copy.deepcopy(current)
        new = copy.deepcopy(current)
        new["metadata"]["deletionTimestamp"] = timestamp()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
        return self._commit(key, current, new)

    def _commit(
        self, key: tuple[str, str], current: dict[str, Any] | None, new: dict[str, Any]
    ) -> dict[str, Any]:
        """Store ``new`` (already admitted) in place of ``current``: generation moves
        when anything but metadata and status changed, resourceVersion on any change; an
        object being deleted with no finalizers left goes away. Returns a copy."""
        meta = new["metadata"]
        if current is not None:
            outside = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            before = {k: v for k, v in current.items() if k not in ("metadata", "status")}
            generation = int(current["metadata"].get("generation", 1))
            if outside != before:
                generation += 1
            meta["generation"] = max(generation, int(meta.get("generation", 1)))
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            if new == current:
                return copy.deepcopy(current)
        self._resource_version += 1
        meta["resourceVersion"] = str(self._resource_version)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects.pop(key, None)
        else:
            self._objects[key] = new
            if current is None:
                previous = self._services.get(key)
                if previous is not None:  # an earlier object of that name, not yet cleaned up
                    ingress = self._retire(previous)
                    if ingress is not None:
                        self._orphans.append(ingress)
                self._services[key] = ServiceState(
                    namespace=key[0], name=key[1], uid=str(meta["uid"])
                )
        self._changed_state()
        return copy.deepcopy(new)

    # -- request decoding ---------------------------------------------------------------

    def _body(self, request: RecordedRequest) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("", "application/json", "application/yaml"):
            raise errors.unsupported_media_type(_BODY_TYPES)
        try:
            if content_type == "application/yaml":
                import yaml

                value = yaml.safe_load(request.body or b"")
            else:
                value = json.loads(request.body or b"")
        except ValueError as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
        if not isinstance(value, dict):
            raise errors.bad_request(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{_json_kind(value)} into Go value of type {_TYPE_META}"
            )
        return value

    def _field_validation(self, request: RecordedRequest) -> str:
        value = _first(request, "fieldValidation") or "Strict"
        if value not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f"fieldValidation must be one of Ignore, Warn or Strict, got {value!r}"
            )
        return value

    def _dry_run(self, request: RecordedRequest) -> bool:
        values = request.query.get("dryRun") or []
        for value in values:
            if value != "All":
                raise errors.bad_request(f'Invalid value: "{value}": supported values: "All"')
        return bool(values)

    # -- the controller -----------------------------------------------------------------

    def _control_loop(self) -> None:
        while True:
            with self._lock:
                if self._controller_stopping:
                    return
                self._dirty = False
                try:
                    actions, wake_at = self._reconcile_all(time.monotonic())
                except Exception:
                    self._record_error()
                    actions, wake_at = [], time.monotonic() + 0.5
            for action in actions:
                try:
                    action()
                except Exception:
                    self._record_error()
            with self._lock:
                if self._controller_stopping:
                    return
                if not self._dirty:
                    timeout = None if wake_at is None else max(0.0, wake_at - time.monotonic())
                    self._lock.wait(timeout)

    def _record_error(self, text: str | None = None) -> None:
        """A crash in the controller is a bug in the double: shown by check_errors()."""
        with self._lock:
            self._controller_errors.append(text or traceback.format_exc())

    @property
    def errors(self) -> list[str]:
        """Tracebacks of handlers and controller passes that crashed: bugs in the double."""
        with self._lock:
            mine = list(self._controller_errors)
        return super().errors + mine

    def _reconcile_all(self, now: float) -> tuple[list[Callable[[], None]], float | None]:
        actions: list[Callable[[], None]] = [orphan.stop for orphan in self._orphans]
        self._orphans.clear()
        wake_at: float | None = None

        def later(moment: float) -> None:
            nonlocal wake_at
            wake_at = moment if wake_at is None else min(wake_at, moment)

        for key, state in list(self._services.items()):
            obj = self._objects.get(key)
            if obj is None or obj["metadata"]["uid"] != state.uid:
                ingress = self._retire(state)
                del self._services[key]
                if ingress is not None:
                    actions.append(ingress.stop)
                continue
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                if state.deleting_since is None:
                    state.deleting_since = now
                    ingress = self._retire(state)
                    if ingress is not None:
                        actions.append(ingress.stop)
                due = state.deleting_since + FINALIZE_SECONDS
                if now >= due and FINALIZER in (meta.get("finalizers") or []):
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = [
                        f for f in meta["finalizers"] if f != FINALIZER
                    ]
                    self._commit(key, obj, new)
                elif now < due:
                    later(due)
                continue
            if FINALIZER not in (meta.get("finalizers") or []):
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = [*(meta.get("finalizers") or []), FINALIZER]
                self._commit(key, obj, new)
                obj = self._objects[key]
            if state.ingress is None and not state.ingress_starting:
                state.ingress_starting = True
                actions.append(functools.partial(self._start_ingress, key, state.uid))
            actions.extend(self._roll(state, obj, now, later))
            ingress_url = None if state.ingress is None else state.ingress.url
            status = reconcile_status(state, obj, ingress_url)
            self._write_status(key, obj, status)
        return actions, wake_at

    def _roll(
        self,
        state: ServiceState,
        obj: dict[str, Any],
        now: float,
        later: Callable[[float], None],
    ) -> list[Callable[[], None]]:
        """Revisions: a new one for a new template, the due ones start loading, injected
        failures land, revisions nobody can route to are scaled to zero."""
        actions: list[Callable[[], None]] = []
        state.invalid = runtime_problem(obj)
        wanted = template(obj)
        latest = state.latest
        if state.invalid is None and (latest is None or latest.template != wanted):
            model = wanted["predictor"].get("model") or {}
            number = (latest.number if latest is not None else 0) + 1
            revision = Revision(
                name=f"{state.configuration}-{number:05d}",
                number=number,
                template=wanted,
                served_name=served_model_name(model, state.name),
                storage_uri=model.get("storageUri"),
                created=now,
                due=now + self._ready_delay,
            )
            if self._fail_next is not None and self._fail_count != 0:
                revision.injected = self._fail_next
                if self._fail_count is not None:
                    self._fail_count -= 1
            state.revisions.append(revision)
        latest = state.latest
        if latest is None:
            return actions
        if state.fail_latest is not None:
            reason, message = state.fail_latest
            state.fail_latest = None
            if latest.state in (PENDING, LOADING, READY):
                latest.fail(reason, message)
        for revision in state.revisions:
            if revision is not latest and revision.state in (PENDING, LOADING):
                revision.state = RETIRED
            elif revision.state == PENDING:
                if now < revision.due:
                    later(revision.due)
                elif revision.injected is not None:
                    revision.fail(*revision.injected)
                else:
                    revision.state = LOADING
                    actions.append(functools.partial(self._start_loader, state, revision))
        for revision in state.revisions:
            if revision.state == READY and (
                state.latest_ready is None
                or revision.number > int(state.latest_ready.rsplit("-", 1)[1])
            ):
                state.latest_ready = revision.name
        needed = state.needed()
        for revision in state.revisions:
            if revision.name not in needed:
                revision.app = None
        return actions

    def _write_status(
        self, key: tuple[str, str], obj: dict[str, Any], status: dict[str, Any]
    ) -> None:
        """The controller's status write, through the same admission as ``/status``."""
        new = copy.deepcopy(obj)
        new["status"] = status
        try:
            admitted = admit(new, field_validation="Strict", status_only=True).obj
        except ApiStatusError as error:
            self._record_error(f"the controller wrote an invalid status: {error.message}")
            return
        self._commit(key, obj, admitted)

    def _retire(self, state: ServiceState) -> IngressServer | None:
        """Stop routing to the service's revisions; returns its ingress to stop."""
        for revision in state.revisions:
            revision.app = None
            if revision.state in (PENDING, LOADING):
                revision.state = RETIRED
        state.cleaned = True
        ingress: IngressServer | None = state.ingress
        state.ingress = None
        return ingress

    def _start_ingress(self, key: tuple[str, str], uid: str) -> None:
        app = IngressApp(functools.partial(self._route_request, key, uid))
        server = IngressServer(app, host=self.host, name=f"{key[0]}-{key[1]}")
        server.start()
        with self._lock:
            state = self._services.get(key)
            current = state is not None and state.uid == uid and not state.cleaned
            if current and state is not None:
                state.ingress = server
                state.ingress_starting = False
                self._changed_state()
        if not current:
            server.stop()

    def _start_loader(self, state: ServiceState, revision: Revision) -> None:
        thread = threading.Thread(
            target=self._load,
            args=(state, revision),
            name=f"kserve-revision-{revision.name}",
            daemon=True,
        )
        with self._lock:
            self._loaders.add(thread)
        thread.start()

    def _load(self, state: ServiceState, revision: Revision) -> None:
        app: Any = None
        failure: tuple[str, str] | None = None
        try:
            folder = self._pull(revision.storage_uri)
            app = self._predictor(folder, revision.served_name)
        except _RevisionFailure as exc:
            failure = (exc.reason, exc.message)
        except Exception as exc:
            failure = ("ModelLoadFailed", f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._loaders.discard(threading.current_thread())
            if revision.state == LOADING and not state.cleaned:
                if failure is not None:
                    revision.fail(*failure)
                else:
                    revision.state = READY
                    revision.app = app
                self._changed_state()

    def _pull(self, uri: str | None) -> Path:
        """Where the storage initializer would put ``uri``: a PVC's folder."""
        if not uri:
            raise _RevisionFailure(
                "StorageInitializerFailed",
                "no storageUri: the Kubernetes API double loads models from pvc://<claim>/<path>",
            )
        if not uri.startswith("pvc://"):
            raise _RevisionFailure(
                "StorageInitializerFailed",
                f"Cannot recognize storage type for {uri}: the Kubernetes API double mounts "
                f"pvc://<claim>/<path> only (claims: {', '.join(sorted(self.storage)) or 'none'})",
            )
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        root = self.storage.get(claim)
        if root is None:
            raise _RevisionFailure(
                "PersistentVolumeClaimNotFound", f'persistentvolumeclaim "{claim}" not found'
            )
        folder = (root / path).resolve()
        if not folder.is_relative_to(root.resolve()) or not folder.exists():
            raise _RevisionFailure(
                "ModelLoadFailed",
                f'model path "{path}" not found on persistentvolumeclaim "{claim}"',
            )
        return folder

    def _route_request(
        self, key: tuple[str, str], uid: str, host: str, probe: bool
    ) -> Upstream | MeshAnswer:
        """Where the ingress sends a request (called on the ingress's event loop)."""
        with self._lock:
            state = self._services.get(key)
            if state is None or state.uid != uid or state.cleaned:
                return NO_ROUTE
            hostname = (
                host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            )
            known = hostname in (
                "127.0.0.1",
                "localhost",
                "[::1]",
                self.host,
            ) or hostname.startswith((f"{state.name}.", f"{state.configuration}."))
            tag = None
            for candidate in ("latest", "prev"):
                if hostname.startswith(f"{candidate}-{state.configuration}."):
                    known, tag = True, candidate
            if not known:
                return NO_ROUTE
            if state.down:
                return NO_HEALTHY_UPSTREAM
            if state.url is None:
                return NO_ROUTE
            if tag is not None:
                name = state.tagged(tag)
            else:
                rotation = state.probe_rotation if probe else state.rotation
                name = rotation.pick(state.weights())
            revision = state.revision(name)
            if revision is None or revision.app is None:
                return NO_HEALTHY_UPSTREAM
            return Upstream(revision.name, revision.app, revision.served_name)
