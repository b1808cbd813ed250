"""Guarded dispatch and the outbox: how the core talks to tools without hanging, without
hammering a tool that is down, and without losing or duplicating a write."""

from llmops.resilience.breaker import CircuitBreaker, CircuitState
from llmops.resilience.guard import Guard, GuardMetrics

__all__ = ["CircuitBreaker", "CircuitState", "Guard", "GuardMetrics"]
