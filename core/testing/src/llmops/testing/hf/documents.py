"""What the Hub tells about a repo: the ``model_info`` document (the search and ``expand``
answers are subsets of it) with what the Hub reads out of a commit (the card's front
matter, ``config.json``, safetensors headers, the tags it computes), and the entries of a
tree listing."""

from __future__ import annotations

import io
import json
from typing import Any

from llmops.testing.hf.errors import HubError
from llmops.testing.hf.replies import iso
from llmops.testing.hf.repo import (
    Commit,
    LfsStore,
    Repo,
    StoredFile,
    card_metadata,
    safetensors_parameters,
)

__all__ = ["EXPANDABLE", "LIST_KEYS", "Documents", "sort_found"]

#: What ``config`` carries of a model's ``config.json``.
CONFIG_KEYS = ("architectures", "model_type", "auto_map", "quantization_config")
#: The keys of a search result (without ``full``, ``cardData``, ``config``, ``expand``).
LIST_KEYS = frozenset(
    {
        "_id",
        "id",
        "likes",
        "trendingScore",
        "private",
        "downloads",
        "tags",
        "pipeline_tag",
        "library_name",
        "createdAt",
        "modelId",
    }
)
#: What ``full=True`` adds to a search result.
FULL_KEYS = frozenset({"author", "sha", "lastModified", "gated", "disabled", "siblings"})
#: The properties ``expand`` may ask for.
EXPANDABLE = frozenset(
    {
        "author",
        "cardData",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "gated",
        "lastModified",
        "library_name",
        "likes",
        "pipeline_tag",
        "private",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "trendingScore",
        "usedStorage",
    }
)
_SORTS = ("downloads", "likes", "lastModified", "createdAt", "trendingScore", "id")

Found = tuple[Repo, Commit, dict[str, Any]]


