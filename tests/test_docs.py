"""The docs: the configuration reference lists every setting, and every page is reachable."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from app.settings import Settings
from app.settings_reference import render

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def environment_variables() -> list[str]:
    """The variable each setting is read from."""
    variables = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variables.append(alias if isinstance(alias, str) else f"RAPPORT_{name.upper()}")
    return variables


def documented_variables(text: str) -> list[str]:
    """The variables named in the first column of the tables of a Markdown page."""
    named = []
    for line in text.splitlines():
        cells = line.strip().split("|")
        if len(cells) < 3 or set(cells[1].strip()) <= set("-: "):
            continue
        named += re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[1])
    return named


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    fenced = False
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^#+ (.*)$", line)):
            found.add(slug(heading[1]))
    return found


def test_the_reference_tables_name_every_setting_once() -> None:
    named = documented_variables(REFERENCE.read_text())
    variables = environment_variables()
    assert len(variables) > 50
    assert sorted(set(named)) == sorted(variables)
    assert [v for v, n in Counter(named).items() if n > 1] == []


def test_the_reference_is_what_rapport_settings_writes() -> None:
    # Edit the descriptions in app/settings.py, then: rapport settings > docs/configuration.md
    assert REFERENCE.read_text() == render()


def test_a_setting_named_only_in_prose_is_not_documented() -> None:
    page = "| variable | default | meaning |\n|---|---|---|\n| `RAPPORT_A` | `1` | `RAPPORT_B` |\n"
    assert documented_variables(page) == ["RAPPORT_A"]
    assert documented_variables("Set `RAPPORT_A` to 1.\n") == []


def test_the_readme_is_a_front_door_linking_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 400
    linked = {target.split("#")[0] for target in _LINK.findall(text)}
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert pages and pages <= linked


def test_every_relative_link_and_anchor_exists() -> None:
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists() or (anchor and anchor not in anchors(goal)):
                broken.append(f"{page.name}: {target}")
    assert broken == []
