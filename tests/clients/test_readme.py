"""README's "From Python" example runs as printed, against a served rapport."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import rapport_client as rc

from tests import factories
from tests.clients.conftest import REPLY
from tests.conftest import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def from_python_example() -> str:
    section = README.read_text().split("### From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_example_registers_retrieves_streams_and_handles_errors(
    live: LiveServer, tmp_path: Path
) -> None:
    for name, index in (("bo1", 0), ("bo2", 1), ("bo3", 2), ("new", 4)):
        (tmp_path / f"{name}.jpg").write_bytes(factories.photo("dog", index))
    example = from_python_example().replace("http://127.0.0.1:8000", live.url)
    assert example != from_python_example()
    outputs = []
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for _ in range(2):  # the second run finds <bo> taken
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(example, "README.md", "exec"), {"KEY": live.new_key("acme")})
            outputs.append(printed.getvalue())
    finally:
        os.chdir(cwd)
    first, second = outputs
    assert first.startswith("[Match(") and "name='<bo>'" in first
    assert first.endswith("".join(REPLY))
    assert second.startswith("409 Concept name already used")


def test_the_client_readme_lists_every_method_of_both_clients() -> None:
    table = (README.parent / "clients" / "python" / "README.md").read_text()
    listed = set(re.findall(r"`([a-z_]+)`", table.split("| area |", 1)[1]))
    methods = {name for name in dir(rc.Rapport) if not name.startswith("_")} - {"close"}
    assert methods <= listed, methods - listed
    assert listed - {"progress", "timeout"} <= methods
    assert methods <= set(dir(rc.AsyncRapport))
