"""A circuit breaker per (plugin, capability).

Closed: calls go through; ``failure_threshold`` failures in a row open it. Open: calls are
refused at once for ``reset_timeout`` seconds. Half-open: one trial call goes through; its
success closes the breaker, its failure opens it again. Only transient failures count (the
guard decides): a tool that refuses a call has answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self.last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._current()

    def _current(self) -> CircuitState:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._state = CircuitState.HALF_OPEN
            self._trial_running = False
        return self._state

    def retry_after(self) -> float:
        with self._lock:
            if self._current() is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one trial at a time."""
        with self._lock:
            state = self._current()
            if state is CircuitState.CLOSED:
                return True
            if state is CircuitState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._trial_running = False

    def release(self) -> None:
        """A call ended that says nothing about the tool (it failed before reaching it, or
        in a way nobody can classify): no verdict, but a half-open trial is over, so the
        next call may be the trial."""
        with self._lock:
            self._trial_running = False

    def record_failure(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            self._trial_running = False
            if self._current() is CircuitState.HALF_OPEN:
                self._open()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._failures = 0
