"""What a plugin's ``llmops <plugin> ...`` commands may ask of the platform.

A plugin adds commands with the ``llmops_cli_commands`` hook; click hands each command
the platform as its context object (``@click.pass_obj``), an object that follows
:class:`PlatformCommands`. The platform starts on the first call (database migrated,
plugins loaded with their stored settings) and stops when the command ends, so
``llmops <plugin> --help`` stays fast. A plugin never opens the platform's database
itself: moving records between providers is the core's job, done through the
capabilities' Protocols.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import NoReturn, Protocol, runtime_checkable

from pydantic import Field

from llmops.capabilities.common import Value


class MoveOutcome(StrEnum):
    MOVED = "moved"
    #: a dry run: what would happen
    PLANNED = "planned"
    FAILED = "failed"


class RecordMove(Value):
    """One record moved (or to be moved) to another provider."""

    resource_type: str = Field(description="experiment-run, serving-endpoint, ...")
    resource_id: str
    name: str
    source: str | None = Field(description="the provider it was recorded under, or None")
    target: str
    action: str = Field(description="what the move does: copy, adopt, deploy, ...")
    outcome: MoveOutcome
    detail: str = ""


class MoveReport(Value):
    target: str
    dry_run: bool
    moves: list[RecordMove] = Field(default_factory=list)

    @property
    def failed(self) -> list[RecordMove]:
        return [m for m in self.moves if m.outcome is MoveOutcome.FAILED]


@runtime_checkable
class PlatformCommands(Protocol):
    """The platform as a plugin's command sees it. Each call prints its progress, one
    line per record, and returns the report; ``dry_run`` changes nothing anywhere."""

    def move_runs(self, *, to: str, dry_run: bool = False) -> MoveReport:
        """Move the experiment runs recorded under another tracker (or none) to the
        tracker ``to``: each run is created there under the key its job's run has (so
        never twice), with its params and every metric point (the full history when the
        old tracker still answers, else the last known values), ended with its status;
        the record, and writes still queued for it, then name ``to``."""
        ...

    def move_endpoints(
        self, *, to: str, dry_run: bool = False, names: Sequence[str] = ()
    ) -> MoveReport:
        """Move the serving endpoints recorded without a framework (or only ``names``) to
        the serving framework ``to``: a deployment of the endpoint's name that the
        platform did not make is adopted when ``to`` offers
        :class:`~llmops.capabilities.serving.AdoptsDeployments`, else the endpoint's model
        is deployed (a deployment the platform made is found by its key)."""
        ...


def exec_llmops(*args: str) -> NoReturn:
    """Replace this process with ``llmops ARGS...`` (the CLI of this environment), followed
    by this process's own arguments: for a plugin that keeps an old script name for one of
    its ``llmops <plugin> ...`` commands (``[project.scripts]`` pointing at a function
    that calls this)."""
    script = Path(sys.executable).with_name("llmops")
    if script.is_file():
        argv = [str(script), *args, *sys.argv[1:]]
    else:  # an environment without the script on disk: the same CLI through its module
        argv = [sys.executable, "-m", "llmops.cli", *args, *sys.argv[1:]]
    os.execv(argv[0], argv)  # noqa: S606 - this environment's own CLI, fixed arguments
