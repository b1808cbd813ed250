"""The Argo Server's REST API as the plugin uses it (hera's ``WorkflowsService``), and the
Kubernetes API for the Secrets that carry a pipeline's secret environment (the official
``kubernetes`` client), with their errors turned into llmops'.

Every request keeps to the current call's deadline (:func:`deadline_remaining`, at most
``request_timeout_seconds``) and is tried once: the platform's retry queue retries.
Clients are built on the first call, never when the plugin loads.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from llmops.deadlines import deadline_remaining
from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)
from llmops_argo.metrics import OK, ArgoMetrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from hera.workflows import WorkflowsService
    from hera.workflows.models import Workflow as WorkflowModel
    from kubernetes.client import ApiClient, CoreV1Api

    from llmops_argo.settings import ArgoSettings

T = TypeVar("T")

#: Where a pod's service account is mounted.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: gRPC's NOT_FOUND, the ``code`` of the Argo Server's answer for a missing workflow.
GRPC_NOT_FOUND = 5
_STATUS_IN_MESSAGE = re.compile(r"status code (\d{3})")
#: the ``operation`` label of the API metrics, by the verb of a request's errors
_OPERATIONS = {"read": "get", "read the log of": "log"}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def connect_timeout(total: float) -> tuple[float, float]:
    """(connect, read) timeouts within ``total`` seconds."""
    return (min(total, 3.0), total)


class _DeadlineSession(requests.Session):
    """A ``requests`` session whose every request keeps to the call's deadline and uses
    the plugin's TLS settings, and that remembers each thread's last answer (hera's
    exceptions keep the status only in their message)."""

    def __init__(self, limit: float, verify: bool | str) -> None:
        super().__init__()
        self.limit = limit
        self.verify_value = verify
        self._last = threading.local()

    def timeout(self) -> tuple[float, float]:
        left = deadline_remaining(self.limit) or self.limit
        return connect_timeout(max(0.05, min(self.limit, left)))

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = self.timeout()
        # hera passes its own verify flag; the CA bundle setting is the session's
        kwargs["verify"] = self.verify_value
        self._last.response = None
        response = super().request(method, url, *args, **kwargs)
        self._last.response = response
        return response

    def last_response(self) -> Any:
        return getattr(self._last, "response", None)


def _tls(settings: ArgoSettings) -> bool | str:
    if not settings.verify_ssl:
        return False
    return str(settings.ca_cert) if settings.ca_cert is not None else True


class ArgoServer:
    """Workflows in one namespace of one Argo Server."""

    def __init__(self, settings: ArgoSettings, metrics: ArgoMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else ArgoMetrics()
        self.url = (settings.server_url or "").rstrip("/")
        self.where = f"the Argo Server at {self.url}" if self.url else "the Argo Server"
        self._lock = threading.Lock()
        self._service: WorkflowsService | None = None
        self._warming: threading.Thread | None = None
        self._session = _DeadlineSession(settings.request_timeout_seconds, _tls(settings))

    def _configured(self) -> None:
        if not self.url:
            raise IntegrationUnavailable(
                "Argo is not configured: set LLMOPS_ARGO__SERVER_URL (the Argo Server) and "
                "LLMOPS_ARGO__TOKEN"
            )

    def service(self) -> WorkflowsService:
        self._configured()
        with self._lock:
            if self._service is None:
                from hera.workflows import WorkflowsService

                token = self.settings.token
                self._service = WorkflowsService(
                    host=self.url + "/",
                    token=token.get_secret_value() if token is not None else None,
                    namespace=self.settings.namespace,
                    session=self._session,
                )
            return self._service

    def warm_up(self) -> None:
        """Import hera in the background, once: it takes seconds, which the first call to
        Argo would otherwise spend inside its deadline."""
        with self._lock:
            if self._warming is not None:
                return
            self._warming = threading.Thread(
                target=_import_hera, name="llmops-argo-import", daemon=True
            )
        self._warming.start()

    def _headers(self) -> dict[str, str]:
        """The bearer token as hera sends it (``Bearer `` added unless it is there)."""
        token = self.settings.token
        if token is None:
            return {}
        value = token.get_secret_value().strip()
        return {"Authorization": value if len(value.split()) > 1 else f"Bearer {value}"}

    def close(self) -> None:
        self._session.close()

    # -- workflows -------------------------------------------------------------------

    def lint(self, workflow: WorkflowModel, namespace: str) -> None:
        from hera.workflows.models import WorkflowLintRequest

        self._call(
            "lint",
            workflow.metadata.name,
            lambda s: s.lint_workflow(
                WorkflowLintRequest(namespace=namespace, workflow=workflow), namespace=namespace
            ),
        )

    def create(self, workflow: WorkflowModel, namespace: str) -> WorkflowModel:
        from hera.workflows.models import WorkflowCreateRequest

        return self._call(
            "create",
            workflow.metadata.name,
            lambda s: s.create_workflow(
                WorkflowCreateRequest(namespace=namespace, workflow=workflow),
                namespace=namespace,
            ),
        )

    def get(self, name: str, namespace: str) -> WorkflowModel:
        return self._call("read", name, lambda s: s.get_workflow(name, namespace=namespace))

    def stop(self, name: str, namespace: str) -> WorkflowModel:
        from hera.workflows.models import WorkflowStopRequest

        return self._call(
            "stop",
            name,
            lambda s: s.stop_workflow(
                name, WorkflowStopRequest(name=name, namespace=namespace), namespace=namespace
            ),
        )

    def terminate(self, name: str, namespace: str) -> WorkflowModel:
        from hera.workflows.models import WorkflowTerminateRequest

        return self._call(
            "terminate",
            name,
            lambda s: s.terminate_workflow(
                name,
                WorkflowTerminateRequest(name=name, namespace=namespace),
                namespace=namespace,
            ),
        )

    def retry(self, name: str, namespace: str) -> WorkflowModel:
        from hera.workflows.models import WorkflowRetryRequest

        return self._call(
            "retry",
            name,
            lambda s: s.retry_workflow(
                name,
                WorkflowRetryRequest(name=name, namespace=namespace, restart_successful=False),
                namespace=namespace,
            ),
        )

    def pod_log(self, name: str, namespace: str, pod: str) -> str:
        """The main container's log of one pod of workflow ``name`` (Argo's log route).

        hera's ``workflow_logs`` reads the answer as one JSON object, while the Argo Server
        streams one ``{"result": {"content": ...}}`` object per line: the route is called
        through the same session, and the lines are read here."""
        self._configured()
        url = f"{self.url}/api/v1/workflows/{namespace}/{name}/log"
        params = {"podName": pod, "logOptions.container": "main"}
        response = self._call(
            "read the log of",
            name,
            lambda s: self._checked(self._session.get(url, params=params, headers=self._headers())),
        )
        lines: list[str] = []
        for raw in response.text.splitlines():
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError as exc:
                raise IntegrationRejected(
                    f"{self.where} answered the log of {name!r} with something that is not "
                    "a log entry"
                ) from exc
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("error"), dict):
                error = entry["error"]
                raise IntegrationUnavailable(
                    f"{self.where} failed to read the log of pod {pod!r}: "
                    f"{str(error.get('message', ''))[:500]}"
                )
            result = entry.get("result")
            if isinstance(result, dict) and "content" in result:
                lines.append(str(result["content"]))
        return "".join(f"{line}\n" for line in lines)

    def probe(self, *, with_token: bool) -> int:
        """The status code of listing one workflow of the namespace, with or without the
        token (health: an Argo Server in ``server`` auth mode answers 200 without one)."""
        self._configured()
        self.warm_up()
        url = f"{self.url}/api/v1/workflows/{self.settings.namespace}"
        headers = self._headers() if with_token else {}
        started = time.perf_counter()
        try:
            response = self._session.get(url, params={"listOptions.limit": "1"}, headers=headers)
        except requests.RequestException as exc:
            error = IntegrationUnavailable(f"{self.where} is unreachable: {_reason(exc)}")
            self.metrics.request("probe", type(error).__name__, time.perf_counter() - started)
            raise error from exc
        status = int(response.status_code)
        outcome = (
            OK if status < 400 else type(self.refusal_status(status, "", "list", None)).__name__
        )
        self.metrics.request("probe", outcome, time.perf_counter() - started)
        return status

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _checked(response: Any) -> Any:
        if not response.ok:
            raise _AnsweredError(response)
        return response

    def _call(self, verb: str, name: str | None, call: Callable[[WorkflowsService], T]) -> T:
        service = self.service()  # not configured: no request, nothing counted
        operation = _OPERATIONS.get(verb, verb)
        started = time.perf_counter()
        try:
            answer = self._request(verb, name, call, service)
        except LlmopsError as exc:
            self.metrics.request(operation, type(exc).__name__, time.perf_counter() - started)
            raise
        self.metrics.request(operation, OK, time.perf_counter() - started)
        return answer

    def _request(
        self,
        verb: str,
        name: str | None,
        call: Callable[[WorkflowsService], T],
        service: WorkflowsService,
    ) -> T:
        try:
            return call(service)
        except LlmopsError:
            raise
        except requests.RequestException as exc:
            raise IntegrationUnavailable(
                f"{self.where} is unreachable ({verb} {_what(name)}): {_reason(exc)}"
            ) from exc
        except Exception as exc:
            response = exc.response if isinstance(exc, _AnsweredError) else None
            response = response or self._session.last_response()
            if response is not None and not response.ok:
                raise self.refusal(response, verb, name) from exc
            status = status_in_message(exc)
            if status is not None:
                raise self.refusal_status(status, str(exc), verb, name) from exc
            raise IntegrationRejected(
                f"{self.where} answered {verb} {_what(name)} with something that is not "
                f"the Argo Server's answer: {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc

    def refusal(self, response: Any, verb: str, name: str | None) -> LlmopsError:
        """llmops' error for an answer of the Argo Server that is not a success."""
        code, message = _argo_error(response)
        status = int(response.status_code)
        if status == 404 and code != GRPC_NOT_FOUND and "not found" not in message.lower():
            # not Argo's "workflow not found": a wrong URL must not read as a lost workflow
            return IntegrationUnavailable(
                f"{self.where} has no Argo API ({verb} {_what(name)}: 404 "
                f"{message or _phrase(404)}); check LLMOPS_ARGO__SERVER_URL",
                upstream_status=404,
            )
        return self.refusal_status(status, message, verb, name)

    def refusal_status(self, status: int, message: str, verb: str, name: str | None) -> LlmopsError:
        said = message or _phrase(status)
        what = _what(name)
        if status in (401, 403):
            hint = (
                "check LLMOPS_ARGO__TOKEN: it is missing, wrong or expired"
                if status == 401
                else "the token's service account needs the Role of infra/k8s/argo"
            )
            return IntegrationRejected(
                f"{self.where} refused to {verb} {what} ({status}): {said}; {hint}",
                upstream_status=status,
            )
        if status == 404:
            return NotFound(f"{self.where} has no {what}: {said}", upstream_status=status)
        if status == 409:
            return Conflict(f"{self.where} cannot {verb} {what}: {said}", upstream_status=status)
        if status in (400, 422):
            return InvalidRequest(
                f"{self.where} refused to {verb} {what}: {said}", upstream_status=status
            )
        if status in (408, 429) or status >= 500:
            return IntegrationUnavailable(
                f"{self.where} failed to {verb} {what} ({status}): {said}",
                upstream_status=status,
            )
        return IntegrationRejected(
            f"{self.where} refused to {verb} {what} ({status}): {said}", upstream_status=status
        )


