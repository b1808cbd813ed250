"""Tiny real models and in-process servers for serving tests: a 2-layer GPT-2 with fresh
weights and a tokenizer trained on a few sentences, saved with ``save_pretrained`` (real
weights, real generation, nothing downloaded); and an ASGI app on uvicorn in a thread.
Needs the ``train`` extra (torch, transformers)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmops.testing.processes import free_port
from llmops.testing.waiting import wait_for

#: The source of a serving plugin "direct" (install it with ``llmops.testing.plugins``)
#: whose "deployment" is the backend URL given as the model URI: for testing and
#: measuring the inference gateway against real backends. Its target sends the backend
#: ``Authorization: Bearer backend-secret`` and names the served model ``tiny-gpt2``.
DIRECT_SERVING_PLUGIN = """
from llmops import hookimpl
from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.capabilities.serving import (
    DeploymentState, DeploymentStatus, FrameworkInfo, InferenceProtocol, InferenceTarget,
)
from llmops.plugins.info import PluginInfo


class Direct:
    honours_deadline = True

    def framework(self):
        return FrameworkInfo(
            name="direct", display_name="Direct", protocols=[InferenceProtocol.OPENAI]
        )

    def _status(self, name, uri):
        target = InferenceTarget(
            base_url=uri, protocol=InferenceProtocol.OPENAI, model_name="tiny-gpt2",
            headers={"Authorization": "Bearer backend-secret"},
        )
        return DeploymentStatus(
            external_id=name + "|" + uri, state=DeploymentState.READY, ready=True,
            target=target,
        )

    def deploy(self, spec):
        return self._status(spec.name, spec.model_uri)

    def status(self, external_id):
        return self._status(*external_id.split("|", 1))

    def update(self, external_id, update):
        return self.status(external_id)

    def delete(self, external_id):
        return None

    def inference_target(self, external_id):
        return self.status(external_id).target

    def health(self):
        return Health(status=HealthStatus.OK)


@hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="direct", version="1.0", display_name="Direct",
        capabilities=frozenset({Capability.SERVING}),
    )


@hookimpl
def llmops_serving(settings, context):
    return [Direct()]
"""


SENTENCES = (
    "The town sleeps by the river.",
    "A cat walks on the old wall.",
    "Rain falls on the quiet market.",
    "Children sing songs in the square.",
)


def tiny_causal_lm(
    folder: Path,
    *,
    hidden: int = 32,
    positions: int = 1024,
    seed: int = 0,
    sentences: Sequence[str] = SENTENCES,
) -> Path:
    """Save a tiny GPT-2 and its tokenizer into ``folder`` and return it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch

    from llmops.examples import tiny_gpt2

    torch.manual_seed(seed)
    tokenizer = tiny_gpt2.train_tokenizer(list(sentences) * 3, vocab_size=300)
    config = tiny_gpt2.TrainingConfig(n_layer=2, n_head=2, n_embd=hidden, block_size=positions)
    model = tiny_gpt2.build_model(tokenizer, config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def serving_in_thread(app: Any, *, port: int | None = None) -> Iterator[str]:
    """``app`` on uvicorn on 127.0.0.1 (on ``port``, or a free one), in a thread of this
    process; yields its URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
