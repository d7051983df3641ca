"""Settings read once from KYMA_* environment variables.

SETTINGS is the one table of them: field, variable, type, default and meaning. The Settings
class, the list of variables and the README check (tests/test_docs.py) are all built from it, so
a new setting is one line there (plus its row in README.md's table).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, make_dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from kyma.capacity import DEFAULT_WORKER_CONNECTIONS

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


DEFAULT_WORKERS = 2  # what `make run` starts; benchmarks and the soak measure the same


def _public_url(value: str) -> str:
    """KYMA_PUBLIC_URL without its trailing slash; refused at start unless it is an http(s) URL."""
    value = value.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http(s) URL such as https://llm.example.com, not {value!r}")
    return value


def _secret_key(instance: Path) -> str:
    """A random key kept in instance/, so sessions survive restarts (when KYMA_SECRET_KEY is unset)."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _on(value: str) -> bool:
    """A switch that is on unless turned off."""
    return value.lower() not in ("off", "0", "false", "no")


def _off(value: str) -> bool:
    """A switch that is off unless turned on."""
    return value.lower() in ("on", "1", "true", "yes")


def _true(value: str) -> bool:
    """A switch that is off unless set to `true`."""
    return value == "true"


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _emails(value: str) -> tuple[str, ...]:
    """A comma-separated list of email addresses, lower-cased, each once."""
    return tuple(sorted({name.lower() for name in _names(value)}))


def _capped(cap: int) -> Callable[[str], int]:
    """An integer never above `cap`, whatever the variable says."""
    return lambda value: min(cap, int(value))


def _positive(value: int) -> None:
    if value < 1:
        raise ValueError("must be 1 or more")


def _not_negative(value: int) -> None:
    if value < 0:
        raise ValueError("must be 0 or more")


@dataclass(frozen=True)
class Setting:
    """One operator-facing setting.

    `default` is the variable's text when it is unset (parsed like any value), or a function of the
    settings above it in the table; a computed default also stands in for an empty variable.
    `shown` is the default as README.md's table writes it, when that is not just `default`.
    """

    field: str
    env: str
    type: Any
    default: str | Callable[[dict], Any]
    help: str
    parse: Callable[[str], Any] | None = None  # text to value; None: the type itself
    check: Callable[[Any], None] | None = None  # raises ValueError; also run on overrides
    shown: str | None = None

    @property
    def documented_default(self) -> str:
        """The README table's default cell for this setting."""
        if self.shown is not None:
            return self.shown
        if self.default == "":
            return "empty"
        if self.type is Path:
            return f"`{Path(self.default).relative_to(ROOT)}`"
        return f"`{self.default}`"

    def read(self, environ, values: dict) -> Any:
        """This setting's value from the environment (or its default)."""
        raw = environ.get(self.env)
        if callable(self.default) and not raw:
            return self.default(values)
        return (self.parse or self.type)(self.default if raw is None else raw)


