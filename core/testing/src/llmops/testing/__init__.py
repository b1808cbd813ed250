"""The kit for plugin authors: contract suites, tool doubles, process and wait helpers.

Installed with ``pip install "llmops-plugin-api[testing]"``. The fixtures that start a
whole platform (``llmops.testing.pytest_plugin``), PostgreSQL and the console's browser
helpers come with llmops-core; this package is split over both distributions, as
:mod:`llmops` is.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
