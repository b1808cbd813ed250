"""llmops: an open-source LLM Ops platform.

Importing this package must stay cheap: it is imported by every plugin module and by
``llmops --help``. Only the hook markers and the version live here.
"""

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@llmops.hookimpl``.
hookimpl = pluggy.HookimplMarker("llmops")

__all__ = ["__version__", "hookimpl"]
