"""llmops plugin: experiment tracking in MLflow."""

__version__ = "0.1.0"
