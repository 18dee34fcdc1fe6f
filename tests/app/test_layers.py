"""The folders of app/ are layers, and imports only point down: a test of the layout.

http → usecases → storage / domain, and retrieval (the library) never imports app/ or a
web or SQL framework. Two checks: what each module's own import statements name, lazy
ones (inside functions, under TYPE_CHECKING) included; and what importing every module
of a layer really loads, in a fresh interpreter, through whatever chain.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Imports the given modules in a fresh interpreter; prints what was loaded beyond the start.
_LOADER = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(names: list[str]) -> list[str]:
    """The modules that importing ``names`` loads, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


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


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_loads_nothing_above_it(package: str) -> None:
    # Alembic's migration scripts run only inside Alembic: they are not imported here.
    names = [module_name(path) for path in modules(package) if "migrations" not in path.parts]
    assert names
    loaded = loaded_by(names)
    assert set(names) <= set(loaded)  # every module of the layer was really imported
    wrong = sorted(name for name in loaded for prefix in FORBIDDEN[package] if within(name, prefix))
    assert not wrong, f"importing {package} loads " + ", ".join(wrong)


def test_the_loader_sees_a_module_loaded_through_a_chain() -> None:
    # email.message loads email.charset (and more) by itself: a chain, not a direct import.
    assert "email.charset" in loaded_by(["email.message"])


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app.http.errors import render\n")
    assert any(within(name, "app.http") for name in imported(module))
