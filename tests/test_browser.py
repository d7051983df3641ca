"""The dashboard in Debian's chromium (Playwright): keys, the request log and its details, spend and times."""

from __future__ import annotations

import re

import pytest

from tests.browser import browser, page, pytestmark, sdk_env, shot, sign_up  # noqa: F401


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
    shot(page, "dashboard-request-detail", full_page=False)  # the viewport, as seen
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
