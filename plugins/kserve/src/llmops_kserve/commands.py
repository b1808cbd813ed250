"""``llmops kserve migrate``: move the serving endpoints the platform recorded without a
framework (from before serving frameworks were plugins, or made by hand-written
Kubernetes scripts) onto KServe.

The core moves the records (:meth:`~llmops.plugins.commands.PlatformCommands.move_endpoints`);
this plugin's part is :meth:`~llmops_kserve.backend.KServeBackend.adoptable` and ``adopt``:

* an InferenceService of the endpoint's name that llmops did not deploy (the old
  scripts' object) is **adopted**: labelled and annotated as the endpoint's, with its
  predictor left as it is (KServe rolls out one identical revision, as it does for any
  label change; the running one serves until it is ready);
* one that llmops deployed for this endpoint (a run interrupted half-way) is taken as it is;
* else an InferenceService is **created** from the endpoint's catalog model.

Running it again does nothing more: migrated endpoints have a framework. ``--dry-run``
prints what it would do, checks that each object could be built, and changes nothing.
``migrate-serving-to-kserve`` is the same command under its first name.
"""

from __future__ import annotations

import sys

import click

from llmops.plugins.commands import PlatformCommands, exec_llmops

TARGET = "kserve"


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="print what would happen; change nothing")
@click.option("--endpoint", "names", multiple=True, help="only this endpoint (name; repeatable)")
@click.pass_obj
def migrate(platform: PlatformCommands, dry_run: bool, names: tuple[str, ...]) -> None:
    """Move serving endpoints recorded without a framework onto KServe. Reads the
    platform's settings (LLMOPS_* variables, LLMOPS_KSERVE__* for KServe) and database."""
    report = platform.move_endpoints(to=TARGET, dry_run=dry_run, names=names)
    sys.exit(1 if report.failed else 0)


def legacy_main() -> None:
    """``migrate-serving-to-kserve [OPTIONS]``: ``llmops kserve migrate [OPTIONS]``."""
    exec_llmops(TARGET, "migrate")
