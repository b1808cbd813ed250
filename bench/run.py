"""Run the benchmarks: ``uv run python bench/run.py [--only NAME ...] [--rounds N]
[--rows N] [--json PATH]``.

Every benchmark times the platform's path and the tool called directly in the same run,
alternately, and reports the ratio (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from harness import PartialFailure, Result, print_table

BENCHMARKS = (
    "cli-help",
    "guard-overhead",
    "api-startup",
    "list-100k-sqlite",
    "list-100k-postgresql",
    "mlflow-metrics",
    "gateway-overhead",
    "argo-orchestration",
    "hf-import",
    "dvc-versions",
    "row-diff",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds per path (default: cli-help 15, api-startup 5, list first-page cases 30, "
        "mlflow-metrics 10 batched and 3 per-point, gateway-overhead 1000 one-token chats and "
        "50 streams, argo-orchestration 200 submissions, hf-import 5 imports of each model "
        "size, dvc-versions 3 versions a path, row-diff 3 diffs of each size a path; the "
        "list walks always walk 200/100 pages, argo-orchestration's sync case always "
        "watches 3 passes)",
    )
    parser.add_argument(
        "--rows", type=int, default=100_000, help="models in the list benchmarks' table"
    )
    parser.add_argument(
        "--pipelines",
        type=int,
        default=1000,
        help="running pipelines argo-orchestration keeps in sync",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.pipelines < 1:
        parser.error("--pipelines must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Starlette's TestClient warns that it wraps httpx; pytest's settings silence it too.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    selected = args.only or list(BENCHMARKS)
    results: list[Result] = []
    failures: list[str] = []
    began = time.perf_counter()
    print(f"python {host.python_version()} on {host.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
        workdir = Path(tmp)
        # Keep stevedore's entry-point cache and other XDG state out of the user's home.
        os.environ["XDG_CACHE_HOME"] = str(workdir / "xdg-cache")
        for name in list(os.environ):
            if name.startswith("LLMOPS_"):
                del os.environ[name]

        import api_startup
        import argo_orchestration
        import catalog_list
        import cli_help
        import dvc_versions
        import gateway_overhead
        import guard_overhead
        import hf_import
        import mlflow_metrics
        import row_diff

        runners: dict[str, Callable[[], list[Result]]] = {
            "cli-help": lambda: cli_help.run(args.rounds),
            "guard-overhead": lambda: guard_overhead.run(args.rounds),
            "api-startup": lambda: api_startup.run(workdir, args.rounds),
            "list-100k-sqlite": lambda: catalog_list.run_sqlite(workdir, args.rows, args.rounds),
            "list-100k-postgresql": lambda: catalog_list.run_postgresql(
                workdir, args.rows, args.rounds
            ),
            "mlflow-metrics": lambda: mlflow_metrics.run(workdir, args.rounds),
            "gateway-overhead": lambda: gateway_overhead.run(workdir, args.rounds),
            "argo-orchestration": lambda: argo_orchestration.run(
                workdir, args.rounds, args.pipelines
            ),
            "hf-import": lambda: hf_import.run(workdir, args.rounds),
            "dvc-versions": lambda: dvc_versions.run(workdir, args.rounds),
            "row-diff": lambda: row_diff.run(workdir, args.rounds),
        }
        for name in BENCHMARKS:
            if name not in selected:
                continue
            print(f"\n== {name}")
            started = time.perf_counter()
            try:
                results.extend(runners[name]())
            except PartialFailure as partial:
                results.extend(partial.results)
                failures.extend(f"{name}: {error}" for error in partial.errors)
            except Exception as exc:
                traceback.print_exc()
                failures.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
            print(f"  ({time.perf_counter() - started:.1f} s)")

    print(f"\n== results ({time.perf_counter() - began:.0f} s in all)")
    if results:
        print_table(results)
    suspicious = [
        f"{r.benchmark} / {r.case}: {note}"
        for r in results
        for note in r.notes
        if note.startswith(("SUSPICIOUS", "PLAN PROBLEM"))
    ]
    if suspicious:
        print("\nfindings:")
        for line in suspicious:
            print(f"  {line}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if args.json is not None:
        payload = {
            "python": host.python_version(),
            "cpus": os.cpu_count(),
            "results": [r.to_json() for r in results],
            "failures": failures,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
