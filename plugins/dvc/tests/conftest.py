"""Every test's DVC and git away from ``$HOME``: DVC's global, system and site folders and
git's global config under the session's temporary folder, analytics off; and
``make_provider(**settings)``, a provider on a real git + DVC repository per dataset under
the test's temporary folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmops_dvc.provider import DvcVersioner
from llmops_dvc.settings import DvcSettings

MakeProvider = Callable[..., DvcVersioner]


@pytest.fixture(scope="session", autouse=True)
def isolated_tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("dvc-home")
    patch = pytest.MonkeyPatch()
    for name, value in {
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "XDG_CACHE_HOME": str(home / "xdg-cache"),
    }.items():
        patch.setenv(name, value)
    yield
    patch.undo()


@pytest.fixture
def make_provider(tmp_path: Path) -> MakeProvider:
    """``make_provider(**settings)``: a provider whose data dir is ``tmp_path / "dvc"``
    (the same for every provider of the test, so two of them share the repositories)."""

    def make(**overrides: Any) -> DvcVersioner:
        values: dict[str, Any] = {"remote_timeout_seconds": 2, "lock_timeout_seconds": 60}
        values.update(overrides)
        return DvcVersioner(DvcSettings.model_validate(values), data_dir=tmp_path / "dvc")

    return make
