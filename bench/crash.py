"""``crash``: the long form of the crash harness (``llmops.testing.crash``), with its
figures printed: ``uv run python bench/crash.py [--seconds 120] [--database sqlite|
postgresql|both] [--seed N]``.

Not a ratio against a tool: it kills the platform's processes with SIGKILL at random
moments (every 2-5 s) during a mixed workload (models, datasets, pipelines, training
jobs, cancels; every request with an ``Idempotency-Key``, retried with it until
answered) and checks that every acknowledged write exists once, no write exists twice,
every run is final soon after the last restart, no stage started more often than its
attempts, every key answers, and the SQLite database is intact. On SQLite one
``llmops up``; on PostgreSQL two replicas and an ``llmops worker``. ``make test`` runs a
short form (``tests/test_crash.py``, 18 s of workload per database). Exit status 1 when
a check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from llmops.testing.crash import CrashConfig, CrashHarness, CrashReport
from llmops.testing.postgres import PostgresServer


def run(database: str, seconds: float, seed: int, base: Path) -> CrashReport:
    work = base / database
    work.mkdir()
    if database == "sqlite":
        config = CrashConfig(
            database_url=f"sqlite:///{work / 'llmops.db'}",
            data_dir=work / "data",
            seconds=seconds,
            kill_every=(2.0, 5.0),
            seed=seed,
        )
        return CrashHarness(config).run()
    with PostgresServer(base / "postgres") as server:
        config = CrashConfig(
            database_url=server.create_database(),
            data_dir=work / "data",
            replicas=2,
            worker=True,
            seconds=seconds,
            kill_every=(2.0, 5.0),
            seed=seed,
        )
        return CrashHarness(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    failed = False
    with tempfile.TemporaryDirectory(prefix="llmops-crash-") as tmp:
        for database in databases:
            report = run(database, args.seconds, args.seed, Path(tmp))
            print(f"== crash on {database} ({'ok' if report.ok else 'FAILED'})")
            for line in report.lines():
                print(f"   {line}")
            failed = failed or not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
