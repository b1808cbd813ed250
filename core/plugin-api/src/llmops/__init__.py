"""llmops: an open-source LLM Ops platform.

This package is split over two distributions. ``llmops-plugin-api`` holds what a plugin
is written against: this module (the hook marker and the version), :mod:`llmops.hookspecs`,
:mod:`llmops.capabilities`, :mod:`llmops.plugins` (plugin info and settings),
:mod:`llmops.errors`, :mod:`llmops.deadlines`, the model runtime serving plugins run
(:mod:`llmops.model_runtime`); its ``testing`` extra brings ``llmops-testing``, the
contract suites and tool doubles in :mod:`llmops.testing`. ``llmops-core`` adds the
server: the API, the
database, the services and the platform. ``pkgutil.extend_path`` lets both contribute
modules to the one ``llmops`` package, installed or editable.

Importing this package must stay cheap: it is imported by every plugin module and by
``llmops --help``. Only the hook marker and the version live here.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@llmops.hookimpl``.
hookimpl = pluggy.HookimplMarker("llmops")

__all__ = ["__version__", "hookimpl"]
