"""The core, the plugin API and the testing kit are released together at one version:
their pins on each other name exactly the version they all read from llmops/__init__.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import llmops

REPO = Path(__file__).resolve().parents[1]


def requirements(path: str) -> list[str]:
    project = tomllib.loads((REPO / path / "pyproject.toml").read_text())["project"]
    found = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found += extra
    return found


def test_the_core_distributions_pin_each_other_at_the_one_version() -> None:
    pins = [
        requirement
        for path in ("core", "core/plugin-api", "core/testing")
        for requirement in requirements(path)
        if requirement.startswith(("llmops-plugin-api", "llmops-testing", "llmops-core"))
    ]

    assert pins, "the core depends on the plugin API"
    assert all(pin.endswith(f"=={llmops.__version__}") for pin in pins), pins


def test_the_plugins_depend_on_the_plugin_api_and_never_on_the_core() -> None:
    roots = [*(REPO / "plugins").iterdir(), REPO / "tests" / "example_plugin"]
    roots.append(REPO / "docs" / "plugins" / "example")
    for root in roots:
        required = requirements(str(root.relative_to(REPO)))
        assert any(r.startswith("llmops-plugin-api") for r in required), root.name
        assert not any(r.startswith("llmops-core") for r in required), root.name
