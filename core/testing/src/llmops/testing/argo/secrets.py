"""The piece of the cluster's core API the Argo plugin needs: Secrets.

The Argo Server's API cannot create Kubernetes Secrets; a plugin that hands a secret to
its pods creates a Secret through the Kubernetes API and references it from the pod's
``env`` (``valueFrom.secretKeyRef``). This double serves what the official ``kubernetes``
client calls for that, as kube-apiserver answers it: create (``data`` base64, ``stringData``
folded into ``data``, ``generateName``, ``ownerReferences`` with their required fields,
409 ``AlreadyExists``), read, replace, merge and JSON patches, delete, and list with
``labelSelector``/``fieldSelector``; failures are Kubernetes ``Status`` bodies, a missing or
wrong bearer token is 401. The garbage collector deletes a Secret whose every owner is a
Workflow that no longer exists.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from llmops.testing.doubles import RecordedRequest, Reply, ToolDouble, route
from llmops.testing.kubernetes.api_errors import (
    ApiStatusError,
    Cause,
    bad_request,
    status_reply,
    unauthorized,
)
from llmops.testing.kubernetes.patching import (
    JsonPatchError,
    field_matcher,
    json_patch,
    label_matcher,
    merge_patch,
)
from llmops.testing.kubernetes.schema import check_metadata, check_metadata_types

COLLECTION = "/api/v1/namespaces/{namespace}/secrets"
ITEM = COLLECTION + "/{name}"
WORKFLOW_API_VERSION = "argoproj.io/v1alpha1"
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "selfLink", "managedFields")
#: ownerReferences fields kube-apiserver requires, and how its messages call them.
_OWNER_FIELDS = {"apiVersion": "version", "kind": "kind", "name": "name", "uid": "uid"}


class SecretMissing(LookupError):
    """A ``secretKeyRef`` that does not resolve; the message is the kubelet's."""


def _details(name: str | None) -> dict[str, Any]:
    return {"name": name, "kind": "secrets"} if name else {"kind": "secrets"}


def _not_found(name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'secrets "{name}" not found', details=_details(name))


