"""What the browser test modules share: chromium under Playwright, a checked page, sign-up, the playground."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.browser, pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                 "(apt-get install -y chromium; CI's .ci/run installs it)")]

# A renderer process limit of one stops chromium from starting a spare renderer, ahead of a navigation
# that never comes, for every browser context: the limit is soft (each context still gets its own
# process, as contexts cannot share one), so it only keeps pages of one context in one process.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--renderer-process-limit=1"]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Screenshots are for a person to look at and no test checks them, while each costs chromium real
# work: taken only when asked for.
TAKE_SHOTS = os.environ.get("KYMA_TEST_SCREENSHOTS", "") not in ("", "0")
PASSWORD = "browser-pw-1"
WAIT_MS = 20_000  # the longest a test waits for the page: a bound, not a timing claim


class SharedChromium:
    """One chromium (and Playwright driver) per pytest process, launched by the first browser test.

    Each launch costs more than a second of CPU, so browser tests that run one after another share
    it, across modules too; conftest closes it before any other test, because between calls the
    Playwright driver leaves its event loop marked as running, which asyncio.run() refuses.
    Tests stay apart through a fresh browser context each (the `page` fixture).
    """

    def __init__(self) -> None:
        self._playwright = None
        self._browser = None

    def get(self):
        """The running chromium, launched (again) when there is none or it went away."""
        if self._browser is not None and not self._browser.is_connected():
            self.close()
        if self._browser is None:
            from playwright.sync_api import expect, sync_playwright

            # expect() has its own default (5 s) apart from the page's: both bound a wait for the page,
            # so both get WAIT_MS, generous for a busy machine.
            expect.set_options(timeout=WAIT_MS)
            self._playwright = sync_playwright().start()
            try:
                self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            except BaseException:
                self.close()
                raise
        return self._browser

    def close(self) -> None:
        """Close chromium and stop the driver, if they run."""
        playwright, browser, self._playwright, self._browser = self._playwright, self._browser, None, None
        try:
            if browser is not None and browser.is_connected():
                browser.close()
        finally:
            if playwright is not None:
                playwright.stop()


SHARED = SharedChromium()


@pytest.fixture()
def browser():
    """This pytest process's chromium (SharedChromium)."""
    return SHARED.get()


@pytest.fixture()
def page(browser):
    """A fresh browser context; console errors and page errors (CSP violations included) fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    allowed: list[re.Pattern] = []
    pg.allow_console_error = lambda pattern: allowed.append(re.compile(pattern))  # for a test's expected 4xx
    pg.on("console", lambda msg: problems.append(f"{msg.text} @ {msg.location}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: problems.append(f"{exc} @ {pg.url}"))
    pg.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on revoke
    # Every CSP violation becomes a console error too, whether or not chromium logs it by itself.
    pg.add_init_script("""document.addEventListener("securitypolicyviolation", e =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));""")
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()
    unexpected = [p for p in problems if not any(a.search(p) for a in allowed)]
    assert unexpected == [], unexpected


@pytest.fixture()
def sdk_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def shot(page, name: str, full_page: bool = True) -> None:
    """Save a screenshot (whole page or viewport) as test-artifacts/screenshots/NAME.png if KYMA_TEST_SCREENSHOTS."""
    if not TAKE_SHOTS:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": hiding the caret injects a <style>, which our CSP (rightly) blocks.
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page, caret="initial")


def sign_up(page, base: str) -> str:
    email = f"browser-{time.time_ns()}@example.com"
    page.goto(f"{base}/signup")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#first-key")
    return email


def open_playground(page, base: str, model: str | None = None) -> None:
    """Sign up a fresh account and open its playground, with `model` chosen when given."""
    sign_up(page, base)
    page.goto(f"{base}/playground")
    if model:
        page.select_option("#pg-model", model)


def send(page, prompt: str, max_tokens: int | None = None) -> None:
    """Type a prompt into the playground (with a reply's token limit when given) and send it."""
    if max_tokens is not None:
        page.fill("#pg-max-tokens", str(max_tokens))
    page.fill("#pg-prompt", prompt)
    page.click("#pg-send")


def record_starts(page) -> list[dict]:
    """The playground's `start` messages, as the page sends them over its websocket."""
    import json

    starts: list[dict] = []

    def watch(ws):
        ws.on("framesent", lambda payload: starts.append(json.loads(payload))
              if isinstance(payload, str) and '"start"' in payload else None)

    page.on("websocket", watch)
    return starts



PHONE = {"width": 390, "height": 844}

# Everything a page shows must fit the phone's width: no element reaches past the viewport's right edge
# (a scrollable code block's content is inside its box, so the box is what is measured).
OVERFLOWING = """() => [...document.querySelectorAll("main *, header *")]
  .filter(e => e.getClientRects().length && !e.closest(".sr-only, thead"))
  .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
  .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className)"""
