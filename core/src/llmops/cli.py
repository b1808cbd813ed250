"""The ``llmops`` command. Heavy imports happen inside the commands, so ``llmops --help``
starts fast and never imports a tool's SDK."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from llmops.config import CoreSettings
    from llmops.integrations import IntegrationRuntime


def _settings(**overrides: Any) -> CoreSettings:
    from llmops.config import CoreSettings

    values = {k: v for k, v in overrides.items() if v is not None}
    return CoreSettings(**values)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmops-core", prog_name="llmops")
def main() -> None:
    """llmops: the LLM Ops platform (catalog, training, serving, pipelines, integrations).

    Settings come from LLMOPS_* environment variables: LLMOPS_DATA_DIR (default
    ~/.local/share/llmops), LLMOPS_DATABASE_URL (default SQLite in the data dir),
    LLMOPS_PLUGINS (plugins enabled by default: all, none, or a list).
    """


@main.command()
@click.option("--host", default=None, help="address to bind (default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default 8000)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--log-level", default="info", show_default=True)
def up(host: str | None, port: int | None, data_dir: Path | None, log_level: str) -> None:
    """Migrate the database, then serve the API, the worker and the console."""
    import uvicorn

    from llmops.api.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir)
    click.echo(f"llmops: data in {settings.data_dir}, API on {settings.api_url}/llm-ops/v1")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)


# -- database --------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


def _engine() -> Any:
    from llmops.db.session import make_engine

    return make_engine(_settings().resolved_database_url)


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from llmops.db import migrate

    engine = _engine()
    migrate.upgrade(engine, revision)
    click.echo(f"database at revision {migrate.current_revision(engine)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the database)."""
    from llmops.db import migrate

    engine = _engine()
    migrate.downgrade(engine, revision)
    click.echo(f"database at revision {migrate.current_revision(engine) or 'base'}")


@db.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one this version knows."""
    from llmops.db import migrate

    engine = _engine()
    current = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    click.echo(f"current: {current or 'none (empty database)'}\nhead:    {head}")


# -- plugins ---------------------------------------------------------------------------


@main.group()
def plugins() -> None:
    """Installed plugins."""


def _runtime() -> IntegrationRuntime:
    """A runtime with the enabled plugins loaded, reading stored configuration if any."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from llmops.db.session import make_engine, make_session_factory
    from llmops.integrations import IntegrationRuntime

    settings = _settings()
    runtime = IntegrationRuntime(settings)
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        runtime.apply({}, {})  # no database yet: nothing stored, and none is created
        return runtime
    engine = make_engine(settings.resolved_database_url)
    try:
        if inspect(engine).has_table("integration_configs"):
            with make_session_factory(engine)() as session:
                runtime.sync(session)
                return runtime
    finally:
        engine.dispose()
    runtime.apply({}, {})
    return runtime


def _plugin_rows(runtime: IntegrationRuntime) -> list[dict[str, Any]]:
    rows = []
    for state in runtime.states():
        info = state.loaded.info if state.loaded else None
        rows.append(
            {
                "name": state.installed.name,
                "version": info.version if info else state.installed.version,
                "distribution": state.installed.distribution,
                "target": state.installed.target,
                "enabled": state.enabled,
                "loaded": state.loaded is not None,
                "builtin": state.builtin,
                "capabilities": sorted(c.value for c in info.capabilities) if info else [],
                "default_for": sorted(c.value for c in state.is_default_for),
                "error": f"{state.failure.stage}: {state.failure.error}" if state.failure else None,
            }
        )
    return rows


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def plugins_list(as_json: bool) -> None:
    """Installed plugins: version, capabilities, enabled, load errors."""
    runtime = _runtime()
    try:
        rows = _plugin_rows(runtime)
    finally:
        runtime.shutdown()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = f"{'NAME':<16}{'VERSION':<10}{'ENABLED':<9}{'LOADED':<8}{'CAPABILITIES':<28}ERROR"
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['name']:<16}{row['version'] or '-':<10}{'yes' if row['enabled'] else 'no':<9}"
            f"{'yes' if row['loaded'] else 'no':<8}{','.join(row['capabilities']) or '-':<28}"
            f"{row['error'] or ''}"
        )


