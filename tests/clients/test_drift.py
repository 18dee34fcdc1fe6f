"""The client cannot drift from the server: models, operations, errors and the two
clients' methods are compared with what the server itself declares."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import rapport_client as rc
from pydantic import BaseModel
from rapport_client import _api as api
from rapport_client._calls import Call
from rapport_client._errors import error_class
from rapport_client._models import SERVER_SCHEMAS, RetrieveRequest

from app.domain import errors as domain_errors
from app.http.errors import STATUS
from app.main import create_app
from retrieval import errors as library_errors

# Every operation of the API, with the client method that calls it; None: out of the
# client's scope (the OpenAI-compatible API has the openai client; metrics are for
# Prometheus). A new operation on the server fails this test until it is listed here.
OPERATIONS: dict[tuple[str, str], str | None] = {
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/metrics"): None,
    ("get", "/v1/models"): None,
    ("post", "/v1/chat/completions"): None,
    ("get", "/v1/users"): "users_page",
    ("get", "/v1/users/{user_id}"): "get_user",
    ("patch", "/v1/users/{user_id}"): "set_memory",
    ("delete", "/v1/users/{user_id}"): "erase_user",
    ("get", "/v1/users/{user_id}/export"): "export_user",
    ("post", "/v1/users/{user_id}/concepts"): "create_concept",
    ("get", "/v1/users/{user_id}/concepts"): "concepts_page",
    ("get", "/v1/users/{user_id}/concepts/{concept_id}"): "get_concept",
    ("patch", "/v1/users/{user_id}/concepts/{concept_id}"): "update_concept",
    ("delete", "/v1/users/{user_id}/concepts/{concept_id}"): "delete_concept",
    ("post", "/v1/users/{user_id}/concepts/{concept_id}/images"): "add_photos",
    ("post", "/v1/users/{user_id}/concepts/{concept_id}/negatives"): "add_negatives",
    ("get", "/v1/users/{user_id}/concepts/{concept_id}/negatives"): "list_negatives",
    ("delete", "/v1/users/{user_id}/concepts/{concept_id}/negatives/{image_id}"): "delete_negative",
    ("get", "/v1/users/{user_id}/concepts/{concept_id}/images/{image_id}"): "get_photo",
    ("delete", "/v1/users/{user_id}/concepts/{concept_id}/images/{image_id}"): "delete_photo",
    ("get", "/v1/users/{user_id}/history"): "history_page",
    ("post", "/v1/users/{user_id}/history/{event_id}/undo"): "undo",
    ("post", "/v1/users/{user_id}/retrieve"): "retrieve",
    ("post", "/v1/users/{user_id}/playground"): "playground",
    ("post", "/v1/users/{user_id}/chat"): "chat",
    ("get", "/v1/admin/tenants"): "list_tenants",
    ("post", "/v1/admin/tenants"): "create_tenant",
    ("get", "/v1/admin/tenants/{name}/keys"): "list_keys",
    ("post", "/v1/admin/tenants/{name}/keys"): "create_key",
    ("delete", "/v1/admin/tenants/{name}/keys/{prefix}"): "revoke_key",
    ("get", "/v1/admin/tenants/{name}/usage"): "tenant_usage",
}
# Answer models of the operations the client reads as JSON, by the server's schema name.
ANSWERS = {"health": None, "ready": None, "export_user": None, "get_photo": None}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = create_app().openapi()
    return schema


def shape(schema: dict[str, Any], rename: Callable[[str], str]) -> str:
    """A JSON schema's type, without its constraints or descriptions: what both sides
    must agree on."""
    if "$ref" in schema:
        return "ref:" + rename(schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        return " | ".join(sorted(shape(option, rename) for option in schema["anyOf"]))
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return shape(schema["allOf"][0], rename)
    if "const" in schema:
        return f"const:{schema['const']!r}"
    if "enum" in schema:
        return "enum:" + ",".join(sorted(map(repr, schema["enum"])))
    kind = schema.get("type", "any")
    if kind == "array":
        if "prefixItems" in schema:
            return "tuple[" + ", ".join(shape(s, rename) for s in schema["prefixItems"]) + "]"
        return "array[" + shape(schema.get("items", {}), rename) + "]"
    if kind == "string" and schema.get("format") in ("date-time", "binary"):
        return f"string:{schema['format']}"
    return str(kind)


def fields_of(schema: dict[str, Any], rename: Callable[[str], str]) -> dict[str, str]:
    required = set(schema.get("required", []))
    return {
        name: ("required " if name in required else "optional ") + shape(field, rename)
        for name, field in schema.get("properties", {}).items()
    }


def client_fields(model: type[BaseModel]) -> dict[str, str]:
    by_name = {cls.__name__: name for cls, name in SERVER_SCHEMAS.items()}
    schema = model.model_json_schema(
        mode="validation" if issubclass(model, rc._models.Body) else "serialization"
    )
    fields = fields_of(schema, lambda name: by_name.get(name, f"client-only {name}"))
    # Required-ness as the client reads it: a field with a default may be absent.
    return {
        name: ("required " if model.model_fields[name].is_required() else "optional ")
        + kind.split(" ", 1)[1]
        for name, kind in fields.items()
    }


@pytest.mark.parametrize("model", list(SERVER_SCHEMAS), ids=lambda m: m.__name__)
def test_each_model_has_the_fields_of_the_servers_schema(
    model: type[BaseModel], openapi: dict[str, Any]
) -> None:
    components = openapi["components"]["schemas"]
    name = SERVER_SCHEMAS[model]
    assert name in components, f"the server has no schema {name!r} any more"
    client, server = client_fields(model), fields_of(components[name], lambda ref: ref)
    assert client == server, (
        f"{model.__name__} (clients/python/rapport_client/_models.py) differs from the "
        f"server's {name}"
    )


def test_the_retrieve_body_has_the_fields_of_the_servers(openapi: dict[str, Any]) -> None:
    content = openapi["paths"]["/v1/users/{user_id}/retrieve"]["post"]["requestBody"]["content"]
    server = fields_of(content["application/json"]["schema"], lambda ref: ref)
    assert client_fields(RetrieveRequest) == server
    multipart = set(content["multipart/form-data"]["schema"]["properties"])
    assert multipart == set(server)


def test_every_operation_has_a_client_method_on_both_clients(openapi: dict[str, Any]) -> None:
    served = {
        (method, path)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method in ("get", "post", "patch", "put", "delete")
    }
    missing, gone = served - set(OPERATIONS), set(OPERATIONS) - served
    assert not missing, (
        f"operations without a client method: {sorted(missing)}; add methods to both "
        "clients in clients/python and list them in OPERATIONS here"
    )
    assert not gone, f"operations the server no longer has: {sorted(gone)}"
    for (_, path), method in OPERATIONS.items():
        if method is None:
            continue
        clients = (
            (rc.RapportAdmin, rc.AsyncRapportAdmin)
            if path.startswith("/v1/admin")
            else (rc.Rapport, rc.AsyncRapport)
        )
        for client in clients:
            assert callable(getattr(client, method, None)), f"{client.__name__}.{method}"


def test_each_operation_answers_the_model_the_client_reads(openapi: dict[str, Any]) -> None:
    hints = {
        name: inspect.signature(getattr(rc.Rapport, name, None) or getattr(rc.RapportAdmin, name))
        for name in OPERATIONS.values()
        if name is not None and name not in ANSWERS
    }
    by_class = {cls.__name__: name for cls, name in SERVER_SCHEMAS.items()}
    for (method, path), name in OPERATIONS.items():
        if name is None or name in ANSWERS:
            continue
        answers = openapi["paths"][path][method]["responses"]
        [ok] = [answers[s] for s in answers if s.startswith("2")]
        declared = str(hints[name].return_annotation).removeprefix("m.")
        content = ok.get("content", {}).get("application/json", {}).get("schema")
        if content is None:
            assert declared == "None", (method, path)
            continue
        server = shape(content, lambda ref: ref)
        if declared.startswith("list["):
            client = f"array[ref:{by_class[declared[5:-1].removeprefix('m.')]}]"
        else:
            client = f"ref:{by_class[declared]}"
        assert client == server, (method, path)


# A call with every option set, for each operation that takes query parameters.
QUERIES: dict[tuple[str, str], Call[Any]] = {
    ("get", "/v1/users"): api.list_users(10, "cursor", "prefix"),
    ("get", "/v1/users/{user_id}/concepts"): api.list_concepts("u", 10, "cursor", True),
    ("get", "/v1/users/{user_id}/concepts/{concept_id}"): api.get_concept("u", "c", True),
    ("get", "/v1/users/{user_id}/concepts/{concept_id}/images/{image_id}"): api.get_photo(
        "u", "c", "i", 64
    ),
    ("get", "/v1/users/{user_id}/history"): api.history("u", 10, "cursor"),
}


def test_the_client_sends_every_query_parameter_the_server_takes(
    openapi: dict[str, Any],
) -> None:
    taken = {
        (method, path): {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if OPERATIONS.get((method, path))
    }
    assert {op for op, names in taken.items() if names} == set(QUERIES)
    for operation, call in QUERIES.items():
        assert set(call.params or {}) == taken[operation], operation


def server_errors() -> list[type[library_errors.RapportError]]:
    found: list[type[library_errors.RapportError]] = []
    pending: list[type[library_errors.RapportError]] = [library_errors.RapportError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    modules = (library_errors.__name__, domain_errors.__name__)
    return [cls for cls in found if cls.__module__ in modules]


@pytest.mark.parametrize("server_error", server_errors(), ids=lambda cls: cls.__name__)
def test_each_server_error_has_a_client_class_of_its_own(
    server_error: type[library_errors.RapportError],
) -> None:
    # The server's own table, looked up along the class hierarchy as status_of does.
    status = next(STATUS[cls] for cls in server_error.__mro__ if cls in STATUS)
    client_class = error_class(status, server_error.title)
    hint = f"add a class for {status} {server_error.title!r} to rapport_client/_errors.py"
    if server_error is library_errors.RapportError:
        assert client_class is rc.InternalServerError
        return
    assert (client_class.status, client_class.title) == (status, server_error.title), hint
    assert issubclass(client_class, rc.ServerError if status >= 500 else rc.ClientError)


@pytest.mark.parametrize(
    ("status", "title"),
    [
        (404, "Not found"),
        (408, "Request timeout"),
        (413, "Payload too large"),
        (422, "Invalid request"),
        (500, "Internal server error"),
    ],
)
def test_the_http_layers_problems_have_classes_too(status: int, title: str) -> None:
    # Titles of app/http/errors.py's own handlers (routing, validation, body limits).
    assert (error_class(status, title).status, error_class(status, title).title) == (status, title)


@pytest.mark.parametrize(
    ("sync", "async_"), [(rc.Rapport, rc.AsyncRapport), (rc.RapportAdmin, rc.AsyncRapportAdmin)]
)
def test_the_async_clients_have_the_sync_clients_methods_and_parameters(
    sync: type, async_: type
) -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync_methods, async_methods = public(sync), public(async_)
    assert set(sync_methods) == set(async_methods)
    for name, signature in sync_methods.items():
        theirs = async_methods[name]
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == [
            (p.name, p.kind, p.default) for p in theirs.parameters.values()
        ], name
        member = getattr(async_, name)
        assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), name
