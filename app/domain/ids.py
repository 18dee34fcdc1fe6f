"""The one definition of the ids the service is given: user ids, tenant names, resource ids.

Every door takes the same rule: the path and the OpenAI ``user`` field, the admin API and
``rapport keys``, ``rapport import``. So an id one of them accepts can be reached by all,
and none holds what another refuses. Control characters are refused everywhere; so is
U+FFFD in the ids apps choose, which a path's percent escapes that are not UTF-8 (``%FF``)
decode to, so that distinct ids never merge into one. A tenant name may not hold ``/``:
it is a path segment of the admin API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from app.domain.text_fields import CONTROL_CHARS


@dataclass(frozen=True)
class IdRule:
    """One kind of id: 1 to ``max_length`` characters, no control character, none of
    ``refused``."""

    kind: str
    max_length: int
    refused: str = ""

    @property
    def pattern(self) -> str:
        escaped = "".join(f"\\u{ord(char):04x}" for char in self.refused)
        return f"^[^{CONTROL_CHARS}{escaped}]+$"

    @property
    def constraints(self) -> dict[str, Any]:
        """Keyword arguments of pydantic's ``Field`` and FastAPI's ``Path``/``Query``."""
        return {"min_length": 1, "max_length": self.max_length, "pattern": self.pattern}

    def field(self, **extra: Any) -> Any:
        """A pydantic ``Field`` holding this rule (for request bodies)."""
        return Field(**self.constraints, **extra)

    def accepts(self, value: str) -> bool:
        return len(value) <= self.max_length and re.match(self.pattern, value) is not None

    def check(self, value: str) -> str:
        """``value`` if this rule accepts it; else ValueError saying what the rule is."""
        if not self.accepts(value):
            others = "".join(f", {_shown(char)}" for char in self.refused)
            raise ValueError(
                f"a {self.kind} has 1 to {self.max_length} characters, without control "
                f"characters{others}"
            )
        return value


def _shown(char: str) -> str:
    return f"'{char}'" if char.isascii() and char.isprintable() else f"U+{ord(char):04X}"


USER_ID = IdRule("user id", 128, refused="\ufffd")
TENANT_NAME = IdRule("tenant name", 200, refused="\ufffd/")
# Ids rapport made itself (concepts, photos): only checked to be plain text of their size.
RESOURCE_ID = IdRule("resource id", 64)
