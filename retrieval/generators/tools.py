"""Tool calling: what a generator offers the model, and the bounds of one request's loop.

The caller (the app) owns the tools: their JSON schemas, and ``execute``, which
runs one call and says what came of it in a short text fed back to the model. The
generator only relays: it offers the tools while the request has room (calls left,
time left), answers each call with ``execute``'s text, and asks again; once out of
room the next request offers no tools, so the model must answer in words.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: the tool's name and its arguments as the model wrote them."""

    id: str
    name: str
    arguments: str


@dataclass
class ToolSession:
    """The tools of one request and its bounds: at most ``max_calls`` calls, none started
    after ``time_budget_s`` seconds from the session's creation."""

    specs: Sequence[dict[str, Any]]
    execute: Callable[[ToolCall], str]
    max_calls: int
    time_budget_s: float
    calls: int = 0
    _started: float = field(default_factory=time.monotonic)

    def has_room(self) -> bool:
        return self.calls < self.max_calls and self.time_left() > 0

    def time_left(self) -> float:
        return self.time_budget_s - (time.monotonic() - self._started)

    def run(self, raw: Any) -> tuple[str, str]:
        """(the call's id, the text to feed back) for one tool call as the backend sent it."""
        call = parse_call(raw)
        if call is None:
            call_id = raw.get("id") if isinstance(raw, dict) else None
            return str(call_id or "call"), "error: a malformed tool call (no function name)"
        if not self.has_room():
            return call.id, (
                f"refused: this request's limit of {self.max_calls} tool calls or its time "
                "is used up; answer the user without tools"
            )
        self.calls += 1
        return call.id, self.execute(call)


def parse_call(raw: Any) -> ToolCall | None:
    """A tool call of OpenAI's shape (``{"id", "function": {"name", "arguments"}}``), or
    None when it is not one."""
    if not isinstance(raw, dict):
        return None
    function = raw.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments) if arguments is not None else "{}"
    return ToolCall(id=str(raw.get("id") or "call"), name=function["name"], arguments=arguments)
