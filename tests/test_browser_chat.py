"""The playground's chat in Debian's chromium: a streamed reply, an early error, New chat and Stop."""

from __future__ import annotations

import re

from tests.browser import browser, open_playground, page, pytestmark, record_starts, send, shot  # noqa: F401
from tests.servers import LONG_REPLY_PROMPT


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


def test_playground_new_chat_mid_reply_stops_it_and_starts_clean(page, slow_gateway):
    from playwright.sync_api import expect

    starts = record_starts(page)
    open_playground(page, slow_gateway.url)
    send(page, LONG_REPLY_PROMPT, 400)
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
    send(page, LONG_REPLY_PROMPT, 400)
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
