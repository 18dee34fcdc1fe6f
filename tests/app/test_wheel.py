"""A non-editable install: the built wheel carries what the CLI needs, migrations included."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_wheel_installed_in_a_fresh_venv_migrates_and_makes_keys(tmp_path: Path) -> None:
    # Built from a copy, so the checkout gets no build/ or egg-info folders.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("app", "retrieval"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheels,
            source,
        ]
    )
    [wheel] = wheels.glob("rapport-*.whl")

    # A fresh venv that sees this one's packages (torch and the rest) without reinstalling
    # them; rapport itself comes only from the wheel.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    [packages] = (venv / "lib").glob("python3*/site-packages")
    (packages / "shared.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            # This venv's rapport (editable) is visible there too: install beside it,
            # never uninstall it.
            "--ignore-installed",
            wheel,
        ]
    )

    assert "Successfully installed rapport" in installed.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAPPORT_", "PYTHON"))}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = run([python, "-c", "import app; print(app.__file__)"], env=env, cwd=workdir)
    assert where.stdout.strip().startswith(str(packages))
    rapport = venv / "bin" / "rapport"
    upgraded = run([rapport, "db", "upgrade"], env=env, cwd=workdir)
    assert "Traceback" not in upgraded.stderr
    created = run([rapport, "keys", "create", "--tenant", "acme"], env=env, cwd=workdir)
    assert created.stdout.startswith("rk_")
    assert (workdir / "rapport-data" / "rapport.db").is_file()
    listed = run([rapport, "keys", "list", "--tenant", "acme"], env=env, cwd=workdir)
    assert created.stdout.split("_")[1] in listed.stdout
