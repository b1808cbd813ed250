"""llmops-example: an llmops plugin that tracks experiment runs in JSON files.

Kept empty on purpose: the entry point names :mod:`llmops_example.plugin`, and importing
the package must cost nothing.
"""

__version__ = "0.1.0"
