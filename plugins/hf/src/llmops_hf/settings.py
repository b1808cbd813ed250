"""The plugin's settings: which Hub it talks to, with which token, where it caches, and
what it lets in.

Read from ``LLMOPS_HF__<FIELD>``, overlaid by the configuration stored through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from llmops.plugins import OperatorOnly, PluginSettings, ServerPath, ToolUrl

PUBLIC_HUB = "https://huggingface.co"

#: A git branch name the plugin follows (no spaces, no leading "-" or "/"; no ".." and no
#: trailing "/" either, checked by the validator).
BRANCH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$"


class HfSettings(PluginSettings):
    """Read from ``LLMOPS_HF__<FIELD>``, overlaid by the stored configuration.

    Through the API, ``endpoint`` must pass the platform's URL policy, and changing it
    clears the stored token unless the request sets it again. ``cache_dir``,
    ``allow_pickle`` and ``allow_remote_code`` are set by the operator's environment only:
    the first names a folder on the server, the other two let code that runs when a model
    is loaded onto the server.
    """

    endpoint: Annotated[str, ToolUrl(credentials=("token",))] = Field(
        default=PUBLIC_HUB,
        description="the Hub: huggingface.co, a mirror or a private hub (its API, files and pages)",
    )
    token: SecretStr | None = Field(
        default=None,
        description="a Hub access token (read for imports of private or gated models, write "
        "for exports); never returned, never logged. Unset: anonymous (huggingface_hub's own "
        "token, HF_TOKEN or ~/.cache/huggingface, is never used)",
    )
    cache_dir: Annotated[Path | None, ServerPath()] = Field(
        default=None,
        description="huggingface_hub's cache (blobs and snapshots) the imports are served "
        "from; unset: hub-cache under the plugin's data dir (from the environment only)",
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="the longest one request to the Hub may wait to connect or for data",
    )
    max_workers: int = Field(
        default=8, ge=1, le=64, description="how many files an import downloads at once"
    )
    retry_budget_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="the longest one call waits in all for a Hub that rate limits it "
        "(429, honouring Retry-After), fails (5xx) or cannot be reached, before it answers "
        "from the local cache or 503; huggingface_hub's own retries are turned off",
    )
    allow_pickle: Annotated[bool, OperatorOnly("pickle weights run code when they are loaded")] = (
        Field(
            default=False,
            description="import pickle weights (.bin, .pt, .pth, .pkl, .ckpt); off: a model "
            "with only pickle weights is refused and pickle files beside safetensors ones are "
            "left out (from the environment only)",
        )
    )
    allow_remote_code: Annotated[
        bool, OperatorOnly("a model's own code runs on the server when it is loaded")
    ] = Field(
        default=False,
        description="import models whose config.json or tokenizer_config.json names their "
        "own code (auto_map, trust_remote_code); off: refused (from the environment only)",
    )
    default_branch: str = Field(
        default="main",
        pattern=BRANCH_PATTERN,
        description="the branch metadata without a revision and update checks without a "
        "branch follow",
    )

    @field_validator("default_branch")
    @classmethod
    def _git_branch(cls, value: str) -> str:
        if ".." in value or value.endswith(("/", ".")):
            raise ValueError(f"{value!r} is not a git branch name")
        return value
