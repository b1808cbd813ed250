"""Register a plugin for the length of a test, without building or installing a package.

A temporary folder gets the plugin's module and a ``*.dist-info`` with its entry point;
the folder is put on ``sys.path`` so ``importlib.metadata`` and stevedore find it like an
installed distribution. Everything is undone on exit, the imported module included.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.orchestration import PipelineStatus, StageLog
from llmops.plugins.discovery import ENTRY_POINT_GROUP


@contextmanager
def temporary_plugin(
    root: Path,
    name: str,
    source: str,
    *,
    module: str | None = None,
    distribution: str | None = None,
    version: str = "0.0.1",
) -> Iterator[str]:
    """Install ``source`` as module ``module`` (default ``llmops_test_<name>``) with the
    entry point ``name`` in group ``llmops.plugins``; yields the module name."""
    module = module or f"llmops_test_{name}"
    distribution = distribution or f"llmops-test-{name}".replace("_", "-")
    site = root / f"site-{name}"
    site.mkdir(parents=True, exist_ok=False)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield module
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()


class PluginInstaller:
    """Installs temporary plugins under one folder and removes them all on ``close()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stack = ExitStack()

    def __call__(self, name: str, source: str, **kwargs: Any) -> str:
        """Install ``source`` as plugin ``name``; returns its module name."""
        return self._stack.enter_context(temporary_plugin(self.root, name, source, **kwargs))

    def close(self) -> None:
        self._stack.close()


class QuietOrchestrator:
    """The part of an orchestration provider a test's plugin seldom cares about: no logs,
    retry and cancel answer the current status, no UI link, always healthy. A test's
    plugin subclasses it and writes ``submit`` and ``status``."""

    honours_deadline = True

    def status(self, external_id: str) -> PipelineStatus:
        raise NotImplementedError

    def logs(
        self, external_id: str, *, stage: str | None = None, tail_bytes: int | None = None
    ) -> list[StageLog]:
        return []

    def retry(self, external_id: str) -> PipelineStatus:
        return self.status(external_id)

    def cancel(self, external_id: str) -> PipelineStatus:
        return self.status(external_id)

    def ui_url(self, external_id: str) -> str | None:
        return None

    def health(self) -> Health:
        return Health(status=HealthStatus.OK)


def orchestrator_plugin(name: str, source: str) -> str:
    """A plugin's source from ``source``, which defines a class ``Orchestrator`` (usually a
    :class:`QuietOrchestrator`): the hooks that name the plugin ``name`` and give one
    ``Orchestrator()`` as its orchestration provider are appended."""
    return (
        textwrap.dedent(source)
        + f"""

from llmops import hookimpl as _hookimpl
from llmops.capabilities.common import Capability as _Capability
from llmops.plugins.info import PluginInfo as _PluginInfo


@_hookimpl
def llmops_plugin_info():
    return _PluginInfo(
        name={name!r}, version="1.0", display_name={name.capitalize() + " orchestrator"!r},
        capabilities=frozenset({{_Capability.ORCHESTRATION}}),
    )


@_hookimpl
def llmops_orchestration(settings, context):
    return Orchestrator()
"""
    )


