"""llmops plugin: the Hugging Face Hub as the platform's model registry."""

__version__ = "0.1.0"
