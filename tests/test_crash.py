"""The crash harness' short form (``llmops.testing.crash``): ``kill -9`` of the
platform's processes at random moments during a mixed workload — one server on SQLite;
two replicas and a separate worker on PostgreSQL — and afterwards every acknowledged
write exists once, every run is final, no stage ran twice, every idempotency key answers.
The long form, with its figures: ``python bench/crash.py``."""

from __future__ import annotations

from pathlib import Path

from llmops.testing.crash import CrashConfig, CrashHarness


def test_kill_9_during_a_mixed_workload_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    postgres = database_url.startswith("postgresql")
    config = CrashConfig(
        database_url=database_url,
        data_dir=tmp_path / "data",
        replicas=2 if postgres else 1,
        worker=postgres,
        seconds=18.0,
        kill_every=(2.0, 4.0),
        clients=3,
        seed=7,
    )
    report = CrashHarness(config).run()
    print("\n".join(report.lines()))
    assert report.kills >= 3
    assert report.acknowledged >= 10
    assert report.ok, "\n".join(report.lines())
