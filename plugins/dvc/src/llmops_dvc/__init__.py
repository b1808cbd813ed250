"""llmops plugin: dataset versioning in DVC."""

__version__ = "0.1.0"
