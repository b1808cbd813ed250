"""Where the upstream schemas are: the published schemas of tools that need a cluster
(KServe's InferenceService CRD, Argo's JSON schema and server API), kept as data in
``shared/upstream-schemas`` next to the repository, never copied into it.

The folder is ``$LLMOPS_UPSTREAM_SCHEMAS`` when set, else the nearest
``shared/upstream-schemas`` above this file or above the working directory (the repository
is cloned to ``X/main`` with ``X/shared`` next to it, locally and in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "UpstreamSchemasMissing", "upstream_schema", "upstream_schemas_dir"]

#: Overrides the search when set.
ENV_VAR = "LLMOPS_UPSTREAM_SCHEMAS"
_RELATIVE = Path("shared") / "upstream-schemas"


class UpstreamSchemasMissing(FileNotFoundError):
    """The upstream schemas folder (or a file in it) is not where it is looked for."""


def upstream_schemas_dir() -> Path:
    """The folder holding the upstream schemas.

    :raises UpstreamSchemasMissing: naming where it was looked for and how to point at it.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        folder = Path(configured).expanduser()
        if not folder.is_dir():
            raise UpstreamSchemasMissing(f"{ENV_VAR}={configured} is not a folder")
        return folder
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / _RELATIVE
            if candidate.is_dir():
                return candidate
    raise UpstreamSchemasMissing(
        f"no {_RELATIVE} found above {starts[0]} or above {starts[1]}: clone the repository "
        f"as X/main with the shared folder at X/shared, or set {ENV_VAR} to the folder"
    )


def upstream_schema(filename: str) -> Path:
    """The path of one upstream schema file.

    :raises UpstreamSchemasMissing: when the folder or the file is missing.
    """
    path = upstream_schemas_dir() / filename
    if not path.is_file():
        raise UpstreamSchemasMissing(f"{path} does not exist (see the folder's README.md)")
    return path
