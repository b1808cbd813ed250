"""Waiting for an event in tests without fixed sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str | None = None,
) -> T:
    """Poll until ``predicate()`` is truthy and return its value; fail after ``timeout``,
    naming ``what`` was awaited when given."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        pause.wait(interval)