_MEMORY_TRACKER = textwrap.dedent(
    """
    import threading
    from collections import Counter

    from fastapi import APIRouter

    import llmops
    from pydantic import SecretStr
    from llmops.capabilities.common import Capability, Health, HealthStatus
    from llmops.capabilities.tracking import ArtifactInfo, RunInfo, RunPage, RunStatus
    from llmops.errors import NotFound
    from llmops.plugins.info import PluginInfo, PluginSettings

    #: Calls the core made, kept in the module so they survive a rebuilt provider.
    CALLS = Counter()
    #: run id -> RunInfo; the "tool" behind the tracker, shared by every instance.
    RUNS = {}
    #: every log_metrics call's points, in order
    BATCHES = []
    _LOCK = threading.Lock()


    class Settings(PluginSettings):
        url: str = "memory://default"
        timeout_seconds: float = 5.0
        healthy: bool = True
        token: SecretStr | None = None


    class MemoryTracker:
        max_metrics_per_batch = 2

        def __init__(self, settings):
            self.settings = settings
            self.closed = False

        def create_run(self, spec):
            with _LOCK:
                key = spec.idempotency_key
                for run in RUNS.values():
                    if key and run.tags.get("idempotency_key") == key:
                        return run
                run_id = f"run-{len(RUNS) + 1}"
                RUNS[run_id] = RunInfo(
                    run_id=run_id,
                    experiment_id="exp-1",
                    experiment_name=spec.experiment,
                    name=spec.run_name,
                    status=RunStatus.RUNNING,
                    params=dict(spec.params),
                    tags={**spec.tags, "idempotency_key": spec.idempotency_key or ""},
                )
                CALLS["create_run"] += 1
                return RUNS[run_id]

        def get_run(self, run_id):
            try:
                return RUNS[run_id]
            except KeyError:
                raise NotFound(f"no run {run_id!r}") from None

        def end_run(self, run_id, status):
            RUNS[run_id] = self.get_run(run_id).model_copy(update={"status": status})
            return RUNS[run_id]

        def log_params(self, run_id, params):
            run = self.get_run(run_id)
            RUNS[run_id] = run.model_copy(update={"params": {**run.params, **params}})

        def log_metrics(self, run_id, metrics):
            if len(metrics) > self.max_metrics_per_batch:
                raise ValueError("batch larger than the tool accepts")
            with _LOCK:
                BATCHES.append(list(metrics))
                run = self.get_run(run_id)
                latest = dict(run.latest_metrics)
                for point in metrics:
                    latest[point.key] = point.value
                RUNS[run_id] = run.model_copy(update={"latest_metrics": latest})

        def log_artifact(self, run_id, local_path, artifact_path=None):
            return ArtifactInfo(path=artifact_path or local_path.name)

        def list_artifacts(self, run_id, path=None):
            return []

        def metric_history(self, run_id, key):
            return [p for batch in BATCHES for p in batch if p.key == key]

        def search_runs(self, query):
            runs = [
                r for r in RUNS.values()
                if not query.experiments or r.experiment_name in query.experiments
            ]
            return RunPage(runs=runs[: query.page_size])

        def run_url(self, run_id):
            return None

        def health(self):
            CALLS["health"] += 1
            if self.settings.healthy:
                return Health(status=HealthStatus.OK, detail="memory")
            return Health(status=HealthStatus.DOWN, detail="told to be down")

        def close(self):
            self.closed = True


    @llmops.hookimpl
    def llmops_plugin_info():
        return PluginInfo(
            name=NAME,
            version="1.2.3",
            display_name="Memory tracker",
            capabilities=frozenset({Capability.TRACKING}),
            settings_model=Settings,
            links={"ui": "http://tracker.invalid/"},
            priority=PRIORITY,
        )


    @llmops.hookimpl
    def llmops_tracking(settings, context):
        return MemoryTracker(settings)


    @llmops.hookimpl
    def llmops_api_routes(settings, context):
        router = APIRouter()

        @router.get("/hello")
        def hello():
            CALLS["hello"] += 1
            return {"plugin": context.plugin_name, "url": settings.url}

        return router
    """
)


def memory_tracker_plugin(name: str, *, priority: int = 0) -> str:
    """A tracking plugin named ``name`` with an in-memory tracker (its runs, metric
    batches and the calls the core made kept in the module: ``RUNS``, ``BATCHES``,
    ``CALLS``), settings ``url``, ``timeout_seconds``, ``healthy`` and a secret ``token``,
    and a ``/hello`` route; ``priority`` is its :class:`PluginInfo` priority."""
    return f"NAME = {name!r}\nPRIORITY = {priority!r}\n" + _MEMORY_TRACKER


