"""Readers of our source for tests/test_architecture.py: files per layer, imports, string
constants, function sizes and protocol members, all from `ast` (no project import)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {
    p.stem for p in ROOT.glob("*.py")
}
"""Top-level names that are this repository's: its packages and its scripts."""


def sources(*layers: str) -> Iterator[Path]:
    """Every .py file under the layers, recursively; Alembic migrations are skipped as frozen
    history (they keep old names and match old data, e.g. 0004 backfills `[FORCED` reasons)."""
    for layer in layers:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


@cache
def tree(path: Path) -> ast.Module:
    """The parsed module (cached: several checks walk the same files)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path, node: ast.AST | None = None) -> str:
    """`path:line` relative to the repository root (line 1 for the module itself)."""
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}"


def strings(path: Path) -> Iterator[tuple[ast.AST, str]]:
    """Every string constant of the module, docstrings and f-string parts included."""
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node, node.value


def size(node: ast.stmt) -> int:
    """Lines a statement spans (for a function: from `def` to its last line)."""
    return (node.end_lineno or node.lineno) - node.lineno + 1


def imported_names(path: Path) -> Iterator[tuple[ast.AST, str]]:
    """Every dotted name the module imports, at any depth (inside functions too).

    `from a import b` yields `a.b`, so `from core import errors` reads as `core.errors`;
    relative imports are resolved against the file's package.
    """
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node, f"{module}.{alias.name}"


def under(name: str, package: str) -> bool:
    """Whether a dotted import name falls under a package ("prefect" covers prefect_*)."""
    if package == "prefect":
        top = name.split(".")[0]
        return top == "prefect" or top.startswith("prefect_")
    return name == package or name.startswith(package + ".")


def flow_functions(path: Path) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Functions decorated with `@flow`, `@flow(...)` or `@prefect.flow`."""
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if getattr(target, "id", None) == "flow" or getattr(target, "attr", None) == "flow":
                    yield node
                    break


def functions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, ast.stmt]]:
    """(qualified name, node) of every function and method, nested ones included."""
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield from functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{node.name}", node
            yield from functions(node.body, f"{prefix}{node.name}.")


def protocol_members(*layers: str) -> dict[str, str]:
    """{member name: "Protocol (path:line)"} for every `class X(Protocol)` in the layers."""
    members: dict[str, str] = {}
    for path in sources(*layers):
        for node in ast.walk(tree(path)):
            if not isinstance(node, ast.ClassDef) or not any(
                re.fullmatch(r"(typing\.)?Protocol(\[.*\])?", ast.unparse(b)) for b in node.bases
            ):
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = item.name
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    name = item.target.id
                else:
                    continue
                if not name.startswith("__"):
                    members[name] = f"{node.name} ({where(path, node)})"
    return members


def getattr_names(path: Path) -> Iterator[tuple[ast.AST, str]]:
    """Every `getattr(obj, "name", ...)` with a literal name: (call, name)."""
    for node in ast.walk(tree(path)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            yield node, node.args[1].value
