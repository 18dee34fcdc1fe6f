"""The folders of app/ are layers, and imports only point down: a test of the layout.

http → usecases → storage / domain, and retrieval (the library) never imports app/ or a
web or SQL framework. Lazy imports (inside functions, under TYPE_CHECKING) count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Package -> module prefixes it must not import.
FORBIDDEN = {
    "retrieval": ("app", "fastapi", "starlette", "sqlalchemy", "pydantic_settings", "uvicorn"),
    "app.domain": (
        "app.http",
        "app.security",
        "app.storage",
        "app.usecases",
        "app.services",
        "fastapi",
        "starlette",
        "sqlalchemy",
    ),
    "app.storage": ("app.http", "app.usecases", "app.security", "fastapi", "starlette"),
    "app.usecases": ("app.http", "fastapi", "starlette"),
}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_only_point_down(package: str) -> None:
    files = modules(package)
    assert files, f"no modules under {package}"
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported(path)
        for prefix in FORBIDDEN[package]
        if within(name, prefix)
    }
    assert not wrong, "\n".join(sorted(wrong))


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app.http.errors import render\n")
    assert any(within(name, "app.http") for name in imported(module))
