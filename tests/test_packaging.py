"""The core and a third-party plugin, installed from their wheels into a fresh virtual
environment, find each other through the ``llmops.plugins`` entry point alone.

One environment is built per module (tens of seconds with a warm uv cache): the wheels
of ``core/plugin-api``, ``core``, ``tests/example_plugin``, ``plugins/mlflow`` and
``plugins/kserve`` are built
with ``uv build`` and installed with ``uv pip install``, pinned to the workspace's lock so
that the cache usually answers without the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmops.testing.wheels import build_wheels, fresh_venv, install

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

#: Runs inside the fresh environment: start the app (lifespan included), list the
#: integrations, test the example's connection when it is loaded, and say whether the
#: example's package was ever imported.
API_PROBE = """
import json
import sys

from fastapi.testclient import TestClient
from llmops.api.app import create_app
from llmops.config import CoreSettings
from llmops.services.api_keys import Role, create_api_key

app = create_app(CoreSettings())
with TestClient(app) as client:
    with app.state.platform.transaction() as session:
        _, key = create_api_key(session=session, name="probe", role=Role.ADMIN)
    client.headers["Authorization"] = f"Bearer {key}"
    response = client.get("/llm-ops/v1/integrations")
    response.raise_for_status()
    items = response.json()["items"]
    test = None
    if any(item["name"] == "example" and item["loaded"] for item in items):
        test = client.post("/llm-ops/v1/integrations/example/test").json()
