"""The plugin's settings: where the dataset repositories, DVC's cache and the remote are,
the remote's credentials, and how long the plugin waits.

Read from ``LLMOPS_DVC__<FIELD>``, overlaid by the configuration stored through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr

from llmops.plugins import OperatorOnly, PluginSettings, ServerPath, ToolUrl

#: The secret fields, each sent to the remote only (see :func:`llmops_dvc.repo.remote_config`).
CREDENTIALS = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "password",
    "azure_connection_string",
    "azure_account_key",
)

#: The remotes DVC reaches with a plugin of its own (dvc-s3, dvc-gs, dvc-azure, dvc-ssh,
#: dvc-webdav, ...; dvc-http comes with DVC) and that the API lets an admin name; a local
#: folder is set by the environment only.
REMOTE_URL = ToolUrl(
    schemes=("s3", "gs", "azure", "ssh", "http", "https", "webdav", "webdavs"),
    credentials=CREDENTIALS,
    bucket_schemes=("s3", "gs", "azure"),
)


class DvcSettings(PluginSettings):
    """Read from ``LLMOPS_DVC__<FIELD>``, overlaid by the stored configuration.

    Through the API, ``remote_url`` must pass the platform's URL policy (a folder on the
    server is set by the environment only), and changing it clears the stored credentials
    unless the request sets them again. The folders are the operator's (environment
    only). The credentials are handed to DVC in memory, never written to a DVC config
    file, never returned or logged.
    """

    remote_url: Annotated[str | None, REMOTE_URL] = Field(
        default=None,
        description="the DVC remote the versions' data is pushed to: s3://bucket/path, "
        "gs://bucket/path, azure://container/path, ssh://host/path, https://host/path "
        "(needs the dvc-s3, dvc-gs, dvc-azure or dvc-ssh package) or a folder (from the "
        "environment only); unset: the folder remote under the plugin's data dir",
    )
    access_key_id: SecretStr | None = Field(
        default=None, description="S3 (or an S3-compatible store): the access key id"
    )
    secret_access_key: SecretStr | None = Field(
        default=None, description="S3 (or an S3-compatible store): the secret access key"
    )
    session_token: SecretStr | None = Field(
        default=None, description="S3: a session token for temporary credentials"
    )
    endpoint_url: Annotated[str | None, ToolUrl(credentials=CREDENTIALS)] = Field(
        default=None,
        description="an S3-compatible store's endpoint (MinIO, Ceph, R2): "
        "http(s)://host:port; unset: AWS",
    )
    region: str | None = Field(
        default=None, max_length=64, pattern=r"^[a-z0-9-]+$", description="S3: the region"
    )
    user: str | None = Field(
        default=None,
        max_length=128,
        description="SSH, HTTP or WebDAV: the user name (SSH: else the URL's)",
    )
    password: SecretStr | None = Field(
        default=None, description="SSH, HTTP or WebDAV: the password"
    )
    keyfile: Annotated[Path | None, ServerPath()] = Field(
        default=None, description="SSH: the private key file (from the environment only)"
    )
    gcs_credentials_file: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="Google Cloud Storage: a service account's JSON key file (from the "
        "environment only); unset: the machine's application default credentials",
    )
    azure_connection_string: SecretStr | None = Field(
        default=None, description="Azure Blob Storage: a connection string"
    )
    azure_account_name: str | None = Field(
        default=None, max_length=64, description="Azure Blob Storage: the storage account"
    )
    azure_account_key: SecretStr | None = Field(
        default=None, description="Azure Blob Storage: the account key"
    )
    remote_options: Annotated[
        dict[str, str], OperatorOnly("DVC remote options can name files and commands")
    ] = Field(
        default_factory=dict,
        description="further options of the DVC remote, as `dvc remote modify` names them "
        '(e.g. {"jobs": "8"}); from the environment only',
    )
    repos_dir: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="the folder holding one git + DVC repository per dataset; unset: repos "
        "under the plugin's data dir (from the environment only)",
    )
    cache_dir: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="DVC's cache, shared by every dataset's repository; unset: cache "
        "under the plugin's data dir (from the environment only)",
    )
    remote_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="the longest health() waits for the remote, and one connection to it "
        "may take to open",
    )
    lock_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="the longest a write to a dataset waits for another write to the same "
        "dataset in this process (writes to different datasets never wait for each other)",
    )
