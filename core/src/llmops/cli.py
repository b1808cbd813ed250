"""The ``llmops`` command. Heavy imports happen inside the commands, so ``llmops --help``
starts fast and never imports a tool's SDK."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from llmops.cli_demo import demo  # click and httpx only
from llmops.cli_examples import example  # click and httpx only
from llmops.cli_models import models  # click and httpx only
from llmops.cli_plugins import LlmopsGroup  # click only

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from llmops.config import CoreSettings
    from llmops.integrations import IntegrationRuntime


def _settings(**overrides: Any) -> CoreSettings:
    from llmops.config import CoreSettings

    values = {k: v for k, v in overrides.items() if v is not None}
    return CoreSettings(**values)


@click.group(cls=LlmopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmops-core", prog_name="llmops")
def main() -> None:
    """llmops: the LLM Ops platform (catalog, training, serving, pipelines, integrations).

    Settings come from LLMOPS_* environment variables: LLMOPS_DATA_DIR (default
    ~/.local/share/llmops), LLMOPS_DATABASE_URL (default SQLite in the data dir),
    LLMOPS_PLUGINS (plugins enabled by default: all, none, or a list).

    Plugins add their own commands under their name: `llmops mlflow migrate`, ...
    """


main.settings = _settings


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
    _ensure_admin_key(settings)
    proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    uvicorn.run(
        # stopped, it leaves its pipeline runs going: the next start, or a replica, takes
        # them over (a cancel stops a run)
        create_app(settings, hand_over_runs=True),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # X-Forwarded-For names the client only when a trusted proxy sent it (uvicorn would
        # trust any local process): failed authentications are limited per client address
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def _write_doc(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


_OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write to this file instead of standard output",
)


@main.command()
@_OUTPUT
def openapi(output: Path | None) -> None:
    """Print the core API's OpenAPI document (no plugin routes): the console's typed
    client is generated from it."""
    import json

    from llmops.api.app import create_app

    document = json.dumps(create_app(_settings(), start_worker=False).openapi(), indent=2)
    _write_doc(document + "\n", output)


@main.group()
def docs() -> None:
    """Reference pages generated from the code (docs/environment.md, docs/api/endpoints.md)."""


@docs.command("env")
@_OUTPUT
def docs_env(output: Path | None) -> None:
    """The environment reference: every LLMOPS_* setting of the core and of the shipped
    plugins, from their settings models."""
    from llmops.docs_env import render_environment

    try:
        text = render_environment()
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    _write_doc(text, output)


@docs.command("api")
@_OUTPUT
def docs_api(output: Path | None) -> None:
    """The table of the core API's routes, from its OpenAPI document."""
    from llmops.docs_env import render_endpoints

    _write_doc(render_endpoints(), output)


@contextmanager
def _migrated_transaction(settings: CoreSettings) -> Iterator[Session]:
    """A transaction on the migrated database, without starting a platform."""
    from llmops.db import migrate
    from llmops.db.session import make_engine, make_session_factory, transaction

    engine = make_engine(settings.resolved_database_url)
    try:
        migrate.upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _ensure_admin_key(settings: CoreSettings) -> None:
    """Migrate, and when no admin key is active create one and print it, once."""
    from llmops.services.api_keys import create_initial_admin_key

    with _migrated_transaction(settings) as session:
        created = create_initial_admin_key(session=session)
    if created is not None:
        row, key = created
        click.echo(
            f"llmops: no admin API key was active, so {row.name} ({row.id}) was created. "
            "It is shown only now; keep it, and send it as 'Authorization: Bearer <key>':\n"
            f"{key}"
        )
    sys.stdout.flush()  # before the server's logs, and when stdout is a file


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
                "choice_needed_for": sorted(c.value for c in state.choice_needed_for),
                "not_configured_for": sorted(c.value for c in state.not_configured_for),
                "priority": state.priority,
                "error": f"{state.failure.stage}: {state.failure.error}" if state.failure else None,
            }
        )
    return rows


def _unconfigured(row: dict[str, Any]) -> str:
    missing = row["not_configured_for"]
    return f"not configured: offers no {', '.join(missing)} yet" if missing else ""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def plugins_list(as_json: bool) -> None:
    """Installed plugins: version, capabilities, enabled, what each is the default for,
    load errors; and each capability whose default an admin must choose."""
    from llmops.integrations import choice_needed_message

    runtime = _runtime()
    try:
        rows = _plugin_rows(runtime)
        choices = runtime.choices_needed()
    finally:
        runtime.shutdown()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = (
        f"{'NAME':<16}{'VERSION':<10}{'ENABLED':<9}{'LOADED':<8}{'CAPABILITIES':<28}"
        f"{'DEFAULT FOR':<24}ERROR"
    )
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row['name']:<16}{row['version'] or '-':<10}{'yes' if row['enabled'] else 'no':<9}"
            f"{'yes' if row['loaded'] else 'no':<8}{','.join(row['capabilities']) or '-':<28}"
            f"{','.join(row['default_for']) or '-':<24}{row['error'] or _unconfigured(row)}"
        )
    for capability, tied in choices.items():
        click.echo(f"choice needed: {choice_needed_message(capability, tied)}", err=True)


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


