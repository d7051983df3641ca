"""How upstream connections leave this host: through which HTTP proxy, trusting which CAs.

The proxy comes from KYMA_UPSTREAM_PROXY when set (`none` turns proxies off), else from the
standard HTTPS_PROXY / HTTP_PROXY (lower case first, as curl reads them), and NO_PROXY exempts
hosts either way. Only http:// proxies are supported: plain-HTTP upstreams are forwarded through
them, https upstreams are tunnelled with CONNECT, so TLS still runs end to end with the upstream.
The CA bundle is KYMA_CA_BUNDLE, else SSL_CERT_FILE, else REQUESTS_CA_BUNDLE, else the system's.
Loopback upstreams are not exempt by themselves: list them in NO_PROXY, as curl and requests expect.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

NO_PROXY_SETTING = "none"


@dataclass(frozen=True)
class Proxy:
    """An http:// proxy; `authorization` is the Proxy-Authorization value its URL's credentials make."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def authorization(self) -> str | None:
        if self.user is None and self.password is None:
            return None
        token = base64.b64encode(f"{self.user or ''}:{self.password or ''}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:  # never the password, not even in a traceback's locals
        return f"Proxy({self.host}:{self.port}{' with credentials' if self.authorization else ''})"


def parse_proxy(value: str, source: str) -> Proxy:
    """A proxy URL (http://[user:password@]host[:port]); ValueError naming `source`, never the value
    (it may hold a password)."""
    url = urlsplit(value if "://" in value else f"http://{value}")
    try:
        port = url.port or 80
    except ValueError:
        port = None
    if url.scheme != "http" or not url.hostname or port is None or url.path not in ("", "/"):
        raise ValueError(f"{source} must be an http://host:port proxy URL (https:// and socks proxies are "
                         f"not supported)")
    user = unquote(url.username) if url.username is not None else None
    password = unquote(url.password) if url.password is not None else None
    return Proxy(url.hostname, port, user, password)


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of the variables that is set and not blank: (its name, its value)."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def _bypassed(host: str, port: int, no_proxy: tuple[str, ...]) -> bool:
    """Whether NO_PROXY exempts host:port: `*`, the host itself, a domain it is under (`example.com`,
    `.example.com`, `*.example.com`), optionally with a port."""
    host = host.lower().strip("[]")
    for entry in no_proxy:
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lower().strip("[]").removeprefix("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _ca_bundle(setting: str, environ: Mapping[str, str]) -> str | None:
    """KYMA_CA_BUNDLE (which must be a file), else the first standard variable naming a file.

    The standard variables are set for many programs at once; one naming no file is passed over,
    as Python's own ssl module does, rather than stopping the gateway.
    """
    if setting:
        if not os.path.isfile(setting):
            raise ValueError(f"KYMA_CA_BUNDLE must name a file of PEM CA certificates; {setting!r} is not a file")
        return setting
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = environ.get(name, "").strip()
        if value and os.path.isfile(value):
            return value
    return None


@dataclass(frozen=True)
class Egress:
    """The proxy (per upstream scheme) and CA bundle every upstream connection uses."""

    http_proxy: Proxy | None = None
    https_proxy: Proxy | None = None
    no_proxy: tuple[str, ...] = ()
    ca_bundle: str | None = None

    @classmethod
    def from_settings(cls, upstream_proxy: str, ca_bundle: str, environ: Mapping[str, str] | None = None) -> "Egress":
        """Resolve the settings and the standard variables once, at start; ValueError on a bad one."""
        environ = os.environ if environ is None else environ
        no_proxy_var = _first(environ, "no_proxy", "NO_PROXY")
        no_proxy = tuple(e.strip() for e in no_proxy_var[1].split(",") if e.strip()) if no_proxy_var else ()
        setting = upstream_proxy.strip()
        if setting.lower() == NO_PROXY_SETTING:
            http = https = None
        elif setting:
            http = https = parse_proxy(setting, "KYMA_UPSTREAM_PROXY")
        else:
            found = _first(environ, "http_proxy", "HTTP_PROXY")
            http = parse_proxy(found[1], found[0]) if found else None
            found = _first(environ, "https_proxy", "HTTPS_PROXY")
            https = parse_proxy(found[1], found[0]) if found else None
        return cls(http, https, no_proxy, _ca_bundle(ca_bundle.strip(), environ))

    def proxy_for(self, url: SplitResult) -> Proxy | None:
        """The proxy to reach this upstream URL through, or None to connect directly."""
        https = url.scheme == "https"
        proxy = self.https_proxy if https else self.http_proxy
        if proxy is None or _bypassed(url.hostname or "", url.port or (443 if https else 80), self.no_proxy):
            return None
        return proxy
