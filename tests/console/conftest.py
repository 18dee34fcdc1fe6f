"""A real headless Chromium (Debian's) driven by Playwright, one per test session, and a
live rapport on loopback with the tiny model, grid regions and a fake OpenAI backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.helpers import mobilenet_settings, openai_settings
from tests.conftest import LiveServer
from tests.fake_openai_server import FakeOpenAI, running_fake_openai

CHROMIUM = os.environ.get("RAPPORT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Screenshots of each screen land here (CI keeps them as artifacts; gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ADMIN_KEY = "admin-secret-for-the-console-tests-0123456789"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def backend() -> Iterator[FakeOpenAI]:
    with running_fake_openai(deltas=("Yes, ", "this is ", "<dog>", " on the grass.")) as server:
        yield server


@pytest.fixture
def console_server(
    start_server: Any, sqlite_template: Path, tmp_path: Path, backend: FakeOpenAI
) -> LiveServer:
    """SQLite is enough here: the API tests cover PostgreSQL; these cover the browser."""
    import shutil

    database = tmp_path / "rapport.db"
    shutil.copy(sqlite_template, database)
    settings = openai_settings(
        f"sqlite:///{database}",
        tmp_path,
        backend,
        regions="grid",
        region_grid_scales=(2,),
        admin_key=ADMIN_KEY,
        looks_like_min_score=0.9999,
    )
    return start_server(settings)  # type: ignore[no-any-return]


@pytest.fixture
def real_console_server(start_server: Any, sqlite_template: Path, tmp_path: Path) -> LiveServer:
    """The service's own defaults (the decision rule, no generator) on real MobileNetV2
    features, where concepts have thresholds a photo can reach."""
    import shutil

    database = tmp_path / "rapport.db"
    shutil.copy(sqlite_template, database)
    settings = mobilenet_settings(f"sqlite:///{database}", tmp_path / "data")
    return start_server(settings, encoder=None)  # type: ignore[no-any-return]


@pytest.fixture
def page(browser: Any, console_server: LiveServer) -> Iterator[Any]:
    """A fresh browser context (no storage shared between tests), laptop-sized; it records
    console errors and every request the page makes."""
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []  # type: ignore[attr-defined]
    page.requests = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    context.close()


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Screenshots of the page as it is, at laptop and at phone width (the whole page,
    or what the window shows where it is scrolled to)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # As a person would see the screen: without the passing notices or a hovered row.
    page.evaluate("document.querySelector('#toasts')?.replaceChildren()")
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    page.screenshot(path=ARTIFACTS / f"{name}-laptop.png", full_page=full_page)
    page.set_viewport_size(PHONE)
    page.screenshot(path=ARTIFACTS / f"{name}-phone.png", full_page=full_page)
    page.set_viewport_size(LAPTOP)
