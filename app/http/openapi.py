"""What the OpenAPI schema says about errors: every one is a problem document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.http.errors import STATUS


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the API is answered."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


_DESCRIPTIONS = {
    400: "a photo URL that is not fetched (not public, not http(s), or off)",
    401: "no valid API key",
    404: "not found, or not the caller's (answered alike)",
    408: "the request body did not arrive in time",
    409: "conflict, or a count quota reached",
    413: "too large: body, photo, pixels or storage quota",
    415: "not an image rapport reads",
    422: "invalid request",
    500: "a server-side loss (e.g. a stored photo's file is missing) or a bug",
    429: "rate limit or overload; see Retry-After",
    501: "not available with this configuration",
    502: "the MLLM backend failed",
    503: "a dependency (database, model) is unavailable, or too many photos are being decoded",
    504: "the MLLM backend did not answer in time",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting these statuses as problem documents."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error shape, as the OpenAI-compatible routes answer every error."""

    error: OpenAIErrorDetail


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting these statuses in OpenAI's error shape."""
    schema = {"$ref": "#/components/schemas/OpenAIError"}
    return {
        status: {
            "model": OpenAIError,
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": schema}},
        }
        for status in statuses
    }


# Statuses that only an MLLM backend causes; the chat routes document them on their own.
GENERATOR_STATUSES = frozenset({501, 502, 504})

# Every status of the error table (and 408 from the body limit): a status cannot go
# undocumented by adding an error class.
USER_DATA_ERRORS = problems(*sorted((set(STATUS.values()) | {408}) - GENERATOR_STATUSES))
OPENAI_ROUTE_ERRORS = openai_errors(*sorted(set(STATUS.values()) | {408}))


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "an app's API key (rk_...), or RAPPORT_ADMIN_KEY for /v1/admin",
}


def add_bearer_scheme(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with a bearer security scheme required by every /v1 operation, so that
    the docs' "Authorize" sends the key with "Try it out"."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    return schema
