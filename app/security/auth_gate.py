"""Who is calling, decided from the path and headers before any body is read.

An anonymous or bad-key request used to have its body (up to the body cap)
received and parsed before its 401. Here, every ``/v1`` request is
authenticated first: a tenant key (cached for RAPPORT_KEY_CACHE_S), or the
admin key on ``/v1/admin``. Failed authentications are limited per client
address (``AuthFailureLimiter``), and only failures are: a presented key is
always checked, so a valid key (or the admin key) is never refused because
its address also sent bad ones; once an address is over its budget, its
failures answer 429 instead of 401. The client address is the connection's,
or the one a trusted proxy forwarded (RAPPORT_FORWARDED_ALLOW_IPS). Admission
(rate limit, requests in progress) follows in ``app.security.admission``.
A database that cannot answer is a 503 with Retry-After, as in the routes.
Routes read the result through ``require_caller`` / ``require_admin``
(``app.http.deps``), which fail closed.
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote_to_bytes

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.domain.errors import NotFound, RateLimited, Unauthorized
from app.http.errors import DATABASE_ERRORS, database_unavailable, render
from app.security import admission
from app.security.keys import Caller, authenticate
from app.services import Services
from retrieval.batching import encoding_for
from retrieval.errors import InvalidRequest, RapportError

ADMIN_PREFIX = "/v1/admin"


class AuthGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        state = scope.setdefault("state", {})
        caller = None
        try:
            try:
                _check_path(scope)
                if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                    _check_admin(services, scope)
                    state["admin"] = True
                else:
                    caller = await _caller(services, scope)
                    await admission.admit(services, caller)
                    state["caller"] = caller
            except DATABASE_ERRORS as error:
                unavailable = database_unavailable(error, f"authentication of {path}")
                if unavailable is None:
                    raise
                raise unavailable from None
        except RapportError as error:
            response = render(error, path)
            response.headers["Connection"] = "close"  # the body, if any, is not read
            await response(scope, receive, send)
            return
        try:
            # The app's photos take their turn in the encoder's queue (retrieval/batching.py).
            with encoding_for(caller.tenant_id if caller else None):
                await self.app(scope, receive, send)
        finally:
            if caller is not None:
                admission.leave(services, caller)


def _check_path(scope: Scope) -> None:
    """Refuse a path whose percent escapes are not UTF-8: the server would turn each such
    escape into U+FFFD, so "caf%E9" and "caf%E8" would name one and the same user."""
    raw = scope.get("raw_path") or b""
    if b"%" not in raw:
        return
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the path is not valid UTF-8 once percent-decoded") from None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _refuse(services: Services, scope: Scope, detail: str) -> RapportError:
    """The answer to a failed authentication: 401, counted against the client's address,
    or 429 once that address is over its budget of failures."""
    address = _address(scope)
    wait = services.auth_failures.blocked(address)
    if wait is not None:
        return RateLimited("too many failed authentications from this address", wait)
    services.auth_failures.record(address)
    return Unauthorized(detail)


def _check_admin(services: Services, scope: Scope) -> None:
    admin_key = services.settings.admin_key
    if admin_key is None:
        raise NotFound("not found")
    presented = _bearer(scope) or ""
    expected = admin_key.get_secret_value()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise _refuse(services, scope, "send the admin key as 'Authorization: Bearer KEY'")


async def _caller(services: Services, scope: Scope) -> Caller:
    key = _bearer(scope)
    if key is None:
        raise _refuse(services, scope, "send the API key as 'Authorization: Bearer KEY'")
    caller = services.key_cache.get(key)
    if caller is None:
        # Looked up even from an address over its budget: one indexed query, and a
        # valid key must never be refused for its neighbours' failures.
        caller = await run_in_threadpool(_authenticate, services, key)
        if caller is None:
            raise _refuse(services, scope, "the API key is unknown, revoked or expired")
    return caller


def _authenticate(services: Services, key: str) -> Caller | None:
    with services.sessions() as session:
        caller = authenticate(session=session, key=key, secret=services.settings.key_secret)
    if caller is not None:
        services.key_cache.put(key, caller)
    return caller
