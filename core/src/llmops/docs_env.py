"""Reference pages generated from the code, so they cannot drift from it.

* :func:`render_environment` is ``docs/environment.md``: every field of the core's
  :class:`~llmops.config.CoreSettings` (``LLMOPS_<FIELD>``) and of each shipped plugin's
  settings model (``LLMOPS_<PLUGIN>__<FIELD>``), found through the plugin's
  ``llmops_plugin_info().settings_model``; ``llmops docs env -o docs/environment.md``.
* :func:`render_endpoints` is ``docs/api/endpoints.md``: every route of the core's OpenAPI
  document (``create_app(...).openapi()``, as ``llmops openapi`` builds it) with the role
  the access policy asks of it; ``llmops docs api -o docs/api/endpoints.md``.

``tests/test_docs_reference.py`` compares the committed pages with these functions.
A secret's default is never printed. Plugins are imported by their entry point's module
(the core imports no plugin package by name).
"""

from __future__ import annotations

import enum
import importlib
import json
import tempfile
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llmops.config import CoreSettings, default_data_dir
from llmops.plugins.discovery import ENTRY_POINT_GROUP, installed_plugins

#: The plugins that ship with the platform (``llmops-core``'s built-in ``local`` and the
#: workspace's ``plugins/*``), in the order the page lists them. Third-party plugins
#: document their own settings.
SHIPPED_PLUGINS = ("local", "mlflow", "rayserve", "kserve", "argo", "hf", "dvc")

ENV_COMMAND = "llmops docs env -o docs/environment.md"
API_COMMAND = "llmops docs api -o docs/api/endpoints.md"

#: Defaults computed from the machine: described, not printed (the page must be the same
#: on every machine).
_FACTORY_DEFAULTS: dict[Callable[..., Any], str] = {
    default_data_dir: "`$XDG_DATA_HOME/llmops`, else `~/.local/share/llmops`",
}


@dataclass(frozen=True)
class SettingDoc:
    """One setting as the environment reference shows it."""

    field: str
    env: str
    type: str
    default: str
    description: str
    secret: bool
    environment_only: str | None = None


