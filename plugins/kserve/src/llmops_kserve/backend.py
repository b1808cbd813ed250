"""KServeBackend: one InferenceService per endpoint, on KServe's Hugging Face runtime.

* The object is named after the endpoint (``spec.name``, also the external id) when KServe
  takes the name, and carries the platform's record of the deployment in its annotations
  (see :mod:`llmops_kserve.objects`), so any provider on the same namespace knows it.
* Writes are JSON patches guarded by a ``test`` of the object's resourceVersion: a change
  made meanwhile by someone else makes the write fail (409) instead of being overwritten.
* Canary rollouts use KServe's own mechanism: the predictor names the candidate and
  ``canaryTrafficPercent`` its share, the last rolled-out revision keeps the rest.
  Promoting removes ``canaryTrafficPercent``; rolling back sets it to 0 (all traffic back
  to the stable revision at once) and names the stable model again.
* ``status`` is READY only when KServe says Ready for the generation the platform wrote,
  the newest revision is the one serving, and the predictor's readiness route answers
  through the URL the gateway uses (kserve#1859: Ready while the predictor crash-loops).
"""

from __future__ import annotations

import logging
from typing import Any

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
)
from llmops.deadlines import deadline_remaining
from llmops.errors import Conflict, IntegrationUnavailable, InvalidRequest, LlmopsError, NotFound
from llmops_kserve import objects
from llmops_kserve.client import KubernetesApi, health_reason
from llmops_kserve.settings import KServeSettings

logger = logging.getLogger("llmops_kserve")

SCALE_METRICS = ["concurrency", "rps", "cpu", "memory"]


