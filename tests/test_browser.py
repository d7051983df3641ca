"""The web front end in Debian's chromium (Playwright) against a real gateway and simulated providers."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.browser, pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                 "(apt-get install -y chromium; CI's .ci/run installs it)")]

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
    allowed: list[re.Pattern] = []
    pg.allow_console_error = lambda pattern: allowed.append(re.compile(pattern))  # for a test's expected 4xx
    pg.on("console", lambda msg: problems.append(f"{msg.text} @ {msg.location}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on revoke
    # Every CSP violation becomes a console error too, whether or not chromium logs it by itself.
    pg.add_init_script("""document.addEventListener("securitypolicyviolation", e =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));""")
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
    unexpected = [p for p in problems if not any(a.search(p) for a in allowed)]
    assert unexpected == [], unexpected


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


def test_signup_key_sdk_log_spend_revoke(page, gateway, sdk_env):
    import openai

    base = gateway.url
    sign_up(page, base)
    assert page.input_value("#first-key").startswith("ky-")
    shot(page, "welcome")
    page.click("#to-dashboard")
    page.wait_for_load_state("domcontentloaded")  # deferred htmx has run: the next click is an htmx request
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


def test_request_detail_takes_focus_marks_its_row_and_closes_back_to_it(page, gateway, sdk_env):
    import openai
    from playwright.sync_api import expect

    page.clock.install()
    sign_up(page, gateway.url)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    for text in ("One", "Two"):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": text}], max_tokens=8)
    page.goto(f"{gateway.url}/dashboard")
    second = page.locator("#log-table tbody tr").nth(1)
    row_id = second.get_attribute("id")
    second.get_by_role("link", name=re.compile("^Details")).click()
    detail = page.locator("#request-detail article")
    expect(detail).to_be_focused()  # a screen reader hears the detail's heading
    expect(detail).to_be_in_viewport()  # not left below the fold
    expect(second).to_have_class(re.compile(r"\bselected\b"))
    assert second.get_attribute("aria-current") == "true"
    assert page.locator("#log-table tr.selected").count() == 1
    page.screenshot(path=str(SHOTS / "dashboard-request-detail.png"), caret="initial")  # the viewport, as seen
    second.evaluate("tr => tr.dataset.old = 'yes'")
    page.clock.fast_forward(10_500)  # the log refreshes its rows: the mark stays on the same request
    expect(page.locator(f"#{row_id}[data-old]")).to_have_count(0)  # a new row element
    expect(page.locator(f"#{row_id}")).to_have_class(re.compile(r"\bselected\b"))
    detail.get_by_role("button", name="Close").click()
    expect(page.locator("#request-detail article")).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == row_id.replace("req-", "details-")
    assert page.locator("#log-table tr.selected").count() == 0
    page.locator(f"#{row_id}").get_by_role("link", name=re.compile("^Details")).press("Enter")
    expect(detail).to_be_focused()
    page.keyboard.press("Escape")  # Escape closes too
    expect(page.locator("#request-detail article")).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == row_id.replace("req-", "details-")


def test_dashboard_refresh_updates_log_keys_and_spend_without_closing_history(page, gateway, sdk_env):
    import openai
    from playwright.sync_api import expect

    page.clock.install()  # the dashboard's 10 s refresh runs when the test moves the clock, not on a sleep
    sign_up(page, gateway.url)
    key = page.input_value("#first-key")
    page.click("#to-dashboard")
    page.wait_for_load_state("domcontentloaded")  # deferred htmx has run: the next click is an htmx request
    page.click("#credit-history summary")  # open the credit history
    assert page.locator("#log-table tbody tr").all_inner_texts() == ["No requests."]
    assert "never" in page.inner_text("#keys-table tbody")
    openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Hello"}], max_tokens=16)
    page.clock.fast_forward(10_500)
    expect(page.locator("#log-table tbody tr").first).to_contain_text("llama-3.3-70b")
    expect(page.locator("#keys-table tbody")).not_to_contain_text("never")  # "Last used" refreshed
    expect(page.locator("#spent-30d")).not_to_have_text("$0.00")
    assert page.get_attribute("#credit-history", "open") is not None  # the refresh left it open
    assert "signup" in page.inner_text("#credit-table").lower()


def test_welcome_shows_the_key_once_with_snippets_and_copy_buttons(browser, gateway):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        email = sign_up(page, gateway.url)
        key = page.input_value("#first-key")
        assert page.url.endswith("/welcome")  # a reload GETs /welcome instead of re-posting the form
        assert key in page.inner_text("#snippet-openai") and key in page.inner_text("#snippet-claude")
        page.click("button[data-copy=first-key]")
        assert page.evaluate("navigator.clipboard.readText()") == key
        assert page.inner_text("button[data-copy=first-key]") == "Copied"
        page.click("button[data-copy=snippet-curl]")
        assert page.evaluate("navigator.clipboard.readText()").startswith(f"export KYMA_API_KEY={key}\ncurl ")
        shot(page, "welcome-snippets")
        page.reload()
        assert page.locator("#key-shown-once").is_visible() and key not in page.content()
        assert email in page.inner_text("h1")
        page.click("#to-dashboard")  # the swapped-in page carries the new session's CSRF token
        page.fill("#key-name", "after-welcome")
        page.click("#create-key button[type=submit]")
        page.wait_for_selector("#new-key")
    finally:
        context.close()


def test_signup_errors_show_in_the_form(page, gateway):
    email = sign_up(page, gateway.url)
    page.click("button:has-text('Log out')")
    page.goto(f"{gateway.url}/signup")
    page.allow_console_error(r"409")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#form-error")
    assert "already" in page.inner_text("#form-error").lower() and page.url.endswith("/signup")


def test_htmx_error_responses_land_in_the_flash_area(page, gateway):
    base = gateway.url
    sign_up(page, base)
    page.goto(f"{base}/dashboard")
    csrf = page.input_value("#create-key input[name=csrf_token]")
    for i in range(49):  # the sign-up key plus 49 more is the limit
        resp = page.request.post(f"{base}/dashboard/keys", form={"name": f"k{i}"},
                                 headers={"X-CSRF-Token": csrf, "Origin": base, "HX-Request": "true"})
        assert resp.status == 201
    page.reload()
    keys_before = page.locator("#keys tbody tr").count()
    page.allow_console_error(r"status of 409|Response Status Error Code 409")  # the browser and htmx log a 4xx
    page.fill("#key-name", "one-too-many")
    page.click("#create-key button[type=submit]")
    alert = page.wait_for_selector("#flash [role=alert]")
    assert "at most 50 active keys" in alert.inner_text()
    assert page.locator("#keys tbody tr").count() == keys_before  # the error went to #flash, not over the table
    shot(page, "dashboard-key-limit-error")


def test_a_blank_key_name_gets_an_error_in_the_form(page, gateway):
    from playwright.sync_api import expect

    sign_up(page, gateway.url)
    page.click("#to-dashboard")
    page.wait_for_load_state("domcontentloaded")  # deferred htmx has run: the next click is an htmx request
    keys_before = page.locator("#keys-table tbody tr").count()
    page.click("#create-key button[type=submit]")  # empty: the browser itself asks for a name
    assert page.evaluate("document.getElementById('key-name').validity.valueMissing")
    page.allow_console_error(r"status of 400|Response Status Error Code 400")
    page.fill("#key-name", "   ")
    page.click("#create-key button[type=submit]")
    expect(page.locator("#key-name-error")).to_contain_text("Give the key a name")
    expect(page.locator("#key-name")).to_be_focused()  # back where the name is typed
    assert page.get_attribute("#key-name", "aria-invalid") == "true"
    assert page.locator("#keys-table tbody tr").count() == keys_before
    page.fill("#key-name", "laptop")
    page.click("#create-key button[type=submit]")
    expect(page.locator("#new-key-box")).to_contain_text("laptop")
    assert page.locator("#key-name-error").count() == 0


def test_playground_streams_a_reply_and_shows_its_cost(page, gateway):
    open_playground(page, gateway.url, "fast")
    page.fill("#pg-system", "Be brief.")
    page.evaluate("""() => {  // record aria-busy changes on the log while the reply streams
      window.busy = [];
      const log = document.getElementById("pg-log");
      new MutationObserver(() => window.busy.push(log.getAttribute("aria-busy")))
        .observe(log, {attributes: true, attributeFilter: ["aria-busy"]});
    }""")
    send(page, "Tell me about websockets", 64)
    page.wait_for_selector("#pg-summary:not([hidden])")
    assert page.evaluate("window.busy") == ["true", None]  # busy while streaming, then cleared
    reply = page.locator(".msg.assistant .text").last.inner_text()
    assert "websockets" in reply.lower()  # the simulator echoes the prompt
    summary = page.inner_text("#pg-summary")
    assert "llama-3.3-70b" in summary and "via alias fast" in summary
    assert re.search(r"Cost\s+\$0\.0000\d\d", summary)
    assert page.inner_text("#pg-state") == "Done."
    shot(page, "playground")
    cost = re.search(r"Cost\s+(\S+)", summary).group(1)
    page.goto(f"{gateway.url}/dashboard/requests")
    assert "llama-3.3-70b" in page.inner_text("#log-table")  # billed and logged like an API call
    assert page.inner_text("#log-table td[data-label=Cost]") == cost  # written the same way on both pages


# The x position of each cost cell's decimal point.
DECIMAL_POINTS = """() => [...document.querySelectorAll("#log-table td[data-label=Cost]")].map(td => {
  const text = td.firstChild, range = document.createRange();
  range.setStart(text, text.data.indexOf(".")); range.setEnd(text, text.data.indexOf(".") + 1);
  return range.getBoundingClientRect().left; })"""


def test_costs_line_up_in_the_request_log(page, gateway, sdk_env):
    import openai

    sign_up(page, gateway.url)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    with pytest.raises(openai.NotFoundError):  # logged, and free
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    page.goto(f"{gateway.url}/dashboard")
    costs = page.locator("#log-table td[data-label=Cost]").all_inner_texts()
    assert len(costs) == 2 and all(re.fullmatch(r"\$\d+\.\d{6}", c) for c in costs), costs
    style = page.locator("#log-table td[data-label=Cost]").first.evaluate(
        "td => [getComputedStyle(td).textAlign, getComputedStyle(td).fontVariantNumeric]")
    assert style == ["right", "tabular-nums"]
    points = page.evaluate(DECIMAL_POINTS)
    assert max(points) - min(points) < 0.5, points  # right-aligned, same decimals: the points line up


def test_playground_error_before_any_output_leaves_no_orphan_bubbles(page, gateway):
    from playwright.sync_api import expect

    open_playground(page, gateway.url)
    page.evaluate("""() => {  // a model the server does not know: an error before any token
      const opt = document.createElement("option");
      opt.value = opt.textContent = "no-such-model";
      document.getElementById("pg-model").appendChild(opt);
    }""")
    page.select_option("#pg-model", "no-such-model")
    send(page, "Hello?")
    expect(page.locator("#pg-state")).to_have_text(re.compile(r"^Error 404"))
    assert page.locator("#pg-log .msg").count() == 0  # neither the user's bubble nor an empty reply remain
    assert page.get_attribute("#pg-log", "aria-busy") is None
    page.select_option("#pg-model", "fast")
    send(page, "Hello again")
    page.wait_for_selector("#pg-summary:not([hidden])")
    assert page.locator("#pg-log .msg.user").all_inner_texts() == ["You\nHello again"]


def record_starts(page) -> list[dict]:
    """The playground's `start` messages, as the page sends them over its websocket."""
    import json

    starts: list[dict] = []

    def watch(ws):
        ws.on("framesent", lambda payload: starts.append(json.loads(payload))
              if isinstance(payload, str) and '"start"' in payload else None)

    page.on("websocket", watch)
    return starts


