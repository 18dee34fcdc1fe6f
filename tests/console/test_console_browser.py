"""The console in a real headless Chromium against a live rapport: every screen, as a
person would use it, with screenshots of each (see tests/console/conftest.py)."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

from tests import factories
from tests.app.helpers import register_subject
from tests.conftest import LiveServer
from tests.console.conftest import ADMIN_KEY, shoot
from tests.fake_openai_server import FakeOpenAI

XSS = "<img src=x onerror=window.__pwned=1>"


def sign_in(page: Any, server: LiveServer, key: str) -> None:
    page.goto(f"{server.url}/console")
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")


def drop_file(page: Any, selector: str, name: str, data: bytes) -> None:
    """A real drop event carrying the file, as a person dragging it from their desktop."""
    page.evaluate(
        """([selector, name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            document.querySelector(selector).dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [selector, name, base64.b64encode(data).decode()],
    )


def wait_until(page: Any, expression: str, arg: Any = None, timeout_s: float = 15) -> None:
    """Poll a JavaScript condition until it holds (page.wait_for_function would evaluate
    it with eval, which the console's CSP rightly refuses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"never true: {expression}"
        page.wait_for_timeout(50)


def concept_card(page: Any, name: str) -> Any:
    return page.locator(".concept").filter(has=page.locator(".name").get_by_text(name, exact=True))


def only_loopback(page: Any, server: LiveServer, expected_error: str | None = None) -> None:
    outside = [url for url in page.requests if not url.startswith((server.url, "blob:", "data:"))]
    assert outside == [], outside
    assert page.evaluate("window.__pwned") is None  # no user text ever ran as HTML
    errors = [e for e in page.errors if expected_error is None or expected_error not in e]
    assert errors == [], errors  # CSP violations and script errors land here


def test_a_wrong_key_is_refused_with_a_clear_message(page: Any, console_server: LiveServer) -> None:
    sign_in(page, console_server, "rk_nothere_0123456789")
    error = page.locator("#signin-error")
    error.wait_for()
    assert "not accepted" in error.inner_text() and "revoked or expired" in error.inner_text()
    assert page.evaluate("sessionStorage.length") == 0
    shoot(page, "0-sign-in-refused")
    page.errors.clear()  # the refused requests log a 401 each; nothing else may
    only_loopback(page, console_server)


def test_a_tenant_creates_sees_searches_asks_and_erases(
    page: Any, console_server: LiveServer, backend: FakeOpenAI, tmp_path: Path
) -> None:
    server = console_server
    key = server.new_key("acme")
    api = server.client(key)
    for user, subject in (("bob", "backpack"), ("carol", "cat"), ("dave", "clock")):
        register_subject(api, user, subject, count=2)
    sign_in(page, server, key)
    page.locator("#tabs a[data-tab=users]").wait_for()
    assert page.evaluate("sessionStorage.getItem('rapport.key')") == key
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    assert key not in page.url
    # A reload keeps the tab signed in; another tab (a new context) is not.
    page.reload()
    page.locator("#tabs a[data-tab=users]").wait_for()
    other = page.context.browser.new_context().new_page()
    other.goto(f"{server.url}/console")
    other.locator("#signin-form").wait_for()
    assert other.evaluate("sessionStorage.length") == 0
    other.context.close()

    # Concepts: a new user's first concept from the file input, with real photos.
    page.click("#tabs a[data-tab=concepts]")
    page.fill("#concept-user", "alice")
    page.click("form.inline button[type=submit]")
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        (photos / f"dog{index}.jpg").write_bytes(factories.photo("dog", index))
    page.set_input_files(".creator input[type=file]", [str(p) for p in sorted(photos.iterdir())])
    page.fill(".new-concept input[name=name]", "<dog>")
    page.fill(".new-concept textarea[name=description]", "a corgi who loves the beach")
    page.fill(".new-concept input[name=category]", "dog")
    page.click(".new-concept button[type=submit]")
    card = concept_card(page, "<dog>")
    card.wait_for()
    assert "3 photos" in card.inner_text()
    wait_until(page, "document.querySelector('.concept img')?.src.startsWith('blob:')")

    # The XSS name and description render as text, never as HTML.
    (photos / "cat.jpg").write_bytes(factories.photo("cat", 0))
    page.set_input_files(".creator input[type=file]", str(photos / "cat.jpg"))
    page.fill(".new-concept input[name=name]", XSS)
    page.fill(".new-concept textarea[name=description]", XSS)
    page.click(".new-concept button[type=submit]")
    hostile = concept_card(page, XSS)
    hostile.wait_for()
    assert hostile.locator(".name").inner_text() == XSS
    assert hostile.locator(".description").inner_text() == XSS
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("window.__pwned") is None

    # A concept made of the same photo is flagged as looking like the first one.
    (photos / "twin.jpg").write_bytes(factories.photo("dog", 2))
    page.set_input_files(".creator input[type=file]", str(photos / "twin.jpg"))
    page.fill(".new-concept input[name=name]", "twin")
    page.click(".new-concept button[type=submit]")
    twin = concept_card(page, "twin")
    twin.wait_for()
    assert re.search(r"looks like <dog>, 1\.00", twin.locator(".warning").inner_text())
    wait_until(
        page,
        "[...document.querySelectorAll('.concept img')]"
        ".every((i) => i.src.startsWith('blob:') && i.complete)",
    )
    shoot(page, "2-concepts")

    # Edit: rename.
    twin.click()
    dialog = page.locator("dialog.editor")
    dialog.locator("input[name=name]").fill("twin dog")
    dialog.locator("button[type=submit]").click()
    concept_card(page, "twin dog").wait_for()
    names = {c["name"] for c in api.get("/v1/users/alice/concepts").json()["items"]}
    assert names == {"<dog>", XSS, "twin dog"}
    # Add a photo in the editor (its photos shown from blob URLs), then remove it again.
    concept_card(page, "<dog>").click()
    wait_until(
        page,
        "document.querySelectorAll('dialog.editor img').length === 3 && "
        "[...document.querySelectorAll('dialog.editor img')]"
        ".every((i) => i.src.startsWith('blob:') && i.complete)",
    )
    shoot(page, "3-concept-editor", full_page=False)
    page.set_input_files("dialog.editor input[type=file]", str(photos / "cat.jpg"))
    concept_card(page, "<dog>").filter(has_text="4 photos").wait_for()
    concept_card(page, "<dog>").click()
    page.locator("dialog.editor figure").nth(3).locator("button.remove").click()
    concept_card(page, "<dog>").filter(has_text="3 photos").wait_for()

    # Playground on the service's defaults: the decision rule decides, a threshold per
    # concept (random weights: none that a photo reaches), and the page says so.
    page.click("#tabs a[data-tab=playground]")
    page.fill("#question", "What is <dog> doing?")
    drop_file(page, ".inputs .drop", "query.jpg", factories.photo("dog", 4))
    page.locator("#scores li").first.wait_for()
    assert page.locator("#min-score-value").inner_text() == "decision rule (per concept)"
    assert (
        "each concept's threshold, from the decision rule"
        in page.locator("#scores-line").inner_text()
    )
    assert "Name: <dog>, Info: a corgi who loves the beach" in page.locator("#prompt").inner_text()
    assert page.locator("#ask").is_enabled()
    assert page.errors == []
    # A fixed min_score from the slider: the dog found with a score, grid regions drawn.
    page.eval_on_selector(
        "#min-score", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }"
    )
    page.locator("#scores li.kept").first.wait_for()
    assert page.locator("#min-score-value").inner_text() == "0.00"
    assert page.locator("#photo-frame .box.region").count() == 4  # a 2 x 2 grid
    found = page.locator("#photo-frame .box.found")
    assert found.count() >= 1
    assert page.locator("#scores li.kept").count() <= 3  # top_k
    first = page.locator("#scores li").first
    assert re.fullmatch(r"\d\.\d{3}", first.locator(".score").inner_text())
    assert page.locator("#named .chip").inner_text() == "<dog>"
    prompt = page.locator("#prompt").inner_text()
    assert "Name: <dog>, Info: a corgi who loves the beach" in prompt
    assert "What is <dog> doing?" in prompt
    assert page.locator("#prompt figcaption", has_text="reference photo").count() >= 1
    # min_score past every score: nothing is found, the prompt names no concept.
    page.eval_on_selector(
        "#min-score", "e => { e.value = 1; e.dispatchEvent(new Event('input')); }"
    )
    wait_until(page, "document.querySelectorAll('#scores li.kept').length === 0")
    assert page.locator("#photo-frame .box.found").count() == 0
    page.eval_on_selector(
        "#min-score", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }"
    )
    page.locator("#scores li.kept").first.wait_for()
    # Reset: back to the decision rule.
    page.click("#use-rule")
    wait_until(
        page,
        "document.querySelector('#scores-line')?.textContent.includes('decision rule')",
    )
    page.eval_on_selector(
        "#min-score", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }"
    )
    page.locator("#scores li.kept").first.wait_for()
    # "Not <dog>": the photo becomes a correction, and the next search no longer claims it
    # for the dog, even at min_score 0.
    dog_row = page.locator("#scores li.kept", has_text="<dog>")
    dog_id = dog_row.get_attribute("data-concept")
    dog_row.locator("button.not").click()
    wait_until(
        page,
        "(id) => !document.querySelector(`#scores li.kept[data-concept='${id}']`)",
        dog_id,
    )
    negatives = api.get(f"/v1/users/alice/concepts/{dog_id}/negatives").json()["items"]
    assert len(negatives) == 1
    assert (
        api.delete(f"/v1/users/alice/concepts/{dog_id}/negatives/{negatives[0]['id']}").status_code
        == 204
    )
    page.click("#run")
    page.locator("#scores li.kept", has_text="<dog>").wait_for()
    # The answer streams from the OpenAI-compatible backend.
    page.click("#ask")
    wait_until(
        page,
        "(reply) => document.querySelector('#answer-text')?.textContent === reply",
        backend.reply,
    )
    assert backend.requests[-1]["stream"] is True
    page.locator("#answer .fine").wait_for()
    shoot(page, "4-playground")

    # Delete a concept from its editor, with confirmation.
    page.click("#tabs a[data-tab=concepts]")
    concept_card(page, "twin dog").click()
    page.click("dialog.editor button.danger")
    page.click("dialog.confirm button.danger")
    concept_card(page, "twin dog").wait_for(state="detached")

    # Users: alice with her counts; export, then erase with confirmation.
    page.click("#tabs a[data-tab=users]")
    row = page.locator("tr[data-user=alice]")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == ["2", "4"]
    shoot(page, "1-users")
    with page.expect_download() as download:
        row.locator("button", has_text="Export").click()
    assert download.value.suggested_filename == "alice-rapport-export.zip"
    row.locator("button", has_text="Erase").click()
    page.locator("dialog.confirm").wait_for()
    shoot(page, "5-erase-confirm", full_page=False)
    page.click("dialog.confirm button.danger")
    row.wait_for(state="detached")
    assert api.get("/v1/users/alice").status_code == 404
    only_loopback(page, server)


def test_the_playground_on_the_defaults_shows_the_decision_rules_thresholds(
    browser: Any, real_console_server: LiveServer
) -> None:
    server = real_console_server
    key = server.new_key("acme")
    api = server.client(key)
    for subject in ("dog", "cat", "backpack"):
        register_subject(api, "alice", subject)
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.extend([m.text] if m.type == "error" else []))
    sign_in(page, server, key)
    page.click("#tabs a[data-tab=playground]")
    page.fill("#play-user", "alice")
    held_out = factories.photo("dog", factories.photo_count("dog") - 1)
    drop_file(page, ".inputs .drop", "query.jpg", held_out)
    page.locator("#scores li.kept").first.wait_for()
    assert errors == []
    assert page.locator("#min-score-value").inner_text() == "decision rule (per concept)"
    assert "decision rule" in page.locator("#scores-line").inner_text()
    # Each concept's line is drawn at its own threshold, the one the API reports.
    rows = page.locator("#scores li")
    names = [rows.nth(i).locator(".name").inner_text() for i in range(rows.count())]
    assert set(names) == {"dog", "cat", "backpack"}
    assert rows.first.locator(".name").inner_text() == "dog"
    assert rows.first.locator(".verdict").inner_text() == "found"
    title = rows.first.locator(".threshold").get_attribute("title") or ""
    assert re.fullmatch(r"threshold 0\.\d{3} \(decision rule\)", title), title
    assert page.locator("#photo-frame .box.found .tag").first.inner_text().startswith("dog ")
    assert "Name: dog, Info: the user's dog" in page.locator("#prompt").inner_text()
    # No generator configured: the Ask button says why it is off.
    assert page.locator("#ask").is_disabled()
    assert "RAPPORT_GENERATOR=none" in (page.locator("#ask").get_attribute("title") or "")
    shoot(page, "8-playground-defaults")
    assert errors == []
    page.context.close()


def test_the_admin_lists_tenants_creates_a_key_shown_once_and_revokes_it(
    page: Any, console_server: LiveServer
) -> None:
    server = console_server
    register_subject(server.client(server.new_key("acme")), "alice", "dog", count=3)
    sign_in(page, server, ADMIN_KEY)
    page.locator("#tenants tr[data-tenant=acme]").wait_for()
    page.fill("#new-tenant", "globex")
    page.click("form.inline button[type=submit]")
    page.locator("#tenants tr[data-tenant=globex]").wait_for()
    wait_until(
        page,
        "!document.querySelector('#tenants tr[data-tenant=globex] .usage')"
        ".textContent.includes('…')",
    )
    page.click("#create-key")
    shown = page.locator("#new-key-value")
    shown.wait_for()
    new_key = shown.inner_text()
    assert new_key.startswith("rk_")
    shoot(page, "6-tenants-and-keys")
    client = server.client(new_key)
    assert client.get("/v1/users").status_code == 200
    # Shown once: listing the keys again shows the prefix only.
    page.click("#tenants tr[data-tenant=globex] button")
    page.locator("#new-key-value").wait_for(state="detached")
    assert new_key not in page.content()
    prefix = new_key.split("_")[1]
    page.click(f"tr[data-prefix='{prefix}'] button")
    page.click("dialog.confirm button.danger")
    page.locator(f"tr[data-prefix='{prefix}'] .chip.revoked").wait_for()
    assert client.get("/v1/users").status_code == 401
    # The admin key is no tenant key: the tenant screens are not offered, the API refuses.
    assert page.locator("#tabs a[data-tab=users]").count() == 0
    assert server.client(ADMIN_KEY).get("/v1/users").status_code == 401
    # Sign-in first tries the key as an app's: that one 401 is the browser's only complaint.
    only_loopback(page, server, expected_error="status of 401")


def test_the_api_docs_work_offline_and_authorize_sends_the_key(
    page: Any, console_server: LiveServer
) -> None:
    server = console_server
    key = server.new_key("acme")
    page.goto(f"{server.url}/docs")
    page.click("button.authorize")
    page.fill(".auth-container input", key)
    page.click(".auth-btn-wrapper button.authorize")
    page.click("button.btn-done")
    page.locator("button.authorize.locked").wait_for()  # the padlock closes: a key is set
    shoot(page, "7-api-docs", full_page=False)
    page.click("#operations-users-list_app_users_v1_users_get .opblock-summary")
    page.click("#operations-users-list_app_users_v1_users_get button.try-out__btn")
    page.click("#operations-users-list_app_users_v1_users_get button.execute")
    operation = page.locator("#operations-users-list_app_users_v1_users_get")
    status = operation.locator(".live-responses-table tbody .response-col_status")
    status.first.wait_for()
    assert status.first.inner_text().strip() == "200"
    page.goto(f"{server.url}/redoc")
    page.locator("h1", has_text="rapport").first.wait_for()
    only_loopback(page, server)


def test_the_playground_says_memory_updated_and_the_history_undoes_it(
    page: Any, console_server: LiveServer, backend: FakeOpenAI
) -> None:
    server = console_server
    key = server.new_key("acme")
    api = server.client(key)
    dog = register_subject(api, "alice", "dog", count=1)
    assert api.patch("/v1/users/alice", json={"memory": "auto"}).status_code == 200
    backend.call(("add_fact", {"concept": "dog", "fact": "loves the red ball"}))
    backend.say("Noted: <dog> loves the red ball.")
    sign_in(page, server, key)
    page.click("#tabs a[data-tab=playground]")
    page.fill("#play-user", "alice")
    page.fill("#question", "<dog>'s favourite toy is the red ball")
    page.click("#run")
    wait_until(page, "document.querySelector('#ask')?.disabled === false")
    page.select_option("#memory", "auto")
    page.click("#ask")
    page.locator("#memory-updated").wait_for()
    assert page.locator("#memory-updated").inner_text() == "✓ Memory updated: updated dog"
    assert backend.requests[-2]["tools"]
    shoot(page, "6-playground-memory")
    description = api.get(f"/v1/users/alice/concepts/{dog['id']}").json()["description"]
    assert description == "the user's dog; loves the red ball"

    page.click("#tabs a[data-tab=concepts]")
    page.fill("#concept-user", "alice")
    page.click("form.inline button[type=submit]")
    chat_event = page.locator("#history li.event.chat")
    chat_event.wait_for()
    assert "updated dog" in chat_event.inner_text()
    assert page.locator("#history li.event.api button.undo").count() == 0
    shoot(page, "7-history")
    chat_event.locator("button.undo").click()
    page.locator("#history li.event.undo").wait_for()
    assert api.get(f"/v1/users/alice/concepts/{dog['id']}").json()["description"] == (
        "the user's dog"
    )
    assert page.locator("#history button.undo").count() == 0
    only_loopback(page, server)
