"""The platform's Prometheus registry: one per app, never the global default."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PlatformMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmops_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmops_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.integration_up = Gauge(
            "llmops_integration_up",
            "1 when the provider's last health check was ok",
            ["plugin", "capability", "provider"],
            registry=self.registry,
        )
        self.plugin_enabled = Gauge(
            "llmops_plugin_enabled",
            "1 when the plugin is enabled and loaded without error",
            ["plugin"],
            registry=self.registry,
        )
        self.authentication_refusals = Counter(
            "llmops_authentication_refusals",
            "API keys refused: 'invalid' (unknown, malformed or revoked) or 'blocked' (not "
            "checked: the source failed too often)",
            ["reason"],
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "llmops_audit_write_failures",
            "Audit entries that could not be written (the database refused them)",
            registry=self.registry,
        )