_MEMORY_SERVING = textwrap.dedent(
    """
    from llmops import hookimpl
    from llmops.capabilities.common import Capability, Health, HealthStatus
    from llmops.capabilities.serving import (
        DeploymentState, DeploymentStatus, FrameworkInfo, InferenceProtocol, InferenceTarget,
        TrafficSplit,
    )
    from llmops.errors import InvalidRequest, NotFound
    from llmops.plugins.info import PluginInfo

    #: ("deploy", idempotency key), ("update", external id), ("delete", external id)
    CALLS = []
    #: external id ("mem-<spec name>") -> the deployed spec's model_dump(); the "framework"
    #: behind the backend, shared by every instance. A ``test_state`` key set here makes
    #: the deployment report that DeploymentState instead of "ready".
    OBJECTS = {}


    class MemoryBackend:
        def framework(self):
            return FrameworkInfo(
                name=FRAMEWORK, display_name="In-memory", protocols=[InferenceProtocol.OPENAI],
                supports_autoscaling=True, supports_canary=True, supports_gpu=GPU,
            )

        def _status(self, key):
            spec = OBJECTS[key]
            traffic = [TrafficSplit(tag="stable", model_uri=spec["model_uri"], percent=100)]
            if spec.get("canary"):
                pct = spec["canary"]["traffic_percent"]
                traffic = [
                    TrafficSplit(tag="stable", model_uri=spec["model_uri"], percent=100 - pct),
                    TrafficSplit(tag="canary", model_uri=spec["canary"]["model_uri"], percent=pct),
                ]
            state = DeploymentState(spec.get("test_state", "ready"))
            return DeploymentStatus(
                external_id=key, state=state, ready=state is DeploymentState.READY,
                desired_replicas=spec["autoscaling"]["min_replicas"], traffic=traffic,
                target=InferenceTarget(
                    base_url="http://127.0.0.1:9/v1", protocol=InferenceProtocol.OPENAI,
                    model_name=spec["name"], headers={"Authorization": "Bearer tool-secret"},
                ),
            )

        def deploy(self, spec):
            CALLS.append(("deploy", spec.idempotency_key))
            key = f"mem-{spec.name}"
            OBJECTS[key] = spec.model_dump()
            return self._status(key)

        def status(self, external_id):
            if external_id not in OBJECTS:
                raise NotFound(external_id)
            return self._status(external_id)

        def update(self, external_id, update):
            CALLS.append(("update", external_id))
            if external_id not in OBJECTS:
                raise NotFound(external_id)
            spec = OBJECTS[external_id]
            if update.canary is not None:
                spec["canary"] = update.canary.model_dump()
            if update.promote_canary and spec.get("canary"):
                spec["model_uri"] = spec["canary"]["model_uri"]
                spec["canary"] = None
            if update.rollback_canary:
                spec["canary"] = None
            if update.autoscaling is not None:
                spec["autoscaling"] = update.autoscaling.model_dump()
            if update.resources is not None:
                spec["resources"] = update.resources.model_dump()
            if update.model_uri is not None:
                spec["model_uri"] = update.model_uri
            return self._status(external_id)

        def check(self, spec):
            if spec.model_uri.startswith("ftp://"):
                raise InvalidRequest("the memory backend reads no ftp://", parameter="modelUri")

        def delete(self, external_id):
            CALLS.append(("delete", external_id))
            OBJECTS.pop(external_id, None)

        def inference_target(self, external_id):
            return self.status(external_id).target

        def health(self):
            return Health(status=HealthStatus.OK)


    @hookimpl
    def llmops_plugin_info():
        return PluginInfo(
            name=NAME, version="1.0", display_name="Memory serving",
            capabilities=frozenset({Capability.SERVING}),
        )


    @hookimpl
    def llmops_serving(settings, context):
        return [MemoryBackend()]
    """
)


def memory_serving_plugin(name: str, *, framework: str = "memory", gpu: bool = False) -> str:
    """A serving plugin named ``name`` with one in-memory backend for the framework
    ``framework`` (display name "In-memory"; OpenAI protocol, autoscaling and canaries,
    ``supports_gpu`` as ``gpu`` says). Its deployments live in the module: ``OBJECTS``
    (external id ``mem-<spec name>`` -> the spec's ``model_dump()``; a ``"test_state"``
    key there overrides the reported state, "ready" otherwise) and ``CALLS`` (the
    ``deploy`` / ``update`` / ``delete`` calls, with the idempotency key or external id).
    Updates apply model URI, autoscaling, resources and canaries (promoted, rolled back),
    the traffic splits follow the canary, ``check`` refuses ``ftp://`` model URIs, and
    every deployment's inference target carries the backend's own credentials
    (``Authorization: Bearer tool-secret``)."""
    return f"NAME = {name!r}\nFRAMEWORK = {framework!r}\nGPU = {gpu!r}\n" + _MEMORY_SERVING
