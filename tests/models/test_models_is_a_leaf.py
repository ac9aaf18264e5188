"""The package arrows go one way: models/ is a leaf, and core/ never imports it.

`models` may import one module of ours, `core.errors` (which imports nothing of ours);
nothing under core/ imports `models`, not even for type checking. Parsed with ast, so
lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("config", "core", "models", "serving", "tasks", "flows", "cli", "tests", "bench")


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (anywhere in it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module or "")
    return found


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _ours(module: str) -> bool:
    return any(_is_within(module, package) for package in OUR_PACKAGES)


def test_no_module_under_core_imports_models() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if _is_within(m, "models"))
        for path in sorted((ROOT / "core").rglob("*.py"))
    }

    assert {path: found for path, found in offenders.items() if found} == {}


def test_models_imports_nothing_of_ours_but_core_errors() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m
            for m in _imports(path)
            if _ours(m) and not _is_within(m, "models") and m != "core.errors"
        )
        for path in sorted((ROOT / "models").rglob("*.py"))
    }

    assert {path: found for path, found in offenders.items() if found} == {}


def test_core_errors_imports_nothing_of_ours() -> None:
    assert sorted(m for m in _imports(ROOT / "core" / "errors.py") if _ours(m)) == []
