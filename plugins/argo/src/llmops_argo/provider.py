"""The orchestration provider: platform pipelines as Argo Workflows.

``submit`` builds the workflow (:mod:`llmops_argo.workflow`), lints it through the Argo
Server, looks for a workflow carrying the submission's idempotency key (a redelivered
submission finds the one it made before a crash: exactly once) and only then creates it.
A secret environment goes into a Kubernetes Secret labelled with its workflow, which the
stages read with ``secretKeyRef`` and which is deleted once the run is seen to end (the
platform's Role on secrets has no patch, so no owner reference). ``status`` is one
request: the workflow, mapped by :mod:`llmops_argo.status`. A workflow that is gone from
Argo is reported failed, saying so; a refused token is an error, never a stage's state.

The platform keeps ``<namespace>/<name>`` as a run's external id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.orchestration import (
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageLog,
    StageState,
    validate_pipeline,
)
from llmops.deadlines import deadline_remaining
from llmops.errors import (
    Conflict,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)
from llmops_argo.client import ArgoServer, KubernetesSecrets
from llmops_argo.status import (
    attempts_of,
    external_id,
    pipeline_status,
    pod_name,
    task_node,
    tasks_of,
    vanished,
    workflow_link,
)
from llmops_argo.workflow import (
    KEY_ANNOTATION,
    MANAGED_BY,
    MANAGED_LABEL,
    SECRET_ANNOTATION,
    WORKFLOW_LABEL,
    BuiltWorkflow,
    build_workflow,
    secret_name,
)

if TYPE_CHECKING:
    from hera.workflows.models import Workflow as WorkflowModel

    from llmops_argo.settings import ArgoSettings

log = logging.getLogger(__name__)

#: How many runs' secret values and deleted Secrets the provider remembers.
REMEMBERED_RUNS = 4096
#: Seconds between two reads of a workflow while cancel waits for it to stop.
CANCEL_POLL_SECONDS = 0.1
#: Values shorter than this are not scrubbed out of logs (they would destroy them).
MIN_SCRUBBED = 6
MASK = "[redacted]"


class ArgoOrchestrator:
    """An :class:`~llmops.capabilities.orchestration.OrchestrationProvider` on one Argo
    Server and namespace. Thread-safe; every request keeps to the call's deadline."""

    honours_deadline = True

    def __init__(
        self,
        settings: ArgoSettings,
        *,
        server: ArgoServer | None = None,
        secrets: KubernetesSecrets | None = None,
    ) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self.server = server or ArgoServer(settings)
        #: what the plugin's collector reports (:mod:`llmops_argo.metrics`)
        self.metrics = self.server.metrics
        self.secrets = secrets or KubernetesSecrets(settings)
        self._lock = threading.Lock()
        #: secret values of the runs this process submitted, by Secret, for their logs
        self._scrub: OrderedDict[str, list[str]] = OrderedDict()
        #: the Secrets this process deleted (their runs ended), oldest first
        self._dropped: OrderedDict[str, None] = OrderedDict()

    # -- OrchestrationProvider ---------------------------------------------------------

    def submit(self, spec: PipelineSpec) -> PipelineStatus:
        validate_pipeline(spec)
        built = build_workflow(
            spec,
            namespace=self.namespace,
            default_image=self.settings.default_image,
            service_account=self.settings.service_account,
        )
        if spec.secret_env:
            self.secrets.check_configured()
        self.server.lint(built.model, self.namespace)
        if built.secret is not None:
            # a redelivery replaces the values: its job token is fresh (the first one
            # died with the delivery that minted it), for the pods not started yet
            self._put_secret(built, spec)
        try:
            created = self.server.create(built.model, self.namespace)
            outcome = "created"
        except Conflict:
            # The name comes from the key: an earlier delivery of this submission made
            # the workflow (its answer lost, a crash, a timeout) or one racing it did.
            # Reading it back by name is the look-up by key, at no cost on a first
            # delivery; the annotation tells it from another workflow of that name.
            created = self.server.get(built.name, self.namespace)
            if spec.idempotency_key is None or _key_of(created) != spec.idempotency_key:
                raise
            outcome = "existing"
        self.metrics.submissions.labels(outcome).inc()
        return self._status(created)

    def status(self, external_id: str) -> PipelineStatus:
        namespace, name = self._split(external_id)
        try:
            workflow = self.server.get(name, namespace)
        except NotFound:
            self._drop_secret(namespace, secret_name(name))
            self.metrics.forget(external_id)
            return vanished(external_id)
        status = self._status(workflow)
        if status.state.terminal:
            secret = (workflow.metadata.annotations or {}).get(SECRET_ANNOTATION)
            if secret is not None:
                self._drop_secret(namespace, secret)
        return status

    def logs(
        self, external_id: str, *, stage: str | None = None, tail_bytes: int | None = None
    ) -> list[StageLog]:
        """Each stage's log in the spec's order (or one stage's): its attempts' pods' main
        containers, oldest first, each after a ``--- attempt i/n ---`` line."""
        namespace, name = self._split(external_id)
        workflow = self._read(external_id, namespace, name)
        tasks = tasks_of(workflow)
        wanted = [(t, s) for t, s in tasks.items() if stage is None or s == stage]
        if stage is not None and not wanted:
            raise NotFound(f"run {external_id} has no stage {stage!r}", stage=stage)
        scrub = self._secret_values(workflow)
        logs = []
        for task, stage_name in wanted:
            text, truncated = self._stage_log(workflow, task, tail_bytes)
            for value in scrub:
                text = text.replace(value, MASK)
            logs.append(StageLog(stage=stage_name, text=text, truncated=truncated))
        return logs

    def retry(self, external_id: str) -> PipelineStatus:
        """Argo's retry of the failed nodes: succeeded ones are kept."""
        namespace, name = self._split(external_id)
        workflow = self._read(external_id, namespace, name)
        current = self._status(workflow)
        if current.state not in (PipelineState.FAILED, PipelineState.CANCELLED):
            raise Conflict(
                f"run {external_id} is {current.state}; only failed or cancelled runs can be "
                "retried",
                state=current.state,
            )
        secret = (workflow.metadata.annotations or {}).get(SECRET_ANNOTATION)
        if secret is not None and not self._secret_exists(namespace, secret):
            raise Conflict(
                f"run {external_id} needs its secret environment, whose Secret {secret!r} "
                "was deleted when the run ended (a training job's token dies with it): "
                "submit the pipeline again",
                secret=secret,
            )
        return self._status(self.server.retry(name, namespace))

    def cancel(self, external_id: str) -> PipelineStatus:
        """Argo's stop (exit handlers run); the workflow is terminated when nodes still
        run after ``cancel_grace_seconds`` (within the call's deadline). An ended run is
        left as it is."""
        namespace, name = self._split(external_id)
        workflow = self._read(external_id, namespace, name)
        if self._status(workflow).state.terminal:
            return self._status(workflow)
        workflow = self._shut_down(self.server.stop, name, namespace)
        grace = self.settings.cancel_grace_seconds
        left = deadline_remaining()
        if left is not None:
            grace = min(grace, max(0.0, left * 0.5))
        until = time.monotonic() + grace
        while _running(self._status(workflow)) and time.monotonic() < until:
            time.sleep(min(CANCEL_POLL_SECONDS, max(0.0, until - time.monotonic())))
            workflow = self.server.get(name, namespace)
        if _running(self._status(workflow)):
            workflow = self._shut_down(self.server.terminate, name, namespace)
        return self._status(workflow)

    def _shut_down(
        self, action: Callable[[str, str], WorkflowModel], name: str, namespace: str
    ) -> WorkflowModel:
        """Stop or terminate; a workflow that ended meanwhile (Argo: "cannot shutdown a
        completed workflow") is read back as it ended."""
        try:
            return action(name, namespace)
        except InvalidRequest:
            workflow = self.server.get(name, namespace)
            if self._status(workflow).state.terminal:
                return workflow
            raise

    def ui_url(self, external_id: str) -> str | None:
        namespace, name = self._split(external_id)
        return workflow_link(self.settings.ui_base, namespace, name)

    def health(self) -> Health:
        """List one workflow with the token (reachable, token accepted, namespace
        readable), then without it: an Argo Server that answers that too runs in
        ``server`` auth mode, where anyone who reaches it may submit workflows."""
        started = time.perf_counter()

        def answer(status: HealthStatus, detail: str) -> Health:
            return Health(
                status=status, latency_ms=(time.perf_counter() - started) * 1000, detail=detail
            )

        where = self.server.where
        try:
            with_token = self.server.probe(with_token=True)
            if with_token in (401, 403):
                hint = (
                    "check LLMOPS_ARGO__TOKEN"
                    if with_token == 401
                    else "the token's service account needs the Role of infra/k8s/argo"
                )
                return answer(
                    HealthStatus.DOWN, f"{where} refused the token ({with_token}); {hint}"
                )
            if with_token >= 300:
                return answer(HealthStatus.DOWN, f"{where} answered the check with {with_token}")
            without = self.server.probe(with_token=False)
        except LlmopsError as exc:
            return answer(HealthStatus.DOWN, exc.detail)
        if without < 300:
            return answer(
                HealthStatus.DEGRADED,
                f"{where} accepts requests without a token (auth mode 'server'): anyone who "
                "reaches it may run workflows; run it with --auth-mode=client",
            )
        return answer(HealthStatus.OK, f"{where}, namespace {self.namespace!r}")

    def translate_error(self, exc: BaseException) -> LlmopsError | None:
        """hera's and requests' errors that escaped the client (it translates its own)."""
        import requests

        if isinstance(exc, requests.RequestException):
            return IntegrationUnavailable(f"{self.server.where} is unreachable: {exc}")
        from hera.exceptions import HeraException

        if isinstance(exc, HeraException):
            from llmops_argo.client import status_in_message

            status = status_in_message(exc)
            if status is not None:
                return self.server.refusal_status(status, str(exc), "call", None)
        return None

    def close(self) -> None:
        self.server.close()
        self.secrets.close()

    # -- helpers ---------------------------------------------------------------------

    def _split(self, external: str) -> tuple[str, str]:
        namespace, sep, name = external.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise NotFound(f"{external!r} is not the id of an Argo workflow run", id=external)
        return namespace, name

    def _read(self, external: str, namespace: str, name: str) -> WorkflowModel:
        try:
            return self.server.get(name, namespace)
        except NotFound as exc:
            raise NotFound(
                f"the workflow of run {external} is gone from Argo (deleted or garbage collected)",
                id=external,
            ) from exc

    def _status(self, workflow: WorkflowModel) -> PipelineStatus:
        namespace = workflow.metadata.namespace or self.namespace
        if workflow.metadata.name:
            phase = workflow.status.phase if workflow.status else None
            self.metrics.saw(external_id(namespace, workflow.metadata.name), phase)
        return pipeline_status(workflow, namespace=namespace, ui_base=self.settings.ui_base)

    def _put_secret(self, built: BuiltWorkflow, spec: PipelineSpec) -> None:
        assert built.secret is not None
        values = {k: v.get_secret_value() for k, v in spec.secret_env.items()}
        self.secrets.put(
            built.secret,
            self.namespace,
            values,
            {MANAGED_LABEL: MANAGED_BY, WORKFLOW_LABEL: built.name},
        )
        self._remember_secret(built.secret, values.values())

    def _remember_secret(self, secret: str, values: Iterable[str]) -> None:
        with self._lock:
            self._scrub[secret] = _scrubbed(values)
            self._scrub.move_to_end(secret)
            self._dropped.pop(secret, None)
            while len(self._scrub) > REMEMBERED_RUNS:
                self._scrub.popitem(last=False)

    def _drop_secret(self, namespace: str, secret: str) -> None:
        """Delete the Secret of a run that ended or vanished, once per process: its
        values (a job token, revoked by the platform now) have no reader left."""
        if not self.settings.kubernetes_configured:
            return
        with self._lock:
            if secret in self._dropped:
                return
        try:
            self.secrets.delete(secret, namespace)
        except LlmopsError as exc:
            # the run's state is what the caller asked for: it is answered; the Secret is
            # tried again on the next read, and its job token is revoked by the platform
            log.warning("could not delete Secret %s of an ended run: %s", secret, exc.detail)
            return
        with self._lock:
            self._dropped[secret] = None
            while len(self._dropped) > REMEMBERED_RUNS:
                self._dropped.popitem(last=False)

    def _secret_exists(self, namespace: str, secret: str) -> bool:
        if not self.settings.kubernetes_configured:
            return False
        return bool(self.secrets.values(secret, namespace))

    def _secret_values(self, workflow: WorkflowModel) -> list[str]:
        """The secret values to scrub out of the run's logs: remembered from its
        submission, else read from its Secret while it exists."""
        secret = (workflow.metadata.annotations or {}).get(SECRET_ANNOTATION)
        if secret is None:
            return []
        with self._lock:
            known = self._scrub.get(secret)
            dropped = secret in self._dropped
        if known is not None:
            return known
        if dropped or not self.settings.kubernetes_configured:
            return []
        namespace = workflow.metadata.namespace or self.namespace
        return _scrubbed(self.secrets.values(secret, namespace).values())

    def _stage_log(
        self, workflow: WorkflowModel, task: str, tail_bytes: int | None
    ) -> tuple[str, bool]:
        node = task_node(workflow, task)
        if node is None:
            return "", False
        pods = [a for a in attempts_of(workflow, node) if a.phase not in (None, "Pending")]
        name = workflow.metadata.name or ""
        namespace = workflow.metadata.namespace or self.namespace
        parts: list[bytes] = []
        size = 0
        for index in range(len(pods), 0, -1):  # newest first: a tail needs only the end
            pod = pods[index - 1]
            try:
                text = self.server.pod_log(name, namespace, pod_name(workflow, pod))
            except NotFound as exc:
                text = f"(no log: {exc.detail})\n"
            part = f"--- attempt {index}/{len(pods)} ---\n{text}".encode()
            parts.insert(0, part)
            size += len(part)
            if tail_bytes is not None and size > tail_bytes:
                break
        data = b"".join(parts)
        if tail_bytes is not None and len(data) > max(0, tail_bytes):
            cut = data[len(data) - max(0, tail_bytes) :] if tail_bytes > 0 else b""
            return cut.decode("utf-8", errors="ignore"), True
        return data.decode("utf-8", errors="replace"), False


def _scrubbed(values: Iterable[str]) -> list[str]:
    """The values worth scrubbing (a short one would destroy a log), longest first."""
    return sorted((v for v in values if len(v) >= MIN_SCRUBBED), key=len, reverse=True)


def _key_of(workflow: WorkflowModel) -> str | None:
    return (workflow.metadata.annotations or {}).get(KEY_ANNOTATION)


def _running(status: PipelineStatus) -> bool:
    return not status.state.terminal or any(s.state is StageState.RUNNING for s in status.stages)


__all__ = ["ArgoOrchestrator", "external_id"]
