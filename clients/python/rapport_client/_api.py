"""The calls of rapport's API, one function each (used by both clients)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rapport_client import _models as m
from rapport_client._calls import (
    Call,
    body,
    model,
    model_list,
    multipart,
    nothing,
    params,
    photo_upload,
    raw_bytes,
    segment,
    user_path,
)
from rapport_client._photos import PhotoInput, photo_reference

# Users.


def list_users(limit: int, cursor: str | None, prefix: str | None) -> Call[m.UserPage]:
    query = params(limit=limit, cursor=cursor, prefix=prefix)
    return Call("GET", "/v1/users", model(m.UserPage), params=query)


def get_user(user_id: str) -> Call[m.User]:
    return Call("GET", user_path(user_id), model(m.User))


def set_memory(user_id: str, patch: m.UserPatch) -> Call[m.User]:
    return Call("PATCH", user_path(user_id), model(m.User), json=body(patch))


def erase_user(user_id: str) -> Call[None]:
    return Call("DELETE", user_path(user_id), nothing)


def export_user(user_id: str) -> Call[None]:
    return Call("GET", user_path(user_id, "export"), nothing)


# Concepts and their photos.


def create_concept(
    user_id: str,
    name: str,
    photos: Sequence[PhotoInput],
    description: str,
    category: str | None,
) -> Call[m.Concept]:
    fields = {"name": name, "description": description, "category": category}
    return photo_upload(
        ("POST", user_path(user_id, "concepts")),
        fields,
        photos,
        model(m.Concept),
        field="images",
        idempotent=False,
    )


def _include(looks_like: bool) -> str | None:
    return "looks_like" if looks_like else None


def list_concepts(
    user_id: str, limit: int, cursor: str | None, looks_like: bool = False
) -> Call[m.ConceptPage]:
    query = params(limit=limit, cursor=cursor, include=_include(looks_like))
    return Call("GET", user_path(user_id, "concepts"), model(m.ConceptPage), params=query)


def get_concept(user_id: str, concept_id: str, looks_like: bool = False) -> Call[m.Concept]:
    path = user_path(user_id, "concepts", concept_id)
    return Call("GET", path, model(m.Concept), params=params(include=_include(looks_like)))


def update_concept(user_id: str, concept_id: str, patch: m.ConceptPatch) -> Call[m.Concept]:
    path = user_path(user_id, "concepts", concept_id)
    return Call("PATCH", path, model(m.Concept), json=body(patch))


def delete_concept(user_id: str, concept_id: str) -> Call[None]:
    return Call("DELETE", user_path(user_id, "concepts", concept_id), nothing)


def add_photos(user_id: str, concept_id: str, photos: Sequence[PhotoInput]) -> Call[m.Concept]:
    return photo_upload(
        ("POST", user_path(user_id, "concepts", concept_id, "images")),
        {},
        photos,
        model(m.Concept),
        field="images",
        idempotent=False,
    )


def get_photo(user_id: str, concept_id: str, image_id: str, size: int | None) -> Call[bytes]:
    path = user_path(user_id, "concepts", concept_id, "images", image_id)
    return Call("GET", path, raw_bytes, params=params(size=size))


def delete_photo(user_id: str, concept_id: str, image_id: str) -> Call[None]:
    return Call("DELETE", user_path(user_id, "concepts", concept_id, "images", image_id), nothing)


# Corrections: photos that are not a concept.


def add_negatives(
    user_id: str, concept_id: str, photos: Sequence[PhotoInput]
) -> Call[m.NegativePage]:
    return photo_upload(
        ("POST", user_path(user_id, "concepts", concept_id, "negatives")),
        {},
        photos,
        model(m.NegativePage),
        field="images",
        idempotent=False,
    )


def list_negatives(user_id: str, concept_id: str) -> Call[m.NegativePage]:
    path = user_path(user_id, "concepts", concept_id, "negatives")
    return Call("GET", path, model(m.NegativePage))


def delete_negative(user_id: str, concept_id: str, image_id: str) -> Call[None]:
    path = user_path(user_id, "concepts", concept_id, "negatives", image_id)
    return Call("DELETE", path, nothing)


# Memory history.


def history(user_id: str, limit: int, cursor: str | None) -> Call[m.HistoryPage]:
    query = params(limit=limit, cursor=cursor)
    return Call("GET", user_path(user_id, "history"), model(m.HistoryPage), params=query)


def undo(user_id: str, event_id: str) -> Call[m.Undo]:
    path = user_path(user_id, "history", event_id, "undo")
    return Call("POST", path, model(m.Undo), idempotent=False)


# Retrieval and chat.


def retrieve(
    user_id: str,
    image: bytes | PhotoInput | None,
    text: str | None,
    top_k: int | None,
    min_score: float | None,
) -> Call[m.Retrieval]:
    path = user_path(user_id, "retrieve")
    if image is None:
        request = m.RetrieveRequest(text=text, top_k=top_k, min_score=min_score)
        return Call("POST", path, model(m.Retrieval), json=body(request))
    fields = {
        "text": text,
        "top_k": None if top_k is None else str(top_k),
        "min_score": None if min_score is None else repr(float(min_score)),
    }
    content, content_type = multipart(fields, [image], "image")
    return Call("POST", path, model(m.Retrieval), content=content, content_type=content_type)


def chat(user_id: str, request: m.ChatRequest) -> Call[m.ChatAnswer]:
    return Call(
        "POST",
        user_path(user_id, "chat"),
        model(m.ChatAnswer),
        json=body(request),
        idempotent=False,
    )


def chat_request(
    question: str | None,
    image: PhotoInput | None,
    messages: Sequence[m.ChatMessage | dict[str, object]] | None,
    top_k: int | None,
    min_score: float | None,
    max_new_tokens: int | None,
    temperature: float,
    stream: bool,
    memory: m.MemoryMode | None = None,
) -> m.ChatRequest:
    return m.ChatRequest(
        question=question,
        image=None if image is None else photo_reference(image),
        messages=None
        if messages is None
        else [m.ChatMessage.model_validate(message) for message in messages],
        top_k=top_k,
        min_score=min_score,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stream=stream,
        memory=memory,
    )


def playground(
    user_id: str,
    question: str,
    image: PhotoInput | None,
    top_k: int | None,
    min_score: float | None,
) -> Call[m.Playground]:
    request = m.PlaygroundRequest(
        question=question,
        image=None if image is None else photo_reference(image),
        top_k=top_k,
        min_score=min_score,
    )
    return Call("POST", user_path(user_id, "playground"), model(m.Playground), json=body(request))


# Health.


def health() -> Call[bool]:
    return Call("GET", "/healthz", lambda response: response.json().get("status") == "ok")


# Admin.


def create_tenant(name: str) -> Call[m.Tenant]:
    request = body(m.TenantIn(name=name))
    return Call("POST", "/v1/admin/tenants", model(m.Tenant), json=request, idempotent=False)


def list_tenants() -> Call[list[m.Tenant]]:
    return Call("GET", "/v1/admin/tenants", model_list(m.Tenant))


def create_key(tenant: str, expires_at: datetime | None) -> Call[m.NewApiKey]:
    path = f"/v1/admin/tenants/{segment(tenant)}/keys"
    request = body(m.KeyIn(expires_at=expires_at))
    return Call("POST", path, model(m.NewApiKey), json=request, idempotent=False)


def list_keys(tenant: str) -> Call[list[m.ApiKey]]:
    return Call("GET", f"/v1/admin/tenants/{segment(tenant)}/keys", model_list(m.ApiKey))


def revoke_key(tenant: str, prefix: str) -> Call[None]:
    path = f"/v1/admin/tenants/{segment(tenant)}/keys/{segment(prefix)}"
    return Call("DELETE", path, nothing)


def tenant_usage(tenant: str) -> Call[m.TenantUsage]:
    return Call("GET", f"/v1/admin/tenants/{segment(tenant)}/usage", model(m.TenantUsage))
