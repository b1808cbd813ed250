"""The Hub's failures as huggingface_hub reads them: a JSON ``{"error": message}`` body,
the message again in ``X-Error-Message`` and, where the Hub sets one, ``X-Error-Code``
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``), which is
what ``hf_raise_for_status`` turns into its own exception types."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "INVALID_CREDENTIALS",
    "HubError",
    "entry_not_found",
    "gated",
    "repo_not_found",
    "revision_not_found",
]

#: The Hub's answer to a token it does not know (any route, public repos too).
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
#: What an anonymous request for a private or missing repo gets (401).
_ANONYMOUS_NOT_FOUND = "Invalid username or password."


class HubError(Exception):
    """Raised by a route: the Hub answers ``status`` with ``message``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def repo_not_found(authenticated: bool) -> HubError:
    """A repo that does not exist or that the caller may not see: 401 without a token
    (the Hub does not tell the two apart), 404 with one."""
    if not authenticated:
        return HubError(401, _ANONYMOUS_NOT_FOUND, code="RepoNotFound")
    return HubError(404, "Repository not found", code="RepoNotFound")


def revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def entry_not_found(path: str, commit: str | None) -> HubError:
    """A path the revision lacks; the answer still names the commit (huggingface_hub
    caches the absence under ``.no_exist/<commit>``)."""
    headers = {"X-Repo-Commit": commit} if commit else None
    return HubError(404, f"{path} does not exist on the Hub", code="EntryNotFound", headers=headers)


def gated(repo_id: str, repo_url: str, authenticated: bool) -> HubError:
    if not authenticated:
        return HubError(
            401,
            f"Access to model {repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in.",
            code="GatedRepo",
        )
    return HubError(
        403,
        f"Access to model {repo_id} is restricted and you are not in the authorized list. "
        f"Visit {repo_url} to ask for access.",
        code="GatedRepo",
    )
