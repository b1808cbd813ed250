"""The plugin boundary, enforced: plugins import only the plugin API, the plugin API
imports nothing of the server, plugins never import each other, and there are no import
circles in the core or in a plugin (imports in functions count, those under
``TYPE_CHECKING`` do not). Each rule is also shown failing on a deliberate violation."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from llmops.testing.boundary import ModuleTree, Violation, check, check_plugin, find_cycles, scan

REPO = Path(__file__).resolve().parents[1]
PLUGIN_API = REPO / "core" / "plugin-api" / "src"
#: the testing kit (llmops-testing) is on the plugin API's side of the boundary
TESTING_KIT = REPO / "core" / "testing" / "src"
SERVER = REPO / "core" / "src"


def repository_plugins() -> dict[str, Path]:
    found = {f"llmops_{p.name}": p / "src" for p in sorted((REPO / "plugins").iterdir())}
    found["llmops_example"] = REPO / "tests" / "example_plugin" / "src"
    return found


def rules(violations: list[Violation]) -> list[str]:
    return sorted({v.rule for v in violations})


def test_the_repository_keeps_the_plugin_boundary_and_has_no_import_circles() -> None:
    plugins = repository_plugins()
    assert {"llmops_mlflow", "llmops_kserve", "llmops_rayserve", "llmops_example"} <= set(plugins)

    violations = check(plugin_api=[PLUGIN_API, TESTING_KIT], server=[SERVER], plugins=plugins)

    assert violations == [], "\n".join(map(str, violations))


def test_the_check_reads_every_module_of_the_core_and_the_plugins() -> None:
    core = ModuleTree([PLUGIN_API, TESTING_KIT, SERVER])
    # a sample from each tree: the scan sees both halves of the llmops package
    assert {"llmops", "llmops.hookspecs", "llmops.services.moves", "llmops.api.app"} <= set(core)
    edges = scan(core)
    assert any((e.importer == "llmops.integrations" and e.imported == "llmops.hookspecs")
               or (e.importer == "llmops.plugins.discovery" and e.imported == "llmops.hookspecs")
               for e in edges)  # fmt: skip


def copy_tree(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    api = tmp_path / "plugin-api"
    server = tmp_path / "server"
    shutil.copytree(PLUGIN_API, api, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        TESTING_KIT, api, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    shutil.copytree(SERVER, server, ignore=shutil.ignore_patterns("__pycache__", "console"))
    plugins = {}
    for package, root in repository_plugins().items():
        plugins[package] = tmp_path / package
        shutil.copytree(root, plugins[package], ignore=shutil.ignore_patterns("__pycache__"))
    return api, server, plugins


def append(path: Path, code: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + textwrap.dedent(code))


def test_a_plugin_importing_the_server_inside_a_function_fails_the_check(
    tmp_path: Path,
) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(
        plugins["llmops_mlflow"] / "llmops_mlflow" / "plugin.py",
        """
        def sneaky():
            from llmops.db.models import ExperimentRun

            return ExperimentRun
        """,
    )

    violations = check(plugin_api=[api], server=[server], plugins=plugins)

    assert rules(violations) == ["plugin imports the server"]
    assert "llmops_mlflow.plugin imports llmops.db.models" in str(violations[0])


def test_a_from_import_of_a_server_submodule_fails_the_check(tmp_path: Path) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(
        plugins["llmops_kserve"] / "llmops_kserve" / "plugin.py", "from llmops import platform\n"
    )

    violations = check(plugin_api=[api], server=[server], plugins=plugins)

    assert rules(violations) == ["plugin imports the server"]
    assert "llmops.platform" in str(violations[0])


def test_an_import_under_type_checking_does_not_count(tmp_path: Path) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(
        plugins["llmops_kserve"] / "llmops_kserve" / "plugin.py",
        """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from llmops.integrations import IntegrationRuntime
        """,
    )

    assert check(plugin_api=[api], server=[server], plugins=plugins) == []


def test_a_plugin_importing_another_plugin_fails_the_check(tmp_path: Path) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(
        plugins["llmops_kserve"] / "llmops_kserve" / "objects.py",
        "from llmops_rayserve.backend import RayServeBackend\n",
    )

    violations = check(plugin_api=[api], server=[server], plugins=plugins)

    assert rules(violations) == ["plugin imports another plugin"]


def test_the_plugin_api_importing_the_server_fails_the_check(tmp_path: Path) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(api / "llmops" / "deadlines.py", "from llmops.config import CoreSettings\n")

    violations = check(plugin_api=[api], server=[server], plugins=plugins)

    assert rules(violations) == ["plugin API imports the server"]
    assert "llmops.deadlines imports llmops.config" in str(violations[0])


def test_an_import_circle_in_the_core_fails_the_check(tmp_path: Path) -> None:
    api, server, plugins = copy_tree(tmp_path)
    append(
        server / "llmops" / "services" / "catalog.py",
        """
        def late():
            from llmops.services import training

            return training
        """,
    )

    violations = check(plugin_api=[api], server=[server], plugins=plugins)

    assert rules(violations) == ["import circle"]
    assert "llmops.services.catalog" in str(violations[0])
    assert "llmops.services.training" in str(violations[0])


def test_an_import_circle_in_a_plugin_fails_its_own_check(tmp_path: Path) -> None:
    root = tmp_path / "src"
    package = root / "llmops_circle"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from llmops_circle import b\n")
    (package / "b.py").write_text("def f():\n    from llmops_circle.a import x\n")

    violations = check_plugin(root, plugin_api=ModuleTree([PLUGIN_API, TESTING_KIT]))

    assert rules(violations) == ["import circle"]


def test_cycles_are_found_as_groups_whatever_their_length() -> None:
    from llmops.testing.boundary import Import

    def edge(a: str, b: str) -> Import:
        return Import(a, b, Path("x.py"), 1)

    imports = [edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("c", "d"), edge("d", "e")]

    assert find_cycles(imports) == [["a", "b", "c"]]


def test_a_plugin_checks_itself_against_the_installed_plugin_api(tmp_path: Path) -> None:
    # no source roots given: the modules of the installed (here editable) distributions
    assert check_plugin(REPO / "plugins" / "kserve" / "src") == []
    root = tmp_path / "src"
    shutil.copytree(REPO / "plugins" / "kserve" / "src", root)
    append(root / "llmops_kserve" / "plugin.py", "from llmops.services import serving\n")

    violations = check_plugin(root)

    assert rules(violations) == ["plugin imports the server"]
    assert "imports llmops.services" in str(violations[0])