def test_playground_new_chat_mid_reply_stops_it_and_starts_clean(page, slow_gateway):
    from playwright.sync_api import expect

    starts = record_starts(page)
    open_playground(page, slow_gateway.url)
    send(page, "Tell me a long story about rivers", 400)
    expect(page.locator("#pg-state")).to_have_text("Streaming…")
    page.click("#pg-clear")  # while the reply streams
    assert page.locator("#pg-log .msg").count() == 0
    assert page.is_enabled("#pg-send") and page.is_disabled("#pg-stop")
    send(page, "A new question", 8)
    expect(page.locator("#pg-state")).to_have_text("Done.")
    # The abandoned reply neither reappears nor rides along as context.
    assert starts[-1]["messages"] == [{"role": "user", "content": "A new question"}]
    assert page.locator("#pg-log .msg").count() == 2
    page.goto(f"{slow_gateway.url}/dashboard/requests")
    statuses = page.locator("#log-table tbody tr td:nth-child(3)").all_inner_texts()
    assert sorted(statuses) == ["200", "499 stopped"]  # the abandoned reply was stopped and billed


def test_playground_stop_shows_what_it_cost_and_never_a_stale_summary(page, slow_gateway):
    from playwright.sync_api import expect

    open_playground(page, slow_gateway.url, "fast")
    send(page, "First question", 8)
    expect(page.locator("#pg-summary")).to_be_visible()
    send(page, "Tell me a long story about rivers", 400)
    assert page.evaluate("document.activeElement.id") == "pg-prompt"  # focus stays where typing goes
    expect(page.locator("#pg-state")).to_have_text("Streaming…")
    expect(page.locator("#pg-summary")).to_be_hidden()  # the first turn's facts are not shown as this one's
    page.click("#pg-stop")
    expect(page.locator("#pg-state")).to_have_text("Stopped.")
    expect(page.locator("#pg-summary")).to_be_visible()
    summary = page.inner_text("#pg-summary")
    assert re.search(r"Cost\s+\$0\.0000\d\d", summary) and "llama-3.3-70b" in summary
    tokens_out = int(re.search(r"(\d+) out", summary).group(1))
    assert 0 < tokens_out < 400  # the stopped reply's own usage, billed


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


