"""Forms, errors and the model catalog's filters in Debian's chromium, and each public page renders."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.browser import PASSWORD, browser, page, pytestmark, shot, sign_up  # noqa: F401


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
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}

    def create(i: int) -> int:
        return requests.post(f"{base}/dashboard/keys", data={"name": f"k{i}"}, cookies=cookies, timeout=30,
                             headers={"X-CSRF-Token": csrf, "Origin": base, "HX-Request": "true"}).status_code

    # The sign-up key plus 49 more is the limit; made side by side in this session, not one after another.
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(create, range(49))) == [201] * 49
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


def test_public_pages_render_without_errors(page, gateway):
    # One signed-out context for all four: they keep no state, and the page fixture fails the test on any
    # console error or CSP violation, each with the address it came from.
    for path, name in (("/", "landing"), ("/status", "status"), ("/login", "login"), ("/signup", "signup")):
        page.goto(f"{gateway.url}{path}")
        assert page.locator("main h1").count() == 1, path
        shot(page, name)
