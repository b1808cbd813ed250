"""The reference docs stay true to the code.

* ``docs/environment.md`` and ``docs/api/endpoints.md`` are generated
  (``llmops.docs_env``): the committed pages must equal what the code generates now.
* Every setting (core and shipped plugins) has a description.
* The Mermaid diagrams under ``docs/architecture/`` are fenced and start with a known
  diagram type, and every ``llmops.*`` module they name imports.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmops import docs_env
from llmops.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture"

MERMAID_TYPES = {
    "flowchart",
    "graph",
    "sequenceDiagram",
    "stateDiagram",
    "stateDiagram-v2",
    "classDiagram",
    "erDiagram",
    "gantt",
    "journey",
    "pie",
    "mindmap",
    "timeline",
    "C4Context",
    "C4Container",
    "C4Component",
    "C4Deployment",
    "architecture-beta",
    "block-beta",
}

FENCE = re.compile(r"^```(\S*)\s*$")
#: a dotted name of the package (not a host name such as llmops.llmops.svc in a URL)
MODULE = re.compile(r"(?<![\w/.:-])llmops(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


@pytest.fixture(scope="module")
def environment_page() -> str:
    return docs_env.render_environment()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The core's OpenAPI document (an app is built for it: once for the module)."""
    return docs_env.openapi_document()


@pytest.fixture(scope="module")
def endpoints_page(document: dict[str, Any]) -> str:
    return docs_env.render_endpoints(document)


def _differs(path: Path, command: str) -> str:
    return (
        f"{path.relative_to(ROOT)} is not what the code generates: run `{command}` "
        "(uv run ...) and commit the result"
    )


def test_environment_reference_is_generated_from_the_settings(environment_page: str) -> None:
    path = DOCS / "environment.md"
    assert path.is_file(), _differs(path, docs_env.ENV_COMMAND)
    assert path.read_text(encoding="utf-8") == environment_page, _differs(
        path, docs_env.ENV_COMMAND
    )


def test_endpoint_table_is_generated_from_the_openapi_document(endpoints_page: str) -> None:
    path = DOCS / "api" / "endpoints.md"
    assert path.is_file(), _differs(path, docs_env.API_COMMAND)
    assert path.read_text(encoding="utf-8") == endpoints_page, _differs(path, docs_env.API_COMMAND)


def test_every_setting_has_a_description() -> None:
    missing = docs_env.missing_descriptions()
    assert not missing, (
        "settings without a description (add description= to the field): " + ", ".join(missing)
    )


def test_the_environment_reference_names_every_field(environment_page: str) -> None:
    from llmops.config import CoreSettings

    text = environment_page
    for name in CoreSettings.model_fields:
        assert f"`LLMOPS_{name.upper()}`" in text
    for plugin in docs_env.plugin_docs():
        for name in plugin.model.model_fields:
            assert f"`LLMOPS_{plugin.name.upper()}__{name.upper()}`" in text


def test_no_secret_default_is_printed() -> None:
    from pydantic import BaseModel, Field, SecretStr

    class Model(BaseModel):
        token: SecretStr = Field(default=SecretStr("hunter2-default"), description="a token")
        plain: str = Field(default="shown", description="not secret")

    docs = {d.field: d for d in docs_env.settings_docs(Model, "LLMOPS_X__")}
    assert docs["token"].secret
    assert "hunter2" not in docs["token"].default
    assert docs["plain"].default == "`shown`"
    assert docs["token"].env == "LLMOPS_X__TOKEN"


def test_the_pages_do_not_depend_on_the_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The data dir's default is computed from $XDG_DATA_HOME / $HOME: described, not
    printed, so the committed page is the same everywhere."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert str(tmp_path) not in docs_env.render_environment()


def test_the_commands_write_the_pages(
    tmp_path: Path, environment_page: str, endpoints_page: str
) -> None:
    runner = CliRunner()
    env_page, api_page = tmp_path / "environment.md", tmp_path / "endpoints.md"
    done = runner.invoke(main, ["docs", "env", "-o", str(env_page)])
    assert done.exit_code == 0, done.output
    assert env_page.read_text(encoding="utf-8") == environment_page
    done = runner.invoke(main, ["docs", "api", "-o", str(api_page)])
    assert done.exit_code == 0, done.output
    assert api_page.read_text(encoding="utf-8") == endpoints_page


def test_every_route_is_in_the_endpoint_table(
    document: dict[str, Any], endpoints_page: str
) -> None:
    text = endpoints_page
    for path, item in document["paths"].items():
        for method in item:
            if method in {"get", "put", "post", "patch", "delete"}:
                assert f"| `{method.upper()}` | `{path}` |" in text


def _architecture_pages() -> list[Path]:
    return sorted(ARCHITECTURE.glob("*.md"))


def test_the_architecture_pages_exist() -> None:
    names = {p.name for p in _architecture_pages()}
    assert {"components.md", "request-flow.md", "kubernetes.md"} <= names


@pytest.mark.parametrize("page", _architecture_pages(), ids=lambda p: p.name)
def test_mermaid_blocks_are_well_formed(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "```mermaid" in text, f"{page.name} has no Mermaid diagram"
    for start, block in _diagrams(page):
        body = [line for line in block if line.strip() and not line.strip().startswith("%%")]
        assert body, f"{page.name}:{start}: an empty mermaid block"
        kind = body[0].split()[0]
        assert kind in MERMAID_TYPES, f"{page.name}:{start}: {kind!r} is no Mermaid diagram type"


def _diagrams(page: Path) -> list[tuple[int, list[str]]]:
    """The ```mermaid blocks of ``page`` with the line each starts at; every fence (any
    language) must be closed."""
    found: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    language = ""
    start = 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if current is None:
            if fence is not None:
                current, language, start = [], fence.group(1), number
            continue
        if fence is not None and fence.group(1) == "":
            if language == "mermaid":
                found.append((start, current))
            current = None
            continue
        current.append(line)
    assert current is None, f"{page.name}: the fence opened at line {start} is never closed"
    return found


@pytest.mark.parametrize("page", _architecture_pages(), ids=lambda p: p.name)
def test_every_module_named_imports(page: Path) -> None:
    names = sorted(set(MODULE.findall(page.read_text(encoding="utf-8"))))
    failed = []
    for name in names:
        if _importable(name):
            continue
        failed.append(name)
    assert not failed, f"{page.name} names modules that do not import: {', '.join(failed)}"


def _importable(dotted: str) -> bool:
    """``dotted`` is a module, or an attribute of one (``llmops.integrations.IntegrationRuntime``
    is written ``llmops.integrations``-style too)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        target: object = module
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False
