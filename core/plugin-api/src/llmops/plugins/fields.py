"""Markers for settings the core guards when they are changed through the API.

A settings field says what it holds with :data:`typing.Annotated`::

    class Settings(PluginSettings):
        api_url: Annotated[str | None, ToolUrl(credentials=("token",))] = None
        token: SecretStr | None = None
        ui_url: Annotated[str | None, ToolUrl(link=True)] = None
        ca_cert: Annotated[Path | None, ServerPath()] = None

When an admin changes settings through ``PUT /llm-ops/v1/integrations/{name}/config``,
the core refuses (422, nothing stored) a URL that breaks the field's :class:`ToolUrl`
(a scheme it does not declare, a host that is or resolves to a loopback, link-local or
private address the platform's allow-list does not name) and any value for a
:class:`ServerPath` or :class:`OperatorOnly` field; a changed URL clears the secrets its
marker names unless the same request sets them again. Values from the operator's environment
(``LLMOPS_<PLUGIN>__<FIELD>``) are not checked: the machine and its environment are the
operator's. The markers change nothing in validation: the plugin's model validates as
before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

_SCHEME = re.compile(r"^[a-z][a-z0-9.+-]*$")


@dataclass(frozen=True)
class ToolUrl:
    """A setting that is a URL: of a tool the platform or its jobs connect to, or (with
    ``link``) a page the console links to.

    * ``schemes``: the schemes the field takes, lower case; a declared scheme also takes
      its SQLAlchemy driver forms (``postgresql`` takes ``postgresql+psycopg``). A URL
      without a host (``sqlite:///path``, ``file:///path``, a bare path) names something
      on the server's own disk: the API refuses it whatever the schemes, the environment
      sets it.
    * ``credentials``: the secret fields sent to this URL; changing the URL through the
      API clears them unless the same request sets them again, so a stored token never
      reaches a host it was not given for.
    * ``link``: a URL the platform never opens, only shows (a tool's UI): only its scheme
      and host's presence are checked.
    * ``bucket_schemes``: schemes whose host names a bucket or container of a cloud
      store (``s3://bucket/key``), not a machine: their host is not resolved.
    * ``bare_address``: the field also takes ``host:port`` without a scheme (Ray's
      cluster address).
    """

    schemes: tuple[str, ...] = ("http", "https")
    credentials: tuple[str, ...] = ()
    link: bool = False
    bucket_schemes: tuple[str, ...] = ()
    bare_address: bool = False

    def __post_init__(self) -> None:
        if not self.schemes:
            raise ValueError("a ToolUrl takes at least one scheme")
        for scheme in (*self.schemes, *self.bucket_schemes):
            if not _SCHEME.match(scheme):
                raise ValueError(f"{scheme!r} is not a lower-case URL scheme")
        stray = sorted(set(self.bucket_schemes) - set(self.schemes))
        if stray:
            raise ValueError(f"bucket schemes not among the schemes: {', '.join(stray)}")
        if self.link and self.credentials:
            raise ValueError("a link is never opened by the platform: it has no credentials")


@dataclass(frozen=True)
class OperatorOnly:
    """A setting only the operator's environment sets (``LLMOPS_<PLUGIN>__<FIELD>``):
    through the API an admin key is refused (422), ``null`` still removes a stored value.
    For settings that widen what user code may reach on the server (the local executor's
    sandbox, the server variables its stages inherit). ``reason`` says why, in the
    refusal."""

    reason: str = "it changes what runs on the server"


@dataclass(frozen=True)
class ServerPath(OperatorOnly):
    """A setting that names a file or folder on the server (a kubeconfig, a CA bundle, a
    folder the plugin serves from). Only the operator's environment sets it: through the
    API an admin key could otherwise make the plugin read any file the server can (a
    kubeconfig's ``exec`` entry even runs a command). ``null`` through the API still
    removes a stored value."""

    reason: str = "a path on the server"


def _marker(model: type[BaseModel], name: str, kind: type[Any]) -> Any:
    for item in model.model_fields[name].metadata:
        if isinstance(item, kind):
            return item
    return None


def url_fields(model: type[BaseModel]) -> dict[str, ToolUrl]:
    """The fields of ``model`` marked :class:`ToolUrl`, with their markers."""
    found = {name: _marker(model, name, ToolUrl) for name in model.model_fields}
    return {name: marker for name, marker in found.items() if marker is not None}


def server_path_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` marked :class:`ServerPath`."""
    return frozenset(n for n in model.model_fields if _marker(model, n, ServerPath) is not None)


def operator_only_fields(model: type[BaseModel]) -> dict[str, str]:
    """The fields of ``model`` marked :class:`OperatorOnly` (:class:`ServerPath`
    included), with the reason each gives."""
    found = {name: _marker(model, name, OperatorOnly) for name in model.model_fields}
    return {name: marker.reason for name, marker in found.items() if marker is not None}


def check_markers(model: type[BaseModel]) -> None:
    """Raise ``ValueError`` when a :class:`ToolUrl` of ``model`` names a credential that
    is not a field of it (a typo would leave the token in place when the URL changes)."""
    for name, marker in url_fields(model).items():
        missing = sorted(set(marker.credentials) - set(model.model_fields))
        if missing:
            raise ValueError(
                f"{model.__name__}.{name}: credentials name no field: {', '.join(missing)}"
            )
