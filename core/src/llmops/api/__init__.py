"""The REST API under /llm-ops/v1 (FastAPI)."""
