"""The settings reference (docs/configuration.md), written from ``Settings``' own fields.

Each row is one field: its variable, its default and its description, so the reference
cannot drift from what the service reads. ``rapport settings`` prints it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic.fields import FieldInfo

from app.settings import Settings

# The field each section starts at; the fields that follow belong to it, in class order.
SECTIONS = {
    "data_dir": "Storage",
    "s3_endpoint_url": "Photo store (S3)",
    "secret_key": "Keys",
    "encoder_family": "Encoder and process",
    "default_top_k": "Retrieval",
    "generator": "Answers: generator and prompt",
    "redis_url": "Limits per app",
    "max_request_bytes": "Request bounds",
    "remote_photos": "Photos by URL",
    "doctor_grace_s": "Operations",
    "console": "Console",
}

# A page of the manual named in a description becomes a link (this page is in docs/ too).
_DOCS_PAGE = re.compile(r"\bdocs/([\w-]+)\.md\b")

INTRO = """\
# Configuration

<!-- Written by `rapport settings` from the fields of app/settings.py: edit the
descriptions there, then run `rapport settings > docs/configuration.md`. -->

All settings are environment variables, read once at start-up; a bad value
stops the service with a message naming it. Settings that are each valid but
break every request together (a default answer length over its cap, an encoder
queue set shorter than one request's regions, a request pixel budget below one
photo's cap) stop the start too. A `RAPPORT_*` variable that no setting reads
(a misspelt name) is not an error, but every command logs a warning naming it
and the nearest setting (`RAPPORT_DEFAULT_TOPK is not a rapport setting and is
ignored; did you mean RAPPORT_DEFAULT_TOP_K?`); `RAPPORT_TEST_*` variables
belong to the tests.
"""


def variable(name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"RAPPORT_{name.upper()}"


def shown_default(value: object) -> str:
    """A field's default as an operator would write it, or ``unset``."""
    if value is None:
        return "unset"
    if value == "":
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, tuple):
        text = json.dumps(list(value), separators=(",", ":"))
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, Path):
        text = f"./{value}" if not value.is_absolute() else str(value)
    else:
        text = str(value)
    return f"`{text}`"


def render() -> str:
    """The whole reference page, in Markdown."""
    fields = Settings.model_fields
    unknown = set(SECTIONS) - set(fields)
    if unknown or next(iter(fields)) not in SECTIONS:
        raise ValueError(f"SECTIONS names fields that do not start a run: {sorted(unknown)}")
    out = [INTRO.rstrip("\n")]
    for name, field in fields.items():
        if name in SECTIONS:
            out += [
                "",
                f"## {SECTIONS[name]}",
                "",
                "| variable | default | meaning |",
                "|---|---|---|",
            ]
        if not field.description:
            raise ValueError(f"Settings.{name} has no description")
        meaning = " ".join(field.description.split()).replace("|", "\\|")
        meaning = _DOCS_PAGE.sub(r"[\g<0>](\1.md)", meaning)
        out.append(f"| `{variable(name, field)}` | {shown_default(field.default)} | {meaning} |")
    return "\n".join(out) + "\n"
