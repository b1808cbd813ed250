"""What plugins provide: one Protocol and its value types per capability.

Each capability has one module, one Protocol named after it and one hook: capability
``tracking`` is :class:`~llmops.capabilities.tracking.TrackingProvider`, built by the hook
``llmops_tracking`` and checked by ``llmops.testing.contracts.tracking.TrackingContract``;
the same for ``serving``, ``orchestration``, ``registry`` and ``versioning``.

Value types are frozen pydantic models made of plain data. They never carry a tool's own
objects (an ``mlflow.entities.Run``, a ``kubernetes`` model), so the core, the API and
other plugins can rely on them whichever tool stands behind a provider.

Optional abilities any provider may add (:class:`HonoursDeadline`,
:class:`TranslatesErrors`, :class:`ReportsActiveWork`, :class:`Closable`) are Protocols
too; the core finds them with ``isinstance``.
"""

from llmops.capabilities.common import (
    Capability,
    Closable,
    Health,
    HealthStatus,
    HonoursDeadline,
    Provider,
    ReportsActiveWork,
    TranslatesErrors,
    honours_deadline,
)
from llmops.capabilities.orchestration import OrchestrationProvider
from llmops.capabilities.registry import RegistryProvider
from llmops.capabilities.serving import ServingProvider
from llmops.capabilities.tracking import TrackingProvider
from llmops.capabilities.versioning import VersioningProvider

#: The Protocol of each capability's providers.
PROTOCOLS: dict[Capability, type] = {
    Capability.TRACKING: TrackingProvider,
    Capability.SERVING: ServingProvider,
    Capability.ORCHESTRATION: OrchestrationProvider,
    Capability.REGISTRY: RegistryProvider,
    Capability.VERSIONING: VersioningProvider,
}


def hook_name(capability: Capability) -> str:
    """The hook that builds a capability's providers: ``llmops_<capability>``."""
    return f"llmops_{capability.value}"


__all__ = [
    "PROTOCOLS",
    "Capability",
    "Closable",
    "Health",
    "HealthStatus",
    "HonoursDeadline",
    "Provider",
    "ReportsActiveWork",
    "TranslatesErrors",
    "honours_deadline",
    "hook_name",
]
