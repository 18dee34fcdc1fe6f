"""Errors of the OpenAI-compatible routes, in OpenAI's own shape.

OpenAI's clients read ``{"error": {"message", "type", "param", "code"}}`` and show
``message``; they retry 408, 409, 429 and 5xx unless the answer says
``x-should-retry: false``. Every other route answers problem+json (app/http/errors.py).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
# Retrying cannot help: the service has no generator until its operator configures one.
_FINAL = {501}


def is_openai_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def openai_error(
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    """The error as OpenAI answers it; ``code`` is the title as a slug."""
    error_type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {
        "error": {
            "message": f"{title}: {detail}" if detail else title,
            "type": error_type,
            "param": param,
            "code": re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_"),
        }
    }
    headers = dict(headers or {})
    if status in _FINAL:
        headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=status, headers=headers)
