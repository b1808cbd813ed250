"""The plugin boundary, checked from the source: who may import what, and no circles.

The rules (docs/plugins/writing-a-plugin.md, "The boundary"):

* a plugin imports only the plugin API (the modules of llmops-plugin-api) of llmops;
* the plugin API imports nothing of the server (llmops-core's modules);
* plugins never import each other;
* no import circles, within the core or within a plugin.

Every ``import`` statement counts, in functions too; imports under ``if TYPE_CHECKING:``
do not, since they never run. The check reads files with :mod:`ast` and imports nothing,
so it also runs on a tree that would not import. A plugin's own tests may use it::

    from llmops.testing.boundary import check_plugin

    def test_the_plugin_imports_only_the_plugin_api() -> None:
        assert check_plugin(Path(__file__).parents[1] / "src") == []
"""

from __future__ import annotations

import ast
import importlib.metadata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Import",
    "ModuleTree",
    "Violation",
    "check",
    "check_plugin",
    "find_cycles",
    "installed_plugin_api",
    "scan",
]

CORE = "llmops"


@dataclass(frozen=True)
class Import:
    """One import statement that runs: ``importer`` imports ``imported`` at ``line``."""

    importer: str
    imported: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


ImportNode = ast.Import | ast.ImportFrom


class ModuleTree:
    """The modules found under source roots (``src`` folders), by dotted name.

    Each file is read and parsed once, on the first :meth:`imports` of its module; trees
    given the same ``parsed`` cache share it.
    """

    def __init__(
        self, roots: Iterable[Path], *, parsed: dict[Path, list[ImportNode]] | None = None
    ) -> None:
        self.parsed = parsed if parsed is not None else {}
        self.files: dict[str, Path] = {}
        for root in roots:
            for path in sorted(root.rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if parts and all(part.isidentifier() for part in parts):
                    self.files[".".join(parts)] = path

    def __contains__(self, module: str) -> bool:
        return module in self.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def is_package(self, module: str) -> bool:
        return self.files[module].name == "__init__.py"

    def imports(self, module: str) -> list[ImportNode]:
        """The import statements of ``module`` that run (not under ``TYPE_CHECKING``)."""
        path = self.files[module]
        if path not in self.parsed:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            self.parsed[path] = list(_import_nodes(tree))
        return self.parsed[path]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ImportNode]:
    """Every import under ``node`` except those in an ``if TYPE_CHECKING:`` body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def scan(tree: ModuleTree, *, known: ModuleTree | None = None) -> list[Import]:
    """The imports of every module in ``tree`` that name a module of ``known`` (default:
    ``tree``) or one of its packages: ``from a.b import c`` names ``a.b.c`` when that is
    a module, else ``a.b``."""
    known = known or tree
    found: list[Import] = []
    for module, path in tree.files.items():
        for node in tree.imports(module):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node, module, tree.is_package(module))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    found.append(Import(module, target, path, node.lineno))
    return found


def find_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """The import circles: strongly connected groups of two or more modules (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(start: str) -> None:
        # iterative Tarjan: the core's graph is deep enough to matter for recursion
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def _cycle_violations(imports: list[Import], where: str) -> list[Violation]:
    return [
        Violation("import circle", f"{where}: {' -> '.join([*cycle, cycle[0]])}")
        for cycle in find_cycles(imports)
    ]


def check(
    *,
    plugin_api: Iterable[Path],
    server: Iterable[Path],
    plugins: Mapping[str, Path],
) -> list[Violation]:
    """Check the whole repository: the plugin API's and the server's source roots, and
    each plugin's source root by its import package name (``llmops_mlflow``)."""
    core = ModuleTree([*plugin_api, *server])
    api = ModuleTree(plugin_api, parsed=core.parsed)
    violations: list[Violation] = []
    for edge in scan(api, known=core):
        if edge.imported not in api:
            violations.append(Violation("plugin API imports the server", str(edge)))
    violations += _cycle_violations(scan(core), CORE)
    for package, root in sorted(plugins.items()):
        violations += check_plugin(root, package=package, plugin_api=api, core=core)
    return violations


def installed_plugin_api() -> ModuleTree:
    """The modules of the installed plugin API: llmops-plugin-api's and the testing kit's
    (llmops-testing), which a plugin's own test helpers may use."""
    tree = _installed("llmops-plugin-api")
    tree.files.update(_installed("llmops-testing").files)
    return tree


def _installed(distribution: str) -> ModuleTree:
    tree = ModuleTree([])
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return tree
    for file in files:
        parts = Path(str(file)).with_suffix("").parts
        if str(file).endswith(".py") and parts and parts[0] == CORE:
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            tree.files[".".join(parts)] = Path(str(file.locate()))
        elif str(file).endswith(".pth"):
            # an editable install lists a .pth naming its source folders, not the modules
            for line in Path(str(file.locate())).read_text(encoding="utf-8").splitlines():
                folder = Path(line.strip())
                if line.strip() and not line.startswith(("#", "import")) and folder.is_dir():
                    found = ModuleTree([folder]).files
                    tree.files.update({m: f for m, f in found.items() if m.split(".")[0] == CORE})
    return tree


def check_plugin(
    root: Path,
    *,
    package: str | None = None,
    plugin_api: ModuleTree | None = None,
    core: ModuleTree | None = None,
) -> list[Violation]:
    """Check one plugin's source root: it imports only the plugin API of llmops, no other
    plugin (``llmops_*``), and has no import circles.

    :param package: the plugin's import package; default: the one package under ``root``.
    :param plugin_api: the plugin API's modules; default: the installed distribution's.
    :param core: every llmops module known, to tell ``from llmops.x import submodule``
        from ``from llmops.x import name``; default: the installed llmops-plugin-api's and
        llmops-core's. Any ``llmops.*`` module outside ``plugin_api`` is a violation.
    """
    own = ModuleTree([root])
    if package is None:
        [package] = {name.split(".")[0] for name in own}
    api = plugin_api if plugin_api is not None else installed_plugin_api()
    if core is None:
        core = _installed("llmops-core")
        core.files.update(api.files)
    violations: list[Violation] = []
    imports = scan(own)
    for path_module, path in own.files.items():
        for node in own.imports(path_module):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [_resolve(node, path_module, own.is_package(path_module))]
            )
            for name in names:
                top = name.split(".")[0]
                edge = Import(path_module, name, path, node.lineno)
                outside = _outside_api(name, node, api, core) if top == CORE else None
                if outside is not None:
                    edge = Import(path_module, outside, path, node.lineno)
                    violations.append(Violation("plugin imports the server", str(edge)))
                elif top.startswith(f"{CORE}_") and top != package:
                    violations.append(Violation("plugin imports another plugin", str(edge)))
    violations += _cycle_violations(imports, package)
    return violations


def _outside_api(name: str, node: ImportNode, api: ModuleTree, known: ModuleTree) -> str | None:
    """The first module this import takes from outside the plugin API: ``name`` itself,
    or for ``from name import x`` a submodule ``name.x``; None when all is the API's."""
    candidates = [name]
    if isinstance(node, ast.ImportFrom):
        candidates += [
            f"{name}.{alias.name}" for alias in node.names if f"{name}.{alias.name}" in known
        ]
    return next((c for c in candidates if c not in api), None)
