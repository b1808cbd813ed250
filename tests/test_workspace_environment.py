"""What a plain `uv run` installs in the workspace: nothing of the dev group.

`make run` installs the platform without the dev group; the README's commands then use
`uv run llmops ...`, which syncs the default dependency groups first. Were the dev group
among them, the first such command would install pytest, ruff, ... and the example
plugin from tests/, which would then show up in `llmops plugins list` and the console of
an environment that users run. `uv export` prints what that sync installs, from the lock
file alone (no network).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from llmops.testing.wheels import uv, uv_environ

ROOT = Path(__file__).resolve().parents[1]


def requirements(*args: str) -> set[str]:
    out = subprocess.run(
        [uv(), "export", "--frozen", "--no-hashes", "--no-annotate", "--no-header", *args],
        cwd=ROOT,
        env=uv_environ(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("==")[0].strip() for line in out.splitlines() if line.strip()}


def test_a_plain_uv_run_installs_neither_the_dev_tools_nor_the_example_plugin() -> None:
    plain = requirements()
    assert "-e ./core" in plain
    assert not {"pytest", "ruff", "mypy", "-e ./tests/example_plugin"} & plain


def test_make_sync_asks_for_the_dev_group_that_the_tests_need() -> None:
    with_dev = requirements("--group", "dev")
    assert {"pytest", "ruff", "mypy", "-e ./tests/example_plugin"} <= with_dev
    makefile = (ROOT / "Makefile").read_text()
    assert "sync --frozen --all-packages --group dev" in makefile