print(json.dumps({"items": items, "test": test, "imported": "llmops_example" in sys.modules}))
"""


@dataclass(frozen=True)
class FreshEnv:
    root: Path
    python: Path
    llmops: Path
    wheels: dict[str, Path]

    def environ(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """The caller's environment without llmops settings or another active venv."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LLMOPS_") and k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
        }
        env.update(
            LLMOPS_DATA_DIR=str(data_dir),
            XDG_CACHE_HOME=str(self.root / "xdg-cache"),  # stevedore's entry-point cache
            PYTHONDONTWRITEBYTECODE="1",
            **extra,
        )
        return env

    def run(
        self, args: list[str], data_dir: Path, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            env=self.environ(data_dir, **extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def probe_api(self, data_dir: Path, **extra: str) -> dict[str, Any]:
        result = self.run([str(self.python), "-c", API_PROBE], data_dir, **extra)
        assert result.returncode == 0, result.stderr
        probe: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return probe


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> FreshEnv:
    root = tmp_path_factory.mktemp("packaging")
    sources = (
        "core/plugin-api",
        "core",
        "tests/example_plugin",
        "plugins/mlflow",
        "plugins/kserve",
    )
    wheels = build_wheels(REPO, sources, root / "dist")
    assert set(wheels) == {
        "llmops_plugin_api",
        "llmops_core",
        "llmops_example",
        "llmops_mlflow",
        "llmops_kserve",
    }

    python = fresh_venv(root / "venv")
    install(python, wheels.values(), repo=REPO)
    return FreshEnv(root=root, python=python, llmops=python.with_name("llmops"), wheels=wheels)


def plugin_rows(fresh_env: FreshEnv, data_dir: Path, **extra: str) -> dict[str, dict[str, Any]]:
    result = fresh_env.run([str(fresh_env.llmops), "plugins", "list", "--json"], data_dir, **extra)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_the_example_wheel_declares_its_entry_point_and_ships_py_typed(
    fresh_env: FreshEnv,
) -> None:
    with zipfile.ZipFile(fresh_env.wheels["llmops_example"]) as wheel:
        names = wheel.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = wheel.read(entry_points).decode()
    assert "llmops_example/py.typed" in names
    assert "[llmops.plugins]" in text
    assert "example = llmops_example.plugin" in text


#: Runs inside the fresh environment: the installed core serves its console.
CONSOLE_PROBE = """
import json
from fastapi.testclient import TestClient
from llmops.api.app import create_app
from llmops.config import CoreSettings

with TestClient(create_app(CoreSettings(), start_worker=False)) as client:
    index = client.get("/")
    route = client.get("/models/abc")
print(json.dumps({"index": [index.status_code, index.text], "route": route.status_code}))
"""


def test_the_core_wheel_carries_the_built_console(fresh_env: FreshEnv, tmp_path: Path) -> None:
    console = REPO / "core" / "src" / "llmops" / "console"
    assert (console / "index.html").is_file(), "build the console first: make console"
    with zipfile.ZipFile(fresh_env.wheels["llmops_core"]) as wheel:
        names = wheel.namelist()
    assert "llmops/console/index.html" in names
    assert any(n.startswith("llmops/console/assets/") and n.endswith(".js") for n in names)

    probe = fresh_env.run([str(fresh_env.python), "-c", CONSOLE_PROBE], tmp_path)
    assert probe.returncode == 0, probe.stderr
    served = json.loads(probe.stdout.strip().splitlines()[-1])
    assert served["index"][0] == 200
    assert '<div id="app">' in served["index"][1]
    assert served["route"] == 200


#: Runs inside the fresh environment: what the KServe plugin brought with it.
KSERVE_PROBE = """
import importlib.metadata as m, json
names = {d.metadata["Name"].lower() for d in m.distributions()}
print(json.dumps({"kserve": "kserve" in names, "kubernetes": "kubernetes" in names}))
"""


def test_the_kserve_wheel_is_found_and_brings_the_kubernetes_client_not_the_kserve_sdk(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    rows = plugin_rows(fresh_env, tmp_path)

    kserve = rows["kserve"]
    assert kserve["distribution"] == "llmops-kserve"
    assert kserve["loaded"] is True, kserve["error"]
    probe = fresh_env.run([str(fresh_env.python), "-c", KSERVE_PROBE], tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == {
        "kserve": False,
        "kubernetes": True,
    }


def test_the_mlflow_wheel_is_found_through_its_entry_point(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    rows = plugin_rows(fresh_env, tmp_path)

    mlflow = rows["mlflow"]
    assert mlflow["distribution"] == "llmops-mlflow"
    assert mlflow["loaded"] is True, mlflow["error"]
    assert mlflow["capabilities"] == ["tracking"]


def test_plugins_list_finds_the_example_through_its_entry_point(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    rows = plugin_rows(fresh_env, tmp_path)
    example = rows["example"]
    assert example["distribution"] == "llmops-example"
    assert example["version"] == "0.1.0"
    assert example["enabled"] is True
    assert example["loaded"] is True
    assert example["builtin"] is False
    assert example["capabilities"] == ["tracking"]
    assert example["error"] is None
    assert rows["local"]["builtin"] is True


def test_plugins_list_shows_a_disabled_plugin_from_its_metadata(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    example = plugin_rows(fresh_env, tmp_path, LLMOPS_PLUGINS="none")["example"]
    assert example["version"] == "0.1.0"
    assert example["enabled"] is False
    assert example["loaded"] is False


def test_plugins_doctor_is_happy_when_every_enabled_plugin_loads(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    result = fresh_env.run([str(fresh_env.llmops), "plugins", "doctor"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "example" in result.stdout


def test_the_api_lists_a_disabled_plugin_without_importing_it(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    probe = fresh_env.probe_api(tmp_path, LLMOPS_PLUGINS="none")
    items = {item["name"]: item for item in probe["items"]}
    assert items["example"]["enabled"] is False
    assert items["example"]["loaded"] is False
    assert items["example"]["version"] == "0.1.0"
    assert items["local"]["enabled"] is True  # the built-in one stays on
    assert probe["imported"] is False


def test_the_api_loads_an_enabled_plugin_and_its_tracker_answers(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    runs = tmp_path / "runs-from-env"
    probe = fresh_env.probe_api(tmp_path, LLMOPS_PLUGINS="example", LLMOPS_EXAMPLE__ROOT=str(runs))
    example = {item["name"]: item for item in probe["items"]}["example"]
    assert example["enabled"] is True
    assert example["loaded"] is True
    assert example["capabilities"] == ["tracking"]
    assert example["error"] is None
    assert probe["imported"] is True
    assert probe["test"]["ok"] is True, probe["test"]
    assert runs.is_dir()  # the setting from LLMOPS_EXAMPLE__ROOT reached the tracker
