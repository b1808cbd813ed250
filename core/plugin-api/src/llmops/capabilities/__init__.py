"""What plugins provide: one Protocol and its value types per capability.

Value types are frozen pydantic models made of plain data. They never carry a tool's own
objects (an ``mlflow.entities.Run``, a ``kubernetes`` model), so the core, the API and
other plugins can rely on them whichever tool stands behind a provider.
"""

from llmops.capabilities.common import Capability, Health, HealthStatus, Provider

__all__ = ["Capability", "Health", "HealthStatus", "Provider"]
