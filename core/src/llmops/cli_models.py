"""``llmops models``: catalog models and model registries on a running platform, through
its REST API, as any client would (click and httpx only)."""

from __future__ import annotations

import sys
from typing import Any

import click

from llmops.cli_examples import PlatformClient, poll

#: how often ``--wait`` asks how far an import is
POLL_SECONDS = 0.5


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def progress_line(status: dict[str, Any] | None) -> str:
    """One line for an import's ``importStatus``: phase, files and bytes, or why it waits."""
    if not status:
        return ""
    progress = status.get("progress") or {}
    line = str(status["state"])
    if progress:
        line = (
            f"{progress['phase']}: {progress['filesDone']}/{progress['filesTotal']} files, "
            f"{_size(progress['bytesDone'])} of {_size(progress.get('bytesTotal'))}"
        )
    if status.get("reason") and status["state"] != "ready":
        line += f" ({status['reason']})"
    return line


def _client(url: str, api_key: str | None) -> PlatformClient:
    return PlatformClient(url, api_key)


def _find_model(client: PlatformClient, model: str) -> dict[str, Any]:
    """A model by id or by name."""
    response = client.http.get(f"/catalog/models/{model}")
    if response.status_code == 200:
        return dict(response.json())
    found = client.find_by_name("/catalog/models", model, {"q": model})
    if found is None:
        raise click.ClickException(f"no model with the id or name {model!r}")
    return found


_url = click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="the platform"
)
_key = click.option(
    "--api-key", envvar="LLMOPS_API_KEY", help="an editor's key [env: LLMOPS_API_KEY]"
)


@click.group("models")
def models() -> None:
    """Catalog models and model registries (the Hugging Face Hub) on a running platform."""


@models.command("import")
@click.argument("repo_id")
@click.option("--revision", default="main", show_default=True, help="branch, tag or commit")
@click.option("--name", default=None, help="the catalog name (default: from REPO_ID)")
@click.option("--allow", "allow_patterns", multiple=True, metavar="GLOB", help="only these files")
@click.option("--provider", default=None, help="the registry (default: the platform's, hf)")
@click.option("--wait", is_flag=True, help="follow the import to its end, showing progress")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="with --wait")
@_url
@_key
def import_(
    repo_id: str,
    revision: str,
    name: str | None,
    allow_patterns: tuple[str, ...],
    provider: str | None,
    wait: bool,
    timeout: float,
    url: str,
    api_key: str | None,
) -> None:
    """Import REPO_ID from the registry into the catalog, pinned at the commit REVISION
    names. A refusal (pickle-only weights, remote code, unsafe file names) is reported at
    once; with --wait, exit 1 unless the model ends up ready."""
    client = _client(url, api_key)
    try:
        body: dict[str, Any] = {"repoId": repo_id, "revision": revision}
        if name:
            body["name"] = name
        if allow_patterns:
            body["allowPatterns"] = list(allow_patterns)
        if provider:
            body["provider"] = provider
        model = client.call("POST", "/catalog/models/import", json=body)
        click.echo(f"importing {model['name']} ({model['id']}) from {model['source']}")
        if model.get("degraded"):
            click.echo(f"  degraded: {model['degradedReason']}")
        if not wait:
            click.echo(f"follow it with: llmops models show {model['id']}")
            return
        model = _follow_import(client, model, timeout=timeout)
        click.echo(f"model {model['name']} {model['status']}")
        if model["status"] != "ready":
            sys.exit(1)
        click.echo(f"files in {model['uri']}")
    finally:
        client.close()


def _follow_import(client: PlatformClient, model: dict[str, Any], *, timeout: float) -> Any:
    shown = [""]

    def ended() -> dict[str, Any] | None:
        current = client.call("GET", f"/catalog/models/{model['id']}")
        line = progress_line(current.get("importStatus"))
        if line and line != shown[-1]:
            shown.append(line)
            click.echo(f"  {line}")
        return dict(current) if current["status"] != "importing" else None

    what = f"the import of {model['name']}"
    return poll(ended, timeout=timeout, what=what, interval=POLL_SECONDS)


@models.command("show")
@click.argument("model")
@_url
@_key
def show(model: str, url: str, api_key: str | None) -> None:
    """A model (by id or name): where it came from and how far its import is."""
    client = _client(url, api_key)
    try:
        found = _find_model(client, model)
        click.echo(f"{found['name']} ({found['id']}): {found['status']}, source {found['source']}")
        if found.get("uri"):
            click.echo(f"  files in {found['uri']}")
        line = progress_line(found.get("importStatus"))
        if line:
            click.echo(f"  {line}")
    finally:
        client.close()


