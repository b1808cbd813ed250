"""A Kubernetes API double with KServe installed, for InferenceServices: what a serving
plugin meets on a real cluster, on 127.0.0.1, talked to with the official ``kubernetes``
client (this package does not import it)::

    with KubernetesApiDouble(token="t", storage={"models": folder}) as cluster:
        configuration = Configuration(host=cluster.url, api_key={"authorization": "t"},
                                      api_key_prefix={"authorization": "Bearer"})
        CustomObjectsApi(ApiClient(configuration)).create_namespaced_custom_object(...)
        ready = cluster.wait_for_ready("my-model")
        OpenAI(base_url=ready["status"]["url"] + "/openai/v1", api_key="-")

What is modelled
----------------
* kube-apiserver's REST API for ``serving.kserve.io/v1beta1`` ``inferenceservices``
  (namespaced, list across namespaces, ``/status`` subresource), discovery (``/version``,
  ``/api``, ``/api/v1`` with read-only namespaces, ``/apis``, the group and its resource
  list, enough for ``kubernetes.dynamic.DynamicClient``), bearer-token authentication
  (a missing or wrong token is 401: anonymous access off), 404 for unknown paths, 405 for
  verbs a path does not take. Failures are Kubernetes ``Status`` bodies.
* create (201; ``generateName``; uid, resourceVersion from one increasing counter,
  generation 1, creationTimestamp; status ignored; ``namespaces "x" not found`` for a
  namespace the double lacks; ``AlreadyExists``), get, list (labelSelector with every
  form, fieldSelector on metadata.name/namespace, limit/continue), replace (a
  resourceVersion is required and must be current: ``Conflict``), JSON merge patches and
  JSON patches (a failing ``test`` is 422 "the server rejected our request..."),
  strategic merge patches refused with 415 as for any custom resource, ``dryRun=All``,
  delete with KServe's finalizer (``deletionTimestamp`` first, gone ~0.2 s later),
  deletecollection, DeleteOptions preconditions. generation moves when anything but
  metadata and status changes; resourceVersion on every change, never on a no-op.
* admission as kube-apiserver runs it (see :mod:`.schema`): strict field validation
  (400; the double's default is Strict, a real server's is Warn - Warn and Ignore drop
  the unknown fields as it does), the CRD's defaults, ObjectMeta checks and the CRD's
  openAPIV3Schema (422 Invalid with causes), then KServe's validating webhook (403,
  ``admission webhook "inferenceservice.kserve-webhook-server.validator" denied the
  request: ...``): the name rule, exactly one predictor implementation, replicas, plus
  canaryTrafficPercent within 0..100.
* KServe's controller in serverless mode (see :mod:`.revisions`): Knative revisions
  ``<name>-predictor-0000N`` (a new one for each change of the predictor template - all of
  the predictor but canaryTrafficPercent - or of the labels and annotations KServe copies
  into it); storage from ``pvc://<claim>/<path>`` only; the revision's model loaded in a
  worker thread after the ready delay; traffic and rollout tracking exactly as KServe
  computes them (latest ready revision, canary split with the last rolled-out one,
  rollback); conditions through knative's condition manager (so reasons and
  lastTransitionTime behave as on a cluster); modelStatus; the finalizer. The controller
  writes status through the same admission as ``/status``.
* one ingress per InferenceService (``status.url`` = ``http://127.0.0.1:<port>``) with
  KServe's Hugging Face runtime routes; the traffic split is a deterministic weighted
  rotation; the ``latest``/``prev`` tags (annotation ``serving.kserve.io/enable-tag-
  routing: "true"``) route by Host header.
* faults: :meth:`~KubernetesApiDouble.set_ready_delay`,
  :meth:`~KubernetesApiDouble.fail_next_revisions`,
  :meth:`~KubernetesApiDouble.fail_revision`, :meth:`~KubernetesApiDouble.predictor_down`
  (Ready stays True while the model answers 503: kserve#1859),
  :meth:`~KubernetesApiDouble.api_down`/:meth:`~KubernetesApiDouble.api_up`, and the
  per-route faults of :class:`~llmops.testing.doubles.ToolDouble`.

What is not
-----------
watch (405), server-side apply (415), managedFields, RBAC and anonymous users, other
resources (pods, Knative services, events: the revisions are seen through
:meth:`~KubernetesApiDouble.revisions`), KServe's defaulting webhook, raw deployment mode,
transformers, explainers and runtimes other than the Hugging Face one (their specs are
admitted, and KServe's status reports no supporting runtime), autoscaling (one copy).
"""

from __future__ import annotations

from llmops.testing.kubernetes.double import (
    FINALIZER,
    KubernetesApiDouble,
    PredictorFactory,
    runtime_predictor,
)
from llmops.testing.kubernetes.ingress import REVISION_HEADER

__all__ = [
    "FINALIZER",
    "REVISION_HEADER",
    "KubernetesApiDouble",
    "PredictorFactory",
    "runtime_predictor",
]
