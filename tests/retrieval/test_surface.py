"""``retrieval.__all__`` is the library's real surface, and every name in it resolves."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import retrieval

ROOT = Path(__file__).resolve().parents[2]


def _imported_from_top(folder: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "retrieval" and not node.level:
                names.update(alias.name for alias in node.names)
    return names


def test_every_exported_name_resolves_to_its_module() -> None:
    assert retrieval.__all__ == sorted(retrieval._MODULE_OF)
    for name in retrieval.__all__:
        module = importlib.import_module(retrieval._MODULE_OF[name])
        assert getattr(retrieval, name) is getattr(module, name)


def test_what_the_service_imports_from_the_top_is_exported() -> None:
    submodules = {path.stem for path in (ROOT / "retrieval").iterdir() if path.suffix == ".py"}
    imported = _imported_from_top("app") - submodules
    assert imported and imported <= set(retrieval.__all__)


def test_the_type_checking_imports_match_the_exports() -> None:
    tree = ast.parse((ROOT / "retrieval" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If))
    declared = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert declared == retrieval._MODULE_OF