def _invalid(name: str, causes: list[Cause]) -> ApiStatusError:
    lines = [c.line() for c in causes]
    joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    return ApiStatusError(
        422,
        "Invalid",
        f'Secret "{name}" is invalid: {joined}',
        details={"name": name, "kind": "Secret", "causes": [c.as_json() for c in causes]},
    )


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Authenticate, then answer ApiStatusError as a Kubernetes Status."""

    @functools.wraps(handler)
    def answer(self: KubernetesSecretsApi, request: RecordedRequest, **params: str) -> Any:
        try:
            if not self._authorized(request):
                raise unauthorized()
            if params.get("namespace") not in self.namespaces:
                raise ApiStatusError(
                    404,
                    "NotFound",
                    f'namespaces "{params.get("namespace")}" not found',
                    details={"name": params.get("namespace"), "kind": "namespaces"},
                )
            return handler(self, request, **params)
        except ApiStatusError as error:
            return error.reply()

    return answer


class KubernetesSecretsApi(ToolDouble):
    """kube-apiserver's ``/api/v1/namespaces/{namespace}/secrets``; see the module's
    docstring. ``authorized`` decides whether a request's credentials are good (the Argo
    double shares its token, and its expiry, with this API)."""

    COLLECTION_ROUTE = COLLECTION
    ITEM_ROUTE = ITEM

    def __init__(
        self,
        *,
        namespaces: Iterable[str],
        authorized: Callable[[RecordedRequest], bool],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.namespaces = frozenset(namespaces)
        self._authorized = authorized
        self._lock = threading.RLock()
        self._secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self._resource_version = 0
        self._saved_port: int | None = None

    # -- life cycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The API's port (also while it is down)."""
        if not self.running and self._saved_port is not None:
            return self._saved_port
        return super().port

    def down(self) -> None:
        """Refuse connections on the port; the Secrets are kept."""
        if self.running:
            self._saved_port = super().port
            super().stop()

    def up(self) -> None:
        """Serve again on the same port."""
        if not self.running and self._saved_port is not None:
            self._requested_port = self._saved_port
            super().start()

    def reset_state(self) -> None:
        with self._lock:
            self._secrets.clear()

    # -- what the Argo double and tests use ---------------------------------------------

    def secrets(self, namespace: str) -> list[dict[str, Any]]:
        """The stored Secrets of ``namespace`` (copies), by name."""
        with self._lock:
            return [
                copy.deepcopy(s) for (ns, _), s in sorted(self._secrets.items()) if ns == namespace
            ]

    def value(self, namespace: str, name: str, key: str, *, optional: bool = False) -> str | None:
        """The decoded value a ``secretKeyRef`` names (None when optional and absent).

        :raises SecretMissing: with the kubelet's message, for a missing Secret or key.
        """
        with self._lock:
            secret = self._secrets.get((namespace, name))
            if secret is None:
                if optional:
                    return None
                raise SecretMissing(f'secret "{name}" not found')
            data = secret.get("data") or {}
            if key not in data:
                if optional:
                    return None
                raise SecretMissing(f"couldn't find key {key} in Secret {namespace}/{name}")
            return base64.b64decode(data[key]).decode("utf-8", "replace")

    def values(self, namespace: str, name: str, *, optional: bool = False) -> dict[str, str]:
        """Every decoded key of a Secret (``envFrom.secretRef``).

        :raises SecretMissing: for a missing Secret that is not optional.
        """
        with self._lock:
            secret = self._secrets.get((namespace, name))
            if secret is None:
                if optional:
                    return {}
                raise SecretMissing(f'secret "{name}" not found')
            return {
                k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in (secret.get("data") or {}).items()
            }

    def collect_garbage(self, live_workflow_uids: set[str]) -> list[str]:
        """Delete the Secrets whose owners are all Workflows not in ``live_workflow_uids``
        (Kubernetes' garbage collector); returns their names."""
        with self._lock:
            doomed = []
            for key, secret in self._secrets.items():
                owners = secret["metadata"].get("ownerReferences") or []
                if owners and all(
                    o.get("apiVersion") == WORKFLOW_API_VERSION
                    and o.get("kind") == "Workflow"
                    and o.get("uid") not in live_workflow_uids
                    for o in owners
                ):
                    doomed.append(key)
            for key in doomed:
                del self._secrets[key]
            return [name for _, name in doomed]

    # -- HTTP -----------------------------------------------------------------------------

    def not_found(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return unauthorized().reply()
        return ApiStatusError(
            404, "NotFound", "the server could not find the requested resource", details={}
        ).reply()

    @route("POST", COLLECTION)
    @_api
    def _create(self, request: RecordedRequest, namespace: str) -> Reply:
        body = self._body(request)
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request(
                "json: cannot unmarshal into Go struct field Secret.metadata of type v1.ObjectMeta"
            )
        if metadata.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
            suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            metadata["name"] = metadata["generateName"][:58] + suffix
        for key in _SERVER_FIELDS:
            metadata.pop(key, None)
        metadata["namespace"] = namespace
        secret = self._admit(body)
        name = secret["metadata"]["name"]
        dry_run = "All" in request.query.get("dryRun", [])
        with self._lock:
            if (namespace, name) in self._secrets:
                raise ApiStatusError(
                    409, "AlreadyExists", f'secrets "{name}" already exists', details=_details(name)
                )
            secret["metadata"]["uid"] = str(uuid.uuid4())
            secret["metadata"]["creationTimestamp"] = _timestamp()
            if not dry_run:
                self._store(namespace, secret)
            return status_reply(secret, 201)

    @route("GET", COLLECTION)
    @_api
    def _list(self, request: RecordedRequest, namespace: str) -> Reply:
        labels = label_matcher(_first(request, "labelSelector"))
        fields = field_matcher(_first(request, "fieldSelector"))
        with self._lock:
            items = []
            for (ns, _), secret in sorted(self._secrets.items()):
                metadata = secret["metadata"]
                if ns == namespace and labels(metadata.get("labels") or {}) and fields(secret):
                    item = copy.deepcopy(secret)
                    del item["kind"], item["apiVersion"]
                    items.append(item)
            return status_reply(
                {
                    "kind": "SecretList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._resource_version)},
                    "items": items,
                },
                200,
            )

    @route("GET", ITEM)
    @_api
    def _read(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        with self._lock:
            return status_reply(copy.deepcopy(self._current(namespace, name)), 200)

    @route("PUT", ITEM)
    @_api
    def _replace(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        body = self._body(request)
        with self._lock:
            current = self._current(namespace, name)
            metadata = body.setdefault("metadata", {})
            if metadata.get("name") not in (None, name):
                raise bad_request(
                    "the name of the object "
                    f"({metadata.get('name')}) does not match the name on the URL ({name})"
                )
            sent = metadata.get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                raise ApiStatusError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on secrets "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    details=_details(name),
                )
            return self._update(namespace, current, body)

    @route("PATCH", ITEM)
    @_api
    def _patch(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            patch = json.loads(request.body or b"null")
        except ValueError as exc:
            raise bad_request(f"invalid JSON in the patch: {exc}") from exc
        with self._lock:
            current = self._current(namespace, name)
            view = copy.deepcopy(current)
            if kind == "application/json-patch+json":
                try:
                    patched = json_patch(view, patch)
                except JsonPatchError as error:
                    raise ApiStatusError(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                        details={"causes": [{"message": str(error)}]},
                    ) from None
            elif kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                patched = merge_patch(view, patch)
            else:
                raise ApiStatusError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (got {kind or 'none'})",
                )
            return self._update(namespace, current, patched)

    @route("DELETE", ITEM)
    @_api
    def _delete(self, request: RecordedRequest, namespace: str, name: str) -> Reply:
        with self._lock:
            current = self._current(namespace, name)
            del self._secrets[(namespace, name)]
            return status_reply(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {**_details(name), "uid": current["metadata"]["uid"]},
                },
                200,
            )

    # -- internals ------------------------------------------------------------------------

    def _current(self, namespace: str, name: str) -> dict[str, Any]:
        secret = self._secrets.get((namespace, name))
        if secret is None:
            raise _not_found(name)
        return secret

    def _body(self, request: RecordedRequest) -> dict[str, Any]:
        if not isinstance(request.json, dict):
            raise bad_request("the body of the request must be a JSON Secret")
        return copy.deepcopy(request.json)

    def _store(self, namespace: str, secret: dict[str, Any]) -> None:
        self._resource_version += 1
        secret["metadata"]["resourceVersion"] = str(self._resource_version)
        self._secrets[(namespace, secret["metadata"]["name"])] = copy.deepcopy(secret)

    def _update(self, namespace: str, current: dict[str, Any], body: dict[str, Any]) -> Reply:
        metadata = body.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace", "name"):
            metadata[key] = current["metadata"][key]
        secret = self._admit(body)
        self._store(namespace, secret)
        return status_reply(copy.deepcopy(self._secrets[(namespace, metadata["name"])]), 200)

    def _admit(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Secret as stored: validated, ``stringData`` folded into ``data``."""
        if body.get("apiVersion") not in (None, "v1"):
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the "
                "expected API version (v1)"
            )
        if body.get("kind") not in (None, "Secret"):
            raise bad_request(f"the kind in the data ({body['kind']}) is not Secret")
        metadata = body["metadata"]
        check_metadata_types(metadata)
        name = str(metadata.get("name") or "")
        causes = check_metadata(metadata)
        for owner in metadata.get("ownerReferences") or []:
            for key, word in _OWNER_FIELDS.items():
                if not (isinstance(owner, dict) and owner.get(key)):
                    causes.append(
                        Cause(
                            "FieldValueInvalid",
                            f'Invalid value: "": {word} must not be empty',
                            f"metadata.ownerReferences.{key}",
                        )
                    )
        data = body.get("data") or {}
        string_data = body.pop("stringData", None) or {}
        if not isinstance(data, dict) or not isinstance(string_data, dict):
            raise bad_request(
                "json: cannot unmarshal into Go struct field Secret.data of type map[string][]byte"
            )
        for key, value in data.items():
            if not isinstance(value, str):
                raise bad_request(
                    "json: cannot unmarshal into Go struct field Secret.data of type []uint8"
                )
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"illegal base64 data in Secret.data[{key}]") from None
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key in data:
            if not _CONFIG_KEY.fullmatch(key) or len(key) > 253:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{key}": a valid config key must consist of '
                        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
                        "'KEY_NAME',  or 'key-name', regex used for validation is "
                        "'[-._a-zA-Z0-9]+')",
                        f"data[{key}]",
                    )
                )
        if causes:
            raise _invalid(name, causes)
        secret: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1", "metadata": metadata}
        if data:
            secret["data"] = data
        secret["type"] = body.get("type") or "Opaque"
        if body.get("immutable") is not None:
            secret["immutable"] = body["immutable"]
        return secret


def _first(request: RecordedRequest, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None
