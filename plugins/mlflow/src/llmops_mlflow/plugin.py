"""The module the ``mlflow`` entry point names: the plugin's hook implementations.

It stays import-light (``import mlflow`` takes seconds): the core imports this module to
list and load the plugin, so MLflow is imported only when the tracker is first used (in
a background thread), never by building it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr

import llmops
from llmops.capabilities.common import Capability, Provider
from llmops.plugins import PluginContext, PluginInfo, PluginSettings, ToolUrl
from llmops_mlflow import __version__

if TYPE_CHECKING:
    import click
    from prometheus_client.registry import Collector

    from llmops_mlflow.tracker import MlflowTracker


#: A tracking server, or one of the SQL stores MLflow opens itself (its SQLAlchemy URIs).
TRACKING_URL = ToolUrl(
    schemes=("http", "https", "sqlite", "postgresql", "mysql", "mssql"), credentials=("token",)
)


class MlflowSettings(PluginSettings):
    """Read from ``LLMOPS_MLFLOW__<FIELD>``, overlaid by the stored configuration.

    Through the API, a URL must pass the platform's URL policy (:class:`ToolUrl`): a SQLite
    store or an artifact folder on the server's disk is set by the environment only, and
    changing a URL the token is sent to clears the token unless the request sets it again.
    """

    tracking_uri: Annotated[str | None, TRACKING_URL] = Field(
        default=None,
        description="an MLflow tracking server (http://host:5000), or a store URI "
        "(sqlite:///path/mlflow.db); unset: a local SQLite store in the plugin's data dir",
    )
    artifact_location: Annotated[
        str | None,
        # the platform uploads artifacts there, with the token for an HTTP artifact store
        ToolUrl(
            schemes=("s3", "gs", "wasbs", "mlflow-artifacts", "http", "https", "file"),
            credentials=("token",),
            bucket_schemes=("s3", "gs"),
        ),
    ] = Field(
        default=None,
        description="where new experiments keep artifacts (a folder, s3://bucket/path); "
        "unset: the server's default, or the plugin's data dir for the local store",
    )
    ui_url: Annotated[str | None, ToolUrl(link=True)] = Field(
        default=None,
        description="MLflow's UI, for links to runs; defaults to the tracking URI when it "
        "is a server",
    )
    token: SecretStr | None = Field(
        default=None, description="bearer token for the tracking server (MLFLOW_TRACKING_TOKEN)"
    )
    job_tracking_uri: Annotated[str | None, TRACKING_URL] = Field(
        default=None,
        description="the tracking URI training jobs log to, when they reach MLflow by "
        "another address than the platform (e.g. the in-cluster Service); unset: the same",
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="the longest one request to MLflow may take; MLflow's own retries are "
        "off, the platform's retry queue retries instead",
    )


@llmops.hookimpl
def llmops_plugin_info() -> PluginInfo:
    return PluginInfo(
        name="mlflow",
        version=__version__,
        display_name="MLflow",
        description="Experiment tracking in MLflow: a run per training job, params, "
        "metrics, artifacts, search and compare.",
        capabilities=frozenset({Capability.TRACKING}),
        settings_model=MlflowSettings,
        core_version=">=0.1,<1",
        links={"docs": "https://mlflow.org/docs/latest/tracking.html"},
    )


def build_tracker(settings: MlflowSettings, context: PluginContext) -> MlflowTracker:
    """The tracker for these settings: a tracking server, or the local SQLite store.
    Contacts nothing: MLflow's client starts on the tracker's first use."""
    import os

    # before MLflow is first imported: its INFO lines (schema migrations) stay out of the
    # platform's output unless the operator asks for them
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from llmops_mlflow.tracker import MlflowTracker

    data_dir = context.ensure_data_dir()
    tracking_uri = settings.tracking_uri or f"sqlite:///{data_dir / 'mlflow.db'}"
    artifact_location = settings.artifact_location
    if artifact_location is None and settings.tracking_uri is None:
        artifact_location = (data_dir / "artifacts").as_uri()
    # the token stays with the tracker's own client: never in os.environ, which every
    # subprocess (a pipeline's stage) inherits and which outlives the setting
    return MlflowTracker(
        tracking_uri,
        artifact_location=artifact_location,
        ui_url=settings.ui_url,
        request_timeout=settings.request_timeout_seconds,
        job_tracking_uri=settings.job_tracking_uri,
        token=settings.token,
        migrations_lock=context.migrations_lock,
    )


@llmops.hookimpl
def llmops_tracking(settings: MlflowSettings, context: PluginContext) -> MlflowTracker:
    return build_tracker(settings, context)


@llmops.hookimpl
def llmops_metrics_collectors(
    settings: MlflowSettings,
    context: PluginContext,
    providers: Mapping[Capability, Sequence[Provider]],
) -> list[Collector]:
    """Counts runs through the tracker ``llmops_tracking`` just built (never a second
    tracker: one MLflow client per plugin instance), and the metric points it sent."""
    from llmops_mlflow.metrics import MlflowRunsCollector
    from llmops_mlflow.tracker import MlflowTracker

    trackers = [p for p in providers.get(Capability.TRACKING, ()) if isinstance(p, MlflowTracker)]
    if not trackers:  # no tracker was built: nothing to count
        return []
    return [MlflowRunsCollector(trackers[0])]


@llmops.hookimpl
def llmops_cli_commands(context: PluginContext) -> list[click.Command]:
    from llmops_mlflow.commands import migrate

    return [migrate]
