"""The admin console in Debian's chromium: grant, suspend, reinstate, hold a circuit open, read the audit log."""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.conftest import register
from tests.servers import flask_here
from tests.browser import browser, page, pytestmark, sdk_env, shot, sign_up  # noqa: F401

MODEL = "qwen-3-32b"  # served by sim-alpha, sim-beta and sim-gamma, in that order
HI = [{"role": "user", "content": "Hi"}]
ADMIN_URLS = ("/admin", "/admin/accounts", "/admin/accounts/1", "/admin/traffic", "/admin/routes", "/admin/audit")


def test_an_admin_grants_suspends_reinstates_and_holds_a_circuit_open(page, browser, gateway, sdk_env):
    base = gateway.url
    email = f"cust-{uuid.uuid4().hex[:10]}@example.com"
    customer = register(base, email)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=customer["api_key"], max_retries=0, timeout=30)

    # A signed-in customer who is not an admin finds no console at all.
    page.allow_console_error("404")
    for path in ADMIN_URLS:
        assert page.goto(base + path).status == 404, path
    admin_email = sign_up(page, base)
    for path in ADMIN_URLS:
        assert page.goto(base + path).status == 404, path
    assert flask_here(gateway.env, "admin", "grant", admin_email).returncode == 0

    page.goto(f"{base}/dashboard")
    page.get_by_role("link", name="Admin").click()
    page.fill("#account-q", email)
    page.locator(f"#accounts-table tr[data-email='{email}'] a").click()
    page.wait_for_selector("#grant-usd")
    assert page.inner_text("#account-balance") == "$0.50"
    page.fill("#grant-usd", "5")
    page.fill("#grant-note", "welcome back")
    page.click("#grant-submit")
    page.wait_for_selector("#admin-message:has-text('Credit granted')")
    assert page.inner_text("#account-balance") == "$5.50"
    shot(page, "admin-account")

    page.fill("#suspend-reason", "testing")
    page.click("#suspend-submit")  # hx-confirm: the page fixture accepts the dialog
    page.wait_for_selector("#account-state:has-text('suspended')")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8)
    assert refused.value.code == "account_suspended"
    page.click("#reinstate-submit")
    page.wait_for_selector("#account-state:has-text('active')")
    assert client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8).choices[0].message.content

    page.get_by_role("link", name="Providers and routes").click()
    row = page.locator(f"#routes-table tr[data-route='sim-alpha/{MODEL}']")
    try:
        row.get_by_role("button", name=f"Hold the circuit of sim-alpha/{MODEL} open").click()
        page.wait_for_selector(f"#routes-table tr[data-route='sim-alpha/{MODEL}'] [data-circuit='held open']")
        shot(page, "admin-routes")
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=8)
        assert raw.headers["X-Kyma-Provider"] == "sim-beta" and raw.parse().choices[0].message.content
    finally:
        row = page.locator(f"#routes-table tr[data-route='sim-alpha/{MODEL}']")
        row.get_by_role("button", name=f"Close the circuit of sim-alpha/{MODEL}").click()
        page.wait_for_selector(f"#routes-table tr[data-route='sim-alpha/{MODEL}'] [data-circuit='closed']")
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=8)
    assert raw.headers["X-Kyma-Provider"] == "sim-alpha"

    page.get_by_role("link", name="Audit log").click()
    actions = page.locator("#audit-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions[:5] == ["route.close", "route.open", "account.reinstate", "account.suspend", "credit.grant"]
    grant = page.locator("#audit-table tr[data-action='credit.grant']").first.inner_text()
    assert admin_email in grant and email in grant
    shot(page, "admin-audit")
