"""The plugin's settings: how it reaches the Kubernetes API and what it may deploy.

Read from ``LLMOPS_KSERVE__<FIELD>``, overlaid by the configuration stored through the API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from llmops.plugins import PluginSettings, ServerPath, ToolUrl

#: KServe's model server for LLMs (vLLM or transformers inside), with OpenAI's routes
#: under /openai/v1; installed with KServe as a ClusterServingRuntime.
HUGGINGFACE_RUNTIME = "kserve-huggingfaceserver"


class KServeSettings(PluginSettings):
    """Read from ``LLMOPS_KSERVE__<FIELD>``, overlaid by the stored configuration.

    How the plugin reaches the Kubernetes API, first that applies: ``api_url`` (with
    ``token``); ``kubeconfig`` (with ``context``); ``in_cluster`` (the pod's service
    account); else ``$KUBECONFIG`` or ``~/.kube/config`` when one exists, else the in-cluster
    configuration when the platform runs in a pod.

    Through the API, ``api_url`` must pass the platform's URL policy and changing it clears
    ``token`` unless the request sets it again; ``kubeconfig`` and ``ca_cert`` name files
    on the server and are set by the environment only (a kubeconfig can run commands).
    """

    namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="where the InferenceServices live; unset: the pod's own namespace "
        "in-cluster, the kubeconfig context's namespace, else 'default'",
    )
    api_url: Annotated[str | None, ToolUrl(credentials=("token",))] = Field(
        default=None,
        description="the Kubernetes API server (https://host:6443); used with `token`",
    )
    token: SecretStr | None = Field(
        default=None, description="a bearer token for `api_url` (a service account's token)"
    )
    kubeconfig: Annotated[Path | None, ServerPath()] = Field(
        default=None, description="a kubeconfig file (from the environment only)"
    )
    context: str | None = Field(default=None, description="the kubeconfig context to use")
    in_cluster: bool = Field(
        default=False,
        description="use the pod's service account (the platform runs in the cluster)",
    )
    ca_cert: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="the CA bundle that signs the API server's certificate (from the "
        "environment only)",
    )
    verify_ssl: bool = Field(default=True, description="check the API server's certificate")
    use_cluster_address: bool = Field(
        default=False,
        description="send inference to status.address.url (the predictor's in-cluster "
        "address) instead of status.url (its external URL): set it when the platform runs "
        "in the cluster",
    )
    storage_uri_prefixes: dict[str, str] = Field(
        default_factory=dict,
        description="where KServe reads the platform's local model folders: a local "
        "folder prefix to a storage URI prefix, e.g. {'/var/lib/llmops/models/': "
        "'pvc://llmops-models/'} (a volume both mount)",
    )
    runtimes: list[str] = Field(
        default_factory=lambda: [HUGGINGFACE_RUNTIME],
        min_length=1,
        description="the ServingRuntimes endpoints may name, the default first",
    )
    service_account: str | None = Field(
        default=None,
        description="the predictors' service account (the one whose secrets hold the "
        "storage credentials for s3:// or gs:// models)",
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="the longest one request of the plugin to the API server or a "
        "predictor's readiness route may take",
    )

    def reaches_a_cluster(self) -> bool:
        """Whether any way to the Kubernetes API is set or found (see the class): without
        one the plugin offers no serving framework, so it is never the one a request that
        names none gets, nor a tie with one that works (a local Ray Serve)."""
        if self.api_url or self.kubeconfig or self.in_cluster:
            return True
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return True
        found = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        return (
            any(Path(p).is_file() for p in found) or Path("~/.kube/config").expanduser().is_file()
        )

    @field_validator("storage_uri_prefixes")
    @classmethod
    def _absolute_prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for local, remote in value.items():
            if not local.startswith("/"):
                raise ValueError(f"{local!r} is not an absolute folder")
            if "://" not in remote:
                raise ValueError(f"{remote!r} is not a storage URI (pvc://, s3://, gs://, ...)")
        return value
