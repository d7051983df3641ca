"""json_response: the body Flask's jsonify would send, every header given, and werkzeug's fix-ups when needed."""

from __future__ import annotations

import json

from kyma.api.chat import json_response


def _wsgi(app, resp) -> dict:
    with app.test_request_context("/v1/chat/completions", method="POST"):
        headers = resp.get_wsgi_headers({"REQUEST_METHOD": "POST", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                                         "wsgi.url_scheme": "http", "SCRIPT_NAME": "", "PATH_INFO": "/"})
    return headers


def test_a_json_reply_carries_its_headers_and_its_length(app):
    body = {"id": "chatcmpl-1", "text": "é"}
    with app.app_context():
        resp = json_response(body, {"X-Request-Id": "r1", "x-ratelimit-scope": "account"})
    headers = _wsgi(app, resp)
    data = resp.get_data()
    assert json.loads(data) == body and data.endswith(b"\n")
    assert headers.get("Content-Length") == str(len(data)) and headers.get("Content-Type") == "application/json"
    assert headers.get("X-Request-Id") == "r1" and headers.get("x-ratelimit-scope") == "account"
    assert len(headers) == 4  # nothing doubled


def test_werkzeug_still_fixes_what_needs_fixing(app):
    with app.app_context():
        located, empty = json_response({}, {}), json_response({}, {})
    located.headers["location"] = "/v1/é"  # added after construction, as a hook could
    empty.status_code = 204
    assert _wsgi(app, located).get("Location") == "/v1/%C3%A9"
    assert "Content-Length" not in _wsgi(app, empty)
