"""The one place that says what text the API stores: names, descriptions, categories, ids.

Control characters are refused everywhere (PostgreSQL cannot store NUL, and
SQLite would store what PostgreSQL refuses: both now answer 422 alike);
descriptions may keep tabs and line breaks. A concept name must show a letter
or digit once normalised (NFKC) and may not hide format characters
(zero-width spaces, direction marks), which made invisible or look-alike names.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

# The control characters, as the body of a regex character class (the one spelling).
CONTROL_CHARS = r"\x00-\x1f\x7f"
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CONTROL_FREE = f"^[^{CONTROL_CHARS}]*$"  # for path and query parameters' patterns


def no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def no_control_but_lines(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise ValueError("control characters other than tab and line breaks are not allowed")
    return value


def concept_name(value: str) -> str:
    no_control(value)
    if any(unicodedata.category(char) == "Cf" for char in value):
        raise ValueError("invisible format characters (e.g. zero-width spaces) are not allowed")
    if not any(char.isalnum() for char in unicodedata.normalize("NFKC", value)):
        raise ValueError("a name needs at least one letter or digit")
    return value


NameText = Annotated[str, AfterValidator(concept_name)]
DescriptionText = Annotated[str, AfterValidator(no_control_but_lines)]
PlainText = Annotated[str, AfterValidator(no_control)]

# A concept's fields as the API and the importer accept them. A name needs a character
# other than spaces and the <> that may wrap it ("<bo>").
VISIBLE = r"[^\s<>]"
Name = Annotated[NameText, Field(min_length=1, max_length=100, pattern=VISIBLE)]
Description = Annotated[DescriptionText, Field(max_length=4000)]
Category = Annotated[PlainText, Field(max_length=50)]
