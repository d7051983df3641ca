"""axe-core on every page, light and dark: no violation of serious or critical impact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.servers import flask_here
from tests.browser import PASSWORD, browser, page, pytestmark, sdk_env, send, shot, sign_up  # noqa: F401


AXE = (Path(__file__).resolve().parent / "vendor" / "axe.min.js").read_text()
GRAVE = ("serious", "critical")
SCHEMES = ("light", "dark")


def violations(page) -> list[str]:
    """axe's serious and critical findings on the page as it stands, one line per rule and element."""
    # Evaluated through the DevTools protocol, which the page's CSP does not govern (a <script> would be refused).
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    # Only the grave findings leave the page: axe's whole result is large, and serializing it through the
    # driver to Python costs more CPU than filtering it where it is.
    found = page.evaluate("""async grave => (await axe.run(document, {resultTypes: ["violations"]})).violations
      .filter(v => grave.includes(v.impact))
      .flatMap(v => v.nodes.map(node => [v.id, v.impact, node.target, v.helpUrl]))""", list(GRAVE))
    return [f"{rule} ({impact}) {target} {url}" for rule, impact, target, url in found]


def test_every_page_passes_axe_in_light_and_dark(page, gateway, sdk_env):
    import openai

    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        # Each page as it stands, in either scheme: the stylesheet follows the media feature without a
        # reload (it has no transitions to wait out), so one walk through the site checks both.
        backgrounds = set()
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            backgrounds.add(page.evaluate("getComputedStyle(document.documentElement).backgroundColor"))
            found[f"{scheme} {name}"] = violations(page)
            shot(page, f"axe-{scheme}-{name}")
        assert len(backgrounds) == len(SCHEMES), f"{name}: the page did not change scheme"

    for path in ("/", "/models", "/status", "/signup", "/login"):
        page.goto(gateway.url + path)
        check(path.strip("/") or "landing")
    email = sign_up(page, gateway.url)
    check("welcome")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    with pytest.raises(openai.NotFoundError):  # a failed request too: its row and tag are checked
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    page.goto(f"{gateway.url}/dashboard")
    page.locator("#log-table .actions a").first.click()
    page.wait_for_selector("#request-detail article")
    check("dashboard")
    for sub in ("spend", "credits", "keys", "requests"):
        page.goto(f"{gateway.url}/dashboard/{sub}")
        check(f"dashboard-{sub}")
    href = page.get_attribute("#log-table .actions a", "href")
    page.goto(gateway.url + href)
    check("request-detail")
    for path in ("/account", "/device"):
        page.goto(gateway.url + path)
        check(path.strip("/"))
    page.goto(f"{gateway.url}/playground")
    page.check("#pg-compare-on")
    page.select_option("#pg-compare", "code")
    send(page, "Hello", 8)
    page.wait_for_selector("#pg-summary-b:not([hidden])")
    page.wait_for_selector("#pg-summary:not([hidden])")
    check("playground")
    page.click("#pg-code-open")
    page.wait_for_selector("#pg-code[open]")
    check("playground-code")
    assert flask_here(gateway.env, "admin", "grant", email).returncode == 0  # the console's pages too
    for path in ("/admin/accounts", "/admin/traffic", "/admin/routes", "/admin/audit"):
        page.goto(gateway.url + path)
        check(path.strip("/").replace("/", "-"))
    page.goto(f"{gateway.url}/admin/accounts?q={email}")
    page.locator(f"#accounts-table tr[data-email='{email}'] a").click()
    page.wait_for_selector("#grant-usd")
    check("admin-account")
    grave = {name: lines for name, lines in found.items() if lines}
    assert grave == {}, "\n".join(f"{name}: {line}" for name, lines in grave.items() for line in lines)


def test_the_check_catches_a_field_without_a_label(page, gateway):
    page.goto(f"{gateway.url}/login")
    assert violations(page) == []
    page.evaluate("document.querySelector('label[for=email]').remove()")
    assert any(re.match(r"label \(critical\) \['#email'\]", line) for line in violations(page))
