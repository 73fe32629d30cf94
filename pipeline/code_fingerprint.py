"""Fingerprint of the source code behind a result: a module and every project module it imports.

Caches key their entries by this instead of hand-bumped version strings, so editing any function
a stage runs, in its own module or in a helper it reaches through imports, invalidates what that
stage stored, while edits to modules it never imports do not. Imports are found by parsing the
sources (`ast`), never by importing them: imports inside functions count, `if TYPE_CHECKING:`
blocks and third-party modules do not (library versions are recorded beside results instead).

Modules loaded by name at run time (the model and extractor registries) cannot be seen in the
source, so callers name them: `code_fingerprint(__name__, type(extractor).__module__)`.

A module is compared by its syntax tree, so comments and formatting do not invalidate caches but
any change to code, constants or docstrings does.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.env import PROJECT_PACKAGES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = frozenset(PROJECT_PACKAGES)


@dataclass(frozen=True)
class _Parsed:
    tree_digest: str
    imports: tuple[str, ...]  # absolute dotted names, candidates that may not all be modules


_PARSED: dict[tuple[str, str], _Parsed] = {}  # (module name, sha256 of its bytes) -> parse; per process


def code_fingerprint(*modules: str, root: Path | None = None) -> str:
    """Hash of `modules` and every project module they import, transitively (24 hex characters)."""
    root = root or PROJECT_ROOT
    digest = hashlib.sha256()
    for name, parsed in sorted(_closure(modules, root).items()):
        digest.update(f"{name}\0{parsed.tree_digest}\n".encode())
    return digest.hexdigest()[:24]


def module_closure(*modules: str, root: Path | None = None) -> list[str]:
    """The project modules `code_fingerprint(*modules)` covers, sorted (for tests and explanations)."""
    return sorted(_closure(modules, root or PROJECT_ROOT))


def imports_of(name: str, root: Path | None = None) -> tuple[str, ...]:
    """Every dotted name module `name` may load, project or not, as the fingerprint reads them.

    `from a import b` gives both `a` and `a.b` (`b` may be a module or a name inside `a`);
    `module_path` tells which are project modules.
    """
    root = root or PROJECT_ROOT
    path = _source(name, root)
    if path is None:
        raise ValueError(f"{name!r} is not a module under {root}")
    return _parse(name, path).imports


def module_path(name: str, root: Path | None = None) -> Path | None:
    """The source file of project module `name` (a package's `__init__.py`), or None if it is none."""
    return _source(name, root or PROJECT_ROOT)


def _closure(modules: tuple[str, ...], root: Path) -> dict[str, _Parsed]:
    for name in modules:
        if _source(name, root) is None:
            raise ValueError(f"{name!r} is not a module under {root} (packages {', '.join(sorted(PACKAGES))})")
    found: dict[str, _Parsed] = {}
    pending = [name for module in modules for name in _with_parents(module)]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = _source(name, root)
        if path is None:  # `from pkg.mod import function`: the candidate `pkg.mod.function` is no module
            continue
        found[name] = parsed = _parse(name, path)
        pending.extend(n for imported in parsed.imports for n in _with_parents(imported) if n not in found)
    return found


def _with_parents(name: str) -> list[str]:
    """Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _source(name: str, root: Path) -> Path | None:
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parse(name: str, path: Path) -> _Parsed:
    source = path.read_bytes()
    key = (name, hashlib.sha256(source).hexdigest())
    parsed = _PARSED.get(key)
    if parsed is None:
        tree = ast.parse(source, filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        collector = _Imports(package)
        collector.visit(tree)
        parsed = _Parsed(hashlib.sha256(ast.dump(tree).encode()).hexdigest(), tuple(collector.names))
        _PARSED[key] = parsed
    return parsed


class _Imports(ast.NodeVisitor):
    """Every name an `import` or `from ... import` anywhere in a module may load."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: list[str] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # never runs, so never changes a result
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.extend(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        self.names.append(base)
        self.names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
