"""What an import lets in, decided from the repository's file list before any download.

* File names: every name the listing holds must stay inside the destination (relative,
  ``/``-separated, no ``..``, ``.`` or empty segment, no backslash, no drive, no control
  character). One bad name refuses the whole import: a Hub that serves it is not to be
  trusted with the rest (huggingface_hub PRs #1429 and #4540 fixed such escapes in its
  own downloads).
* Weights: pickle formats run code when they are loaded. By default a selection whose
  weights are all pickle is refused, and pickle files beside safetensors weights are left
  out; the operator's ``allow_pickle`` lets them in.
* Remote code: a ``config.json`` or ``tokenizer_config.json`` with ``auto_map`` needs
  ``trust_remote_code``, which runs the repository's Python on the server; refused unless
  the operator's ``allow_remote_code`` allows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.errors import InvalidRequest

#: Suffixes of the weight formats that are Python pickles (or zip files holding one).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
SAFETENSORS_SUFFIX = ".safetensors"
#: Configs whose ``auto_map`` makes transformers import the repository's own code.
CODE_CONFIGS = ("config.json", "tokenizer_config.json")
#: The most of a config file that is read (a config is a few kilobytes).
MAX_CONFIG_BYTES = 4 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_NAME = 1024
_SHOWN = 10


def name_problem(name: str) -> str | None:
    """Why ``name`` could land outside a destination folder, or None when it cannot."""
    if not name:
        return "is empty"
    if len(name) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} characters"
    if _CONTROL.search(name):
        return "holds a control character"
    if "\\" in name:
        return "holds a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "is absolute"
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return "has an empty, '.' or '..' segment"
    return None


def check_names(names: Iterable[str], where: str) -> None:
    """Refuse (422) when any of ``names`` could land outside the destination."""
    bad = [(name, problem) for name in names if (problem := name_problem(name)) is not None]
    if bad:
        shown = "; ".join(f"{name!r} {problem}" for name, problem in bad[:_SHOWN])
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        raise InvalidRequest(
            f"{where}: refused, nothing was written: the repository lists file names that "
            f"would land outside the destination: {shown}{more}",
            files=[name for name, _ in bad[:100]],
        )


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def is_safetensors(name: str) -> bool:
    return name.lower().endswith(SAFETENSORS_SUFFIX)


@dataclass(frozen=True)
class WeightsPlan:
    """The files to download and those left out for safety."""

    keep: list[str]
    skipped: list[str]


def plan_weights(selected: Sequence[str], *, allow_pickle: bool, where: str) -> WeightsPlan:
    """Which of ``selected`` are downloaded: all with ``allow_pickle``; else everything
    but pickle files, refused (422) when pickle files are the only weights."""
    pickles = [name for name in selected if is_pickle(name)]
    if allow_pickle or not pickles:
        return WeightsPlan(keep=list(selected), skipped=[])
    if not any(is_safetensors(name) for name in selected):
        shown = ", ".join(pickles[:_SHOWN]) + (
            f" (and {len(pickles) - _SHOWN} more)" if len(pickles) > _SHOWN else ""
        )
        raise InvalidRequest(
            f"{where}: refused: its weights are pickle files only ({shown}), which run code "
            "when they are loaded; import a revision with safetensors weights (or pick them "
            "with allow_patterns), or have the operator set LLMOPS_HF__ALLOW_PICKLE",
            files=pickles[:100],
            reason="pickle-weights",
        )
    return WeightsPlan(keep=[n for n in selected if not is_pickle(n)], skipped=pickles)


def remote_code_of(config: Mapping[str, Any]) -> list[str]:
    """The classes a config maps to the repository's own code (``auto_map``)."""
    auto_map = config.get("auto_map")
    if not auto_map:
        return []
    if isinstance(auto_map, Mapping):
        return sorted(f"{key}: {value}" for key, value in auto_map.items())
    return [str(auto_map)]


def parse_config(name: str, data: bytes, where: str) -> Mapping[str, Any]:
    """``data`` as the JSON object a config holds; 422 when it is not one (a config the
    plugin cannot read is a config it cannot clear of remote code)."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(
            f"{where}: refused: {name} is not valid JSON ({exc}), so whether it needs "
            "remote code cannot be told",
            files=[name],
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"{where}: refused: {name} is not a JSON object", files=[name])
    return parsed


def refuse_remote_code(name: str, classes: Sequence[str], where: str) -> None:
    raise InvalidRequest(
        f"{where}: refused: {name} maps classes to the repository's own code (auto_map: "
        f"{', '.join(classes[:_SHOWN])}), which runs on the server when the model is loaded "
        "(trust_remote_code); the operator may allow it with LLMOPS_HF__ALLOW_REMOTE_CODE",
        files=[name],
        reason="remote-code",
    )
