"""The dashboard's request log and usage views in chromium: key filter, sorting, CSV export, live refresh, charts."""

from __future__ import annotations

import csv
import re


from tests.browser import PASSWORD, browser, page, pytestmark, sdk_env, shot, sign_up  # noqa: F401


def chat(client, text: str, max_tokens: int) -> None:
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": text}], max_tokens=max_tokens)


def shown_ids(page) -> list[str]:
    return page.locator("#log-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.request)")


def test_filter_by_key_sort_export_and_refresh(page, gateway, sdk_env):
    import openai
    from playwright.sync_api import expect

    page.clock.install()  # the log's 10 s refresh runs when the test moves the clock
    sign_up(page, gateway.url)
    first = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    page.click("#to-dashboard")
    page.wait_for_load_state("domcontentloaded")  # deferred htmx has run: the next click is an htmx request
    page.fill("#key-name", "ci-runner")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-key")
    ci = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#new-key"), max_retries=0)
    chat(first, "count to 40", 200)
    chat(first, "Hi", 8)
    chat(ci, "count to 10", 60)

    page.goto(f"{gateway.url}/dashboard")
    expect(page.locator("#log-table tbody tr")).to_have_count(3)
    keys = page.locator("#log-table td[data-label=Key]").all_inner_texts()
    assert sorted(keys) == ["ci-runner", "default", "default"]

    page.select_option("#log-key", label="ci-runner")
    expect(page.locator("#log-table tbody tr")).to_have_count(1)
    assert page.inner_text("#log-table td[data-label=Key]") == "ci-runner"
    assert re.search(r"/dashboard\?key=\d+$", page.url)  # only the filter in use, on the page's own address
    page.reload()  # the URL alone restores the filtered view
    expect(page.locator("#log-table tbody tr")).to_have_count(1)
    assert page.locator("#log-key option:checked").inner_text() == "ci-runner"

    chat(first, "Not for this key", 8)
    chat(ci, "One more", 8)
    page.clock.fast_forward(10_500)  # page 1 refreshes with its filters
    expect(page.locator("#log-table tbody tr")).to_have_count(2)
    assert set(page.locator("#log-table td[data-label=Key]").all_inner_texts()) == {"ci-runner"}

    page.select_option("#log-key", value="")
    expect(page.locator("#log-table tbody tr")).to_have_count(5)
    wanted = shown_ids(page)[2]
    page.locator("#log-q").press_sequentially(wanted)  # the results swap under the field as it is typed in
    expect(page.locator("#log-table tbody tr")).to_have_count(1)
    assert shown_ids(page) == [wanted] and page.input_value("#log-q") == wanted
    assert page.evaluate("document.activeElement.id") == "log-q"
    page.fill("#log-q", "")
    page.press("#log-q", "Enter")
    expect(page.locator("#log-table tbody tr")).to_have_count(5)
    page.click("#sort-cost")
    expect(page.locator("#log-table th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    expect(page).to_have_url(re.compile(r"/dashboard\?sort=cost$"))
    assert not page.locator("#log-sort").is_visible()  # a wide screen sorts from the headers alone
    costs = [float(c.lstrip("$")) for c in page.locator("#log-table td[data-label=Cost]").all_inner_texts()]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]
    page.click("#sort-cost")
    expect(page.locator("#log-table th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    costs = [float(c.lstrip("$")) for c in page.locator("#log-table td[data-label=Cost]").all_inner_texts()]
    assert costs == sorted(costs)

    with page.expect_download() as download:
        page.click("#log-csv")
    path = download.value.path()
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["request_id"] for r in rows] == shown_ids(page)  # the same requests, in the same order
    assert [r["key"] for r in rows] == page.locator("#log-table td[data-label=Key]").all_inner_texts()
    assert [f"${r['cost_usd']}" for r in rows] == page.locator("#log-table td[data-label=Cost]").all_inner_texts()
    shot(page, "dashboard-request-log")


def test_usage_charts_have_labelled_axes_and_switch_range(page, gateway, sdk_env):
    import openai
    from playwright.sync_api import expect

    sign_up(page, gateway.url)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    stream = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "count to 20"}],
                                            max_tokens=100, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)  # timed: first token, then the rest
    page.goto(f"{gateway.url}/dashboard")
    chart = page.locator("#usage-spend")
    assert chart.locator("text.y-title").text_content() == "USD"
    assert chart.locator("text.x-title").text_content() == "day (UTC)"
    assert chart.locator("rect.bar").count() == 7
    assert chart.locator("text.y-tick").last.text_content().startswith("$0.0")
    assert page.locator("#usage-requests text.y-title").text_content() == "requests"
    speed = page.locator("#speed-table tbody tr[data-model]")
    assert speed.count() == 1 and re.fullmatch(r"\d+ ms", speed.locator("td[data-label='TTFT p50']").inner_text())
    page.click("#range-24h")
    expect(page.locator("#range-24h")).to_have_attribute("aria-current", "true")
    expect(page.locator("#usage-tokens text.x-title")).to_have_text("hour (UTC)")
    assert page.locator("#usage-tokens rect.bar").count() == 24
    box = page.locator("#usage-tokens").bounding_box()
    assert box["width"] > 200 and box["height"] > 100  # drawn, not collapsed
    page.locator("#usage").scroll_into_view_if_needed()
    shot(page, "dashboard-usage")


def test_sorting_on_a_phone_where_the_headers_are_hidden(page, gateway, sdk_env):
    import openai
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, gateway.url)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=page.input_value("#first-key"), max_retries=0)
    for text, max_tokens in (("count to 30", 120), ("Hi", 8), ("count to 10", 50)):
        chat(client, text, max_tokens)
    page.goto(f"{gateway.url}/dashboard")
    expect(page.locator("#log-sort")).to_be_visible()  # the table's headers are hidden on a phone
    page.select_option("#log-sort", "tokens")
    expect(page).to_have_url(re.compile(r"sort=tokens"))
    tokens = [int(t) for t in page.locator("#log-table td[data-label=Tokens]").all_inner_texts()]
    assert tokens == sorted(tokens, reverse=True) and tokens[0] > tokens[-1]
    page.select_option("#log-dir", "asc")
    expect(page).to_have_url(re.compile(r"sort=tokens&dir=asc"))
    tokens = [int(t) for t in page.locator("#log-table td[data-label=Tokens]").all_inner_texts()]
    assert tokens == sorted(tokens)
    shot(page, "phone-request-log-sorted")
