"""RayServeBackend: one Serve application per endpoint, running llmops' model runtime.

* The application is named after the endpoint (``spec.name``, also the external id) and
  routed at ``/<name>``; its one deployment (:data:`DEPLOYMENT_NAME`) serves the model
  runtime's OpenAI API, so the inference target is ``<proxy>/<name>/v1``.
* The platform's record of the deployment (the whole :class:`DeploymentSpec`, with its
  idempotency key) is the deployment's ``user_config``: it lives in Ray with the
  application, so any provider on the same Ray knows it, and ``update()`` redeploys from it.
* ``deploy()`` and ``update()`` hand the application to Serve's controller and return at
  once (DEPLOYING / UPDATING); ``status()`` says READY only when the application is RUNNING,
  every replica is up, and the model runtime's ``/health`` answers 200 through Serve's
  proxy, which it does only after a real generation.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import httpx

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.serving import (
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    DeploymentUpdate,
    FrameworkInfo,
    InferenceProtocol,
    InferenceTarget,
    ReplicaStatus,
    TrafficSplit,
)
from llmops.deadlines import deadline_remaining
from llmops.errors import Conflict, IntegrationUnavailable, InvalidRequest, NotFound
from llmops_rayserve.cluster import RaySession, tcp_reachable
from llmops_rayserve.deployment import DEPLOYMENT_NAME, USER_CONFIG_KEY, ModelServer

if TYPE_CHECKING:
    from ray.serve.schema import ApplicationDetails, DeploymentDetails, ServeInstanceDetails

logger = logging.getLogger("llmops_rayserve")

#: What ``spec.options`` may hold, with its type.
OPTIONS: dict[str, type] = {
    "num_cpus": float,  # Ray CPUs per replica (default 0.5)
    "threads": int,  # torch's CPU threads in a replica (default: the replica's CPUs, >= 1)
    "max_tokens": int,  # the answer length when a request sets none (default 256)
    "served_model_name": str,  # the `model` clients pass (default: the endpoint's name)
    "max_ongoing_requests": int,  # requests one replica takes at once (default 8)
}
DEFAULT_NUM_CPUS = 0.5
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_ONGOING = 8
#: Serve's default target of ongoing requests per replica when the spec sets none.
DEFAULT_TARGET_ONGOING = 2.0


class RayServeBackend:
    """A :class:`~llmops.capabilities.serving.ServingProvider` on Ray Serve."""

    def __init__(
        self,
        session: RaySession,
        *,
        request_timeout: float = 5.0,
        start_timeout: float = 180.0,
    ) -> None:
        # nothing is contacted here: Ray starts (or is connected to) on the first call
        # that needs it
        self.session = session
        self.request_timeout = request_timeout
        self.start_timeout = start_timeout

    # -- the Protocol -------------------------------------------------------------------

    def framework(self) -> FrameworkInfo:
        return FrameworkInfo(
            name="rayserve",
            display_name="Ray Serve",
            protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True,
            supports_canary=False,
            supports_gpu=True,
            supports_scale_to_zero=False,
        )

    def deploy(self, spec: DeploymentSpec) -> DeploymentStatus:
        self._connect()
        if spec.canary is not None:
            raise InvalidRequest("the Ray Serve backend has no canary deployments", param="canary")
        options = _check_options(spec.options)
        app = self._applications().get(spec.name)
        if app is not None:
            record = _record(app)
            if (
                record is not None
                and spec.idempotency_key is not None
                and record.idempotency_key == spec.idempotency_key
            ):
                return self._status(spec.name, app)
            raise Conflict(
                f"a Serve application named {spec.name!r} already exists"
                + ("" if record is not None else " (not deployed by llmops)"),
                name=spec.name,
            )
        self._run(spec, options)
        return self._handed(spec, DeploymentState.DEPLOYING, "handed to Serve's controller")

    def status(self, external_id: str) -> DeploymentStatus:
        app, _ = self._found(external_id)
        return self._status(external_id, app)

    def update(self, external_id: str, update: DeploymentUpdate) -> DeploymentStatus:
        _, record = self._found(external_id)
        if update.canary is not None or update.promote_canary or update.rollback_canary:
            raise InvalidRequest("the Ray Serve backend has no canary deployments", param="canary")
        changes: dict[str, Any] = {}
        if update.model_uri is not None:
            changes["model_uri"] = update.model_uri
        if update.autoscaling is not None:
            changes["autoscaling"] = update.autoscaling
        if update.resources is not None:
            changes["resources"] = update.resources
        spec = record.model_copy(update=changes)
        self._run(spec, _check_options(spec.options))
        return self._handed(
            spec, DeploymentState.UPDATING, "the new configuration was handed to Serve's controller"
        )

    def delete(self, external_id: str) -> None:
        self._found(external_id)
        self._delete(external_id)

    def inference_target(self, external_id: str) -> InferenceTarget:
        _, record = self._found(external_id)
        return self._target(record)

    def health(self) -> Health:
        started = time.perf_counter()

        def answer(status: HealthStatus, detail: str) -> Health:
            return Health(
                status=status, latency_ms=(time.perf_counter() - started) * 1000, detail=detail
            )

        session = self.session
        if not session.ready:
            if session.error is not None:
                return answer(HealthStatus.DOWN, f"Ray could not be started: {session.error}")
            if session.config.local:
                what = "is starting" if session.starting else "is not started yet"
                return answer(
                    HealthStatus.DEGRADED,
                    f"the local Ray {what} (it starts with the first deployment)",
                )
            address = session.config.address or ""
            problem = tcp_reachable(address, timeout=min(2.0, self.request_timeout))
            if problem is not None:
                return answer(HealthStatus.DOWN, problem)
            return answer(
                HealthStatus.DEGRADED, f"the Ray cluster at {address} answers; not connected yet"
            )
        try:
            import ray

            if not ray.is_initialized():
                return answer(HealthStatus.DOWN, "Ray is not initialized in this process")
            details = _call_with_timeout(self._details, timeout=self.request_timeout)
        except Exception as exc:
            return answer(
                HealthStatus.DOWN,
                f"Serve's controller does not answer: {type(exc).__name__}: {exc}",
            )
        proxies = {_name(proxy.status) for proxy in details.proxies.values()}
        detail = (
            f"Serve answers: {len(details.applications)} application(s), "
            f"proxy at {session.proxy_url} ({', '.join(sorted(proxies)) or 'no proxy yet'})"
        )
        return answer(HealthStatus.OK, detail)

    # -- helpers ------------------------------------------------------------------------

    def _connect(self) -> None:
        self.session.ensure(wait=deadline_remaining(self.start_timeout))

    @staticmethod
    def _details() -> ServeInstanceDetails:
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeInstanceDetails

        client = _get_global_client()
        if client is None:
            raise IntegrationUnavailable("Serve is not running on this Ray")
        return ServeInstanceDetails(**client.get_serve_details())

    def _applications(self) -> dict[str, ApplicationDetails]:
        try:
            details = self._details()
        except Exception as exc:
            raise IntegrationUnavailable(
                f"Serve's controller does not answer: {type(exc).__name__}: {exc}"
            ) from exc
        return dict(details.applications)

    def _found(self, name: str) -> tuple[ApplicationDetails, DeploymentSpec]:
        """The application llmops deployed as ``name`` and its record.

        :raises NotFound: Serve has no such application, or one llmops did not deploy.
        """
        self._connect()
        app = self._applications().get(name)
        record = None if app is None else _record(app)
        if app is None or record is None:
            raise NotFound(f"no Ray Serve deployment named {name!r}", id=name)
        return app, record

    def _handed(
        self, spec: DeploymentSpec, state: DeploymentState, message: str
    ) -> DeploymentStatus:
        """The status of ``spec`` just handed to Serve's controller (not running yet)."""
        return DeploymentStatus(
            external_id=spec.name,
            state=state,
            message=message,
            desired_replicas=spec.autoscaling.min_replicas,
            traffic=[TrafficSplit(tag="stable", model_uri=spec.model_uri, percent=100)],
            target=self._target(spec),
        )

    def _delete(self, name: str) -> None:
        """Ask Serve's controller to delete ``name`` and wait for it to take the request
        (not for the replicas to stop): from then on the application reads DELETING, until
        it is gone."""
        import ray
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is None:
            raise IntegrationUnavailable("Serve is not running on this Ray")
        try:
            ray.get(client._controller.delete_apps.remote([name]), timeout=self.request_timeout)
        except Exception as exc:
            raise IntegrationUnavailable(
                f"Serve's controller did not take the deletion of {name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _target(self, spec: DeploymentSpec) -> InferenceTarget:
        served = spec.options.get("served_model_name") or spec.name
        return InferenceTarget(
            base_url=f"{self.session.proxy_url}/{spec.name}/v1",
            protocol=InferenceProtocol.OPENAI,
            model_name=str(served),
        )

    def _run(self, spec: DeploymentSpec, options: dict[str, Any]) -> None:
        """Hand ``spec``'s application to Serve's controller without waiting for it."""
        from ray import serve

        model_path = self._model_path(spec.model_uri)
        num_cpus = float(options.get("num_cpus", DEFAULT_NUM_CPUS))
        threads = int(options.get("threads", max(1, math.floor(num_cpus))))
        served = str(options.get("served_model_name") or spec.name)
        max_tokens = int(options.get("max_tokens", DEFAULT_MAX_TOKENS))
        env = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", **spec.env}
        actor_options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": spec.resources.gpus,
            "runtime_env": {"env_vars": env},
        }
        scaling = spec.autoscaling
        deployment_options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": actor_options,
            "user_config": {USER_CONFIG_KEY: spec.model_dump(mode="json")},
            "max_ongoing_requests": int(options.get("max_ongoing_requests", DEFAULT_MAX_ONGOING)),
            "graceful_shutdown_timeout_s": 5.0,
            "graceful_shutdown_wait_loop_s": 0.5,
            "health_check_period_s": 5.0,
        }
        if scaling.min_replicas == scaling.max_replicas:
            deployment_options["num_replicas"] = scaling.max_replicas
        else:
            deployment_options["autoscaling_config"] = {
                "min_replicas": scaling.min_replicas,
                "initial_replicas": max(1, scaling.min_replicas),
                "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target_ongoing_requests
                or DEFAULT_TARGET_ONGOING,
            }
        deployment: Any = serve.deployment(serve.ingress()(ModelServer), **deployment_options)
        application = deployment.bind(model_path, served, threads, max_tokens)
        try:
            serve._run(application, _blocking=False, name=spec.name, route_prefix=f"/{spec.name}")
        except Exception as exc:
            raise IntegrationUnavailable(
                f"Serve did not take the application {spec.name!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def _model_path(self, model_uri: str) -> str:
        """The local folder a ``file://`` URI or a path names; on the local Ray it is
        checked here (config.json, safetensors weights, no custom code)."""
        parsed = urlparse(model_uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif parsed.scheme == "":
            path = Path(model_uri)
        else:
            raise InvalidRequest(
                f"the Ray Serve backend serves model folders (a path or file:// URI), "
                f"not {model_uri!r}",
                param="model_uri",
            )
        if self.session.config.local:
            from llmops.model_runtime.loader import ModelFolderError, check_model_folder

            try:
                check_model_folder(path)
            except ModelFolderError as exc:
                raise InvalidRequest(str(exc), param="model_uri") from exc
            path = path.resolve()
        return str(path)

    def _status(self, name: str, app: ApplicationDetails) -> DeploymentStatus:
        record = _record(app)
        if record is None:  # the callers checked it: an application llmops did not deploy
            raise NotFound(f"Serve application {name!r} was not deployed by llmops")
        deployment = app.deployments.get(DEPLOYMENT_NAME)
        replicas = [] if deployment is None else _replicas(deployment)
        desired = None if deployment is None else deployment.target_num_replicas
        app_status = _name(app.status)
        message = app.message or ("" if deployment is None else deployment.message)
        target = self._target(record)
        traffic = [TrafficSplit(tag="stable", model_uri=record.model_uri, percent=100)]
        state = _STATES.get(app_status, DeploymentState.UNKNOWN)
        ready = False
        if state is DeploymentState.READY:
            running = sum(1 for r in replicas if r.state == "running")
            settled = running == len(replicas) and running >= (desired or 0) and running > 0
            problem = (
                None
                if settled
                else f"{running} of {desired} replica(s) running ({_replica_summary(replicas)})"
            )
            if problem is None:
                problem = self._probe(name)
            if problem is None:
                ready = True
                message = message or "the model runtime answered /health through Serve's proxy"
            else:
                state = DeploymentState.DEPLOYING
                message = problem
        return DeploymentStatus(
            external_id=name,
            state=state,
            ready=ready,
            message=message or app_status.lower(),
            desired_replicas=desired,
            replicas=replicas,
            traffic=traffic,
            target=target,
        )

    def _probe(self, name: str) -> str | None:
        """None when the runtime's /health answers 200 through the proxy, else why not."""
        url = f"{self.session.proxy_url}/{name}/health"
        timeout = min(self.request_timeout, deadline_remaining(self.request_timeout) or 1.0)
        try:
            answer = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            return f"the model runtime's /health did not answer: {type(exc).__name__}: {exc}"
        if answer.status_code != 200:
            return f"the model runtime's /health answered {answer.status_code}: {answer.text[:200]}"
        return None


_STATES = {
    "NOT_STARTED": DeploymentState.PENDING,
    "DEPLOYING": DeploymentState.DEPLOYING,
    "RUNNING": DeploymentState.READY,
    "DEPLOY_FAILED": DeploymentState.FAILED,
    "UNHEALTHY": DeploymentState.FAILED,
    "DELETING": DeploymentState.DELETING,
}


def _name(value: object) -> str:
    """An enum's value (Serve's status enums are str enums), or the text of anything else."""
    return str(getattr(value, "value", value))


def _record(app: ApplicationDetails) -> DeploymentSpec | None:
    """The platform's record of ``app``, or None when llmops did not deploy it."""
    deployment = app.deployments.get(DEPLOYMENT_NAME)
    if deployment is None:
        return None
    user_config = deployment.deployment_config.user_config
    if not isinstance(user_config, dict) or USER_CONFIG_KEY not in user_config:
        return None
    try:
        return DeploymentSpec.model_validate(user_config[USER_CONFIG_KEY])
    except ValueError:
        return None


def _replicas(deployment: DeploymentDetails) -> list[ReplicaStatus]:
    return [
        ReplicaStatus(
            name=replica.replica_id,
            state=_name(replica.state).lower(),
            message=f"node {replica.node_ip}" if replica.node_ip else "",
        )
        for replica in deployment.replicas
    ]


def _replica_summary(replicas: list[ReplicaStatus]) -> str:
    counts: dict[str, int] = {}
    for replica in replicas:
        counts[replica.state] = counts.get(replica.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none yet"


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidRequest(
            f"unknown Ray Serve option(s) {unknown}; known: {sorted(OPTIONS)}", param="options"
        )
    for key, value in options.items():
        kind = OPTIONS[key]
        valid = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not valid or isinstance(value, bool) or (kind is not str and value <= 0):
            raise InvalidRequest(
                f"option {key!r} must be a positive {kind.__name__}", param=f"options.{key}"
            )
    return dict(options)


def _call_with_timeout(function: Any, *, timeout: float) -> Any:
    """Ray's calls have no timeout of their own: run one in a thread and give up on it."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(function).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)
