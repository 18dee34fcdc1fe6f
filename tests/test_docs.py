"""The README documents every setting an operator can set."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_named_in_the_readme() -> None:
    text = README.read_text()
    variables = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variables.append(alias if isinstance(alias, str) else f"RAPPORT_{name.upper()}")
    assert len(variables) > 50
    assert [v for v in variables if f"`{v}`" not in text] == []
