"""create_app(): the Flask application factory."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import FunctionType

from flask import Flask
from htmx_flask import Htmx
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from kyma import logs
from kyma.config import ROOT, Settings
from kyma.db import close_connection, database, init_db, is_sqlite_db, open_connection
from kyma.hosts import register_host_check


def create_app(test_config: dict | None = None) -> Flask:
    """Build the gateway app; `test_config` overrides settings read from KYMA_* variables."""
    settings = Settings.from_env(test_config)
    app = Gateway(
        "kyma",
        root_path=str(ROOT),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(settings.instance_dir),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # The browser keeps the cookie no longer than the session token inside it can live.
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_max_hours),
    )
    app.json.sort_keys = False
    Htmx(app)  # request.htmx: the dashboard reads htmx's request headers through it
    logs.configure(settings.log_level, settings.log_format)
    if settings.trusted_proxies:
        # The client's address (sign-up and log-in throttles): the entry the outermost trusted proxy
        # appended to X-Forwarded-For. The scheme: X-Forwarded-Proto as the nearest proxy sends it
        # (proxies replace that header rather than append to it, so there is one value to read).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1)
    app.wsgi_app = scheme_from_socket(app.wsgi_app)
    register_host_check(app, settings)

    # <row_id:…> in a route: an integer a database row id can be (a larger one is a 404, not an overflow).
    app.url_map.converters["row_id"] = RowIdConverter
    init_db(settings.database_url, settings.database_pool_size)
    from kyma.services import group_commit

    group_commit.configure(settings.group_commit_ms)
    app.extensions["kyma"] = _build_runtime(settings)
    _configure_key_cache(app.extensions["kyma"])
    _register_database_hooks(app)
    from kyma.services.reaper import register_reaper

    register_reaper(app)
    _register_blueprints(app)
    _register_metrics(app, settings)

    from kyma.cli import register_cli

    register_cli(app)
    _apply_admin_emails(app)
    return app


def _apply_admin_emails(app: Flask) -> None:
    """KYMA_ADMIN_EMAILS' accounts become admins at start too (init-db does it as well)."""
    if not app.extensions["kyma"].settings.admin_emails:
        return
    from kyma.cli import apply_configured_admins

    try:
        apply_configured_admins(app)
    except Exception as exc:  # a database not migrated yet: init-db applies them
        logging.getLogger(__name__).warning("KYMA_ADMIN_EMAILS not applied at start: %s", exc)


class Gateway(Flask):
    """Flask that decides once per view or hook function whether it is a coroutine, not on every call.

    Flask asks for each before-request hook, the view, each after-request hook and each teardown,
    on every request; the answer never changes for a function.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict[FunctionType, object] = {}

    def ensure_sync(self, func):
        if type(func) is not FunctionType:  # a bound method or a partial is made afresh: not kept
            return super().ensure_sync(func)
        known = self._sync.get(func)
        if known is None:
            known = self._sync[func] = super().ensure_sync(func)
        return known


def scheme_from_socket(wsgi_app):
    """Start every request from the scheme of its own connection, whatever the server made of headers.

    gunicorn believes X-Forwarded-Proto and X-Forwarded-Ssl from 127.0.0.1 unless told otherwise,
    so a local client could claim https; what proxies are believed is KYMA_TRUSTED_PROXIES' alone
    (ProxyFix, inside this, reads the header only then).
    """
    def app(environ, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            environ["wsgi.url_scheme"] = "https" if callable(getattr(sock, "getpeercert", None)) else "http"
        return wsgi_app(environ, start_response)

    return app


class RowIdConverter(IntegerConverter):
    """A path segment that is a positive 64-bit integer, like every primary key here."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**63 - 1)


def _build_runtime(settings: Settings):
    from kyma.providers.registry import UpstreamPool
    from kyma.runtime import Runtime
    from kyma.services.breaker import CircuitBreaker
    from kyma.services.catalog import Catalog, load_claude_models
    from kyma.services.ratelimit import Limiter
    from kyma.chat.plan import Planner
    from kyma.providers.routes import RouteTable
    from kyma.services.tiers import TierLadder

    catalog = Catalog.load(settings.catalog_path)
    routes = RouteTable.load(settings.routes_path, catalog, sim_base_port=settings.sim_base_port)
    return Runtime(
        settings=settings,
        catalog=catalog,
        routes=routes,
        planner=Planner(catalog, routes),
        limiter=Limiter.create(settings),
        breaker=CircuitBreaker.create(settings),
        upstreams=UpstreamPool(settings),
        claude_models=load_claude_models(settings.claude_models_path),
        tiers=TierLadder.load(settings.tiers_path),
    )


def _configure_key_cache(rt) -> None:
    """API-key rows are kept per worker when Redis can tell every instance that one changed."""
    from kyma.services import key_cache
    from kyma.services.window_stores import RedisStore

    store = rt.limiter.store
    if isinstance(store, RedisStore):
        key_cache.configure(store.pipeliner, store.prefix)
    else:
        key_cache.configure(None)


def _register_database_hooks(app: Flask) -> None:
    # SQLite's connection opens before each request; a pooled (PostgreSQL) one is taken at the
    # request's first query instead: a request whose key row is kept (key_cache) and whose writes go
    # through the group committer never needs one of its own, nor a turn in the pool. The backend is
    # bound by now and stays: the choice is made once, not per request.
    if is_sqlite_db(database.obj):
        app.before_request(open_connection)

    @app.teardown_request
    def _close_db(exc):
        close_connection()


def _register_metrics(app: Flask, settings: Settings) -> None:
    """Prometheus at /metrics when KYMA_METRICS is on; otherwise no recorder costs the requests anything."""
    from kyma.services import metrics

    catalog = app.extensions["kyma"].catalog
    metrics.configure(settings.metrics, [m.id for m in catalog.every] + list(catalog.aliases))
    if settings.metrics:
        from kyma.api.metrics import register_metrics

        register_metrics(app, settings.metrics_token)


def _register_blueprints(app: Flask) -> None:
    from kyma.api import api_bp, register_api_errors
    from kyma.api.wellknown import wellknown_bp
    from kyma.web import register_web

    app.register_blueprint(api_bp)
    app.register_blueprint(wellknown_bp)
    register_api_errors(app)
    register_web(app)
    from kyma.nul_guard import register_nul_guard

    register_nul_guard(app)  # after the console's guard: a stranger gets its 404 first
