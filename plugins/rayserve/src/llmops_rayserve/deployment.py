"""The Serve deployment each endpoint runs: llmops' model runtime (an OpenAI-compatible
FastAPI app) over a model folder, loaded and warmed up when the replica starts.

This module is imported inside Ray's replica processes; it imports torch and transformers
only in the replica's constructor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("llmops_rayserve.replica")

#: The deployment's name inside each endpoint's application.
DEPLOYMENT_NAME = "ModelServer"
#: The key of the platform's record in the deployment's ``user_config``.
USER_CONFIG_KEY = "llmops"


class ModelServer:
    """One replica: the model in ``model_path`` served as ``served_model_name``.

    Serve calls ``__serve_build_asgi_app__`` after the constructor (``serve.ingress()``
    without an app), so the FastAPI app is built around the engine loaded here. The
    constructor returns only after a real one-token generation, so a replica is RUNNING
    only once it can answer.
    """

    def __init__(
        self, model_path: str, served_model_name: str, threads: int, max_tokens: int
    ) -> None:
        from llmops.model_runtime.engine import Engine
        from llmops.model_runtime.loader import load_model

        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        loaded = load_model(model_path)
        self.engine = Engine(loaded, default_max_tokens=max_tokens)
        self.engine.warm_up()
        self.served_model_name = served_model_name
        self.record: dict[str, Any] = {}
        logger.info("replica serving %s as %r on %s", model_path, served_model_name, loaded.device)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve hands over the deployment's ``user_config``: the platform's record
        (endpoint, idempotency key, model URI), kept with the deployment in Ray."""
        self.record = dict(user_config.get(USER_CONFIG_KEY, {}))

    def __serve_build_asgi_app__(self) -> FastAPI:
        from llmops.model_runtime.app import create_app

        return create_app(self.engine, served_model_name=self.served_model_name)
