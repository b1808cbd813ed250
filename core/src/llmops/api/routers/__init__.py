"""Routers: HTTP only; the logic lives in llmops.services."""
