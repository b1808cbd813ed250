"""``python -m llmops.model_runtime --model PATH``: serve a model folder over HTTP with
uvicorn (OpenAI's API under ``/v1``, ``/health``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("llmops.model_runtime")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmops.model_runtime",
        description="Serve a Hugging Face causal LM folder (safetensors) with an "
        "OpenAI-compatible API.",
    )
    parser.add_argument("--model", type=Path, required=True, help="a save_pretrained folder")
    parser.add_argument(
        "--served-model-name", help="the name clients pass as `model` (default: the folder's)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="answer length when a request sets none"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch's CPU threads; 0 for torch's default"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Load, warm up and serve; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from llmops.model_runtime.loader import ModelFolderError, load_model

    try:
        loaded = load_model(args.model, device=args.device)
    except ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch
    import uvicorn

    from llmops.model_runtime.app import create_app
    from llmops.model_runtime.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine(loaded, default_max_tokens=args.max_tokens)
    engine.warm_up()
    name = args.served_model_name or loaded.folder.path.resolve().name
    logger.info("serving %s as %r on %s", loaded.folder.path, name, loaded.device)
    uvicorn.run(
        create_app(engine, served_model_name=name),
        host=args.host,
        port=args.port,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
