"""The client installs alone (httpx and pydantic from the package index) and imports
nothing of the server: no torch, no FastAPI, no PIL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import factories
from tests.conftest import LiveServer

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
SERVER_SIDE = ["torch", "fastapi", "PIL", "numpy", "app", "retrieval", "sqlalchemy"]
PROBE = f"""
import json, sys
import rapport_client
print(json.dumps([name for name in {SERVER_SIDE!r} if name in sys.modules]))
"""


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    # In this environment torch, FastAPI and PIL are installed: only the client can keep
    # them out of sys.modules.
    loaded = run([sys.executable, "-c", PROBE], env={"PYTHONPATH": str(CLIENT)})
    assert json.loads(loaded.stdout) == []


def test_the_client_installed_alone_in_a_fresh_venv_talks_to_a_server(
    tmp_path: Path, live: LiveServer
) -> None:
    # Built from a copy, so that the checkout gets no build/ or egg-info folders.
    source = tmp_path / "source"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source])
    [wheel] = wheels.glob("rapport_client-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # Its dependencies come from the package index, as for any user.
    run([*pip, "--python", python, "install", "-q", "--disable-pip-version-check", wheel])

    listed = run([*pip, "--python", python, "list", "--format", "json"])
    names = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert {"rapport-client", "httpx", "pydantic"} <= names
    assert not names & {"torch", "fastapi", "pillow", "numpy", "rapport"}

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert json.loads(run([python, "-c", PROBE], cwd=workdir, env={}).stdout) == []

    photo = tmp_path / "bo.jpg"
    photo.write_bytes(factories.photo("dog", 0))
    script = f"""
import importlib.metadata, json, rapport_client
assert rapport_client.__version__ == importlib.metadata.version("rapport-client")
with rapport_client.Rapport({live.url!r}, {live.new_key("acme")!r}) as api:
    bo = api.create_concept("alice", "<bo>", [{str(photo)!r}] * 3)
    found = api.retrieve("alice", {str(photo)!r}, min_score=-1.0)
    try:
        api.get_concept("alice", "0" * 26)
    except rapport_client.NotFound as error:
        missing = error.status
print(json.dumps([bo.id, [m.concept.id for m in found.matches], missing]))
"""
    concept_id, matched, missing = json.loads(run([python, "-c", script], cwd=workdir).stdout)
    assert matched == [concept_id] and missing == 404