def test_model_filter_by_typing_a_number_and_enter(page, gateway):
    from playwright.sync_api import expect

    page.goto(f"{gateway.url}/models")
    page.locator("#f-min_context_window").press_sequentially("200000")  # typed, not the spinner arrows
    expect(page.locator("#model-count")).not_to_have_text(re.compile(r"^16 of 16"))
    typed = page.inner_text("#model-count")
    windows = page.locator("table.models tbody tr").evaluate_all("rows => rows.map(r => r.dataset.context)")
    assert windows and all(int(w) >= 200000 for w in windows)
    assert page.url.endswith("/models?min_context_window=200000")  # only the filters in use, linkable
    page.fill("#f-max_input_price", "0.3")
    page.press("#f-max_input_price", "Enter")  # Enter filters in place, no full-page submit
    expect(page.locator("#model-count")).not_to_have_text(typed)
    prices = page.locator("table.models tbody tr").evaluate_all("rows => rows.map(r => r.dataset.inputPrice)")
    assert all(float(p) <= 0.3 for p in prices)
    assert page.url.endswith("/models?min_context_window=200000&max_input_price=0.3")
    both = page.inner_text("#model-count")
    page.reload()  # the URL alone restores the filtered view
    assert page.input_value("#f-max_input_price") == "0.3"
    assert page.inner_text("#model-count") == both


