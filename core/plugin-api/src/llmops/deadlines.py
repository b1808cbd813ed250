"""The deadline of the provider call in progress, for a provider's own client timeouts.

The core calls every provider through a guard that gives the call a deadline. A provider
that declares ``honours_deadline = True`` (:class:`~llmops.capabilities.common.HonoursDeadline`)
is called on the caller's thread and must size its client's timeouts from
:func:`deadline_remaining`; any other provider runs in a small thread pool and is
abandoned at the deadline.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "llmops_deadline", default=None
)


def deadline_remaining(default: float | None = None) -> float | None:
    """Seconds left before the current call's deadline (``default`` outside one).

    Providers pass this to their HTTP client as the request timeout. Never less than a
    millisecond inside a call, so a client never reads it as "no timeout".
    """
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(0.001, deadline - time.monotonic())


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Run the block under a deadline ``seconds`` from now; yields the monotonic deadline.

    The core's guard uses this around every provider call; a plugin's tests use it to
    check that their provider honours a deadline.
    """
    at = time.monotonic() + seconds
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)