@models.command("check-updates")
@click.argument("model")
@_url
@_key
def check_updates(model: str, url: str, api_key: str | None) -> None:
    """Compare MODEL's pinned commit (by id or name) with the head of the branch its
    import followed, and list what changed; the pin never moves."""
    client = _client(url, api_key)
    try:
        found = _find_model(client, model)
        check = client.call("POST", f"/catalog/models/{found['id']}/check-updates")
    finally:
        client.close()
    if check.get("degraded"):
        click.echo(f"degraded: {check['degradedReason']} (checked at {check['checkedAt']})")
    current, latest = check["currentRevision"], check["latestRevision"]
    branch = check.get("branch") or "the default branch"
    if not check["updateAvailable"]:
        click.echo(f"{found['name']} is up to date with {branch} ({current[:12]})")
        return
    click.echo(f"{found['name']}: {branch} moved from {current[:12]} to {latest[:12]}")
    for commit in check.get("commits") or []:
        click.echo(f"  commit {commit['id'][:12]}  {commit.get('title') or ''}")
    if check.get("commitsTruncated"):
        click.echo("  (more commits in between)")
    for entry in check.get("filesAdded") or []:
        click.echo(f"  + {entry['path']} ({_size(entry.get('sizeBytes'))})")
    for entry in check.get("filesRemoved") or []:
        click.echo(f"  - {entry['path']} ({_size(entry.get('sizeBytes'))})")
    for entry in check.get("filesModified") or []:
        old, new = _size(entry.get("oldSizeBytes")), _size(entry.get("newSizeBytes"))
        click.echo(f"  ~ {entry['path']} ({old} -> {new})")
    click.echo(f"the pin stays at {current[:12]}; import {latest[:12]} to take the update")


@models.command("search")
@click.argument("query", default="")
@click.option("--limit", type=int, default=20, show_default=True, help="of each part")
@click.option("--catalog-only", is_flag=True, help="leave the registry out")
@_url
@_key
def search(query: str, limit: int, catalog_only: bool, url: str, api_key: str | None) -> None:
    """Search the catalog and the registry together for QUERY, each line marked with
    where it is: the catalog, or the registry (with the catalog models already imported
    from it)."""
    client = _client(url, api_key)
    try:
        found = client.call(
            "GET",
            "/catalog/models/search",
            params={"q": query, "limit": limit, "registry": str(not catalog_only).lower()},
        )
    finally:
        client.close()
    if found.get("degraded"):
        click.echo(f"degraded: {found['degradedReason']}")
    for item in found["items"]:
        if item.get("model"):
            model = item["model"]
            click.echo(f"catalog  {model['name']} ({model['id']}): {model['status']}")
            continue
        hit = item["registryModel"]
        about = ", ".join(
            part
            for part in (
                hit.get("pipelineTag"),
                f"{hit['downloads']} downloads" if hit.get("downloads") is not None else None,
            )
            if part
        )
        line = f"{item['source']:<8} {hit['repoId']}" + (f" ({about})" if about else "")
        if item.get("catalogModelIds"):
            line += f"; imported as {', '.join(item['catalogModelIds'])}"
        click.echo(line)
    if not found["items"]:
        click.echo("nothing found")


@models.command("export")
@click.argument("model")
@click.argument("repo_id")
@click.option("--public", is_flag=True, help="a public repository (default: private)")
@click.option("--pr", "create_pr", is_flag=True, help="open a pull request instead of a commit")
@click.option("--message", default=None, help="the commit message")
@click.option("--provider", default=None, help="the registry (default: the platform's, hf)")
@click.option("--wait", is_flag=True, help="follow the export to its commit")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="with --wait")
@_url
@_key
def export(
    model: str,
    repo_id: str,
    public: bool,
    create_pr: bool,
    message: str | None,
    provider: str | None,
    wait: bool,
    timeout: float,
    url: str,
    api_key: str | None,
) -> None:
    """Push MODEL's files (by id or name) to the registry's REPO_ID, once whatever the
    retries; with --wait, print the commit and exit 1 unless it was made."""
    client = _client(url, api_key)
    try:
        found = _find_model(client, model)
        body: dict[str, Any] = {"repoId": repo_id, "private": not public, "createPr": create_pr}
        if message:
            body["commitMessage"] = message
        if provider:
            body["provider"] = provider
        accepted = client.call("POST", f"/catalog/models/{found['id']}/export", json=body)
        operation = accepted["operationId"]
        click.echo(f"exporting {found['name']} to {repo_id} (operation {operation})")
        if not wait:
            return

        def ended() -> dict[str, Any] | None:
            current = client.call("GET", f"/catalog/models/{found['id']}")
            [entry] = [
                e for e in current.get("exports") or [] if e["id"] == accepted["export"]["id"]
            ]
            return dict(entry) if entry["state"] != "pending" else None

        entry = poll(ended, timeout=timeout, what=f"the export to {repo_id}", interval=POLL_SECONDS)
    finally:
        client.close()
    if entry["state"] != "succeeded":
        click.echo(f"export {entry['state']}: {entry.get('reason') or 'no reason given'}")
        sys.exit(1)
    click.echo(f"commit {entry['commit']}" + (f": {entry['url']}" if entry.get("url") else ""))
