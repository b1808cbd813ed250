"""Wheels of the workspace, installed into a fresh virtual environment as a user's
installer would: what the packaging tests build on.

Installs are pinned to the workspace's lock (``uv export``), tried offline first so that
uv's cache answers, and online only for what is not cached yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest


def uv() -> str:
    """The uv executable; ``make test`` installs it, so a missing one is a failure."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: `make test` installs it (python3 -m pip install uv)")
    return found


def uv_environ() -> dict[str, str]:
    """The caller's environment without the workspace's active virtual environment."""
    return {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}


def checked(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``args``; a failure fails the test with the command and its output."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, **kwargs
    )
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def build_wheels(repo: Path, sources: Iterable[str], out: Path) -> dict[str, Path]:
    """Build each project folder under ``repo`` into ``out``; the wheels by distribution
    name as wheels spell it (``llmops_plugin_api``)."""
    for source in sources:
        checked(
            [uv(), "build", "--wheel", source, "--out-dir", str(out)], cwd=repo, env=uv_environ()
        )
    return {wheel.name.split("-")[0]: wheel for wheel in out.glob("*.whl")}


def fresh_venv(path: Path) -> Path:
    """A new virtual environment on this Python; its interpreter."""
    checked([uv(), "venv", "--quiet", "--python", sys.executable, str(path)], env=uv_environ())
    return path / "bin" / "python"


def install(python: Path, requirements: Iterable[str | Path], *, repo: Path) -> None:
    """Install ``requirements`` (wheel paths, ``name @ file://...``, folders) into the
    environment of ``python``, at the versions the workspace's lock names."""
    env = uv_environ()
    command = [uv(), "pip", "install", "--quiet", "--python", str(python)]
    constraints = python.parents[1] / "constraints.txt"
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes",
         "--no-header", "--output-file", str(constraints)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if exported.returncode == 0:
        command += ["--constraint", str(constraints)]  # the locked versions: in uv's cache
    command += [str(r) for r in requirements]
    offline = subprocess.run(
        [*command, "--offline"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if offline.returncode != 0:  # something is not cached yet: let uv fetch it
        checked(command, env=env)
