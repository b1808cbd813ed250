"""The example of docs/plugins/writing-a-plugin.md (docs/plugins/example), built the way
its author would build it: copied to a folder outside this repository, installed with the
plugin API alone (``llmops-plugin-api[testing]``, from its wheel) into a fresh virtual
environment, and green on its own tests, the whole registry contract suite among them.

One environment per module (about ten seconds with a warm uv cache): the plugin API's
wheel is built with ``uv build`` and installed with ``uv pip install``, with the example
from its copied folder (not editable), pinned to the workspace's lock so that the cache
usually answers without the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmops.testing.contracts.registry import RegistryContract
from llmops.testing.wheels import build_wheels, fresh_venv, install

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "plugins" / "example"

#: What the server brings and a plugin's environment must not have.
SERVER = {"llmops-core", "fastapi", "sqlalchemy"}

#: pytest's last line: "===== 27 passed, 1 warning in 0.61s =====" (the counts captured)
SUMMARY = re.compile(r"^=+ (.+) in [\d.]+s(?: \([\d:]+\))? =+$", flags=re.M)
#: JUnit XML elements of a test case that did not pass
PROBLEM_TAGS = {"failure", "error", "skipped"}

#: Runs inside the fresh environment: what is installed, and from where.
PROBE = """
import importlib.metadata as m, json
import llmops, llmops_folder_registry
print(json.dumps({
    "distributions": sorted({d.metadata["Name"].lower() for d in m.distributions()}),
    "plugins": {e.name: e.value for e in m.entry_points(group="llmops.plugins")},
    "llmops": list(llmops.__path__),
    "plugin": llmops_folder_registry.__file__,
}))
"""


@dataclass(frozen=True)
class PluginEnv:
    """The copied example and the fresh environment it is installed in."""

    project: Path
    python: Path

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """``args`` in the copied project, with the caller's environment minus anything
        that would point Python or pytest back at the workspace."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LLMOPS_", "PYTEST_"))
            and k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
        }
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocess.run(
            args, cwd=self.project, env=env, capture_output=True, text=True, timeout=300
        )


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> PluginEnv:
    root = tmp_path_factory.mktemp("docs-example")
    assert not root.resolve().is_relative_to(REPO), "the example is built outside the repo"
    project = root / "llmops-folder-registry"
    shutil.copytree(
        EXAMPLE,
        project,
        ignore=shutil.ignore_patterns(
            "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "*.egg-info"
        ),
    )
    wheels = build_wheels(REPO, ("core/plugin-api", "core/testing"), root / "dist")
    python = fresh_venv(root / "venv")
    install(
        python,
        [
            f"llmops-plugin-api[testing] @ {wheels['llmops_plugin_api'].as_uri()}",
            # what the testing extra names, from its wheel
            f"llmops-testing @ {wheels['llmops_testing'].as_uri()}",
            project,
        ],
        repo=REPO,
    )
    return PluginEnv(project=project, python=python)


@dataclass(frozen=True)
class ExampleRun:
    """The example's own pytest run in the fresh environment."""

    result: subprocess.CompletedProcess[str]
    summary: Counter[str]
    #: (class name or "", test name) of every test case run, from the JUnit XML report
    cases: list[tuple[str, str]]
    #: (test name, "failure"/"error"/"skipped") of every case that did not pass
    problems: list[tuple[str, str]]


@pytest.fixture(scope="module")
def example_run(plugin_env: PluginEnv) -> ExampleRun:
    report = plugin_env.project.parent / "junit.xml"
    result = plugin_env.run(
        [str(plugin_env.python), "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]
    )
    assert report.is_file(), f"pytest wrote no report\n{result.stdout}\n{result.stderr}"
    cases: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for case in ET.parse(report).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        cases.append((classname.rsplit(".", 1)[-1], name))
        problems += [(name, child.tag) for child in case if child.tag in PROBLEM_TAGS]
    summaries = SUMMARY.findall(result.stdout)
    assert summaries, f"no summary line in pytest's output\n{result.stdout}\n{result.stderr}"
    summary = Counter({kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", summaries[-1])})
    return ExampleRun(result=result, summary=summary, cases=cases, problems=problems)


def test_the_fresh_environment_holds_the_plugin_api_and_none_of_the_server(
    plugin_env: PluginEnv,
) -> None:
    probe = plugin_env.run([str(plugin_env.python), "-c", PROBE])
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])

    installed = set(found["distributions"])
    assert {
        "llmops-plugin-api",
        "llmops-testing",
        "llmops-folder-registry",
        "pytest",
        "pluggy",
    } <= installed
    assert not installed & SERVER, f"the plugin's environment has {installed & SERVER}"
    assert found["plugins"] == {"folder_registry": "llmops_folder_registry.plugin"}
    venv = plugin_env.python.parents[1]
    assert [Path(p).is_relative_to(venv) for p in found["llmops"]] == [True], found["llmops"]
    assert Path(found["plugin"]).is_relative_to(venv), "installed, not editable"


def test_the_examples_own_tests_pass_in_it(example_run: ExampleRun) -> None:
    output = example_run.result.stdout + example_run.result.stderr
    assert example_run.result.returncode == 0, output
    assert example_run.problems == [], output
    assert example_run.summary["passed"] == len(example_run.cases) > 0, output
    assert set(example_run.summary) <= {"passed", "warning", "warnings"}, output


def test_the_whole_registry_contract_suite_ran_against_the_example(
    example_run: ExampleRun,
) -> None:
    failed = {name for name, _ in example_run.problems}
    passed = {
        name
        for classname, name in example_run.cases
        if classname == "TestFolderRegistryContract" and name not in failed
    }
    suite = set(RegistryContract.contract_tests())

    assert "test_import_downloads_the_latest_commit_and_names_it" in passed
    assert "test_an_exported_folder_comes_back_by_import" in passed  # a declared feature
    assert suite - passed == set(), "every test of the suite passed: every feature declared"
