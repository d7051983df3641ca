"""The web front end in Debian's chromium (Playwright) against a real gateway and simulated providers."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                "(apt-get install -y chromium; CI's .ci/run installs it)")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PASSWORD = "browser-pw-1"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    """A fresh browser context; console errors and page errors (CSP violations included) fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda msg: problems.append(f"{msg.text} @ {msg.location}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on revoke
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
    assert problems == [], problems


@pytest.fixture()
def sdk_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": hiding the caret injects a <style>, which our CSP (rightly) blocks.
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, caret="initial")


def sign_up(page, base: str) -> str:
    email = f"browser-{time.time_ns()}@example.com"
    page.goto(f"{base}/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#first-key")
    return email


def test_signup_key_sdk_log_spend_revoke(page, gateway, sdk_env):
    import openai

    base = gateway.url
    sign_up(page, base)
    assert page.input_value("#first-key").startswith("ky-")
    shot(page, "welcome")
    page.click("#to-dashboard")
    assert page.inner_text("#balance") == "$0.50"  # the signup credit
    page.evaluate("window.kymaMarker = 'same page'")  # survives only if nothing reloads the page

    page.fill("#key-name", "sdk-key")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-key")
    key = page.input_value("#new-key")
    assert key.startswith("ky-")
    assert page.evaluate("window.kymaMarker") == "same page"  # an htmx swap, not a reload
    shot(page, "dashboard-new-key")

    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hello there"}],
                                          max_tokens=40)
    assert reply.choices[0].message.content

    page.reload()
    page.evaluate("window.kymaMarker = 'same page'")
    row = page.locator("#log-table tbody tr").first
    assert "llama-3.3-70b" in row.inner_text() and "simulated" in row.inner_text()
    assert page.inner_text("#spent-30d") != "$0.00"
    assert page.locator("#model-chart rect.bar").count() == 1
    row.locator("a", has_text="Details").click()
    page.wait_for_selector("#request-detail article")
    detail = page.inner_text("#request-detail")
    assert "Time to first token" in detail and "sim-" in detail and "simulated provider" in detail
    shot(page, "dashboard")

    page.locator("tr", has_text="sdk-key").get_by_role("button", name="Revoke key sdk-key").click()
    page.wait_for_selector("tr.revoked:has-text('sdk-key')")
    assert page.evaluate("window.kymaMarker") == "same page"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi again"}])


def test_playground_streams_a_reply_and_shows_its_cost(page, gateway):
    sign_up(page, gateway.url)
    page.goto(f"{gateway.url}/playground")
    page.select_option("#pg-model", "fast")
    page.fill("#pg-system", "Be brief.")
    page.fill("#pg-max-tokens", "64")
    page.fill("#pg-prompt", "Tell me about websockets")
    page.click("#pg-send")
    page.wait_for_selector("#pg-summary:not([hidden])")
    reply = page.locator(".msg.assistant .text").last.inner_text()
    assert "websockets" in reply.lower()  # the simulator echoes the prompt
    summary = page.inner_text("#pg-summary")
    assert "llama-3.3-70b" in summary and "via alias fast" in summary
    assert re.search(r"Cost\s+\$0\.0000\d\d", summary)
    assert page.inner_text("#pg-state") == "Done."
    shot(page, "playground")
    page.goto(f"{gateway.url}/dashboard/requests")
    assert "llama-3.3-70b" in page.inner_text("#log-table")  # billed and logged like an API call


def test_model_filter_narrows_the_catalog(page, gateway):
    from playwright.sync_api import expect

    page.goto(f"{gateway.url}/models")
    assert page.locator("table.models tbody tr").count() == 16
    page.select_option("#f-cost_tier", "cheap")
    expect(page.locator("#model-count")).to_have_text(re.compile(r"^4 of 16"))
    ids = page.locator("table.models tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)")
    assert set(ids) == {"glm-4.7-flash", "gemma-4-31b", "gpt-oss-120b", "glm-4.5-air"}
    assert "cost_tier=cheap" in page.url  # hx-push-url keeps the filter linkable
    page.check("#f-vision")
    expect(page.locator("#model-count")).to_have_text(re.compile(r"^1 of 16"))
    assert page.locator("table.models tbody tr").first.get_attribute("data-model") == "gemma-4-31b"
    shot(page, "models")


@pytest.mark.parametrize("path,name", [("/", "landing"), ("/status", "status"), ("/login", "login"),
                                       ("/signup", "signup")])
def test_public_pages_render_without_errors(page, gateway, path, name):
    page.goto(f"{gateway.url}{path}")
    assert page.locator("main h1").count() == 1
    shot(page, name)
