"""Prometheus metrics and the health model."""
