"""Settings read once from KYMA_* environment variables, with documented defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

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
        raise ValueError(f"KYMA_PUBLIC_URL must be an http(s) URL such as https://llm.example.com, not {value!r}")
    return value


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _secret_key(instance: Path) -> str:
    """Use KYMA_SECRET_KEY, or a random key kept in instance/ so sessions survive restarts."""
    if os.environ.get("KYMA_SECRET_KEY"):
        return os.environ["KYMA_SECRET_KEY"]
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    """Every operator-facing setting; each field maps to one KYMA_* variable (see README)."""

    instance_dir: Path
    database_url: str
    database_pool_size: int
    redis_url: str
    secret_key: str
    host: str
    port: int
    workers: int
    signup_credit_usd: float
    bcrypt_rounds: int
    session_idle_minutes: int
    session_max_hours: int
    catalog_path: Path
    routes_path: Path
    claude_models_path: Path
    sim_base_port: int
    simulators: bool
    connect_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    request_deadline: float
    max_attempts: int
    breaker_failures: int
    breaker_cooldown_seconds: float
    breaker_max_cooldown_seconds: float
    route_retries: int
    retry_after_max_seconds: float
    first_token_timeout: float
    keepalive_seconds: float
    stream_max_seconds: float
    hold_ttl_seconds: int
    group_commit_ms: float
    responses_retention_days: float
    tiers_path: Path
    redis_prefix: str
    login_max_failures: int
    signup_max_per_hour: int
    signup_max_global_per_hour: int
    log_level: str
    log_format: str
    secure_cookies: bool
    trusted_proxies: int
    public_url: str
    allowed_hosts: tuple[str, ...]

    @classmethod
    def from_env(cls, overrides: dict | None = None) -> "Settings":
        """Build settings from the environment; `overrides` (tests) win over it."""
        overrides = dict(overrides or {})
        instance = Path(overrides.pop("instance_dir", _env("KYMA_INSTANCE_DIR", str(ROOT / "instance"))))
        values = dict(
            instance_dir=instance,
            database_url=_env("KYMA_DATABASE_URL", f"sqlite:///{instance / 'kyma.db'}"),
            # Per worker process, PostgreSQL only: instances × workers × this ≤ the server's max_connections.
            database_pool_size=int(_env("KYMA_DATABASE_POOL_SIZE", "20")),
            redis_url=_env("KYMA_REDIS_URL", ""),
            secret_key=overrides.pop("secret_key", None) or _secret_key(instance),
            host=_env("KYMA_HOST", "127.0.0.1"),
            port=int(_env("KYMA_PORT", "8080")),
            workers=int(_env("KYMA_WORKERS", str(DEFAULT_WORKERS))),
            signup_credit_usd=float(_env("KYMA_SIGNUP_CREDIT_USD", "0.50")),
            bcrypt_rounds=int(_env("KYMA_BCRYPT_ROUNDS", "12")),
            session_idle_minutes=int(_env("KYMA_SESSION_IDLE_MINUTES", "720")),
            session_max_hours=int(_env("KYMA_SESSION_MAX_HOURS", "168")),
            catalog_path=Path(_env("KYMA_CATALOG", str(DATA / "catalog.json"))),
            routes_path=Path(_env("KYMA_ROUTES", str(DATA / "routes.json"))),
            claude_models_path=Path(_env("KYMA_CLAUDE_MODELS", str(DATA / "claude_models.json"))),
            sim_base_port=int(_env("KYMA_SIM_BASE_PORT", "8091")),
            simulators=_env("KYMA_SIMULATORS", "on").lower() not in ("off", "0", "false", "no"),
            connect_timeout=float(_env("KYMA_CONNECT_TIMEOUT", "3")),
            first_byte_timeout=float(_env("KYMA_FIRST_BYTE_TIMEOUT", "30")),
            idle_timeout=float(_env("KYMA_IDLE_TIMEOUT", "60")),
            request_deadline=float(_env("KYMA_REQUEST_DEADLINE", "60")),
            max_attempts=min(8, int(_env("KYMA_MAX_ATTEMPTS", "6"))),  # hard cap: no retry storms
            route_retries=min(3, int(_env("KYMA_ROUTE_RETRIES", "1"))),
            retry_after_max_seconds=float(_env("KYMA_RETRY_AFTER_MAX_SECONDS", "5")),
            first_token_timeout=float(_env("KYMA_FIRST_TOKEN_TIMEOUT", "10")),
            breaker_failures=int(_env("KYMA_BREAKER_FAILURES", "5")),
            breaker_cooldown_seconds=float(_env("KYMA_BREAKER_COOLDOWN_SECONDS", "2")),
            breaker_max_cooldown_seconds=float(_env("KYMA_BREAKER_MAX_COOLDOWN_SECONDS", "4")),
            keepalive_seconds=float(_env("KYMA_KEEPALIVE_SECONDS", "10")),
            stream_max_seconds=float(_env("KYMA_STREAM_MAX_SECONDS", "600")),
            hold_ttl_seconds=int(_env("KYMA_HOLD_TTL_SECONDS", "900")),
            group_commit_ms=float(_env("KYMA_GROUP_COMMIT_MS", "0")),
            responses_retention_days=float(_env("KYMA_RESPONSES_RETENTION_DAYS", "30")),
            tiers_path=Path(_env("KYMA_TIERS", str(DATA / "tiers.json"))),
            redis_prefix=_env("KYMA_REDIS_PREFIX", "kyma:"),
            login_max_failures=int(_env("KYMA_LOGIN_MAX_FAILURES", "5")),
            signup_max_per_hour=int(_env("KYMA_SIGNUP_MAX_PER_HOUR", "5")),
            signup_max_global_per_hour=int(_env("KYMA_SIGNUP_MAX_GLOBAL_PER_HOUR", "200")),
            log_level=_env("KYMA_LOG_LEVEL", "INFO"),
            log_format=_env("KYMA_LOG_FORMAT", "text"),
            secure_cookies=_env("KYMA_SECURE_COOKIES", "auto") == "true",
            # Reverse proxies in front whose X-Forwarded-For/-Proto are believed; 0 believes none,
            # since a client reaching the gateway directly could otherwise pick its own address.
            trusted_proxies=int(_env("KYMA_TRUSTED_PROXIES", "0")),
            public_url=_public_url(_env("KYMA_PUBLIC_URL", "")),
            allowed_hosts=tuple(h.strip() for h in _env("KYMA_ALLOWED_HOSTS", "").split(",") if h.strip()),
        )
        names = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise KeyError(f"unknown setting {key!r}")
            values[key] = value
        if values["trusted_proxies"] < 0:
            raise ValueError("KYMA_TRUSTED_PROXIES must be 0 or more (the number of proxies in front)")
        return cls(**values)


# The KYMA_* variables the gateway reads; tests check each is documented in the README.
ENVIRONMENT_VARIABLES = (
    "KYMA_INSTANCE_DIR", "KYMA_DATABASE_URL", "KYMA_REDIS_URL", "KYMA_SECRET_KEY", "KYMA_HOST",
    "KYMA_PORT", "KYMA_WORKERS", "KYMA_SIGNUP_CREDIT_USD", "KYMA_BCRYPT_ROUNDS",
    "KYMA_SESSION_IDLE_MINUTES", "KYMA_SESSION_MAX_HOURS", "KYMA_CATALOG", "KYMA_ROUTES",
    "KYMA_CLAUDE_MODELS", "KYMA_SIM_BASE_PORT", "KYMA_CONNECT_TIMEOUT", "KYMA_FIRST_BYTE_TIMEOUT",
    "KYMA_IDLE_TIMEOUT", "KYMA_REQUEST_DEADLINE", "KYMA_MAX_ATTEMPTS", "KYMA_BREAKER_FAILURES",
    "KYMA_BREAKER_COOLDOWN_SECONDS", "KYMA_BREAKER_MAX_COOLDOWN_SECONDS", "KYMA_ROUTE_RETRIES",
    "KYMA_RETRY_AFTER_MAX_SECONDS", "KYMA_FIRST_TOKEN_TIMEOUT", "KYMA_KEEPALIVE_SECONDS", "KYMA_STREAM_MAX_SECONDS", "KYMA_HOLD_TTL_SECONDS",
    "KYMA_GROUP_COMMIT_MS",
    "KYMA_RESPONSES_RETENTION_DAYS",
    "KYMA_LOGIN_MAX_FAILURES", "KYMA_LOG_LEVEL", "KYMA_LOG_FORMAT", "KYMA_SECURE_COOKIES", "KYMA_TIERS", "KYMA_REDIS_PREFIX",
    "KYMA_SIMULATORS", "KYMA_DATABASE_POOL_SIZE", "KYMA_SIGNUP_MAX_PER_HOUR", "KYMA_TRUSTED_PROXIES",
    "KYMA_PUBLIC_URL", "KYMA_ALLOWED_HOSTS", "KYMA_SIGNUP_MAX_GLOBAL_PER_HOUR",
)
