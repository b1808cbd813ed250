"""docs/plugins/hooks.md stays in step with llmops.hookspecs.

Each hook has one section whose heading is its exact signature, ``## name(a, b)``; the
section describes every parameter and the calling rule, and its Python example registers
against the real hook specs.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmops import hookspecs
from llmops.plugins.discovery import make_plugin_manager

HOOKS_MD = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "hooks.md"

_HEADING = re.compile(r"^##\s+(?P<title>.+?)\s*$")
_SIGNATURE = re.compile(r"^(?P<name>llmops_\w+)\((?P<params>[^()]*)\)$")
_FENCE = re.compile(r"^(```|~~~)(?P<lang>\w*)")


@dataclass
class Section:
    title: str
    name: str
    params: list[str] | None  # None when the heading is not a well-formed signature
    body: str
    examples: list[str]


def parse_hook_sections(text: str) -> list[Section]:
    """The ``## llmops_...`` sections of the markdown, ignoring fenced code."""
    sections: list[Section] = []
    current: Section | None = None
    fence: str | None = None
    language = ""
    code: list[str] = []
    for line in text.splitlines():
        if current is not None and (fence is not None or not _HEADING.match(line)):
            current.body += line + "\n"
        if fence is not None:
            if line.startswith(fence):
                if current is not None and language == "python":
                    current.examples.append("\n".join(code))
                fence = None
            else:
                code.append(line)
            continue
        opened = _FENCE.match(line)
        if opened is not None:
            fence, language, code = opened.group(1), opened["lang"], []
            continue
        heading = _HEADING.match(line)
        if heading is not None:
            title = heading["title"]
            current = None
            if title.startswith("llmops_"):
                signature = _SIGNATURE.match(title)
                params = None
                if signature is not None:
                    params = [p.strip() for p in signature["params"].split(",") if p.strip()]
                name = signature["name"] if signature else re.split(r"\W", title, maxsplit=1)[0]
                current = Section(title, name, params, "", [])
                sections.append(current)
    return sections


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    """Every function of llmops.hookspecs that carries the hookspec marker."""
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "llmops_spec")
    }


SPECS = hookspec_functions()
SECTIONS = parse_hook_sections(HOOKS_MD.read_text(encoding="utf-8"))


def section_for(hook: str) -> Section:
    found = [s for s in SECTIONS if s.name == hook]
    if not found:
        pytest.fail(f"docs/plugins/hooks.md has no section for {hook}")
    return found[0]


# -- the parser itself -------------------------------------------------------------------


def test_the_parser_reads_signature_headings_and_skips_code_fences() -> None:
    text = (
        "# Hooks\n## llmops_a(settings, context)\ntext\n```python\n## llmops_fake()\nx = 1\n```\n"
        "## llmops_b()\n## llmops_c(oops\n## Not a hook\n"
    )
    sections = parse_hook_sections(text)
    assert [(s.name, s.params) for s in sections] == [
        ("llmops_a", ["settings", "context"]),
        ("llmops_b", []),
        ("llmops_c", None),
    ]
    assert sections[0].examples == ["## llmops_fake()\nx = 1"]


def test_the_hookspecs_module_has_hooks_to_document() -> None:
    assert "llmops_plugin_info" in SPECS
    assert "llmops_tracking" in SPECS


# -- the reference against the specs -----------------------------------------------------


def test_every_hookspec_has_a_section_in_hooks_md() -> None:
    documented = {s.name for s in SECTIONS}
    missing = sorted(set(SPECS) - documented)
    assert not missing, f"hooks without a section in {HOOKS_MD.name}: {missing}"


def test_every_documented_hook_exists_in_hookspecs() -> None:
    unknown = sorted({s.name for s in SECTIONS} - set(SPECS))
    assert not unknown, f"{HOOKS_MD.name} documents hooks that no longer exist: {unknown}"


def test_every_hook_is_documented_once() -> None:
    names = [s.name for s in SECTIONS]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_hook_headings_are_exact_signatures() -> None:
    malformed = [s.title for s in SECTIONS if s.params is None]
    assert not malformed, f"headings that are not `name(param, ...)`: {malformed}"


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_documented_parameters_match_the_hookspec_signature(hook: str) -> None:
    expected = list(inspect.signature(SPECS[hook]).parameters)
    section = section_for(hook)
    assert section.params == expected, (
        f"heading `## {section.title}` should be `## {hook}({', '.join(expected)})`"
    )


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_each_section_describes_its_parameters_return_and_calling_rule(hook: str) -> None:
    section = section_for(hook)
    for param in inspect.signature(SPECS[hook]).parameters:
        assert f"`{param}`" in section.body, f"{hook}: parameter {param} is not described"
    assert "**Returns:**" in section.body, f"{hook}: no **Returns:**"
    assert "**Calling rule:**" in section.body, f"{hook}: no **Calling rule:**"


@pytest.mark.parametrize("hook", sorted(SPECS))
def test_each_section_example_registers_against_the_hookspecs(hook: str) -> None:
    section = section_for(hook)
    assert section.examples, f"{hook}: the section has no ```python example"
    module = types.ModuleType(f"hooks_md_example_{hook}")
    for number, example in enumerate(section.examples):
        exec(compile(example, f"{HOOKS_MD.name}:{hook}:{number}", "exec"), module.__dict__)
    pm = make_plugin_manager()
    pm.register(module, name="example")  # refuses parameter names the spec does not have
    pm.check_pending()  # refuses implementations of hooks that do not exist
    implemented = {caller.name for caller in pm.get_hookcallers(module) or []}
    assert hook in implemented, f"{hook}: the example does not implement it"
