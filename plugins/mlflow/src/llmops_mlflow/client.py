"""MLflow's client with the tracker's own credentials, never the process environment's.

MLflow's client reads its bearer token from ``MLFLOW_TRACKING_TOKEN`` on every request,
and its stores are shared by the whole process (one per URI). Putting an integration's
token there would hand it to every subprocess (the stages of pipelines) and keep it after
the integration dropped it. So a tracker on an HTTP server gets a client of its own:

* its tracking calls go through a ``RestStore`` (MLflow's REST client) built with the
  tracker's :class:`~mlflow.utils.rest_utils.MlflowHostCreds`;
* its artifact calls (``mlflow-artifacts:`` and ``http(s):`` locations, which the tracking
  server proxies) go through an artifact repository with the same credentials.

MLflow's other client settings in the environment still apply (TLS options, a client
certificate, basic auth in MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials):
they are the operator's, not secrets a plugin wrote. MLFLOW_TRACKING_TOKEN does not: the
token is the plugin's ``token`` setting.

This module imports MLflow: only the tracker's background start imports it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.client import TrackingServiceClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.request_utils import augmented_raise_for_status
from mlflow.utils.rest_utils import MlflowHostCreds, http_request
from mlflow.utils.uri import validate_path_is_safe

#: Where MLflow's tracking server serves proxied artifacts
ARTIFACTS_ENDPOINT = "/api/2.0/mlflow-artifacts/artifacts"

Credentials = Callable[[str], MlflowHostCreds]


def host_credentials(host: str, token: str | None) -> MlflowHostCreds:
    """MLflow's credentials for ``host`` as its client reads them from the environment,
    with ``token`` (or none) in place of MLFLOW_TRACKING_TOKEN."""
    default = get_default_host_creds(host)  # type: ignore[no-untyped-call]
    return MlflowHostCreds(  # type: ignore[no-untyped-call]
        host=host,
        username=default.username,
        password=default.password,
        token=token,
        aws_sigv4=default.aws_sigv4,
        auth=default.auth,
        ignore_tls_verification=default.ignore_tls_verification,
        client_cert_path=default.client_cert_path,
        server_cert_path=default.server_cert_path,
    )


def has_credentials(host: str, token: str | None) -> bool:
    """Whether requests to ``host`` carry credentials of this process (a token, basic
    auth, a signature or an auth plugin): a job's process would need them too."""
    creds = host_credentials(host, token)
    return bool(creds.token or creds.username or creds.aws_sigv4 or creds.auth)


def credentialed_client(tracking_uri: str, token: str | None) -> MlflowClient:
    """An ``MlflowClient`` for the tracking server at ``tracking_uri`` whose every request
    carries ``token`` (and no token when it is None), whatever the environment says."""

    def credentials(host: str) -> MlflowHostCreds:
        return host_credentials(host, token)

    client = MlflowClient(tracking_uri=tracking_uri)
    # MLflow builds the client's store from the URI alone (its store registry is shared by
    # the process); the tracking client below holds a store of this client's own
    client._tracking_client = _TrackingClient(tracking_uri, credentials)
    return client


class _TrackingClient(TrackingServiceClient):
    """MLflow's tracking client over a REST store and artifact repositories that use the
    given credentials instead of the environment's."""

    def __init__(self, tracking_uri: str, credentials: Credentials) -> None:
        self._credentials = credentials
        self._store = RestStore(lambda: credentials(tracking_uri))  # type: ignore[no-untyped-call]
        super().__init__(tracking_uri)  # type: ignore[no-untyped-call]

    @property
    def store(self) -> RestStore:
        return self._store

    def _get_artifact_repo(self, resource_id: str, *, resource: str = "run") -> Any:
        """The run's (or logged model's) artifact repository, built for this client (not
        from MLflow's process-wide cache, which other clients fill)."""
        if resource == "run":
            location = self.get_run(resource_id).info.artifact_uri  # type: ignore[no-untyped-call]
        else:
            location = self.get_logged_model(resource_id).artifact_location
        scheme = location.split(":", 1)[0].lower()
        if scheme == "mlflow-artifacts":
            return _ProxiedArtifacts(location, self.tracking_uri, self._credentials)
        if scheme in {"http", "https"}:
            return _HttpArtifacts(location, self.tracking_uri, self._credentials)
        return get_artifact_repository(location, tracking_uri=self.tracking_uri)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        # MLflow's own goes through the process-wide store and repositories
        listed: list[FileInfo] = self._get_artifact_repo(run_id).list_artifacts(path)
        return listed


class _CredentialedArtifacts:
    """The credentials of an HTTP artifact repository: MLflow's reads the environment's."""

    artifact_uri: str
    _llmops_credentials: Credentials

    @property
    def _host_creds(self) -> MlflowHostCreds:
        return self._llmops_credentials(self.artifact_uri)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """MLflow's ``HttpArtifactRepository.list_artifacts``, with these credentials."""
        url, tail = self.artifact_uri.split(ARTIFACTS_ENDPOINT, maxsplit=1)
        root = tail.lstrip("/")
        params = {"path": posixpath.join(root, path) if path else root}
        response = http_request(  # type: ignore[no-untyped-call]
            self._llmops_credentials(url), ARTIFACTS_ENDPOINT, "GET", params=params
        )
        augmented_raise_for_status(response)  # type: ignore[no-untyped-call]
        found = []
        for item in response.json().get("files", []):
            relative = validate_path_is_safe(item["path"])  # type: ignore[no-untyped-call]
            found.append(
                FileInfo(
                    posixpath.join(path, relative) if path else relative,
                    item["is_dir"],
                    int(item["file_size"]) if "file_size" in item else None,
                )
            )
        # as MLflow's: listing a single file lists nothing
        if (
            len(found) == 1
            and not found[0].is_dir
            and path is not None
            and found[0].path == posixpath.join(path, posixpath.basename(path))
        ):
            return []
        return sorted(found, key=lambda f: f.path)


class _ProxiedArtifacts(_CredentialedArtifacts, MlflowArtifactsRepository):
    def __init__(self, artifact_uri: str, tracking_uri: str, credentials: Credentials) -> None:
        self._llmops_credentials = credentials
        super().__init__(artifact_uri, tracking_uri=tracking_uri)


class _HttpArtifacts(_CredentialedArtifacts, HttpArtifactRepository):
    def __init__(self, artifact_uri: str, tracking_uri: str, credentials: Credentials) -> None:
        self._llmops_credentials = credentials
        super().__init__(artifact_uri, tracking_uri=tracking_uri)  # type: ignore[no-untyped-call]
