"""llmops plugin: model serving on KServe."""

__version__ = "0.1.0"
