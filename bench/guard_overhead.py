"""Guarded dispatch: what the guard (deadline, circuit breaker, error translation,
metrics) adds to one provider call, against calling the provider directly.

The provider's method is trivial on purpose, so the difference is the guard's own cost.
Two modes: cooperative deadlines (providers that declare ``honours_deadline``; the
target is at most 20 µs per call) and isolated calls (a thread hand-off per call, for
providers that cannot bound their own time).
"""

from __future__ import annotations

import time

from harness import Result, alternate
from prometheus_client import CollectorRegistry

from llmops.resilience import CircuitBreaker, Guard, GuardMetrics
from llmops.resilience.guard import GuardedProvider

CALLS = 20_000
TARGET_US = 20.0


class Provider:
    honours_deadline = True

    def status(self, external_id: str) -> str:
        return external_id


def _timer(call: object, calls: int) -> float:
    fn = call  # bound method or guarded wrapper
    started = time.perf_counter()
    for _ in range(calls):
        fn("run-1")  # type: ignore[operator]
    return (time.perf_counter() - started) / calls


def _case(isolated: bool, rounds: int) -> Result:
    provider = Provider()
    guard = Guard(
        "bench",
        "orchestration",
        timeout=5.0,
        breaker=CircuitBreaker(),
        metrics=GuardMetrics(CollectorRegistry()),
        isolated=isolated,
    )
    guarded = GuardedProvider(provider, guard)
    calls = CALLS if not isolated else CALLS // 10
    platform, direct = alternate(
        lambda: _timer(guarded.status, calls),
        lambda: _timer(provider.status, calls),
        rounds=rounds,
        progress="guard",
    )
    guard.close()
    overhead_us = (platform.median - direct.median) * 1e6
    mode = "isolated (thread hand-off)" if isolated else "cooperative deadline"
    note = f"overhead {overhead_us:.1f} µs per call"
    if not isolated:
        note += f" (target ≤ {TARGET_US:.0f} µs)"
        if overhead_us > TARGET_US:
            note = "SUSPICIOUS: " + note
    print(
        f"  {mode}: guarded {platform.median * 1e6:.2f} µs, direct "
        f"{direct.median * 1e6:.3f} µs per call; {note}"
    )
    return Result(
        benchmark="guard-overhead",
        case=f"one provider call, {mode}",
        platform=platform,
        direct=direct,
        metric="median",
        notes=[note],
    )


def run(rounds: int | None) -> list[Result]:
    rounds = max(rounds or 0, 7)
    return [_case(False, rounds), _case(True, rounds)]