class KServeBackend:
    """A :class:`~llmops.capabilities.serving.ServingProvider` on KServe."""

    honours_deadline = True

    def __init__(self, api: KubernetesApi, settings: KServeSettings) -> None:
        self.api = api
        self.settings = settings
        self.placement = objects.Placement(
            storage_uri_prefixes=dict(settings.storage_uri_prefixes),
            runtimes=list(settings.runtimes),
            service_account=settings.service_account,
        )

    # -- the Protocol -------------------------------------------------------------------

    def framework(self) -> FrameworkInfo:
        return FrameworkInfo(
            name="kserve",
            display_name="KServe",
            protocols=[InferenceProtocol.OPENAI],
            supports_autoscaling=True,
            supports_canary=True,
            supports_gpu=True,
            supports_scale_to_zero=True,
            scale_metrics=list(SCALE_METRICS),
            runtimes=list(self.settings.runtimes),
        )

    def check(self, spec: DeploymentSpec) -> None:
        """Refuse (InvalidRequest) a spec KServe could not serve: a model its storage
        initializer cannot read, an unknown runtime or option."""
        self._first_object(spec)

    def _first_object(self, spec: DeploymentSpec) -> dict[str, Any]:
        """The object of a first deployment of ``spec``, once its canary is known to be
        servable too."""
        body = objects.inference_service(spec, self.placement)
        if spec.canary is not None:
            objects.predictor(
                spec, self.placement, model_uri=spec.canary.model_uri, canary_percent=1
            )
        return body

    def deploy(self, spec: DeploymentSpec) -> DeploymentStatus:
        body = self._first_object(spec)
        if spec.idempotency_key is not None:
            for found in self.api.select(objects.key_selector(spec.idempotency_key)):
                if _key(found) == spec.idempotency_key:
                    return self._known(found, spec.idempotency_key)
        try:
            created = self.api.create(body)
        except Conflict:
            existing = self.api.find(spec.name)
            if existing is None:
                raise
            if spec.idempotency_key is not None and _key(existing) == spec.idempotency_key:
                return self._known(existing, spec.idempotency_key)
            raise Conflict(
                f"an InferenceService named {spec.name!r} already exists in namespace "
                f"{self.api.namespace!r}"
                + ("" if objects.record(existing) else " (not deployed by llmops)"),
                name=spec.name,
            ) from None
        return self._status(created, spec, None)

    def adoptable(self, spec: DeploymentSpec) -> DeploymentSpec | None:
        """An InferenceService named ``spec.name`` that llmops did not deploy (hand-made):
        ``spec`` as it runs (:func:`objects.adopted`). None when there is none, or when it
        is the one llmops made for this spec; Conflict when it is another endpoint's."""
        existing = self.api.find(spec.name)
        if existing is None:
            return None
        record = objects.record(existing)
        if record is None:
            return objects.adopted(existing, spec)
        if record.idempotency_key == spec.idempotency_key:
            return None  # a move interrupted half-way: deploy finds it by its key
        raise Conflict(
            f"InferenceService {spec.name!r} belongs to another llmops endpoint "
            f"({record.endpoint_id})",
            name=spec.name,
        )

    def adopt(self, spec: DeploymentSpec) -> DeploymentStatus:
        """Make the InferenceService ``spec.name``, which llmops did not deploy, the
        endpoint's: label and annotate it with ``spec``, leaving its predictor as it is."""
        obj = self.api.find(spec.name)
        if obj is None:
            raise NotFound(f"no InferenceService named {spec.name!r} to adopt", name=spec.name)
        if objects.record(obj) is not None:
            raise Conflict(f"InferenceService {_name(obj)!r} is already llmops'", name=_name(obj))
        metadata = obj.get("metadata") or {}
        patched = self.api.patch(
            _name(obj),
            {
                "metadata": {
                    "resourceVersion": metadata.get("resourceVersion"),
                    "labels": objects.labels(spec),
                    "annotations": objects.record_annotations(spec, previous_model_uri=None),
                }
            },
        )
        return self._status(patched, spec, None)

    def status(self, external_id: str) -> DeploymentStatus:
        return self._status(*self._found(external_id))

    def update(self, external_id: str, update: DeploymentUpdate) -> DeploymentStatus:
        if update.promote_canary and update.rollback_canary:
            raise InvalidRequest(
                "promote_canary and rollback_canary exclude each other", parameter="promoteCanary"
            )
        obj, record, previous = self._found(external_id)
        changes: dict[str, Any] = {}
        if update.autoscaling is not None:
            changes["autoscaling"] = update.autoscaling
        if update.resources is not None:
            changes["resources"] = update.resources
        canary_percent: int | None = None
        if update.promote_canary or update.rollback_canary:
            if record.canary is None:
                raise InvalidRequest(
                    "the deployment has no canary to "
                    + ("promote" if update.promote_canary else "roll back"),
                    parameter="promoteCanary" if update.promote_canary else "rollbackCanary",
                )
            previous = record.model_uri
            if update.promote_canary:
                changes["model_uri"] = record.canary.model_uri
            else:
                canary_percent = 0  # all traffic back to the stable revision at once
            changes["canary"] = None
        elif update.canary is not None:
            changes["canary"] = update.canary
            if update.model_uri is not None:
                changes["model_uri"] = update.model_uri
            if record.canary is None:
                previous = record.model_uri
            canary_percent = update.canary.traffic_percent
        elif update.model_uri is not None:
            previous = record.model_uri
            changes["model_uri"] = update.model_uri
            changes["canary"] = None
        elif record.canary is not None:
            canary_percent = record.canary.traffic_percent
        desired = record.model_copy(update=changes)
        served = desired.canary.model_uri if desired.canary is not None else None
        body = objects.predictor(
            desired, self.placement, model_uri=served, canary_percent=canary_percent
        )
        patched = self._patch(obj, desired, body, previous)
        return self._status(patched, desired, previous)

    def delete(self, external_id: str) -> None:
        self._found(external_id)
        self.api.delete(external_id)

    def inference_target(self, external_id: str) -> InferenceTarget:
        obj, record, _ = self._found(external_id)
        url = self._url(obj)
        if url is None:
            raise IntegrationUnavailable(
                f"InferenceService {external_id!r} has no URL yet (KServe sets it once the "
                "predictor's route is ready)"
            )
        return objects.target(record, url)

    def health(self) -> Health:
        """A real call: llmops' InferenceServices in the namespace (the platform times
        it)."""
        try:
            items = self.api.select(f"{objects.MANAGED_BY}=llmops")
        except LlmopsError as exc:
            return Health(status=HealthStatus.DOWN, detail=health_reason(exc, self.api.where))
        return Health(
            status=HealthStatus.OK,
            detail=f"{self.api.where} answers: {len(items)} InferenceService(s) of llmops in "
            f"namespace {self.api.namespace!r}",
        )

    # -- helpers ------------------------------------------------------------------------

    def _found(self, name: str) -> tuple[dict[str, Any], DeploymentSpec, str | None]:
        """The object llmops deployed as ``name``, its record as the object stands, and
        the model its previous revision serves (:func:`objects.effective`).

        :raises NotFound: there is no such object, or llmops did not deploy it.
        """
        obj = self.api.get(name)
        return (obj, *self._read(obj))

    def _read(self, obj: dict[str, Any]) -> tuple[DeploymentSpec, str | None]:
        record = objects.record(obj)
        if record is None:
            raise NotFound(
                f"InferenceService {_name(obj)!r} was not deployed by llmops (no llmops labels)",
                id=_name(obj),
            )
        return objects.effective(obj, record, self.placement)

    def _known(self, obj: dict[str, Any], key: str) -> DeploymentStatus:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            raise IntegrationUnavailable(
                f"InferenceService {_name(obj)!r} with idempotency key {key!r} is still being "
                "deleted; deploying again once it is gone"
            )
        return self._status(obj, *self._read(obj))

    def _patch(
        self,
        obj: dict[str, Any],
        desired: DeploymentSpec,
        predictor: dict[str, Any],
        previous: str | None,
    ) -> dict[str, Any]:
        metadata = obj.get("metadata") or {}
        operations: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": metadata["resourceVersion"],
            }
        ]
        current = dict((obj.get("spec") or {}).get("predictor") or {})
        percent = predictor.get("canaryTrafficPercent")
        if _without_traffic(current) == _without_traffic(predictor):
            # traffic alone: anything more would make KServe roll out a new revision
            path = "/spec/predictor/canaryTrafficPercent"
            if percent is not None:
                operations.append({"op": "add", "path": path, "value": percent})
            elif "canaryTrafficPercent" in current:
                operations.append({"op": "remove", "path": path})
            return self._patched(obj, operations)
        operations.append({"op": "replace", "path": "/spec/predictor", "value": predictor})
        if not metadata.get("annotations"):
            operations.append({"op": "add", "path": "/metadata/annotations", "value": {}})
        for key, value in objects.record_annotations(desired, previous_model_uri=previous).items():
            path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            operations.append({"op": "add", "path": path, "value": value})
        return self._patched(obj, operations)

    def _patched(self, obj: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            return self.api.patch(_name(obj), operations)
        except InvalidRequest as exc:
            if "test" in exc.detail and "resourceVersion" in exc.detail:
                raise Conflict(
                    f"InferenceService {_name(obj)!r} changed meanwhile; try again"
                ) from exc
            raise

    def _url(self, obj: dict[str, Any]) -> str | None:
        return objects.url(obj, in_cluster=self.settings.use_cluster_address)

    def _status(
        self, obj: dict[str, Any], record: DeploymentSpec, previous: str | None
    ) -> DeploymentStatus:
        """``obj``'s status for the platform, ``record`` being what it should run."""
        seen = objects.observe(obj, record, previous)
        url = self._url(obj)
        target = None if url is None else objects.target(record, url)
        state, ready, message = seen.state, seen.ready, seen.message
        if seen.canary_due and seen.ready and record.canary is not None:
            self._start_canary(obj, record)
        if ready and target is not None:
            problem = self._probe(url or "", objects.served_name(record))
            if problem is not None:
                state, ready = DeploymentState.FAILED, False
                message = f"KServe reports Ready, but the predictor does not answer: {problem}"
        elif ready:
            state, ready, message = DeploymentState.DEPLOYING, False, "no URL yet"
        spec_predictor = (obj.get("spec") or {}).get("predictor") or {}
        return DeploymentStatus(
            external_id=_name(obj),
            state=state,
            ready=ready,
            message=message,
            desired_replicas=int(spec_predictor.get("minReplicas", 1)),
            traffic=seen.traffic,
            target=target,
            rollout=seen.rollout,
        )

    def _start_canary(self, obj: dict[str, Any], record: DeploymentSpec) -> None:
        """The second step of a deployment created with a canary: the stable revision
        serves, so the candidate may take its share now."""
        if record.canary is None:
            raise InvalidRequest("the deployment has no canary to start", parameter="canary")
        body = objects.predictor(
            record,
            self.placement,
            model_uri=record.canary.model_uri,
            canary_percent=record.canary.traffic_percent,
        )
        try:
            self._patch(obj, record, body, record.model_uri)
        except LlmopsError as exc:  # the next status read tries again
            logger.info("starting the canary of %s failed: %s", _name(obj), exc.detail)

    def _probe(self, url: str, served: str) -> str | None:
        """None when the predictor's readiness route (KServe's v1 protocol) answers that
        the model is ready, else why not."""
        probe = f"{url.rstrip('/')}/v1/models/{served}"
        limit = self.settings.request_timeout_seconds
        timeout = min(limit, deadline_remaining(limit) or limit)
        try:
            answer = httpx.get(probe, timeout=timeout)
        except httpx.HTTPError as exc:
            return f"{probe}: {type(exc).__name__}: {exc}"
        if answer.status_code != 200:
            return f"{probe} answered {answer.status_code}: {answer.text[:200]}"
        try:
            body = answer.json()
        except ValueError:
            return f"{probe} answered 200 without JSON"
        if not (isinstance(body, dict) and body.get("ready") is True):
            return f"{probe} says the model is not ready: {answer.text[:200]}"
        return None


def _without_traffic(predictor: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _key(obj: dict[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(objects.KEY_ANNOTATION)
    return str(value) if value is not None else None
