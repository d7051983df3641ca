"""The playground websocket against a real gateway whose simulated providers stream slowly."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
import requests
import websockets

from tests.servers import LONG_REPLY_PROMPT

pytestmark = pytest.mark.integration  # real processes: runs on SQLite and in the PostgreSQL pass


def browser_session(url: str) -> tuple[requests.Session, str]:
    """A signed-up browser-like session and the playground page's CSRF token."""
    s = requests.Session()
    s.headers["Origin"] = url  # as a browser does on every POST; the CSRF check requires it
    token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{url}/signup").text).group(1)
    email = f"pg-{uuid.uuid4().hex}@example.com"
    assert s.post(f"{url}/signup", data={"email": email, "password": "secret-pw", "csrf_token": token}).status_code == 201
    csrf = re.search(r'data-csrf="([^"]+)"', s.get(f"{url}/playground").text).group(1)
    return s, csrf


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/playground/ws"


def socket_headers(url: str, session: requests.Session, origin: str | None = None) -> dict:
    """What the browser sends on the websocket handshake: its cookies and its Origin."""
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in session.cookies.items()), "Origin": origin or url}


def start_message(csrf: str, model: str = "fast", text: str = LONG_REPLY_PROMPT) -> str:
    return json.dumps({"type": "start", "csrf": csrf, "model": model, "max_tokens": 400,
                       "messages": [{"role": "user", "content": text}]})


async def exchange(url, session, messages, until=("done", "error", "stopped"), origin=None, stop_after=None):
    """Send messages, collect server events until one of `until`; optionally send Stop after N deltas."""
    headers = socket_headers(url, session, origin)
    events = []
    async with websockets.connect(ws_url(url), additional_headers=headers, open_timeout=10) as ws:
        for m in messages:
            await ws.send(m)
        deltas = 0
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 20))
            events.append(event)
            if event["type"] == "delta":
                deltas += 1
                if deltas == stop_after:
                    await ws.send(json.dumps({"type": "stop"}))
            if event["type"] in until:
                return events


