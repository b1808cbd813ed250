"""``llmops mlflow migrate``: move the experiment runs the platform recorded under
another tracker (or under none) into MLflow.

The core moves the records (:meth:`~llmops.plugins.commands.PlatformCommands.move_runs`):
each run is created in MLflow under the key the platform gives a job's run (so a run
MLflow already has is found, not made twice), with its params and every metric point (the
full history when the old tracker still answers, else the last known values), ended with
its status; the platform's record, and any write still queued for it, then name MLflow.
Running it again does nothing more: moved runs are skipped, and a run interrupted
half-way is found by its key and its points are stored once (MLflow keeps identical
points once). ``--dry-run`` prints what it would do and changes nothing.
``migrate-experiments-to-mlflow`` is the same command under its first name.
"""

from __future__ import annotations

import sys

import click

from llmops.plugins.commands import PlatformCommands, exec_llmops

TARGET = "mlflow"


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="print what would move; change nothing")
@click.pass_obj
def migrate(platform: PlatformCommands, dry_run: bool) -> None:
    """Move experiment runs recorded under another tracker, or none, into MLflow. Reads the
    platform's settings (LLMOPS_* variables, LLMOPS_MLFLOW__* for MLflow) and database."""
    report = platform.move_runs(to=TARGET, dry_run=dry_run)
    sys.exit(1 if report.failed else 0)


def legacy_main() -> None:
    """``migrate-experiments-to-mlflow [--dry-run]``: ``llmops mlflow migrate [--dry-run]``."""
    exec_llmops(TARGET, "migrate")
