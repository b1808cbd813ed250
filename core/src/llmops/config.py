"""The core's own settings, read from ``LLMOPS_*`` environment variables.

Plugin settings are separate: ``LLMOPS_<PLUGIN>__<FIELD>`` (note the double underscore),
validated by the plugin's own settings model (see :mod:`llmops.integrations`).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmops.url_policy import AllowlistSetting


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmops"


def embedded_database_url(data_dir: Path) -> str:
    """The SQLite database a platform keeps in ``data_dir`` when no database_url is set."""
    return f"sqlite:///{data_dir / 'llmops.db'}"


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="the platform's folder: the SQLite database (when database_url is unset), "
        "uploads and datasets (storage/), the key file secret.key, the local executor's "
        "runs and each plugin's own folder (plugins/<name>)",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under the data dir when unset"
    )
    host: str = Field(default="127.0.0.1", description="the address `llmops up` listens on")
    port: int = Field(default=8000, description="the port `llmops up` listens on")
    public_url: str | None = Field(
        default=None, description="how jobs and links reach the API; http://host:port if unset"
    )
    plugins: str = Field(
        default="all",
        description="plugins enabled unless the stored configuration says otherwise: "
        "'all', 'none', or a comma-separated list of names",
    )
    max_upload_bytes: int = Field(
        default=1024**3,
        description="the largest file a dataset upload may send",
    )
    max_archive_members: int = Field(
        default=100_000,
        description="the most members an uploaded archive that is extracted may have (422 past it)",
    )
    max_archive_bytes: int = Field(
        default=10 * 1024**3,
        description="the most bytes an uploaded archive that is extracted may unpack to (413 "
        "past it)",
    )
    health_cache_seconds: float = Field(
        default=5.0,
        description="seconds between two rounds of the background health checks; /health, "
        "/readyz and the integrations' health answer from the last round",
    )
    health_check_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how long one background health check (a provider's health(), the "
        "database's SELECT 1) may take before it is reported down",
    )
    status_history_hours: float = Field(
        default=24.0,
        gt=0,
        description="how long the integrations' status history (each change of a "
        "provider's health: up, degraded, down, with its time and reason) is kept in the "
        "database for the overview; older changes are deleted",
    )
    traffic_sample_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="how often the gateway's counters are sampled for the endpoints' "
        "traffic API (GET /serving/endpoints/{id}/traffic): its series' resolution; the "
        "last hour is kept",
    )
    integration_url_allowlist: AllowlistSetting = Field(
        default="",
        description="internal hosts integration URLs set through the API may name: host "
        "names, '*.domain', addresses and CIDRs, comma-separated; loopback, link-local and "
        "private addresses are refused otherwise",
    )
    provider_timeout_seconds: float = Field(
        default=10.0, gt=0, description="deadline of one call to a tool from a request"
    )
    long_work_timeout_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="deadline of one call of long work (a model import or export the "
        "worker delivers; a dataset version's create, restore, diff or push): past it, the "
        "call is given up and retried",
    )
    circuit_failure_threshold: int = Field(
        default=5,
        ge=1,
        description="outages of a tool in a row (per plugin and capability) that open its "
        "circuit breaker: calls to it are then paused",
    )
    circuit_reset_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long an open circuit pauses calls before one trial call (half-open) "
        "is let through",
    )
    auth_failure_limit: int = Field(
        default=20,
        ge=1,
        description="failed authentications (unknown, malformed or revoked keys) one source "
        "may make within auth_failure_window_seconds before it is blocked",
    )
    auth_failure_window_seconds: float = Field(
        default=60.0,
        gt=0,
        description="the window in which auth_failure_limit failed authentications of one "
        "source block it",
    )
    auth_block_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long a blocked source gets 429 for any key this process has not "
        "accepted before",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks (10.0.0.0/8) of reverse proxies "
        "whose X-Forwarded-For names the client to `llmops up`; empty: the connecting "
        "address is the client",
    )
    outbox_max_attempts: int = Field(
        default=10,
        ge=1,
        description="tries of a queued write to a tool before it is dead-lettered (one the "
        "tool refuses is dead-lettered at once)",
    )
    outbox_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long a worker's claim on a queued write holds before another "
        "worker may take it over",
    )
    idempotency_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a request holds its Idempotency-Key without renewing it "
        "(it renews it every third of this while it runs): a key whose request died with "
        "its process answers 409 for at most this long, then a replay takes it over",
    )
    run_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long a platform process may miss its heartbeat (every third of "
        "this, at most every second) before another takes over the pipeline runs its "
        "local executor drives; a process of the same host that is gone is taken over "
        "at once",
    )
    executor_max_parallel: int = Field(
        default=4,
        description="not read by the platform: the local executor's stages at once per "
        "pipeline are LLMOPS_LOCAL__MAX_PARALLEL",
    )
    sync_interval_seconds: float = Field(
        default=1.0,
        description="seconds between two rounds of the background worker: queued writes "
        "delivered, active pipelines synced with their provider, configuration changes of "
        "other processes picked up",
    )
    serving_sync_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how often the background worker checks every endpoint's deployment "
        "with its framework, and deploys again one the framework lost",
    )
    strict_plugins: bool = Field(
        default=False,
        description="raise a plugin's load failure as an error (for CI) instead of leaving "
        "the plugin out and recording the failure",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="encrypts plugin secret settings at rest: a Fernet key or a passphrase, "
        "or a comma-separated list of them for rotation (the first encrypts); "
        "<data_dir>/secret.key when unset",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return embedded_database_url(self.data_dir)

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def sqlite_path(self) -> Path | None:
        """The database file when the database is SQLite."""
        url = self.resolved_database_url
        for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
            if url.startswith(prefix):
                path = url[len(prefix) :].split("?", 1)[0]
                return Path(path) if path and path != ":memory:" else None
        return None

    def protected_paths(self) -> tuple[Path, ...]:
        """What no stage may read (``PluginContext.protected_paths``): the data dir and,
        where they lie elsewhere, the SQLite database (with its journal files)."""
        paths = [self.data_dir.resolve()]
        database = self.sqlite_path()
        if database is not None:
            database = database.resolve()
            if not database.is_relative_to(paths[0]):
                suffixes = ("", "-wal", "-shm", "-journal")
                paths += [database.with_name(database.name + s) for s in suffixes]
        return tuple(paths)

    def plugin_data_dir(self, name: str) -> Path:
        """The folder the plugin ``name`` owns (``PluginContext.data_dir``)."""
        return self.data_dir / "plugins" / name

    def default_enabled(self, name: str) -> bool:
        value = self.plugins.strip().lower()
        if value == "all":
            return True
        if value == "none":
            return False
        return name in {n.strip() for n in value.split(",") if n.strip()}