def test_reply_streams_in_pieces_and_reports_cost(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    events = asyncio.run(exchange(slow_gateway.url, s, [start_message(csrf, text="hello")]))
    deltas = [e for e in events if e["type"] == "delta"]
    done = events[-1]
    assert len(deltas) > 3 and done["type"] == "done"
    assert done["model"] == "llama-3.3-70b" and done["alias"] == "fast" and done["simulated"] is True
    assert done["cost_usd"] > 0 and done["usage"]["completion_tokens"] > 0


def test_stop_cancels_the_stream_and_bills_what_was_produced(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    events = asyncio.run(exchange(slow_gateway.url, s, [start_message(csrf)], stop_after=2))
    assert events[-1]["type"] == "stopped"
    assert not any(e["type"] == "done" for e in events)
    log = s.get(f"{slow_gateway.url}/dashboard/requests", headers={"HX-Request": "true"}).text
    assert ">499 stopped</span>" in log and "tag bad" not in log  # "client closed", like an API disconnect, not a failure
    stopped = events[-1]  # and the stop reports what the partial reply was billed
    assert stopped["model"] == "llama-3.3-70b" and stopped["usage"]["completion_tokens"] >= 2
    assert stopped["cost_usd"] > 0
    balance = s.get(f"{slow_gateway.url}/dashboard/spend", headers={"HX-Request": "true"}).text
    spent = re.search(r'id="spent-30d">\$([0-9.]+)<', balance).group(1)
    assert float(spent) > 0  # the tokens produced before Stop were billed


def test_errors_keep_the_socket_usable(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    def forged(token):
        return json.dumps({"type": "start", "csrf": token, "model": "fast", "messages": [{"role": "user", "content": "x"}]})

    events = asyncio.run(exchange(slow_gateway.url, s, [
        forged("stale"),
        forged(12345),  # not a string: refused, not a crashed handler
        forged("jeton-été-\ud800"),  # a lone surrogate is not text: refused as a message, not a TypeError
        start_message(csrf, model="no-such-model"),
        "not json",
        start_message(csrf, text="hi"),
    ], until=("done",)))
    errors = [(e["status"], e["message"]) for e in events if e["type"] == "error"]
    assert [status for status, _ in errors] == [403, 403, 400, 404, 400]
    assert "no-such-model" in errors[3][1]
    assert events[-1]["type"] == "done"


def test_an_open_socket_stops_serving_after_log_out(slow_gateway):
    url = slow_gateway.url
    s, csrf = browser_session(url)
    headers = socket_headers(url, s)

    async def chat_then_log_out_then_chat():
        async with websockets.connect(ws_url(url), additional_headers=headers, open_timeout=10) as ws:
            await ws.send(start_message(csrf, text="hi"))
            first = [json.loads(await asyncio.wait_for(ws.recv(), 20))]
            while first[-1]["type"] not in ("done", "error"):
                first.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            page_csrf = re.search(r'name="csrf_token" value="([^"]+)"', s.get(f"{url}/dashboard").text).group(1)
            assert s.post(f"{url}/logout", data={"csrf_token": page_csrf}).status_code in (200, 303)
            await ws.send(start_message(csrf, text="still billing me?"))
            second = json.loads(await asyncio.wait_for(ws.recv(), 20))
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
            return first[-1], second, ws.close_code

    first, second, code = asyncio.run(chat_then_log_out_then_chat())
    assert first["type"] == "done"
    assert second == {"type": "error", "status": 401, "message": "Your session has ended. Log in again."}
    assert code == 1008


def test_foreign_origin_and_anonymous_sockets_are_refused(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    with pytest.raises(websockets.exceptions.InvalidStatus) as foreign:
        asyncio.run(exchange(slow_gateway.url, s, [start_message(csrf)], origin="http://evil.example"))
    assert foreign.value.response.status_code == 403
    with pytest.raises(websockets.exceptions.InvalidStatus) as anonymous:
        asyncio.run(exchange(slow_gateway.url, requests.Session(), [start_message(csrf)]))
    assert anonymous.value.response.status_code == 401


def test_a_handshake_without_origin_is_refused_even_with_a_same_site_referer(slow_gateway):
    # Every browser sends Origin on a websocket handshake; Referer, which the form check accepts in
    # its place, is no proof here.
    s, _ = browser_session(slow_gateway.url)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in s.cookies.items()),
               "Referer": f"{slow_gateway.url}/playground"}

    async def handshake():
        async with websockets.connect(ws_url(slow_gateway.url), additional_headers=headers, open_timeout=10):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(handshake())
    assert refused.value.response.status_code == 403


def test_a_message_nested_too_deeply_closes_the_socket_with_1007_not_an_http_500(slow_gateway):
    url = slow_gateway.url
    s, _ = browser_session(url)
    headers = socket_headers(url, s)

    async def send_deep():
        async with websockets.connect(ws_url(url), additional_headers=headers, open_timeout=10) as ws:
            await ws.send('{"type": "start", "messages": ' + "[" * 10_000 + "]" * 10_000 + "}")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
            return reply, ws.close_code

    reply, code = asyncio.run(send_deep())
    assert reply == {"type": "error", "status": 400, "message": "The message is nested too deeply."}
    assert code == 1007


def compare_message(csrf: str, model: str = "fast", compare: str = "code", max_tokens: int = 400,
                    text: str = LONG_REPLY_PROMPT) -> str:
    return json.dumps({"type": "start", "csrf": csrf, "model": model, "compare": compare, "max_tokens": max_tokens,
                       "system": "Be brief.", "temperature": 0.3,
                       "messages": [{"role": "user", "content": text}]})


async def exchange_sides(url, session, message, stop_after=None):
    """Send one compared start; collect events until both sides ended; optionally Stop after N deltas."""
    ended: dict[str, dict] = {}
    deltas: dict[str, list[str]] = {"a": [], "b": []}
    async with websockets.connect(ws_url(url), additional_headers=socket_headers(url, session),
                                  open_timeout=10) as ws:
        await ws.send(message)
        while len(ended) < 2:
            event = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if event["type"] == "delta":
                deltas[event["side"]].append(event["text"])
                if stop_after and sum(map(len, deltas.values())) == stop_after:
                    await ws.send(json.dumps({"type": "stop"}))
            else:
                ended[event["side"]] = event
    return deltas, ended


def logged_rows(url: str, session: requests.Session) -> list[str]:
    log = session.get(f"{url}/dashboard/requests", headers={"HX-Request": "true"}).text
    return re.findall(r'<tr id="req-.*?</tr>', log, re.S)


def test_compare_streams_two_models_at_once_each_billed_and_logged(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    deltas, ended = asyncio.run(exchange_sides(slow_gateway.url, s, compare_message(csrf, max_tokens=30)))
    assert ended["a"]["type"] == ended["b"]["type"] == "done"
    assert ended["a"]["alias"] == "fast" and ended["b"]["alias"] == "code"
    assert ended["a"]["model"] != ended["b"]["model"]
    assert len(deltas["a"]) > 3 and len(deltas["b"]) > 3
    assert ended["a"]["cost_usd"] > 0 and ended["b"]["cost_usd"] > 0
    assert ended["a"]["cost"].startswith("$") and ended["b"]["cost"].startswith("$")
    rows = logged_rows(slow_gateway.url, s)
    assert len(rows) == 2  # one request-log row per side
    assert any(ended["a"]["model"] in r for r in rows) and any(ended["b"]["model"] in r for r in rows)
    spent = re.search(r'id="spent-30d">\$([0-9.]+)<',
                      s.get(f"{slow_gateway.url}/dashboard/spend", headers={"HX-Request": "true"}).text).group(1)
    assert float(spent) == pytest.approx(ended["a"]["cost_usd"] + ended["b"]["cost_usd"], abs=1e-4)


def test_compare_streams_interleave_and_stop_stops_both(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    deltas, ended = asyncio.run(exchange_sides(slow_gateway.url, s, compare_message(csrf), stop_after=6))
    assert ended["a"]["type"] == ended["b"]["type"] == "stopped"
    assert deltas["a"] and deltas["b"]  # both were streaming when Stop came
    for side in "ab":
        assert 0 < ended[side]["usage"]["completion_tokens"] < 400 and ended[side]["cost_usd"] > 0
    rows = logged_rows(slow_gateway.url, s)
    assert len(rows) == 2 and all("499 stopped" in r for r in rows)


def test_compare_with_an_unknown_model_fails_that_side_only(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    _, ended = asyncio.run(exchange_sides(slow_gateway.url, s, compare_message(csrf, compare="no-such-model",
                                                                               max_tokens=8)))
    assert ended["a"]["type"] == "done"
    assert ended["b"]["type"] == "error" and ended["b"]["status"] == 404 and "no-such-model" in ended["b"]["message"]


def test_compare_validates_its_model_and_history_before_streaming(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    bad_model = json.loads(compare_message(csrf)) | {"compare": 7}
    bad_history = json.loads(compare_message(csrf)) | {"compare_messages": [{"role": "robot", "content": "x"}]}
    events = asyncio.run(exchange(slow_gateway.url, s, [json.dumps(bad_model), json.dumps(bad_history),
                                                        start_message(csrf, text="hi")], until=("done",)))
    errors = [e for e in events if e["type"] == "error"]
    assert [(e["status"], "side" in e) for e in errors] == [(400, False), (400, False)]
    assert "side" not in events[-1]  # a start without compare is answered as before


def test_compare_sends_each_side_its_own_history(slow_gateway):
    s, csrf = browser_session(slow_gateway.url)
    start = json.loads(compare_message(csrf, max_tokens=12, text="alpha river")) | {
        "compare_messages": [{"role": "user", "content": "beta river"}]}
    deltas, ended = asyncio.run(exchange_sides(slow_gateway.url, s, json.dumps(start)))
    assert ended["a"]["type"] == ended["b"]["type"] == "done"
    # The simulators echo the last user message: each side answered its own conversation.
    assert "alpha river" in "".join(deltas["a"]) and "beta river" in "".join(deltas["b"])
