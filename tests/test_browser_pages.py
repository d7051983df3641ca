"""Every page in Debian's chromium on a phone's width, and in light and dark at readable contrast."""

from __future__ import annotations

import re

import pytest

from tests.browser import OVERFLOWING, PHONE, browser, page, pytestmark, sdk_env, send, shot, sign_up  # noqa: F401


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


SCHEME_BACKGROUNDS = {"light": "rgb(246, 247, 249)", "dark": "rgb(13, 17, 23)"}


def test_every_page_reads_well_in_light_and_dark(page, gateway, sdk_env):
    import openai

    def check(name: str) -> None:
        # The stylesheet follows the media feature without a reload: one walk through the site checks
        # each page in both schemes, and the background shows the switch took effect.
        for scheme, background in SCHEME_BACKGROUNDS.items():
            page.emulate_media(color_scheme=scheme)
            assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == background
            assert page.evaluate(LOW_CONTRAST_TEXT) == [], f"{scheme} {name}"
            shot(page, f"{scheme}-{name}")

    for path in ("/", "/models", "/status", "/login", "/signup"):
        page.goto(gateway.url + path)
        check(path.strip("/") or "landing")
    for scheme in SCHEME_BACKGROUNDS:
        page.emulate_media(color_scheme=scheme)
        assert page.evaluate(LOW_CONTRAST_SHAPES) == [], scheme
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
