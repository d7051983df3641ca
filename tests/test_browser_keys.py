"""A key's limits set in the dashboard, in Debian's chromium, and then met by the openai SDK."""

from __future__ import annotations

import openai
import pytest

from tests.browser import PASSWORD, browser, page, pytestmark, shot, sign_up  # noqa: F401

HELLO = [{"role": "user", "content": "Hello there"}]


def test_a_limit_set_in_the_keys_table_refuses_the_next_sdk_call(page, gateway, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    sign_up(page, gateway.url)
    page.goto(f"{gateway.url}/dashboard/keys")
    page.fill("#key-name", "limited")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-key")
    key = page.input_value("#new-key")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    assert client.chat.completions.create(model="fast", messages=HELLO, max_tokens=20).choices
    page.evaluate("window.kymaMarker = 'same page'")

    row = page.locator("tr", has_text="limited")
    row.locator("summary", has_text="Edit limits").click()
    row.get_by_label("Credit limit (USD)").fill("0")
    row.get_by_label("Allowed models").fill("fast, cheap")
    row.get_by_role("button", name="Save limits of key limited").click()
    page.wait_for_selector("tr:has-text('limited') td.key-limits:has-text('$0.00 limit')")
    assert "models: fast, cheap" in row.locator("td.key-limits").inner_text()
    assert row.locator("td[data-label='Requests']").inner_text().split() == ["1", "30", "days:", "1"]
    assert page.evaluate("window.kymaMarker") == "same page"  # an htmx swap, not a reload
    shot(page, "keys-limits")

    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="fast", messages=HELLO, max_tokens=20)
    assert refused.value.status_code == 402
    assert "The API key 'limited' has reached its credit limit of $0.00" in refused.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="glm-5.1", messages=HELLO, max_tokens=20)


def test_a_bad_limit_gets_an_error_and_changes_nothing(page, gateway):
    page.allow_console_error(r"400")
    sign_up(page, gateway.url)
    page.goto(f"{gateway.url}/dashboard/keys")
    row = page.locator("tr", has_text="default")
    row.locator("summary", has_text="Edit limits").click()
    row.get_by_label("Allowed models").fill("no-such-model")
    row.get_by_role("button", name="Save limits of key default").click()
    page.wait_for_selector("#key-limits-error")
    assert "no-such-model" in page.inner_text("#key-limits-error")
    assert row.locator("td.key-limits").inner_text().strip() == "none"