# -- settings ----------------------------------------------------------------------------


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(json.dumps(member.value) for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _constraints(info: FieldInfo) -> list[str]:
    found: list[str] = []
    for item in info.metadata:
        for attribute, sign in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{sign} {_plain(value)}")
        for attribute, word in (("min_length", "min length"), ("max_length", "max length")):
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{word} {value}")
    return found


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value == value and abs(value) < 1e15 else repr(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value) if value == "" else value
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _default(info: FieldInfo, secret: bool) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        described = _FACTORY_DEFAULTS.get(info.default_factory)
        if described is not None:
            return described
        if secret:
            return "(secret, not shown)"
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
        if value is PydanticUndefined:
            return "required"
    if value is None:
        return "unset"
    if secret:
        return "(secret, not shown)"
    return f"`{_plain(value)}`"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|").replace("<", "\\<")


def settings_docs(
    model: type[BaseModel], env_prefix: str, *, environment_only: dict[str, str] | None = None
) -> list[SettingDoc]:
    """Every field of ``model``, its variable being ``env_prefix`` + the field's name."""
    docs = []
    for name, info in model.model_fields.items():
        secret = _is_secret(info.annotation)
        kind = _type_name(info.annotation)
        bounds = _constraints(info)
        if bounds:
            kind += f" ({', '.join(bounds)})"
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        docs.append(
            SettingDoc(
                field=name,
                env=(alias or f"{env_prefix}{name}").upper(),
                type=kind,
                default=_default(info, secret),
                description=_one_line(info.description),
                secret=secret,
                environment_only=(environment_only or {}).get(name),
            )
        )
    return docs


def core_settings_docs() -> list[SettingDoc]:
    prefix = str(CoreSettings.model_config.get("env_prefix", "LLMOPS_"))
    return settings_docs(CoreSettings, prefix)


@dataclass(frozen=True)
class PluginDoc:
    name: str
    display_name: str
    module: str
    model: type[BaseModel]
    settings: list[SettingDoc]


def plugin_docs(names: Iterable[str] = SHIPPED_PLUGINS) -> list[PluginDoc]:
    """Each plugin's settings, read from its ``llmops_plugin_info().settings_model``.
    Raises ``LookupError`` naming a plugin that is not installed."""
    from llmops.plugins.fields import operator_only_fields

    modules = {plugin.name: plugin.target for plugin in installed_plugins()}
    found = []
    for name in names:
        target = modules.get(name)
        if target is None:
            raise LookupError(
                f"the plugin {name!r} is not installed (no {ENTRY_POINT_GROUP} entry point)"
            )
        module_name = target.split(":", 1)[0]
        info = importlib.import_module(module_name).llmops_plugin_info()
        model = info.settings_model
        found.append(
            PluginDoc(
                name=info.name,
                display_name=info.display_name,
                module=f"{model.__module__}.{model.__qualname__}",
                model=model,
                settings=settings_docs(
                    model,
                    f"LLMOPS_{info.name.upper()}__",
                    environment_only=operator_only_fields(model),
                ),
            )
        )
    return found


def missing_descriptions() -> list[str]:
    """The variables, core and shipped plugins', whose field has no description."""
    every = core_settings_docs() + [s for p in plugin_docs() for s in p.settings]
    return [s.env for s in every if not s.description]


def _settings_table(settings: list[SettingDoc], *, plugin: bool) -> list[str]:
    lines = [
        "| variable | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for s in settings:
        notes = []
        if s.secret:
            notes.append(
                "**Secret**: never returned by the API" + (", stored encrypted." if plugin else ".")
            )
        if s.environment_only is not None:
            notes.append(f"**Environment only** ({_one_line(s.environment_only)}).")
        text = " ".join([s.description or "(no description)", *notes])
        kind = s.type.replace("|", "\\|")
        lines.append(f"| `{s.env}` | `{kind}` | {s.default} | {text} |")
    return lines


def render_environment() -> str:
    """The text of ``docs/environment.md``."""
    out = [
        "# Environment reference",
        "",
        f"<!-- Generated by `{ENV_COMMAND}` from the settings models; do not edit. -->",
        "",
        "Every setting the platform reads from the environment, generated from the code:",
        "the core's `llmops.config.CoreSettings` and the settings model each shipped",
        "plugin names in `llmops_plugin_info().settings_model`. `tests/test_docs_reference.py`",
        "fails when this page and the code differ; regenerate it with",
        f"`{ENV_COMMAND}`.",
        "",
        "* **Core settings** are `LLMOPS_<FIELD>` (upper case), read by pydantic-settings",
        "  when the process starts.",
        "* **Plugin settings** are `LLMOPS_<PLUGIN>__<FIELD>` (a double underscore). A value",
        "  that starts with `[` or `{` is read as JSON (lists, maps). They are overlaid by the",
        "  configuration an admin stores through the API (`PUT",
        "  /llm-ops/v1/integrations/{name}/config`, or Admin → Integrations in the console),",
        "  except the fields marked *environment only*, which the API refuses. Variables a",
        "  plugin has no setting for are ignored, with a warning in the log.",
        "* **Secrets** (`SecretStr` fields) never have their default or value printed here,",
        "  by the API or in the logs; a plugin's secrets are stored encrypted with",
        "  `LLMOPS_SECRET_KEY` (`docs/security.md`).",
        "",
        "## Core (`llmops.config.CoreSettings`)",
        "",
        *_settings_table(core_settings_docs(), plugin=False),
    ]
    for plugin in plugin_docs():
        out += [
            "",
            f"## {plugin.display_name}: `{plugin.name}` (`{plugin.module}`)",
            "",
            *_settings_table(plugin.settings, plugin=True),
        ]
    return "\n".join(out) + "\n"


# -- the API's routes ---------------------------------------------------------------------

_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def openapi_document() -> dict[str, Any]:
    """The core API's OpenAPI document, as ``llmops openapi`` prints it (no plugin routes);
    built on a scratch data dir, so nothing of the machine's leaks into it."""
    from llmops.api.app import create_app

    with tempfile.TemporaryDirectory(prefix="llmops-docs-") as scratch:
        settings = CoreSettings(data_dir=Path(scratch))
        document: dict[str, Any] = create_app(settings, start_worker=False).openapi()
    return document


def render_endpoints(document: dict[str, Any] | None = None) -> str:
    """The text of ``docs/api/endpoints.md``: every route of ``document`` (default: the
    core's), with the role the access policy (``llmops.auth.rule_for``) asks of it."""
    from llmops.auth import rule_for

    document = openapi_document() if document is None else document
    info = document.get("info", {})
    rows: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tags = operation.get("tags") or ["other"]
            role = rule_for(method.upper(), path).role
            who = "public" if role is None else role.value
            summary = _one_line(operation.get("summary") or operation.get("operationId"))
            operation_id = operation.get("operationId", "")
            rows.setdefault(tags[0], []).append(
                f"| `{method.upper()}` | `{path}` | {summary} | {who} | `{operation_id}` |"
            )
    count = sum(len(r) for r in rows.values())
    out = [
        "# API endpoints",
        "",
        f"<!-- Generated by `{API_COMMAND}` from the OpenAPI document; do not edit. -->",
        "",
        f"Every route of the core API ({info.get('title', 'llmops')} {info.get('version', '')},"
        f" {count} operations), generated from the OpenAPI document that",
        "`llmops.api.app.create_app` builds (`llmops openapi` prints it; a running server",
        "serves it at `/openapi.json` and browses it at `/docs`). Plugins' own routes are",
        "not listed: they are in the running server's document. *Role* is the least role",
        "an API key needs (`llmops.auth.rule_for`; `public` needs no key); a training",
        "job's own token may call only its job's routes. Errors are problem+json",
        "(`api/errors.py`); see `docs/api/README.md`.",
        "",
        "`tests/test_docs_reference.py` fails when this page and the code differ;",
        f"regenerate it with `{API_COMMAND}`.",
    ]
    for tag in sorted(rows):
        out += [
            "",
            f"## {tag}",
            "",
            "| method | path | summary | role | operationId |",
            "| --- | --- | --- | --- | --- |",
            *rows[tag],
        ]
    return "\n".join(out) + "\n"