def test_times_show_in_the_readers_zone_with_its_name(browser, gateway, sdk_env):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import openai
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1200, "height": 900}, timezone_id="America/New_York")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_up(page, gateway.url)
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0) \
            .chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        page.goto(f"{gateway.url}/dashboard")
        page.locator("#log-table .actions a").first.click()
        page.wait_for_selector("#request-detail time")  # swapped in by htmx, localized too
        formats = {"short": "%m-%d %H:%M:%S", "seconds": "%Y-%m-%d %H:%M:%S", "minutes": "%Y-%m-%d %H:%M"}
        times = page.locator("main time").evaluate_all(
            "ts => ts.map(t => [t.getAttribute('datetime'), t.dataset.local, t.textContent])")
        assert {style for _, style, _ in times} == set(formats)  # the log, the detail, keys and credits
        for stamp, style, shown in times:
            local = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(ZoneInfo("America/New_York"))
            assert shown == f"{local.strftime(formats[style])} {local.strftime('%Z')}", (stamp, shown)
        expect(page.locator("#log-table time").first).to_have_attribute("title", re.compile(r" UTC$"))
    finally:
        context.close()
    assert errors == []


PHONE = {"width": 390, "height": 844}

# Everything a page shows must fit the phone's width: no element reaches past the viewport's right edge
# (a scrollable code block's content is inside its box, so the box is what is measured).
OVERFLOWING = """() => [...document.querySelectorAll("main *, header *")]
  .filter(e => e.getClientRects().length && !e.closest(".sr-only, thead"))
  .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
  .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className)"""


def test_every_page_fits_a_phone(browser, gateway, sdk_env):
    import openai

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        for path in ("/", "/models", "/status", "/login", "/signup"):
            page.goto(gateway.url + path)
            assert page.evaluate(OVERFLOWING) == [], path
            shot(page, f"phone-{path.strip('/') or 'landing'}")
        nav = page.locator(".top nav").bounding_box()
        assert nav["height"] < 60  # logged out, the nav is one row: "Sign up" does not wrap alone
        sign_up(page, gateway.url)
        assert page.evaluate(OVERFLOWING) == [], "welcome"  # the one-time key is shown whole
        key = page.input_value("#first-key")
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0).chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        for path in ("/dashboard", "/playground", "/dashboard/requests"):
            page.goto(gateway.url + path)
            assert page.evaluate(OVERFLOWING) == [], path
            shot(page, f"phone-{path.strip('/').replace('/', '-')}")
        page.goto(gateway.url + "/dashboard")
        masked = page.locator("#keys-table code").first.bounding_box()
        assert masked["height"] < 30  # the masked key is on one line, not one character per line
        revoke = page.get_by_role("button", name=re.compile("^Revoke key")).first.bounding_box()
        assert revoke["x"] + revoke["width"] <= PHONE["width"]
        page.goto(gateway.url + "/playground")
        conversation = page.locator("#pg-log").bounding_box()
        form = page.locator("#play-form").bounding_box()
        assert conversation["y"] < form["y"]  # the reply shows above the form, not off screen below it
    finally:
        context.close()


