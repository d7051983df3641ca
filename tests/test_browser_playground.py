"""The playground's Compare and View code in chromium, against a real gateway and simulated providers."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

from tests.browser import (OVERFLOWING, PHONE, browser, open_playground, page, pytestmark,  # noqa: F401
                           record_starts, send, shot, sign_up)
from tests.servers import LONG_REPLY_PROMPT

COST = re.compile(r"Cost\s+\$\d+\.\d+")


def compare(page, model: str, other: str) -> None:
    page.check("#pg-compare-on")
    page.select_option("#pg-model", model)
    page.select_option("#pg-compare", other)


def test_compare_streams_both_columns_and_stop_stops_both(page, slow_gateway):
    from playwright.sync_api import expect

    starts = record_starts(page)
    open_playground(page, slow_gateway.url)
    expect(page.locator("#pg-side-b")).to_be_hidden()
    send(page, "First question", 8)
    expect(page.locator("#pg-state")).to_have_text("Done.")
    compare(page, "fast", "code")  # mid-chat: the second model continues the same conversation
    expect(page.locator("#pg-log-b .msg")).to_have_count(2)
    send(page, LONG_REPLY_PROMPT, 400)
    for log in ("#pg-log", "#pg-log-b"):  # both columns stream at once
        expect(page.locator(f"{log} .msg.assistant .text").last).to_have_text(re.compile(r"\w+ \w+ \w+"))
    expect(page.locator("#pg-state")).to_have_text("Streaming…")
    # Each column is a log named after its model, for a screen reader moving between them.
    expect(page.get_by_role("log", name="Conversation fast")).to_have_id("pg-log")
    expect(page.get_by_role("log", name="Conversation code")).to_have_id("pg-log-b")
    shot(page, "playground-compare-streaming")
    page.click("#pg-stop")
    expect(page.locator("#pg-state")).to_have_text("Stopped.")
    assert page.is_enabled("#pg-send") and page.is_disabled("#pg-stop")
    summaries = [page.inner_text(s) for s in ("#pg-summary", "#pg-summary-b")]
    assert "llama-3.3-70b" in summaries[0] and "(via alias fast)" in summaries[0]
    assert "(via alias code)" in summaries[1] and "llama-3.3-70b" not in summaries[1]
    for summary in summaries:  # each side's own cost, as the server wrote it
        assert COST.search(summary) and 0 < int(re.search(r"(\d+) out", summary).group(1)) < 400
    assert starts[-1]["compare"] == "code" and starts[-1]["model"] == "fast"
    assert starts[-1]["compare_messages"][:1] == [{"role": "user", "content": "First question"}]
    assert starts[-1]["max_tokens"] == "400"  # the same settings for both
    shot(page, "playground-compare")
    page.click("#pg-code-open")
    expect(page.locator("#pg-code-compare")).to_have_text(re.compile(r'same with model="code"'))
    assert 'model="fast"' in page.inner_text("#pg-code-python")
    page.keyboard.press("Escape")
    page.click("#pg-clear")
    assert page.locator("#pg-log .msg, #pg-log-b .msg").count() == 0
    expect(page.locator("#pg-summary-b")).to_be_hidden()


def test_compare_columns_sit_side_by_side_and_stack_on_a_phone(page, gateway):
    from playwright.sync_api import expect

    open_playground(page, gateway.url)
    compare(page, "fast", "code")
    send(page, "Hello", 8)
    expect(page.locator("#pg-summary-b")).to_be_visible()
    expect(page.locator("#pg-summary")).to_be_visible()
    a, b = page.locator("#pg-log").bounding_box(), page.locator("#pg-log-b").bounding_box()
    assert b["x"] >= a["x"] + a["width"] and abs(a["y"] - b["y"]) < 1  # beside each other
    page.set_viewport_size(PHONE)
    a, b = page.locator("#pg-log").bounding_box(), page.locator("#pg-log-b").bounding_box()
    assert b["y"] >= a["y"] + a["height"] and abs(a["x"] - b["x"]) < 1  # one above the other
    assert page.evaluate(OVERFLOWING) == []
    shot(page, "phone-playground-compare")


TRICKY_SYSTEM = "Say \"hi\" & it's $HOME's `date` \\n\n  then $(rm -rf /) '\"\"\"'"
TRICKY_PROMPT = "Line one\nline 'two' with \"quotes\", $PATH, \\backslash\\ and ''' and émoji ✓"


def test_view_code_shows_runnable_python_and_curl_for_the_settings(page, gateway, tmp_path):
    from playwright.sync_api import expect

    sign_up(page, gateway.url)
    key = page.input_value("#first-key")
    page.goto(f"{gateway.url}/playground")
    page.select_option("#pg-model", "fast")
    page.fill("#pg-system", TRICKY_SYSTEM)
    page.fill("#pg-temperature", "0.3")
    page.fill("#pg-max-tokens", "16")
    page.fill("#pg-prompt", TRICKY_PROMPT)
    page.click("#pg-code-open")
    dialog = page.locator("#pg-code")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.getElementById('pg-code').contains(document.activeElement)")
    python, curl = page.inner_text("#pg-code-python"), page.inner_text("#pg-code-curl")
    expected = [{"role": "system", "content": TRICKY_SYSTEM}, {"role": "user", "content": TRICKY_PROMPT}]
    assert f'base_url="{gateway.url}/v1"' in python and 'model="fast"' in python

    call = next(n for n in ast.walk(ast.parse(python)) if isinstance(n, ast.Call) and n.keywords
                and any(k.arg == "messages" for k in n.keywords))
    args = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert args == {"model": "fast", "messages": expected, "temperature": 0.3, "max_tokens": 16}

    subprocess.run(["bash", "-n", "-c", curl], check=True)
    # The shell hands curl exactly this body: a stand-in curl prints its arguments.
    argv = subprocess.run(["bash", "-c", 'curl() { printf "%s\\0" "$@"; }\n' + curl], check=True,
                          capture_output=True, env={"KYMA_API_KEY": "ky-test", "PATH": os.environ["PATH"]}).stdout
    argv = argv.decode().split("\0")[:-1]
    assert argv[argv.index("-H") + 1] == "Authorization: Bearer ky-test"
    assert json.loads(argv[argv.index("-d") + 1]) == {"model": "fast", "messages": expected,
                                                      "temperature": 0.3, "max_tokens": 16}
    env = {**os.environ, "KYMA_API_KEY": key}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    reply = json.loads(subprocess.run(["bash", "-c", curl], check=True, capture_output=True, env=env).stdout)
    assert reply["choices"][0]["message"]["content"] and reply["model"] == "llama-3.3-70b"
    script = tmp_path / "snippet.py"
    script.write_text(python)
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, env=env, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr

    shot(page, "playground-view-code")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "pg-code-open"  # focus back on the opener
    page.click("#pg-code-open")
    page.click("#pg-code-close")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "pg-code-open"


def test_view_code_after_sending_shows_the_message_sent(page, gateway):
    from playwright.sync_api import expect

    page.clock.install()  # "Copied" stays until the clock moves
    open_playground(page, gateway.url, "code")
    send(page, "What is a river?", 8)
    expect(page.locator("#pg-state")).to_have_text("Done.")
    page.click("#pg-code-open")
    python = page.inner_text("#pg-code-python")
    assert '"content": "What is a river?"' in python and 'model="code"' in python
    expect(page.locator("#pg-code-compare")).to_be_hidden()  # no second model to mention
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the curl command").click()
    expect(page.get_by_role("button", name="Copy the curl command")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.inner_text("#pg-code-curl")
    page.keyboard.press("Escape")
    expect(page.locator("#pg-code")).to_be_hidden()
