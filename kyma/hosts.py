"""Which Host headers the gateway answers, and the URL it publishes to agents.

Published URLs (the config, /llms.txt, recommended agent configs, the landing page's snippets) hand
clients a base URL to send their keys to, so they never come from a Host header nobody vetted:
KYMA_PUBLIC_URL when it is set, else the request's own host once it is one of KYMA_ALLOWED_HOSTS
(by default the address the gateway listens on, localhost, 127.0.0.1 and ::1). A request for any
other host is refused with a 400, which says which setting to change.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.exceptions import BadRequest

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
UNCHECKED_PATHS = ("/healthz", "/metrics")  # probed and scraped by address; they publish no URL


_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+|[0-9a-f:]+))(?::\d{1,5})?$")


# Every request asks, with one of very few Host values: parsing an address each time cost more than
# the check. Bounded, since a client may send any Host it likes.
@functools.lru_cache(maxsize=256)
def hostname(host: str) -> str:
    """The name in a Host header, without its port, lower-cased, an IPv6 address in its canonical
    form; "" for anything that is not a plain host[:port] (userinfo, paths, stray characters)."""
    found = _HOST.match(host.strip().lower())
    if found is None:
        return ""
    name = found.group("v6") or found.group("name")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def allowed_hosts(settings) -> frozenset[str] | None:
    """The host names the gateway answers (None: any, when KYMA_ALLOWED_HOSTS is "*")."""
    if "*" in settings.allowed_hosts:
        return None
    names = set(settings.allowed_hosts or LOCAL_HOSTS + (settings.host,))
    if settings.public_url:
        names.add(urlsplit(settings.public_url).hostname or "")
    return frozenset(h for h in (hostname(n) for n in names) if h not in ("0.0.0.0", "::", ""))


def public_url() -> str:
    """The gateway's base URL as published (no trailing slash)."""
    settings = current_app.extensions["kyma"].settings
    return settings.public_url or request.host_url.rstrip("/")


def register_host_check(app: Flask, settings) -> None:
    """Refuse requests whose Host is not one the gateway answers (before anything else runs)."""
    allowed = allowed_hosts(settings)
    if allowed is None:
        return

    @app.before_request
    def _check_host():
        name = hostname(request.host)
        if request.path in UNCHECKED_PATHS or (name and name in allowed):
            return None
        raise BadRequest(f"This gateway does not answer for host {name or request.host!r}: set "
                         "KYMA_PUBLIC_URL, or add the name to KYMA_ALLOWED_HOSTS.")
