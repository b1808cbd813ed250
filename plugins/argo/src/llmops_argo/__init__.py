"""llmops plugin: pipelines and training jobs on Argo Workflows."""

__version__ = "0.1.0"
