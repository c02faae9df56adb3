"""Export the package's model code as the flat folder of modules that ``trust_remote_code=True`` loads.

transformers loads remote code by copying the file named in ``auto_map`` and every file it imports with
``from .name import ...`` into one flat folder (recursively from the Hub; from a local folder, 4.57 copies only the
entry file's own imports, see :func:`_import_indirect_dependencies`). Our model files live in a package and import
with ``from ..layers import ...`` / ``from ..ops import ...``, which that loader cannot follow (it would look for a
file called ``.layers.py``), so ``register_for_auto_class`` + ``save_pretrained`` alone does not give a loadable
repository.

:func:`export_remote_code` walks the import graph of the entry modules (with :mod:`ast`, following every import of
the package, re-exports of package ``__init__`` files included, down to the module that defines each name), writes
one flat copy of each module it reaches, and rewrites those imports to flat ``from .<flat_name> import ...`` lines.
Imports of other libraries are left as they are (transformers' ``check_imports`` checks them at load time). A
module's flat copy does not depend on which modules were the entries, so exports of different entries into one folder
(a model's ``save_pretrained``, then its processor's) agree on every file they share.
"Package" below is the top-level package of the entry modules (``modeling_rrg_mamba`` for the models here).
"""

from __future__ import annotations

import ast
import importlib.util
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceModule:
    """One module of the package: its dotted name, source file, and whether it is a package ``__init__``."""

    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package that relative imports in this module are resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class ImportedName:
    """``from <module> import <name> as <alias>`` after following re-exports to the defining module."""

    module: str
    name: str
    alias: str


def find_source_module(name: str) -> SourceModule:
    """The package module ``name`` (dotted), located without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"{name}: not a Python source module")
    return SourceModule(name=name, path=Path(spec.origin), is_package=spec.submodule_search_locations is not None)


def in_package(module: str, root: str) -> bool:
    """Whether the dotted ``module`` is ``root`` or lies inside it."""
    return module == root or module.startswith(root + ".")


def _import_target(node: ast.ImportFrom, importer: SourceModule, root: str) -> str | None:
    """Dotted module an import refers to, or ``None`` for another library's module."""
    if node.level == 0:
        return node.module if node.module and in_package(node.module, root) else None
    parts = importer.package.split(".")
    if node.level - 1 >= len(parts):
        raise ValueError(f"{importer.path}:{node.lineno}: relative import goes above the package {root}")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class ModuleGraph:
    """Parsed modules of the package ``root`` and the resolution of names they import from each other."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._modules: dict[str, SourceModule] = {}
        self._trees: dict[str, ast.Module] = {}
        self._sources: dict[str, str] = {}
        self._imports: dict[str, list[tuple[ast.ImportFrom, list[ImportedName]]]] = {}

    def module(self, name: str) -> SourceModule:
        if name not in self._modules:
            module = find_source_module(name)
            source = module.path.read_text(encoding="utf-8")
            self._modules[name], self._sources[name] = module, source
            self._trees[name] = ast.parse(source, filename=str(module.path))
        return self._modules[name]

    def source(self, name: str) -> str:
        self.module(name)
        return self._sources[name]

    def tree(self, name: str) -> ast.Module:
        self.module(name)
        return self._trees[name]

    def internal_imports(self, name: str) -> list[tuple[ast.ImportFrom, list[ImportedName]]]:
        """Every import of a package module inside ``name`` (at any depth), with its names resolved."""
        if name not in self._imports:
            self._imports[name] = self._find_internal_imports(name)
        return self._imports[name]

    def _find_internal_imports(self, name: str) -> list[tuple[ast.ImportFrom, list[ImportedName]]]:
        importer = self.module(name)
        found = []
        for node in ast.walk(self.tree(name)):
            if isinstance(node, ast.Import) and any(in_package(alias.name, self.root) for alias in node.names):
                raise ValueError(
                    f"{importer.path}:{node.lineno}: 'import {self.root}...' cannot be exported as remote code; "
                    "use 'from <module> import <name>'"
                )
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _import_target(node, importer, self.root)
            if target is None:
                continue
            names = [
                self.resolve(target, alias.name, alias.asname or alias.name, importer, node) for alias in node.names
            ]
            found.append((node, names))
        return found

    def resolve(self, module: str, name: str, alias: str, importer: SourceModule, node: ast.stmt) -> ImportedName:
        """Follow ``name`` from ``module`` through top-level re-exports to the module that defines it."""
        where = f"{importer.path}:{node.lineno}"
        if name == "*":
            raise ValueError(f"{where}: 'from {module} import *' cannot be exported as remote code; name the imports")
        for statement in self.tree(module).body:
            if not isinstance(statement, ast.ImportFrom):
                continue
            target = _import_target(statement, self.module(module), self.root)
            if target is None:
                continue
            for reexport in statement.names:
                if (reexport.asname or reexport.name) == name:
                    return self.resolve(target, reexport.name, alias, self.module(module), statement)
        package = self.module(module)
        if package.is_package and any(
            (package.path.parent / child).exists() for child in (f"{name}.py", f"{name}/__init__.py")
        ):
            raise ValueError(
                f"{where}: imports the module {module}.{name} itself; import names from it instead "
                "(transformers only copies files imported as 'from .module import name')"
            )
        return ImportedName(module=module, name=name, alias=alias)


def collect_modules(entry_modules: Sequence[str]) -> tuple[ModuleGraph, list[str]]:
    """The entry modules and every module of their package they need, in breadth-first order."""
    if not entry_modules:
        raise ValueError("entry_modules: give at least one module to export")
    graph = ModuleGraph(root=entry_modules[0].split(".")[0])
    order, queue = [], list(dict.fromkeys(entry_modules))
    while queue:
        name = queue.pop(0)
        if name in order:
            continue
        if not in_package(name, graph.root):
            raise ValueError(f"{name}: entry modules must all belong to one package ({graph.root})")
        order.append(name)
        for _, imported in graph.internal_imports(name):
            queue.extend(item.module for item in imported if item.module not in order)
    return graph, order


def flat_module_name(module: str, home_package: str) -> str:
    """File stem of ``module`` in the flat folder.

    Modules of ``home_package`` (the model's own subpackage) keep their names (``modeling_rrg_mamba``,
    ``configuration_rrg_mamba``, ...); the others are named by their path in the package with ``_`` for ``.``
    (``layers_ss2d``, ``ops_selective_scan``, ``layers`` for ``layers/__init__.py``).
    """
    for prefix in (home_package, home_package.split(".")[0]):
        if module.startswith(prefix + "."):
            return module[len(prefix) + 1 :].replace(".", "_")
    raise ValueError(f"{module}: the top-level package itself cannot be exported as remote code")


def _rewrite_imports(
    source: str,
    imports: Sequence[tuple[ast.ImportFrom, list[ImportedName]]],
    flat_names: Mapping[str, str],
    path: Path,
) -> str:
    """``source`` with every package import replaced by one flat ``from .x import ...`` line per defining module."""
    lines = source.splitlines(keepends=True)
    for node, names in sorted(imports, key=lambda item: item[0].lineno, reverse=True):
        indent = lines[node.lineno - 1][: node.col_offset]
        if indent.strip():
            raise ValueError(f"{path}:{node.lineno}: put the import on its own line to export it as remote code")
        by_module: dict[str, list[str]] = defaultdict(list)
        for item in names:
            by_module[item.module].append(item.name if item.name == item.alias else f"{item.name} as {item.alias}")
        statements = [
            f"{indent}from .{flat_names[module]} import {', '.join(parts)}" for module, parts in by_module.items()
        ]
        tail = lines[node.end_lineno - 1][node.end_col_offset :]
        lines[node.lineno - 1 : node.end_lineno] = ["\n".join(statements) + tail]
    return "".join(lines)


def export_remote_code(entry_modules: Sequence[str], folder: str | Path, home_package: str) -> dict[str, str]:
    """Write flat copies of ``entry_modules`` and every package module they import into ``folder``.

    Args:
        entry_modules: dotted names of the modules whose classes ``auto_map`` will name (model, config, processor...).
        folder: the saved model folder.
        home_package: the model's subpackage (e.g. ``modeling_rrg_mamba.rrg_mamba``), whose modules keep their names.

    Returns:
        ``{dotted module name: flat file stem}`` for every module written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the folder to export remote code into does not exist")
    graph, modules = collect_modules(entry_modules)
    flat_names = {module: flat_module_name(module, home_package) for module in modules}
    clashes = defaultdict(list)
    for module, flat in flat_names.items():
        clashes[flat].append(module)
    clashes = {flat: names for flat, names in clashes.items() if len(names) > 1}
    if clashes:
        raise ValueError(f"modules would share a flat file name in the exported folder: {clashes}")
    for module in modules:
        source = _rewrite_imports(
            graph.source(module), graph.internal_imports(module), flat_names, graph.module(module).path
        )
        source += _import_indirect_dependencies(graph, module, flat_names)
        (folder / f"{flat_names[module]}.py").write_text(source, encoding="utf-8")
    return flat_names


