"""Load a Hugging Face causal LM from a local folder written by ``save_pretrained``.

Only what cannot run code is loaded: weights in safetensors (a pickle file is refused, by
name), no ``trust_remote_code``, nothing fetched from the Hub (``HF_HUB_OFFLINE=1`` and
``local_files_only``). A folder is checked before ``transformers`` is imported, so that a
bad folder fails fast with an error that says what is wrong with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Weight files that ``torch.load`` would unpickle: code execution when loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFETENSORS_SUFFIX = ".safetensors"


class ModelFolderError(ValueError):
    """The folder is not a model the runtime can load safely."""


@dataclass(frozen=True)
class ModelFolder:
    """A checked model folder: its config and its safetensors weight files."""

    path: Path
    config: dict[str, Any]
    weight_files: tuple[Path, ...]


@dataclass(frozen=True)
class LoadedModel:
    """A model and its tokenizer, in evaluation mode on ``device``."""

    folder: ModelFolder
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: str


def check_model_folder(path: Path | str) -> ModelFolder:
    """Check that ``path`` holds a ``config.json`` and safetensors weights, and asks for
    no custom code.

    :raises ModelFolderError: naming the file or setting at fault.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"no model folder at {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"{folder} has no config.json: not a save_pretrained folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{config_file} cannot be read: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelFolderError(f"{config_file} is not a JSON object")
    if "auto_map" in config:
        raise ModelFolderError(
            f"{config_file} maps the model to custom code (auto_map); "
            "the runtime never runs code shipped with a model (no trust_remote_code)"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    weights = tuple(p for p in files if p.name.endswith(SAFETENSORS_SUFFIX))
    if not weights:
        pickles = [p for p in files if p.name.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            names = ", ".join(str(p.relative_to(folder)) for p in pickles)
            raise ModelFolderError(
                f"{folder} holds pickle weights ({names}) and no safetensors: pickle files "
                "can run code when loaded, so the runtime refuses them; convert the model "
                "to safetensors (save_pretrained(..., safe_serialization=True))"
            )
        raise ModelFolderError(f"{folder} holds no weights (*{SAFETENSORS_SUFFIX})")
    return ModelFolder(path=folder, config=config, weight_files=weights)


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: Path | str, *, device: str | None = None) -> LoadedModel:
    """Load the causal LM and tokenizer in ``path`` onto ``device`` (default: CUDA when
    available, else CPU).

    :raises ModelFolderError: when the folder is refused or transformers cannot load it.
    """
    folder = check_model_folder(path)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # a server's log is no terminal (the function is unannotated, hence the cast)
    cast(Callable[[], None], transformers_logging.disable_progress_bar)()
    device = device or default_device()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder.path, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            folder.path,
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFolderError(f"{folder.path} cannot be loaded as a causal LM: {exc}") from exc
    import torch

    module: torch.nn.Module = model  # transformers' own annotations of to/eval are off
    module.to(torch.device(device))  # in place: a module moves its own parameters
    module.eval()
    return LoadedModel(folder=folder, model=model, tokenizer=tokenizer, device=device)
