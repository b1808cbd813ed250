"""llmops-folder-registry: an llmops plugin that keeps model repositories in a folder.

Kept empty on purpose: the entry point names :mod:`llmops_folder_registry.plugin`, and
importing the package must cost nothing.
"""

__version__ = "0.1.0"