class Documents:
    """Builds the Hub's documents; reads file contents from ``store`` (safetensors
    headers are read once per object)."""

    def __init__(self, store: LfsStore) -> None:
        self.store = store
        self._parameters: dict[str, dict[str, int] | None] = {}

    def clear(self) -> None:
        self._parameters.clear()

    def document(self, repo: Repo, commit: Commit, *, blobs: bool) -> dict[str, Any]:
        """Everything the Hub tells about ``repo`` at ``commit``; ``blobs`` adds each
        sibling's size, blob id and LFS metadata (``files_metadata=True``)."""
        files = commit.files
        card = card_metadata(self.store.small_content(files.get("README.md")))
        document: dict[str, Any] = {
            "_id": repo.object_id,
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.id,
            "lastModified": iso(repo.head().date),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": 0,
        }
        meta = card or {}
        card_tags = [str(t) for t in meta.get("tags") or [] if t is not None]
        license_ = meta.get("license")
        license_tags = [f"license:{license_}"] if license_ else []
        if repo.repo_type == "model":
            document["modelId"] = repo.repo_id
            config = self._config(files.get("config.json"))
            library, pipeline = meta.get("library_name"), meta.get("pipeline_tag")
            if library:
                document["library_name"] = library
            if pipeline:
                document["pipeline_tag"] = pipeline
            tags = [
                *card_tags,
                *([library] if library else []),
                *(["safetensors"] if any(p.endswith(".safetensors") for p in files) else []),
                *([config["model_type"]] if config and config.get("model_type") else []),
                *([pipeline] if pipeline else []),
                *(["custom_code"] if config and config.get("auto_map") else []),
                *license_tags,
                "region:us",
            ]
            if config is not None:
                document["config"] = config
            parameters = self._safetensors(commit)
            if parameters:
                document["safetensors"] = {
                    "parameters": parameters,
                    "total": sum(parameters.values()),
                }
            document["spaces"] = []
        else:
            tags = [*card_tags, *license_tags, "region:us"]
        document["tags"] = list(dict.fromkeys(str(t) for t in tags))
        if card is not None:
            document["cardData"] = card
        document["siblings"] = [_sibling(path, files[path], blobs) for path in sorted(files)]
        document["createdAt"] = iso(repo.created_at)
        document["usedStorage"] = sum(s.size for s in files.values())
        return document

    def search_item(
        self,
        document: dict[str, Any],
        *,
        expand: list[str],
        full: bool,
        card_data: bool,
        config: bool,
    ) -> dict[str, Any]:
        """A search result: the keys the query asks for out of ``document``."""
        if expand:
            keys = {"_id", "id", *expand}
        else:
            keys = set(LIST_KEYS | FULL_KEYS) if full else set(LIST_KEYS)
        if card_data:
            keys.add("cardData")
        if config:
            keys.add("config")
        item = {k: v for k, v in document.items() if k in keys}
        if "siblings" in item:
            item["siblings"] = [{"rfilename": s["rfilename"]} for s in item["siblings"]]
        return item

    def entry(self, repo: Repo, commit: Commit, path: str, *, expand: bool) -> dict[str, Any]:
        """A tree listing's entry for a file or folder of ``commit``."""
        stored = commit.files.get(path)
        entry: dict[str, Any]
        if stored is not None:
            entry = {"type": "file", "oid": stored.oid, "size": stored.size, "path": path}
            if stored.lfs:
                entry["lfs"] = {
                    "oid": stored.sha256,
                    "size": stored.size,
                    "pointerSize": stored.pointer_size,
                }
        else:
            entry = {"type": "directory", "oid": commit.folders[path], "size": 0, "path": path}
        if expand:
            last = last_commit(repo, commit, path, folder=stored is None)
            entry["lastCommit"] = {"id": last.id, "title": last.title, "date": iso(last.date)}
            if stored is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return entry

    def _config(self, stored: StoredFile | None) -> dict[str, Any] | None:
        data = self.store.small_content(stored)
        if data is None:
            return None
        try:
            config = json.loads(data)
        except ValueError:
            return None
        if not isinstance(config, dict):
            return None
        return {key: config[key] for key in CONFIG_KEYS if key in config}

    def _safetensors(self, commit: Commit) -> dict[str, int]:
        """Parameters per dtype over every ``.safetensors`` file (shards summed)."""
        total: dict[str, int] = {}
        for path, stored in commit.files.items():
            if not path.endswith(".safetensors"):
                continue
            if stored.sha256 not in self._parameters:
                self._parameters[stored.sha256] = self._read_parameters(stored)
            for dtype, count in (self._parameters[stored.sha256] or {}).items():
                total[dtype] = total.get(dtype, 0) + count
        return total

    def _read_parameters(self, stored: StoredFile) -> dict[str, int] | None:
        try:
            if stored.data is not None:
                return safetensors_parameters(io.BytesIO(stored.data))
            with self.store.path(stored.sha256).open("rb") as reader:
                return safetensors_parameters(reader)
        except (OSError, ValueError, TypeError):
            return None


def last_commit(repo: Repo, commit: Commit, path: str, *, folder: bool) -> Commit:
    """The newest commit, from ``commit`` back, that changed ``path``."""

    def value(c: Commit) -> str | None:
        if folder:
            return c.folders.get(path)
        stored = c.files.get(path)
        return stored.oid if stored else None

    history = list(repo.history(commit))
    for current, older in zip(history, [*history[1:], None], strict=True):
        if older is None or value(current) != value(older):
            return current
    return commit


def sort_found(
    found: list[Found], sort: str | None, direction: str | None, order: dict[tuple[str, str], int]
) -> None:
    """The Hub's ``sort`` (descending unless ``direction=1``); newest repos first when
    none is asked for."""
    if sort is None:
        found.sort(key=lambda item: -order[(item[0].repo_type, item[0].repo_id)])
        return
    if sort not in _SORTS:
        raise HubError(400, f"Invalid sort: {sort}")
    found.sort(key=lambda item: item[2][sort], reverse=direction != "1")


def _sibling(path: str, stored: StoredFile, blobs: bool) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": path}
    if blobs:
        sibling["blobId"] = stored.oid
        sibling["size"] = stored.size
        if stored.lfs:
            sibling["lfs"] = {
                "sha256": stored.sha256,
                "size": stored.size,
                "pointerSize": stored.pointer_size,
            }
    return sibling
