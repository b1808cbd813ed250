"""An Argo Server double: what an orchestration plugin meets on a cluster with Argo
Workflows installed, on 127.0.0.1, talked to with hera's ``WorkflowsService`` unmodified
(and the official ``kubernetes`` client for Secrets); this package imports neither::

    with running_argo_server(token="t0ken", namespace="argo") as argo:
        service = WorkflowsService(host=argo.url, token=argo.token, namespace="argo")
        created = service.create_workflow(WorkflowCreateRequest(workflow=workflow.build()))
        done = argo.wait_until_completed(created.metadata.name)

What is modelled
----------------
* The Argo Server's REST API (paths, query parameters and bodies as its published
  swagger has them, every body validated against it): create (``serverDryRun``,
  ``generateName``, 409 on a duplicate name), lint, get, list (``listOptions`` label and
  field selectors, ``limit``/``continue``, ``fields``; ``items`` is null when empty, as
  Argo answers), delete, retry (failed, errored and omitted nodes reset;
  ``restartSuccessful`` with a ``nodeFieldSelector``), stop and terminate, logs
  (grpc-gateway's stream: one ``{"result": {"content", "podName"}}`` per line,
  ``podName``, ``logOptions.follow``, ``tailLines``, ``limitBytes``, ``grep``), ``info``,
  ``version`` and ``userinfo``. Failures are Argo's ``{"code", "message"}`` with
  grpc-gateway's HTTP status (on the log route, a stream ``{"error": {...}}``).
  ``auth_mode="client"``: every route needs ``Authorization: Bearer <token>`` (else 401
  ``token not valid``); ``"server"``: anything is accepted. Another namespace than the
  double's is 403 PermissionDenied.
* Admission (:mod:`.schema`): the Workflow against Argo's JSON schema (IntOrString as
  integer or string; unknown fields refused while ``strict``), Argo's own validation
  (names, entrypoint, template types, DAG dependencies, cycles, retry policies,
  deadlines) with its messages, and the Kubernetes API's ObjectMeta checks (label values
  over 63 characters...): 400 InvalidArgument naming the field. A Workflow the
  controller cannot run (steps, scripts, ``withItems``, ``when``, templateRef...) is 501.
* The workflow controller and the kubelet (:mod:`.controller`): DAG order, ``depends``
  expressions, ``parallelism``, ``retryStrategy`` (``limit``, ``retryPolicy``), template
  and workflow ``activeDeadlineSeconds``, fail-fast, Argo's node ids and v2 pod names,
  statuses and messages as Argo writes them; with ``run_commands`` each pod is a local
  process whose output is its log. Task faults: :meth:`ArgoServerDouble.fail_task`.
* The cluster's Secrets API (:mod:`.secrets`) at :attr:`ArgoServerDouble.kubernetes_url`,
  with the same token; ``secretKeyRef`` environment resolved from it; Secrets owned by
  a Workflow are garbage collected with it.
* Faults: :meth:`~ArgoServerDouble.slow`, :meth:`~ArgoServerDouble.expire_token`/
  :meth:`~ArgoServerDouble.set_token`, :meth:`~ArgoServerDouble.delete_workflow` (garbage
  collection), :meth:`~ArgoServerDouble.down`/:meth:`~ArgoServerDouble.up` (same port),
  :meth:`~ArgoServerDouble.kubernetes_down`/:meth:`~ArgoServerDouble.kubernetes_up`.

What is not
-----------
watch (``listOptions.watch`` answers a plain list), the workflow archive, WorkflowTemplates,
CronWorkflows, events, artifacts and output parameters, steps/script/resource/suspend
templates, ``withItems``/``withParam``/``when``/``continueOn``, exit handlers, retry
backoff, pod GC, SSO. Timestamps have whole seconds, as on a cluster. Images are ignored.
A Secret that is missing fails the pod at once (``Error``, ``CreateContainerConfigError:
...``) where a cluster would keep it ``Pending`` with that message.
"""

from __future__ import annotations

from llmops.testing.argo.controller import fnv32a, node_id, pod_name
from llmops.testing.argo.double import ARGO_VERSION, ArgoServerDouble, running_argo_server
from llmops.testing.argo.errors import TOKEN_NOT_VALID, GrpcCode

__all__ = [
    "ARGO_VERSION",
    "TOKEN_NOT_VALID",
    "ArgoServerDouble",
    "GrpcCode",
    "fnv32a",
    "node_id",
    "pod_name",
    "running_argo_server",
]