@api_keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--all", "show_all", is_flag=True, help="include revoked keys and job tokens")
def api_keys_list(as_json: bool, show_all: bool) -> None:
    """Keys with their role and when they were last used (never the keys themselves)."""
    from llmops.services.api_keys import Role, list_api_keys

    rows: list[dict[str, Any]] = []
    with _migrated_transaction(_settings()) as session:
        cursor = None
        while True:
            page = list_api_keys(session=session, limit=500, cursor=cursor)
            rows += [
                {
                    "id": key.id,
                    "name": key.name,
                    "prefix": key.prefix,
                    "role": key.role,
                    "created_at": key.created_at.isoformat(),
                    "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                    "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
                }
                for key in page.items
                if show_all or (key.revoked_at is None and key.role != Role.JOB.value)
            ]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':<34}{'NAME':<24}{'ROLE':<8}{'PREFIX':<10}{'LAST USED':<27}REVOKED")
    for row in rows:
        click.echo(
            f"{row['id']:<34}{row['name'][:23]:<24}{row['role']:<8}{row['prefix']:<10}"
            f"{row['last_used_at'] or '-':<27}{row['revoked_at'] or ''}"
        )


@api_keys.command("revoke")
@click.argument("key_id")
def api_keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID; requests that present it are refused from now on."""
    from llmops.errors import NotFound
    from llmops.services.api_keys import revoke_api_key

    try:
        with _migrated_transaction(_settings()) as session:
            # the operator may revoke the last admin key: `llmops up` makes a new one
            name = revoke_api_key(session=session, key_id=key_id, keep_an_admin=False).name
    except NotFound as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"revoked key {key_id} ({name})")


# -- the worker and the retry queue ------------------------------------------------------


@main.command()
@click.option("--interval", type=float, default=None, help="seconds between rounds")
def worker(interval: float | None) -> None:
    """Deliver queued writes to tools and keep pipeline states fresh, without the API.

    Run as many as you like against PostgreSQL (they share the queue); with SQLite, one.
    """
    import signal
    import threading

    from llmops.platform import Platform
    from llmops.worker import BackgroundWorker

    settings = _settings()
    platform = Platform(settings)
    platform.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner = BackgroundWorker(platform, interval=interval or settings.sync_interval_seconds)
    click.echo(f"llmops worker {platform.outbox.worker_id}: delivering queued writes")
    runner.start_long_work()
    try:
        while not stop.wait(runner.interval):
            runner.tick()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        platform.stop(hand_over_runs=True)


@main.group()
def operations() -> None:
    """The retry queue: writes to tools that wait, and what became of them."""


def _operation_line(op: Any) -> str:
    return (
        f"{op.id}  {op.status:<10} {op.kind:<18} {op.provider:<12} "
        f"attempts {op.attempts}/{op.max_attempts}  {op.last_error or ''}"
    )


@operations.command("list")
@click.option("--status", default=None, help="pending, running, succeeded, dead, discarded")
@click.option("--limit", default=50, show_default=True)
def operations_list(status: str | None, limit: int) -> None:
    """List queued writes, newest first."""
    from llmops.platform import Platform
    from llmops.services.operations import list_operations

    platform = Platform(_settings())
    with platform.transaction() as session:
        for op in list_operations(session=session, status=status, limit=limit).items:
            click.echo(_operation_line(op))


@operations.command("show")
@click.argument("operation_id")
def operations_show(operation_id: str) -> None:
    """Everything about one queued write (its payload holds no secrets)."""
    from llmops.errors import NotFound
    from llmops.platform import Platform
    from llmops.services.operations import get_operation

    platform = Platform(_settings())
    try:
        with platform.transaction() as session:
            op = get_operation(session=session, operation_id=operation_id)
            click.echo(_operation_line(op))
            click.echo(json.dumps({"payload": op.payload, "result": op.result}, indent=2))
    except NotFound as exc:
        raise click.ClickException(exc.detail) from exc


@operations.command("retry")
@click.argument("operation_id")
def operations_retry(operation_id: str) -> None:
    """Put a dead write back in line now."""
    from llmops.errors import LlmopsError
    from llmops.platform import Platform

    try:
        op = Platform(_settings()).outbox.retry(operation_id)
    except LlmopsError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(_operation_line(op))


@operations.command("discard")
@click.argument("operation_id")
def operations_discard(operation_id: str) -> None:
    """Give up on a pending or dead write."""
    from llmops.errors import LlmopsError
    from llmops.platform import Platform

    try:
        op = Platform(_settings()).outbox.discard(operation_id)
    except LlmopsError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(_operation_line(op))


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


# -- rollback -------------------------------------------------------------------------


@main.command("rollback")
@click.argument("plugin")
@click.option("--dry-run", is_flag=True, help="print the plan, change nothing")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
def rollback(plugin: str, dry_run: bool, as_json: bool) -> None:
    """Disable PLUGIN and move what depends on it to its fallback.

    Pipelines still waiting to reach it run on the local executor; experiment runs are
    copied to the tracker that serves next (when one is enabled); stored defaults naming
    it are removed. What cannot move (pipelines running on the tool, endpoints serving
    from it, queued writes) is listed and left as it is. Works on the database that
    LLMOPS_DATABASE_URL names; running servers apply it at once.
    """
    from llmops.db.session import make_engine, make_session_factory
    from llmops.errors import LlmopsError
    from llmops.services import rollback as rollbacks

    settings = _settings()
    runtime = _runtime()
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    try:
        if dry_run:
            with sessions() as session:
                planned = rollbacks.plan(session, runtime, plugin)
        else:
            planned = rollbacks.apply(
                sessions, runtime, plugin, echo=lambda line: click.echo(line, err=as_json)
            )
        if as_json:
            click.echo(json.dumps({**planned.as_dict(), "dryRun": dry_run}, indent=2))
        elif dry_run:
            for step in planned.steps:
                click.echo(step.line())
            click.echo("dry run: nothing changed")
    except LlmopsError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        runtime.shutdown()
        engine.dispose()


main.add_command(example)
main.add_command(models)
main.add_command(demo)


if __name__ == "__main__":
    main()
