"""The Kubernetes API as the plugin uses it: InferenceServices in one namespace, through
the official client's CustomObjectsApi, with the client's errors turned into llmops'.

The client is built on the first call, not when the plugin loads: a missing kubeconfig or
an unreachable API server makes calls (and health) fail with the reason, never the
platform's start.
"""

from __future__ import annotations

import json
import os
import threading
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.deadlines import deadline_remaining
from llmops.errors import Conflict, IntegrationUnavailable, InvalidRequest, LlmopsError, NotFound
from llmops_kserve.objects import GROUP, PLURAL, VERSION

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CustomObjectsApi

    from llmops_kserve.settings import KServeSettings

#: Where a pod's service account is mounted.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class KubernetesApi:
    """InferenceServices in ``namespace``; every call honours the request's deadline."""

    def __init__(
        self,
        settings: KServeSettings,
        *,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self.settings = settings
        self.service_account_dir = service_account_dir
        self._lock = threading.Lock()
        self._client: ApiClient | None = None
        self._custom: CustomObjectsApi | None = None
        self._namespace: str | None = settings.namespace
        self._where = "the Kubernetes API"

    # -- configuration ---------------------------------------------------------------

    @property
    def where(self) -> str:
        """The API server, for messages (known once the client is built)."""
        return self._where

    @property
    def namespace(self) -> str:
        self._api()
        if self._namespace is None:  # _api() sets it with the client
            raise IntegrationUnavailable("the Kubernetes client is not configured")
        return self._namespace

    def _api(self) -> CustomObjectsApi:
        from kubernetes.client import CustomObjectsApi

        with self._lock:
            if self._client is None:
                try:
                    self._client, namespace = self._build()
                except LlmopsError:
                    raise
                except Exception as exc:
                    raise IntegrationUnavailable(
                        f"the Kubernetes configuration could not be loaded: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self._namespace = self.settings.namespace or namespace or "default"
                self._where = f"the Kubernetes API at {self._client.configuration.host}"
                self._custom = CustomObjectsApi(self._client)
            if self._custom is None:
                raise IntegrationUnavailable("the Kubernetes client is not configured")
            return self._custom

    def _build(self) -> tuple[ApiClient, str | None]:
        """A client for the first way the settings name, and the namespace it implies."""
        from kubernetes import config
        from kubernetes.client import ApiClient, Configuration

        settings = self.settings
        configuration = Configuration()
        namespace: str | None = None
        if settings.api_url:
            configuration.host = settings.api_url.rstrip("/")
            if settings.token is not None:
                configuration.api_key = {"authorization": settings.token.get_secret_value()}
                configuration.api_key_prefix = {"authorization": "Bearer"}
        elif kubeconfig := settings.kubeconfig or (
            None if settings.in_cluster else _default_kubeconfig()
        ):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig),
                context=settings.context,
                client_configuration=configuration,
            )
            namespace = _context_namespace(kubeconfig, settings.context)
        elif settings.in_cluster or os.environ.get("KUBERNETES_SERVICE_HOST"):
            folder = self.service_account_dir
            loader = config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=str(folder / "token"), cert_filename=str(folder / "ca.crt")
            )
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
            namespace_file = folder / "namespace"
            if namespace_file.is_file():
                namespace = namespace_file.read_text().strip() or None
        else:
            raise IntegrationUnavailable(
                "KServe is not configured: set api_url and token, kubeconfig, or in_cluster "
                "(no ~/.kube/config here and not in a pod)"
            )
        if settings.ca_cert is not None:
            configuration.ssl_ca_cert = str(settings.ca_cert)
        if not settings.verify_ssl:
            configuration.verify_ssl = False
        # fail fast and let the outbox retry: urllib3 would otherwise retry 3 times
        configuration.retries = 0
        return ApiClient(configuration), namespace

    def _timeout(self) -> tuple[float, float]:
        limit = self.settings.request_timeout_seconds
        left = deadline_remaining(limit) or limit
        budget = max(0.05, min(limit, left))
        return (min(budget, 3.0), budget)

    # -- calls -------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        return self._object(
            "read",
            name,
            lambda api: api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=self._timeout()
            ),
        )

    def find(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def select(self, label_selector: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        answer = self._object(
            "list",
            None,
            lambda api: api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                label_selector=label_selector,
                limit=limit,
                _request_timeout=self._timeout(),
            ),
        )
        return list(answer.get("items", []))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"].get("name") or body["metadata"].get("generateName")
        return self._object(
            "create",
            name,
            lambda api: api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                body,
                field_validation="Strict",
                _request_timeout=self._timeout(),
            ),
        )

    def patch(self, name: str, patch: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        """A JSON patch (a list of operations) or a JSON merge patch (a dict)."""
        return self._object(
            "change",
            name,
            lambda api: api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                patch,
                field_validation="Strict",
                _content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH,
                _request_timeout=self._timeout(),
            ),
        )

    def delete(self, name: str) -> None:
        self._call(
            "delete",
            name,
            lambda api: api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=self._timeout()
            ),
        )

    def _object(self, verb: str, name: str | None, call: Any) -> dict[str, Any]:
        answer = self._call(verb, name, call)
        if not isinstance(answer, dict):
            raise IntegrationUnavailable(f"{self.where} answered {verb} without an object")
        return answer

    def _call(self, verb: str, name: str | None, call: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        api = self._api()
        what = f"InferenceService {name!r}" if name else "InferenceServices"
        try:
            return call(api)
        except ApiException as exc:
            raise _translated(exc, verb, what, self.namespace, self.where) from exc
        except Exception as exc:  # urllib3: refused, reset, timed out, TLS
            raise IntegrationUnavailable(
                f"{self.where} is unreachable ({verb} {what}): {_reason(exc)}"
            ) from exc


def _translated(exc: Any, verb: str, what: str, namespace: str, where: str) -> LlmopsError:
    """llmops' error for the API server's answer (a Kubernetes Status)."""
    status = int(exc.status or 0)
    message = _status_message(exc)
    if status == 404:
        if "namespaces" in message and "not found" in message:
            return IntegrationUnavailable(f"{where}: {message}")
        if "the server could not find the requested resource" in message:
            return IntegrationUnavailable(
                f"KServe is not installed at {where} (no {GROUP}/{VERSION} API): {message}"
            )
        return NotFound(f"no {what} in namespace {namespace!r}", id=what)
    if status == 409:
        return Conflict(f"cannot {verb} {what}: {message}")
    if status in (400, 422) or (status == 403 and "admission webhook" in message):
        # 403 from an admission webhook is KServe's validator refusing the object
        return InvalidRequest(f"Kubernetes refused to {verb} {what}: {message}")
    if status in (401, 403):
        return IntegrationUnavailable(
            f"{where} refused to {verb} {what} ({status}): {message}"
            + (
                " (the platform's service account needs the Role in infra/k8s/platform)"
                if status == 403
                else " (check the token or kubeconfig)"
            )
        )
    return IntegrationUnavailable(f"{where} failed to {verb} {what} ({status}): {message}")


def _status_message(exc: Any) -> str:
    """The message of the Kubernetes Status the API server answered (what it refused and
    why), else the status's reason phrase: a body that is not a Status (a proxy's page,
    anything at a wrong URL) is never quoted."""
    body = getattr(exc, "body", None)
    try:
        parsed = json.loads(body) if body else None
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        return " ".join(str(parsed["message"]).split())[:1000]
    return _phrase(int(getattr(exc, "status", 0) or 0))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


#: What a health check adds to a refusal's status code.
_HEALTH_HINTS = {
    401: " (check the token or kubeconfig)",
    403: " (the platform's service account needs the Role in infra/k8s/platform)",
    404: " (is KServe installed, with the namespace?)",
}


def health_reason(exc: LlmopsError, where: str) -> str:
    """Why a health check failed, for ``detail``: the API server's status code and reason
    phrase when it answered (never what it answered: a health check may reach a server
    that is not Kubernetes), else ``exc``'s own reason (unreachable, not configured)."""
    status = getattr(exc.__cause__, "status", None)
    if not isinstance(status, int) or status <= 0:
        return exc.detail
    verb = "refused the check" if status in (401, 403) else "answered"
    return f"{where} {verb} ({status} {_phrase(status)}){_HEALTH_HINTS.get(status, '')}"


def _reason(exc: Exception) -> str:
    inner = getattr(exc, "reason", None)
    text = str(inner if inner is not None else exc)
    return f"{type(exc).__name__}: {text}"[:500]


def _default_kubeconfig() -> Path | None:
    from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION

    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    default = Path(os.path.expanduser(KUBE_CONFIG_DEFAULT_LOCATION))
    return default if default.is_file() else None


def _context_namespace(path: Path, context: str | None) -> str | None:
    """The namespace the kubeconfig's ``context`` (default: its current one) names."""
    from kubernetes import config

    contexts, current = config.list_kube_config_contexts(str(path))  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    value = ((chosen or {}).get("context") or {}).get("namespace")
    return str(value) if value else None
