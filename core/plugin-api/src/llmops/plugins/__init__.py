"""What a plugin says about itself (:class:`PluginInfo`), the base of its settings model
(:class:`PluginSettings`) with the markers of settings the core guards (:class:`ToolUrl`,
:class:`ServerPath`), and what the core hands to its hooks (:class:`PluginContext`).

Discovery and loading are the server's (``llmops.plugins.discovery`` in llmops-core); this
package is split over both distributions, as :mod:`llmops` is.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from llmops.plugins.fields import OperatorOnly, ServerPath, ToolUrl
from llmops.plugins.info import PluginContext, PluginInfo, PluginSettings

__all__ = [
    "OperatorOnly",
    "PluginContext",
    "PluginInfo",
    "PluginSettings",
    "ServerPath",
    "ToolUrl",
]