def _import_hera() -> None:
    import hera.workflows  # noqa: F401 - the import is the point
    from hera.workflows import models  # noqa: F401


class _AnsweredError(Exception):
    """A non-success answer to a request the plugin makes itself (the log route)."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"status code {response.status_code}")
        self.response = response


def _argo_error(response: Any) -> tuple[int | None, str]:
    """The ``code`` and ``message`` of the Argo Server's error answer, else (None, "")."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    if isinstance(body.get("error"), dict):  # a streaming route's failure (grpc-gateway)
        body = {"code": body["error"].get("grpc_code"), "message": body["error"].get("message")}
    code = body.get("code")
    message = " ".join(str(body.get("message") or "").split())[:1000]
    return (code if isinstance(code, int) else None), message


def status_in_message(exc: BaseException) -> int | None:
    """The HTTP status a hera exception names in its message (it keeps no other record)."""
    found = _STATUS_IN_MESSAGE.search(str(exc))
    return int(found.group(1)) if found else None


def _what(name: str | None) -> str:
    return f"workflow {name!r}" if name else "workflows"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# -------------------------------------------------------------------------------------
# Secrets through the Kubernetes API
# -------------------------------------------------------------------------------------


class KubernetesSecrets:
    """The Secrets of one namespace: created, replaced, owned by their workflow, read."""

    def __init__(
        self, settings: ArgoSettings, *, service_account_dir: Path = SERVICE_ACCOUNT_DIR
    ) -> None:
        self.settings = settings
        self.service_account_dir = service_account_dir
        self._lock = threading.Lock()
        self._client: ApiClient | None = None
        self._core: CoreV1Api | None = None
        self.where = "the Kubernetes API"

    def check_configured(self) -> None:
        """Raise :class:`Conflict`, saying what to set, when the plugin has no way to the
        Kubernetes API."""
        if not self.settings.kubernetes_configured:
            raise Conflict(
                "this pipeline has a secret environment (a training job's token), which the "
                "Argo plugin hands to its pods in a Kubernetes Secret: set "
                "LLMOPS_ARGO__KUBERNETES_API_URL and LLMOPS_ARGO__KUBERNETES_TOKEN, or "
                "LLMOPS_ARGO__IN_CLUSTER=true",
                rule="argo-secrets",
            )

    def _api(self) -> CoreV1Api:
        from kubernetes.client import ApiClient, Configuration, CoreV1Api

        with self._lock:
            if self._core is None:
                configuration = Configuration()
                settings = self.settings
                if settings.kubernetes_api_url:
                    configuration.host = settings.kubernetes_api_url.rstrip("/")
                    token = settings.kubernetes_token
                    if token is not None:
                        configuration.api_key = {"authorization": token.get_secret_value()}
                        configuration.api_key_prefix = {"authorization": "Bearer"}
                elif settings.in_cluster:
                    from kubernetes.config.incluster_config import InClusterConfigLoader

                    folder = self.service_account_dir
                    try:
                        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
                            token_filename=str(folder / "token"),
                            cert_filename=str(folder / "ca.crt"),
                        )
                        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
                    except Exception as exc:
                        raise IntegrationUnavailable(
                            f"the pod's service account could not be read from {folder}: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                else:
                    self.check_configured()
                if settings.ca_cert is not None:
                    configuration.ssl_ca_cert = str(settings.ca_cert)
                if not settings.verify_ssl:
                    configuration.verify_ssl = False
                configuration.retries = 0
                self._client = ApiClient(configuration)
                self.where = f"the Kubernetes API at {configuration.host}"
                self._core = CoreV1Api(self._client)
            return self._core

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()  # type: ignore[no-untyped-call]
            self._client = self._core = None

    def _timeout(self) -> tuple[float, float]:
        limit = self.settings.request_timeout_seconds
        left = deadline_remaining(limit) or limit
        return connect_timeout(max(0.05, min(limit, left)))

    def put(
        self, name: str, namespace: str, values: dict[str, str], labels: dict[str, str]
    ) -> None:
        """Create the Secret; one of that name is deleted first (a redelivered submission
        carries a fresh job token). Only create, get, list and delete are used: the verbs
        of the platform's Role on secrets (infra/k8s/argo/llmops-rbac.yaml)."""
        from kubernetes.client import V1ObjectMeta, V1Secret

        api = self._api()
        body = V1Secret(
            api_version="v1",
            kind="Secret",
            type="Opaque",
            metadata=V1ObjectMeta(name=name, namespace=namespace, labels=labels),
            data={k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
        )

        def create() -> object:
            return api.create_namespaced_secret(namespace, body, _request_timeout=self._timeout())

        try:
            self._call("create", name, create)
        except Conflict:
            self.delete(name, namespace)
            self._call("create", name, create)

    def values(self, name: str, namespace: str) -> dict[str, str]:
        """The Secret's values (to scrub them out of logs); empty when it is gone."""
        api = self._api()
        try:
            secret = self._call(
                "read",
                name,
                lambda: api.read_namespaced_secret(
                    name, namespace, _request_timeout=self._timeout()
                ),
            )
        except NotFound:
            return {}
        data = getattr(secret, "data", None) or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

    def delete(self, name: str, namespace: str) -> None:
        api = self._api()
        try:
            self._call(
                "delete",
                name,
                lambda: api.delete_namespaced_secret(
                    name, namespace, _request_timeout=self._timeout()
                ),
            )
        except NotFound:
            return

    def _call(self, verb: str, name: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _kubernetes_message(exc)
            what = f"Secret {name!r}"
            if status == 404:
                raise NotFound(f"{self.where} has no {what}: {message}") from exc
            if status == 409:
                raise Conflict(f"{self.where} cannot {verb} {what}: {message}") from exc
            if status in (401, 403):
                raise IntegrationRejected(
                    f"{self.where} refused to {verb} {what} ({status}): {message}; the "
                    "platform's service account needs create, get, list and delete on "
                    "secrets in the workflows' namespace",
                    upstream_status=status,
                ) from exc
            if status in (400, 422):
                raise InvalidRequest(f"{self.where} refused {what}: {message}") from exc
            raise IntegrationUnavailable(
                f"{self.where} failed to {verb} {what} ({status}): {message}",
                upstream_status=status,
            ) from exc
        except LlmopsError:
            raise
        except Exception as exc:  # urllib3: refused, reset, timed out, TLS
            raise IntegrationUnavailable(
                f"{self.where} is unreachable ({verb} Secret {name!r}): {_reason(exc)}"
            ) from exc


def _kubernetes_message(exc: Any) -> str:
    """The message of the Kubernetes Status answered, else the reason phrase."""
    body = getattr(exc, "body", None)
    try:
        parsed = json.loads(body) if body else None
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        return " ".join(str(parsed["message"]).split())[:1000]
    return _phrase(int(getattr(exc, "status", 0) or 0))
