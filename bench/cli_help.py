"""``cli-help``: wall time of ``llmops --help`` against ``python -c pass``, and what
``--help`` imports (no tool SDK may be among it)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import Result, alternate, clean_env, describe, timed

NAME = "cli-help"
DEFAULT_ROUNDS = 15
#: Tool SDKs that ``llmops --help`` must never import.
TOOL_SDKS = ("mlflow", "ray", "kubernetes", "hera", "huggingface_hub", "dvc")
#: Big libraries that are fine in a command but a waste in ``--help``.
HEAVY = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "stevedore",
    "psycopg",
    "httpx",
    "yaml",
    "prometheus_client",
)


@dataclass(frozen=True)
class ImportRecord:
    module: str
    self_us: int
    cumulative_us: int
    #: 0 for an import made by the program itself, 1 for one made by that import, ...
    depth: int


def parse_importtime(stderr: str) -> list[ImportRecord]:
    """The lines of ``python -X importtime``: ``import time: self | cumulative | name``."""
    records = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        try:
            self_us, cumulative_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue  # the header line
        name = parts[2]
        module = name.lstrip(" ")
        depth = (len(name) - len(module) - 1) // 2
        records.append(ImportRecord(module.strip(), self_us, cumulative_us, depth))
    return records


def llmops_script() -> Path:
    return Path(sys.executable).parent / "llmops"


def run(rounds: int | None = None) -> list[Result]:
    rounds = rounds or DEFAULT_ROUNDS
    script = llmops_script()
    if not script.exists():
        raise RuntimeError(f"{script} is missing: run `uv sync --all-packages` first")
    env = clean_env()

    def one(command: list[str]) -> float:
        def call() -> None:
            subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True
            )

        return timed(call)

    platform, direct = alternate(
        lambda: one([str(script), "--help"]),
        lambda: one([sys.executable, "-c", "pass"]),
        rounds=rounds,
        warmup=1,
        progress=NAME,
    )
    result = Result(NAME, "llmops --help / python -c pass", platform, direct, "median")
    print(describe(result))

    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llmops.cli", "--help"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    )
    records = parse_importtime(traced.stderr)
    roots = {r.module.split(".")[0] for r in records}
    sdks = sorted(roots & set(TOOL_SDKS))
    heavy = sorted(roots & set(HEAVY))
    total_ms = sum(r.self_us for r in records) / 1e3
    print(f"  imports by --help: {len(records)} modules, {total_ms:.0f} ms in all (importtime)")
    if sdks:
        note = f"SUSPICIOUS: --help imports tool SDK(s): {', '.join(sdks)}"
    else:
        note = f"no tool SDK imported by --help (checked: {', '.join(TOOL_SDKS)})"
    print(f"  {note}")
    result.notes.append(note)
    heavy_note = f"heavy libraries imported by --help: {', '.join(heavy) or 'none'}"
    print(f"  {heavy_note}")
    result.notes.append(heavy_note)
    print("  5 slowest imports (cumulative, i.e. with what they import):")
    for record in sorted(records, key=lambda r: r.cumulative_us, reverse=True)[:5]:
        line = (
            f"{record.module} {record.cumulative_us / 1e3:.1f} ms "
            f"(self {record.self_us / 1e3:.1f} ms, depth {record.depth})"
        )
        print(f"    {line}")
        result.notes.append(f"slow import: {line}")
    print("  5 slowest imports (self time only):")
    for record in sorted(records, key=lambda r: r.self_us, reverse=True)[:5]:
        print(f"    {record.module} {record.self_us / 1e3:.1f} ms")
    return [result]
