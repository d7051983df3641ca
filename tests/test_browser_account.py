"""The account and device-approval pages in Debian's chromium (the browser fixtures of test_browser)."""

from __future__ import annotations

import requests

from tests.browser import PASSWORD, browser, page, pytestmark, shot, sign_up  # noqa: F401


def test_account_page_changes_the_password_by_keyboard(page, gateway):
    sign_up(page, gateway.url)
    page.goto(f"{gateway.url}/dashboard")
    page.click("#account-link")
    page.wait_for_selector("h1:text('Account')")
    assert page.locator("nav [aria-current=page]").get_attribute("href") == "/account"
    page.focus("#current-password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type("browser-pw-2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#account-notice")
    assert "Password changed" in page.inner_text("#account-notice")
    shot(page, "account")


def test_a_cli_device_code_is_approved_in_the_browser(page, gateway):
    email = sign_up(page, gateway.url)
    code = requests.post(f"{gateway.url}/v1/auth/device/code", json={"client_name": "kyma-cli"}, timeout=5).json()
    page.goto(code["verification_uri_complete"])
    assert page.inner_text("#device-code") == code["user_code"] and "kyma-cli" in page.inner_text("main")
    assert email in page.inner_text("main")
    page.click("#device-approve")
    page.wait_for_selector("#device-outcome")
    assert "Approved" in page.inner_text("#device-outcome")
    shot(page, "device-approved")
