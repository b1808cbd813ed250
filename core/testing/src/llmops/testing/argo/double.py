"""The Argo Server double: the Argo Server's REST API for workflows, its workflow
controller and the cluster's Secrets API. See the package's docstring for what is
modelled."""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets as token_source
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from llmops.capabilities.common import utcnow
from llmops.testing.argo import errors
from llmops.testing.argo.controller import WorkflowController, generate_name, pod_name
from llmops.testing.argo.errors import ArgoApiError, GrpcCode, invalid_argument
from llmops.testing.argo.schema import (
    argo_schemas,
    check_workflow_metadata,
    check_workflow_semantics,
)
from llmops.testing.argo.secrets import KubernetesSecretsApi
from llmops.testing.argo.server import ArgoHttpServer, IncomingRequest, StreamReply
from llmops.testing.doubles import Fault, RecordedRequest, Reply
from llmops.testing.kubernetes.api_errors import ApiStatusError
from llmops.testing.kubernetes.patching import field_matcher, label_matcher

__all__ = ["ArgoServerDouble", "running_argo_server"]

#: The Argo version the double answers ``/api/v1/version`` with.
ARGO_VERSION = "v3.6.2"
_WORKFLOWS = "/api/v1/workflows/{namespace}"
_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = [
    # (method, path regex, swagger path, handler name)
    ("GET", re.compile(r"/api/v1/info"), "/api/v1/info", "_info"),
    ("GET", re.compile(r"/api/v1/version"), "/api/v1/version", "_version"),
    ("GET", re.compile(r"/api/v1/userinfo"), "/api/v1/userinfo", "_userinfo"),
    ("GET", re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)"), _WORKFLOWS, "_list"),
    ("POST", re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)"), _WORKFLOWS, "_create"),
    (
        "POST",
        re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)/lint"),
        _WORKFLOWS + "/lint",
        "_lint",
    ),
    (
        "GET",
        re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)/(?P<name>[^/]+)"),
        _WORKFLOWS + "/{name}",
        "_get",
    ),
    (
        "DELETE",
        re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)/(?P<name>[^/]+)"),
        _WORKFLOWS + "/{name}",
        "_delete",
    ),
    (
        "GET",
        re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)/(?P<name>[^/]+)/log"),
        _WORKFLOWS + "/{name}/log",
        "_logs",
    ),
    (
        "GET",
        re.compile(r"/api/v1/workflows/(?P<namespace>[^/]+)/(?P<name>[^/]+)/(?P<pod>[^/]+)/log"),
        _WORKFLOWS + "/{name}/{podName}/log",
        "_logs",
    ),
    *(
        (
            "PUT",
            re.compile(rf"/api/v1/workflows/(?P<namespace>[^/]+)/(?P<name>[^/]+)/{action}"),
            f"{_WORKFLOWS}/{{name}}/{action}",
            f"_{action}",
        )
        for action in ("retry", "stop", "terminate", "resubmit", "resume", "suspend", "set")
    ),
]