# One line per setting, however long it runs: adding a setting is adding a line.
SETTINGS = (
    Setting("instance_dir", "KYMA_INSTANCE_DIR", Path, str(ROOT / "instance"), "where the SQLite database and the generated secret key live", shown="`instance/`"),
    Setting("database_url", "KYMA_DATABASE_URL", str, lambda v: f"sqlite:///{v['instance_dir'] / 'kyma.db'}", "the database (sqlite:/// or postgresql://)", shown="`sqlite:///instance/kyma.db`"),
    # Per worker process, PostgreSQL only: instances × workers × this ≤ the server's max_connections.
    Setting("database_pool_size", "KYMA_DATABASE_POOL_SIZE", int, "20", "PostgreSQL connections per worker process"),
    Setting("redis_url", "KYMA_REDIS_URL", str, "", "Redis for rate limits and breaker state (several instances)"),
    Setting("redis_prefix", "KYMA_REDIS_PREFIX", str, "kyma:", "prefix of every Redis key"),
    Setting("secret_key", "KYMA_SECRET_KEY", str, lambda v: _secret_key(v["instance_dir"]), "signs session cookies and CSRF tokens", shown="generated into `instance/secret_key`"),
    Setting("host", "KYMA_HOST", str, "127.0.0.1", "address the gateway listens on"),
    Setting("port", "KYMA_PORT", int, "8080", "port the gateway listens on"),
    Setting("workers", "KYMA_WORKERS", int, str(DEFAULT_WORKERS), "gunicorn gevent workers"),
    Setting("worker_connections", "KYMA_WORKER_CONNECTIONS", int, str(DEFAULT_WORKER_CONNECTIONS), "connections (open streams) one worker holds", check=_positive),
    Setting("signup_credit_usd", "KYMA_SIGNUP_CREDIT_USD", float, "0.50", "credit granted to each new account"),
    Setting("bcrypt_rounds", "KYMA_BCRYPT_ROUNDS", int, "12", "bcrypt cost for passwords"),
    Setting("session_idle_minutes", "KYMA_SESSION_IDLE_MINUTES", int, "720", "a session expires after this long unused"),
    Setting("session_max_hours", "KYMA_SESSION_MAX_HOURS", int, "168", "and after this long in any case"),
    Setting("catalog_path", "KYMA_CATALOG", Path, str(DATA / "catalog.json"), "the model catalog and aliases"),
    Setting("routes_path", "KYMA_ROUTES", Path, str(DATA / "routes.json"), "provider routes per model"),
    Setting("claude_models_path", "KYMA_CLAUDE_MODELS", Path, str(DATA / "claude_models.json"), "claude-* name to catalog model"),
    Setting("tiers_path", "KYMA_TIERS", Path, str(DATA / "tiers.json"), "the rate-limit tier ladder"),
    Setting("sim_base_port", "KYMA_SIM_BASE_PORT", int, "8091", "first port of the simulators"),
    Setting("simulators", "KYMA_SIMULATORS", bool, "on", "off: make run starts no simulated providers", parse=_on),
    Setting("connect_timeout", "KYMA_CONNECT_TIMEOUT", float, "3", "seconds to connect to an upstream"),
    Setting("first_byte_timeout", "KYMA_FIRST_BYTE_TIMEOUT", float, "30", "seconds an upstream may take to start answering"),
    Setting("idle_timeout", "KYMA_IDLE_TIMEOUT", float, "60", "seconds an upstream stream may stay silent"),
    Setting("request_deadline", "KYMA_REQUEST_DEADLINE", float, "60", "seconds for all attempts of one request"),
    Setting("max_attempts", "KYMA_MAX_ATTEMPTS", int, "6", "upstream attempts per request (capped: no retry storms)", parse=_capped(8)),
    Setting("route_retries", "KYMA_ROUTE_RETRIES", int, "1", "same-route retries per request", parse=_capped(3)),
    Setting("retry_after_max_seconds", "KYMA_RETRY_AFTER_MAX_SECONDS", float, "5", "the longest wait before a same-route retry"),
    Setting("first_token_timeout", "KYMA_FIRST_TOKEN_TIMEOUT", float, "10", "seconds a stream may take to its first content"),
    Setting("breaker_failures", "KYMA_BREAKER_FAILURES", int, "5", "consecutive failures that open a route's circuit"),
    Setting("breaker_cooldown_seconds", "KYMA_BREAKER_COOLDOWN_SECONDS", float, "2", "how long an open circuit waits before a trial"),
    Setting("breaker_max_cooldown_seconds", "KYMA_BREAKER_MAX_COOLDOWN_SECONDS", float, "4", "the longest cooldown after failed trials"),
    Setting("keepalive_seconds", "KYMA_KEEPALIVE_SECONDS", float, "10", "wait before committing a stream; keep-alive interval"),
    Setting("stream_max_seconds", "KYMA_STREAM_MAX_SECONDS", float, "600", "the longest a started stream may run"),
    Setting("upstream_proxy", "KYMA_UPSTREAM_PROXY", str, "", "http:// proxy for every upstream; none: no proxy; empty: HTTPS_PROXY/HTTP_PROXY"),
    Setting("ca_bundle", "KYMA_CA_BUNDLE", str, "", "CA certificates for https upstreams; empty: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, the system's"),
    Setting("hold_ttl_seconds", "KYMA_HOLD_TTL_SECONDS", int, "900", "a credit hold older than this is released"),
    Setting("group_commit_ms", "KYMA_GROUP_COMMIT_MS", float, "0", "how long a commit group waits for more requests to join"),
    Setting("responses_retention_days", "KYMA_RESPONSES_RETENTION_DAYS", float, "30", "days a stored Responses API response is kept"),
    Setting("login_max_failures", "KYMA_LOGIN_MAX_FAILURES", int, "5", "failed logins in 15 minutes before 429"),
    Setting("signup_max_per_hour", "KYMA_SIGNUP_MAX_PER_HOUR", int, "5", "sign-ups per network in any hour before 429"),
    Setting("signup_max_global_per_hour", "KYMA_SIGNUP_MAX_GLOBAL_PER_HOUR", int, "200", "sign-ups in all in any hour before 429"),
    Setting("log_level", "KYMA_LOG_LEVEL", str, "INFO", "log level"),
    Setting("log_format", "KYMA_LOG_FORMAT", str, "text", "json: one JSON object per log line"),
    Setting("secure_cookies", "KYMA_SECURE_COOKIES", bool, "auto", "true marks cookies Secure", parse=_true),
    # Reverse proxies in front whose X-Forwarded-For/-Proto are believed; 0 believes none,
    # since a client reaching the gateway directly could otherwise pick its own address.
    Setting("trusted_proxies", "KYMA_TRUSTED_PROXIES", int, "0", "reverse proxies in front whose forwarding headers count", check=_not_negative),
    Setting("public_url", "KYMA_PUBLIC_URL", str, "", "the gateway's public base URL", parse=_public_url),
    Setting("allowed_hosts", "KYMA_ALLOWED_HOSTS", tuple[str, ...], "", "host names the gateway answers", parse=_names, shown="`KYMA_HOST`, `localhost`, `127.0.0.1`, `::1`"),
    Setting("admin_emails", "KYMA_ADMIN_EMAILS", tuple[str, ...], "", "accounts made admins of the /admin console at start", parse=_emails),
    Setting("metrics", "KYMA_METRICS", bool, "off", "on: Prometheus metrics at /metrics", parse=_off),
    Setting("metrics_token", "KYMA_METRICS_TOKEN", str, "", "the bearer token /metrics asks for (empty: none)"),
)

# The KYMA_* variables the gateway reads; tests check each is documented in the README.
ENVIRONMENT_VARIABLES = tuple(s.env for s in SETTINGS)


def _from_env(cls, overrides: dict | None = None, environ=None):
    """Build settings from the environment; `overrides` (tests: field name to value) win over it."""
    overrides = dict(overrides or {})
    environ = os.environ if environ is None else environ
    unknown = set(overrides) - {s.field for s in SETTINGS}
    if unknown:
        raise KeyError(f"unknown setting {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for s in SETTINGS:
        try:
            if s.field in overrides and not (callable(s.default) and not overrides[s.field]):
                value = overrides[s.field]
            else:
                value = s.read(environ, values)
            if s.check:
                s.check(value)
        except ValueError as exc:
            raise ValueError(f"{s.env}: {exc}") from None
        values[s.field] = value
    return cls(**values)


Settings = make_dataclass(
    "Settings", [(s.field, s.type) for s in SETTINGS], frozen=True,
    namespace={"__doc__": "Every operator-facing setting, one field per row of SETTINGS.",
               "__module__": __name__, "from_env": classmethod(_from_env)})
