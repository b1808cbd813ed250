"""The model runtime: an OpenAI-compatible server for a Hugging Face causal LM in a local
folder (``save_pretrained``'s output).

:func:`~llmops.model_runtime.loader.load_model` checks and loads the folder (safetensors
only, no custom code, nothing downloaded), :class:`~llmops.model_runtime.engine.Engine`
generates and embeds, and :func:`~llmops.model_runtime.app.create_app` puts the OpenAI API
in front of it. Run it alone with ``python -m llmops.model_runtime --model PATH``; the Ray
Serve plugin mounts the same app. Importing this package imports neither torch nor
transformers.
"""

from __future__ import annotations

from llmops.model_runtime.loader import ModelFolderError, check_model_folder, load_model

__all__ = ["ModelFolderError", "check_model_folder", "load_model"]