def _import_indirect_dependencies(graph: ModuleGraph, entry: str, flat_names: Mapping[str, str]) -> str:
    """Import lines naming every module ``entry`` needs only through other modules.

    From a local folder, transformers 4.57 copies just the files an ``auto_map`` module imports itself (from the Hub
    it follows imports recursively), so each module that ``auto_map`` may name imports all of its dependencies
    directly. Every exported module gets these lines, whether or not it was an entry of this export, so that its flat
    copy is the same in every export. A module reached only through imports inside functions (an optional kernel,
    such as the Triton ones, imported where its library is installed) is imported inside ``try``, as it is optional
    in the package itself.
    """
    direct = {item.module for _, names in graph.internal_imports(entry) for item in names}
    reached: dict[str, tuple[str, bool]] = {}  # module reached from entry -> (a name imported from it, required)
    queue = [(entry, True)]
    while queue:
        module, required = queue.pop(0)
        top_level = {id(node) for node in graph.tree(module).body}
        for node, names in graph.internal_imports(module):
            needed = required and id(node) in top_level
            for item in names:
                if item.module not in reached or (needed and not reached[item.module][1]):
                    reached[item.module] = (item.name, needed)
                    queue.append((item.module, needed))
    indirect = {module: found for module, found in reached.items() if module != entry and module not in direct}
    if not indirect:
        return ""
    lines = []
    for module, (name, required) in indirect.items():
        line = f"from .{flat_names[module]} import {name} as _dependency_{flat_names[module]}  # noqa: E402, F401"
        lines.append(line if required else f"try:\n    {line}\nexcept ImportError:\n    pass")
    return (
        "\n\n# transformers 4.57 copies only the files this module imports itself from a local folder\n"
        + "\n".join(lines)
        + "\n"
    )


__all__ = ["collect_modules", "export_remote_code", "flat_module_name", "in_package"]
