"""The ``llmops`` command outside plugins (those are in test_cli_plugins.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from llmops.cli import main
from llmops.db.migrate import head_revision
from llmops.db.session import make_engine

HEAVY = ("mlflow", "ray", "kubernetes", "hera", "huggingface_hub", "dvc", "torch")
CORE_HEAVY = ("fastapi", "sqlalchemy", "stevedore", "uvicorn", "alembic")


def test_help_imports_no_tool_sdk_and_no_server_stack() -> None:
    code = (
        "import sys, json\n"
        "from click.testing import CliRunner\n"
        "from llmops.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    imported = set(json.loads(out))
    assert not imported & set(HEAVY)
    assert not imported & set(CORE_HEAVY)


def test_pipelines_run_executes_a_file_and_reports_success(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(
        f"""
name: local
stages:
  - name: a
    command: [sh, -c, "echo a >> {trace}"]
  - name: b
    command: [sh, -c, "echo b >> {trace}"]
    dependsOn: [a]
  - name: here
    command: [sh, -c, "pwd > {tmp_path / "cwd"}"]
    workingDir: sub
"""
    )
    (tmp_path / "sub").mkdir()
    result = CliRunner().invoke(
        main, ["pipelines", "run", str(pipeline), "--state-dir", str(tmp_path / "state")]
    )
    assert result.exit_code == 0, result.output
    assert "pipeline succeeded" in result.output
    assert trace.read_text().split() == ["a", "b"]
    assert (tmp_path / "cwd").read_text().strip() == str(tmp_path / "sub")


def test_pipelines_run_fails_on_a_failing_stage_and_on_a_cycle(tmp_path: Path) -> None:
    failing = tmp_path / "fail.json"
    failing.write_text(json.dumps({"name": "f", "stages": [{"name": "a", "command": ["false"]}]}))
    result = CliRunner().invoke(
        main, ["pipelines", "run", str(failing), "--state-dir", str(tmp_path / "s1")]
    )
    assert result.exit_code == 1
    assert "pipeline failed" in result.output

    cyclic = tmp_path / "cycle.yaml"
    cyclic.write_text(
        "name: c\nstages:\n"
        '  - {name: a, command: ["true"], dependsOn: [b]}\n'
        '  - {name: b, command: ["true"], dependsOn: [a]}\n'
    )
    result = CliRunner().invoke(main, ["pipelines", "run", str(cyclic)])
    assert result.exit_code == 1
    assert "cycle" in result.output


def test_db_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    env = {"LLMOPS_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    down = runner.invoke(main, ["db", "downgrade", "base"], env=env)
    assert down.exit_code == 0, down.output
    assert "base" in down.output
    current = runner.invoke(main, ["db", "current"], env=env)
    assert "empty database" in current.output
    up = runner.invoke(main, ["db", "upgrade"], env=env)
    assert up.exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'llmops.db'}")
    try:
        assert f"revision {head_revision(engine)}" in up.output
    finally:
        engine.dispose()
