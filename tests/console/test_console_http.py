"""The console's and the docs' pages over HTTP: their security headers, no CDN, the
setting that turns the console off, the bearer scheme in OpenAPI, and the files in a wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_FILES = [
    "index.html",
    "console.css",
    "logo.svg",
    "main.js",
    "api.js",
    "dom.js",
    "users.js",
    "concepts.js",
    "playground.js",
    "admin.js",
]


def test_console_pages_carry_a_strict_policy_and_load_nothing_from_elsewhere(
    server: LiveServer,
) -> None:
    client = server.client()
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "img-src 'self' blob: data:" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    for name in CONSOLE_FILES:
        asset = page if name == "index.html" else client.get(f"/console/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["x-content-type-options"] == "nosniff"
        text = asset.text
        # No inline script, no HTML built from strings, no third-party origin.
        assert "innerHTML" not in text and "outerHTML" not in text and "eval(" not in text, name
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), name
        assert "localStorage" not in text and "document.cookie" not in text, name
    assert "<script>" not in page.text and " on" not in re.sub(r"\s+", " ", page.text).replace(
        " only", ""
    )
    for bad in ("../settings.py", "..%2Fsettings.py", "main.py", "index.html.bak", "x.js"):
        refused = client.get(f"/console/{bad}")
        assert refused.status_code in (404, 422) and "import" not in refused.text, bad


def test_docs_are_served_offline_and_document_the_bearer_scheme(server: LiveServer) -> None:
    client = server.client()
    for path, assets in (
        ("/docs", ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-init.js"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        page = client.get(path)
        assert (
            page.status_code == 200
            and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        )
        assert "cdn" not in page.text and "https://" not in page.text
        for asset in assets:
            assert f"/docs/assets/{asset}" in page.text
            response = client.get(f"/docs/assets/{asset}")
            assert response.status_code == 200 and len(response.content) > 100
    assert b"cdn.redoc.ly" not in client.get("/docs/assets/redoc.standalone.js").content
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]
    assert all(
        op["security"] == [{"bearer": []}] for path, op in operations if path.startswith("/v1/")
    )
    assert all("security" not in op for path, op in operations if not path.startswith("/v1/"))
    assert not any(path.startswith(("/console", "/docs", "/redoc")) for path in schema["paths"])


def test_the_address_the_server_prints_leads_to_the_console(server: LiveServer) -> None:
    client = server.client()
    first = client.get("/", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (302, "/console")
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200 and "<title>" in page.text and page.url.path == "/console"


def test_the_console_setting_turns_it_off_and_the_api_gives_it_nothing_extra(
    start_server: Any, sqlite_template: Path, tmp_path: Path
) -> None:
    import shutil

    database = tmp_path / "rapport.db"
    shutil.copy(sqlite_template, database)
    server = start_server(make_settings(f"sqlite:///{database}", tmp_path / "data", console=False))
    client = server.client()
    assert client.get("/console").status_code == 404
    assert client.get("/console/main.js").status_code == 404
    assert client.get("/").status_code == 404
    assert client.get("/docs").status_code == 200  # the docs are not the console
    # Without a key the console's own API calls get exactly what any client gets.
    assert client.get("/v1/users").status_code == 401


@pytest.mark.skipif(sys.platform != "linux", reason="builds a wheel with pip")
def test_a_wheel_ships_the_console_and_serves_it(tmp_path: Path) -> None:
    # The build backend installed here when it is recent enough (no download), else
    # the one pyproject.toml names, in an isolated environment (from the registry).
    isolation = [] if _setuptools_major() < 77 else ["--no-build-isolation"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *isolation,
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("rapport-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"app/console/{name}" for name in CONSOLE_FILES}
    expected |= {
        "app/console/docs/swagger.html",
        "app/console/docs/redoc.html",
        "app/console/docs/swagger-init.js",
    }
    assert expected <= names, expected - names
    # Served from the installed wheel, not from this checkout.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "from starlette.testclient import TestClient\n"
        "from fastapi import FastAPI\n"
        "import app.http.routes.console as c\n"
        "assert c.__file__.startswith(TARGET), c.__file__\n"
        "api = FastAPI()\n"
        "api.include_router(c.console_router)\n"
        "api.include_router(c.docs_router)\n"
        "client = TestClient(api)\n"
        "assert client.get('/console').status_code == 200\n"
        "assert client.get('/console/main.js').status_code == 200\n"
        "assert client.get('/docs/assets/swagger-init.js').status_code == 200\n"
        "print('served')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"TARGET = {str(target)!r}\n{code}"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "served", result.stderr


def _setuptools_major() -> int:
    try:
        return int(metadata.version("setuptools").split(".")[0])
    except metadata.PackageNotFoundError:
        return 0


def test_photos_and_exports_need_the_key_like_any_other_request(server: LiveServer) -> None:
    anonymous = httpx.Client(base_url=server.url)
    try:
        assert anonymous.get("/v1/users/alice/export").status_code == 401
        assert anonymous.get("/v1/users/alice/concepts/x/images/y?size=64").status_code == 401
        assert (
            anonymous.post("/v1/users/alice/playground", json={"question": "?"}).status_code == 401
        )
    finally:
        anonymous.close()


def test_requests_for_files_that_do_not_exist_cache_nothing(server: LiveServer) -> None:
    # The console and docs routes are public: a made-up name must cost nothing lasting.
    from app.http.routes import console

    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/console/main.js").status_code == 200
        cached = console._read.cache_info().currsize
        for _ in range(50):
            made_up = uuid.uuid4().hex
            assert client.get(f"/console/{made_up}.js").status_code == 404
            assert client.get(f"/docs/assets/{made_up}.css").status_code == 404
    assert console._read.cache_info().currsize == cached
