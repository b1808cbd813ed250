"""What a plugin says about itself, and what the core hands to it."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.capabilities.common import Capability
from llmops.plugins.fields import check_markers

PLUGIN_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class PluginSettings(BaseModel):
    """Base for plugin settings models: unknown keys are refused, secrets are SecretStr."""

    model_config = ConfigDict(extra="forbid")


class PluginInfo(BaseModel):
    """The answer to ``llmops_plugin_info``; validated by the core when the plugin loads."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=PLUGIN_NAME_PATTERN, description="equals the entry point's name")
    version: str
    display_name: str
    description: str = ""
    capabilities: frozenset[Capability] = frozenset()
    settings_model: type[BaseModel] = PluginSettings
    core_version: str = Field(
        default=">=0.1", description="PEP 440 range of llmops-core versions supported"
    )
    links: dict[str, str] = Field(default_factory=dict, description="e.g. the tool's own UI")
    priority: int = Field(
        default=0,
        ge=-100,
        le=100,
        description="which plugin serves a capability that several enabled plugins offer "
        "while no admin has chosen one: the highest priority; a tie is left to the admin "
        "(the API answers 409 provider-choice-needed until one is chosen). Example and "
        "test plugins declare a negative one, so they never take a capability over.",
    )

    @field_validator("core_version")
    @classmethod
    def _valid_specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier as exc:
            raise ValueError(f"not a PEP 440 version range: {value!r}") from exc
        return value

    @field_validator("settings_model")
    @classmethod
    def _settings_is_model(cls, value: type[BaseModel]) -> type[BaseModel]:
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("settings_model must be a pydantic BaseModel subclass")
        check_markers(value)
        return value


@dataclass(frozen=True)
class PluginContext:
    """What the core hands to a plugin's hooks besides its settings."""

    plugin_name: str
    #: A directory the plugin owns under the platform's data dir; created on first use.
    data_dir: Path
    #: Where the platform's REST API is reachable (for links and for jobs).
    api_url: str
    core_version: str
    extras: dict[str, str] = field(default_factory=dict)
    #: Where the platform keeps what no user code may read: its data dir, its database
    #: file, its key file. A plugin that runs stages on the server's own host (the local
    #: executor) hides these from them.
    protected_paths: tuple[Path, ...] = ()
    #: Held while Alembic migrates a database in this process: the core's own migrations
    #: take it, and so must a plugin whose tool runs Alembic in the platform's process
    #: (MLflow's SQL store does when it opens its database). Alembic's module-level
    #: state breaks when two migrations run at once in one process.
    migrations_lock: AbstractContextManager[Any] = field(
        default_factory=threading.RLock, compare=False, repr=False
    )

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
