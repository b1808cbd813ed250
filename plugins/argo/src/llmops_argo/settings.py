"""The plugin's settings: how it reaches the Argo Server, and the Kubernetes API for the
Secrets that carry a pipeline's secret environment.

Read from ``LLMOPS_ARGO__<FIELD>``, overlaid by the configuration stored through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr

from llmops.plugins import PluginSettings, ServerPath, ToolUrl

#: A Kubernetes namespace, a service account's name (DNS-1123 labels).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class ArgoSettings(PluginSettings):
    """Read from ``LLMOPS_ARGO__<FIELD>``, overlaid by the stored configuration.

    Through the API, ``server_url`` and ``kubernetes_api_url`` must pass the platform's URL
    policy, and changing one clears the token sent to it unless the request sets it again;
    ``ca_cert`` names a file on the server and is set by the environment only.
    """

    server_url: Annotated[str | None, ToolUrl(credentials=("token",))] = Field(
        default=None,
        description="the Argo Server (https://argo-server.argo:2746); its REST API and UI",
    )
    token: SecretStr | None = Field(
        default=None,
        description="sent to the Argo Server as a bearer token (a service account's token; "
        "the server must run in `client` auth mode); never returned",
    )
    namespace: str = Field(
        default="argo", pattern=DNS_LABEL, description="where the workflows (and Secrets) live"
    )
    verify_ssl: bool = Field(
        default=True, description="check the Argo Server's and the Kubernetes API's certificates"
    )
    ca_cert: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="the CA bundle that signs the servers' certificates (from the "
        "environment only)",
    )
    default_image: str = Field(
        default="python:3.12-slim",
        min_length=1,
        max_length=1000,
        description="the container image of a stage that names none",
    )
    ui_url: Annotated[str | None, ToolUrl(link=True)] = Field(
        default=None,
        description="the Argo UI, for links to workflows and nodes; unset: server_url (the "
        "Argo Server serves the UI)",
    )
    service_account: str | None = Field(
        default=None,
        pattern=DNS_LABEL,
        description="the workflow pods' service account (spec.serviceAccountName); unset: "
        "the namespace's default",
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="the longest one request to the Argo Server or the Kubernetes API may "
        "take; the platform's retry queue retries, the plugin does not",
    )
    cancel_grace_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="how long cancel waits after Argo's stop for running nodes to end "
        "before it terminates the workflow",
    )
    kubernetes_api_url: Annotated[str | None, ToolUrl(credentials=("kubernetes_token",))] = Field(
        default=None,
        description="the Kubernetes API server (https://host:6443), where the plugin "
        "creates the Secrets holding a pipeline's secret environment; used with "
        "`kubernetes_token`",
    )
    kubernetes_token: SecretStr | None = Field(
        default=None, description="a bearer token for `kubernetes_api_url`; never returned"
    )
    in_cluster: bool = Field(
        default=False,
        description="reach the Kubernetes API with the pod's service account (the platform "
        "runs in the cluster); `kubernetes_api_url` wins when both are set",
    )

    @property
    def ui_base(self) -> str | None:
        """Where links to the Argo UI start, without a trailing slash."""
        base = self.ui_url or self.server_url
        return base.rstrip("/") if base else None

    @property
    def kubernetes_configured(self) -> bool:
        """Whether the plugin can create Secrets (pipelines with a secret environment)."""
        return self.kubernetes_api_url is not None or self.in_cluster
