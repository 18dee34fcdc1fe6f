"""One body policy for the JSON routes that can carry photos: /chat, /playground,
/retrieve (JSON) and /v1/chat/completions.

FastAPI parses a declared pydantic body on the event loop, and the JSON of a
48 MB body of 3 M empty content parts took every tenant's requests 11-14 s and
the process 2.3 GB. Here a body is received (its size bounded by
BodyLimitMiddleware), its structure is bounded from its bytes before any of it
is parsed, and it is parsed and validated in the thread pool.

The structure bound: a JSON document of B bytes holds at most
``1 + 2*count(",") + count("[") + 2*count("{")`` values and keys (each
container's items are separated by commas; an object's pair is two), counting
those characters inside strings too. So the count, which costs a fast scan of
the bytes, bounds the objects that parsing would build; the largest valid
request (every message, part and character at its cap) stays under
MAX_JSON_VALUES. Validation then bounds the parts of each message
(``app.http.chat_schemas.MAX_CONTENT_PARTS``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from retrieval.errors import InvalidRequest, PayloadTooLarge

# Text of a chat request: 64,000 characters at most (RAPPORT_MAX_REQUEST_TEXT_CHARS' default),
# each counting at most 2; messages (200) and content parts (MAX_CONTENT_PARTS) about 10
# each. Far more than any valid request, and still cheap to parse (milliseconds).
MAX_JSON_VALUES = 200_000

Body = TypeVar("Body", bound=BaseModel)

# The schemas that json_request_body's models refer to, for the OpenAPI components.
_REFERRED: dict[str, dict[str, Any]] = {}


def json_values_bound(body: bytes) -> int:
    """An upper bound of the values and keys in the JSON document ``body``."""
    return 1 + 2 * body.count(b",") + body.count(b"[") + 2 * body.count(b"{")


def check_structure(body: bytes) -> None:
    """Refuse (413) a JSON body that may hold more than MAX_JSON_VALUES values, unparsed."""
    if json_values_bound(body) > MAX_JSON_VALUES:
        raise PayloadTooLarge(
            f"the JSON body holds too many values (at most {MAX_JSON_VALUES} are read)"
        )


def parse_json(body: bytes, model: type[Body]) -> Body:
    """``body`` as ``model``, refused (413) before parsing when its structure is over the
    bound; invalid bodies get the same 422 as FastAPI's own body validation."""
    check_structure(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        issues = [
            {**issue, "loc": ("body", *issue["loc"])}
            for issue in error.errors(include_url=False, include_context=False)
        ]
        raise RequestValidationError(issues) from None


async def read_json(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``, parsed off the event loop."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise InvalidRequest("send the body as application/json")
    body = await request.body()
    return await run_in_threadpool(parse_json, body, model)


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as a route's JSON body (the route reads it
    with ``read_json``, so FastAPI does not see it)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _REFERRED.update(schema.pop("$defs", {}))
    _REFERRED[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def add_body_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    """``openapi`` with the schemas of the JSON bodies read by ``read_json``."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _REFERRED.items():
        schemas.setdefault(name, schema)
    return openapi