class ArgoServerDouble:
    """An Argo Server (``auth_mode`` ``client``: a bearer token is required; ``server``:
    any request is accepted, as by a misconfigured server), its workflow controller and
    the cluster's Secrets API, on 127.0.0.1. ``token`` None makes one up; ``work_dir`` None
    uses a temporary folder, removed at :meth:`stop`. ``strict`` refuses fields Argo's
    schema does not know (a real server drops them)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        namespace: str = "argo",
        auth_mode: str = "client",
        run_commands: bool = True,
        task_seconds: float = 0.05,
        tick_seconds: float = 0.02,
        work_dir: Path | None = None,
        strict: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        if auth_mode not in ("client", "server"):
            raise ValueError(f"auth_mode is 'client' or 'server', not {auth_mode!r}")
        self.namespace = namespace
        self.auth_mode = auth_mode
        self.strict = strict
        self.host = host
        self._initial = (token or f"argo-{token_source.token_hex(16)}", auth_mode, task_seconds)
        self._token = self._initial[0]
        self._token_expired = False
        self._slow = 0.0
        self._given_work_dir = work_dir
        self._work_dir: Path | None = None
        self._record_lock = threading.Lock()
        self._requests: list[tuple[str, str]] = []
        self._recorded: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._stopping = threading.Event()
        self._http = ArgoHttpServer(self._dispatch, host=host)
        self._secrets = KubernetesSecretsApi(
            namespaces=[namespace], authorized=self._secrets_authorized, host=host
        )
        self._controller = WorkflowController(
            secrets=self._secrets,
            work_dir=Path(tempfile.gettempdir()),
            run_commands=run_commands,
            task_seconds=task_seconds,
            tick_seconds=tick_seconds,
        )
        self._started = False

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("the Argo Server double is already running")
        argo_schemas()  # read and compile the schemas now, not in the first request
        if self._given_work_dir is not None:
            self._work_dir = Path(self._given_work_dir)
            self._work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="argo-double-"))
        self._controller.work_dir = self._work_dir
        self._stopping.clear()
        self._secrets.start()
        self._http.start()
        self._controller.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop everything: the processes of running pods are killed."""
        if not self._started:
            return
        self._started = False
        self._stopping.set()
        self._controller.stop()
        self._http.stop()
        self._secrets.up()
        self._secrets.stop()
        if self._given_work_dir is None and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback_: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to a fresh double: no workflows (their processes killed), no Secrets, no
        faults, the first token, both APIs up, the request log empty."""
        self._controller.clear()
        self._secrets.reset()
        self._token, self.auth_mode, task_seconds = self._initial
        self._token_expired = False
        self._slow = 0.0
        self._controller.task_seconds = task_seconds
        self.up()
        self.kubernetes_up()
        with self._record_lock:
            self._requests.clear()
            self._recorded.clear()
            self._errors.clear()

    # -- where it is ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Argo Server: ``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self._http.port}"

    @property
    def kubernetes_url(self) -> str:
        """The cluster's core API (Secrets only)."""
        return f"http://{self.host}:{self._secrets.port}"

    @property
    def token(self) -> str:
        """The bearer token both APIs accept (until :meth:`expire_token`)."""
        return self._token

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the Argo Server double is not running; call start() first")
        return self._work_dir

    # -- what tests read ---------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request the Argo Server received, oldest first."""
        with self._record_lock:
            return list(self._requests)

    @property
    def recorded(self) -> list[RecordedRequest]:
        """Every request the Argo Server received, with query, headers and body."""
        with self._record_lock:
            return list(self._recorded)

    @property
    def kubernetes_requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request the Secrets API received."""
        return [(r.method, r.path) for r in self._secrets.requests]

    def clear_requests(self) -> None:
        with self._record_lock:
            self._requests.clear()
            self._recorded.clear()

    def workflows(self) -> list[dict[str, Any]]:
        """The stored Workflow objects (copies, as the API returns them), oldest first."""
        with self._controller.lock:
            runs = sorted(self._controller.runs.values(), key=lambda r: r.created_order)
            return [copy.deepcopy(run.obj) for run in runs]

    def workflow(self, name: str) -> dict[str, Any] | None:
        """One stored Workflow (a copy), or None."""
        with self._controller.lock:
            run = self._controller.runs.get((self.namespace, name))
            return copy.deepcopy(run.obj) if run is not None else None

    def secrets(self) -> list[dict[str, Any]]:
        """The Secrets of the namespace (copies), by name."""
        return self._secrets.secrets(self.namespace)

    def wait_for_workflow(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The workflow once ``predicate(workflow)`` holds (a copy).

        :raises AssertionError: after ``timeout`` s, with the phase last seen.
        """
        deadline = time.monotonic() + timeout
        with self._controller.lock:
            while True:
                run = self._controller.runs.get((self.namespace, name))
                if run is not None and predicate(run.obj):
                    return copy.deepcopy(run.obj)
                left = deadline - time.monotonic()
                if left <= 0:
                    phase = None if run is None else run.status.get("phase")
                    raise AssertionError(
                        f"workflow {name} did not reach the awaited state within {timeout:g} s "
                        f"(phase {phase!r})"
                    )
                self._controller.lock.wait(min(left, 0.1))

    def wait_until_completed(self, name: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """The workflow once the controller has finished it (a copy)."""
        return self.wait_for_workflow(
            name,
            lambda wf: (
                wf.get("metadata", {}).get("labels", {}).get("workflows.argoproj.io/completed")
                == "true"
            ),
            timeout=timeout,
        )

    @property
    def errors(self) -> list[str]:
        """Tracebacks of handler or controller crashes: bugs in the double."""
        with self._record_lock:
            return [*self._errors, *self._controller.errors, *self._secrets.errors]

    def check_errors(self) -> None:
        """Raise AssertionError if the double crashed anywhere since the last reset."""
        found = self.errors
        if found:
            raise AssertionError(
                f"the Argo Server double crashed {len(found)} time(s):\n{found[0]}"
            )

    # -- faults and knobs --------------------------------------------------------------------

    def fail_task(
        self,
        task: str,
        *,
        times: int | None = 1,
        exit_code: int = 1,
        message: str | None = None,
    ) -> None:
        """The next ``times`` attempts (None: every one) of DAG tasks named ``task`` fail
        with ``exit_code`` without running their command; the node's message is
        ``message`` or Argo's ``Error (exit code N)``."""
        if exit_code == 0:
            raise ValueError("a failing attempt exits non-zero")
        self._controller.fail_task(task, times, exit_code, message)

    def set_task_seconds(self, seconds: float) -> None:
        """How long a container takes when commands are not run."""
        with self._controller.lock:
            self._controller.task_seconds = max(0.0, seconds)

    def slow(self, seconds: float) -> None:
        """Every answer of both APIs waits ``seconds`` first (0: answer at once)."""
        self._slow = max(0.0, seconds)
        self._secrets.clear_faults()
        if self._slow:
            self._secrets.inject(Fault(delay=self._slow))

    def expire_token(self) -> None:
        """The token stops being valid: every request is 401 until :meth:`set_token`
        (except on an Argo Server in ``server`` auth mode, which ignores tokens)."""
        self._token_expired = True

    def set_token(self, token: str) -> None:
        """A new token, the only one accepted from now on."""
        if not token:
            raise ValueError("a token is a non-empty string")
        self._token = token
        self._token_expired = False

    def delete_workflow(self, name: str) -> None:
        """The workflow vanishes, as when garbage collected (its Secrets go with it).

        :raises LookupError: when the double holds no such workflow.
        """
        try:
            self._controller.delete(self.namespace, name)
        except ArgoApiError as error:
            raise LookupError(error.message) from None

    def down(self) -> None:
        """The Argo Server refuses connections (listening socket and open connections
        closed); the controller and the Secrets API go on."""
        self._http.stop()

    def up(self) -> None:
        """The Argo Server serves again, on the same port."""
        if self._started:
            self._http.start()

    def kubernetes_down(self) -> None:
        """The cluster's core API refuses connections (the Argo Server goes on)."""
        self._secrets.down()

    def kubernetes_up(self) -> None:
        self._secrets.up()

    # -- HTTP: plumbing ----------------------------------------------------------------------

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        header = str(headers.get("authorization", ""))
        return not self._token_expired and header == f"Bearer {self._token}"

    def _secrets_authorized(self, request: RecordedRequest) -> bool:
        return self._authorized(request.headers)

    def _dispatch(self, request: IncomingRequest, gone: Callable[[], bool]) -> Reply | StreamReply:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            json=_json(request.body),
            received_at=utcnow(),
        )
        with self._record_lock:
            self._requests.append((request.method, request.path))
            self._recorded.append(recorded)
        if self._slow:
            self._stopping.wait(self._slow)
        matched = _match(request.method, request.path)
        streaming = matched is not None and matched[2] == "_logs"
        try:
            if self.auth_mode == "client" and not self._authorized(request.headers):
                raise errors.unauthenticated()
            if matched is None:
                raise _no_route(request.method, request.path)
            swagger_path, params, handler_name = matched
            namespace = params.get("namespace")
            if namespace is not None and namespace != self.namespace:
                verb = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete"}
                raise errors.forbidden(
                    "list" if handler_name == "_list" else verb.get(request.method, "get"),
                    namespace,
                    f"system:serviceaccount:{self.namespace}:argo-server-client",
                )
            query = argo_schemas().check_query(request.method, swagger_path, request.query)
            handler: Callable[..., Reply | StreamReply] = getattr(self, handler_name)
            return handler(recorded, query, gone, **params)
        except ArgoApiError as error:
            if streaming:
                return Reply(
                    status=error.http_status,
                    body=json.dumps(error.stream_body()).encode() + b"\n",
                    headers={"Content-Type": "application/json"},
                )
            return error.reply()
        except Exception:
            with self._record_lock:
                self._errors.append(traceback.format_exc())
            return ArgoApiError(
                GrpcCode.INTERNAL, "the Argo Server double crashed; see its errors"
            ).reply()

    def _body(self, request: RecordedRequest, definition: str) -> dict[str, Any]:
        if request.json is None and request.body.strip():
            raise invalid_argument("invalid character in the request body: it is not JSON")
        body = request.json if request.json is not None else {}
        argo_schemas().check_body(definition, body)
        return copy.deepcopy(body)

    # -- HTTP: info ---------------------------------------------------------------------------

    def _info(self, request: RecordedRequest, query: dict[str, Any], gone: Any) -> Reply:
        return _reply(
            {
                "managedNamespace": self.namespace,
                "links": [],
                "columns": [],
                "navColor": "",
                "modals": {},
            }
        )

    def _version(self, request: RecordedRequest, query: dict[str, Any], gone: Any) -> Reply:
        return _reply(
            {
                "version": ARGO_VERSION,
                "buildDate": "2024-12-05T10:23:47Z",
                "gitCommit": "f016ad89eb" + "0" * 30,
                "gitTag": ARGO_VERSION,
                "gitTreeState": "clean",
                "goVersion": "go1.23.3",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        )

    def _userinfo(self, request: RecordedRequest, query: dict[str, Any], gone: Any) -> Reply:
        if self.auth_mode == "server":
            return _reply({})
        return _reply(
            {
                "subject": f"system:serviceaccount:{self.namespace}:argo-server-client",
                "serviceAccountName": "argo-server-client",
                "serviceAccountNamespace": self.namespace,
            }
        )

    # -- HTTP: workflows ----------------------------------------------------------------------

    def _create(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str
    ) -> Reply:
        body = self._body(request, "WorkflowCreateRequest")
        workflow = self._admit(body.get("workflow"), namespace, runnable=True)
        options = body.get("createOptions") or {}
        dry_run = bool(body.get("serverDryRun")) or "All" in (options.get("dryRun") or [])
        return _reply(self._controller.create(workflow, dry_run=dry_run))

    def _lint(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str
    ) -> Reply:
        body = self._body(request, "WorkflowLintRequest")
        return _reply(self._admit(body.get("workflow"), namespace, runnable=False))

    def _admit(self, workflow: Any, namespace: str, *, runnable: bool) -> dict[str, Any]:
        """A Workflow through every check the Argo Server (and the Kubernetes API behind
        it) makes; named (``generateName`` expanded) unless linting."""
        if workflow is None:
            raise invalid_argument("workflow body not specified")
        argo_schemas().check_workflow(workflow, strict=self.strict)
        workflow = copy.deepcopy(workflow)
        workflow.pop("status", None)
        workflow.setdefault("apiVersion", "argoproj.io/v1alpha1")
        workflow.setdefault("kind", "Workflow")
        metadata = workflow.setdefault("metadata", {})
        if metadata.get("namespace") not in (None, "", namespace):
            raise invalid_argument(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        check_workflow_semantics(workflow, runnable=runnable)
        for key in _SERVER_FIELDS:
            metadata.pop(key, None)
        metadata["namespace"] = namespace
        generated = not metadata.get("name") and isinstance(metadata.get("generateName"), str)
        if generated:
            metadata["name"] = generate_name(metadata["generateName"])
        check_workflow_metadata(workflow)
        if generated and not runnable:
            del metadata["name"]  # lint answers the workflow as sent
        return workflow  # type: ignore[no-any-return]

    def _get(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str, name: str
    ) -> Reply:
        with self._controller.lock:
            obj = copy.deepcopy(self._controller.get(namespace, name).obj)
        uid = query.get("uid")
        if uid and obj["metadata"]["uid"] != uid:
            raise errors.workflow_not_found(name)
        return _reply(_select_fields(obj, query.get("fields")))

    def _list(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str
    ) -> Reply:
        try:
            labels = label_matcher(query.get("listOptions.labelSelector"))
            fields = field_matcher(query.get("listOptions.fieldSelector"))
        except ApiStatusError as error:
            raise invalid_argument(error.message) from None
        limit = _int_or_zero(query.get("listOptions.limit"))
        after = _continue_from(query.get("listOptions.continue"))
        with self._controller.lock:
            runs = sorted(
                (
                    run
                    for run in self._controller.runs.values()
                    if run.namespace == namespace
                    and labels(run.obj["metadata"].get("labels") or {})
                    and fields(run.obj)
                    and (after is None or run.created_order < after)
                ),
                key=lambda r: -r.created_order,
            )
            token: str | None = None
            if limit and len(runs) > limit:
                runs = runs[:limit]
                token = base64.urlsafe_b64encode(
                    json.dumps({"before": runs[-1].created_order}).encode()
                ).decode()
            items = [copy.deepcopy(run.obj) for run in runs]
            metadata: dict[str, Any] = {"resourceVersion": self._controller.resource_version}
        if token is not None:
            metadata["continue"] = token
        document = {"metadata": metadata, "items": items or None}
        return _reply(_select_fields(document, query.get("fields")))

    def _delete(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str, name: str
    ) -> Reply:
        self._controller.delete(namespace, name)
        return _reply({})

    def _retry(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str, name: str
    ) -> Reply:
        body = self._body(request, "WorkflowRetryRequest")
        return _reply(
            self._controller.retry(
                namespace,
                name,
                restart_successful=bool(body.get("restartSuccessful")),
                node_selector=body.get("nodeFieldSelector"),
            )
        )

    def _stop(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str, name: str
    ) -> Reply:
        self._body(request, "WorkflowStopRequest")
        return _reply(self._controller.shut_down(namespace, name, "Stop"))

    def _terminate(
        self, request: RecordedRequest, query: dict[str, Any], gone: Any, namespace: str, name: str
    ) -> Reply:
        self._body(request, "WorkflowTerminateRequest")
        return _reply(self._controller.shut_down(namespace, name, "Terminate"))

    def _not_modelled(self, request: RecordedRequest, *args: Any, **params: str) -> Reply:
        raise errors.unimplemented(
            f"the Argo Server double does not model {request.path.rsplit('/', 1)[-1]}"
        )

    _resubmit = _resume = _suspend = _set = _not_modelled

    # -- HTTP: logs -------------------------------------------------------------------------

    def _logs(
        self,
        request: RecordedRequest,
        query: dict[str, Any],
        gone: Callable[[], bool],
        namespace: str,
        name: str,
        pod: str | None = None,
    ) -> StreamReply:
        with self._controller.lock:
            self._controller.get(namespace, name)  # NotFound before the stream starts
        wanted = pod or query.get("podName") or None
        container = query.get("logOptions.container") or "main"
        grep = query.get("grep")
        pattern = re.compile(grep) if grep else None
        return StreamReply(
            chunks=self._log_lines(
                namespace,
                name,
                wanted,
                main=container == "main",
                follow=bool(query.get("logOptions.follow")),
                tail=_int_or_none(query.get("logOptions.tailLines")),
                limit=_int_or_none(query.get("logOptions.limitBytes")),
                pattern=pattern,
                gone=gone,
            )
        )

    def _log_lines(
        self,
        namespace: str,
        name: str,
        wanted: str | None,
        *,
        main: bool,
        follow: bool,
        tail: int | None,
        limit: int | None,
        pattern: re.Pattern[str] | None,
        gone: Callable[[], bool],
    ) -> Iterator[bytes]:
        """grpc-gateway's stream of LogEntry results, one JSON object per line."""
        sent: dict[str, int] = {}
        first: set[str] = set()
        while True:
            with self._controller.lock:
                run = self._controller.runs.get((namespace, name))
                if run is None:
                    return
                pods = [
                    (pod, log) for pod, log in run.pods.items() if wanted is None or pod == wanted
                ]
                finished = run.finished
                chunks = []
                all_ended = True
                for pod, log in pods:
                    ended = log.ended  # read first: an ended pod's output is complete
                    all_ended = all_ended and ended
                    offset = sent.get(pod, 0)
                    data = log.read(offset) if main else b""
                    # while following a running pod, only whole lines go out
                    size = len(data) if ended or not follow else data.rfind(b"\n") + 1
                    if size <= 0:
                        continue
                    new = data[:size]
                    sent[pod] = offset + size
                    if pod not in first:
                        first.add(pod)
                        new = _trim(new, limit, tail)
                    chunks.append((pod, new))
            for pod, new in chunks:
                for line in new.decode("utf-8", "replace").splitlines():
                    if pattern is None or pattern.search(line):
                        yield _log_entry(pod, line)
            if not follow:
                return
            pod_done = wanted is not None and bool(pods) and all_ended
            if (finished and all_ended) or pod_done or gone() or self._stopping.is_set():
                return
            self._controller.wait(self._controller.tick_seconds)

    # -- helpers for tests ------------------------------------------------------------------

    def pod_names(self, workflow: str) -> dict[str, str]:
        """Node id -> pod name, for the Pod nodes of a workflow."""
        found = self.workflow(workflow)
        if found is None:
            raise LookupError(f"no workflow {workflow}")
        return {
            node["id"]: pod_name(workflow, node["name"], node["templateName"])
            for node in (found.get("status") or {}).get("nodes", {}).values()
            if node.get("type") == "Pod"
        }


@contextmanager
def running_argo_server(
    *,
    token: str | None = None,
    namespace: str = "argo",
    auth_mode: str = "client",
    run_commands: bool = True,
    task_seconds: float = 0.05,
    tick_seconds: float = 0.02,
    work_dir: Path | None = None,
    strict: bool = True,
) -> Iterator[ArgoServerDouble]:
    """A started :class:`ArgoServerDouble`, stopped (its pods killed) at the end."""
    double = ArgoServerDouble(
        token=token,
        namespace=namespace,
        auth_mode=auth_mode,
        run_commands=run_commands,
        task_seconds=task_seconds,
        tick_seconds=tick_seconds,
        work_dir=work_dir,
        strict=strict,
    )
    with double:
        yield double


# -----------------------------------------------------------------------------------------


def _match(method: str, path: str) -> tuple[str, dict[str, str], str] | None:
    for route_method, regex, swagger_path, handler in _ROUTES:
        found = regex.fullmatch(path)
        if found is not None and route_method == method:
            return swagger_path, found.groupdict(), handler
    return None


def _no_route(method: str, path: str) -> ArgoApiError:
    if any(regex.fullmatch(path) for _, regex, _, _ in _ROUTES):
        return ArgoApiError(GrpcCode.UNIMPLEMENTED, "Method Not Allowed")
    return ArgoApiError(GrpcCode.NOT_FOUND, "Not Found")


def _reply(value: Any) -> Reply:
    return Reply(
        status=200,
        body=json.dumps(value, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json"},
    )


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _log_entry(pod: str, line: str) -> bytes:
    return json.dumps({"result": {"content": line, "podName": pod}}).encode() + b"\n"


def _trim(data: bytes, limit: int | None, tail: int | None) -> bytes:
    """``limitBytes`` (the first bytes) then ``tailLines`` (the last lines), as the
    kubelet applies them."""
    if limit is not None and limit >= 0:
        data = data[:limit]
    if tail is not None and tail >= 0:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail else b""
    return data


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_argument(f"invalid integer: {value}") from None


def _int_or_zero(value: Any) -> int:
    number = _int_or_none(value)
    return number if number is not None and number > 0 else 0


def _continue_from(token: Any) -> int | None:
    if not token:
        return None
    try:
        return int(json.loads(base64.urlsafe_b64decode(str(token).encode()))["before"])
    except (ValueError, KeyError, TypeError):
        raise invalid_argument("The provided continue parameter is too old or malformed") from None


def _select_fields(document: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """The Argo Server's ``fields`` parameter: ``a.b,c`` keeps only those paths,
    ``-a.b,c`` drops them (lists are walked through)."""
    if not fields:
        return document
    exclude = fields.startswith("-")
    paths = [p.strip().split(".") for p in fields.lstrip("-").split(",") if p.strip()]
    if exclude:
        for path in paths:
            _drop(document, path)
        return document
    kept: dict[str, Any] = {}
    for path in paths:
        _keep(document, kept, path)
    return kept


def _drop(value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _drop(item, path)
    elif isinstance(value, dict) and path and path[0] in value:
        if len(path) == 1:
            del value[path[0]]
        else:
            _drop(value[path[0]], path[1:])


def _keep(source: Any, target: dict[str, Any], path: list[str]) -> None:
    if not isinstance(source, dict) or not path or path[0] not in source:
        return
    key, value = path[0], source[path[0]]
    if len(path) == 1:
        target[key] = copy.deepcopy(value)
    elif isinstance(value, list):
        existing = target.setdefault(key, [{} for _ in value])
        for item, into in zip(value, existing, strict=False):
            _keep(item, into, path[1:])
    elif isinstance(value, dict):
        _keep(value, target.setdefault(key, {}), path[1:])