@plugins.command("doctor")
def plugins_doctor() -> None:
    """Load every enabled plugin and report what failed and why (exit 1 on failures)."""
    runtime = _runtime()
    states = runtime.states()
    runtime.shutdown()
    failed = [s for s in states if s.failure is not None]
    for state in states:
        mark = "FAIL" if state.failure else ("ok" if state.enabled else "off")
        click.echo(f"[{mark:>4}] {state.installed.name} ({state.installed.target})")
        if state.failure:
            click.echo(f"       {state.failure.stage}: {state.failure.error}")
    if failed:
        click.echo(f"{len(failed)} plugin(s) failed", err=True)
        sys.exit(1)
    click.echo("all enabled plugins loaded")


# -- API keys --------------------------------------------------------------------------


@main.group("api-keys")
def api_keys() -> None:
    """API keys (shown once, stored hashed)."""


@api_keys.command("create")
@click.option("--name", required=True, help="who or what the key is for")
@click.option(
    "--role", type=click.Choice(["admin", "editor", "viewer"]), default="viewer", show_default=True
)
def api_keys_create(name: str, role: str) -> None:
    """Create a key and print it once."""
    from llmops.platform import Platform
    from llmops.services.api_keys import Role, create_api_key

    platform = Platform(_settings())
    platform.migrate()
    with platform.transaction() as session:
        row, key = create_api_key(session=session, name=name, role=Role(role))
    click.echo(f"created {role} key {row.id} ({name}); it is shown only now:\n{key}")


# -- pipelines -------------------------------------------------------------------------


@main.group()
def pipelines() -> None:
    """Run pipelines locally, without a server."""


@pipelines.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-parallel", type=int, default=4, show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def pipelines_run(file: Path, max_parallel: int, state_dir: Path | None) -> None:
    """Run the pipeline in FILE (YAML or JSON, the API's body) with the local executor.

    A stage's relative workingDir is taken from FILE's folder; stages without one share the
    run's own work folder. Exit status 0 when every stage succeeded.
    """
    import tempfile

    import yaml
    from pydantic import ValidationError

    from llmops.api.schemas import PipelineCreate
    from llmops.builtin.local_executor import LocalExecutor
    from llmops.capabilities.orchestration import PipelineSpec
    from llmops.errors import InvalidRequest

    try:
        body = PipelineCreate.model_validate(yaml.safe_load(file.read_text()))
    except (ValidationError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    base = file.resolve().parent
    stages = [
        s.to_spec().model_copy(update={"working_dir": str(base / s.working_dir)})
        if s.working_dir
        else s.to_spec()
        for s in body.stages
    ]
    spec = PipelineSpec(name=body.name, stages=stages, max_parallel=body.max_parallel)
    root = state_dir or Path(tempfile.mkdtemp(prefix="llmops-run-"))
    executor = LocalExecutor(root, max_parallel=max_parallel)
    try:
        status = executor.submit(spec)
    except InvalidRequest as exc:
        raise click.ClickException(exc.detail) from exc
    seen: dict[str, str] = {}
    try:
        while True:
            status = executor.status(status.external_id)
            for stage in status.stages:
                if seen.get(stage.name) != stage.state.value:
                    seen[stage.name] = stage.state.value
                    click.echo(f"{stage.name:<24} {stage.state.value}")
            if status.state.terminal:
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        status = executor.cancel(status.external_id)
    finally:
        executor.close()
    click.echo(f"pipeline {status.state.value}; logs in {root / 'runs' / status.external_id}")
    sys.exit(0 if status.state.value == "succeeded" else 1)


if __name__ == "__main__":
    main()
