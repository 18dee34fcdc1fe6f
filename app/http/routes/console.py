"""The browser console (/console) and the API docs (/docs, /redoc), served from files
inside the package: no CDN, no cookie, no inline script.

The console is one more client of the public API: these routes serve static
files only and read no key; every request the page makes carries the key the
user typed, and gets exactly what the API gives that key.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from app.domain.errors import NotFound

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc set inline styles, and ReDoc runs its search in a blob worker.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# ReDoc's bundle shows a logo from its CDN; the page would ask for it (CSP refuses it).
REWRITES = {
    "redoc.standalone.js": (
        b"https://cdn.redoc.ly/redoc/logo-mini.svg",
        b"/docs/assets/favicon.png",
    )
}
AssetName = Annotated[str, Path(pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.(js|css|svg|png)$")]

console_router = APIRouter(include_in_schema=False)
docs_router = APIRouter(include_in_schema=False)


def _folder(package: str, *parts: str) -> Traversable:
    folder = resources.files(package)
    for part in parts:
        folder = folder / part
    return folder


@cache
def _names(package: str, folder: tuple[str, ...]) -> frozenset[str]:
    """The files a packaged folder holds, listed once."""
    return frozenset(entry.name for entry in _folder(package, *folder).iterdir() if entry.is_file())


def _packaged(package: str, folder: tuple[str, ...], name: str) -> bytes | None:
    """A packaged file's bytes, or None when the package has no such file. Only names
    of real files reach the cache, so requests for made-up names cannot grow it."""
    return _read(package, folder, name) if name in _names(package, folder) else None


@cache
def _read(package: str, folder: tuple[str, ...], name: str) -> bytes:
    """The bytes of a file ``_names`` lists, read once."""
    data = (_folder(package, *folder) / name).read_bytes()
    if name in REWRITES:
        data = data.replace(*REWRITES[name])
    return data


def _serve(package: str, folder: tuple[str, ...], name: str, csp: str) -> Response:
    data = _packaged(package, folder, name)
    suffix = name[name.rfind(".") :]
    if data is None or suffix not in STATIC_MEDIA_TYPES:
        raise NotFound("not found")
    return Response(
        data,
        media_type=STATIC_MEDIA_TYPES[suffix],
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cache-Control": "no-cache",
        },
    )


@console_router.get("/console")
def console_page() -> Response:
    return _serve("app", ("console",), "index.html", CONSOLE_CSP)


@console_router.get("/console/{name}")
def console_asset(name: AssetName) -> Response:
    return _serve("app", ("console",), name, CONSOLE_CSP)


@docs_router.get("/docs")
def swagger_page() -> Response:
    return _serve("app", ("console", "docs"), "swagger.html", DOCS_CSP)


@docs_router.get("/redoc")
def redoc_page() -> Response:
    return _serve("app", ("console", "docs"), "redoc.html", DOCS_CSP)


@docs_router.get("/docs/assets/{name}")
def docs_asset(name: AssetName) -> Response:
    """Our own start-up script, or Swagger UI's and ReDoc's files as fastapi-offline ships them."""
    if _packaged("app", ("console", "docs"), name) is not None:
        return _serve("app", ("console", "docs"), name, DOCS_CSP)
    return _serve("fastapi_offline", ("static",), name, DOCS_CSP)