@pytest.mark.parametrize("path,name", [("/", "landing"), ("/status", "status"), ("/login", "login"),
                                       ("/signup", "signup")])
def test_public_pages_render_without_errors(page, gateway, path, name):
    page.goto(f"{gateway.url}{path}")
    assert page.locator("main h1").count() == 1
    shot(page, name)


CONTRAST_JS = """
const rgb = c => c.startsWith("#") ? [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)) : (c.match(/[\\d.]+/g) || []).map(Number);
const lum = c => c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
  .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
"""

# Every element's own visible text against the background it is drawn on: 4.5:1, or 3:1 for large text.
LOW_CONTRAST_TEXT = "() => {" + CONTRAST_JS + """
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const ownText = el => [...el.childNodes].some(n => n.nodeType === 3 && n.data.trim());
  return [...document.querySelectorAll("body *")]
    .filter(el => ownText(el) && el.getClientRects().length && getComputedStyle(el).visibility === "visible"
                  && !el.closest(".sr-only, noscript, :disabled"))
    .map(el => {
      const s = getComputedStyle(el), size = parseFloat(s.fontSize);
      const need = size >= 24 || (+s.fontWeight >= 700 && size >= 18.66) ? 3 : 4.5;
      const r = ratio(rgb(el instanceof SVGElement ? s.fill : s.color), background(el));
      return r < need ? `${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${r.toFixed(2)}` : null;
    }).filter(Boolean);
}"""

# Focus rings, field borders, chart bars and status cells against what they sit on: 3:1.
LOW_CONTRAST_SHAPES = "() => {" + CONTRAST_JS + """
  const v = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const pairs = [["--accent", "--bg"], ["--accent", "--card"], ["--accent", "--field"], ["--field-line", "--card"],
                 ["--field-line", "--field"], ["--good", "--card"], ["--fair", "--card"], ["--bad", "--card"],
                 ["--highlight", "--top"]];
  return pairs.filter(([a, b]) => ratio(rgb(v(a)), rgb(v(b))) < 3).map(p => p.join(" on "));
}"""


@pytest.mark.parametrize("scheme,background", [("light", "rgb(246, 247, 249)"), ("dark", "rgb(13, 17, 23)")])
def test_every_page_reads_well_in_light_and_dark(page, gateway, sdk_env, scheme, background):
    import openai

    page.emulate_media(color_scheme=scheme)

    def check(name: str) -> None:
        assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == background
        assert page.evaluate(LOW_CONTRAST_TEXT) == [], name
        shot(page, f"{scheme}-{name}")

    for path in ("/", "/models", "/status", "/login", "/signup"):
        page.goto(gateway.url + path)
        check(path.strip("/") or "landing")
    assert page.evaluate(LOW_CONTRAST_SHAPES) == []
    sign_up(page, gateway.url)
    check("welcome")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    with pytest.raises(openai.NotFoundError):  # a failed request: its red tag is checked too
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    page.goto(f"{gateway.url}/dashboard")
    page.click("#credit-history summary")
    page.locator("#log-table tbody tr", has_text="llama").get_by_role("link", name=re.compile("^Details")).click()
    page.wait_for_selector("#request-detail article")
    page.wait_for_selector("#dashboard-uptime table")
    check("dashboard")
    page.goto(f"{gateway.url}/account")
    check("account")
    page.goto(f"{gateway.url}/playground")
    send(page, "Hello")
    page.wait_for_selector("#pg-summary:not([hidden])")
    check("playground")
    page.goto(f"{gateway.url}/dashboard/requests")
    page.locator("#log-table .actions a").first.click()
    page.wait_for_selector("#request-detail article")
    href = page.get_attribute("#log-table .actions a", "href")
    page.goto(gateway.url + href)
    check("request-detail")
